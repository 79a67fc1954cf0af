/* SPDX-License-Identifier: MIT */
/* Recording a run's grants: per entitlement, the graph's grants merged
   with the store's current rows, so only what changed is written. */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "store_rec.h"

/* One graph grant in store ids, for the per-entitlement merge. Kept small
   (the largest entitlement's grants are held at once): `via` is compared by
   hash and written out again from the graph when inserted. */
struct ggrant {
  int64_t principal, expandable;
  size_t index; /* in graph_grant_view */
  int direct;
};

static int cmp_ggrant(const void *a, const void *b) {
  const struct ggrant *x = a, *y = b;
  return (x->principal > y->principal) - (x->principal < y->principal);
}

/* Room for a via text written in place; longer ones are malloc'd. */
#define VIA_INLINE 256

/* A grant's sources as the JSON array of their entitlement ids ("" when it
   has none), in `buf` (VIA_INLINE bytes) or, when longer, in malloc'd
   memory. Returns the text, NULL when out of memory; the caller frees it
   when it is not `buf`. Digits by hand: this runs twice for every grant. */
static char *via_text(const struct rec *r, const struct graph_grant_view *v,
                      char *buf) {
  size_t cap = v->nsources * 21 + 3, used = 0;
  char *t = cap <= VIA_INLINE ? buf : malloc(cap);

  if (!t)
    return NULL;
  if (!v->nsources) {
    *t = 0;
    return t;
  }
  for (size_t k = 0; k < v->nsources; k++) {
    uint64_t id = (uint64_t)r->ent_id[v->sources[k]];
    char d[20];
    size_t nd = 0;
    t[used++] = k ? ',' : '[';
    do
      d[nd++] = (char)('0' + id % 10);
    while ((id /= 10) != 0);
    while (nd)
      t[used++] = d[--nd];
  }
  t[used++] = ']';
  t[used] = 0;
  return t;
}

static uint64_t via_hash(const char *via) {
  return via && *via ? rec_fnv(14695981039346656037ull, via) : 0;
}

static int grant_insert(struct rec *r, int64_t ent, int64_t inst,
                        const struct ggrant *gg, struct ch_err *err) {
  struct rec_batch *b = &r->b[B_GRANT];
  struct graph_grant_view v;
  char buf[VIA_INLINE], *via;

  graph_grant_view(r->g, gg->index, &v);
  if (!(via = via_text(r, &v, buf)))
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  batch_int(b, ent);
  batch_int(b, gg->principal);
  batch_int(b, r->run);
  batch_int(b, inst);
  batch_int(b, gg->direct);
  batch_text(b, *via ? via : NULL);
  batch_id(b, gg->expandable);
  if (via != buf)
    free(via);
  return batch_row_end(r, b, err);
}

static int grant_close(struct rec *r, int64_t ent, int64_t principal,
                       int64_t first, int64_t last, struct ch_err *err) {
  struct db_stmt *st = r->st[ST_GRANT_CLOSE];

  db_bind_int64(st, 1, last);
  db_bind_int64(st, 2, ent);
  db_bind_int64(st, 3, principal);
  db_bind_int64(st, 4, first);
  return rec_step(r, st, "recording a grant", err);
}

static void ggrant_fill(struct rec *r, size_t index,
                        const struct graph_grant_view *v, struct ggrant *gg) {
  gg->principal = r->node_id[v->principal];
  gg->direct = v->direct;
  gg->expandable = v->expandable != GRAPH_NONE ? r->ent_id[v->expandable] : 0;
  gg->index = index;
}

/* The hash of a graph grant's via, as load_ent_rows hashes the store's:
   only for grants the store has a current row of (none on a first run). */
static int ggrant_via_h(struct rec *r, const struct ggrant *gg, uint64_t *h) {
  struct graph_grant_view v;
  char buf[VIA_INLINE], *via;

  graph_grant_view(r->g, gg->index, &v);
  if (!(via = via_text(r, &v, buf)))
    return CH_E_NOMEM;
  *h = via_hash(via);
  if (via != buf)
    free(via);
  return CH_OK;
}

/* The store's current rows of one entitlement, read before any write:
   SQLite leaves a statement's results undefined once the same connection
   changes the table under it. */
struct srow {
  int64_t principal, first, expandable;
  uint64_t via_h;
  int direct;
};

static int load_ent_rows(struct rec *r, int64_t ent, struct srow **rows,
                         size_t *n, size_t *cap, struct ch_err *err) {
  struct db_stmt *cur = r->st[ST_GRANT_CUR];
  int step;

  *n = 0;
  db_bind_int64(cur, 1, ent);
  while ((step = db_step(cur)) == 1) {
    const char *via = db_column_text(cur, 3);
    struct srow *x;
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 256;
      struct srow *g = realloc(*rows, nc * sizeof(**rows));
      if (!g) {
        db_reset(cur);
        return ch_err_set(err, CH_E_NOMEM, "out of memory");
      }
      *rows = g;
      *cap = nc;
    }
    x = &(*rows)[(*n)++];
    x->principal = db_column_int64(cur, 0);
    x->first = db_column_int64(cur, 1);
    x->direct = db_column_int64(cur, 2);
    x->expandable = db_column_int64(cur, 4);
    x->via_h = via_hash(via);
  }
  db_reset(cur);
  return step == 0 ? CH_OK : db_fail(r->s->db, err, "reading grants");
}

