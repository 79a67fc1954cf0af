/* SPDX-License-Identifier: MIT */
/* Recording a run in the snapshot store: the run and its instances, the
   interned keys, and the rows that changed since each instance's last
   good run, in one transaction (store_int.h has the layout). */
#include "autoconfig.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "store_rec.h"
#include "util.h"

static const char *const rec_sql[ST_COUNT] = {
    "UPDATE resources SET last_run = ? WHERE node_id = ? AND first_run = ?",
    "UPDATE ent_ranges SET last_run = ? WHERE ent_id = ? AND first_run = ?",
    "SELECT principal_id, first_run, direct, via, expandable FROM grants"
    " WHERE ent_id = ? AND last_run IS NULL ORDER BY principal_id",
    "UPDATE grants SET last_run = ? WHERE ent_id = ? AND principal_id = ?"
    " AND first_run = ?",
    "UPDATE grants SET last_run = ? WHERE ent_id = ? AND last_run IS NULL"};

/* The batched inserts (B_*), head and columns. The grants' skip a row
   already there ("OR IGNORE" on SQLite) because a multi-row INSERT that
   may abort halfway costs SQLite a statement journal: their rows are new
   by construction (merge_ent checks for a duplicate principal). */
static const struct {
  const char *head, *what;
  int ncols;
} rec_ins[B_COUNT] = {
    {"INSERT INTO nodes(inst_id, key, type, rid, traits) VALUES",
     "recording a resource", 5},
    {"INSERT INTO identities(key, tenant, emails, emails_run) VALUES",
     "recording an identity", 4},
    {"INSERT INTO entitlements(node_id, inst_id, key, slug, display_name)"
     " VALUES",
     "recording an entitlement", 5},
    {"INSERT INTO resources(node_id, first_run, inst_id, h, display_name,"
     " status, account_type, emails, match_keys, parent_id, identity_id,"
     " profile) VALUES",
     "recording a resource", 12},
    {"INSERT INTO ent_ranges(ent_id, first_run, inst_id) VALUES",
     "recording an entitlement", 3},
    {"INSERT @orignore@ INTO grants(ent_id, principal_id, first_run,"
     " inst_id, direct, via, expandable) VALUES",
     "recording a grant", 7}};

int rec_step(struct rec *r, struct db_stmt *st, const char *what,
             struct ch_err *err) {
  int rc = db_step(st);

  db_reset(st); /* every caller binds every parameter again */
  return rc < 0 ? db_fail(r->s->db, err, what) : CH_OK;
}

/* Step an INSERT ... RETURNING id: *id gets the new row's id. */
static int step_id(struct rec *r, struct db_stmt *st, const char *what,
                   int64_t *id, struct ch_err *err) {
  int rc = db_step(st);

  *id = rc == 1 ? db_column_int64(st, 0) : 0;
  db_reset(st);
  if (rc < 0)
    return db_fail(r->s->db, err, what);
  return rc == 1 ? CH_OK : ch_err_set(err, CH_E_IO, "%s: no id", what);
}

void rec_bind_id(struct db_stmt *st, int i, int64_t v) {
  if (v)
    db_bind_int64(st, i, v);
  else
    db_bind_null(st, i);
}

/* The first column of the first row (0 when none, -1 on error); `arg`
   binds ?1 when the statement has one. */
int64_t rec_scalar(struct store *s, const char *sql, int64_t arg) {
  struct db_stmt *st = NULL;
  int64_t v = 0;
  int rc;

  if (db_prepare(s->db, sql, &st))
    return -1;
  db_bind_int64(st, 1, arg);
  rc = db_step(st);
  if (rc == 1)
    v = db_column_int64(st, 0);
  else if (rc < 0)
    v = -1;
  db_finalize(st);
  return v;
}

static int64_t now_s(void) { return util_wall_ms() / 1000; }

