/* SPDX-License-Identifier: MIT */
/* The HTML escaper every name on an explorer page goes through: markup
   characters become references, the rest stays the text it is. */
#include "autoconfig.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"

static char *buf;
static size_t len;
static FILE *out;

static void setup(void) {
  out = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(out);
}

static void teardown(void) {
  fclose(out);
  free(buf);
}

/* What was written so far. */
static const char *written(void) {
  fflush(out);
  return buf;
}

START_TEST(test_markup_is_text) {
  html_text(out, "<img src=x onerror=\"a('b')\">&amp;");
  ck_assert_str_eq(written(), "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;"
                              "&gt;&amp;amp;");
}
END_TEST

START_TEST(test_unicode_stays) {
  /* RTL override, Hebrew, zero-width space and joiner, an emoji, tab, LF */
  const char *s = "\xe2\x80\xae"
                  "evil \xd7\xa9 zero\xe2\x80\x8bwidth"
                  "\xe2\x80\x8d \xf0\x9f\x9a\x80 Zo\xc3\xab\t\n";
  html_text(out, s);
  ck_assert_str_eq(written(), s);
}
END_TEST

START_TEST(test_controls_replaced) {
  html_text(out, "a\x01"
                 "b\x7f"
                 "c");
  /* C0 controls become U+FFFD; DEL passes (HTML allows it as text) */
  ck_assert_str_eq(written(), "a\xef\xbf\xbd"
                              "b\x7f"
                              "c");
}
END_TEST

START_TEST(test_null_writes_nothing) {
  html_text(out, NULL);
  html_text_cut(out, NULL, 3);
  html_url_arg(out, NULL);
  ck_assert_str_eq(written(), "");
}
END_TEST

START_TEST(test_cut_counts_code_points) {
  html_text_cut(out, "Zo\xc3\xab \xf0\x9f\x9a\x80<b>", 5);
  ck_assert_str_eq(written(), "Zo\xc3\xab \xf0\x9f\x9a\x80\xe2\x80\xa6");
  fputc('|', out);
  html_text_cut(out, "<>", 2); /* not cut: no ellipsis */
  ck_assert_str_eq(written(),
                   "Zo\xc3\xab \xf0\x9f\x9a\x80\xe2\x80\xa6|&lt;&gt;");
}
END_TEST

START_TEST(test_url_arg) {
  html_url_arg(out, "demo/jira/user/712020:ab#member \"x\"&<\xc3\xab>~-._");
  ck_assert_str_eq(written(), "demo%2Fjira%2Fuser%2F712020%3Aab%23member%20%22x"
                              "%22%26%3C%C3%AB%3E~-._");
}
END_TEST

static Suite *html_suite(void) {
  Suite *s = suite_create("html");
  TCase *tc = tcase_create("escape");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_markup_is_text);
  tcase_add_test(tc, test_unicode_stays);
  tcase_add_test(tc, test_controls_replaced);
  tcase_add_test(tc, test_null_writes_nothing);
  tcase_add_test(tc, test_cut_counts_code_points);
  tcase_add_test(tc, test_url_arg);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(html_suite());
  int failed;

  srunner_run_all(sr, CK_ENV);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
