/* SPDX-License-Identifier: MIT */
/*
 * The db layer on PostgreSQL (libpq; a postgresql:// URL whose parameters,
 * sslmode and sslrootcert included, libpq reads itself): see db.h.
 *
 * A statement is prepared on its first execution, with the types of the
 * values bound then (text, bigint, or unknown for null), so `?` needs no
 * casts; its whole result is fetched at once.
 *
 * Inside a transaction, an INSERT, UPDATE or DELETE without RETURNING is
 * sent in a pipeline and not waited for: recording a run is mostly such
 * writes, and one round trip each would make it network-bound. The
 * pipeline is drained (its first error reported) before any other
 * statement, every PIPE_MAX writes, and at COMMIT; a failed write thus
 * fails the operation after it, and the transaction with it.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "db_int.h"

/* Type OIDs (pg_type.h is server-side). */
enum {
  OID_BOOL = 16,
  OID_INT8 = 20,
  OID_INT2 = 21,
  OID_INT4 = 23,
  OID_TEXT = 25,
  OID_NUMERIC = 1700
};

enum { PIPE_MAX = 512 };

struct pg_stmt {
  struct db_stmt base;
  int deferrable; /* a write without results: may go in the pipeline */
  char *sql;      /* with $N */
  char name[24];  /* of the prepared statement; "" until prepared */
  int nparams;    /* the highest $N */
  const char **vals;
  char (*ints)[24]; /* text of bound integers */
  Oid *types;
  PGresult *res;
  int executed, failed, row, nrows;
};

static const struct db_token pg_tokens[] = {
    {"id", "BIGSERIAL PRIMARY KEY"},
    {"norowid", ""},
    {"orignore", ""},
    {"text", "TEXT COLLATE \"C\""},
    {"int", "BIGINT"},
    {"each", "LATERAL (SELECT value, ordinality - 1 AS key FROM"
             " json_array_elements_text(CAST(%1 AS json)) WITH ORDINALITY)"},
    {"agg", "COALESCE(CAST(json_agg(%1) AS text), '[]')"},
    {"at", "(CAST(%1 AS json) ->> CAST(%2 AS int))"},
    {"ts", "to_char(to_timestamp(%1) AT TIME ZONE 'UTC',"
           " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"},
    {"now", "CAST(extract(epoch FROM now()) AS BIGINT)"},
    {"instr", "strpos(%1, %2)"},
    /* ICU's root collation: lower() of every letter, not only A-Z as in
       the columns' "C" */
    {"contains", "strpos(lower((%1) COLLATE \"und-x-icu\"),"
                 " lower((%2) COLLATE \"und-x-icu\"))"},
    {"temp", "pg_temp."},
    {NULL, NULL}};

static PGconn *conn(const struct db *db) { return db->conn; }

/* Record the error of `res` (or the connection's) on `db`. Returns -1. */
static int pg_error(struct db *db, const PGresult *res) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg =
      res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  enum db_errkind kind = DB_EK_OTHER;

  if (!msg)
    msg = PQerrorMessage(conn(db));
  if (PQstatus(conn(db)) == CONNECTION_BAD ||
      (state && state[0] == '0' && state[1] == '8'))
    kind = DB_EK_CONNECT;
  else if (state &&
           (strcmp(state, "55P03") == 0 || strcmp(state, "40P01") == 0))
    kind = DB_EK_LOCKED;
  /* undefined_table, undefined_column: as SQLite's "no such table" */
  else if (state &&
           (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0))
    kind = DB_EK_CORRUPT;
  return db_set_error(db, kind, msg);
}

/* Wait for the pipelined writes; the first error is the result. */
static int drain(struct db *db) {
  PGconn *c = conn(db);
  int rc = CH_OK;

  if (!db->piped)
    return CH_OK;
  if (!PQpipelineSync(c)) {
    rc = pg_error(db, NULL);
  } else {
    for (;;) {
      PGresult *r = PQgetResult(c);
      ExecStatusType t;
      if (!r) {
        if (PQstatus(c) == CONNECTION_BAD) {
          if (!rc)
            rc = pg_error(db, NULL);
          break;
        }
        continue; /* between two statements' results */
      }
      t = PQresultStatus(r);
      if (t == PGRES_FATAL_ERROR && !rc)
        rc = pg_error(db, r);
      PQclear(r);
      if (t == PGRES_PIPELINE_SYNC)
        break;
    }
  }
  PQexitPipelineMode(c);
  db->piped = 0;
  db->pending = 0;
  return rc;
}

/* Server notices (DROP ... IF EXISTS says "skipping") are not ours to
   print. */
static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static int pg_exec(struct db *db, const char *sql);