/* The run row and one run_instances row per graph instance. */
static int rec_run(struct rec *r, int64_t started_ms, struct ch_err *err) {
  struct store *s = r->s;
  struct db_stmt *ins = NULL, *inst = NULL, *ri = NULL;
  size_t i, nok = 0;
  int rc;

  rc = store_prep(s,
                  "INSERT INTO runs(started_at, finished_at, status, replica)"
                  " VALUES(?, ?, 'recording', ?) RETURNING id",
                  &ins, err);
  if (!rc)
    rc = store_prep(
        s,
        "INSERT INTO instances(tenant, name, plugin) VALUES(?,?,?)"
        " ON CONFLICT(tenant, name) DO UPDATE SET plugin = excluded.plugin"
        " RETURNING id",
        &inst, err);
  if (!rc)
    rc = store_prep(
        s,
        "INSERT INTO run_instances(run_id, inst_id, status, error,"
        " data_run, plugin_version, resources, grants, requests, retries,"
        " warnings, data_at) VALUES(?1,?2,?3,?4,"
        " CASE WHEN ?3 = 'ok' THEN ?1 ELSE ?5 END, ?6,?7,?8,?9,?10,?11,"
        " CASE WHEN ?3 = 'ok' THEN ?12 ELSE"
        " (SELECT data_at FROM run_instances WHERE inst_id = ?2"
        "  AND run_id = ?13) END)",
        &ri, err);
  if (rc)
    goto out;
  db_bind_int64(ins, 1, started_ms / 1000);
  db_bind_int64(ins, 2, now_s());
  db_bind_text(ins, 3, s->replica);
  if ((rc = step_id(r, ins, "recording the run", &r->run, err)))
    goto out;

  for (i = 0; i < r->ninsts; i++) {
    struct graph_inst_view v;
    struct rinst *in = &r->insts[i];
    int64_t last_ri;

    graph_instance_view(r->g, i, &v);
    db_bind_text(inst, 1, v.tenant);
    db_bind_text(inst, 2, v.instance);
    db_bind_text(inst, 3, v.plugin);
    if (db_step(inst) != 1) {
      rc = db_fail(s->db, err, "recording an instance");
      goto out;
    }
    in->id = db_column_int64(inst, 0);
    db_reset(inst);
    in->ok = v.ok;
    nok += v.ok != 0;
    last_ri =
        rec_scalar(s,
                   "SELECT MAX(run_id) FROM run_instances WHERE inst_id = ?"
                   " AND data_run IS NOT NULL",
                   in->id);
    in->last_good = 0;
    if (last_ri > 0) {
      struct db_stmt *q = NULL;
      if ((rc = store_prep(
               s,
               "SELECT data_run FROM run_instances WHERE run_id = ? AND"
               " inst_id = ?",
               &q, err)))
        goto out;
      db_bind_int64(q, 1, last_ri);
      db_bind_int64(q, 2, in->id);
      in->last_good = db_step(q) == 1 ? db_column_int64(q, 0) : 0;
      db_finalize(q);
    }
    db_bind_int64(ri, 1, r->run);
    db_bind_int64(ri, 2, in->id);
    db_bind_text(ri, 3, v.ok ? "ok" : "failed");
    db_bind_text(ri, 4, v.error);
    rec_bind_id(ri, 5, in->last_good);
    db_bind_text(ri, 6, v.plugin_version);
    db_bind_int64(ri, 7, (int64_t)v.resources);
    db_bind_int64(ri, 8, (int64_t)v.grants);
    db_bind_int64(ri, 9, (int64_t)v.requests);
    db_bind_int64(ri, 10, (int64_t)v.retries);
    db_bind_int64(ri, 11, (int64_t)v.warnings);
    db_bind_int64(ri, 12, now_s());
    db_bind_int64(ri, 13, last_ri > 0 ? last_ri : 0);
    if ((rc = rec_step(r, ri, "recording an instance", err)))
      goto out;
  }
  /* Instances the previous run had and this one did not sync (another
     --tenant, or removed from the config) keep answering, marked stale. */
  {
    struct db_stmt *c = NULL;
    if ((rc = store_prep(
             s,
             "INSERT INTO run_instances(run_id, inst_id, status, error,"
             " data_run, plugin_version, data_at)"
             " SELECT ?1, p.inst_id, 'not_synced', NULL, p.data_run,"
             " p.plugin_version, p.data_at FROM run_instances p"
             " WHERE p.run_id = (SELECT MAX(id) FROM runs WHERE id < ?1)"
             " AND p.data_run IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
             " run_instances q WHERE q.run_id = ?1 AND"
             " q.inst_id = p.inst_id)",
             &c, err)))
      goto out;
    db_bind_int64(c, 1, r->run);
    rc = rec_step(r, c, "recording the run", err);
    db_finalize(c);
    if (rc)
      goto out;
  }
  {
    struct db_stmt *u = NULL;
    if ((rc =
             store_prep(s, "UPDATE runs SET status = ? WHERE id = ?", &u, err)))
      goto out;
    db_bind_text(u, 1, nok == r->ninsts ? "ok" : nok ? "partial" : "failed");
    db_bind_int64(u, 2, r->run);
    rc = rec_step(r, u, "recording the run", err);
    db_finalize(u);
  }
out:
  db_finalize(ins);
  db_finalize(inst);
  db_finalize(ri);
  return rc;
}

