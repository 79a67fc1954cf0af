/* SPDX-License-Identifier: MIT */
/* The snapshot store on SQLite: schema and migrations, recording a run from
   the finished graph, and the read queries (docs/store.md). */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "graph.h"
#include "store.h"
#include "util.h"

/*
 * History without copies: every row carries the range of runs in which it
 * was seen, first_run .. last_run, where last_run NULL means "still there
 * in its instance's latest good run". A run touches only what changed: new
 * rows are inserted, rows that went away or changed get their last_run
 * set to the instance's previous good run. The data of instance I as of
 * run R is every row of I with first_run <= D <= last_run (or last_run
 * NULL), where D = run_instances.data_run: R itself when I succeeded in R,
 * else I's last good run (so a failed instance answers from its last good
 * data). Keys are interned once (nodes, entitlements, identities) and rows
 * refer to them by integer id.
 */

/* ---- schema -------------------------------------------------------------- */

/* Version 1, as the first store shipped it. A new store is created by
   running every step in order, so the upgrade path is the tested path. */
static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE runs(id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,"
    " finished_at INTEGER NOT NULL, status TEXT NOT NULL);"
    "CREATE TABLE instances(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL,"
    " name TEXT NOT NULL, plugin TEXT NOT NULL, UNIQUE(tenant, name));"
    "CREATE TABLE run_instances(run_id INTEGER NOT NULL,"
    " inst_id INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,"
    " data_run INTEGER, plugin_version TEXT,"
    " resources INTEGER NOT NULL DEFAULT 0, grants INTEGER NOT NULL DEFAULT 0,"
    " derived INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,"
    " retries INTEGER NOT NULL DEFAULT 0, warnings INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(run_id, inst_id)) WITHOUT ROWID;"
    "CREATE TABLE nodes(id INTEGER PRIMARY KEY, inst_id INTEGER NOT NULL,"
    " key TEXT NOT NULL UNIQUE, type TEXT NOT NULL, rid TEXT NOT NULL,"
    " traits TEXT NOT NULL);"
    "CREATE TABLE identities(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " tenant TEXT NOT NULL);"
    "CREATE TABLE resources(node_id INTEGER NOT NULL,"
    " first_run INTEGER NOT NULL, last_run INTEGER, inst_id INTEGER NOT NULL,"
    " h INTEGER NOT NULL, display_name TEXT, status TEXT, account_type TEXT,"
    " emails TEXT NOT NULL, match_keys TEXT NOT NULL, parent_id INTEGER,"
    " identity_id INTEGER, profile TEXT, PRIMARY KEY(node_id, first_run))"
    " WITHOUT ROWID;"
    "CREATE INDEX resources_identity ON resources(identity_id);"
    "CREATE TABLE entitlements(id INTEGER PRIMARY KEY,"
    " node_id INTEGER NOT NULL, inst_id INTEGER NOT NULL,"
    " key TEXT NOT NULL UNIQUE, slug TEXT NOT NULL, display_name TEXT);"
    "CREATE INDEX entitlements_node ON entitlements(node_id);"
    "CREATE TABLE ent_ranges(ent_id INTEGER NOT NULL,"
    " first_run INTEGER NOT NULL, last_run INTEGER, inst_id INTEGER NOT NULL,"
    " PRIMARY KEY(ent_id, first_run)) WITHOUT ROWID;"
    "CREATE TABLE grants(ent_id INTEGER NOT NULL,"
    " principal_id INTEGER NOT NULL, first_run INTEGER NOT NULL,"
    " last_run INTEGER, inst_id INTEGER NOT NULL, direct INTEGER NOT NULL,"
    " via TEXT, expandable INTEGER,"
    " PRIMARY KEY(ent_id, principal_id, first_run)) WITHOUT ROWID;";

/* Version 2: when each instance's data was taken (the age of stale data),
   and an index for "what does this principal hold". */
static const char schema_v2[] =
    "ALTER TABLE run_instances ADD COLUMN data_at INTEGER;"
    "UPDATE run_instances SET data_at = (SELECT finished_at FROM runs"
    " WHERE runs.id = run_instances.data_run);"
    "CREATE INDEX grants_principal ON grants(principal_id);";

static const char *const migrations[STORE_SCHEMA_VERSION] = {schema_v1,
                                                             schema_v2};

/* SQL reads better as written than re-wrapped. */
/* clang-format off */

/* Row visibility in a selection `s` (inst_id, data_run): see the top. */
#define VIS(t, s) \
  t ".first_run <= " s ".data_run AND (" t ".last_run IS NULL OR " \
  t ".last_run >= " s ".data_run)"

/*
 * The named views, written once over a selection table @S@ (inst_id,
 * data_run, stale): the stable views in the file use `latest_sel`, the
 * commands a temp table for the run they were asked about.
 */
static const char view_resources[] =
    "SELECT n.id AS node_id, n.key AS key, i.tenant AS tenant, i.name AS"
    " instance, n.type AS type, n.rid AS id, r.display_name AS"
    " display_name, n.traits AS traits, r.status AS status,"
    " r.account_type AS account_type, r.emails AS emails, r.match_keys AS"
    " match_keys, p.key AS parent, d.key AS identity, r.identity_id AS"
    " identity_id, r.profile AS profile, s.stale AS stale, i.plugin AS"
    " plugin FROM @S@ s JOIN resources r ON r.inst_id = s.inst_id AND "
    VIS("r", "s")
    " JOIN nodes n ON n.id = r.node_id JOIN instances i ON i.id ="
    " s.inst_id LEFT JOIN nodes p ON p.id = r.parent_id LEFT JOIN"
    " identities d ON d.id = r.identity_id";

static const char view_grants[] =
    "SELECT g.ent_id AS ent_id, g.principal_id AS principal_id, i.tenant"
    " AS tenant, i.name AS instance, e.key AS entitlement, e.slug AS"
    " slug, en.key AS resource, er.display_name AS resource_name, en.type"
    " AS resource_type, pn.key AS principal, pr.display_name AS"
    " principal_name, pn.type AS principal_type, pr.emails AS"
    " principal_emails, pr.status AS principal_status, pr.account_type AS"
    " principal_account_type, d.key AS identity, pr.identity_id AS"
    " identity_id, g.direct AS direct,"
    /* most grants have no via: no subquery for them */
    " CASE WHEN g.via IS NULL THEN '[]' ELSE"
    " (SELECT json_group_array(ve.key) FROM json_each(g.via) j"
    " JOIN entitlements ve ON ve.id = j.value) END AS via,"
    " CASE WHEN g.via IS NULL THEN '[]' ELSE"
    " (SELECT json_group_array(COALESCE(vr.display_name, vn.key))"
    " FROM json_each(g.via) j JOIN entitlements ve ON ve.id = j.value"
    " JOIN nodes vn ON vn.id = ve.node_id LEFT JOIN resources vr ON"
    " vr.node_id = ve.node_id AND " VIS("vr", "s") ") END AS via_names,"
    " s.stale AS stale FROM @S@ s JOIN grants g ON"
    " g.inst_id = s.inst_id AND " VIS("g", "s")
    " JOIN instances i ON i.id = s.inst_id JOIN entitlements e ON e.id ="
    " g.ent_id JOIN nodes en ON en.id = e.node_id LEFT JOIN resources er"
    " ON er.node_id = e.node_id AND " VIS("er", "s")
    " JOIN nodes pn ON pn.id = g.principal_id LEFT JOIN resources pr ON"
    " pr.node_id = g.principal_id AND " VIS("pr", "s")
    " LEFT JOIN identities d ON d.id = pr.identity_id";

/* The latest run's selection, for the stable views. */
static const char view_latest_sel[] =
    "CREATE VIEW latest_sel AS SELECT inst_id, data_run, data_at, status"
    " <> 'ok' AS stale FROM run_instances WHERE run_id = (SELECT MAX(id)"
    " FROM runs) AND data_run IS NOT NULL;";

/* clang-format on */

/* ---- small helpers ------------------------------------------------------- */

struct store {
  sqlite3 *db;
  char *path;
  int64_t run, from; /* store_select */
  int64_t lo, hi;    /* diff: rows whose range starts or ends in (lo, hi] */
  const struct store_params *p; /* borrowed from store_select */
};

struct store_cursor {
  struct store *s;
  sqlite3_stmt *st;
  size_t ncols;
  enum store_kind kinds[32];
};

static int db_err(struct store *s, struct ch_err *err, const char *what) {
  int code = sqlite3_errcode(s->db);
  const char *msg = sqlite3_errmsg(s->db);

  if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
    return ch_err_set(err, CH_E_IO,
                      "store '%s' is locked by another process (%s); wait for "
                      "it to finish or stop it",
                      s->path, what);
  if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
    return ch_err_set(err, CH_E_IO,
                      "store '%s' is corrupt or not a connhost store (%s: "
                      "%s); move it away and sync again to start a new one",
                      s->path, what, msg);
  if (code == SQLITE_NOMEM)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  if (code == SQLITE_FULL || code == SQLITE_IOERR || code == SQLITE_READONLY ||
      code == SQLITE_CANTOPEN)
    return ch_err_set(err, CH_E_IO, "store '%s': %s: %s", s->path, what, msg);
  return ch_err_set(err, CH_E_IO, "store '%s': %s: %s", s->path, what, msg);
}

