/* SPDX-License-Identifier: MIT */
/* Pacing budgets against a scripted clock: what the headers teach, what a
   429 does, how the rate recovers, and the budget keys. */
#include "autoconfig.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pace.h"

static int64_t fake_now; /* microseconds */

static int64_t scripted(void *arg) {
  (void)arg;
  return fake_now;
}

static struct pace_table *table;

static void setup(void) {
  fake_now = 1000000;
  table = pace_table_new(scripted, NULL);
  ck_assert_ptr_nonnull(table);
}

static void teardown(void) { pace_table_free(table); }

/* Send as fast as the budget allows for `seconds`, answering 200 with the
   given limit headers; returns the requests sent. */
static unsigned drive(struct pace_budget *b, double seconds, long limit) {
  int64_t end = fake_now + (int64_t)(seconds * 1e6);
  unsigned sent = 0;

  while (fake_now < end) {
    int64_t w = pace_acquire(b);
    if (w > 0) {
      fake_now += w;
      continue;
    }
    sent++;
    pace_observe(b, 200, limit, -1, -1);
  }
  return sent;
}

START_TEST(test_unknown_is_unpaced) {
  struct pace_budget *b = pace_budget_get(table, "k");

  ck_assert_ptr_nonnull(b);
  for (int i = 0; i < 1000; i++)
    ck_assert_int_eq(pace_acquire(b), 0);
  ck_assert(pace_rate(b) == 0);
  ck_assert_ptr_eq(pace_budget_get(table, "k"), b);
  ck_assert_ptr_ne(pace_budget_get(table, "other"), b);
}
END_TEST

START_TEST(test_learns_limit_from_headers) {
  struct pace_budget *b = pace_budget_get(table, "k");
  unsigned sent;

  ck_assert_int_eq(pace_acquire(b), 0);
  pace_observe(b, 200, 40, 39, -1);
  ck_assert_int_eq(pace_limit(b), 40);
  ck_assert(pace_rate(b) > 40 * PACE_MARGIN - 0.01 &&
            pace_rate(b) < 40 * PACE_MARGIN + 0.01);
  ck_assert(pace_rate(b) < 40);
  /* Ten seconds at the learned rate, under the limit. */
  sent = drive(b, 10.0, 40);
  ck_assert_uint_ge(sent, 400 * PACE_MARGIN - 5);
  ck_assert_uint_le(sent, 400 * PACE_MARGIN + 3);
}
END_TEST

START_TEST(test_429_halves_then_recovers) {
  struct pace_budget *b = pace_budget_get(table, "k");
  double before, after;

  pace_acquire(b);
  pace_observe(b, 200, 40, 10, -1);
  before = pace_rate(b);
  /* A 429 with Retry-After: 2 halves the rate and holds the budget. */
  pace_observe(b, 429, 40, 0, 2000);
  after = pace_rate(b);
  ck_assert(after > before * 0.49 && after < before * 0.51);
  ck_assert_int_ge(pace_acquire(b), 1999000);
  /* The answers of requests already in flight are the same signal. */
  pace_observe(b, 429, 40, 0, 2000);
  ck_assert(pace_rate(b) == after);
  fake_now += 2000000;
  ck_assert_int_eq(pace_acquire(b), 0);
  /* Quiet seconds bring it back to the ceiling (5% lower: a 429 with a
     known limit also lowers the ceiling). */
  drive(b, 8.0, 40);
  ck_assert(pace_rate(b) > 40 * PACE_MARGIN * 0.95 - 0.01);
  ck_assert(pace_rate(b) <= 40 * PACE_MARGIN * 0.95 + 1e-9);
  /* A second later a new 429 halves again. */
  fake_now += 1000000;
  pace_observe(b, 429, 40, 0, 1000);
  ck_assert(pace_rate(b) < 40 * PACE_MARGIN * 0.95 / 2 + 0.01);
}
END_TEST

START_TEST(test_stray_429_without_limit) {
  struct pace_budget *b = pace_budget_get(table, "k");

  /* 1 in 20 refused, no limit headers: each is retried alone. */
  for (int i = 0; i < 200; i++) {
    ck_assert_int_eq(pace_acquire(b), 0);
    pace_observe(b, i % 20 == 0 ? 429 : 200, -1, -1, 1000);
    fake_now += 5000;
  }
  ck_assert(pace_rate(b) == 0);
}
END_TEST