/* FNV-1a over the fields, each followed by a separator byte. */
uint64_t rec_fnv(uint64_t h, const char *s) {
  if (s) {
    for (; *s; s++) {
      h ^= (unsigned char)*s;
      h *= 1099511628211ull;
    }
    h ^= 0xff;
  }
  h ^= 0xfe;
  return h * 1099511628211ull;
}

static uint64_t fnv_i(uint64_t h, int64_t v) {
  char b[24];
  snprintf(b, sizeof(b), "%" PRId64, v);
  return rec_fnv(h, b);
}

/* `v` (n strings, or up to a NULL when n is (size_t)-1) as a JSON array
   in `b`, in the host's one JSON string rule; NULL when out of memory. By
   hand into a reused buffer: this runs three times for each of a huge
   tenant's 200k resources, where json-c made 40 allocations a row. */
static const char *json_strv(struct buf *b, const char *const *v, size_t n) {
  b->len = 0;
  buf_add(b, "[", 1);
  for (size_t i = 0; v && (n == (size_t)-1 ? v[i] != NULL : i < n); i++) {
    if (i)
      buf_add(b, ",", 1);
    buf_json_str(b, v[i], strlen(v[i]));
  }
  return buf_add(b, "]", 1) ? NULL : b->p;
}

static const char *traits_json(struct buf *b, unsigned traits) {
  const char *names[8];
  size_t n = 0;

  for (unsigned bit = 1; bit && n < 8; bit <<= 1) {
    const char *t = (traits & bit) ? graph_trait_name(bit) : NULL;
    if (t)
      names[n++] = t;
  }
  return json_strv(b, names, n);
}

static struct rinst *rinst_of(struct rec *r, int64_t inst_id) {
  return inst_id >= 0 && (size_t)inst_id < r->nby_id ? r->by_id[inst_id] : NULL;
}

/*
 * Intern keys: walk the store's keys and the graph's (both in byte order:
 * the keys are @text@ columns, compared like memcmp on both backends, and
 * the graph sorts with strcmp) and
 * insert the graph's new ones after the walk.
 */
typedef const char *(*key_at_fn)(const struct graph *g, size_t i);

/* Fill ids[] (by graph rank) from the store's keys; 1 in *missing when a
   graph key is not there yet. */
static int walk_keys(struct rec *r, const char *select_sql, size_t n,
                     key_at_fn key_at, int64_t *ids, int *missing,
                     struct ch_err *err) {
  struct db_stmt *st = NULL;
  size_t i = 0;
  int rc = store_prep(r->s, select_sql, &st, err), step;

  if (rc)
    return rc;
  while ((step = db_step(st)) == 1) {
    const char *k = db_column_text(st, 1);
    int c = 1;
    while (i < n) {
      const char *gk = key_at(r->g, i);
      if (!gk) {
        i++;
        continue;
      }
      c = strcmp(gk, k);
      if (c >= 0)
        break;
      i++; /* new: inserted below */
    }
    if (i < n && c == 0)
      ids[i++] = db_column_int64(st, 0);
  }
  db_finalize(st);
  if (step != 0)
    return db_fail(r->s->db, err, "reading keys");
  *missing = 0;
  for (i = 0; i < n && !*missing; i++)
    *missing = !ids[i] && key_at(r->g, i);
  return CH_OK;
}

/* The new keys are inserted without asking for their ids one by one
   (PostgreSQL sends the inserts in a pipeline), then a second walk reads
   them back. */
static int intern(struct rec *r, const char *select_sql, size_t n,
                  key_at_fn key_at, int64_t *ids, struct rec_batch *b,
                  int (*insert)(struct rec *r, size_t i, struct ch_err *err),
                  struct ch_err *err) {
  int missing, rc = walk_keys(r, select_sql, n, key_at, ids, &missing, err);

  if (rc || !missing)
    return rc;
  for (size_t i = 0; i < n; i++) {
    if (!ids[i] && key_at(r->g, i) &&
        ((rc = insert(r, i, err)) || (rc = batch_row_end(r, b, err))))
      return rc;
  }
  if ((rc = batch_flush(r, b, err)))
    return rc;
  rc = walk_keys(r, select_sql, n, key_at, ids, &missing, err);
  if (!rc && missing)
    rc = ch_err_set(err, CH_E_IO, "store '%s': a recorded key is missing",
                    r->s->path);
  return rc;
}

static const char *node_key_at(const struct graph *g, size_t i) {
  return graph_resource_key(g, i, NULL);
}