static int exec(struct store *s, const char *sql, const char *what,
                struct ch_err *err) {
  if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return db_err(s, err, what);
  return CH_OK;
}

static int prep(struct store *s, const char *sql, sqlite3_stmt **st,
                struct ch_err *err) {
  if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
    return db_err(s, err, "preparing a query");
  return CH_OK;
}

/* `tmpl` with every "@S@" replaced by `sel`. malloc'd. */
static char *subst(const char *tmpl, const char *sel) {
  size_t n = 0, sl = strlen(sel);
  const char *p;
  char *out, *o;

  for (p = tmpl; (p = strstr(p, "@S@")); p += 3)
    n++;
  out = malloc(strlen(tmpl) + n * sl + 1);
  if (!out)
    return NULL;
  for (o = out, p = tmpl; *p;) {
    if (strncmp(p, "@S@", 3) == 0) {
      memcpy(o, sel, sl);
      o += sl;
      p += 3;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
  return out;
}

/* CREATE [TEMP] VIEW name AS prefix + tmpl over `sel`. */
static int make_view(struct store *s, int temp, const char *name,
                     const char *prefix, const char *tmpl, const char *sel,
                     struct ch_err *err) {
  char *body = subst(tmpl, sel), *sql = NULL;
  int rc = CH_E_NOMEM;

  if (!body)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  sql = sqlite3_mprintf("CREATE %sVIEW %s AS %s%s", temp ? "TEMP " : "", name,
                        prefix, body);
  if (sql)
    rc = exec(s, sql, "creating a view", err);
  else
    ch_err_set(err, rc, "out of memory");
  sqlite3_free(sql);
  free(body);
  return rc;
}

/* The stable views (docs/store.md), recreated whenever the schema moves. */
static int make_views(struct store *s, struct ch_err *err) {
  static const char drop[] =
      "DROP VIEW IF EXISTS access; DROP VIEW IF EXISTS grants_named;"
      "DROP VIEW IF EXISTS resources_named; DROP VIEW IF EXISTS latest_sel;";
  int rc = exec(s, drop, "dropping the views", err);

  if (!rc)
    rc = exec(s, view_latest_sel, "creating a view", err);
  if (!rc)
    rc = make_view(s, 0, "resources_named", "", view_resources, "latest_sel",
                   err);
  if (!rc)
    rc = make_view(s, 0, "grants_named", "", view_grants, "latest_sel", err);
  if (!rc)
    rc = exec(s,
              "CREATE VIEW access AS SELECT tenant, identity, principal,"
              " principal_name, principal_emails, principal_status,"
              " principal_account_type, entitlement, resource, resource_name,"
              " resource_type, slug, direct, via, via_names, stale"
              " FROM grants_named WHERE identity IS NOT NULL;",
              "creating a view", err);
  return rc;
}

static int schema_version(struct store *s, long *v, struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  int rc, tables = 0;

  *v = 0;
  rc = prep(s, "SELECT count(*) FROM sqlite_master", &st, err);
  if (rc)
    return rc;
  if (sqlite3_step(st) == SQLITE_ROW)
    tables = sqlite3_column_int(st, 0);
  else
    rc = db_err(s, err, "reading the schema");
  sqlite3_finalize(st);
  if (rc || !tables)
    return rc;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT value FROM meta WHERE key = 'schema_version'",
                         -1, &st, NULL) != SQLITE_OK)
    return ch_err_set(err, CH_E_CONFIG,
                      "'%s' is an SQLite file but not a connhost store (no "
                      "schema version); point 'store:' or --db elsewhere",
                      s->path);
  if (sqlite3_step(st) == SQLITE_ROW)
    *v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (*v <= 0)
    return ch_err_set(err, CH_E_CONFIG,
                      "'%s' is not a connhost store (no schema version)",
                      s->path);
  return CH_OK;
}

static int migrate(struct store *s, struct ch_err *err) {
  long v;
  char sql[96];
  int rc = schema_version(s, &v, err);

  /* Readers of a current store take no write lock (they may run while a
     sync records); a migration takes it and checks again. */
  if (rc || v == STORE_SCHEMA_VERSION)
    return rc;
  rc = exec(s, "BEGIN IMMEDIATE", "starting a migration", err);
  if (rc)
    return rc;
  rc = schema_version(s, &v, err);
  if (rc)
    goto out;
  if (v > STORE_SCHEMA_VERSION) {
    rc = ch_err_set(err, CH_E_CONFIG,
                    "store '%s' has schema version %ld, newer than this "
                    "connhost's %d: upgrade connhost",
                    s->path, v, STORE_SCHEMA_VERSION);
    goto out;
  }
  if (v == STORE_SCHEMA_VERSION)
    goto out;
  for (; v < STORE_SCHEMA_VERSION; v++) {
    rc = exec(s, migrations[v], "migrating the schema", err);
    if (rc)
      goto out;
  }
  snprintf(sql, sizeof(sql),
           "INSERT OR REPLACE INTO meta VALUES('schema_version', '%d')",
           STORE_SCHEMA_VERSION);
  rc = exec(s, sql, "migrating the schema", err);
  if (!rc)
    rc = make_views(s, err);
out:
  if (rc) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  return exec(s, "COMMIT", "committing a migration", err);
}

int store_open(const char *path, int create, struct store **out,
               struct ch_err *err) {
  struct store *s = calloc(1, sizeof(*s));
  struct stat sb;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  int rc = CH_E_NOMEM;

  *out = NULL;
  if (!s || !(s->path = strdup(path))) {
    ch_err_set(err, rc, "out of memory");
    goto fail;
  }
  if (stat(path, &sb) != 0) {
    if (!create) {
      rc = ch_err_set(err, CH_E_CONFIG,
                      "store '%s' does not exist: run 'connhost sync' first, "
                      "or give --db PATH",
                      path);
      goto fail;
    }
    flags |= SQLITE_OPEN_CREATE;
  }
  if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
    rc = db_err(s, err, "opening");
    goto fail;
  }
  /* A sync holds the write lock for one transaction; readers wait a
     little, then say who holds it. */
  sqlite3_busy_timeout(s->db, 2000);
  rc = exec(s, "PRAGMA journal_mode = WAL", "opening", err);
  if (!rc)
    rc = exec(s, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -8192;",
              "opening", err);
  if (!rc)
    rc = migrate(s, err);
  if (rc)
    goto fail;
  *out = s;
  return CH_OK;
fail:
  store_close(s);
  return rc;
}

void store_close(struct store *s) {
  if (!s)
    return;
  sqlite3_close(s->db);
  free(s->path);
  free(s);
}

/* ---- recording a run ----------------------------------------------------- */

/* Statements used while recording, in one transaction. */
enum {
  ST_NODE_INS,
  ST_IDENT_INS,
  ST_ENT_INS,
  ST_RES_INS,
  ST_RES_CLOSE,
  ST_RANGE_INS,
  ST_RANGE_CLOSE,
  ST_GRANT_CUR,
  ST_GRANT_INS,
  ST_GRANT_CLOSE,
  ST_GRANT_CLOSE_ENT,
  ST_COUNT
};

static const char *const rec_sql[ST_COUNT] = {
    "INSERT INTO nodes(inst_id, key, type, rid, traits) VALUES(?,?,?,?,?)",
    "INSERT INTO identities(key, tenant) VALUES(?,?)",
    "INSERT INTO entitlements(node_id, inst_id, key, slug, display_name)"
    " VALUES(?,?,?,?,?)",
    "INSERT INTO resources(node_id, first_run, inst_id, h, display_name,"
    " status, account_type, emails, match_keys, parent_id, identity_id,"
    " profile) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
    "UPDATE resources SET last_run = ? WHERE node_id = ? AND first_run = ?",
    "INSERT INTO ent_ranges(ent_id, first_run, inst_id) VALUES(?,?,?)",
    "UPDATE ent_ranges SET last_run = ? WHERE ent_id = ? AND first_run = ?",
    "SELECT principal_id, first_run, direct, via, expandable FROM grants"
    " WHERE ent_id = ? AND last_run IS NULL ORDER BY principal_id",
    "INSERT INTO grants(ent_id, principal_id, first_run, inst_id, direct,"
    " via, expandable) VALUES(?,?,?,?,?,?,?)",
    "UPDATE grants SET last_run = ? WHERE ent_id = ? AND principal_id = ?"
    " AND first_run = ?",
    "UPDATE grants SET last_run = ? WHERE ent_id = ? AND last_run IS NULL"};

struct rinst { /* one graph instance in the store */
  int64_t id;
  int64_t last_good; /* its previous data_run; 0 = none */
  int ok;
};

