/* SPDX-License-Identifier: MIT */
/* Unit tests for serve's parts that need no network: label escaping and
   the exposition, listen addresses, the token comparison, durations. */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "httpd.h"
#include "metrics.h"

START_TEST(test_escape_label) {
  char out[64];

  ck_assert_int_eq(metrics_escape_label("a\"b\\c\nd", out, sizeof(out)), 0);
  ck_assert_str_eq(out, "a\\\"b\\\\c\\nd");
  /* a stray byte becomes U+FFFD; well-formed UTF-8 stays */
  ck_assert_int_eq(metrics_escape_label("x\xffy\xc3\xa9", out, sizeof(out)), 0);
  ck_assert_str_eq(out, "x\xef\xbf\xbdy\xc3\xa9");
  /* too small: -1 and a terminated prefix, never a cut escape */
  ck_assert_int_eq(metrics_escape_label("ab\"", out, 4), -1);
  ck_assert_str_eq(out, "ab");
}
END_TEST

START_TEST(test_render) {
  struct metrics *m = metrics_new();
  struct metrics_run ok = {.tenant = "acme",
                           .instance = "jira",
                           .ok = 1,
                           .started = 100,
                           .finished = 102.5,
                           .duration = 2.5,
                           .nresources = 7,
                           .ngrants = 9,
                           .requests = 3,
                           .retries = 1,
                           .throttled = 1,
                           .bytes = 4096};
  struct metrics_run bad = {.tenant = "acme",
                            .instance = "jira",
                            .ok = 0,
                            .started = 200,
                            .finished = 201,
                            .duration = 1,
                            .requests = 2};
  char *text;

  ck_assert_ptr_nonnull(m);
  metrics_attempt(m, "acme", "jira", 100);
  metrics_record(m, &ok);
  metrics_record(m, &bad);
  text = metrics_render(m);
  ck_assert_ptr_nonnull(text);
  /* a failed run keeps the last success's time and figures */
  ck_assert_ptr_nonnull(strstr(
      text, "connhost_sync_last_success_timestamp_seconds{tenant=\"acme\","
            "instance=\"jira\"} 102.5\n"));
  ck_assert_ptr_nonnull(strstr(
      text,
      "connhost_sync_last_success{tenant=\"acme\",instance=\"jira\"} 0\n"));
  ck_assert_ptr_nonnull(strstr(
      text, "connhost_sync_resources{tenant=\"acme\",instance=\"jira\"} 7\n"));
  /* counters add up over runs */
  ck_assert_ptr_nonnull(strstr(
      text,
      "connhost_http_requests_total{tenant=\"acme\",instance=\"jira\"} 5\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "connhost_sync_runs_total{tenant=\"acme\",instance=\"jira\","
                   "status=\"failed\"} 1\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE connhost_http_bytes_total counter\n"));
  free(text);
  metrics_free(m);
}
END_TEST

START_TEST(test_listen) {
  struct ch_err err = {0};
  int lo = -1;

  ck_assert_int_eq(httpd_listen_is_loopback("127.0.0.1:9464", &lo, &err),
                   CH_OK);
  ck_assert_int_eq(lo, 1);
  ck_assert_int_eq(httpd_listen_is_loopback("127.8.9.10:0", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 1);
  ck_assert_int_eq(httpd_listen_is_loopback("[::1]:9464", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 1);
  ck_assert_int_eq(httpd_listen_is_loopback("localhost:1", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 1);
  ck_assert_int_eq(httpd_listen_is_loopback("0.0.0.0:9464", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 0);
  ck_assert_int_eq(httpd_listen_is_loopback(":9464", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 0);
  ck_assert_int_eq(httpd_listen_is_loopback("[::]:9464", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 0);
  ck_assert_int_eq(httpd_listen_is_loopback("10.0.0.1:80", &lo, &err), CH_OK);
  ck_assert_int_eq(lo, 0);
  for (const char *const *bad =
           (const char *const[]){"9464", "127.0.0.1", "127.0.0.1:x",
                                 "127.0.0.1:70000", "[::1]9464",
                                 "example.com:80", NULL};
       *bad; bad++) {
    ck_assert_int_eq(httpd_listen_is_loopback(*bad, &lo, &err), CH_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "is not ADDR:PORT"));
  }
}
END_TEST

START_TEST(test_secret_equal) {
  ck_assert(httpd_secret_equal("abcdef", "abcdef"));
  ck_assert(!httpd_secret_equal("abcdef", "abcdeg"));
  ck_assert(!httpd_secret_equal("abcdef", "abcde"));
  ck_assert(!httpd_secret_equal("abcde", "abcdef"));
  ck_assert(!httpd_secret_equal("", "a"));
  ck_assert(httpd_secret_equal("", ""));
}
END_TEST

START_TEST(test_duration) {
  long ms = 0;

  ck_assert_int_eq(config_parse_duration("1h", &ms), 0);
  ck_assert_int_eq(ms, 3600000L);
  ck_assert_int_eq(config_parse_duration("30s", &ms), 0);
  ck_assert_int_eq(ms, 30000L);
  ck_assert_int_eq(config_parse_duration("1.5m", &ms), 0);
  ck_assert_int_eq(ms, 90000L);
  ck_assert_int_eq(config_parse_duration("250ms", &ms), 0);
  ck_assert_int_eq(ms, 250L);
  ck_assert_int_eq(config_parse_duration("2d", &ms), 0);
  ck_assert_int_eq(ms, 2L * 86400000L);
  ck_assert_int_eq(config_parse_duration("45", &ms), 0);
  ck_assert_int_eq(ms, 45000L);
  ck_assert_int_eq(config_parse_duration("30d", &ms), 0);
  ck_assert_int_eq(config_parse_duration("31d", &ms), -1);
  ck_assert_int_eq(config_parse_duration("0s", &ms), -1);
  ck_assert_int_eq(config_parse_duration("1x", &ms), -1);
  ck_assert_int_eq(config_parse_duration("h", &ms), -1);
  ck_assert_int_eq(config_parse_duration("", &ms), -1);
  ck_assert_int_eq(config_parse_duration("-1s", &ms), -1);
  ck_assert_int_eq(config_parse_duration("1.s", &ms), -1);
}
END_TEST

static Suite *serve_suite(void) {
  Suite *s = suite_create("serve");
  TCase *tc = tcase_create("parts");

  tcase_add_test(tc, test_escape_label);
  tcase_add_test(tc, test_render);
  tcase_add_test(tc, test_listen);
  tcase_add_test(tc, test_secret_equal);
  tcase_add_test(tc, test_duration);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(serve_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