/* A row of `nodes` (intern sends it). */
static int node_insert(struct rec *r, size_t i, struct ch_err *err) {
  struct rec_batch *b = &r->b[B_NODE];
  struct graph_res_view v;
  const char *traits;

  graph_resource_view(r->g, i, &v);
  traits = traits_json(&r->text[0], v.traits);
  if (!traits)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  batch_int(b, r->insts[v.inst].id);
  batch_text(b, v.key);
  batch_text(b, v.type);
  batch_text(b, v.id);
  batch_text(b, traits);
  return CH_OK;
}

static const char *ident_key_at(const struct graph *g, size_t i) {
  struct graph_ident_view v;
  graph_identity_view(g, i, &v);
  return v.key;
}

/* Whether `s` is written as it is between quotes both by SQLite's JSON
   functions and by buf_json_str: json_escape's plain bytes (it escapes
   DEL too, which SQLite writes as it is). */
static int json_plain(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (!json_plain_byte(*p))
      return 0;
  return 1;
}

struct member {
  int64_t node_id;
  const char *const *emails;
};

static int cmp_member(const void *a, const void *b) {
  const struct member *x = a, *y = b;
  return (x->node_id > y->node_id) - (x->node_id < y->node_id);
}

/* Distinct emails an identity's text is written for; more are left to the
   gather (the dedup here is quadratic). */
#define IDENT_EMAILS_MAX 64

/*
 * A new identity's emails, as rec_identity_emails would gather them for
 * this run on SQLite: the distinct emails of its accounts, by account id
 * and then as each lists them, in json_group_array's text. A new identity
 * has no older rows, so its accounts there are its members in the graph.
 * Written with the identity, they spare it the gather's query (a tenth of
 * a first recording). NULL, and the query decides, on PostgreSQL (its
 * json_agg sorts and spaces), for text SQLite would escape, and past
 * IDENT_EMAILS_MAX. The text is in r->text[0].
 */
static const char *ident_emails(struct rec *r, const struct graph_ident_view *v,
                                int *nomem) {
  struct buf *t = &r->text[0];
  const char *seen[IDENT_EMAILS_MAX];
  struct member *m;
  size_t n = 0, nseen = 0, i, k;
  int plain = 1;

  if (db_backend(r->s->db) != DB_SQLITE)
    return NULL;
  if (!(m = malloc((v->nmembers ? v->nmembers : 1) * sizeof(*m)))) {
    *nomem = 1;
    return NULL;
  }
  for (i = 0; i < v->nmembers; i++) {
    const char *const *e = graph_resource_emails(r->g, v->members[i]);
    if (e)
      m[n++] = (struct member){r->node_id[v->members[i]], e};
  }
  qsort(m, n, sizeof(*m), cmp_member);
  t->len = 0;
  buf_add(t, "[", 1); /* a failed append shows in t->failed, below */
  for (i = 0; plain && i < n; i++) {
    for (const char *const *e = m[i].emails; plain && *e; e++) {
      for (k = 0; k < nseen && strcmp(seen[k], *e) != 0; k++)
        ;
      if (k < nseen)
        continue;
      plain = nseen < IDENT_EMAILS_MAX && json_plain(*e);
      if (!plain)
        break;
      if (nseen)
        buf_add(t, ",", 1);
      seen[nseen++] = *e;
      buf_json_str(t, *e, strlen(*e)); /* plain: as it is, quoted */
    }
  }
  buf_add(t, "]", 1);
  free(m);
  if (t->failed) {
    *nomem = 1;
    return NULL;
  }
  return plain ? t->p : NULL;
}

static int ident_insert(struct rec *r, size_t i, struct ch_err *err) {
  struct rec_batch *b = &r->b[B_IDENT];
  struct graph_ident_view v;
  const char *emails;
  int nomem = 0;

  graph_identity_view(r->g, i, &v);
  emails = ident_emails(r, &v, &nomem);
  if (nomem)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  batch_text(b, v.key);
  batch_text(b, v.tenant);
  batch_text(b, emails);
  batch_id(b, emails ? r->run : 0);
  return CH_OK;
}

static const char *ent_key_at(const struct graph *g, size_t i) {
  struct graph_ent_view v;
  graph_entitlement_view(g, i, &v);
  return v.key;
}

static int ent_insert(struct rec *r, size_t i, struct ch_err *err) {
  struct rec_batch *b = &r->b[B_ENT];
  struct graph_ent_view v;

  (void)err;
  graph_entitlement_view(r->g, i, &v);
  batch_int(b, r->node_id[v.resource]);
  batch_int(b, r->insts[r->ent_inst[i]].id);
  batch_text(b, v.key);
  batch_text(b, v.slug);
  batch_text(b, v.display_name);
  return CH_OK;
}

