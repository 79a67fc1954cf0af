/* SPDX-License-Identifier: MIT */
/* The db layer on SQLite (a file path): see db.h. */
#include "autoconfig.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "db_int.h"
#include "utf8.h"

struct sq_stmt {
  struct db_stmt base;
  sqlite3_stmt *st;
};

static const struct db_token sq_tokens[] = {
    {"id", "INTEGER PRIMARY KEY"},
    {"norowid", " WITHOUT ROWID"},
    {"text", "TEXT"},
    {"int", "INTEGER"},
    {"each", "json_each(%1)"},
    {"agg", "json_group_array(%1)"},
    {"at", "json_extract(%1, '$[' || (%2) || ']')"},
    {"ts", "strftime('%Y-%m-%dT%H:%M:%SZ', %1, 'unixepoch')"},
    {"now", "CAST(strftime('%s', 'now') AS INTEGER)"},
    {"instr", "instr(%1, %2)"},
    {"contains", "instr(ch_lower(%1), ch_lower(%2))"},
    {"temp", "temp."},
    {"orignore", "OR IGNORE"},
    {NULL, NULL}};

static sqlite3 *conn(const struct db *db) { return db->conn; }

/* ch_lower(text): utf8_lower, for case-insensitive search. */
static void sq_lower(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *s = (const char *)sqlite3_value_text(argv[0]);
  size_t len;
  char *out;

  (void)argc;
  if (!s) {
    sqlite3_result_null(ctx);
    return;
  }
  out = utf8_lower(s, (size_t)sqlite3_value_bytes(argv[0]), &len);
  if (!out || len > INT_MAX) {
    free(out);
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_result_text(ctx, out, (int)len, free);
}

/* Record SQLite's last error on `db`. Returns -1. */
static int sq_error(struct db *db) {
  int code = sqlite3_errcode(conn(db));
  enum db_errkind kind = DB_EK_OTHER;

  if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
    kind = DB_EK_LOCKED;
  else if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
    kind = DB_EK_CORRUPT;
  /* the store's own SQL names only what its schema has: a table or
     column missing is a store that is not (or no longer) connhost's */
  else if (code == SQLITE_ERROR &&
           (strncmp(sqlite3_errmsg(conn(db)), "no such table", 13) == 0 ||
            strncmp(sqlite3_errmsg(conn(db)), "no such column", 14) == 0))
    kind = DB_EK_CORRUPT;
  else if (code == SQLITE_NOMEM)
    kind = DB_EK_NOMEM;
  return db_set_error(db, kind, sqlite3_errmsg(conn(db)));
}

static int sq_exec(struct db *db, const char *sql) {
  return sqlite3_exec(conn(db), sql, NULL, NULL, NULL) == SQLITE_OK
             ? CH_OK
             : sq_error(db);
}

/* An index built by a first recording sorts in runs of the larger of
   PMASZ pages and the cache (SQLite's default 250: 4 MB with 16 KB
   pages, on top of the sync's peak); 64 lets the first recording's 1 MB
   cache bound them (the huge tenant's peak: 1.5 to 2.5 MB less, CPU the
   same within noise). Readers, with an 8 MB cache, sort in runs of that
   either way. */
static void sq_config(void) { sqlite3_config(SQLITE_CONFIG_PMASZ, 64); }

static int sq_open(struct db *db, const char *path, int create) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  struct stat sb;
  sqlite3 *h = NULL;

  /* Only before SQLite initialises (its first open); later it is
     refused, harmlessly. */
  pthread_once(&once, sq_config);

  if (stat(path, &sb) != 0) {
    if (!create)
      return db_set_error(db, DB_EK_MISSING, "no such file");
    flags |= SQLITE_OPEN_CREATE;
  } else if (S_ISDIR(sb.st_mode)) {
    return db_set_error(db, DB_EK_DIR, "is a directory");
  } else if (!create && S_ISREG(sb.st_mode) && sb.st_size == 0) {
    /* said before SQLite opens it: a 0-byte file is no database yet */
    return db_set_error(db, DB_EK_EMPTY, "empty file");
  }
  if (sqlite3_open_v2(path, &h, flags, NULL) != SQLITE_OK) {
    db->conn = h;
    return h ? sq_error(db) : db_set_error(db, DB_EK_NOMEM, "out of memory");
  }
  db->conn = h;
  /* A sync holds the write lock for one transaction; readers wait a
     little, then say who holds it. */
  sqlite3_busy_timeout(h, 2000);
  /* SQLite's lower() maps A-Z only: @contains@ folds every letter. */
  if (sqlite3_create_function_v2(h, "ch_lower", 1,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC |
                                     SQLITE_INNOCUOUS,
                                 NULL, sq_lower, NULL, NULL, NULL))
    return sq_error(db);
  /* The writer (a sync recording its run) works beside the whole graph in
     memory, so its page cache stays small: 2 MB instead of 8 cost no
     measurable CPU on the large tenant and kept 13 MB off the sync's peak
     RSS; 1 MB for a new file, whose tables and indexes are filled in key
     order and hardly read. Readers have the memory to themselves. */
  /* A new file is filled once by its first recording: in the rollback
     journal mode SQLite writes those new pages straight into the file,
     where WAL would write them twice (the log, then the checkpoint);
     sq_close turns WAL on, for readers beside later syncs (sq_claim, for
     a file that was there). Pages of 16 KB
     instead of 4 take a quarter of the writes and B-tree splits (the
     large tenant's first recording: 0.2 s less CPU). */
  db->fresh = (flags & SQLITE_OPEN_CREATE) != 0;
  if ((db->fresh && sq_exec(db, "PRAGMA page_size = 16384")) ||
      sq_exec(db, "PRAGMA synchronous = NORMAL") ||
      sq_exec(db, !create     ? "PRAGMA cache_size = -8192"
                  : db->fresh ? "PRAGMA cache_size = -1024"
                              : "PRAGMA cache_size = -2048"))
    return -1;
  return CH_OK;
}