static int pg_open(struct db *db, const char *url, int create) {
  /* Later keywords win: the URL's own connect_timeout overrides ours. */
  const char *const keys[] = {"connect_timeout", "application_name", "dbname",
                              NULL};
  const char *const vals[] = {"10", "connhost", url, NULL};
  PGconn *c;
  const char *m;

  (void)create;
  c = PQconnectdbParams(keys, vals, 1);
  if (!c)
    return db_set_error(db, DB_EK_NOMEM, "out of memory");
  db->conn = c;
  if (PQstatus(c) != CONNECTION_OK) {
    m = PQerrorMessage(c);
    /* Reached, but refused us: not a reachability problem. */
    if (strstr(m, "authentication") || strstr(m, "does not exist") ||
        strstr(m, "password") || strstr(m, "invalid"))
      return db_set_error(db, DB_EK_OTHER, m);
    return db_set_error(db, DB_EK_CONNECT, m);
  }
  PQsetNoticeProcessor(c, quiet, NULL);
  /* The store's queries are short: compiling them (JIT) costs more than
     it saves. */
  return pg_exec(db, "SET jit = off");
}

static void pg_close(struct db *db) { PQfinish(conn(db)); }

static int pg_exec(struct db *db, const char *sql) {
  PGresult *r;
  ExecStatusType s;
  int rc = drain(db);

  if (rc)
    return rc;
  r = PQexec(conn(db), sql);
  s = PQresultStatus(r);
  if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
    rc = pg_error(db, r);
  /* COMMIT of a failed transaction "succeeds" as a ROLLBACK */
  else if (strcmp(sql, "COMMIT") == 0 &&
           strcmp(PQcmdStatus(r), "ROLLBACK") == 0)
    rc = db_set_error(db, DB_EK_OTHER, "the transaction was rolled back");
  PQclear(r);
  return rc;
}

static int pg_begin(struct db *db, int write) {
  char sql[96];

  if (pg_exec(db, "BEGIN"))
    return -1;
  if (!write)
    return CH_OK;
  snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)",
           (long long)DB_PG_WRITE_LOCK);
  return pg_exec(db, sql);
}

static int64_t pg_scalar(struct db *db, const char *sql, const char *arg) {
  const char *v[1] = {arg};
  PGresult *r =
      PQexecParams(conn(db), sql, arg ? 1 : 0, NULL, v, NULL, NULL, 0);
  int64_t n = -1;

  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  else
    pg_error(db, r);
  PQclear(r);
  return n;
}

static int64_t pg_ntables(struct db *db) {
  return pg_scalar(db,
                   "SELECT count(*) FROM pg_catalog.pg_tables"
                   " WHERE schemaname = current_schema()",
                   NULL);
}

static int pg_has_table(struct db *db, const char *name) {
  return (int)pg_scalar(db,
                        "SELECT count(*) FROM pg_catalog.pg_tables"
                        " WHERE schemaname = current_schema() AND"
                        " tablename = $1",
                        name);
}

/* `?` and `?N` as `$N` (outside quotes); *max gets the highest N. */
static char *dollars(const char *sql, int *max) {
  size_t n = strlen(sql);
  char *out = malloc(n * 4 + 1), *o = out, q = 0;
  int next = 0;

  *max = 0;
  if (!out)
    return NULL;
  for (const char *p = sql; *p; p++) {
    if (q) {
      if (*p == q)
        q = 0;
    } else if (*p == '\'' || *p == '"') {
      q = *p;
    } else if (*p == '?') {
      int k;
      if (p[1] >= '0' && p[1] <= '9') {
        k = (int)strtol(p + 1, (char **)&p, 10);
        p--;
      } else {
        k = ++next;
      }
      if (k > *max)
        *max = k;
      o += sprintf(o, "$%d", k);
      continue;
    }
    *o++ = *p;
  }
  *o = 0;
  return out;
}

static int pg_analyze(struct db *db, const char *table) {
  char sql[96];

  snprintf(sql, sizeof(sql), "ANALYZE %s", table);
  return pg_exec(db, sql);
}

static int pg_prepare(struct db *db, const char *sql, struct db_stmt **out) {
  struct pg_stmt *s = calloc(1, sizeof(*s));

  if (!s || !(s->sql = dollars(sql, &s->nparams)))
    goto nomem;
  s->base.db = db;
  {
    const char *p = sql + strspn(sql, " \t\n");
    s->deferrable =
        (strncasecmp(p, "INSERT", 6) == 0 || strncasecmp(p, "UPDATE", 6) == 0 ||
         strncasecmp(p, "DELETE", 6) == 0) &&
        !strstr(sql, "RETURNING");
  }
  if (s->nparams) {
    s->vals = calloc((size_t)s->nparams, sizeof(*s->vals));
    s->ints = calloc((size_t)s->nparams, sizeof(*s->ints));
    s->types = calloc((size_t)s->nparams, sizeof(*s->types));
    if (!s->vals || !s->ints || !s->types)
      goto nomem;
  }
  *out = &s->base;
  return CH_OK;
nomem:
  if (s) {
    free(s->sql);
    free(s->vals);
    free(s->ints);
    free(s->types);
    free(s);
  }
  return db_set_error(db, DB_EK_NOMEM, "out of memory");
}

static struct pg_stmt *ps(struct db_stmt *st) { return (struct pg_stmt *)st; }