/* Load the current (last_run NULL) rows `sql` selects into r->cur by id,
   up to the largest current id: a first recording has none, and does not
   spend a record per new id (5 MB on a huge tenant, at the sync's peak).
   The rows come largest id first, so the array is allocated once, to
   size. */
int rec_load_current(struct rec *r, const char *sql, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int rc, step;

  free(r->cur);
  free(r->seen);
  r->cur = NULL;
  r->seen = NULL;
  r->ncur = 0;
  if ((rc = store_prep(r->s, sql, &st, err)))
    return rc;
  while ((step = db_step(st)) == 1) {
    int64_t id = db_column_int64(st, 0);
    if (id <= 0)
      continue;
    if ((uint64_t)id >= r->ncur) {
      size_t nc = (size_t)id + 1;
      struct cur *g;
      unsigned char *sn;
      if (r->ncur && nc < 2 * r->ncur) /* out of order: grow in steps */
        nc = 2 * r->ncur;
      g = realloc(r->cur, nc * sizeof(*g));
      if (g)
        r->cur = g;
      sn = g ? realloc(r->seen, nc) : NULL;
      if (!sn) {
        db_finalize(st);
        return ch_err_set(err, CH_E_NOMEM, "out of memory");
      }
      r->seen = sn;
      memset(g + r->ncur, 0, (nc - r->ncur) * sizeof(*g));
      memset(sn + r->ncur, 0, nc - r->ncur);
      r->ncur = nc;
    }
    r->cur[id].first_run = db_column_int64(st, 1);
    r->cur[id].h = db_column_int64(st, 2);
  }
  db_finalize(st);
  return step == 0 ? CH_OK : db_fail(r->s->db, err, "reading the store");
}

const struct cur *rec_cur(const struct rec *r, int64_t id) {
  static const struct cur none;

  return id > 0 && (uint64_t)id < r->ncur ? &r->cur[id] : &none;
}

void rec_mark_seen(struct rec *r, int64_t id) {
  if (id > 0 && (uint64_t)id < r->ncur)
    r->seen[id] = 1;
}

/* Close the current rows of instances that succeeded and were not seen
   (collected first: no writes under a running SELECT). */
int rec_close_unseen(struct rec *r, const char *sql_inst, int close_st,
                     int grants_too, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int64_t *ids = NULL;
  size_t n = 0, cap = 0;
  int rc, step;

  if ((rc = store_prep(r->s, sql_inst, &st, err)))
    return rc;
  while ((step = db_step(st)) == 1) {
    int64_t id = db_column_int64(st, 0);
    struct rinst *in = rinst_of(r, db_column_int64(st, 1));
    if (!in || !in->ok || id <= 0 || (uint64_t)id >= r->ncur || r->seen[id] ||
        !r->cur[id].first_run)
      continue;
    if (util_grow(&ids, &cap, 2 * (n + 1), sizeof(*ids))) {
      rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
      break;
    }
    ids[2 * n] = id;
    ids[2 * n + 1] = in->last_good;
    n++;
  }
  db_finalize(st);
  if (!rc && step != 0 && step != 1)
    rc = db_fail(r->s->db, err, "reading the store");
  for (size_t i = 0; !rc && i < n; i++) {
    struct db_stmt *c = r->st[close_st];
    db_bind_int64(c, 1, ids[2 * i + 1]);
    db_bind_int64(c, 2, ids[2 * i]);
    db_bind_int64(c, 3, r->cur[ids[2 * i]].first_run);
    rc = rec_step(r, c, "closing a row", err);
    if (!rc && grants_too) {
      c = r->st[ST_GRANT_CLOSE_ENT];
      db_bind_int64(c, 1, ids[2 * i + 1]);
      db_bind_int64(c, 2, ids[2 * i]);
      rc = rec_step(r, c, "closing grants", err);
    }
  }
  free(ids);
  return rc;
}

