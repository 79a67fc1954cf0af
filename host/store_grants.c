/* SPDX-License-Identifier: MIT */
/* Recording a run's grants: per entitlement, the graph's grants merged
   with the store's current rows, so only what changed is written. */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "store_rec.h"
#include "util.h"

/* One graph grant, for the per-entitlement merge: its principal's store
   id and where the rest is in the graph. 16 bytes: the largest
   entitlement's grants are held at once (100k of them on a huge tenant,
   at the sync's peak), so everything else is read again from the graph. */
struct ggrant {
  int64_t principal;
  struct graph_grant_pos pos;
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

/* What a grant row says besides its keys (direct, expandable, via), as one
   FNV-1a hash: the merge compares a store row with a graph grant by it. */
static uint64_t grant_hash(int direct, int64_t expandable, const char *via) {
  uint64_t h = 14695981039346656037ull, e = (uint64_t)expandable;

  h = (h ^ (unsigned char)(direct ? 1 : 0)) * 1099511628211ull;
  for (int k = 0; k < 8; k++, e >>= 8)
    h = (h ^ (e & 0xff)) * 1099511628211ull;
  return rec_fnv(h, via && *via ? via : NULL);
}

static int64_t expandable_id(const struct rec *r,
                             const struct graph_grant_view *v) {
  return v->expandable != GRAPH_NONE ? r->ent_id[v->expandable] : 0;
}

static int grant_insert(struct rec *r, int64_t ent, int64_t inst,
                        const struct ggrant *gg, struct ch_err *err) {
  struct rec_batch *b = &r->b[B_GRANT];
  struct graph_grant_view v;
  char buf[VIA_INLINE], *via;

  graph_grant_view_at(r->g, &gg->pos, &v);
  if (!(via = via_text(r, &v, buf)))
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  batch_int(b, ent);
  batch_int(b, gg->principal);
  batch_int(b, r->run);
  batch_int(b, inst);
  batch_int(b, v.direct);
  batch_text(b, *via ? via : NULL);
  batch_id(b, expandable_id(r, &v));
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

/* A write the merge of one entitlement decides while it still reads the
   store's rows (SQLite leaves a statement's results undefined once the
   same connection changes the table under it): close the current row of
   `principal` from run `first` (0: none), then insert graph grant
   gs[`insert`] (NO_INSERT: none). Only changes take one: a run that
   changes 1% of the grants holds 1% of an entitlement's, not all of them
   (90k on a huge tenant's largest, at the sync's peak). */
#define NO_INSERT UINT32_MAX
struct gwrite {
  int64_t principal, first;
  uint32_t insert;
};

struct gwrites {
  struct gwrite *v;
  size_t n, cap;
};

static int gwrite_add(struct gwrites *w, int64_t principal, int64_t first,
                      size_t insert) {
  if (util_grow(&w->v, &w->cap, w->n + 1, sizeof(*w->v)))
    return CH_E_NOMEM;
  w->v[w->n++] = (struct gwrite){principal, first, (uint32_t)insert};
  return CH_OK;
}

/* Whether graph grant `gg` says something else than the store's row of the
   same principal, hashed as `h`: 1, 0, or -1 when out of memory. */
static int ggrant_differs(struct rec *r, const struct ggrant *gg, uint64_t h) {
  struct graph_grant_view v;
  char buf[VIA_INLINE], *via;
  int differs;

  graph_grant_view_at(r->g, &gg->pos, &v);
  if (!(via = via_text(r, &v, buf)))
    return -1;
  differs = grant_hash(v.direct, expandable_id(r, &v), via) != h;
  if (via != buf)
    free(via);
  return differs;
}

/* Walk the store's current rows of `ent` (by principal) beside its graph
   grants gs[0..n) (sorted), noting in `w` the writes that differ. */
static int diff_ent(struct rec *r, int64_t ent, const struct ggrant *gs,
                    size_t n, struct gwrites *w, struct ch_err *err) {
  struct db_stmt *cur = r->st[ST_GRANT_CUR];
  size_t i = 0;
  int rc = CH_OK, step = 0;

  db_bind_int64(cur, 1, ent);
  while (!rc && (step = db_step(cur)) == 1) {
    int64_t principal = db_column_int64(cur, 0);
    int64_t first = db_column_int64(cur, 1);
    for (; !rc && i < n && gs[i].principal < principal; i++)
      rc = gwrite_add(w, 0, 0, i);
    if (rc)
      break;
    if (i < n && gs[i].principal == principal) {
      uint64_t h = grant_hash((int)db_column_int64(cur, 2),
                              db_column_int64(cur, 4), db_column_text(cur, 3));
      int differs = ggrant_differs(r, &gs[i], h);
      if (differs < 0)
        rc = CH_E_NOMEM;
      else if (differs)
        rc = gwrite_add(w, principal, first, i);
      i++;
    } else {
      rc = gwrite_add(w, principal, first, NO_INSERT);
    }
  }
  db_reset(cur);
  if (rc)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  for (; i < n; i++)
    if (gwrite_add(w, 0, 0, i))
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
  return step == 0 ? CH_OK : db_fail(r->s->db, err, "reading grants");
}

/* Merge one entitlement's graph grants (sorted here by principal id) with
   the store's current rows for it, when it has any. */
static int merge_ent(struct rec *r, int64_t ent, const struct rinst *in,
                     struct ggrant *gs, size_t n, int has_rows,
                     struct gwrites *w, struct ch_err *err) {
  size_t k;
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
  if (!has_rows) {
    for (k = 0; !rc && k < n; k++)
      rc = grant_insert(r, ent, in->id, &gs[k], err);
    return rc;
  }
  w->n = 0;
  if ((rc = diff_ent(r, ent, gs, n, w, err)))
    return rc;
  for (k = 0; !rc && k < w->n; k++) {
    const struct gwrite *x = &w->v[k];
    if (x->first)
      rc = grant_close(r, ent, x->principal, x->first, in->last_good, err);
    if (!rc && x->insert != NO_INSERT)
      rc = grant_insert(r, ent, in->id, &gs[x->insert], err);
  }
  return rc;
}

int rec_grants(struct rec *r, struct ch_err *err) {
  size_t nents = graph_nentitlements(r->g), ndirect, i;
  struct graph_grant_pos pos[2];
  size_t ntotal = graph_ngrants(r->g, &ndirect);
  struct ggrant *gs = NULL;
  struct gwrites w = {0};
  size_t cap = 0;
  int rc = rec_load_current(r,
                            "SELECT ent_id, first_run, 0 FROM ent_ranges"
                            " WHERE last_run IS NULL ORDER BY ent_id DESC",
                            err);

  if (!rc && ntotal > UINT32_MAX) /* struct graph_grant_pos */
    rc = ch_err_set(err, CH_E_LIMIT,
                    "store '%s': more than %" PRIu32 " grants in one run",
                    r->s->path, UINT32_MAX);
  /* Direct grants and derived ones are each sorted by entitlement: two
     positions walk them side by side. */
  graph_grant_locate(r->g, 0, &pos[0]);
  graph_grant_locate(r->g, ndirect, &pos[1]);
  for (i = 0; !rc && i < nents; i++) {
    const struct rinst *in = &r->insts[r->ent_inst[i]];
    int64_t ent = r->ent_id[i];
    const struct cur *c = rec_cur(r, ent);
    size_t n = 0;
    struct graph_grant_view v;

    for (int pass = 0; pass < 2; pass++) {
      struct graph_grant_pos *p = &pos[pass];
      size_t end = pass ? ntotal : ndirect;
      for (; p->index < end; graph_grant_step(r->g, p)) {
        graph_grant_view_at(r->g, p, &v);
        if (v.ent != i)
          break;
        if (!r->node_id[v.principal])
          continue;
        if (util_grow(&gs, &cap, n + 1, sizeof(*gs))) {
          rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
          goto out;
        }
        gs[n].principal = r->node_id[v.principal];
        gs[n++].pos = *p;
      }
    }
    rec_mark_seen(r, ent);
    if (!c->first_run) {
      struct rec_batch *b = &r->b[B_RANGE];
      batch_int(b, ent);
      batch_int(b, r->run);
      batch_int(b, in->id);
      if ((rc = batch_row_end(r, b, err)))
        break;
    }
    rc = merge_ent(r, ent, in, gs, n, c->first_run != 0, &w, err);
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
  free(w.v);
  return rc;
}