static void pg_bind(struct db_stmt *st, int i, const char *text, int64_t v,
                    int kind) {
  struct pg_stmt *s = ps(st);

  if (i < 1 || i > s->nparams)
    return;
  i--;
  if (kind == 1 || kind == 3) {
    s->vals[i] = text;
    s->types[i] = OID_TEXT;
  } else if (kind == 2) {
    snprintf(s->ints[i], sizeof(s->ints[i]), "%lld", (long long)v);
    s->vals[i] = s->ints[i];
    s->types[i] = OID_INT8;
  } else {
    s->vals[i] = NULL;
  }
}

static int run(struct pg_stmt *s) {
  struct db *db = s->base.db;
  ExecStatusType t;
  int pipe = s->deferrable &&
             (db->piped || PQtransactionStatus(conn(db)) == PQTRANS_INTRANS);

  s->executed = 1;
  s->row = -1;
  s->nrows = 0;
  /* prepared once, outside the pipeline; everything else waits for it */
  if ((!pipe || !s->name[0]) && drain(db)) {
    s->failed = 1;
    return -1;
  }
  if (!s->name[0]) {
    char name[24];
    PGresult *r;
    snprintf(name, sizeof(name), "ch%u", ++db->nstmt);
    r = PQprepare(conn(db), name, s->sql, s->nparams, s->types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      pg_error(db, r);
      PQclear(r);
      s->failed = 1;
      return -1;
    }
    PQclear(r);
    memcpy(s->name, name, sizeof(name));
  }
  s->res =
      PQexecPrepared(conn(db), s->name, s->nparams, s->vals, NULL, NULL, 0);
  t = PQresultStatus(s->res);
  if (t == PGRES_TUPLES_OK) {
    s->nrows = PQntuples(s->res);
  } else if (t != PGRES_COMMAND_OK) {
    pg_error(db, s->res);
    s->failed = 1;
    return -1;
  }
  return CH_OK;
}

static int pg_step(struct db_stmt *st) {
  struct pg_stmt *s = ps(st);

  if (!s->executed && run(s))
    return -1;
  if (s->failed)
    return -1;
  if (s->row + 1 >= s->nrows)
    return 0;
  s->row++;
  return 1;
}

static void pg_reset(struct db_stmt *st) {
  struct pg_stmt *s = ps(st);

  PQclear(s->res);
  s->res = NULL;
  s->executed = s->failed = 0;
  s->row = -1;
  s->nrows = 0;
}

static void pg_finalize(struct db_stmt *st) {
  struct pg_stmt *s = ps(st);
  PGconn *c = conn(st->db);

  pg_reset(st);
  /* In a failed transaction the server refuses even this; the statement
     goes with the connection then. */
  if (s->name[0] && !st->db->piped && PQstatus(c) == CONNECTION_OK &&
      PQtransactionStatus(c) != PQTRANS_INERROR) {
    char sql[40];
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->name);
    PQclear(PQexec(c, sql));
  }
  free(s->sql);
  free(s->vals);
  free(s->ints);
  free(s->types);
  free(s);
}

/* Column metadata is there once the statement ran (the read commands ask
   before the first row). */
static const PGresult *meta(const struct db_stmt *st) {
  struct pg_stmt *s = (struct pg_stmt *)st;

  if (!s->executed)
    run(s);
  return s->failed ? NULL : s->res;
}

static int pg_ncols(const struct db_stmt *st) {
  const PGresult *r = meta(st);
  return r ? PQnfields(r) : 0;
}

static const char *pg_col_name(const struct db_stmt *st, int i) {
  const PGresult *r = meta(st);
  return r ? PQfname(r, i) : "";
}

static const char *pg_col_text(struct db_stmt *st, int i) {
  struct pg_stmt *s = ps(st);
  const char *v;

  if (!s->res || s->row < 0 || s->row >= s->nrows ||
      PQgetisnull(s->res, s->row, i))
    return NULL;
  v = PQgetvalue(s->res, s->row, i);
  if (PQftype(s->res, i) == OID_BOOL)
    return v[0] == 't' ? "1" : "0";
  return v;
}

static int64_t pg_col_int64(struct db_stmt *st, int i) {
  const char *v = pg_col_text(st, i);
  return v ? strtoll(v, NULL, 10) : 0;
}

static int pg_col_is_int(struct db_stmt *st, int i) {
  struct pg_stmt *s = ps(st);
  Oid t;
  const char *v;

  if (!s->res)
    return 0;
  t = PQftype(s->res, i);
  if (t == OID_INT8 || t == OID_INT4 || t == OID_INT2 || t == OID_BOOL)
    return 1;
  v = pg_col_text(st, i); /* sum() of integers is numeric */
  return t == OID_NUMERIC && v && !strchr(v, '.');
}

const struct db_ops db_pg_ops = {
    pg_tokens,   pg_open,      pg_close,      pg_exec,    pg_prepare,
    pg_begin,    pg_ntables,   pg_has_table,  pg_analyze, pg_bind,
    pg_step,     pg_reset,     pg_finalize,   pg_ncols,   pg_col_name,
    pg_col_text, pg_col_int64, pg_col_is_int, NULL};
