/* SPDX-License-Identifier: MIT */
/* The db layer's common half: targets and their redaction, dialect tokens,
   errors, and the dispatch to a backend (db_sqlite.c, db_pg.c). */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "log.h"
#include "util.h"

int db_is_url(const char *target) {
  return target && (strncmp(target, "postgresql://", 13) == 0 ||
                    strncmp(target, "postgres://", 11) == 0);
}

/* Where the password of URL `u` is: [*start, *end), or 0 when it has none.
   In the user info (user:PASSWORD@host) or a `password=` parameter. */
static int password_span(const char *u, size_t *start, size_t *end) {
  const char *a = strstr(u, "://"), *auth_end, *at = NULL, *q;

  if (!a)
    return 0;
  a += 3;
  auth_end = a + strcspn(a, "/?#");
  for (const char *p = a; p < auth_end; p++)
    if (*p == '@')
      at = p;
  if (at) {
    const char *colon = memchr(a, ':', (size_t)(at - a));
    if (colon) {
      *start = (size_t)(colon + 1 - u);
      *end = (size_t)(at - u);
      return 1;
    }
  }
  for (q = strchr(auth_end, '?'); q; q = strchr(q + 1, '&')) {
    if (strncmp(q + 1, "password=", 9) == 0) {
      *start = (size_t)(q + 10 - u);
      *end = *start + strcspn(u + *start, "&#");
      return 1;
    }
  }
  return 0;
}

char *db_redact_target(const char *target) {
  size_t s, e, n = strlen(target);
  char *out;

  if (!db_is_url(target) || !password_span(target, &s, &e))
    return strdup(target);
  out = malloc(n + 4);
  if (!out)
    return NULL;
  memcpy(out, target, s);
  memcpy(out + s, "***", 3);
  memcpy(out + s + 3, target + e, n - e + 1);
  return out;
}

/* Percent-decoding (a password in a URL is percent-encoded). */
static char *pct_decode(const char *s, size_t n) {
  char *out = malloc(n + 1), *o = out;

  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    int hi = i + 2 < n && s[i] == '%' ? util_hexval(s[i + 1]) : -1;
    int lo = hi >= 0 ? util_hexval(s[i + 2]) : -1;
    if (lo >= 0) {
      *o++ = (char)(hi * 16 + lo);
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = 0;
  return out;
}

/* Replace every `secret` in `buf` (of size `cap`) by "***". */
static void scrub(char *buf, size_t cap, const char *secret) {
  size_t sl = secret ? strlen(secret) : 0;
  char *p = buf;

  if (!sl)
    return;
  while ((p = strstr(p, secret))) {
    size_t tail = strlen(p + sl) + 1;
    if (sl < 3 && (size_t)(p - buf) + 3 + tail > cap)
      break;
    memmove(p + 3, p + sl, tail);
    memcpy(p, "***", 3);
    p += 3;
  }
}

int db_set_error(struct db *db, enum db_errkind kind, const char *msg) {
  size_t n;

  db->errkind = kind;
  snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg ? msg : "unknown error");
  /* the first line says it; libpq's hints follow on the next ones */
  db->errmsg[strcspn(db->errmsg, "\n")] = 0;
  n = strlen(db->errmsg);
  while (n && (db->errmsg[n - 1] == '\n' || db->errmsg[n - 1] == ' '))
    db->errmsg[--n] = 0;
  scrub(db->errmsg, sizeof(db->errmsg), db->secret);
  /* and whatever other secret the config registered */
  {
    char tmp[sizeof(db->errmsg)];
    log_redact(db->errmsg, tmp, sizeof(tmp));
    memcpy(db->errmsg, tmp, sizeof(tmp));
  }
  return -1;
}

const char *db_errmsg(const struct db *db) { return db->errmsg; }

