/* SPDX-License-Identifier: MIT */
/* Between db.c and its backends (db_sqlite.c, db_pg.c): not for callers. */
#ifndef CONNHOST_DB_INT_H
#define CONNHOST_DB_INT_H

#include <stddef.h>

#include "db.h"

/* Why the last operation failed, for db_fail's advice. */
enum db_errkind {
  DB_EK_OTHER = 0,
  DB_EK_LOCKED,  /* another writer holds the store */
  DB_EK_CORRUPT, /* not a database */
  DB_EK_NOMEM,
  DB_EK_CONNECT, /* cannot reach or lost the server */
  DB_EK_MISSING, /* the SQLite file does not exist */
  DB_EK_EMPTY,   /* the SQLite file is empty (0 bytes) and not to be made */
  DB_EK_DIR      /* the SQLite path is a directory */
};

/* One dialect token: `@name@` or `@name:args@` becomes `pattern`, with
   %1 and %2 replaced by the arguments. */
struct db_token {
  const char *name, *pattern;
};

struct db_ops {
  const struct db_token *tokens; /* NULL-terminated */
  int (*connect)(struct db *db, const char *target, int create);
  void (*disconnect)(struct db *db);
  int (*exec)(struct db *db, const char *sql); /* expanded */
  int (*prepare)(struct db *db, const char *sql, struct db_stmt **out);
  int (*begin)(struct db *db, int write);
  int64_t (*ntables)(struct db *db);
  int (*has_table)(struct db *db, const char *name);
  int (*analyze)(struct db *db, const char *table);
  void (*bind)(struct db_stmt *st, int i, const char *text, int64_t v,
               int kind); /* 0 null, 1 text, 2 int, 3 null text */
  int (*step)(struct db_stmt *st);
  void (*reset)(struct db_stmt *st);
  void (*finalize)(struct db_stmt *st);
  int (*ncols)(const struct db_stmt *st);
  const char *(*col_name)(const struct db_stmt *st, int i);
  const char *(*col_text)(struct db_stmt *st, int i);
  int64_t (*col_int64)(struct db_stmt *st, int i);
  int (*col_is_int)(struct db_stmt *st, int i);
  int (*claim)(struct db *db); /* NULL: nothing to do */
};

struct db {
  const struct db_ops *ops;
  enum db_backend backend;
  char *name;         /* the target, redacted */
  const char *secret; /* a URL's password, to scrub from messages */
  char errmsg[512];   /* redacted */
  enum db_errkind errkind;
  void *conn;       /* the backend's handle */
  unsigned nstmt;   /* statements prepared (PostgreSQL names) */
  unsigned pending; /* PostgreSQL: writes sent in the pipeline */
  int piped;        /* PostgreSQL: in pipeline mode */
  int fresh;        /* SQLite: this connection created the file */
};

/* Every backend's statement starts with this. */
struct db_stmt {
  struct db *db;
};

extern const struct db_ops db_sqlite_ops, db_pg_ops;

/* Record the last error: `msg` with the secret scrubbed. Returns -1. */
int db_set_error(struct db *db, enum db_errkind kind, const char *msg);

/* `sql` with the dialect tokens of `db` expanded. malloc'd or NULL. */
char *db_expand(const struct db *db, const char *sql);

#endif
