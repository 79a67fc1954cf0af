/* SPDX-License-Identifier: MIT */
/* Unit tests for serve's parts that need no network: label escaping and
   the exposition, listen addresses, the token comparison, durations. */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "httpd.h"
#include "lease.h"
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
                            .started = 1764681234.3,
                            .finished = 1764681235.53,
                            .requests = 2};
  char *text;

  /* as serve measures it: a difference of wall-clock doubles, whose
     float noise (1.2300000190734863) must not reach /metrics */
  bad.duration = bad.finished - bad.started;

  ck_assert_ptr_nonnull(m);
  metrics_attempt(m, "acme", "jira", 100);
  metrics_record(m, &ok);
  metrics_record(m, &bad);
  text = metrics_render(m);
  ck_assert_ptr_nonnull(text);
  /* seconds to the millisecond, counts as whole numbers */
  ck_assert_ptr_nonnull(
      strstr(text, "connhost_sync_last_duration_seconds{tenant=\"acme\","
                   "instance=\"jira\"} 1.230\n"));
  /* a failed run keeps the last success's time and figures */
  ck_assert_ptr_nonnull(strstr(
      text, "connhost_sync_last_success_timestamp_seconds{tenant=\"acme\","
            "instance=\"jira\"} 102.500\n"));
  ck_assert_ptr_nonnull(strstr(
      text, "connhost_sync_last_attempt_timestamp_seconds{tenant=\"acme\","
            "instance=\"jira\"} 1764681234.300\n"));
  ck_assert_ptr_nonnull(strstr(
      text,
      "connhost_http_bytes_total{tenant=\"acme\",instance=\"jira\"} 4096\n"));
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

/* Load `yaml` from a temp file; returns the status, message in `err`. */
static int load_text(const char *yaml, struct config **out,
                     struct ch_err *err) {
  char path[] = "/tmp/check_serve_XXXXXX";
  int fd = mkstemp(path), rc;
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

  ck_assert_ptr_nonnull(f);
  fputs(yaml, f);
  fclose(f);
  rc = config_load(path, out, err);
  unlink(path);
  return rc;
}

#define TENANTS "tenants:\n  acme:\n    hr:\n      plugin: flatfile\n"

START_TEST(test_config_keys) {
  struct config *c = NULL;
  struct ch_err err = {0};

  ck_assert_int_eq(load_text("schedule: {interval: 15m, jitter: 5%}\n"
                             "serve:\n  listen: 127.0.0.1:1\n"
                             "  shutdown_grace: 2s\n"
                             "  auth_token: 0123456789abcdef\n"
                             "tenants:\n  acme:\n    schedule: {interval: 1h}\n"
                             "    hr:\n      plugin: flatfile\n"
                             "      timeout: 90s\n",
                             &c, &err),
                   CH_OK);
  ck_assert_int_eq(c->schedule.interval_ms, 15L * 60000L);
  ck_assert_int_eq(c->schedule.jitter_pct, 5);
  ck_assert_str_eq(c->serve_listen, "127.0.0.1:1");
  ck_assert_int_eq(c->serve_grace_ms, 2000);
  ck_assert_str_eq(c->serve_auth_token, "0123456789abcdef");
  /* the tenant's `schedule` is not an instance */
  ck_assert_int_eq(c->tenants[0].ninstances, 1);
  ck_assert_int_eq(c->tenants[0].schedule.interval_ms, 3600000L);
  ck_assert_int_eq(c->tenants[0].schedule.jitter_pct, -1);
  ck_assert_int_eq(c->tenants[0].instances[0].timeout_ms, 90000L);
  config_free(c);

  ck_assert_int_eq(load_text(TENANTS, &c, &err), CH_OK);
  ck_assert_int_eq(c->schedule.interval_ms, 0);
  ck_assert_int_eq(c->schedule.jitter_pct, -1);
  ck_assert_ptr_null(c->serve_auth_token);
  config_free(c);
}
END_TEST