int db_fail(struct db *db, struct ch_err *err, const char *what) {
  const char *n = db->name, *m = db->errmsg;

  switch (db->errkind) {
  case DB_EK_LOCKED:
    return ch_err_set(err, CH_E_IO,
                      "store '%s' is locked by another process (%s); wait for "
                      "it to finish or stop it",
                      n, what);
  case DB_EK_CORRUPT:
    return ch_err_set(err, CH_E_IO,
                      "store '%s' is corrupt or not a connhost store (%s: "
                      "%s); move it away and sync again to start a new one",
                      n, what, m);
  case DB_EK_NOMEM:
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  case DB_EK_CONNECT:
    return ch_err_set(err, CH_E_IO,
                      "store '%s': cannot reach the PostgreSQL server; "
                      "check that it runs and accepts connections there, or "
                      "fix 'store:' / --db (%s: %s)",
                      n, what, m);
  case DB_EK_MISSING:
    return ch_err_set(err, CH_E_CONFIG,
                      "store '%s' does not exist: run 'connhost sync' first, "
                      "or give --db PATH",
                      n);
  case DB_EK_DIR:
    return ch_err_set(err, CH_E_CONFIG,
                      "store '%s' is a directory, not a store file: give "
                      "--db (or 'store:') the path of a file in it",
                      n);
  case DB_EK_EMPTY:
    return ch_err_set(err, CH_E_CONFIG,
                      "store '%s' is an empty file, not a connhost store: "
                      "run 'connhost sync' to record into it, or give --db "
                      "PATH",
                      n);
  default:
    return ch_err_set(err, CH_E_IO, "store '%s': %s: %s", n, what, m);
  }
}

/* ---- dialect tokens ------------------------------------------------------ */

/* Append n bytes to the growing string *o (of capacity *cap). */
static int put(char **o, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t nc = (*len + n + 1) * 2;
    char *g = realloc(*o, nc);
    if (!g)
      return -1;
    *o = g;
    *cap = nc;
  }
  memcpy(*o + *len, s, n);
  *len += n;
  (*o)[*len] = 0;
  return 0;
}

/* Split "a,b" at its first comma outside parentheses and quotes. */
static size_t arg_split(const char *a, size_t n) {
  int depth = 0;
  char q = 0;

  for (size_t i = 0; i < n; i++) {
    if (q) {
      if (a[i] == q)
        q = 0;
    } else if (a[i] == '\'' || a[i] == '"') {
      q = a[i];
    } else if (a[i] == '(') {
      depth++;
    } else if (a[i] == ')') {
      depth--;
    } else if (a[i] == ',' && depth == 0) {
      return i;
    }
  }
  return n;
}

static int expand_token(const struct db_token *t, const char *args,
                        size_t nargs, char **o, size_t *len, size_t *cap) {
  size_t c = arg_split(args, nargs);
  const char *arg[2] = {args, c < nargs ? args + c + 1 : ""};
  size_t alen[2] = {c, c < nargs ? nargs - c - 1 : 0};

  for (const char *p = t->pattern; *p; p++) {
    if (p[0] == '%' && (p[1] == '1' || p[1] == '2')) {
      int k = p[1] - '1';
      if (put(o, len, cap, arg[k], alen[k]))
        return -1;
      p++;
    } else if (put(o, len, cap, p, 1)) {
      return -1;
    }
  }
  return 0;
}

char *db_expand(const struct db *db, const char *sql) {
  size_t len = 0, cap = strlen(sql) + 64;
  char *o = malloc(cap);
  const char *p = sql;
  char q = 0;

  if (!o)
    return NULL;
  o[0] = 0;
  for (; *p; p++) {
    const char *end, *colon;
    size_t nlen;
    const struct db_token *t = NULL;

    if (q) {
      if (*p == q)
        q = 0;
    } else if (*p == '\'' || *p == '"') {
      q = *p;
    } else if (*p == '@' && (end = strchr(p + 1, '@'))) {
      colon = memchr(p + 1, ':', (size_t)(end - p - 1));
      nlen = (size_t)((colon ? colon : end) - p - 1);
      for (const struct db_token *k = db->ops->tokens; k->name; k++)
        if (strlen(k->name) == nlen && strncmp(k->name, p + 1, nlen) == 0)
          t = k;
      if (t) {
        const char *a = colon ? colon + 1 : end;
        if (expand_token(t, a, (size_t)(end - a), &o, &len, &cap))
          goto nomem;
        p = end;
        continue;
      }
    }
    if (put(&o, &len, &cap, p, 1))
      goto nomem;
  }
  return o;
nomem:
  free(o);
  return NULL;
}

/* ---- dispatch ------------------------------------------------------------ */

