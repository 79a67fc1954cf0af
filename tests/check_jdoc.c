/* SPDX-License-Identifier: MIT */
/* The SDK's tree-free JSON reader (plugins/common/jdoc.c): what it reads
   must be what json-c read before (strings, numbers, errors), since the
   plugins moved from one to the other with the graph unchanged. */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <connhost/sdk.h>

static struct pj_doc *parse_ok(const char *text) {
  struct pj_doc *d = NULL;
  const char *why = NULL;

  ck_assert_msg(pj_doc_parse(text, strlen(text), &d, &why) == CH_OK, "%s: %s",
                text, why);
  return d;
}

static const char *parse_err(const char *text, size_t len) {
  struct pj_doc *d = NULL;
  const char *why = NULL;

  ck_assert_int_eq(pj_doc_parse(text, len, &d, &why), CH_E_PROTOCOL);
  ck_assert_ptr_null(d);
  return why;
}

#define ERR(text) parse_err(text, sizeof(text) - 1)

/* The one string of a one-element array, with its unescaped length. */
static const char *str0(struct pj_doc *d, size_t *len) {
  return pj_val_str(pj_val_first(pj_doc_root(d)), len);
}

START_TEST(test_lookup) {
  struct pj_doc *d = parse_ok(" {\"values\":[{\"accountId\":\"a1\",\"active\":"
                              "false,\"n\":7},{\"accountId\":\"a2\",\"x\":{"
                              "\"y\":[1,2]}},{}],\"isLast\":true,\"total\":3,"
                              "\"f\":1.5,\"z\":null} \n");
  struct pj_val root = pj_doc_root(d), vals = pj_get_arr(root, "values"), u;
  const char *ids[] = {"a1", "a2", NULL};
  size_t i = 0;

  ck_assert_int_eq(pj_val_type(root), PJ_OBJ);
  ck_assert_uint_eq(pj_val_len(root), 5);
  ck_assert_uint_eq(pj_val_len(vals), 3);
  for (u = pj_val_first(vals); u.i >= 0; u = pj_val_next(u), i++) {
    const char *id = pj_get_str(u, "accountId");
    if (ids[i])
      ck_assert_str_eq(id, ids[i]);
    else
      ck_assert_ptr_null(id);
  }
  ck_assert_uint_eq(i, 3);
  u = pj_val_first(vals);
  ck_assert_int_eq(pj_get_bool(u, "active", 1), 0);
  ck_assert_int_eq(pj_get_bool(u, "missing", 1), 1);
  ck_assert_int_eq(pj_get_bool(u, "n", 1), 1); /* not a boolean */
  ck_assert_int_eq(pj_get_int(u, "n", -1), 7);
  ck_assert_int_eq(pj_get_int(u, "accountId", -1), -1);
  ck_assert_int_eq(pj_get_bool(root, "isLast", 0), 1);
  ck_assert_int_eq(pj_get_int(root, "total", -1), 3);
  /* a double is not an integer, as json_type_int was not */
  ck_assert_int_eq(pj_get_int(root, "f", -1), -1);
  ck_assert_int_eq(pj_val_type(pj_get(root, "f")), PJ_NUM);
  ck_assert_int_eq(pj_val_type(pj_get(root, "z")), PJ_NULL);
  ck_assert_int_eq(pj_val_type(pj_get(root, "nope")), PJ_NONE);
  ck_assert_ptr_null(pj_get_str(root, "values")); /* not a string */
  ck_assert_int_eq(pj_val_type(pj_get_obj(root, "values")), PJ_NONE);
  /* nested objects, and a walk over an object's keys */
  u = pj_val_next(u);
  ck_assert_uint_eq(pj_val_len(pj_get_arr(pj_get_obj(u, "x"), "y")), 2);
  i = 0;
  for (struct pj_val k = pj_val_first(root); k.i >= 0; k = pj_val_next(k))
    i++;
  ck_assert_uint_eq(i, 5);
  ck_assert_str_eq(pj_val_str(pj_val_first(root), NULL), "values");
  /* none in, none out */
  ck_assert_ptr_null(pj_get_str(pj_get(root, "nope"), "x"));
  ck_assert_int_eq(pj_val_type(pj_doc_root(NULL)), PJ_NONE);
  ck_assert_uint_eq(pj_val_len(pj_get(root, "nope")), 0);
  pj_doc_free(d);
}
END_TEST