static int rec_resources(struct rec *r, struct ch_err *err) {
  size_t n = graph_nnodes(r->g), i;
  int rc = rec_load_current(r,
                            "SELECT node_id, first_run, h FROM resources"
                            " WHERE last_run IS NULL ORDER BY node_id DESC",
                            err);

  for (i = 0; !rc && i < n; i++) {
    struct graph_res_view v;
    const char *emails, *mks;
    const char *status[] = {NULL, "enabled", "disabled", "deleted"};
    const char *acct[] = {NULL, "human", "service", "customer"};
    int64_t id = r->node_id[i], parent, ident;
    uint64_t h = 14695981039346656037ull;
    const struct cur *c;
    struct db_stmt *st;
    struct rec_batch *b;

    if (!graph_resource_view(r->g, i, &v) || !id)
      continue;
    c = rec_cur(r, id);
    parent = v.parent != GRAPH_NONE ? r->node_id[v.parent] : 0;
    ident = v.identity != GRAPH_NONE ? r->ident_id[v.identity] : 0;
    emails = json_strv(&r->text[0], v.emails, (size_t)-1);
    mks = json_strv(&r->text[1], v.match_keys, (size_t)-1);
    if (!emails || !mks)
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
    h = rec_fnv(h, v.display_name);
    h = rec_fnv(h, status[v.status]);
    h = rec_fnv(h, acct[v.account_type]);
    h = rec_fnv(h, emails);
    h = rec_fnv(h, mks);
    h = fnv_i(h, parent);
    h = fnv_i(h, ident);
    h = rec_fnv(h, v.profile);
    rec_mark_seen(r, id);
    if (c->first_run && c->h == (int64_t)h)
      continue;
    if (c->first_run) {
      st = r->st[ST_RES_CLOSE];
      db_bind_int64(st, 1, r->insts[v.inst].last_good);
      db_bind_int64(st, 2, id);
      db_bind_int64(st, 3, c->first_run);
      rc = rec_step(r, st, "recording a resource", err);
    }
    b = &r->b[B_RES];
    batch_int(b, id);
    batch_int(b, r->run);
    batch_int(b, r->insts[v.inst].id);
    batch_int(b, (int64_t)h);
    batch_text(b, v.display_name);
    batch_text(b, status[v.status]);
    batch_text(b, acct[v.account_type]);
    batch_text(b, emails);
    batch_text(b, mks);
    batch_id(b, parent);
    batch_id(b, ident);
    batch_text(b, v.profile);
    if (!rc)
      rc = batch_row_end(r, b, err);
  }
  if (!rc)
    rc = batch_flush(r, &r->b[B_RES], err);
  if (!rc)
    rc = rec_close_unseen(r,
                          "SELECT node_id, inst_id FROM resources"
                          " WHERE last_run IS NULL",
                          ST_RES_CLOSE, 0, err);
  return rc;
}

/* Identities whose emails one statement gathers: the huge tenant's 100k
   at once took 4 MB of SQLite's memory at the sync's peak. */
#define EMAILS_CHUNK 8192

/*
 * Save each identity's emails as the read would gather them for this run
 * (STORE_IDENTITY_EMAILS over this run's selection: a failed instance's
 * last good data included). Only identities of the tenants this run
 * synced can have changed; an identity keeps its emails_run while its
 * emails stay the same, so a saved value holds from emails_run to the
 * latest run and older runs gather theirs.
 */
static int rec_identity_emails(struct rec *r, struct ch_err *err) {
  static const char what[] = "saving identities' emails";
  /* clang-format off */
  static const char fill[] =
      "INSERT INTO rec_sel SELECT inst_id, data_run, 0 FROM run_instances"
      " WHERE run_id = ?1 AND data_run IS NOT NULL";
  /* MATERIALIZED: gathered once, where SQLite would otherwise gather them
     again for the comparison; ids ?2 to ?3 */
  static const char update[] =
      "WITH n AS MATERIALIZED (SELECT x.id AS id, "
      STORE_IDENTITY_EMAILS("rec_sel", "x.id") " AS e FROM identities x"
      " WHERE x.id BETWEEN ?2 AND ?3 AND x.emails_run IS DISTINCT FROM ?1"
      " AND x.tenant IN (SELECT i.tenant FROM"
      " run_instances ri JOIN instances i ON i.id = ri.inst_id WHERE"
      " ri.run_id = ?1 AND ri.status <> 'not_synced')) UPDATE identities SET"
      " emails = n.e, emails_run = ?1 FROM n WHERE identities.id = n.id AND"
      " identities.emails IS DISTINCT FROM n.e";
  /* clang-format on */
  struct db_stmt *st = NULL;
  int64_t max =
      rec_scalar(r->s, "SELECT COALESCE(MAX(id), 0) FROM identities", 0);
  int rc = max < 0 ? db_fail(r->s->db, err, "reading identities") : CH_OK;

  if (!rc)
    rc = store_exec(r->s, "DROP TABLE IF EXISTS @temp@rec_sel", what, err);
  if (!rc)
    rc = store_exec(r->s,
                    "CREATE TEMP TABLE rec_sel(inst_id @int@,"
                    " data_run @int@, stale @int@)",
                    what, err);
  if (!rc && !(rc = store_prep(r->s, fill, &st, err))) {
    db_bind_int64(st, 1, r->run);
    rc = rec_step(r, st, what, err);
    db_finalize(st);
  }
  if (!rc && db_analyze(r->s->db, "rec_sel"))
    rc = db_fail(r->s->db, err, what);
  if (!rc && !(rc = store_prep(r->s, update, &st, err))) {
    for (int64_t lo = 1; !rc && lo <= max; lo += EMAILS_CHUNK) {
      db_bind_int64(st, 1, r->run);
      db_bind_int64(st, 2, lo);
      db_bind_int64(st, 3, lo + EMAILS_CHUNK - 1);
      rc = rec_step(r, st, what, err);
    }
    db_finalize(st);
  }
  if (!rc)
    rc = store_exec(r->s, "DROP TABLE @temp@rec_sel", what, err);
  return rc;
}

