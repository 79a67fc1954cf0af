/* SPDX-License-Identifier: MIT */
/* The snapshot store's schema: its versions and migrations, the stable
   views (docs/store.md), opening and closing. The same SQL on SQLite and
   PostgreSQL (db.h's dialect tokens). */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* ---- schema -------------------------------------------------------------- */

/* Version 1, as the first store shipped it. A new store is created by
   running every step in order, so the upgrade path is the tested path. */
static const char schema_v1[] =
    "CREATE TABLE meta(key @text@ PRIMARY KEY, value @text@ NOT NULL)"
    "@norowid@;"
    "CREATE TABLE runs(id @id@, started_at @int@ NOT NULL,"
    " finished_at @int@ NOT NULL, status @text@ NOT NULL);"
    "CREATE TABLE instances(id @id@, tenant @text@ NOT NULL,"
    " name @text@ NOT NULL, plugin @text@ NOT NULL, UNIQUE(tenant, name));"
    "CREATE TABLE run_instances(run_id @int@ NOT NULL,"
    " inst_id @int@ NOT NULL, status @text@ NOT NULL, error @text@,"
    " data_run @int@, plugin_version @text@,"
    " resources @int@ NOT NULL DEFAULT 0, grants @int@ NOT NULL DEFAULT 0,"
    " derived @int@ NOT NULL DEFAULT 0, requests @int@ NOT NULL DEFAULT 0,"
    " retries @int@ NOT NULL DEFAULT 0, warnings @int@ NOT NULL DEFAULT 0,"
    " PRIMARY KEY(run_id, inst_id))@norowid@;"
    "CREATE TABLE nodes(id @id@, inst_id @int@ NOT NULL,"
    " key @text@ NOT NULL UNIQUE, type @text@ NOT NULL, rid @text@ NOT NULL,"
    " traits @text@ NOT NULL);"
    "CREATE TABLE identities(id @id@, key @text@ NOT NULL UNIQUE,"
    " tenant @text@ NOT NULL);"
    "CREATE TABLE resources(node_id @int@ NOT NULL,"
    " first_run @int@ NOT NULL, last_run @int@, inst_id @int@ NOT NULL,"
    " h @int@ NOT NULL, display_name @text@, status @text@,"
    " account_type @text@, emails @text@ NOT NULL, match_keys @text@ NOT NULL,"
    " parent_id @int@, identity_id @int@, profile @text@,"
    " PRIMARY KEY(node_id, first_run))@norowid@;"
    "CREATE INDEX resources_identity ON resources(identity_id);"
    "CREATE TABLE entitlements(id @id@,"
    " node_id @int@ NOT NULL, inst_id @int@ NOT NULL,"
    " key @text@ NOT NULL UNIQUE, slug @text@ NOT NULL, display_name @text@);"
    "CREATE INDEX entitlements_node ON entitlements(node_id);"
    "CREATE TABLE ent_ranges(ent_id @int@ NOT NULL,"
    " first_run @int@ NOT NULL, last_run @int@, inst_id @int@ NOT NULL,"
    " PRIMARY KEY(ent_id, first_run))@norowid@;"
    "CREATE TABLE grants(ent_id @int@ NOT NULL,"
    " principal_id @int@ NOT NULL, first_run @int@ NOT NULL,"
    " last_run @int@, inst_id @int@ NOT NULL, direct @int@ NOT NULL,"
    " via @text@, expandable @int@,"
    " PRIMARY KEY(ent_id, principal_id, first_run))@norowid@;";

/* Version 2: when each instance's data was taken (the age of stale data),
   and an index for "what does this principal hold". */
static const char schema_v2[] =
    "ALTER TABLE run_instances ADD COLUMN data_at @int@;"
    "UPDATE run_instances SET data_at = (SELECT finished_at FROM runs"
    " WHERE runs.id = run_instances.data_run);"
    "CREATE INDEX grants_principal ON grants(principal_id);";

/* Version 4: which `serve` replica recorded the run (docs/scale-out.md). */
static const char schema_v4[] = "ALTER TABLE runs ADD COLUMN replica @text@;";

/* Version 5: each identity's emails across its accounts, saved when a run
   is recorded (store_record.c), so that a read does not gather them for
   each holder. `emails` is right for every run from `emails_run` to the
   latest; NULL (a migrated store, until its next run): none saved. */
static const char schema_v5[] =
    "ALTER TABLE identities ADD COLUMN emails @text@;"
    "ALTER TABLE identities ADD COLUMN emails_run @int@;";

/* Version 6: the stable views name each grant's resource's parent (the
   project of a project role). The views are rebuilt after every
   migration, so this step only moves the version. */
static const char schema_v6[] = "SELECT 1;";

static const char *const migrations[STORE_SCHEMA_VERSION] = {
    schema_v1, schema_v2, store_schema_v3_tickets,
    schema_v4, schema_v5, schema_v6};

/* SQL reads better as written than re-wrapped. */
/* clang-format off */