START_TEST(test_repeated_key_last_wins) {
  struct pj_doc *d = parse_ok("{\"a\":\"1\",\"b\":2,\"a\":\"3\"}");

  ck_assert_str_eq(pj_get_str(pj_doc_root(d), "a"), "3");
  pj_doc_free(d);
}
END_TEST

START_TEST(test_escapes) {
  static const struct {
    const char *in, *out;
    size_t len;
  } cases[] = {
      {"[\"plain\"]", "plain", 5},
      {"[\"\"]", "", 0},
      {"[\"q\\\"b\\\\s\\/\"]", "q\"b\\s/", 6},
      {"[\"\\b\\f\\n\\r\\t\"]", "\b\f\n\r\t", 5},
      {"[\"\\u0041\\u00e9\\u20AC\"]", "A\xc3\xa9\xe2\x82\xac", 6},
      /* a surrogate pair is one code point */
      {"[\"\\ud83d\\ude00!\"]", "\xf0\x9f\x98\x80!", 5},
      {"[\"\\uD800\\uDC00\"]", "\xf0\x90\x80\x80", 4},
      {"[\"\\udbff\\udfff\"]", "\xf4\x8f\xbf\xbf", 4},
      /* lone surrogates are U+FFFD, as json-c makes them */
      {"[\"\\ud800\"]", "\xef\xbf\xbd", 3},
      {"[\"\\ud800x\"]", "\xef\xbf\xbdx", 4},
      {"[\"\\udc00\"]", "\xef\xbf\xbd", 3},
      {"[\"\\ud800\\u0041\"]",
       "\xef\xbf\xbd"
       "A",
       4},
      {"[\"\\ud800\\ud800\"]", "\xef\xbf\xbd\xef\xbf\xbd", 6},
      /* raw bytes pass: UTF-8 and control characters, as json-c */
      {"[\"caf\xc3\xa9\tx\"]", "caf\xc3\xa9\tx", 7},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct pj_doc *d = parse_ok(cases[i].in);
    size_t len = 99;
    const char *s = str0(d, &len);
    ck_assert_msg(s && len == cases[i].len &&
                      memcmp(s, cases[i].out, len + 1) == 0,
                  "case %zu: %s", i, cases[i].in);
    pj_doc_free(d);
  }
}
END_TEST

START_TEST(test_nul_escape) {
  /* \u0000 is U+FFFD: a NUL would cut the C string a name or an id is
     handed on in ("a", where the record said "a\u0000b") */
  struct pj_doc *d = parse_ok("[\"a\\u0000b\", \"\\u0000\"]");
  struct pj_val v = pj_val_first(pj_doc_root(d));
  size_t len = 0;
  const char *s = pj_val_str(v, &len);
  struct pj_buf b = {0};

  ck_assert_str_eq(s, "a\xef\xbf\xbd"
                      "b");
  ck_assert_uint_eq(len, 5);
  ck_assert_str_eq(pj_val_str(pj_val_next(v), &len), "\xef\xbf\xbd");
  ck_assert_uint_eq(len, 3);
  ck_assert_int_eq(pj_buf_add_val(&b, pj_doc_root(d)), CH_OK);
  ck_assert_str_eq(b.s, "[\"a\xef\xbf\xbd"
                        "b\",\"\xef\xbf\xbd\"]");
  pj_buf_free(&b);
  pj_doc_free(d);
}
END_TEST

