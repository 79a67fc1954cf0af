/* SPDX-License-Identifier: MIT */
/*
 * A small SQL layer with two backends, SQLite (a file path) and PostgreSQL
 * (a postgresql:// or postgres:// URL), behind one prepared-statement API,
 * so the store's SQL is written once.
 *
 * SQL given to db_exec and db_prepare may use:
 *  - `?` or `?N` placeholders (1-based); PostgreSQL gets them as `$N`;
 *  - dialect tokens `@name@` or `@name:arg[,arg]@`, expanded per backend:
 *      @id@          an auto-assigned integer primary key column type
 *      @norowid@     SQLite's " WITHOUT ROWID" (nothing on PostgreSQL)
 *      @text@        a text column type compared and sorted bytewise
 *      @int@         a 64-bit integer column type
 *      @each:J@      the elements of the JSON array text J as a FROM item
 *                    with columns `value` (text) and `key` (0-based index);
 *                    give it an alias
 *      @agg:X@       the JSON array text of the values X ('[]' when none)
 *      @at:J,I@      element I of the JSON array text J, as text
 *      @ts:T@        epoch seconds T as RFC 3339 UTC text
 *      @now@         the current epoch seconds
 *      @instr:A,B@   the 1-based position of B in A, 0 when absent
 *      @contains:A,B@  the same, both lowercased letter by letter (any
 *                    script, not only A-Z): non-zero when A contains B in
 *                    either case
 *      @temp@        the schema prefix of temporary tables and views
 * Everything else is common SQL that both accept (ON CONFLICT, RETURNING,
 * IS DISTINCT FROM, CTEs).
 *
 * A `struct db` is one connection, used by one thread at a time; every
 * error message names the target with a URL's password replaced by "***".
 * On PostgreSQL an INSERT, UPDATE or DELETE without RETURNING inside a
 * transaction is pipelined: db_step returns 0 at once, and its error (if
 * any) is the error of the next statement, or of db_commit.
 */
#ifndef CONNHOST_DB_H
#define CONNHOST_DB_H

#include <stdint.h>

#include <connhost/plugin.h>

struct db;
struct db_stmt;

enum db_backend { DB_SQLITE = 0, DB_PG };

/* 1 when `target` is a PostgreSQL URL (postgresql:// or postgres://). */
int db_is_url(const char *target);

/* `target` for messages: a path as is, a URL with its password replaced
   by "***". malloc'd; NULL when out of memory. */
char *db_redact_target(const char *target);

/*
 * Connect to `target`. With `create` a missing SQLite file is created;
 * without it, a missing or empty (0-byte) file is an error, and an empty
 * one is left untouched (a PostgreSQL database must exist either way).
 * A URL's password is registered with log_add_secret(). On error `err`
 * says which target (redacted) and what to do.
 */
int db_open(const char *target, int create, struct db **out,
            struct ch_err *err);
/* The caller has found `db` to be its own store (or a new, empty one): only
   now may the backend change what is there beyond what the caller writes
   (SQLite: the switch to WAL, a header write). Until then a file that
   turns out to be someone else's is left byte for byte as it was. */
int db_claim(struct db *db);
void db_close(struct db *db);

enum db_backend db_backend(const struct db *db);
/* The target as messages show it (redacted). */
const char *db_name(const struct db *db);

/* The last error's text (redacted), "" when none. */
const char *db_errmsg(const struct db *db);
/* Why the last operation failed, as `err`: the store `db_name`, `what`
   was being done, the backend's reason and what to do. Returns the code. */
int db_fail(struct db *db, struct ch_err *err, const char *what);

/* Run one or more statements without parameters. CH_OK or negative. */
int db_exec(struct db *db, const char *sql);

/* Transactions. `write` makes writers of the same store wait for each
   other (SQLite BEGIN IMMEDIATE; PostgreSQL a transaction-level advisory
   lock, key DB_PG_WRITE_LOCK). */
#define DB_PG_WRITE_LOCK 0x636f6e6e686f7374LL /* "connhost" */
int db_begin(struct db *db, int write);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/* Tables in the store's schema (the main database / current_schema()),
   or -1 on error. */
int64_t db_ntables(struct db *db);
/* 1 when table `name` exists in that schema, 0 when not, -1 on error. */
int db_has_table(struct db *db, const char *name);

/* Fresh planner statistics for `table`, just filled (PostgreSQL would
   plan a new temporary table blind; SQLite plans without them). */
int db_analyze(struct db *db, const char *table);

/* One statement. Parameters are 1-based; text is borrowed until the next
   db_step or db_reset. Binding an index the SQL does not use is ignored. */
int db_prepare(struct db *db, const char *sql, struct db_stmt **out);
void db_bind_text(struct db_stmt *st, int i, const char *v); /* NULL: null */
void db_bind_int64(struct db_stmt *st, int i, int64_t v);
void db_bind_null(struct db_stmt *st, int i);
/* 1 = a row is ready, 0 = done, negative = error (db_fail explains). */
int db_step(struct db_stmt *st);
/* Ready to run again (bindings kept). */
void db_reset(struct db_stmt *st);
void db_finalize(struct db_stmt *st);

/* The current row. Text is NULL for null and borrowed until the next step;
   booleans read as "1" / "0". */
int db_column_count(const struct db_stmt *st);
const char *db_column_name(const struct db_stmt *st, int i);
const char *db_column_text(struct db_stmt *st, int i);
int64_t db_column_int64(struct db_stmt *st, int i);
int db_column_is_null(struct db_stmt *st, int i);
/* 1 when the value is an integer (or a boolean) rather than text. */
int db_column_is_int(struct db_stmt *st, int i);

#endif