/* WAL on a file that was there, once the store knows it for its own: the
   switch writes the header, and a foreign file must stay as it was. */
static int sq_claim(struct db *db) {
  return db->fresh ? CH_OK : sq_exec(db, "PRAGMA journal_mode = WAL");
}

static void sq_close(struct db *db) {
  if (db->fresh)
    /* failing here (a reader holds the file) only delays WAL to the
       next open */
    sqlite3_exec(conn(db), "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
  sqlite3_close(conn(db));
}

static int sq_begin(struct db *db, int write) {
  return sq_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static int64_t sq_scalar(struct db *db, const char *sql, const char *arg) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;

  if (sqlite3_prepare_v2(conn(db), sql, -1, &st, NULL) != SQLITE_OK)
    return sq_error(db);
  if (arg)
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  else
    sq_error(db);
  sqlite3_finalize(st);
  return v;
}

static int64_t sq_ntables(struct db *db) {
  return sq_scalar(db, "SELECT count(*) FROM sqlite_master", NULL);
}

static int sq_has_table(struct db *db, const char *name) {
  return (int)sq_scalar(db,
                        "SELECT count(*) FROM sqlite_master WHERE type ="
                        " 'table' AND name = ?",
                        name);
}

static int sq_analyze(struct db *db, const char *table) {
  (void)db;
  (void)table;
  return CH_OK;
}

static int sq_prepare(struct db *db, const char *sql, struct db_stmt **out) {
  struct sq_stmt *s = calloc(1, sizeof(*s));

  if (!s)
    return db_set_error(db, DB_EK_NOMEM, "out of memory");
  s->base.db = db;
  if (sqlite3_prepare_v2(conn(db), sql, -1, &s->st, NULL) != SQLITE_OK) {
    free(s);
    return sq_error(db);
  }
  *out = &s->base;
  return CH_OK;
}

static sqlite3_stmt *h(const struct db_stmt *st) {
  return ((const struct sq_stmt *)st)->st;
}

static void sq_bind(struct db_stmt *st, int i, const char *text, int64_t v,
                    int kind) {
  if (i > sqlite3_bind_parameter_count(h(st)))
    return;
  if (kind == 1)
    sqlite3_bind_text(h(st), i, text, -1, SQLITE_STATIC);
  else if (kind == 2)
    sqlite3_bind_int64(h(st), i, v);
  else
    sqlite3_bind_null(h(st), i);
}

static int sq_step(struct db_stmt *st) {
  int rc = sqlite3_step(h(st));

  if (rc == SQLITE_ROW)
    return 1;
  if (rc == SQLITE_DONE)
    return 0;
  return sq_error(st->db);
}

static void sq_reset(struct db_stmt *st) { sqlite3_reset(h(st)); }

static void sq_finalize(struct db_stmt *st) {
  sqlite3_finalize(h(st));
  free(st);
}

static int sq_ncols(const struct db_stmt *st) {
  return sqlite3_column_count(h(st));
}
static const char *sq_col_name(const struct db_stmt *st, int i) {
  return sqlite3_column_name(h(st), i);
}
static const char *sq_col_text(struct db_stmt *st, int i) {
  return (const char *)sqlite3_column_text(h(st), i);
}
static int64_t sq_col_int64(struct db_stmt *st, int i) {
  return sqlite3_column_int64(h(st), i);
}
static int sq_col_is_int(struct db_stmt *st, int i) {
  return sqlite3_column_type(h(st), i) == SQLITE_INTEGER;
}

const struct db_ops db_sqlite_ops = {
    sq_tokens,   sq_open,      sq_close,      sq_exec,    sq_prepare,
    sq_begin,    sq_ntables,   sq_has_table,  sq_analyze, sq_bind,
    sq_step,     sq_reset,     sq_finalize,   sq_ncols,   sq_col_name,
    sq_col_text, sq_col_int64, sq_col_is_int, sq_claim};