int db_open(const char *target, int create, struct db **out,
            struct ch_err *err) {
  struct db *db = calloc(1, sizeof(*db));
  char *secret = NULL;
  size_t s, e;
  int rc;

  *out = NULL;
  if (!db || !(db->name = db_redact_target(target))) {
    free(db);
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  db->backend = db_is_url(target) ? DB_PG : DB_SQLITE;
  db->ops = db->backend == DB_PG ? &db_pg_ops : &db_sqlite_ops;
  if (db->backend == DB_PG && password_span(target, &s, &e) && e > s) {
    /* as written and decoded: either could show up in a message */
    secret = pct_decode(target + s, e - s);
    log_add_secret(secret);
    free(secret);
    secret = strndup(target + s, e - s);
    log_add_secret(secret);
    db->secret = secret;
  }
  rc = db->ops->connect(db, target, create);
  if (rc) {
    rc = db_fail(db, err, "opening");
    db_close(db);
    return rc;
  }
  *out = db;
  return CH_OK;
}

int db_claim(struct db *db) {
  return db->ops->claim ? db->ops->claim(db) : CH_OK;
}

void db_close(struct db *db) {
  if (!db)
    return;
  if (db->conn)
    db->ops->disconnect(db);
  free((char *)db->secret);
  free(db->name);
  free(db);
}

enum db_backend db_backend(const struct db *db) { return db->backend; }
const char *db_name(const struct db *db) { return db->name; }

int db_exec(struct db *db, const char *sql) {
  char *x = db_expand(db, sql);
  int rc;

  if (!x)
    return db_set_error(db, DB_EK_NOMEM, "out of memory");
  rc = db->ops->exec(db, x);
  free(x);
  return rc;
}

int db_begin(struct db *db, int write) { return db->ops->begin(db, write); }
int db_commit(struct db *db) { return db_exec(db, "COMMIT"); }

void db_rollback(struct db *db) {
  char keep[sizeof(db->errmsg)];
  enum db_errkind kind = db->errkind;

  /* the error that made us roll back is the one to report */
  memcpy(keep, db->errmsg, sizeof(keep));
  db_exec(db, "ROLLBACK");
  memcpy(db->errmsg, keep, sizeof(keep));
  db->errkind = kind;
}

int64_t db_ntables(struct db *db) { return db->ops->ntables(db); }
int db_has_table(struct db *db, const char *name) {
  return db->ops->has_table(db, name);
}

int db_analyze(struct db *db, const char *table) {
  return db->ops->analyze(db, table);
}

int db_prepare(struct db *db, const char *sql, struct db_stmt **out) {
  char *x = db_expand(db, sql);
  int rc;

  *out = NULL;
  if (!x)
    return db_set_error(db, DB_EK_NOMEM, "out of memory");
  rc = db->ops->prepare(db, x, out);
  free(x);
  return rc;
}

void db_bind_text(struct db_stmt *st, int i, const char *v) {
  st->db->ops->bind(st, i, v, 0, v ? 1 : 3);
}
void db_bind_int64(struct db_stmt *st, int i, int64_t v) {
  st->db->ops->bind(st, i, NULL, v, 2);
}
void db_bind_null(struct db_stmt *st, int i) {
  st->db->ops->bind(st, i, NULL, 0, 0);
}
int db_step(struct db_stmt *st) { return st->db->ops->step(st); }
void db_reset(struct db_stmt *st) { st->db->ops->reset(st); }
void db_finalize(struct db_stmt *st) {
  if (st)
    st->db->ops->finalize(st);
}
int db_column_count(const struct db_stmt *st) { return st->db->ops->ncols(st); }
const char *db_column_name(const struct db_stmt *st, int i) {
  return st->db->ops->col_name(st, i);
}
const char *db_column_text(struct db_stmt *st, int i) {
  return st->db->ops->col_text(st, i);
}
int64_t db_column_int64(struct db_stmt *st, int i) {
  return st->db->ops->col_int64(st, i);
}
int db_column_is_null(struct db_stmt *st, int i) {
  return st->db->ops->col_text(st, i) == NULL;
}
int db_column_is_int(struct db_stmt *st, int i) {
  return st->db->ops->col_is_int(st, i);
}