START_TEST(test_invalid_utf8) {
  /* Each maximal invalid subpart is one U+FFFD (Unicode's substitution
     of maximal subparts): a stray continuation byte, a lead byte cut
     short, an overlong form, a surrogate, a code point past U+10FFFF.
     Valid multi-byte text around them stays as it was. */
  static const struct {
    const char *in, *out;
    size_t bad;
  } cases[] = {{"Ann\xff"
                "Evil",
                "Ann\xef\xbf\xbd"
                "Evil",
                1},
               {"caf\xc3", "caf\xef\xbf\xbd", 1},
               {"\xe2\x82"
                "x",
                "\xef\xbf\xbd"
                "x",
                1},
               {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", 2},
               {"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3},
               {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3},
               {"\xf4\x90\x80\x80",
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 4},
               {"\xf0\x9f\x98"
                "\xc3\xa9",
                "\xef\xbf\xbd\xc3\xa9", 1},
               {"M\xc3\xbcller \xe2\x82\xac \xf0\x9f\x98\x80", NULL, 0}};

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[64];
    const char *why = NULL;
    struct pj_doc *d = NULL;
    int n = snprintf(text, sizeof(text), "{\"name\":\"%s\",\"id\":\"a\"}",
                     cases[i].in);

    ck_assert_int_eq(pj_doc_parse(text, (size_t)n, &d, &why), CH_OK);
    ck_assert_str_eq(pj_get_str(pj_doc_root(d), "name"),
                     cases[i].out ? cases[i].out : cases[i].in);
    ck_assert_str_eq(pj_get_str(pj_doc_root(d), "id"), "a");
    ck_assert_uint_eq(pj_doc_replaced(d), cases[i].bad);
    pj_doc_free(d);
  }
}
END_TEST

START_TEST(test_invalid_utf8_outside_strings_still_fails) {
  /* Only strings may hold text: a byte out of place stays an error. */
  ck_assert_ptr_nonnull(parse_err("[1,\xff]", 6));
}
END_TEST

START_TEST(test_keys_unescaped) {
  struct pj_doc *d = parse_ok("{\"acc\\u006funtId\":\"x\",\"t\\\"q\":1}");

  ck_assert_str_eq(pj_get_str(pj_doc_root(d), "accountId"), "x");
  ck_assert_int_eq(pj_get_int(pj_doc_root(d), "t\"q", 0), 1);
  pj_doc_free(d);
}
END_TEST

START_TEST(test_numbers) {
  static const char *good[] = {"[0]",       "[-0]",   "[12]",   "[-3.25]",
                               "[1e5]",     "[1E+2]", "[2e-3]", "[0.5]",
                               "[1.5e999]", "[ 7 ]"};
  static const char *bad[] = {
      "[012]", "[1.]",    "[.5]",   "[-]",   "[+1]",  "[1e]",      "[1e+]",
      "[--1]", "[1.2.3]", "[0x10]", "[1:2]", "[NaN]", "[Infinity]"};
  struct pj_doc *d;
  long long n = 0;

  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    pj_doc_free(parse_ok(good[i]));
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *why = parse_err(bad[i], strlen(bad[i]));
    ck_assert_msg(strcmp(why, "number expected") == 0 ||
                      strcmp(why, "unexpected character") == 0,
                  "%s: %s", bad[i], why);
  }
  /* out of range clamps, as json_object_get_int64 */
  d = parse_ok("[99999999999999999999,-9223372036854775809,-0]");
  ck_assert(pj_val_int(pj_val_first(pj_doc_root(d)), &n));
  ck_assert(n == 9223372036854775807LL);
  ck_assert(pj_val_int(pj_val_next(pj_val_first(pj_doc_root(d))), &n));
  ck_assert(n == -9223372036854775807LL - 1);
  ck_assert(
      pj_val_int(pj_val_next(pj_val_next(pj_val_first(pj_doc_root(d)))), &n));
  ck_assert(n == 0);
  pj_doc_free(d);
}
END_TEST