/* Merge one entitlement's graph grants (sorted here by principal id) with
   the store's current rows for it (sorted by the query). */
static int merge_ent(struct rec *r, int64_t ent, const struct rinst *in,
                     struct ggrant *gs, size_t n, const struct srow *rows,
                     size_t nrows, struct ch_err *err) {
  size_t i = 0, k;
  int rc = CH_OK;

  for (k = 1; k < n && gs[k - 1].principal <= gs[k].principal; k++)
    ;
  if (k < n) /* often sorted already (ids follow the graph's key order) */
    qsort(gs, n, sizeof(*gs), cmp_ggrant);
  /* one row per principal: the inserts skip a duplicate on SQLite (see
     rec_ins), so a graph that had one must fail here */
  for (k = 1; k < n; k++)
    if (gs[k].principal == gs[k - 1].principal)
      return ch_err_set(err, CH_E_IO,
                        "store '%s': two grants of one entitlement to one "
                        "principal",
                        r->s->path);
  for (k = 0; !rc && k < nrows; k++) {
    const struct srow *x = &rows[k];
    for (; !rc && i < n && gs[i].principal < x->principal; i++)
      rc = grant_insert(r, ent, in->id, &gs[i], err);
    if (rc)
      break;
    if (i < n && gs[i].principal == x->principal) {
      uint64_t via_h = 0;
      if (ggrant_via_h(r, &gs[i], &via_h)) {
        rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
        break;
      }
      if (gs[i].direct != x->direct || gs[i].expandable != x->expandable ||
          via_h != x->via_h) {
        rc = grant_close(r, ent, x->principal, x->first, in->last_good, err);
        if (!rc)
          rc = grant_insert(r, ent, in->id, &gs[i], err);
      }
      i++;
    } else {
      rc = grant_close(r, ent, x->principal, x->first, in->last_good, err);
    }
  }
  for (; !rc && i < n; i++)
    rc = grant_insert(r, ent, in->id, &gs[i], err);
  return rc;
}

int rec_grants(struct rec *r, struct ch_err *err) {
  size_t nents = graph_nentitlements(r->g), ndirect, i, d, x;
  size_t ntotal = graph_ngrants(r->g, &ndirect);
  struct ggrant *gs = NULL;
  struct srow *rows = NULL;
  size_t cap = 0, nrows = 0, rcap = 0;
  int64_t max =
      rec_scalar(r->s, "SELECT COALESCE(MAX(id), 0) FROM entitlements", 0);
  int rc = rec_load_current(r,
                            "SELECT ent_id, first_run, 0 FROM ent_ranges"
                            " WHERE last_run IS NULL",
                            max, err);

  /* Direct grants and derived ones are each sorted by entitlement. */
  for (i = 0, d = 0, x = ndirect; !rc && i < nents; i++) {
    const struct rinst *in = &r->insts[r->ent_inst[i]];
    int64_t ent = r->ent_id[i];
    struct cur *c = &r->cur[ent];
    size_t n = 0;
    struct graph_grant_view v;

    for (int pass = 0; pass < 2; pass++) {
      size_t *k = pass ? &x : &d, end = pass ? ntotal : ndirect;
      for (; *k < end; (*k)++) {
        graph_grant_view(r->g, *k, &v);
        if (v.ent != i)
          break;
        if (!r->node_id[v.principal])
          continue;
        if (n == cap) {
          size_t nc = cap ? cap * 2 : 256;
          struct ggrant *ng = realloc(gs, nc * sizeof(*gs));
          if (!ng) {
            rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
            goto out;
          }
          gs = ng;
          cap = nc;
        }
        ggrant_fill(r, *k, &v, &gs[n++]);
      }
    }
    c->seen = 1;
    if (!c->first_run) {
      struct rec_batch *b = &r->b[B_RANGE];
      batch_int(b, ent);
      batch_int(b, r->run);
      batch_int(b, in->id);
      if ((rc = batch_row_end(r, b, err)))
        break;
    }
    nrows = 0;
    if (c->first_run && (rc = load_ent_rows(r, ent, &rows, &nrows, &rcap, err)))
      break;
    rc = merge_ent(r, ent, in, gs, n, rows, nrows, err);
  }
  if (!rc)
    rc = batch_flush(r, &r->b[B_GRANT], err);
  if (!rc)
    rc = batch_flush(r, &r->b[B_RANGE], err);
  if (!rc)
    rc = rec_close_unseen(r,
                          "SELECT ent_id, inst_id FROM ent_ranges"
                          " WHERE last_run IS NULL",
                          ST_RANGE_CLOSE, 1, err);
out:
  free(gs);
  free(rows);
  return rc;
}
