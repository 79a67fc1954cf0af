/* SPDX-License-Identifier: MIT */
/* The db layer on SQLite: placeholders, the dialect tokens, binding and
   columns; and the redaction of a PostgreSQL URL's password. (The
   PostgreSQL backend runs the same store tests in tests/e2e/test_store.py.) */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"

static char path[64];
static struct db *db;

static void setup(void) {
  struct ch_err err = {0};
  int fd;

  snprintf(path, sizeof(path), "/tmp/check_db.XXXXXX");
  fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  unlink(path);
  ck_assert_int_eq(db_open(path, 1, &db, &err), CH_OK);
}

static void teardown(void) {
  char wal[80];

  db_close(db);
  unlink(path);
  snprintf(wal, sizeof(wal), "%s-wal", path);
  unlink(wal);
  snprintf(wal, sizeof(wal), "%s-shm", path);
  unlink(wal);
}

/* The one text value `sql` selects. malloc'd. */
static char *one(const char *sql) {
  struct db_stmt *st = NULL;
  char *v;

  ck_assert_int_eq(db_prepare(db, sql, &st), CH_OK);
  ck_assert_int_eq(db_step(st), 1);
  v = strdup(db_column_text(st, 0) ? db_column_text(st, 0) : "(null)");
  ck_assert_int_eq(db_step(st), 0);
  db_finalize(st);
  return v;
}

#define ck_one(sql, want)                                                      \
  do {                                                                         \
    char *got_ = one(sql);                                                     \
    ck_assert_str_eq(got_, want);                                              \
    free(got_);                                                                \
  } while (0)

START_TEST(test_tokens) {
  ck_one("SELECT @agg:x@ FROM (SELECT 'a' AS x UNION ALL SELECT 'b')",
         "[\"a\",\"b\"]");
  ck_one("SELECT @agg:x@ FROM (SELECT 1 AS x) WHERE x = 2", "[]");
  ck_one("SELECT group_concat(j.value || '@' || j.key, ',') FROM"
         " @each:'[\"p\",\"q\"]'@ j",
         "p@0,q@1");
  ck_one("SELECT @at:'[\"p\",\"q\"]',1@", "q");
  ck_one("SELECT @ts:0@", "1970-01-01T00:00:00Z");
  ck_one("SELECT @instr:lower('ABC'),'c'@", "3");
  /* not inside quotes, and an unknown name stays as written */
  ck_one("SELECT '@agg:x@' || '@nope@'", "@agg:x@@nope@");
}
END_TEST

START_TEST(test_schema_tokens_and_returning) {
  struct db_stmt *st = NULL;

  ck_assert_int_eq(db_exec(db, "CREATE TABLE t(id @id@, k @text@ NOT NULL,"
                               " n @int@); CREATE TABLE kv(k @text@ PRIMARY"
                               " KEY, v @int@)@norowid@"),
                   CH_OK);
  ck_assert_int_eq(db_has_table(db, "t"), 1);
  ck_assert_int_eq(db_has_table(db, "u"), 0);
  ck_assert_int_eq(db_ntables(db), 2);
  ck_assert_int_eq(db_begin(db, 1), CH_OK);
  ck_assert_int_eq(
      db_prepare(db, "INSERT INTO t(k, n) VALUES(?, ?) RETURNING id", &st),
      CH_OK);
  for (int i = 1; i <= 3; i++) {
    db_bind_text(st, 1, i == 2 ? NULL : "x");
    db_bind_int64(st, 2, 10000000000LL * i);
    db_bind_int64(st, 7, 1); /* beyond the statement's: ignored */
    ck_assert_msg(db_step(st) == (i == 2 ? -1 : 1), "%d: %s", i,
                  db_errmsg(db)); /* NOT NULL */
    if (i != 2)
      ck_assert_int_eq(db_column_int64(st, 0), i == 1 ? 1 : 2);
    db_reset(st);
  }
  db_finalize(st);
  ck_assert_str_ne(db_errmsg(db), "");
  ck_assert_int_eq(db_commit(db), CH_OK);
  /* ?N by number, reused */
  ck_assert_int_eq(
      db_prepare(db, "SELECT count(*), ?2 FROM t WHERE n >= ?1 OR n = ?1", &st),
      CH_OK);
  db_bind_int64(st, 1, 20000000000LL);
  db_bind_null(st, 2);
  ck_assert_int_eq(db_step(st), 1);
  ck_assert_int_eq(db_column_int64(st, 0), 1);
  ck_assert(db_column_is_int(st, 0));
  ck_assert(db_column_is_null(st, 1));
  ck_assert_str_eq(db_column_name(st, 0), "count(*)");
  db_finalize(st);
}
END_TEST

START_TEST(test_errors_name_the_store) {
  struct ch_err err = {0};
  struct db *none = NULL;

  ck_assert_int_ne(db_exec(db, "SELECT * FROM nowhere"), CH_OK);
  db_fail(db, &err, "reading");
  ck_assert_ptr_nonnull(strstr(err.msg, path));
  ck_assert_ptr_nonnull(strstr(err.msg, "no such table"));
  ck_assert_int_ne(db_open("/nonexistent/dir/x.db", 0, &none, &err), CH_OK);
  ck_assert_ptr_null(none);
  ck_assert_ptr_nonnull(strstr(err.msg, "does not exist"));
}
END_TEST

START_TEST(test_redact_url) {
  static const char *const cases[][2] = {
      {"postgresql://u:s3cret@h:5432/db?sslmode=require",
       "postgresql://u:***@h:5432/db?sslmode=require"},
      {"postgres://u:p%40ss@h/db", "postgres://u:***@h/db"},
      {"postgresql://u@h/db?sslmode=verify-full&password=s3cret&x=1",
       "postgresql://u@h/db?sslmode=verify-full&password=***&x=1"},
      {"postgresql://h/db", "postgresql://h/db"},
      {"/var/lib/connhost/a:b@c.db", "/var/lib/connhost/a:b@c.db"},
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *r = db_redact_target(cases[i][0]);
    ck_assert_str_eq(r, cases[i][1]);
    free(r);
  }
  ck_assert(db_is_url("postgres://h/db"));
  ck_assert(!db_is_url("connhost.db"));
}
END_TEST

static Suite *db_suite(void) {
  Suite *s = suite_create("db");
  TCase *tc = tcase_create("sqlite");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_tokens);
  tcase_add_test(tc, test_schema_tokens_and_returning);
  tcase_add_test(tc, test_errors_name_the_store);
  tcase_add_test(tc, test_redact_url);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(db_suite());
  int failed;

  srunner_run_all(sr, CK_ENV);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