START_TEST(test_few_429s_are_no_crowd) {
  struct pace_budget *b = pace_budget_get(table, "k");

  /* A slow second with 2 of 8 answers refused, then random 5% refusals
     at 100/s: stray faults, not a limiter. */
  for (int i = 0; i < 8; i++) {
    ck_assert_int_eq(pace_acquire(b), 0);
    pace_observe(b, i >= 6 ? 429 : 200, -1, -1, 1000);
    fake_now += 100000;
  }
  ck_assert(pace_rate(b) == 0);
  fake_now += 1000000;
  for (int i = 0; i < 1000; i++) {
    ck_assert_int_eq(pace_acquire(b), 0);
    pace_observe(b, i % 20 == 7 ? 429 : 200, -1, -1, 1000);
    fake_now += 10000;
  }
  ck_assert(pace_rate(b) == 0);
}
END_TEST

START_TEST(test_limiter_without_headers) {
  struct pace_budget *b = pace_budget_get(table, "k");
  int i;

  /* A limiter that refuses everything past 30 a second, no headers. */
  for (i = 0; i < 100 && pace_rate(b) == 0; i++) {
    ck_assert_int_eq(pace_acquire(b), 0);
    pace_observe(b, i % 100 >= 30 ? 429 : 200, -1, -1, 1000);
    fake_now += 5000;
  }
  ck_assert(pace_rate(b) > 0);
  ck_assert(pace_rate(b) < 100);
}
END_TEST

START_TEST(test_remaining_zero_empties_bucket) {
  struct pace_budget *b = pace_budget_get(table, "k");

  pace_acquire(b);
  pace_observe(b, 200, 40, 5, -1);
  fake_now += 1000000; /* bucket full */
  pace_observe(b, 200, 40, 0, -1);
  ck_assert_int_gt(pace_acquire(b), 0);
}
END_TEST

START_TEST(test_keys) {
  char a[PACE_KEY_MAX], b[PACE_KEY_MAX];

  /* Derived routes: ids, keys and numbers share a budget. */
  pace_key("https://X.example.com/rest/api/3/project/OPS/role/10001?x=1", "GET",
           NULL, "me", "secret", a, sizeof(a));
  pace_key("https://x.example.com/rest/api/3/project/DEV/role/10002", "GET",
           NULL, "me", "secret", b, sizeof(b));
  ck_assert_str_eq(a, b);
  ck_assert_ptr_nonnull(strstr(a, "GET /rest/api/{}/project/{}/role/{}"));
  ck_assert_ptr_nonnull(strstr(a, "https://x.example.com\n"));
  /* The credential is hashed, never stored. */
  ck_assert_ptr_null(strstr(a, "secret"));
  ck_assert_ptr_null(strstr(a, "me"));
  /* Another credential, method or route: another budget. */
  pace_key("https://x.example.com/rest/api/3/project/DEV/role/10002", "GET",
           NULL, "me", "other", b, sizeof(b));
  ck_assert_str_ne(a, b);
  pace_key("https://x.example.com/rest/api/3/project/DEV/role/10002", "PUT",
           NULL, "me", "secret", b, sizeof(b));
  ck_assert_str_ne(a, b);
  pace_key("https://x.example.com/rest/api/3/project/DEV/role/10002", "GET",
           "/rest/api/3/project/{projectIdOrKey}/role/{id}", "me", "secret", b,
           sizeof(b));
  ck_assert_ptr_nonnull(
      strstr(b, "GET /rest/api/3/project/{projectIdOrKey}/role/{id}"));
  ck_assert_str_ne(a, b);
  /* A cut key stays terminated. */
  ck_assert_uint_eq(pace_key("http://h/a", "GET", NULL, NULL, NULL, a, 8), 7);
  ck_assert_uint_eq(strlen(a), 7);
}
END_TEST

static Suite *pace_suite(void) {
  Suite *s = suite_create("pace");
  TCase *tc = tcase_create("budgets");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_unknown_is_unpaced);
  tcase_add_test(tc, test_learns_limit_from_headers);
  tcase_add_test(tc, test_429_halves_then_recovers);
  tcase_add_test(tc, test_stray_429_without_limit);
  tcase_add_test(tc, test_few_429s_are_no_crowd);
  tcase_add_test(tc, test_limiter_without_headers);
  tcase_add_test(tc, test_remaining_zero_empties_bucket);
  tcase_add_test(tc, test_keys);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(pace_suite());
  int failed;

  srunner_run_all(sr, CK_ENV);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
