/* SPDX-License-Identifier: MIT */
/* The option engine's typed half (host/options.c): durations, bounds, a
   config map's sanity at load time, and the config struct it fills. */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

START_TEST(test_durations) {
  static const struct {
    const char *text;
    long long ms;
  } ok[] = {{"500ms", 500},  {"30s", 30000}, {"2m", 120000},
            {"1h", 3600000}, {"2.5", 2500},  {"0", 0}};
  static const char *const bad[] = {"",   "-1s", "soon",  "5 s",
                                    "1d", "s",   "1e400", NULL};
  long long ms;

  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    ck_assert_msg(options_parse_duration(ok[i].text, &ms) == 0, "%s",
                  ok[i].text);
    ck_assert_int_eq(ms, ok[i].ms);
  }
  for (size_t i = 0; bad[i]; i++)
    ck_assert_msg(options_parse_duration(bad[i], &ms) != 0, "%s", bad[i]);
}
END_TEST

START_TEST(test_bounds) {
  static const struct ch_config_key both = {
      CH_OPTION("n", CH_OPT_INT, 0, NULL, NULL), CH_OPT_RANGE("1", "10000")};
  static const struct ch_config_key low = {
      CH_OPTION("d", CH_OPT_DURATION, 0, NULL, NULL), CH_OPT_RANGE("1s", NULL)};
  struct ch_opt_value v = {.set = 1, .str = "0"};
  char msg[128];

  ck_assert_int_ne(options_check_range(&both, &v, msg, sizeof(msg)), 0);
  ck_assert_str_eq(msg, "must be 1..10000, not 0");
  v.str = "10000";
  ck_assert_int_eq(options_check_range(&both, &v, msg, sizeof(msg)), 0);
  v.str = "10001";
  ck_assert_int_ne(options_check_range(&both, &v, msg, sizeof(msg)), 0);
  v.str = "999ms";
  ck_assert_int_ne(options_check_range(&low, &v, msg, sizeof(msg)), 0);
  ck_assert_str_eq(msg, "must be at least 1s, not 999ms");
  v.str = "1";
  ck_assert_int_eq(options_check_range(&low, &v, msg, sizeof(msg)), 0);
  v.set = 0; /* unset values are not checked */
  v.str = NULL;
  ck_assert_int_eq(options_check_range(&both, &v, msg, sizeof(msg)), 0);
}
END_TEST

struct conf {
  const char *url;
  long long n;
  int on;
  double rate;
  const char *const *list;
  long long wait_ms;
};
#define AT(f) CH_OPT_AT(struct conf, f)

static const struct ch_config_key good[] = {
    {CH_OPTION("url", CH_OPT_URL, 0, NULL, NULL), AT(url)},
    {CH_OPTION("n", CH_OPT_INT, 0, NULL, NULL), CH_OPT_RANGE("1", NULL), AT(n)},
    {CH_OPTION("on", CH_OPT_BOOL, 0, NULL, NULL), AT(on)},
    {CH_OPTION("rate", CH_OPT_NUMBER, 0, NULL, NULL), AT(rate)},
    {CH_OPTION("list", CH_OPT_LIST, 0, NULL, NULL), AT(list)},
    {CH_OPTION("wait", CH_OPT_DURATION, 0, NULL, NULL), AT(wait_ms)},
    {CH_OPTION_END}};

/* A map the loader must refuse, and the words its error must have. */
static void refused(const struct ch_config_key *t, uint32_t size,
                    const char *want) {
  struct ch_err err = {0};

  ck_assert_int_eq(options_check_table(t, size, "p.so", &err), CH_E_CONFIG);
  ck_assert_msg(strstr(err.msg, want) != NULL, "'%s' lacks '%s'", err.msg,
                want);
  ck_assert_ptr_nonnull(strstr(err.msg, "p.so: "));
}

START_TEST(test_table_checks) {
  static const struct ch_config_key overlap[] = {
      {CH_OPTION("a", CH_OPT_STRING, 0, NULL, NULL)},
      {CH_OPTION("b", CH_OPT_STRING, 0, NULL, NULL)}, /* no CH_OPT_AT */
      {CH_OPTION_END}};
  static const struct ch_config_key outside[] = {
      {CH_OPTION("a", CH_OPT_INT, 0, NULL, NULL), .offset = 64},
      {CH_OPTION_END}};
  static const struct ch_config_key bad_bound[] = {
      {CH_OPTION("a", CH_OPT_INT, 0, NULL, NULL), CH_OPT_RANGE("one", NULL)},
      {CH_OPTION_END}};
  static const struct ch_config_key text_bound[] = {
      {CH_OPTION("a", CH_OPT_STRING, 0, NULL, NULL), CH_OPT_RANGE("1", "2")},
      {CH_OPTION_END}};
  static const struct ch_config_key bad_type[] = {
      {CH_OPTION("a", (enum ch_opt_type)42, 0, NULL, NULL)}, {CH_OPTION_END}};
  struct ch_err err = {0};

  ck_assert_int_eq(options_check_table(good, sizeof(struct conf), "p.so", &err),
                   CH_OK);
  /* without a config struct offsets mean nothing */
  ck_assert_int_eq(options_check_table(overlap, 0, "p.so", &err), CH_OK);
  refused(overlap, 64, "options 'a' and 'b' share bytes");
  refused(outside, 64, "option 'a' has offset 64, outside");
  refused(good, sizeof(struct conf) - 1, "option 'wait' has offset");
  refused(bad_bound, 0, "option 'a' has a bound that is not of its type");
  refused(text_bound, 0, "option 'a' has bounds but is not a number");
  refused(bad_type, 0, "option 'a' has unknown type 42");
}
END_TEST

START_TEST(test_fill) {
  static const char *const items[] = {"A", "B", NULL};
  struct ch_opt_value v[6] = {
      {.set = 1, .str = "https://x.test/api//"},
      {.set = 1, .str = "25", .num = 25},
      {.set = 1, .str = "true", .num = 1},
      {.set = 1, .str = "2.5"},
      {.set = 1, .str = "A,B", .list = items, .nlist = 2},
      {.set = 0}};
  struct conf *c = options_fill(good, v, 6, sizeof(*c));

  ck_assert_ptr_nonnull(c);
  ck_assert_str_eq(c->url, "https://x.test/api");
  ck_assert_str_eq(v[0].str, "https://x.test/api//"); /* values untouched */
  ck_assert_int_eq(c->n, 25);
  ck_assert_int_eq(c->on, 1);
  ck_assert(c->rate == 2.5);
  ck_assert_ptr_eq(c->list, items);
  ck_assert_int_eq(c->wait_ms, 0); /* unset stays zero */
  free(c);
}
END_TEST

static Suite *options_suite(void) {
  Suite *s = suite_create("options");
  TCase *tc = tcase_create("engine");

  tcase_add_test(tc, test_durations);
  tcase_add_test(tc, test_bounds);
  tcase_add_test(tc, test_table_checks);
  tcase_add_test(tc, test_fill);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(options_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