START_TEST(test_config_errors) {
  static const struct {
    const char *yaml, *where, *msg;
  } cases[] = {
      {"schedule: {interval: soon}\n" TENANTS,
       ":1:22:", "'schedule.interval' must be a duration"},
      {"schedule: {jitter: 10}\n" TENANTS,
       ":1:20:", "'schedule.jitter' must be a percentage"},
      {"schedule: {jitter: 101%}\n" TENANTS,
       ":1:20:", "'schedule.jitter' must be a percentage"},
      {"schedule: {every: 1h}\n" TENANTS,
       ":1:12:", "unknown key 'every' in 'schedule'"},
      {"serve: {auth_token: short}\n" TENANTS,
       ":1:21:", "'serve.auth_token' is too short"},
      {"serve: {port: 1}\n" TENANTS, ":1:9:", "unknown key 'port' in 'serve'"},
      {"serve: {shutdown_grace: 31d}\n" TENANTS,
       ":1:25:", "'serve.shutdown_grace' must be a duration"},
      {TENANTS "      timeout: -1\n", ":5:16:", "'timeout' must be a duration"},
      {"tenants:\n  acme:\n    schedule: {interval: 1h}\n",
       ":2:3:", "tenant 'acme' has no instances"},
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct config *c = NULL;
    struct ch_err err = {0};
    ck_assert_int_eq(load_text(cases[i].yaml, &c, &err), CH_E_CONFIG);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.msg, cases[i].where) &&
                      strstr(err.msg, cases[i].msg),
                  "case %zu: '%s'", i, err.msg);
  }
}
END_TEST

/* A database that is not there (port 1 on loopback refuses): the replica
   starts, takes no work, says why, and shows it in its metrics; the
   password of the URL appears nowhere. */
START_TEST(test_leases_without_a_database) {
  struct leases *l = NULL;
  struct ch_err err = {0};
  char why[512];
  const char *r;
  char *body;
  long retry = -1;

  ck_assert_int_eq(leases_open("postgresql://u:pw-never-shown@127.0.0.1:1/x",
                               "r1", 300, &l, &err),
                   CH_OK);
  ck_assert_int_eq(leases_acquire(l, "acme", 0, &retry), LEASE_DOWN);
  ck_assert_int_gt(retry, 0);
  ck_assert_int_eq(leases_acquire(l, "acme", 1, &retry), LEASE_DOWN);
  leases_release(l, "acme", 1000); /* not held: nothing to do */
  r = leases_not_ready(l, why, sizeof(why));
  ck_assert_ptr_nonnull(r);
  ck_assert_ptr_nonnull(strstr(r, "store database out of reach"));
  ck_assert_ptr_null(strstr(r, "pw-never-shown"));
  body = leases_render_metrics(l, strdup("# TYPE a gauge\na 1\n"));
  ck_assert_ptr_nonnull(body);
  ck_assert_ptr_nonnull(strstr(body, "# TYPE a gauge\na 1\n"));
  ck_assert_ptr_nonnull(
      strstr(body, "connhost_replica_info{replica=\"r1\"} 1\n"));
  ck_assert_ptr_nonnull(strstr(body, "connhost_lease_database_up 0\n"));
  ck_assert_ptr_nonnull(strstr(body, "connhost_leases_held 0\n"));
  ck_assert_ptr_nonnull(strstr(body, "connhost_lease_acquired_total 0\n"));
  ck_assert_ptr_null(strstr(body, "pw-never-shown"));
  free(body);
  usleep(250 * 1000); /* a heartbeat or two try again, and fail again */
  ck_assert_ptr_nonnull(leases_not_ready(l, why, sizeof(why)));
  leases_close(l);
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
  tcase_add_test(tc, test_config_keys);
  tcase_add_test(tc, test_config_errors);
  tcase_add_test(tc, test_leases_without_a_database);
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