/* Keep the newest `keep` runs, and every row one of them still needs. */
static int prune(struct rec *r, long keep, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int64_t oldest;
  int rc;

  /* Run ids can have gaps (a PostgreSQL sequence does not roll back with
     a failed run): the oldest kept run is the keep-th newest id. */
  oldest = rec_scalar(r->s,
                      "SELECT COALESCE(MIN(id), 0) FROM (SELECT id FROM runs"
                      " ORDER BY id DESC LIMIT ?) x",
                      keep);
  if (oldest < 0)
    return db_fail(r->s->db, err, "pruning old runs");
  if (rec_scalar(r->s, "SELECT count(*) FROM runs WHERE id < ?", oldest) <= 0)
    return CH_OK;
  if ((rc = store_prep(r->s, "DELETE FROM run_instances WHERE run_id < ?", &st,
                       err)))
    return rc;
  db_bind_int64(st, 1, oldest);
  rc = rec_step(r, st, "pruning old runs", err);
  db_finalize(st);
  if (!rc &&
      !(rc = store_prep(r->s, "DELETE FROM runs WHERE id < ?", &st, err))) {
    db_bind_int64(st, 1, oldest);
    rc = rec_step(r, st, "pruning old runs", err);
    db_finalize(st);
  }
  /* Each instance's rows are needed back to the oldest data run a kept
     run reads for it (a failed one answers from older data than the
     others); an instance no kept run reads needs none of its closed rows. */
  for (int t = 0; !rc && t < 3; t++) {
#define PRUNE(table)                                                           \
  "DELETE FROM " table " WHERE last_run IS NOT NULL AND last_run < COALESCE("  \
  "(SELECT MIN(ri.data_run) FROM run_instances ri WHERE ri.inst_id = " table   \
  ".inst_id AND ri.data_run IS NOT NULL), ?)"
    static const char *const del[] = {PRUNE("grants"), PRUNE("ent_ranges"),
                                      PRUNE("resources")};
#undef PRUNE
    if ((rc = store_prep(r->s, del[t], &st, err)))
      break;
    db_bind_int64(st, 1, r->run + 1);
    rc = rec_step(r, st, "pruning old rows", err);
    db_finalize(st);
  }
  return rc;
}

static void rec_release(struct rec *r) {
  buf_free(&r->text[0]);
  buf_free(&r->text[1]);
  for (int i = 0; i < ST_COUNT; i++)
    db_finalize(r->st[i]);
  for (int i = 0; i < B_COUNT; i++)
    batch_free(&r->b[i]);
  free(r->insts);
  free(r->by_id);
  free(r->node_id);
  free(r->ident_id);
  free(r->ent_id);
  free(r->ent_inst);
  free(r->cur);
  free(r->seen);
}