START_TEST(test_literals) {
  struct pj_doc *d = parse_ok("[true,false,null]");
  struct pj_val v = pj_val_first(pj_doc_root(d));

  ck_assert_int_eq(pj_val_bool(v, -1), 1);
  ck_assert_int_eq(pj_val_bool(pj_val_next(v), -1), 0);
  ck_assert_int_eq(pj_val_type(pj_val_next(pj_val_next(v))), PJ_NULL);
  ck_assert_int_eq(pj_val_bool(pj_val_next(pj_val_next(v)), -1), -1);
  pj_doc_free(d);
  ck_assert_str_eq(ERR("[nul]"), "null expected");
  ck_assert_str_eq(ERR("[truex]"), "boolean expected");
  ck_assert_str_eq(ERR("[fals]"), "boolean expected");
}
END_TEST

/* The words json-c used for the same documents. */
START_TEST(test_errors) {
  ck_assert_str_eq(ERR("[\"ab"), "truncated document");
  ck_assert_str_eq(ERR("{\"a\":"), "truncated document");
  ck_assert_str_eq(ERR("{\"values\":[{\"a\":1},"), "truncated document");
  ck_assert_str_eq(ERR("[1,2"), "truncated document");
  ck_assert_str_eq(ERR("[tru"), "truncated document");
  ck_assert_str_eq(ERR("[\"\\u12"), "truncated document");
  ck_assert_str_eq(ERR(""), "truncated document");
  ck_assert_str_eq(ERR("   "), "truncated document");
  ck_assert_str_eq(ERR("12"), "truncated document");
  ck_assert_str_eq(ERR("[1]x"), "trailing data after the document");
  ck_assert_str_eq(ERR("[1] [2]"), "trailing data after the document");
  ck_assert_str_eq(ERR("{}}"), "trailing data after the document");
  ck_assert_str_eq(ERR("[1]]"), "trailing data after the document");
  ck_assert_str_eq(ERR("{\"a\":1} 5"), "trailing data after the document");
  ck_assert_str_eq(ERR("[1 2]"), "array value separator ',' expected");
  ck_assert_str_eq(ERR("{\"a\" 1}"),
                   "object property name separator ':' expected");
  ck_assert_str_eq(ERR("{\"a\":1 \"b\":2}"),
                   "object value separator ',' expected");
  ck_assert_str_eq(ERR("{\"a\":1]"), "object value separator ',' expected");
  ck_assert_str_eq(ERR("[1}"), "array value separator ',' expected");
  ck_assert_str_eq(ERR("{1:2}"), "quoted object property name expected");
  ck_assert_str_eq(ERR("{\"a\"}"),
                   "object property name separator ':' expected");
  ck_assert_str_eq(ERR("{\"a\":}"), "unexpected character");
  ck_assert_str_eq(ERR("[,1]"), "unexpected character");
  ck_assert_str_eq(ERR("{,}"), "quoted object property name expected");
  /* json-c let these through; RFC 8259 (and the host's strict profile
     check) does not */
  ck_assert_str_eq(ERR("[1,]"), "unexpected character");
  ck_assert_str_eq(ERR("{\"a\":1,}"), "quoted object property name expected");
  ck_assert_str_eq(ERR("]"), "unexpected character");
  ck_assert_str_eq(ERR("{'a':1}"), "quoted object property name expected");
  ck_assert_str_eq(ERR("/*c*/[1]"), "unexpected character");
  ck_assert_str_eq(ERR("[\"\\x\"]"), "invalid string sequence");
  ck_assert_str_eq(ERR("[\"\\u12G4\"]"), "invalid string sequence");
  /* a NUL ends json-c's data: inside the value it is cut short, after
     it the callers took it as whitespace */
  ck_assert_str_eq(parse_err("[\"a\0b\"]", 7), "unexpected end of data");
  pj_doc_free(NULL);
  {
    struct pj_doc *d = NULL;
    const char *why = NULL;
    ck_assert_int_eq(pj_doc_parse("[1]\0", 4, &d, &why), CH_OK);
    pj_doc_free(d);
  }
}
END_TEST