/*
 * The named views, written once over a selection table @S@ (inst_id,
 * data_run, stale): the stable views in the store use `latest_sel`, the
 * commands a temp table for the run they were asked about.
 */
const char store_view_resources[] =
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

const char store_view_grants[] =
    "SELECT g.ent_id AS ent_id, g.principal_id AS principal_id, i.tenant"
    " AS tenant, i.name AS instance, e.key AS entitlement, e.slug AS"
    " slug, en.key AS resource, er.display_name AS resource_name, en.type"
    " AS resource_type, pn.key AS principal, pr.display_name AS"
    " principal_name, pn.type AS principal_type, pr.emails AS"
    " principal_emails, pr.status AS principal_status, pr.account_type AS"
    " principal_account_type, d.key AS identity, pr.identity_id AS"
    " identity_id, g.direct AS direct, " STORE_VIA " AS via, "
    STORE_VIA_NAMES " AS via_names,"
    " s.stale AS stale, (SELECT ep.key FROM nodes ep WHERE ep.id ="
    " er.parent_id) AS resource_parent, (SELECT epr.display_name FROM"
    " resources epr WHERE epr.node_id = er.parent_id AND " VIS("epr", "s")
    ") AS resource_parent_name FROM @S@ s JOIN grants g ON"
    " g.inst_id = s.inst_id AND " VIS("g", "s")
    " JOIN instances i ON i.id = s.inst_id JOIN entitlements e ON e.id ="
    " g.ent_id JOIN nodes en ON en.id = e.node_id LEFT JOIN resources er"
    " ON er.node_id = e.node_id AND " VIS("er", "s")
    " JOIN nodes pn ON pn.id = g.principal_id LEFT JOIN resources pr ON"
    " pr.node_id = g.principal_id AND " VIS("pr", "s")
    " LEFT JOIN identities d ON d.id = pr.identity_id";

/* The latest run's selection, for the stable views. */
static const char view_latest_sel[] =
    "CREATE VIEW latest_sel AS SELECT inst_id, data_run, data_at, CASE WHEN"
    " status <> 'ok' THEN 1 ELSE 0 END AS stale FROM run_instances WHERE"
    " run_id = (SELECT MAX(id) FROM runs) AND data_run IS NOT NULL;";

/* clang-format on */

/* ---- helpers shared by the store's modules --------------------------------
 */

int store_exec(struct store *s, const char *sql, const char *what,
               struct ch_err *err) {
  return db_exec(s->db, sql) ? db_fail(s->db, err, what) : CH_OK;
}