int store_record(struct store *s, const struct graph *g, int64_t started_ms,
                 long keep_runs, int64_t *run_id, struct ch_err *err) {
  struct rec r = {0};
  size_t nnodes = graph_nnodes(g), nid = graph_nidentities(g);
  size_t nents = graph_nentitlements(g), i;
  int64_t maxinst;
  int bulk, rc = CH_OK;

  if (db_begin(s->db, 1))
    return db_fail(s->db, err, "starting to record the run");
  r.s = s;
  r.g = g;
  r.ninsts = graph_ninstances(g);
  r.insts = calloc(r.ninsts ? r.ninsts : 1, sizeof(*r.insts));
  r.node_id = calloc(nnodes ? nnodes : 1, sizeof(*r.node_id));
  r.ident_id = calloc(nid ? nid : 1, sizeof(*r.ident_id));
  r.ent_id = calloc(nents ? nents : 1, sizeof(*r.ent_id));
  r.ent_inst = calloc(nents ? nents : 1, sizeof(*r.ent_inst));
  if (!r.insts || !r.node_id || !r.ident_id || !r.ent_id || !r.ent_inst) {
    rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  for (i = 0; i < ST_COUNT && !rc; i++)
    rc = store_prep(s, rec_sql[i], &r.st[i], err);
  for (i = 0; i < B_COUNT; i++)
    batch_init(&r.b[i], rec_ins[i].head, rec_ins[i].ncols, rec_ins[i].what);
  if (!rc)
    rc = rec_run(&r, started_ms, err);
  if (rc)
    goto out;
  maxinst = rec_scalar(s, "SELECT COALESCE(MAX(id), 0) FROM instances", 0);
  if (maxinst < 0) {
    rc = db_fail(s->db, err, "reading instances");
    goto out;
  }
  r.nby_id = (size_t)maxinst + 1;
  r.by_id = calloc(r.nby_id, sizeof(*r.by_id));
  if (!r.by_id) {
    rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  for (i = 0; i < r.ninsts; i++)
    r.by_id[r.insts[i].id] = &r.insts[i];
  for (i = 0; i < nents; i++) {
    struct graph_ent_view ev;
    graph_entitlement_view(g, i, &ev);
    graph_resource_key(g, ev.resource, &r.ent_inst[i]);
  }
  /* The first run inserts everything: building the indexes of grants by
     principal and resources by identity once afterwards is cheaper than
     keeping them up to date row by row. */
  bulk = rec_scalar(s, "SELECT count(*) FROM (SELECT 1 FROM grants LIMIT ?) x",
                    1) == 0;
  if (bulk && (rc = store_exec(s, "DROP INDEX IF EXISTS grants_principal",
                               "indexing grants", err)))
    goto out;
  rc = intern(&r, "SELECT id, key FROM nodes ORDER BY key", nnodes, node_key_at,
              r.node_id, &r.b[B_NODE], node_insert, err);
  if (!rc)
    rc = intern(&r, "SELECT id, key FROM identities ORDER BY key", nid,
                ident_key_at, r.ident_id, &r.b[B_IDENT], ident_insert, err);
  if (!rc)
    rc = intern(&r, "SELECT id, key FROM entitlements ORDER BY key", nents,
                ent_key_at, r.ent_id, &r.b[B_ENT], ent_insert, err);
  if (!rc && bulk)
    rc = store_exec(s, "DROP INDEX IF EXISTS resources_identity",
                    "indexing resources", err);
  if (!rc)
    rc = rec_resources(&r, err);
  if (!rc && bulk)
    rc = store_exec(s,
                    "CREATE INDEX resources_identity ON resources(identity_id)",
                    "indexing resources", err);
  if (!rc)
    rc = rec_identity_emails(&r, err);
  if (!rc)
    rc = rec_grants(&r, err);
  if (!rc && bulk)
    rc = store_exec(s, "CREATE INDEX grants_principal ON grants(principal_id)",
                    "indexing grants", err);
  if (!rc && keep_runs > 0)
    rc = prune(&r, keep_runs, err);
out:
  rec_release(&r);
  if (rc) {
    db_rollback(s->db);
    return rc;
  }
  rc = db_commit(s->db) ? db_fail(s->db, err, "committing the run") : CH_OK;
  if (!rc && run_id)
    *run_id = r.run;
  return rc;
}

/* One writer at a time in this process: serve's tenants finish runs on
   their own threads, and SQLite would make all but one wait on its lock
   (and give up after the busy timeout). Across processes db_begin(write)
   serializes them (SQLite's write lock, PostgreSQL's advisory lock). Each
   save opens its own connection and closes it. */
static pthread_mutex_t save_lock = PTHREAD_MUTEX_INITIALIZER;

void store_writer_lock(void) { pthread_mutex_lock(&save_lock); }
void store_writer_unlock(void) { pthread_mutex_unlock(&save_lock); }

int store_save(const char *path, const struct graph *g, int64_t started_ms,
               long keep_runs, int64_t *run_id, struct ch_err *err) {
  return store_save_as(path, NULL, g, started_ms, keep_runs, run_id, err);
}

void store_set_replica(struct store *s, const char *replica) {
  s->replica = replica;
}

int store_save_as(const char *path, const char *replica, const struct graph *g,
                  int64_t started_ms, long keep_runs, int64_t *run_id,
                  struct ch_err *err) {
  struct store *s = NULL;
  int rc;

  pthread_mutex_lock(&save_lock);
  rc = store_open(path, 1, &s, err);
  if (!rc) {
    store_set_replica(s, replica);
    rc = store_record(s, g, started_ms, keep_runs, run_id, err);
  }
  store_close(s);
  pthread_mutex_unlock(&save_lock);
  return rc;
}