static char *nested(int depth) {
  char *s = malloc((size_t)depth * 2 + 1);
  for (int i = 0; i < depth; i++) {
    s[i] = '[';
    s[depth * 2 - 1 - i] = ']';
  }
  s[depth * 2] = '\0';
  return s;
}

START_TEST(test_depth) {
  /* json-c's limit: 32 levels read, 33 are too deep */
  char *ok = nested(32), *deep = nested(33), *huge = nested(100000);
  struct pj_doc *d = parse_ok(ok);

  pj_doc_free(d);
  ck_assert_str_eq(parse_err(deep, strlen(deep)), "nesting too deep");
  ck_assert_str_eq(parse_err(huge, strlen(huge)), "nesting too deep");
  ok[40] = '\0'; /* 32 opened, 8 closed, then the end */
  ck_assert_str_eq(parse_err(ok, strlen(ok)), "truncated document");
  /* brackets inside strings do not nest */
  pj_doc_free(parse_ok("[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"\"]"));
  /* a string that ends in an escaped backslash ends there: the brackets
     after it nest */
  {
    struct pj_buf b = {0};
    pj_buf_addf(&b, "[\"a\\\\\",%s]", deep);
    ck_assert_str_eq(parse_err(b.s, b.len), "nesting too deep");
    b.len = 0;
    pj_buf_addf(&b, "[\"a\\\\\",\"\\\"%s\"]", deep);
    pj_doc_free(parse_ok(b.s));
    pj_buf_free(&b);
  }
  free(ok);
  free(deep);
  free(huge);
}
END_TEST

START_TEST(test_large_page_grows) {
  /* far more tokens than the first guess: the array grows */
  struct pj_buf b = {0};
  struct pj_doc *d;
  size_t n = 0;

  pj_buf_add(&b, "[");
  for (int i = 0; i < 20000; i++)
    pj_buf_addf(&b, "%s[1,2,3,4,5,6,7,8]", i ? "," : "");
  pj_buf_add(&b, "]");
  d = parse_ok(b.s);
  for (struct pj_val v = pj_val_first(pj_doc_root(d)); v.i >= 0;
       v = pj_val_next(v))
    n += pj_val_len(v);
  ck_assert_uint_eq(n, 160000);
  pj_doc_free(d);
  pj_buf_free(&b);
}
END_TEST

START_TEST(test_back_to_text) {
  struct pj_doc *d =
      parse_ok("{ \"a\" : [ 1 , -2.5e3 , true , null , \"x\\ny\\u00e9\" ] ,"
               " \"b\" : { } , \"c\" : [ ] , \"q\\\"\" : \"\\u0001\" }");
  struct pj_buf b = {0};

  ck_assert_int_eq(pj_buf_add_val(&b, pj_doc_root(d)), CH_OK);
  ck_assert_str_eq(b.s, "{\"a\":[1,-2.5e3,true,null,\"x\\u000ay\xc3\xa9\"],"
                        "\"b\":{},\"c\":[],\"q\\\"\":\"\\u0001\"}");
  b.len = 0;
  ck_assert_int_eq(pj_buf_add_val(&b, pj_get(pj_doc_root(d), "missing")),
                   CH_OK);
  ck_assert_str_eq(b.s, "null");
  pj_buf_free(&b);
  pj_doc_free(d);
}
END_TEST

int main(void) {
  Suite *s = suite_create("jdoc");
  TCase *tc = tcase_create("core");
  SRunner *sr;
  int failed;

  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_lookup);
  tcase_add_test(tc, test_repeated_key_last_wins);
  tcase_add_test(tc, test_escapes);
  tcase_add_test(tc, test_nul_escape);
  tcase_add_test(tc, test_invalid_utf8);
  tcase_add_test(tc, test_invalid_utf8_outside_strings_still_fails);
  tcase_add_test(tc, test_keys_unescaped);
  tcase_add_test(tc, test_numbers);
  tcase_add_test(tc, test_literals);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_depth);
  tcase_add_test(tc, test_large_page_grows);
  tcase_add_test(tc, test_back_to_text);
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