int store_prep(struct store *s, const char *sql, struct db_stmt **st,
               struct ch_err *err) {
  return db_prepare(s->db, sql, st) ? db_fail(s->db, err, "preparing a query")
                                    : CH_OK;
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

int store_make_view(struct store *s, int temp, const char *name,
                    const char *tmpl, const char *sel, struct ch_err *err) {
  static const char head[] = "CREATE TEMP VIEW ";
  char *body = subst(tmpl, sel), *sql = NULL;
  size_t n;
  int rc = CH_E_NOMEM;

  if (body) {
    n = sizeof(head) + strlen(name) + strlen(body) + 8;
    sql = malloc(n);
  }
  if (!sql) {
    free(body);
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  snprintf(sql, n, "CREATE %sVIEW %s AS %s", temp ? "TEMP " : "", name, body);
  rc = store_exec(s, sql, "creating a view", err);
  free(sql);
  free(body);
  return rc;
}

/* The stable views (docs/store.md), recreated whenever the schema moves. */
static int make_views(struct store *s, struct ch_err *err) {
  static const char drop[] =
      "DROP VIEW IF EXISTS access; DROP VIEW IF EXISTS grants_named;"
      "DROP VIEW IF EXISTS resources_named; DROP VIEW IF EXISTS latest_sel;";
  int rc = store_exec(s, drop, "dropping the views", err);

  if (!rc)
    rc = store_exec(s, view_latest_sel, "creating a view", err);
  if (!rc)
    rc = store_make_view(s, 0, "resources_named", store_view_resources,
                         "latest_sel", err);
  if (!rc)
    rc = store_make_view(s, 0, "grants_named", store_view_grants, "latest_sel",
                         err);
  if (!rc)
    rc = store_exec(s,
                    "CREATE VIEW access AS SELECT tenant, identity, principal,"
                    " principal_name, principal_emails, principal_status,"
                    " principal_account_type, entitlement, resource,"
                    " resource_name, resource_type, slug, direct, via,"
                    " via_names, stale, resource_parent, resource_parent_name"
                    " FROM grants_named WHERE identity IS NOT NULL;",
                    "creating a view", err);
  return rc;
}

static int schema_version(struct store *s, long *v, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int64_t tables = db_ntables(s->db);
  int rc;

  *v = 0;
  if (tables < 0)
    return db_fail(s->db, err, "reading the schema");
  if (!tables)
    return CH_OK;
  if (db_has_table(s->db, "meta") != 1)
    return ch_err_set(err, CH_E_CONFIG,
                      "'%s' is %s but not a connhost store (no schema "
                      "version); point 'store:' or --db elsewhere",
                      s->path,
                      db_backend(s->db) == DB_PG ? "a PostgreSQL database "
                                                   "with tables"
                                                 : "an SQLite file");
  rc = store_prep(s, "SELECT value FROM meta WHERE key = 'schema_version'", &st,
                  err);
  if (rc)
    return rc;
  rc = db_step(st);
  if (rc == 1) {
    const char *text = db_column_text(st, 0);
    char *end = NULL;
    errno = 0;
    *v = text ? strtol(text, &end, 10) : 0;
    rc = CH_OK;
    if (!text || end == text || *end || errno || *v <= 0)
      rc = ch_err_set(err, CH_E_CONFIG,
                      "'%s' is not a connhost store (invalid schema version "
                      "'%.32s')",
                      s->path, text ? text : "");
  } else if (rc == 0) {
    rc =
        ch_err_set(err, CH_E_CONFIG,
                   "'%s' is not a connhost store (no schema version)", s->path);
  } else {
    rc = db_fail(s->db, err, "reading the schema version");
  }
  db_finalize(st);
  return rc;
}

/* Every table of STORE_SCHEMA_VERSION, named once: a store missing one
   (dropped by hand, or half a foreign schema) fails here as corrupt, when
   opened, rather than in the middle of an answer. LIMIT 0 reads no row. */
static const char tables_probe[] =
    "SELECT 1 FROM meta, runs, instances, run_instances, nodes, identities,"
    " resources, entitlements, ent_ranges, grants, tickets LIMIT 0";

static int check_tables(struct store *s, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int rc = CH_OK;

  if (db_prepare(s->db, tables_probe, &st) || db_step(st) < 0)
    rc = db_fail(s->db, err, "checking its tables");
  db_finalize(st);
  return rc;
}

/* Bring the store to STORE_SCHEMA_VERSION. Without `create` a file with
   no schema yet is refused: the read commands never create a store (an
   empty PostgreSQL database is given its schema, docs/store.md). */
static int migrate(struct store *s, int create, struct ch_err *err) {
  long v;
  char sql[160];
  int rc = schema_version(s, &v, err);

  /* Readers of a current store take no write lock (they may run while a
     sync records); a migration takes it and checks again. */
  if (rc || v == STORE_SCHEMA_VERSION)
    return rc;
  if (v == 0 && !create && db_backend(s->db) == DB_SQLITE)
    return ch_err_set(err, CH_E_CONFIG,
                      "store '%s' is an empty SQLite database (no tables), "
                      "not a connhost store: run 'connhost sync' to record "
                      "into it, or give --db PATH",
                      s->path);
  if (db_begin(s->db, 1))
    return db_fail(s->db, err, "starting a migration");
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
    rc = store_exec(s, migrations[v], "migrating the schema", err);
    if (rc)
      goto out;
  }
  snprintf(sql, sizeof(sql),
           "INSERT INTO meta VALUES('schema_version', '%d') ON CONFLICT(key)"
           " DO UPDATE SET value = excluded.value",
           STORE_SCHEMA_VERSION);
  rc = store_exec(s, sql, "migrating the schema", err);
  if (!rc)
    rc = make_views(s, err);
out:
  if (rc) {
    db_rollback(s->db);
    return rc;
  }
  return db_commit(s->db) ? db_fail(s->db, err, "committing a migration")
                          : CH_OK;
}

int store_open(const char *path, int create, struct store **out,
               struct ch_err *err) {
  struct store *s = calloc(1, sizeof(*s));
  int rc;

  *out = NULL;
  if (!s)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  rc = db_open(path, create, &s->db, err);
  if (!rc) {
    s->path = db_name(s->db);
    rc = migrate(s, create, err);
    if (!rc)
      rc = check_tables(s, err);
    if (!rc && db_claim(s->db))
      rc = db_fail(s->db, err, "opening");
  }
  if (rc) {
    store_close(s);
    return rc;
  }
  *out = s;
  return CH_OK;
}

void store_close(struct store *s) {
  if (!s)
    return;
  db_close(s->db);
  free(s);
}

int store_msg_unnamed(const char *path, const char *msg, char *out, size_t n) {
  char *name = db_redact_target(path);
  size_t len = name ? strlen(name) : 0, used = 0;
  int named = 0;

  for (const char *p = msg; *p && used + 1 < n;) {
    size_t skip = strncmp(p, "store '", 7) == 0 ? 7 : p[0] == '\'' ? 1 : 0;
    if (skip && len && strncmp(p + skip, name, len) == 0 &&
        p[skip + len] == '\'') {
      used += (size_t)snprintf(out + used, n - used, "the store");
      p += skip + len + 1;
      named = 1;
      continue;
    }
    out[used++] = *p++;
  }
  out[used < n ? used : n - 1] = '\0';
  free(name);
  return named;
}
