/* SPDX-License-Identifier: MIT */
/* The host's one growable buffer and JSON string escaper (host/buf.c). */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

START_TEST(test_grow_and_take) {
  struct buf b = {0};
  char *s;

  for (int i = 0; i < 1000; i++)
    ck_assert_int_eq(buf_printf(&b, "%d,", i % 10), 0);
  ck_assert_uint_eq(b.len, 2000);
  ck_assert_uint_eq(strlen(b.p), 2000);
  ck_assert_int_eq(buf_add(&b, "xy", 1), 0);
  s = buf_take(&b);
  ck_assert_str_eq(s + 1998, "9,x");
  ck_assert_ptr_eq(b.p, NULL);
  free(s);
  /* an empty buffer hands over "" */
  s = buf_take(&b);
  ck_assert_str_eq(s, "");
  free(s);
}
END_TEST

START_TEST(test_cap) {
  struct buf b = {.max = 8};

  ck_assert_int_eq(buf_puts(&b, "12345678"), 0);
  ck_assert_int_eq(buf_puts(&b, "9"), -1);
  ck_assert(b.failed);
  /* after a failure appends do nothing and the text is not handed over */
  ck_assert_int_eq(buf_puts(&b, ""), -1);
  ck_assert_str_eq(b.p, "12345678");
  ck_assert_ptr_eq(buf_take(&b), NULL);
  ck_assert_ptr_eq(b.p, NULL);
  ck_assert(!b.failed);
}
END_TEST

/* A reserve makes room in one allocation and appends nothing; it follows
   the cap like an append of that size. */
START_TEST(test_reserve) {
  struct buf b = {0}, capped = {.max = 8};
  char *before;

  ck_assert_int_eq(buf_puts(&b, "ab"), 0);
  ck_assert_int_eq(buf_reserve(&b, 5000), 0);
  ck_assert_uint_eq(b.len, 2);
  ck_assert_uint_ge(b.cap, 5003);
  ck_assert_str_eq(b.p, "ab");
  before = b.p;
  for (int i = 0; i < 1000; i++)
    ck_assert_int_eq(buf_puts(&b, "01234"), 0);
  ck_assert_ptr_eq(b.p, before); /* no further allocation */
  ck_assert_uint_eq(b.len, 5002);
  buf_free(&b);

  ck_assert_int_eq(buf_reserve(&capped, 9), -1);
  ck_assert(capped.failed);
  buf_free(&capped);
}
END_TEST

START_TEST(test_wipe_keeps_text) {
  struct buf b = {.wipe = 1};
  char *s;

  for (int i = 0; i < 100; i++)
    buf_puts(&b, "secret-");
  s = buf_take(&b);
  ck_assert_uint_eq(strlen(s), 700);
  ck_assert(strncmp(s + 693, "secret-", 7) == 0);
  free(s);
}
END_TEST

START_TEST(test_json_str) {
  static const char in[] = "a\"b\\c\n\t\x01\x7f\xc3\xa9\b\f\r";
  struct buf b = {0};

  ck_assert_int_eq(buf_json_str(&b, in, sizeof(in) - 1), 0);
  ck_assert_str_eq(b.p, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\xc3\xa9\\b\\f\\r\"");
  buf_free(&b);
  /* an embedded NUL is escaped, not a terminator */
  ck_assert_int_eq(buf_json_str(&b, "x\0y", 3), 0);
  ck_assert_str_eq(b.p, "\"x\\u0000y\"");
  buf_free(&b);
}
END_TEST

static Suite *buf_suite(void) {
  Suite *s = suite_create("buf");
  TCase *tc = tcase_create("buf");

  tcase_add_test(tc, test_grow_and_take);
  tcase_add_test(tc, test_cap);
  tcase_add_test(tc, test_reserve);
  tcase_add_test(tc, test_wipe_keeps_text);
  tcase_add_test(tc, test_json_str);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(buf_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