/* What the store holds now for one interned id (node or entitlement). */
struct cur {
  int64_t first_run; /* 0 = no current row */
  int64_t h;
  int seen;
};

struct rec {
  struct store *s;
  const struct graph *g;
  sqlite3_stmt *st[ST_COUNT];
  int64_t run;
  struct rinst *insts;
  size_t ninsts;
  struct rinst **by_id; /* store instance id -> rinst (or NULL) */
  size_t nby_id;
  int64_t *node_id; /* by graph rank; 0 = not in the output */
  int64_t *ident_id;
  int64_t *ent_id;
  size_t *ent_inst; /* graph instance index of each entitlement */
  struct cur *cur;  /* by store id (nodes, then reused for entitlements) */
  size_t ncur;
};

static int step_done(struct rec *r, sqlite3_stmt *st, const char *what,
                     struct ch_err *err) {
  int rc = sqlite3_step(st);

  sqlite3_reset(st); /* every caller binds every parameter again */
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return db_err(r->s, err, what);
  return CH_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
  if (v)
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static void bind_id(sqlite3_stmt *st, int i, int64_t v) {
  if (v)
    sqlite3_bind_int64(st, i, v);
  else
    sqlite3_bind_null(st, i);
}

/* The first column of the first row (0 when none, -1 on error); `arg`
   binds ?1 when the statement has one. */
static int64_t scalar(struct store *s, const char *sql, int64_t arg) {
  sqlite3_stmt *st = NULL;
  int64_t v = 0;

  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_bind_parameter_count(st) > 0)
    sqlite3_bind_int64(st, 1, arg);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int64_t now_s(void) { return util_wall_ms() / 1000; }

/* The run row and one run_instances row per graph instance. */
static int rec_run(struct rec *r, int64_t started_ms, struct ch_err *err) {
  struct store *s = r->s;
  sqlite3_stmt *ins = NULL, *inst = NULL, *ri = NULL;
  size_t i, nok = 0;
  int rc;

  rc = prep(s,
            "INSERT INTO runs(started_at, finished_at, status)"
            " VALUES(?, ?, 'recording')",
            &ins, err);
  if (!rc)
    rc =
        prep(s,
             "INSERT INTO instances(tenant, name, plugin) VALUES(?,?,?)"
             " ON CONFLICT(tenant, name) DO UPDATE SET plugin = excluded.plugin"
             " RETURNING id",
             &inst, err);
  if (!rc)
    rc = prep(s,
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
  sqlite3_bind_int64(ins, 1, started_ms / 1000);
  sqlite3_bind_int64(ins, 2, now_s());
  if ((rc = step_done(r, ins, "recording the run", err)))
    goto out;
  r->run = sqlite3_last_insert_rowid(s->db);

  for (i = 0; i < r->ninsts; i++) {
    struct graph_inst_view v;
    struct rinst *in = &r->insts[i];
    int64_t last_ri;

    graph_instance_view(r->g, i, &v);
    bind_text(inst, 1, v.tenant);
    bind_text(inst, 2, v.instance);
    bind_text(inst, 3, v.plugin);
    if (sqlite3_step(inst) != SQLITE_ROW) {
      rc = db_err(s, err, "recording an instance");
      goto out;
    }
    in->id = sqlite3_column_int64(inst, 0);
    sqlite3_reset(inst);
    in->ok = v.ok;
    nok += v.ok != 0;
    last_ri = scalar(s,
                     "SELECT MAX(run_id) FROM run_instances WHERE inst_id = ?"
                     " AND data_run IS NOT NULL",
                     in->id);
    in->last_good = 0;
    if (last_ri > 0) {
      sqlite3_stmt *q = NULL;
      if ((rc = prep(s,
                     "SELECT data_run FROM run_instances WHERE run_id = ? AND"
                     " inst_id = ?",
                     &q, err)))
        goto out;
      sqlite3_bind_int64(q, 1, last_ri);
      sqlite3_bind_int64(q, 2, in->id);
      in->last_good =
          sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
      sqlite3_finalize(q);
    }
    sqlite3_bind_int64(ri, 1, r->run);
    sqlite3_bind_int64(ri, 2, in->id);
    bind_text(ri, 3, v.ok ? "ok" : "failed");
    bind_text(ri, 4, v.error);
    bind_id(ri, 5, in->last_good);
    bind_text(ri, 6, v.plugin_version);
    sqlite3_bind_int64(ri, 7, (sqlite3_int64)v.resources);
    sqlite3_bind_int64(ri, 8, (sqlite3_int64)v.grants);
    sqlite3_bind_int64(ri, 9, (sqlite3_int64)v.requests);
    sqlite3_bind_int64(ri, 10, (sqlite3_int64)v.retries);
    sqlite3_bind_int64(ri, 11, (sqlite3_int64)v.warnings);
    sqlite3_bind_int64(ri, 12, now_s());
    sqlite3_bind_int64(ri, 13, last_ri > 0 ? last_ri : 0);
    if ((rc = step_done(r, ri, "recording an instance", err)))
      goto out;
  }
  /* Instances the previous run had and this one did not sync (another
     --tenant, or removed from the config) keep answering, marked stale. */
  {
    sqlite3_stmt *c = NULL;
    if ((rc = prep(s,
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
    sqlite3_bind_int64(c, 1, r->run);
    rc = step_done(r, c, "recording the run", err);
    sqlite3_finalize(c);
    if (rc)
      goto out;
  }
  {
    sqlite3_stmt *u = NULL;
    if ((rc = prep(s, "UPDATE runs SET status = ? WHERE id = ?", &u, err)))
      goto out;
    bind_text(u, 1, nok == r->ninsts ? "ok" : nok ? "partial" : "failed");
    sqlite3_bind_int64(u, 2, r->run);
    rc = step_done(r, u, "recording the run", err);
    sqlite3_finalize(u);
  }
out:
  sqlite3_finalize(ins);
  sqlite3_finalize(inst);
  sqlite3_finalize(ri);
  return rc;
}

/* FNV-1a over the fields, each followed by a separator byte. */
static uint64_t fnv(uint64_t h, const char *s) {
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
  return fnv(h, b);
}

static char *json_strv(const char *const *v, size_t n) {
  struct json_object *a = json_object_new_array();
  char *out = NULL;

  if (!a)
    return NULL;
  for (size_t i = 0; v && (n == (size_t)-1 ? v[i] != NULL : i < n); i++)
    json_object_array_add(a, json_object_new_string(v[i]));
  out = strdup(json_object_to_json_string_ext(
      a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(a);
  return out;
}

static char *traits_json(unsigned traits) {
  const char *names[8];
  size_t n = 0;

  for (unsigned bit = 1; bit && n < 8; bit <<= 1) {
    const char *t = (traits & bit) ? graph_trait_name(bit) : NULL;
    if (t)
      names[n++] = t;
  }
  return json_strv(names, n);
}

static struct rinst *rinst_of(struct rec *r, int64_t inst_id) {
  return inst_id >= 0 && (size_t)inst_id < r->nby_id ? r->by_id[inst_id] : NULL;
}

/*
 * Intern keys: walk the store's keys and the graph's (both in byte order:
 * SQLite's BINARY collation is memcmp, the graph sorts with strcmp) and
 * insert the graph's new ones after the walk.
 */
typedef const char *(*key_at_fn)(const struct graph *g, size_t i);

static int intern(struct rec *r, const char *select_sql, size_t n,
                  key_at_fn key_at, int64_t *ids,
                  int (*insert)(struct rec *r, size_t i, int64_t *id,
                                struct ch_err *err),
                  struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  size_t i = 0;
  int rc = prep(r->s, select_sql, &st, err), step;

  if (rc)
    return rc;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *k = (const char *)sqlite3_column_text(st, 1);
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
      ids[i++] = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  if (step != SQLITE_DONE)
    return db_err(r->s, err, "reading keys");
  for (i = 0; i < n; i++) {
    if (!ids[i] && key_at(r->g, i) && (rc = insert(r, i, &ids[i], err)))
      return rc;
  }
  return CH_OK;
}

static const char *node_key_at(const struct graph *g, size_t i) {
  struct graph_res_view v;
  return graph_resource_view(g, i, &v) ? v.key : NULL;
}

static int node_insert(struct rec *r, size_t i, int64_t *id,
                       struct ch_err *err) {
  sqlite3_stmt *st = r->st[ST_NODE_INS];
  struct graph_res_view v;
  char *traits;
  int rc;

  graph_resource_view(r->g, i, &v);
  traits = traits_json(v.traits);
  if (!traits)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  sqlite3_bind_int64(st, 1, r->insts[v.inst].id);
  bind_text(st, 2, v.key);
  bind_text(st, 3, v.type);
  bind_text(st, 4, v.id);
  bind_text(st, 5, traits);
  rc = step_done(r, st, "recording a resource", err);
  free(traits);
  *id = sqlite3_last_insert_rowid(r->s->db);
  return rc;
}

static const char *ident_key_at(const struct graph *g, size_t i) {
  struct graph_ident_view v;
  graph_identity_view(g, i, &v);
  return v.key;
}

static int ident_insert(struct rec *r, size_t i, int64_t *id,
                        struct ch_err *err) {
  sqlite3_stmt *st = r->st[ST_IDENT_INS];
  struct graph_ident_view v;
  int rc;

  graph_identity_view(r->g, i, &v);
  bind_text(st, 1, v.key);
  bind_text(st, 2, v.tenant);
  rc = step_done(r, st, "recording an identity", err);
  *id = sqlite3_last_insert_rowid(r->s->db);
  return rc;
}

static const char *ent_key_at(const struct graph *g, size_t i) {
  struct graph_ent_view v;
  graph_entitlement_view(g, i, &v);
  return v.key;
}

static int ent_insert(struct rec *r, size_t i, int64_t *id,
                      struct ch_err *err) {
  sqlite3_stmt *st = r->st[ST_ENT_INS];
  struct graph_ent_view v;
  int rc;

  graph_entitlement_view(r->g, i, &v);
  sqlite3_bind_int64(st, 1, r->node_id[v.resource]);
  sqlite3_bind_int64(st, 2, r->insts[r->ent_inst[i]].id);
  bind_text(st, 3, v.key);
  bind_text(st, 4, v.slug);
  bind_text(st, 5, v.display_name);
  rc = step_done(r, st, "recording an entitlement", err);
  *id = sqlite3_last_insert_rowid(r->s->db);
  return rc;
}

/* Load the current (last_run NULL) rows of `table` into r->cur by id. */
static int load_current(struct rec *r, const char *sql, int64_t max_id,
                        struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  int rc, step;

  if (max_id < 0)
    return db_err(r->s, err, "reading the store");
  free(r->cur);
  r->ncur = (size_t)max_id + 1;
  r->cur = calloc(r->ncur, sizeof(*r->cur));
  if (!r->cur)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  if ((rc = prep(r->s, sql, &st, err)))
    return rc;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    if (id > 0 && id <= max_id) {
      r->cur[id].first_run = sqlite3_column_int64(st, 1);
      r->cur[id].h = sqlite3_column_int64(st, 2);
    }
  }
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? CH_OK : db_err(r->s, err, "reading the store");
}

/* Close the current rows of instances that succeeded and were not seen
   (collected first: no writes under a running SELECT). */
static int close_unseen(struct rec *r, const char *sql_inst, int close_st,
                        int grants_too, struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  int64_t *ids = NULL;
  size_t n = 0, cap = 0;
  int rc, step;

  if ((rc = prep(r->s, sql_inst, &st, err)))
    return rc;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    struct rinst *in = rinst_of(r, sqlite3_column_int64(st, 1));
    if (!in || !in->ok || id <= 0 || (size_t)id >= r->ncur || r->cur[id].seen ||
        !r->cur[id].first_run)
      continue;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      int64_t *g = realloc(ids, nc * 2 * sizeof(*ids));
      if (!g) {
        rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
        break;
      }
      ids = g;
      cap = nc;
    }
    ids[2 * n] = id;
    ids[2 * n + 1] = in->last_good;
    n++;
  }
  sqlite3_finalize(st);
  if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
    rc = db_err(r->s, err, "reading the store");
  for (size_t i = 0; !rc && i < n; i++) {
    sqlite3_stmt *c = r->st[close_st];
    sqlite3_bind_int64(c, 1, ids[2 * i + 1]);
    sqlite3_bind_int64(c, 2, ids[2 * i]);
    sqlite3_bind_int64(c, 3, r->cur[ids[2 * i]].first_run);
    rc = step_done(r, c, "closing a row", err);
    if (!rc && grants_too) {
      c = r->st[ST_GRANT_CLOSE_ENT];
      sqlite3_bind_int64(c, 1, ids[2 * i + 1]);
      sqlite3_bind_int64(c, 2, ids[2 * i]);
      rc = step_done(r, c, "closing grants", err);
    }
  }
  free(ids);
  return rc;
}

static int rec_resources(struct rec *r, struct ch_err *err) {
  size_t n = graph_nnodes(r->g), i;
  int64_t max = scalar(r->s, "SELECT COALESCE(MAX(id), 0) FROM nodes", 0);
  int rc = load_current(r,
                        "SELECT node_id, first_run, h FROM resources"
                        " WHERE last_run IS NULL",
                        max, err);

  for (i = 0; !rc && i < n; i++) {
    struct graph_res_view v;
    char *emails = NULL, *mks = NULL;
    const char *status[] = {NULL, "enabled", "disabled", "deleted"};
    const char *acct[] = {NULL, "human", "service", "customer"};
    int64_t id = r->node_id[i], parent, ident;
    uint64_t h = 14695981039346656037ull;
    struct cur *c;
    sqlite3_stmt *st;

    if (!graph_resource_view(r->g, i, &v) || !id)
      continue;
    c = &r->cur[id];
    parent = v.parent != GRAPH_NONE ? r->node_id[v.parent] : 0;
    ident = v.identity != GRAPH_NONE ? r->ident_id[v.identity] : 0;
    emails = json_strv(v.emails, (size_t)-1);
    mks = json_strv(v.match_keys, (size_t)-1);
    if (!emails || !mks) {
      free(emails);
      free(mks);
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
    }
    h = fnv(h, v.display_name);
    h = fnv(h, status[v.status]);
    h = fnv(h, acct[v.account_type]);
    h = fnv(h, emails);
    h = fnv(h, mks);
    h = fnv_i(h, parent);
    h = fnv_i(h, ident);
    h = fnv(h, v.profile);
    c->seen = 1;
    if (c->first_run && c->h == (int64_t)h) {
      free(emails);
      free(mks);
      continue;
    }
    if (c->first_run) {
      st = r->st[ST_RES_CLOSE];
      sqlite3_bind_int64(st, 1, r->insts[v.inst].last_good);
      sqlite3_bind_int64(st, 2, id);
      sqlite3_bind_int64(st, 3, c->first_run);
      rc = step_done(r, st, "recording a resource", err);
    }
    st = r->st[ST_RES_INS];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, r->run);
    sqlite3_bind_int64(st, 3, r->insts[v.inst].id);
    sqlite3_bind_int64(st, 4, (int64_t)h);
    bind_text(st, 5, v.display_name);
    bind_text(st, 6, status[v.status]);
    bind_text(st, 7, acct[v.account_type]);
    bind_text(st, 8, emails);
    bind_text(st, 9, mks);
    bind_id(st, 10, parent);
    bind_id(st, 11, ident);
    bind_text(st, 12, v.profile);
    if (!rc)
      rc = step_done(r, st, "recording a resource", err);
    free(emails);
    free(mks);
  }
  if (!rc)
    rc = close_unseen(r,
                      "SELECT node_id, inst_id FROM resources"
                      " WHERE last_run IS NULL",
                      ST_RES_CLOSE, 0, err);
  return rc;
}

/* One graph grant in store ids, for the per-entitlement merge. Kept small
   (the largest entitlement's grants are held at once): `via` is compared by
   hash and written out again from the graph when inserted. */
struct ggrant {
  int64_t principal, expandable;
  uint64_t via_h; /* hash of the via text, 0 = none */
  size_t index;   /* in graph_grant_view */
  int direct;
};

static int cmp_ggrant(const void *a, const void *b) {
  const struct ggrant *x = a, *y = b;
  return (x->principal > y->principal) - (x->principal < y->principal);
}

/* A grant's sources as the JSON array of their entitlement ids, or NULL
   when it has none. malloc'd into *out. */
static int via_text(const struct rec *r, const struct graph_grant_view *v,
                    char **out) {
  size_t cap = v->nsources * 24 + 3, used = 0;
  char *t;

  *out = NULL;
  if (!v->nsources)
    return CH_OK;
  t = malloc(cap);
  if (!t)
    return CH_E_NOMEM;
  for (size_t k = 0; k < v->nsources; k++)
    used += (size_t)snprintf(t + used, cap - used, "%s%" PRId64, k ? "," : "[",
                             r->ent_id[v->sources[k]]);
  snprintf(t + used, cap - used, "]");
  *out = t;
  return CH_OK;
}

static uint64_t via_hash(const char *via) {
  return via && *via ? fnv(14695981039346656037ull, via) : 0;
}

static int grant_insert(struct rec *r, int64_t ent, int64_t inst,
                        const struct ggrant *gg, struct ch_err *err) {
  sqlite3_stmt *st = r->st[ST_GRANT_INS];
  struct graph_grant_view v;
  char *via = NULL;
  int rc;

  graph_grant_view(r->g, gg->index, &v);
  if (via_text(r, &v, &via))
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  sqlite3_bind_int64(st, 1, ent);
  sqlite3_bind_int64(st, 2, gg->principal);
  sqlite3_bind_int64(st, 3, r->run);
  sqlite3_bind_int64(st, 4, inst);
  sqlite3_bind_int(st, 5, gg->direct);
  bind_text(st, 6, via);
  bind_id(st, 7, gg->expandable);
  rc = step_done(r, st, "recording a grant", err);
  free(via);
  return rc;
}

static int grant_close(struct rec *r, int64_t ent, int64_t principal,
                       int64_t first, int64_t last, struct ch_err *err) {
  sqlite3_stmt *st = r->st[ST_GRANT_CLOSE];

  sqlite3_bind_int64(st, 1, last);
  sqlite3_bind_int64(st, 2, ent);
  sqlite3_bind_int64(st, 3, principal);
  sqlite3_bind_int64(st, 4, first);
  return step_done(r, st, "recording a grant", err);
}

static int ggrant_fill(struct rec *r, size_t index, struct ggrant *gg) {
  struct graph_grant_view v;
  char *via = NULL;

  graph_grant_view(r->g, index, &v);
  if (via_text(r, &v, &via))
    return CH_E_NOMEM;
  gg->principal = r->node_id[v.principal];
  gg->direct = v.direct;
  gg->expandable = v.expandable != GRAPH_NONE ? r->ent_id[v.expandable] : 0;
  gg->via_h = via_hash(via);
  gg->index = index;
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
  sqlite3_stmt *cur = r->st[ST_GRANT_CUR];
  int step;

  *n = 0;
  sqlite3_bind_int64(cur, 1, ent);
  while ((step = sqlite3_step(cur)) == SQLITE_ROW) {
    const char *via = (const char *)sqlite3_column_text(cur, 3);
    struct srow *x;
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 256;
      struct srow *g = realloc(*rows, nc * sizeof(**rows));
      if (!g) {
        sqlite3_reset(cur);
        return ch_err_set(err, CH_E_NOMEM, "out of memory");
      }
      *rows = g;
      *cap = nc;
    }
    x = &(*rows)[(*n)++];
    x->principal = sqlite3_column_int64(cur, 0);
    x->first = sqlite3_column_int64(cur, 1);
    x->direct = sqlite3_column_int(cur, 2);
    x->expandable = sqlite3_column_int64(cur, 4);
    x->via_h = via_hash(via);
  }
  sqlite3_reset(cur);
  return step == SQLITE_DONE ? CH_OK : db_err(r->s, err, "reading grants");
}

/* Merge one entitlement's graph grants (sorted here by principal id) with
   the store's current rows for it (sorted by the query). */
static int merge_ent(struct rec *r, int64_t ent, const struct rinst *in,
                     struct ggrant *gs, size_t n, const struct srow *rows,
                     size_t nrows, struct ch_err *err) {
  size_t i = 0, k;
  int rc = CH_OK;

  if (n) /* gs may be NULL then, and qsort's base must not be */
    qsort(gs, n, sizeof(*gs), cmp_ggrant);
  for (k = 0; !rc && k < nrows; k++) {
    const struct srow *x = &rows[k];
    for (; !rc && i < n && gs[i].principal < x->principal; i++)
      rc = grant_insert(r, ent, in->id, &gs[i], err);
    if (rc)
      break;
    if (i < n && gs[i].principal == x->principal) {
      if (gs[i].direct != x->direct || gs[i].expandable != x->expandable ||
          gs[i].via_h != x->via_h) {
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

static int rec_grants(struct rec *r, struct ch_err *err) {
  size_t nents = graph_nentitlements(r->g), ndirect, i, d, x;
  size_t ntotal = graph_ngrants(r->g, &ndirect);
  struct ggrant *gs = NULL;
  struct srow *rows = NULL;
  size_t cap = 0, nrows = 0, rcap = 0;
  int64_t max =
      scalar(r->s, "SELECT COALESCE(MAX(id), 0) FROM entitlements", 0);
  int rc = load_current(r,
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
        if (ggrant_fill(r, *k, &gs[n++])) {
          rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
          goto out;
        }
      }
    }
    c->seen = 1;
    if (!c->first_run) {
      sqlite3_stmt *st = r->st[ST_RANGE_INS];
      sqlite3_bind_int64(st, 1, ent);
      sqlite3_bind_int64(st, 2, r->run);
      sqlite3_bind_int64(st, 3, in->id);
      if ((rc = step_done(r, st, "recording an entitlement", err)))
        break;
    }
    nrows = 0;
    if (c->first_run && (rc = load_ent_rows(r, ent, &rows, &nrows, &rcap, err)))
      break;
    rc = merge_ent(r, ent, in, gs, n, rows, nrows, err);
  }
  if (!rc)
    rc = close_unseen(r,
                      "SELECT ent_id, inst_id FROM ent_ranges"
                      " WHERE last_run IS NULL",
                      ST_RANGE_CLOSE, 1, err);
out:
  free(gs);
  free(rows);
  return rc;
}

/* Keep the newest `keep` runs, and every row one of them still needs. */
static int prune(struct rec *r, long keep, struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  int64_t oldest = r->run - keep + 1, need;
  int rc;

  if (scalar(r->s, "SELECT count(*) FROM runs WHERE id < ?", oldest) <= 0)
    return CH_OK;
  if ((rc = prep(r->s, "DELETE FROM run_instances WHERE run_id < ?", &st, err)))
    return rc;
  sqlite3_bind_int64(st, 1, oldest);
  rc = step_done(r, st, "pruning old runs", err);
  sqlite3_finalize(st);
  if (!rc && !(rc = prep(r->s, "DELETE FROM runs WHERE id < ?", &st, err))) {
    sqlite3_bind_int64(st, 1, oldest);
    rc = step_done(r, st, "pruning old runs", err);
    sqlite3_finalize(st);
  }
  need = scalar(r->s,
                "SELECT COALESCE(MIN(data_run), ?) FROM run_instances"
                " WHERE data_run IS NOT NULL",
                r->run);
  for (int t = 0; !rc && t < 3; t++) {
    static const char *const del[] = {
        "DELETE FROM grants WHERE last_run < ?",
        "DELETE FROM ent_ranges WHERE last_run < ?",
        "DELETE FROM resources WHERE last_run < ?"};
    if ((rc = prep(r->s, del[t], &st, err)))
      break;
    sqlite3_bind_int64(st, 1, need);
    rc = step_done(r, st, "pruning old rows", err);
    sqlite3_finalize(st);
  }
  return rc;
}

static void rec_release(struct rec *r) {
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(r->st[i]);
  free(r->insts);
  free(r->by_id);
  free(r->node_id);
  free(r->ident_id);
  free(r->ent_id);
  free(r->ent_inst);
  free(r->cur);
}

int store_record(struct store *s, const struct graph *g, int64_t started_ms,
                 long keep_runs, int64_t *run_id, struct ch_err *err) {
  struct rec r = {0};
  size_t nnodes = graph_nnodes(g), nid = graph_nidentities(g);
  size_t nents = graph_nentitlements(g), i;
  int64_t maxinst;
  int bulk, rc = exec(s, "BEGIN IMMEDIATE", "starting to record the run", err);

  if (rc)
    return rc;
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
    rc = prep(s, rec_sql[i], &r.st[i], err);
  if (!rc)
    rc = rec_run(&r, started_ms, err);
  if (rc)
    goto out;
  maxinst = scalar(s, "SELECT COALESCE(MAX(id), 0) FROM instances", 0);
  if (maxinst < 0) {
    rc = db_err(s, err, "reading instances");
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
    struct graph_res_view rv;
    graph_entitlement_view(g, i, &ev);
    graph_resource_view(g, ev.resource, &rv);
    r.ent_inst[i] = rv.inst;
  }
  /* The first run inserts everything: building the principal index once
     afterwards is cheaper than keeping it up to date row by row. */
  bulk =
      scalar(s, "SELECT count(*) FROM (SELECT 1 FROM grants LIMIT ?)", 1) == 0;
  if (bulk && (rc = exec(s, "DROP INDEX IF EXISTS grants_principal",
                         "indexing grants", err)))
    goto out;
  rc = intern(&r, "SELECT id, key FROM nodes ORDER BY key", nnodes, node_key_at,
              r.node_id, node_insert, err);
  if (!rc)
    rc = intern(&r, "SELECT id, key FROM identities ORDER BY key", nid,
                ident_key_at, r.ident_id, ident_insert, err);
  if (!rc)
    rc = intern(&r, "SELECT id, key FROM entitlements ORDER BY key", nents,
                ent_key_at, r.ent_id, ent_insert, err);
  if (!rc)
    rc = rec_resources(&r, err);
  if (!rc)
    rc = rec_grants(&r, err);
  if (!rc && bulk)
    rc = exec(s, "CREATE INDEX grants_principal ON grants(principal_id)",
              "indexing grants", err);
  if (!rc && keep_runs > 0)
    rc = prune(&r, keep_runs, err);
out:
  rec_release(&r);
  if (rc) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  rc = exec(s, "COMMIT", "committing the run", err);
  if (!rc && run_id)
    *run_id = r.run;
  return rc;
}

/* One writer at a time in this process: serve's tenants finish runs on
   their own threads, and SQLite would make all but one wait on its lock
   (and give up after the busy timeout). */
static pthread_mutex_t save_lock = PTHREAD_MUTEX_INITIALIZER;

int store_save(const char *path, const struct graph *g, int64_t started_ms,
               long keep_runs, int64_t *run_id, struct ch_err *err) {
  struct store *s = NULL;
  int rc;

  pthread_mutex_lock(&save_lock);
  rc = store_open(path, 1, &s, err);
  if (!rc)
    rc = store_record(s, g, started_ms, keep_runs, run_id, err);
  store_close(s);
  pthread_mutex_unlock(&save_lock);
  return rc;
}

int store_last_good(const char *path,
                    int (*fn)(void *arg, const char *tenant,
                              const char *instance, int64_t resources,
                              int64_t grants),
                    void *arg, struct ch_err *err) {
  struct store *s = NULL;
  sqlite3_stmt *q = NULL;
  struct stat sb;
  int rc, step = SQLITE_DONE;

  if (stat(path, &sb) != 0 && errno == ENOENT)
    return CH_OK;
  rc = store_open(path, 0, &s, err);
  if (!rc)
    rc = prep(s,
              "SELECT i.tenant, i.name, ri.resources, ri.grants FROM"
              " (SELECT inst_id, MAX(run_id) AS run_id FROM run_instances"
              " WHERE status = 'ok' GROUP BY inst_id) last"
              " JOIN run_instances ri ON ri.run_id = last.run_id AND"
              " ri.inst_id = last.inst_id JOIN instances i ON i.id ="
              " last.inst_id",
              &q, err);
  while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW)
    rc = fn(arg, (const char *)sqlite3_column_text(q, 0),
            (const char *)sqlite3_column_text(q, 1), sqlite3_column_int64(q, 2),
            sqlite3_column_int64(q, 3));
  if (!rc && step != SQLITE_DONE)
    rc = db_err(s, err, "reading the last good runs");
  sqlite3_finalize(q);
  store_close(s);
  return rc;
}

/* ---- reading ------------------------------------------------------------- */

/* SQL reads better as written than re-wrapped. */
/* clang-format off */

#define RFC3339(col) "strftime('%Y-%m-%dT%H:%M:%SZ', " col ", 'unixepoch')"

/* Grants that differ between the two selections (sel_a = from, sel = to),
   scanning only rows whose run range starts or ends between them. */
#define DIFF_GRANTS \
  "WITH cb AS MATERIALIZED (SELECT g.ent_id, g.principal_id, g.direct," \
  " g.via, s.data_run AS dr FROM sel s JOIN grants g ON g.inst_id =" \
  " s.inst_id AND " VIS("g", "s") \
  " LEFT JOIN sel_a a ON a.inst_id = s.inst_id WHERE (g.first_run > :lo" \
  " OR g.last_run < :hi) AND (a.inst_id IS NULL OR NOT (" VIS("g", "a") \
  "))), ca AS MATERIALIZED (SELECT g.ent_id, g.principal_id, g.direct," \
  " g.via, a.data_run AS dr FROM sel_a a JOIN grants g ON g.inst_id =" \
  " a.inst_id AND " VIS("g", "a") \
  " LEFT JOIN sel s ON s.inst_id = a.inst_id WHERE (g.first_run > :lo" \
  " OR g.last_run < :hi) AND (s.inst_id IS NULL OR NOT (" VIS("g", "s") \
  "))), ch AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM ca WHERE" \
  " ca.ent_id = cb.ent_id AND ca.principal_id = cb.principal_id) THEN" \
  " 'changed' ELSE 'added' END AS change, cb.* FROM cb UNION ALL SELECT" \
  " 'removed', ca.* FROM ca WHERE NOT EXISTS (SELECT 1 FROM cb WHERE" \
  " cb.ent_id = ca.ent_id AND cb.principal_id = ca.principal_id))" \
  " SELECT ch.change AS change, e.key AS entitlement, pn.key AS" \
  " principal, (SELECT r.display_name FROM resources r WHERE r.node_id" \
  " = ch.principal_id AND r.first_run <= ch.dr AND (r.last_run IS NULL" \
  " OR r.last_run >= ch.dr)) AS principal_name, ch.direct AS direct," \
  " (SELECT json_group_array(ve.key) FROM json_each(ch.via) j JOIN" \
  " entitlements ve ON ve.id = j.value) AS via FROM ch JOIN" \
  " entitlements e ON e.id = ch.ent_id JOIN nodes pn ON pn.id =" \
  " ch.principal_id WHERE ch.direct = "

/* Of the identity of row x: its first non-empty name, all its emails. */
#define IDENTITY_NAME \
  "(SELECT ir.display_name FROM res_b ir WHERE ir.identity_id =" \
  " x.identity_id AND ir.display_name <> '' ORDER BY ir.key LIMIT 1)"
#define IDENTITY_EMAILS \
  "(SELECT json_group_array(DISTINCT je.value) FROM resources ir" \
  " JOIN sel s2 ON s2.inst_id = ir.inst_id AND " VIS("ir", "s2") "," \
  " json_each(ir.emails) je WHERE ir.identity_id = x.identity_id)"

static const struct query {
  const char *name, *sql;
} queries[] = {
  {"runs",
    "SELECT r.id AS run, " RFC3339("r.started_at") " AS started, "
    RFC3339("r.finished_at")
    " AS finished, r.status AS run_status, i.tenant AS tenant, i.name AS"
    " instance, ri.status AS status, ri.data_run AS data_run,"
    " ri.resources AS resources, ri.grants AS grants, ri.error AS error"
    " FROM runs r JOIN run_instances ri ON ri.run_id = r.id JOIN"
    " instances i ON i.id = ri.inst_id WHERE (:tenant IS NULL OR i.tenant"
    " = :tenant) ORDER BY r.id DESC, i.tenant, i.name"},
  {"instances",
    "SELECT i.tenant AS tenant, i.name AS instance, i.plugin AS plugin,"
    " ri.status AS status, ri.error AS error, ri.data_run AS data_run, "
    RFC3339("ri.data_at")
    " AS data_at, CAST(strftime('%s', 'now') AS INTEGER) - ri.data_at AS"
    " age_seconds, ri.status <> 'ok' AS stale FROM run_instances ri JOIN"
    " instances i ON i.id = ri.inst_id WHERE ri.run_id = :to AND (:tenant"
    " IS NULL OR i.tenant = :tenant) ORDER BY i.tenant, i.name"},
  {"resources",
    "SELECT key, tenant, instance, type, id, display_name, traits,"
    " status, account_type, emails, parent, identity, stale FROM res_b"
    " WHERE (:type IS NULL OR type = :type) AND (:search IS NULL OR"
    " instr(lower(COALESCE(display_name, '')), lower(:search)) > 0 OR"
    " instr(lower(key), lower(:search)) > 0 OR instr(lower(emails),"
    " lower(:search)) > 0) ORDER BY key"},
  {"grants",
    "SELECT entitlement, principal, principal_name, principal_type,"
    " direct, via, stale FROM gn_b WHERE (:ent IS NULL OR entitlement ="
    " :ent) AND (:principal IS NULL OR principal = :principal) ORDER BY"
    " entitlement, principal"},
  {"identity",
    "SELECT r.identity AS identity, r.tenant AS tenant, r.key AS"
    " resource, r.instance AS instance, r.type AS type, r.display_name AS"
    " display_name, r.emails AS emails, r.status AS status,"
    " r.account_type AS account_type, r.stale AS stale FROM res_b r WHERE"
    " r.node_id IN (SELECT node_id FROM who_nodes) ORDER BY r.key"},
  {"access",
    "SELECT tenant, instance, identity, principal, principal_name,"
    " entitlement, resource, resource_name, resource_type, slug, direct, via,"
    " via_names, stale FROM gn_b WHERE principal_id IN (SELECT node_id"
    " FROM who_nodes) ORDER BY entitlement, principal"},
  {"who_has",
    "SELECT x.entitlement AS entitlement, x.principal AS principal,"
    " x.principal_name AS principal_name, x.principal_type AS"
    " principal_type, x.principal_emails AS principal_emails, x.identity"
    " AS identity, " IDENTITY_EMAILS " AS identity_emails,"
    " x.principal_status AS status,"
    " x.principal_account_type AS account_type, x.direct AS direct, x.via"
    " AS via, x.via_names AS via_names, x.stale AS stale FROM gn_b x"
    " WHERE x.ent_id IN (SELECT ent_id FROM what_ents) ORDER BY"
    " x.entitlement, x.principal"},
  {"explain",
    "SELECT x.principal AS principal, x.principal_name AS principal_name,"
    " x.entitlement AS entitlement, CASE WHEN x.direct THEN 'direct' ELSE"
    " 'inherited' END AS kind, j.value AS through,"
    " json_extract(x.via_names, '$[' || j.key || ']') AS through_name,"
    " COALESCE(x.principal_name, x.principal) || ' -> ' || CASE WHEN"
    " j.value IS NULL THEN '' ELSE COALESCE(json_extract(x.via_names,"
    " '$[' || j.key || ']'), j.value) || ' -> ' END || x.entitlement AS"
    " path, x.stale AS stale FROM gn_b x LEFT JOIN json_each(x.via) j"
    " WHERE x.principal_id IN (SELECT node_id FROM who_nodes) AND"
    " x.ent_id IN (SELECT ent_id FROM what_ents) ORDER BY x.principal,"
    " x.entitlement, j.value"},
  {"diff_resources",
    "SELECT 'added' AS change, b.key AS key, b.type AS type,"
    " b.display_name AS display_name, b.status AS status FROM res_b b"
    " WHERE NOT EXISTS (SELECT 1 FROM res_a a WHERE a.node_id ="
    " b.node_id) UNION ALL SELECT 'removed', a.key, a.type,"
    " a.display_name, a.status FROM res_a a WHERE NOT EXISTS (SELECT 1"
    " FROM res_b b WHERE b.node_id = a.node_id) ORDER BY 2, 1"},
  {"diff_direct", DIFF_GRANTS "1 ORDER BY 2, 3, 1"},
  {"diff_derived", DIFF_GRANTS "0 ORDER BY 2, 3, 1"},
  {"diff_status",
    "SELECT b.key AS key, b.display_name AS display_name, a.status AS"
    " from_status, b.status AS to_status FROM res_b b JOIN res_a a ON"
    " a.node_id = b.node_id WHERE a.status IS NOT b.status ORDER BY b.key"},
  {"diff_identities",
    "SELECT b.key AS resource, b.display_name AS display_name, a.identity"
    " AS from_identity, b.identity AS to_identity, CASE WHEN EXISTS"
    " (SELECT 1 FROM res_a a2 WHERE a2.identity_id = b.identity_id) THEN"
    " 'joined' WHEN EXISTS (SELECT 1 FROM res_b b2 WHERE b2.identity_id ="
    " a.identity_id AND b2.node_id <> b.node_id) THEN 'split' ELSE"
    " 'rekeyed' END AS change FROM res_b b LEFT JOIN res_a a ON a.node_id"
    " = b.node_id WHERE b.identity_id IS NOT NULL AND a.identity_id IS"
    " NOT b.identity_id AND (a.node_id IS NOT NULL OR EXISTS (SELECT 1"
    " FROM res_a a3 WHERE a3.identity_id = b.identity_id)) ORDER BY b.key"},
  {"stats_instances",
    "SELECT i.tenant AS tenant, i.name AS instance, ri.status AS status,"
    " (SELECT count(*) FROM resources r WHERE r.inst_id = s.inst_id AND "
    VIS("r", "s")
    ") AS resources, (SELECT count(*) FROM ent_ranges r WHERE r.inst_id ="
    " s.inst_id AND " VIS("r", "s")
    ") AS entitlements, (SELECT count(*) FROM grants r WHERE r.inst_id ="
    " s.inst_id AND r.direct AND " VIS("r", "s")
    ") AS direct_grants, (SELECT count(*) FROM grants r WHERE r.inst_id ="
    " s.inst_id AND NOT r.direct AND " VIS("r", "s")
    ") AS derived_grants, s.stale AS stale FROM sel s JOIN instances i ON"
    " i.id = s.inst_id JOIN run_instances ri ON ri.run_id = :to AND"
    " ri.inst_id = s.inst_id ORDER BY 1, 2"},
  {"stats_tenants",
    "SELECT tenant, count(*) AS resources, count(DISTINCT identity_id) AS"
    " identities FROM res_b GROUP BY tenant ORDER BY tenant"},
  {"stats_types",
    "SELECT tenant, instance, type, count(*) AS resources FROM res_b"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"},
  {"stats_entitlements",
    "SELECT i.tenant AS tenant, i.name AS instance, n.type AS"
    " resource_type, e.slug AS slug, count(DISTINCT g.ent_id) AS"
    " entitlements, sum(g.direct) AS direct_grants, sum(1 - g.direct) AS"
    " derived_grants FROM sel s JOIN grants g ON g.inst_id = s.inst_id"
    " AND " VIS("g", "s")
    " JOIN entitlements e ON e.id = g.ent_id JOIN nodes n ON n.id ="
    " e.node_id JOIN instances i ON i.id = s.inst_id GROUP BY 1, 2, 3, 4"
    " ORDER BY 1, 2, 3, 4"},
  {"stats_top",
    "SELECT e.key AS entitlement, (SELECT r.display_name FROM resources r"
    " JOIN sel s ON s.inst_id = r.inst_id WHERE r.node_id = e.node_id AND" " "
    VIS("r", "s") ") AS resource_name, t.holders AS holders, t.direct AS"
    " direct_holders, t.derived AS derived_holders FROM (SELECT g.ent_id"
    " AS ent_id, count(*) AS holders, sum(g.direct) AS direct, sum(1 -"
    " g.direct) AS derived FROM sel s JOIN grants g ON g.inst_id ="
    " s.inst_id AND " VIS("g", "s")
    " GROUP BY g.ent_id ORDER BY holders DESC, g.ent_id LIMIT 10) t JOIN"
    " entitlements e ON e.id = t.ent_id ORDER BY t.holders DESC, e.key"},
  {"access_review",
    "SELECT x.tenant AS tenant, x.identity AS identity, " IDENTITY_NAME
    " AS identity_name, " IDENTITY_EMAILS
    " AS identity_emails, x.principal AS principal, x.principal_name AS"
    " principal_name, x.principal_emails AS principal_emails,"
    " x.principal_status AS status, x.principal_account_type AS"
    " account_type, x.entitlement AS entitlement, x.resource AS resource,"
    " x.resource_name AS resource_name, x.resource_type AS resource_type,"
    " x.slug AS slug, x.direct AS direct, x.via_names AS via_names,"
    " x.stale AS stale FROM gn_b x WHERE x.identity IS NOT NULL ORDER BY"
    " x.identity, x.entitlement, x.principal"},
  {"report_inactive",
    "SELECT tenant, principal, principal_name, principal_emails,"
    " principal_status AS status, principal_account_type AS account_type,"
    " count(*) AS grants, sum(direct) AS direct_grants, sum(1 - direct)"
    " AS inherited_grants FROM gn_b WHERE principal_status IN ('disabled',"
    " 'deleted') GROUP BY principal_id ORDER BY principal"},
  {"report_unmanaged",
    "SELECT r.tenant AS tenant, r.key AS principal, r.display_name AS"
    " principal_name, r.emails AS principal_emails, r.status AS status,"
    " (SELECT count(*) FROM grants g JOIN sel s ON s.inst_id = g.inst_id"
    " WHERE g.principal_id = r.node_id AND " VIS("g", "s")
    ") AS grants FROM res_b r WHERE r.plugin = 'jira_cloud' AND r.type ="
    " 'user' AND COALESCE(r.account_type, 'human') = 'human' AND NOT"
    " EXISTS (SELECT 1 FROM res_b o WHERE o.plugin = 'atlassian_org' AND"
    " o.tenant = r.tenant AND o.identity_id = r.identity_id) ORDER BY"
    " r.key"},
  {"report_nonhuman",
    "SELECT tenant, principal, principal_name, principal_account_type AS"
    " account_type, principal_status AS status, count(*) AS grants,"
    " sum(direct) AS direct_grants, sum(1 - direct) AS inherited_grants"
    " FROM gn_b WHERE principal_account_type IN ('service', 'customer')"
    " GROUP BY principal_id ORDER BY principal"},
};

/* clang-format on */

static int bind_params(struct store *s, sqlite3_stmt *st) {
  const struct store_params *p = s->p;
  const struct {
    const char *name, *value;
  } texts[] = {{":tenant", p ? p->tenant : NULL},
               {":who", p ? p->who : NULL},
               {":what", p ? p->what : NULL},
               {":type", p ? p->type : NULL},
               {":search", p ? p->search : NULL},
               {":ent", p ? p->entitlement : NULL},
               {":principal", p ? p->principal : NULL}};
  int i;

  for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
    if ((i = sqlite3_bind_parameter_index(st, texts[k].name)) > 0)
      bind_text(st, i, texts[k].value);
  }
  if ((i = sqlite3_bind_parameter_index(st, ":to")) > 0)
    sqlite3_bind_int64(st, i, s->run);
  if ((i = sqlite3_bind_parameter_index(st, ":from")) > 0)
    sqlite3_bind_int64(st, i, s->from);
  if ((i = sqlite3_bind_parameter_index(st, ":lo")) > 0)
    sqlite3_bind_int64(st, i, s->lo);
  if ((i = sqlite3_bind_parameter_index(st, ":hi")) > 0)
    sqlite3_bind_int64(st, i, s->hi);
  return CH_OK;
}

static int run_sql(struct store *s, const char *sql, struct ch_err *err) {
  sqlite3_stmt *st = NULL;
  const char *tail = sql;
  int rc = CH_OK;

  while (!rc && tail && *tail) {
    if (sqlite3_prepare_v2(s->db, tail, -1, &st, &tail) != SQLITE_OK)
      return db_err(s, err, "preparing a query");
    if (!st)
      break;
    bind_params(s, st);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = db_err(s, err, "selecting the run");
    sqlite3_finalize(st);
  }
  return rc;
}

static int64_t count_of(struct store *s, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;

  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
    return -1;
  bind_params(s, st);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

int store_select(struct store *s, const struct store_params *p,
                 struct ch_err *err) {
  static const char sel_sql[] =
      "DROP TABLE IF EXISTS temp.sel; DROP TABLE IF EXISTS temp.sel_a;"
      "CREATE TEMP TABLE sel AS SELECT ri.inst_id AS inst_id, ri.data_run AS"
      " data_run, ri.status <> 'ok' AS stale FROM run_instances ri JOIN"
      " instances i ON i.id = ri.inst_id WHERE ri.run_id = :to AND"
      " ri.data_run IS NOT NULL AND (:tenant IS NULL OR i.tenant = :tenant);"
      "CREATE TEMP TABLE sel_a AS SELECT ri.inst_id AS inst_id, ri.data_run"
      " AS data_run, ri.status <> 'ok' AS stale FROM run_instances ri JOIN"
      " instances i ON i.id = ri.inst_id WHERE ri.run_id = :from AND"
      " ri.data_run IS NOT NULL AND (:tenant IS NULL OR i.tenant = :tenant);";
  int64_t latest, run;
  int rc;

  s->p = p;
  latest = count_of(s, "SELECT COALESCE(MAX(id), 0) FROM runs");
  if (latest <= 0)
    return ch_err_set(err, CH_E_NOTFOUND,
                      "store '%s' holds no runs yet: run 'connhost sync' "
                      "first",
                      s->path);
  run = p->to ? p->to : p->run ? p->run : latest;
  s->run = run;
  if (count_of(s, "SELECT count(*) FROM runs WHERE id = :to") != 1)
    return ch_err_set(err, CH_E_NOTFOUND,
                      "no run %" PRId64 " in '%s' (runs kept: see 'connhost "
                      "runs')",
                      run, s->path);
  s->from = p->from ? p->from
                    : count_of(s, "SELECT COALESCE(MAX(id), 0) FROM runs WHERE"
                                  " id < :to");
  if (p->from && count_of(s, "SELECT count(*) FROM runs WHERE id = :from") != 1)
    return ch_err_set(err, CH_E_NOTFOUND, "no run %" PRId64 " in '%s'", p->from,
                      s->path);
  rc = run_sql(s, sel_sql, err);
  if (rc)
    return rc;
  /* Between two runs only rows whose range starts or ends between the
     oldest and newest data run can differ; an instance in one selection
     only makes every row of it differ (lo 0 then scans everything). */
  s->lo = count_of(s, "SELECT CASE WHEN EXISTS (SELECT 1 FROM sel WHERE"
                      " inst_id NOT IN (SELECT inst_id FROM sel_a)) OR EXISTS"
                      " (SELECT 1 FROM sel_a WHERE inst_id NOT IN (SELECT"
                      " inst_id FROM sel)) THEN 0 ELSE (SELECT MIN(d) FROM"
                      " (SELECT data_run AS d FROM sel UNION ALL SELECT"
                      " data_run FROM sel_a)) END");
  s->hi = count_of(s, "SELECT MAX(d) FROM (SELECT data_run AS d FROM sel"
                      " UNION ALL SELECT data_run FROM sel_a)");
  if (s->lo < 0)
    s->lo = 0;
  if (!count_of(s, "SELECT count(*) FROM sqlite_temp_master WHERE name ="
                   " 'res_b'")) {
    rc = make_view(s, 1, "res_b", "", view_resources, "sel", err);
    if (!rc)
      rc = make_view(s, 1, "res_a", "", view_resources, "sel_a", err);
    if (!rc)
      rc = make_view(s, 1, "gn_b", "", view_grants, "sel", err);
    if (rc)
      return rc;
  }
  if (p->who) {
    rc = run_sql(
        s,
        "DROP TABLE IF EXISTS temp.who_nodes;"
        "CREATE TEMP TABLE who_nodes AS WITH m AS (SELECT node_id,"
        " identity_id FROM res_b WHERE key = :who OR id = :who OR identity ="
        " :who OR EXISTS (SELECT 1 FROM json_each(emails) WHERE lower(value)"
        " = lower(:who))) SELECT node_id FROM m UNION SELECT r.node_id FROM"
        " res_b r WHERE r.identity_id IN (SELECT identity_id FROM m WHERE"
        " identity_id IS NOT NULL);",
        err);
    if (rc)
      return rc;
    if (count_of(s, "SELECT count(*) FROM who_nodes") <= 0)
      return ch_err_set(err, CH_E_NOTFOUND,
                        "no account or resource matches '%s' in run %" PRId64
                        " (give a resource key, an email or an account id)",
                        p->who, run);
  }
  if (p->what) {
    rc = run_sql(s,
                 "DROP TABLE IF EXISTS temp.what_ents;"
                 "CREATE TEMP TABLE what_ents AS SELECT id AS ent_id FROM"
                 " entitlements WHERE key = :what UNION SELECT e.id FROM"
                 " entitlements e JOIN nodes n ON n.id = e.node_id WHERE"
                 " n.key = :what;",
                 err);
    if (rc)
      return rc;
    if (count_of(s, "SELECT count(*) FROM what_ents") <= 0)
      return ch_err_set(err, CH_E_NOTFOUND,
                        "no entitlement or resource '%s' in '%s' (give an "
                        "entitlement key tenant/instance/type/id#slug or a "
                        "resource key)",
                        p->what, s->path);
  }
  return CH_OK;
}

int64_t store_selected_run(const struct store *s, int64_t *from) {
  if (from)
    *from = s->from;
  return s->run;
}

int store_query(struct store *s, const char *name, struct store_cursor **out,
                struct ch_err *err) {
  static const char *const json_cols[] = {
      "emails",    "traits",           "match_keys",      "via",
      "via_names", "principal_emails", "identity_emails", NULL};
  static const char *const bool_cols[] = {"direct", "stale", NULL};
  const struct query *q = NULL;
  struct store_cursor *c;

  *out = NULL;
  for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
    if (strcmp(queries[i].name, name) == 0)
      q = &queries[i];
  }
  if (!q)
    return ch_err_set(err, CH_E_INVALID, "no query '%s'", name);
  c = calloc(1, sizeof(*c));
  if (!c)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  c->s = s;
  if (sqlite3_prepare_v2(s->db, q->sql, -1, &c->st, NULL) != SQLITE_OK) {
    int rc = db_err(s, err, name);
    free(c);
    return rc;
  }
  bind_params(s, c->st);
  c->ncols = (size_t)sqlite3_column_count(c->st);
  if (c->ncols > sizeof(c->kinds) / sizeof(c->kinds[0]))
    c->ncols = sizeof(c->kinds) / sizeof(c->kinds[0]);
  for (size_t i = 0; i < c->ncols; i++) {
    const char *cn = sqlite3_column_name(c->st, (int)i);
    c->kinds[i] = STORE_TEXT;
    for (size_t k = 0; json_cols[k]; k++)
      if (strcmp(cn, json_cols[k]) == 0)
        c->kinds[i] = STORE_JSON;
    for (size_t k = 0; bool_cols[k]; k++)
      if (strcmp(cn, bool_cols[k]) == 0)
        c->kinds[i] = STORE_BOOL;
  }
  *out = c;
  return CH_OK;
}

int store_next(struct store_cursor *c, struct ch_err *err) {
  int rc = sqlite3_step(c->st);

  if (rc == SQLITE_ROW)
    return 1;
  if (rc == SQLITE_DONE)
    return 0;
  return db_err(c->s, err, "reading");
}

size_t store_ncols(const struct store_cursor *c) { return c->ncols; }

const char *store_col_name(const struct store_cursor *c, size_t i) {
  return sqlite3_column_name(c->st, (int)i);
}

enum store_kind store_col_kind(const struct store_cursor *c, size_t i) {
  if (c->kinds[i] != STORE_TEXT)
    return c->kinds[i];
  return sqlite3_column_type(c->st, (int)i) == SQLITE_INTEGER ? STORE_INT
                                                              : STORE_TEXT;
}

const char *store_col_text(struct store_cursor *c, size_t i) {
  return (const char *)sqlite3_column_text(c->st, (int)i);
}

void store_cursor_free(struct store_cursor *c) {
  if (!c)
    return;
  sqlite3_finalize(c->st);
  free(c);
}
