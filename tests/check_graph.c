/* SPDX-License-Identifier: MIT */
/* Unit tests for the graph: keys, validation, identity merge, expansion,
   failure isolation, deterministic output and atomic writes. */
#include "autoconfig.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "graph.h"
#include "graph_int.h"

#define GEN_AT "2024-01-02T03:04:05Z"

/* ---- a plugin-like type table -------------------------------------------- */

static const char *const to_user[] = {"user", NULL};
static const char *const to_user_group[] = {"user", "group", NULL};

static const struct ch_entitlement_def group_ents[] = {
    {"member", "Member", to_user_group}, {NULL, NULL, NULL}};
static const struct ch_entitlement_def project_ents[] = {
    {"lead", "Project lead", to_user},
    {"role:atlassian/admin", "Administrator", to_user_group},
    {NULL, NULL, NULL}};
static const struct ch_entitlement_def role_ents[] = {
    {"assigned", "Assigned", to_user_group}, {NULL, NULL, NULL}};

static const struct ch_resource_type jira_types[] = {
    {"user", "User", CH_TRAIT_USER, NULL, NULL, CH_CAP_SYNC, 0},
    {"group", "Group", CH_TRAIT_GROUP, NULL, group_ents, CH_CAP_SYNC, 0},
    {"project", "Project", CH_TRAIT_APP, NULL, project_ents, CH_CAP_SYNC, 0},
    {"project_role", "Project role", CH_TRAIT_ROLE, "project", role_ents,
     CH_CAP_SYNC, 0},
    {NULL, NULL, 0, NULL, NULL, 0, 0}};

static const struct ch_resource_type org_types[] = {
    {"managed_account", "Managed account", CH_TRAIT_USER, NULL, NULL,
     CH_CAP_SYNC, 0},
    {NULL, NULL, 0, NULL, NULL, 0, 0}};

/* ---- helpers ----------------------------------------------------------------
 */

static int add_inst(struct graph *g, const char *tenant, const char *name,
                    const struct ch_resource_type *types) {
  int i = graph_add_instance(g, tenant, name, "fake", "1.0", types);
  ck_assert_int_ge(i, 0);
  return i;
}

static void add_res(struct graph *g, int inst, const struct ch_resource *r) {
  struct ch_err err = {0};
  int rc = graph_add_resource(g, inst, r, &err);
  ck_assert_msg(rc == CH_OK, "add_resource: %s", err.msg);
}

static void add_user(struct graph *g, int inst, const char *type,
                     const char *id, const char *name, const char *email,
                     const char *mk1, const char *mk2) {
  const char *emails[] = {email, NULL};
  const char *mks[] = {mk1, mk2, NULL};
  struct ch_resource r = {0};

  r.type = type;
  r.id = id;
  r.display_name = name;
  r.status = CH_RES_ENABLED;
  r.account_type = CH_ACCOUNT_HUMAN;
  r.emails = email ? emails : NULL;
  r.match_keys = mk1 ? mks : NULL;
  add_res(g, inst, &r);
}

static void add_simple(struct graph *g, int inst, const char *type,
                       const char *id) {
  struct ch_resource r = {0};

  r.type = type;
  r.id = id;
  r.display_name = id;
  add_res(g, inst, &r);
}

static void add_grant(struct graph *g, int inst, const char *rtype,
                      const char *rid, const char *slug, const char *ptype,
                      const char *pid, const char *expand) {
  struct ch_grant gr = {{rtype, rid}, slug, {ptype, pid}, 0, NULL, NULL};
  struct ch_err err = {0};
  int rc;

  if (expand) {
    gr.flags = CH_GRANT_EXPANDABLE;
    gr.expand_slug = expand;
  }
  rc = graph_add_grant(g, inst, &gr, &err);
  ck_assert_msg(rc == CH_OK, "add_grant: %s", err.msg);
}

static char *render(struct graph *g, enum graph_format fmt) {
  struct ch_err err = {0};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc;

  ck_assert_ptr_nonnull(f);
  rc = graph_write(g, f, fmt, GEN_AT, &err);
  ck_assert_msg(rc == CH_OK, "graph_write: %s", err.msg);
  ck_assert_int_eq(fclose(f), 0);
  return buf;
}

static struct json_object *parse_graph(struct graph *g) {
  char *text = render(g, GRAPH_JSON);
  struct json_object *o = json_tokener_parse(text);

  ck_assert_msg(o != NULL, "output is not JSON:\n%s", text);
  free(text);
  return o;
}

static struct json_object *arr(struct json_object *doc, const char *name) {
  struct json_object *a = NULL;

  ck_assert(json_object_object_get_ex(doc, name, &a));
  ck_assert(json_object_is_type(a, json_type_array));
  return a;
}

static const char *str(struct json_object *o, const char *field) {
  struct json_object *v = NULL;

  if (!json_object_object_get_ex(o, field, &v))
    return NULL;
  return json_object_get_string(v);
}

/* The element of doc[array] whose `field` equals `value`, or NULL. */
static struct json_object *find(struct json_object *doc, const char *array,
                                const char *field, const char *value) {
  struct json_object *a = arr(doc, array);
  size_t i;

  for (i = 0; i < json_object_array_length(a); i++) {
    struct json_object *e = json_object_array_get_idx(a, i);
    const char *v = str(e, field);
    if (v && !strcmp(v, value))
      return e;
  }
  return NULL;
}

static struct json_object *find_grant(struct json_object *doc, const char *ent,
                                      const char *principal) {
  struct json_object *a = arr(doc, "grants");
  size_t i;

  for (i = 0; i < json_object_array_length(a); i++) {
    struct json_object *e = json_object_array_get_idx(a, i);
    if (!strcmp(str(e, "entitlement"), ent) &&
        !strcmp(str(e, "principal"), principal))
      return e;
  }
  return NULL;
}

static size_t count_grants(struct json_object *doc, const char *ent) {
  struct json_object *a = arr(doc, "grants");
  size_t i, n = 0;

  for (i = 0; i < json_object_array_length(a); i++)
    n += !strcmp(str(json_object_array_get_idx(a, i), "entitlement"), ent);
  return n;
}

static int is_direct(struct json_object *grant) {
  struct json_object *v = NULL;

  ck_assert(json_object_object_get_ex(grant, "direct", &v));
  return json_object_get_boolean(v);
}

/* The grant's sources joined with ',' ("" when absent). */
static const char *sources(struct json_object *grant) {
  static char buf[1024];
  struct json_object *a = NULL;
  size_t i;

  buf[0] = '\0';
  if (!json_object_object_get_ex(grant, "sources", &a))
    return buf;
  for (i = 0; i < json_object_array_length(a); i++) {
    if (i)
      strcat(buf, ",");
    strcat(buf, json_object_get_string(json_object_array_get_idx(a, i)));
  }
  return buf;
}

static size_t arr_len(struct json_object *o, const char *field) {
  struct json_object *a = NULL;

  if (!json_object_object_get_ex(o, field, &a))
    return 0;
  return json_object_array_length(a);
}

static const char *arr_str(struct json_object *o, const char *field, size_t i) {
  struct json_object *a = NULL;

  ck_assert(json_object_object_get_ex(o, field, &a));
  return json_object_get_string(json_object_array_get_idx(a, i));
}

static uint64_t stat_of(struct json_object *inst, const char *name) {
  struct json_object *s = NULL, *v = NULL;

  ck_assert(json_object_object_get_ex(inst, "stats", &s));
  ck_assert(json_object_object_get_ex(s, name, &v));
  return (uint64_t)json_object_get_int64(v);
}

/* ---- keys
 * -------------------------------------------------------------------- */

START_TEST(test_key_encoding) {
  char *k = key_resource("acme", "jira", "user", "a/b#c%d:e");
  char *e;

  ck_assert_str_eq(k, "acme/jira/user/a%2Fb%23c%25d:e");
  e = key_entitlement(k, "role:atlassian/admin");
  ck_assert_str_eq(e, "acme/jira/user/a%2Fb%23c%25d:e#role:atlassian%2Fadmin");
  free(k);
  free(e);
  /* control bytes and DEL encoded uppercase; UTF-8 kept; broken UTF-8
     encoded byte by byte */
  k = key_encode("t\tn\x01\x1f\x7f-Zoë-日本-\xff\xc3");
  ck_assert_str_eq(k, "t%09n%01%1F%7F-Zoë-日本-%FF%C3");
  free(k);
}
END_TEST

/* UTF-8 checking reads ASCII eight bytes at a time: a bad or a good
   sequence at every offset around those words is still judged alone. */
START_TEST(test_utf8_valid) {
  static const char *const bad[] = {"\xc3\x28",         "\x80",
                                    "\xc0\xaf",         "\xed\xa0\x80",
                                    "\xf4\x90\x80\x80", "\xe2\x82"};
  static const char *const good[] = {"\xc3\xa9", "\xe2\x82\xac",
                                     "\xf0\x9f\x98\x80", "\x7f"};
  char s[40];
  size_t at, i, n;

  for (at = 0; at < 20; at++) {
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      n = strlen(bad[i]);
      memset(s, 'a', sizeof(s));
      memcpy(s + at, bad[i], n);
      ck_assert_msg(!key_utf8_valid(s, at + n + (at % 3) * 5), "%zu %zu", at,
                    i);
      /* cut just before the bad bytes: valid */
      ck_assert(key_utf8_valid(s, at));
    }
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
      n = strlen(good[i]);
      memset(s, 'a', sizeof(s));
      memcpy(s + at, good[i], n);
      ck_assert_msg(key_utf8_valid(s, at + n + (at % 3) * 5), "%zu %zu", at, i);
      if (n > 1) /* a sequence cut short at the end */
        ck_assert(!key_utf8_valid(s, at + n - 1));
    }
  }
}
END_TEST

START_TEST(test_key_roundtrip) {
  static const char *const ids[] = {"a/b",
                                    "x#y",
                                    "100%",
                                    "%2F",
                                    "role:atlassian/admin",
                                    "ctl\x01\x1f\x7f\n",
                                    "Zoë 日本 🎉",
                                    "\xff\xfe not utf-8",
                                    "557058:f00d-1234",
                                    NULL};
  size_t i;

  for (i = 0; ids[i]; i++) {
    struct key_parts p;
    struct ch_err err = {0};
    char *k = key_resource("t/1", "i#2", "user", ids[i]);
    char *e = key_entitlement(k, ids[i]);
    size_t j;

    for (j = 0; k[j]; j++)
      ck_assert_msg((unsigned char)k[j] >= 0x20 && k[j] != 0x7f,
                    "raw control byte in key '%s'", k);
    ck_assert_int_eq(key_parse(k, 0, &p, &err), CH_OK);
    ck_assert_str_eq(p.tenant, "t/1");
    ck_assert_str_eq(p.instance, "i#2");
    ck_assert_str_eq(p.type, "user");
    ck_assert_str_eq(p.id, ids[i]);
    ck_assert_ptr_null(p.slug);
    key_parts_release(&p);
    ck_assert_int_eq(key_parse(e, 1, &p, &err), CH_OK);
    ck_assert_str_eq(p.id, ids[i]);
    ck_assert_str_eq(p.slug, ids[i]);
    key_parts_release(&p);
    free(k);
    free(e);
  }
}
END_TEST

START_TEST(test_key_parse_errors) {
  static const struct {
    const char *key;
    int want_slug;
    const char *msg;
  } bad[] = {
      {"", 0, "empty key"},
      {"a/b/c", 0, "expected tenant/instance/type/id"},
      {"a/b/c/d/e", 0, "expected tenant/instance/type/id"},
      {"a//c/d", 0, "empty instance"},
      {"a/b/c/", 0, "empty id"},
      {"a/b/c/d#s", 0, "unexpected '#'"},
      {"a/b/c/d", 1, "expected tenant/instance/type/id#slug"},
      {"a/b/c/d#", 1, "empty slug"},
      {"a/b/c/d#x#y", 1, "more than one '#'"},
      {"a/b/c/%zz", 0, "two hex digits"},
      {"a/b/c/%4", 0, "two hex digits"},
      {"a/b/c/%00", 0, "%00"},
      {"a/b/c/x\ty", 0, "control byte 0x09"},
  };
  size_t i;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct key_parts p;
    struct ch_err err = {0};
    int rc = key_parse(bad[i].key, bad[i].want_slug, &p, &err);
    ck_assert_msg(rc == CH_E_INVALID, "'%s' parsed", bad[i].key);
    ck_assert_msg(strstr(err.msg, bad[i].msg) != NULL,
                  "'%s': message '%s' lacks '%s'", bad[i].key, err.msg,
                  bad[i].msg);
    ck_assert_ptr_null(p.tenant);
  }
}
END_TEST

START_TEST(test_keys_in_output) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct json_object *doc, *r;
  char *text;

  add_simple(g, j, "group", "ops/sre#1 100%");
  add_simple(g, j, "user", "Zoë\t日本");
  add_grant(g, j, "group", "ops/sre#1 100%", "member", "user", "Zoë\t日本",
            NULL);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  text = render(g, GRAPH_JSON);
  /* non-ASCII is written as UTF-8, never as \u escapes, and '/' is not
     escaped */
  ck_assert_ptr_nonnull(strstr(text, "\"acme/jira/user/Zoë%09日本\""));
  ck_assert_ptr_nonnull(strstr(text, "\"id\":\"Zoë\\t日本\""));
  free(text);
  doc = parse_graph(g);
  r = find(doc, "resources", "key", "acme/jira/group/ops%2Fsre%231 100%25");
  ck_assert_ptr_nonnull(r);
  ck_assert_str_eq(str(r, "id"), "ops/sre#1 100%");
  ck_assert_ptr_nonnull(find(doc, "entitlements", "key",
                             "acme/jira/group/ops%2Fsre%231 100%25#member"));
  ck_assert_ptr_nonnull(
      find_grant(doc, "acme/jira/group/ops%2Fsre%231 100%25#member",
                 "acme/jira/user/Zoë%09日本"));
  json_object_put(doc);
  graph_free(g);
}
END_TEST

/* ---- validation -------------------------------------------------------------
 */

START_TEST(test_malformed_records) {
  static const char *const bogus_slug[] = {"member", "owner", NULL};
  static const char *const bad_mk[] = {"no-equals-sign", NULL};
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct ch_resource r = {0};
  struct ch_grant gr = {
      {"project", "10001"}, "lead", {"group", "g"}, 0, NULL, NULL};
  struct ch_err err = {0};

  r.type = "group";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "resource of type 'group' has no id");

  r.id = "admins";
  r.entitlements = bogus_slug;
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "resource 'group/admins': entitlement 'owner' is "
                            "not declared by type 'group'");

  r.entitlements = NULL;
  r.type = "widget";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "resource 'widget/admins': type 'widget' is not "
                            "declared by plugin 'fake'");

  r.type = "project_role";
  r.id = "10001:10002";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "resource 'project_role/10001:10002': type "
                            "'project_role' needs a parent of type "
                            "'project'");
  r.parent_type = "group";
  r.parent_id = "x";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "parent type 'group' is not the "
                                        "declared parent type 'project'"));

  memset(&r, 0, sizeof(r));
  r.type = "user";
  r.id = "u1";
  r.match_keys = bad_mk;
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "match key 'no-equals-sign'"));
  r.match_keys = NULL;
  r.profile_json = "[1,2]";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "resource 'user/u1': profile is not a JSON object");
  r.profile_json = "{\"a\":1} trailing";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "profile"));
  r.profile_json = NULL;
  r.display_name = "bad \xc3\x28";
  ck_assert_int_eq(graph_add_resource(g, j, &r, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "not valid UTF-8"));

  ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "grant on 'project/10001#lead': principal type "
                            "'group' is not grantable (allowed: user)");
  gr.slug = "owner";
  ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "grant on 'project/10001#owner': slug 'owner' is "
                            "not declared by type 'project'");
  gr.slug = "role:atlassian/admin";
  gr.principal.type = "user";
  gr.flags = CH_GRANT_EXPANDABLE;
  gr.expand_slug = "member";
  ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  ck_assert_str_eq(err.msg, "grant on 'project/10001#role:atlassian%2Fadmin': "
                            "expand slug 'member' is not declared by "
                            "principal type 'user'");
  gr.principal.id = NULL;
  ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "no principal"));
  gr.principal.type = "gadget";
  gr.principal.id = "x";
  ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  ck_assert_ptr_nonnull(strstr(err.msg, "principal type 'gadget' is not "
                                        "declared"));

  /* nothing of the rejected records made it in */
  ck_assert_int_eq(graph_finish(g), CH_OK);
  {
    struct graph_counts c;
    graph_counts(g, &c);
    ck_assert_uint_eq(c.resources, 0);
    ck_assert_uint_eq(c.grants, 0);
  }
  graph_free(g);
}
END_TEST

/* ---- identity merge
 * ---------------------------------------------------------- */

START_TEST(test_identity_merge) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  int o = add_inst(g, "acme", "org", org_types);
  int b = add_inst(g, "beta", "jira", jira_types);
  struct graph_counts c;
  struct json_object *doc, *id, *r;

  /* Jira cannot see emails; the org's managed account can */
  add_user(g, j, "user", "5b10a", "Ann", NULL, "atlassian_account_id=5b10a",
           NULL);
  add_user(g, o, "managed_account", "5b10a", "Ann Smith", "Ann@Acme.com",
           "atlassian_account_id=5b10a", "email=Ann@Acme.com");
  /* same account id in another tenant: a different person */
  add_user(g, b, "user", "5b10a", "Other", "x@beta.io",
           "atlassian_account_id=5b10a", NULL);
  /* email keys ignore case, other keys do not */
  add_user(g, j, "user", "u2", "Bob", NULL, "email=BOB@acme.com", "name=Bob");
  add_user(g, o, "managed_account", "m2", "Bob", "bob@acme.com",
           "email=bob@acme.com", "name=bob");
  add_user(g, j, "user", "u3", NULL, NULL, NULL, NULL);
  add_user(g, j, "user", "u4", "Carol", NULL, "name=Carol", NULL);
  add_user(g, o, "managed_account", "m4", "Carol", NULL, "name=carol", NULL);
  ck_assert_int_eq(graph_finish(g), CH_OK);

  doc = parse_graph(g);
  id = find(doc, "identities", "key",
            "acme/~identity/atlassian_account_id=5b10a");
  ck_assert_ptr_nonnull(id);
  ck_assert_str_eq(str(id, "tenant"), "acme");
  ck_assert_uint_eq(arr_len(id, "resources"), 2);
  ck_assert_str_eq(arr_str(id, "resources", 0), "acme/jira/user/5b10a");
  ck_assert_str_eq(arr_str(id, "resources", 1),
                   "acme/org/managed_account/5b10a");
  ck_assert_uint_eq(arr_len(id, "emails"), 1);
  ck_assert_str_eq(arr_str(id, "emails", 0), "ann@acme.com");
  /* display name of the lowest-keyed member that has one */
  ck_assert_str_eq(str(id, "display_name"), "Ann");
  r = find(doc, "resources", "key", "acme/jira/user/5b10a");
  ck_assert_str_eq(str(r, "identity"), str(id, "key"));

  id = find(doc, "identities", "key",
            "beta/~identity/atlassian_account_id=5b10a");
  ck_assert_ptr_nonnull(id);
  ck_assert_uint_eq(arr_len(id, "resources"), 1);
  ck_assert_str_eq(arr_str(id, "emails", 0), "x@beta.io");

  id = find(doc, "identities", "key", "acme/~identity/email=bob@acme.com");
  ck_assert_ptr_nonnull(id);
  ck_assert_uint_eq(arr_len(id, "resources"), 2);
  ck_assert_uint_eq(arr_len(id, "match_keys"), 3);
  ck_assert_str_eq(arr_str(id, "match_keys", 1), "name=Bob");
  ck_assert_str_eq(arr_str(id, "match_keys", 2), "name=bob");

  /* a user with no match keys is an identity of its own */
  id =
      find(doc, "identities", "key", "acme/~identity/~acme%2Fjira%2Fuser%2Fu3");
  ck_assert_ptr_nonnull(id);
  ck_assert_str_eq(str(id, "display_name"), "");

  ck_assert_ptr_nonnull(
      find(doc, "identities", "key", "acme/~identity/name=Carol"));
  ck_assert_ptr_nonnull(
      find(doc, "identities", "key", "acme/~identity/name=carol"));

  graph_counts(g, &c);
  ck_assert_uint_eq(c.identities, 6);
  ck_assert_uint_eq(c.merged_identities, 2);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

/* ---- expansion
 * ------------------------------------------------------------------ */

#define ROLE "acme/jira/project_role/10000:admins"
#define ROLE_ENT ROLE "#assigned"
#define U(x) "acme/jira/user/" x
#define GM(x) "acme/jira/group/" x "#member"

static void add_role(struct graph *g, int j) {
  struct ch_resource r = {0};

  add_simple(g, j, "project", "10000");
  r.type = "project_role";
  r.id = "10000:admins";
  r.parent_type = "project";
  r.parent_id = "10000";
  add_res(g, j, &r);
}

START_TEST(test_expand_group) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct json_object *doc, *gr;
  struct graph_counts c;

  add_role(g, j);
  add_simple(g, j, "group", "devs");
  add_simple(g, j, "user", "u1");
  add_simple(g, j, "user", "u2");
  add_grant(g, j, "group", "devs", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "devs", "member", "user", "u2", NULL);
  add_grant(g, j, "project_role", "10000:admins", "assigned", "group", "devs",
            "member");
  ck_assert_int_eq(graph_finish(g), CH_OK);
  doc = parse_graph(g);

  gr = find_grant(doc, ROLE_ENT, "acme/jira/group/devs");
  ck_assert_ptr_nonnull(gr);
  ck_assert(is_direct(gr));
  ck_assert_str_eq(str(gr, "expandable"), GM("devs"));
  ck_assert_str_eq(sources(gr), "");
  gr = find_grant(doc, ROLE_ENT, U("u1"));
  ck_assert_ptr_nonnull(gr);
  ck_assert(!is_direct(gr));
  ck_assert_str_eq(sources(gr), GM("devs"));
  ck_assert_ptr_null(str(gr, "expandable"));
  gr = find_grant(doc, ROLE_ENT, U("u2"));
  ck_assert_ptr_nonnull(gr);
  ck_assert(!is_direct(gr));
  ck_assert_uint_eq(count_grants(doc, ROLE_ENT), 3);
  /* the role's parent is its project */
  ck_assert_str_eq(str(find(doc, "resources", "key", ROLE), "parent"),
                   "acme/jira/project/10000");

  graph_counts(g, &c);
  ck_assert_uint_eq(c.derived_grants, 2);
  ck_assert_uint_eq(c.grants, 5);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

/* Before graph_finish, what each instance sent as the graph keeps it: a
   resource or grant sent twice once (the shrink check's figures); then
   graph_finish goes on from there. */
START_TEST(test_received_counts_distinct) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  int o = add_inst(g, "acme", "org", org_types);
  uint64_t res = 9, grants = 9;
  struct json_object *doc;

  add_simple(g, j, "group", "devs");
  add_simple(g, j, "user", "u1");
  add_simple(g, j, "user", "u2");
  add_simple(g, j, "user", "u1");
  add_simple(g, o, "managed_account", "a1");
  for (int k = 0; k < 3; k++)
    add_grant(g, j, "group", "devs", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "devs", "member", "user", "u2", NULL);
  ck_assert_int_eq(graph_received(g, j, &res, &grants), CH_OK);
  ck_assert_uint_eq(res, 3);
  ck_assert_uint_eq(grants, 2);
  ck_assert_int_eq(graph_received(g, o, &res, &grants), CH_OK);
  ck_assert_uint_eq(res, 1);
  ck_assert_uint_eq(grants, 0);
  ck_assert_int_eq(graph_received(g, 7, &res, &grants), CH_E_INVALID);
  {
    /* the keys are ranked now: no more records */
    struct ch_grant gr = {
        {"group", "devs"}, "member", {"user", "u2"}, 0, NULL, NULL};
    struct ch_err err = {0};
    ck_assert_int_eq(graph_add_grant(g, j, &gr, &err), CH_E_INVALID);
  }
  ck_assert_int_eq(graph_finish(g), CH_OK);
  ck_assert_int_eq(graph_received(g, j, &res, &grants), CH_E_INVALID);
  doc = parse_graph(g);
  ck_assert_uint_eq(count_grants(doc, GM("devs")), 2);
  ck_assert_uint_eq(
      stat_of(json_object_array_get_idx(arr(doc, "instances"), 0), "grants"),
      2);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "entitlement principal direct expandable sources..." of one grant. */
static char *grant_line(const char *ent, const char *principal, int direct,
                        const char *expandable, const char *const *sources,
                        size_t nsources) {
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);

  ck_assert_ptr_nonnull(f);
  fprintf(f, "%s %s %d %s", ent, principal, direct,
          expandable ? expandable : "-");
  for (size_t k = 0; k < nsources; k++)
    fprintf(f, " %s", sources[k]);
  ck_assert_int_eq(fclose(f), 0);
  return line;
}

/* A walk with graph_grant_step reads each grant as graph_grant_view does
   (which looks it up on its own). */
static void grant_walk_matches(struct graph *g) {
  size_t n = graph_ngrants(g, NULL), i;
  struct graph_grant_pos p;

  graph_grant_locate(g, 0, &p);
  for (i = 0; i < n; i++, graph_grant_step(g, &p)) {
    struct graph_grant_view v, w;
    ck_assert_uint_eq(p.index, i);
    graph_grant_view(g, i, &v);
    graph_grant_view_at(g, &p, &w);
    ck_assert_uint_eq(v.ent, w.ent);
    ck_assert_uint_eq(v.principal, w.principal);
    ck_assert_int_eq(v.direct, w.direct);
    ck_assert_uint_eq(v.expandable, w.expandable);
    ck_assert_uint_eq(v.nsources, w.nsources);
    ck_assert(v.nsources == 0 || memcmp(v.sources, w.sources,
                                        v.nsources * sizeof(*v.sources)) == 0);
  }
}

/* The store's grant views (direct ones first, then derived ones) hold what
   the output holds: the same grants, with the same entitlement,
   principal, expandable and sources. */
static void grant_views_match(struct graph *g, struct json_object *doc) {
  struct json_object *arr = json_object_object_get(doc, "grants");
  size_t n = graph_ngrants(g, NULL), i, k;
  char **a = calloc(n + 1, sizeof(char *)), **b = calloc(n + 1, sizeof(char *));
  const char *src[16];

  grant_walk_matches(g);

  ck_assert_uint_eq(n, json_object_array_length(arr));
  for (i = 0; i < n; i++) {
    struct json_object *o = json_object_array_get_idx(arr, i), *x, *y;
    struct graph_grant_view v;
    struct graph_ent_view ev, xv;
    struct graph_res_view rv;
    const char *ekey;

    x = json_object_object_get(o, "sources");
    y = json_object_object_get(o, "expandable");
    for (k = 0; x && k < json_object_array_length(x) && k < 16; k++)
      src[k] = json_object_get_string(json_object_array_get_idx(x, k));
    a[i] = grant_line(
        json_object_get_string(json_object_object_get(o, "entitlement")),
        json_object_get_string(json_object_object_get(o, "principal")),
        json_object_get_boolean(json_object_object_get(o, "direct")),
        y ? json_object_get_string(y) : NULL, src, k);

    graph_grant_view(g, i, &v);
    graph_entitlement_view(g, v.ent, &ev);
    ekey = ev.key;
    ck_assert(graph_resource_view(g, v.principal, &rv));
    if (v.expandable != GRAPH_NONE)
      graph_entitlement_view(g, v.expandable, &xv);
    ck_assert_uint_le(v.nsources, 16);
    for (k = 0; k < v.nsources; k++) {
      struct graph_ent_view sv;
      graph_entitlement_view(g, v.sources[k], &sv);
      src[k] = sv.key;
    }
    b[i] =
        grant_line(ekey, rv.key, v.direct,
                   v.expandable != GRAPH_NONE ? xv.key : NULL, src, v.nsources);
  }
  qsort(a, n, sizeof(*a), cmp_cstr);
  qsort(b, n, sizeof(*b), cmp_cstr);
  for (i = 0; i < n; i++) {
    ck_assert_str_eq(a[i], b[i]);
    free(a[i]);
    free(b[i]);
  }
  free(a);
  free(b);
}

START_TEST(test_expand_nested_cycle) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct json_object *doc, *gr;
  static const char *const users[] = {"u1", "u2", "u3", NULL};
  size_t i;

  add_role(g, j);
  add_simple(g, j, "group", "g1");
  add_simple(g, j, "group", "g2");
  add_simple(g, j, "group", "g3");
  for (i = 0; users[i]; i++)
    add_simple(g, j, "user", users[i]);
  /* g1 ∋ {g2, u1}; g2 ∋ {g1, g3, u2} (a cycle); g3 ∋ {u3} */
  add_grant(g, j, "group", "g1", "member", "group", "g2", "member");
  add_grant(g, j, "group", "g1", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "g2", "member", "group", "g1", "member");
  add_grant(g, j, "group", "g2", "member", "group", "g3", "member");
  add_grant(g, j, "group", "g2", "member", "user", "u2", NULL);
  add_grant(g, j, "group", "g3", "member", "user", "u3", NULL);
  add_grant(g, j, "project_role", "10000:admins", "assigned", "group", "g1",
            "member");
  ck_assert_int_eq(graph_finish(g), CH_OK);
  doc = parse_graph(g);

  /* the role reaches everybody below g1, each through g1#member */
  ck_assert_uint_eq(count_grants(doc, ROLE_ENT), 6);
  ck_assert(is_direct(find_grant(doc, ROLE_ENT, "acme/jira/group/g1")));
  ck_assert_str_eq(sources(find_grant(doc, ROLE_ENT, "acme/jira/group/g1")),
                   "");
  for (i = 0; users[i]; i++) {
    char key[64];
    snprintf(key, sizeof(key), "acme/jira/user/%s", users[i]);
    gr = find_grant(doc, ROLE_ENT, key);
    ck_assert_msg(gr != NULL, "%s lacks the role", key);
    ck_assert(!is_direct(gr));
    ck_assert_str_eq(sources(gr), GM("g1"));
  }
  gr = find_grant(doc, ROLE_ENT, "acme/jira/group/g3");
  ck_assert(!is_direct(gr));
  ck_assert_str_eq(sources(gr), GM("g1"));

  /* g1's members: g2 and u1 directly, u2, g3, u3 through g2; not itself */
  ck_assert_uint_eq(count_grants(doc, GM("g1")), 5);
  ck_assert_ptr_null(find_grant(doc, GM("g1"), "acme/jira/group/g1"));
  ck_assert_str_eq(sources(find_grant(doc, GM("g1"), U("u3"))), GM("g2"));
  ck_assert_str_eq(sources(find_grant(doc, GM("g1"), U("u2"))), GM("g2"));
  /* g2's: g1, g3, u2 directly, u1 through g1 and u3 through g3 */
  ck_assert_uint_eq(count_grants(doc, GM("g2")), 5);
  ck_assert_str_eq(sources(find_grant(doc, GM("g2"), U("u1"))), GM("g1"));
  ck_assert_str_eq(sources(find_grant(doc, GM("g2"), U("u3"))), GM("g3"));
  ck_assert_ptr_null(find_grant(doc, GM("g2"), "acme/jira/group/g2"));
  grant_views_match(g, doc);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

START_TEST(test_expand_depth_limit) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct json_object *doc;
  char id[16], prev[16];
  int i;

  /* a chain r -> c0 -> c1 -> ... -> c29 -> user u */
  add_role(g, j);
  add_simple(g, j, "user", "u");
  for (i = 0; i < 30; i++) {
    snprintf(id, sizeof(id), "c%02d", i);
    add_simple(g, j, "group", id);
    if (i)
      add_grant(g, j, "group", prev, "member", "group", id, "member");
    memcpy(prev, id, sizeof(id));
  }
  add_grant(g, j, "group", "c29", "member", "user", "u", NULL);
  add_grant(g, j, "project_role", "10000:admins", "assigned", "group", "c00",
            "member");
  ck_assert_int_eq(graph_finish(g), CH_OK);
  doc = parse_graph(g);
  /* hop 1 is c00#member: groups c01..c20 are reached, deeper ones are not */
  ck_assert_ptr_nonnull(find_grant(doc, ROLE_ENT, "acme/jira/group/c20"));
  ck_assert_ptr_null(find_grant(doc, ROLE_ENT, "acme/jira/group/c21"));
  ck_assert_ptr_null(find_grant(doc, ROLE_ENT, U("u")));
  ck_assert_uint_ge(
      stat_of(json_object_array_get_idx(arr(doc, "instances"), 0), "warnings"),
      1);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

START_TEST(test_expand_coincides_with_direct) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct json_object *doc, *gr;
  struct ch_resource leads = {0};

  add_role(g, j);
  add_simple(g, j, "group", "devs");
  add_simple(g, j, "group", "ops");
  add_simple(g, j, "user", "u1");
  add_simple(g, j, "user", "u2");
  add_grant(g, j, "group", "devs", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "ops", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "ops", "member", "user", "u2", NULL);
  add_grant(g, j, "project_role", "10000:admins", "assigned", "user", "u1",
            NULL);
  add_grant(g, j, "project_role", "10000:admins", "assigned", "group", "ops",
            "member");
  add_grant(g, j, "project_role", "10000:admins", "assigned", "group", "devs",
            "member");
  /* a second direct grant that is inherited as well: the store's walk
     over the grants (grant_views_match) must find each one's sources */
  leads.type = "project_role";
  leads.id = "10000:leads";
  leads.parent_type = "project";
  leads.parent_id = "10000";
  add_res(g, j, &leads);
  add_grant(g, j, "project_role", "10000:leads", "assigned", "user", "u2",
            NULL);
  add_grant(g, j, "project_role", "10000:leads", "assigned", "group", "ops",
            "member");
  ck_assert_int_eq(graph_finish(g), CH_OK);
  doc = parse_graph(g);

  gr = find_grant(doc, "acme/jira/project_role/10000:leads#assigned", U("u2"));
  ck_assert(is_direct(gr));
  ck_assert_str_eq(sources(gr), GM("ops"));
  gr = find_grant(doc, ROLE_ENT, U("u1"));
  ck_assert(is_direct(gr));
  ck_assert_str_eq(sources(gr), GM("devs") "," GM("ops"));
  gr = find_grant(doc, ROLE_ENT, U("u2"));
  ck_assert(!is_direct(gr));
  ck_assert_str_eq(sources(gr), GM("ops"));
  ck_assert_uint_eq(count_grants(doc, ROLE_ENT), 4);
  grant_views_match(g, doc);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

/* ---- failures
 * ------------------------------------------------------------------- */

/* The error names the first unresolved id, its form and the listing that
   should have carried it: a membership that names a group by its ARI
   while the group listing gave the bare id (issue 8). */
START_TEST(test_unknown_entitlement_names_the_id_form) {
  struct graph *g = graph_new();
  int f = add_inst(g, "acme", "org", jira_types);
  static const char *const no_slugs[] = {NULL};
  struct graph_report rep = {1, NULL, 3, 4, 0, 0};
  struct ch_resource zeta = {0};
  const char *error = NULL;

  add_user(g, f, "user", "u1", "Ann", NULL, "atlassian_account_id=1", NULL);
  add_simple(g, f, "group", "0f1e");
  add_grant(g, f, "group", "ari:cloud:identity::group/0f1e", "member", "user",
            "u1", NULL);
  graph_set_report(g, f, &rep);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  ck_assert_int_eq(graph_instance_ok(g, f, &error), 0);
  ck_assert_str_eq(error, "grant on unknown entitlement "
                          "'acme/org/group/ari:cloud:identity::group%2F0f1e"
                          "#member': no group with id "
                          "'ari:cloud:identity::group/0f1e' (it looks like an "
                          "ARI) was listed; the group listing of acme/org "
                          "should have carried it, or the plugin names it in "
                          "another id form there");
  graph_free(g);

  /* Listed, but without the entitlement: say so, not "never listed". */
  g = graph_new();
  f = add_inst(g, "acme", "org", jira_types);
  add_user(g, f, "user", "u1", "Ann", NULL, "atlassian_account_id=1", NULL);
  zeta.type = "group";
  zeta.id = "zeta";
  zeta.entitlements = no_slugs;
  add_res(g, f, &zeta);
  add_grant(g, f, "group", "zeta", "member", "user", "u1", NULL);
  graph_set_report(g, f, &rep);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  ck_assert_int_eq(graph_instance_ok(g, f, &error), 0);
  ck_assert_str_eq(error, "grant on unknown entitlement "
                          "'acme/org/group/zeta#member': group 'zeta' was "
                          "listed without that entitlement");
  graph_free(g);
}
END_TEST

START_TEST(test_unknown_entitlement_fails_instance) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  int f = add_inst(g, "acme", "flat", jira_types);
  static const char *const no_slugs[] = {NULL};
  struct graph_report rep = {1, NULL, 3, 4, 0, 0};
  struct json_object *doc, *in;
  struct ch_resource zeta = {0};
  const char *error = NULL;
  struct graph_counts c;

  add_user(g, j, "user", "u1", "Ann", NULL, "atlassian_account_id=1", NULL);
  add_user(g, f, "user", "u1", "Ann", NULL, "atlassian_account_id=1", NULL);
  add_simple(g, f, "group", "devs");
  zeta.type = "group";
  zeta.id = "zeta";
  zeta.entitlements = no_slugs;
  add_res(g, f, &zeta);
  add_grant(g, f, "group", "devs", "member", "user", "u1", NULL);
  /* "admins" was never listed; "zeta" was, without the slug */
  add_grant(g, f, "group", "zeta", "member", "user", "u1", NULL);
  add_grant(g, f, "group", "admins", "member", "user", "u1", NULL);
  graph_set_report(g, j, &rep);
  graph_set_report(g, f, &rep);
  ck_assert_int_eq(graph_finish(g), CH_OK);

  ck_assert_int_eq(graph_instance_ok(g, j, &error), 1);
  ck_assert_ptr_null(error);
  ck_assert_int_eq(graph_instance_ok(g, f, &error), 0);
  ck_assert_str_eq(error,
                   "grant on unknown entitlement "
                   "'acme/flat/group/admins#member' (and 1 more): no group "
                   "with id 'admins' (a plain id) was listed; the group "
                   "listing of acme/flat should have carried it, or the "
                   "plugin names it in another id form there");
  doc = parse_graph(g);
  in = find(doc, "instances", "instance", "flat");
  ck_assert_str_eq(str(in, "status"), "failed");
  ck_assert_str_eq(str(in, "error"), error);
  ck_assert_uint_eq(stat_of(in, "pages"), 3);
  in = find(doc, "instances", "instance", "jira");
  ck_assert_str_eq(str(in, "status"), "ok");
  ck_assert_ptr_null(str(in, "error"));
  ck_assert_ptr_null(find(doc, "resources", "instance", "flat"));
  ck_assert_ptr_nonnull(find(doc, "resources", "key", "acme/jira/user/u1"));
  ck_assert_uint_eq(json_object_array_length(arr(doc, "grants")), 0);
  graph_counts(g, &c);
  ck_assert_uint_eq(c.resources, 1);
  /* the failed instance's user does not join the identity */
  ck_assert_uint_eq(c.merged_identities, 0);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

START_TEST(test_report_failure_drops_records) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  int f = add_inst(g, "acme", "flat", jira_types);
  struct graph_report bad = {0, "auth: HTTP 401", 1, 1, 0, 0};
  struct json_object *doc;
  const char *error;

  add_simple(g, j, "user", "u1");
  add_simple(g, f, "user", "u2");
  add_simple(g, f, "group", "devs");
  add_grant(g, f, "group", "devs", "member", "user", "u2", NULL);
  add_grant(g, f, "group", "devs", "member", "user", "u2", NULL);
  graph_set_report(g, f, &bad);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  ck_assert_int_eq(graph_instance_ok(g, f, &error), 0);
  ck_assert_str_eq(error, "auth: HTTP 401");
  doc = parse_graph(g);
  ck_assert_uint_eq(json_object_array_length(arr(doc, "resources")), 1);
  ck_assert_str_eq(str(find(doc, "instances", "instance", "flat"), "error"),
                   "auth: HTTP 401");
  /* what it delivered before failing is counted, not written */
  ck_assert_uint_eq(
      stat_of(find(doc, "instances", "instance", "flat"), "resources"), 2);
  ck_assert_uint_eq(
      stat_of(find(doc, "instances", "instance", "flat"), "grants"), 1);
  ck_assert_uint_eq(json_object_array_length(arr(doc, "grants")), 0);
  json_object_put(doc);
  graph_free(g);
}
END_TEST

START_TEST(test_unknown_principal_dropped) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct graph_report rep = {1, NULL, 1, 1, 0, 2};
  struct json_object *doc, *in;

  add_simple(g, j, "group", "devs");
  add_simple(g, j, "user", "u1");
  add_grant(g, j, "group", "devs", "member", "user", "u1", NULL);
  add_grant(g, j, "group", "devs", "member", "user", "ghost", NULL);
  add_grant(g, j, "group", "devs", "member", "user", "ghost", NULL);
  graph_set_report(g, j, &rep);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  ck_assert_int_eq(graph_instance_ok(g, j, NULL), 1);
  doc = parse_graph(g);
  in = find(doc, "instances", "instance", "jira");
  ck_assert_uint_eq(stat_of(in, "dropped_grants"), 1);
  ck_assert_uint_eq(stat_of(in, "warnings"), 3);
  ck_assert_uint_eq(stat_of(in, "grants"), 2);
  ck_assert_uint_eq(count_grants(doc, GM("devs")), 1);
  ck_assert_ptr_null(find(doc, "resources", "id", "ghost"));
  json_object_put(doc);
  graph_free(g);
}
END_TEST

/* ---- output
 * ------------------------------------------------------------------- */

START_TEST(test_profile_canonical) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  struct ch_resource r = {0};
  char *text;

  r.type = "user";
  r.id = "u1";
  r.profile_json = " {\"b\": 1.50, \"a\": {\"d\": [1, \"x/y\", null], "
                   "\"c\": \"\\u00e9\\n\"}} ";
  add_res(g, j, &r);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  text = render(g, GRAPH_JSON);
  ck_assert_msg(strstr(text, "\"profile\":{\"a\":{\"c\":\"é\\n\",\"d\":[1,"
                             "\"x/y\",null]},\"b\":1.50}") != NULL,
                "%s", text);
  free(text);
  { /* the store's view decodes the same text */
    struct graph_res_view v;
    size_t i;
    for (i = 0; i < graph_nnodes(g) && !graph_resource_view(g, i, &v); i++)
      ;
    ck_assert_uint_lt(i, graph_nnodes(g));
    ck_assert_str_eq(v.profile, "{\"a\":{\"c\":\"é\\n\",\"d\":[1,\"x/y\","
                                "null]},\"b\":1.50}");
  }
  graph_free(g);
}
END_TEST

/* Canonicalize `text` both ways (gr_profile_canon, which tries the fast
   path first, and the json-c tree alone) and check they agree on the
   code, the text and the reason; and that the fast path takes nothing
   the tree path refuses. Returns whether the fast path took it. */
static int canon_agree(const char *text) {
  char *a = NULL, *b = NULL, wa[200] = "", wb[200] = "";
  int ra = gr_profile_canon(text, &a, wa, sizeof(wa));
  int rb = gr_profile_canon_tree(text, &b, wb, sizeof(wb));
  struct jw w = {0};
  int fast = key_utf8_valid(text, strlen(text)) &&
             gr_profile_canon_fast(text, strlen(text), &w);

  ck_assert_msg(ra == rb, "%s: %d vs %d", text, ra, rb);
  if (rb == CH_OK) {
    ck_assert_msg(a && b && !strcmp(a, b), "%s: '%s' vs '%s'", text,
                  a ? a : "(null)", b ? b : "(null)");
  } else {
    ck_assert_msg(!a && !strcmp(wa, wb), "%s: '%s' vs '%s'", text, wa, wb);
    ck_assert_msg(!fast, "the fast path took '%s' (%s)", text, wb);
  }
  if (fast) {
    jw_put(&w, "", 1);
    ck_assert_msg(rb == CH_OK && !strcmp(w.buf, b), "%s: fast '%s'", text,
                  w.buf);
  }
  free(w.buf);
  free(a);
  free(b);
  return fast;
}

/* The fast path gives the common profiles exactly the tree path's text,
   declines what it does not handle (escapes, fractions, repeats) and
   refuses, by declining, everything json-c refuses, whose errors stay
   the ones plugins got before. */
START_TEST(test_profile_canon_fast) {
  static const char *const common[] = {
      "{}",
      "{\"active\":false}",
      " {\"status\":\"active\",\"accountType\":\"atlassian\",\"mfaEnabled\":"
      "true,\"emailVerified\":false,\"nickname\":null,\"n\":-12} ",
      "{\"b\":1,\"a\":[1,2,{\"z\":null,\"y\":-3}],\"c\":[]}",
      "{\r\n\t\"tz\" : \"Europe/Paris\" ,\"\":\"\xc3\xa9\x7f\",\"ab\":0,\"a\":"
      "{}}",
      "{\"k\":123456789012345678}",
  };
  static const char *const declined[] = {
      "{\"a\":\"x\\\"y\"}",
      "{\"a\":\"\\u00e9\"}",
      "{\"a\":1.5}",
      "{\"a\":-0}",
      "{\"a\":1e3}",
      "{\"a\":1234567890123456789}",
      "{\"a\":1,\"a\":2}",
      "{\"x\":[{\"a\":1,\"b\":2,\"a\":3}]}",
      "{\"a\":[[[[[[[[[]]]]]]]]]}", /* json-c takes these too */
      "{'a':1}",
      "{\"a\":\"\x01\"}",
      "{\"a\":1.}",
      "{\"a\":-01}",
  };
  static const char *const refused[] = {
      "",
      " ",
      "[1]",
      "\"x\"",
      "{\"a\":1,}",
      "{\"a\":01}",
      "{\"a\":tru}",
      "{\"a\":truex}",
      "{\"a\":nul}",
      "{\"a\":NaN}",
      "{\"a\":Infinity}",
      "{\"a\" 1}",
      "{a:1}",
      "{\"a\":1} x",
      "{\"a\":1}}",
      "{\"a\":1",
      "{\"a\":\"x",
      "{\"a\":-}",
      "{\"a\":+1}",
      "{\"a\":.5}",
      "{\"a\":[1,]}",
      "{\"a\":[,1]}",
      "{,}",
      "{\"a\":1 \"b\":2}",
      "{\"a\":[1}",
      "{\"a\":\v1}",
      "{\"a\":\"\xc3\x28\"}",
      "{\"\xff\":1}",
      "{\"a\":1}/* c */",
  };
  static const char *const seeds[] = {
      "{\"s\":\"active\",\"t\":true,\"n\":[1,-20,null],\"o\":{\"f\":false}}",
      "{\"active\":false}",
  };
  static const char subst[] = "\"\\,:{}[]0-e. x\x01\x7f";
  char text[128];
  size_t i, j, k, n;

  for (i = 0; i < sizeof(common) / sizeof(common[0]); i++)
    ck_assert_msg(canon_agree(common[i]), "declined '%s'", common[i]);
  for (i = 0; i < sizeof(declined) / sizeof(declined[0]); i++)
    ck_assert_msg(!canon_agree(declined[i]), "took '%s'", declined[i]);
  for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    char *out = NULL, why[200];
    ck_assert_msg(gr_profile_canon(refused[i], &out, why, sizeof(why)),
                  "accepted '%s'", refused[i]);
    canon_agree(refused[i]);
  }
  /* every one-byte change of the seeds: cut short, a byte dropped, one
     replaced by a structural or odd byte */
  for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
    n = strlen(seeds[i]);
    for (j = 0; j < n; j++) {
      memcpy(text, seeds[i], j);
      text[j] = '\0';
      canon_agree(text);
      memcpy(text + j, seeds[i] + j + 1, n - j);
      canon_agree(text);
      for (k = 0; subst[k]; k++) {
        memcpy(text, seeds[i], n + 1);
        text[j] = subst[k];
        canon_agree(text);
      }
    }
  }
}
END_TEST

/* Decode `c` back to text (what the writer and the store see). */
static char *pdict_text(struct gr_pdict *d, const unsigned char *c) {
  char *t = gr_pdict_text(d, c);
  ck_assert_ptr_nonnull(t);
  return t;
}

/* The profile dictionary gives back every canonical text byte for byte:
   coded values, inlined ones once a position's 255 codes are used, long
   values, profiles with too many values (kept as text), nested shapes. */
START_TEST(test_profile_dictionary) {
  static const char *const texts[] = {
      "{}",
      "{\"a\":\"x\",\"b\":true,\"c\":null,\"d\":-1.5e3}",
      "{\"a\":\"x\",\"b\":false,\"c\":null,\"d\":7}",
      "{\"a\":\"\",\"q\\\"k\":\"v\\\\\\\"w\",\"z\":[1,\"2\",[],{},{\"y\":0}]}",
      "{\"n\":{\"m\":[\"é\",\"\\u0001\",\"a,b]}\"]}}",
  };
  struct gr_pdict d;
  unsigned char *c[600];
  char big[4096], *t;
  size_t len, i, small = 0;

  gr_pdict_init(&d);
  for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    ck_assert_int_eq(gr_pdict_encode(&d, texts[i], &c[0], &len), CH_OK);
    t = pdict_text(&d, c[0]);
    ck_assert_str_eq(t, texts[i]);
    free(t);
    free(c[0]);
  }
  /* 300 distinct values at one position, each twice: past 255 they are
     inlined, and every one still decodes */
  for (i = 0; i < 600; i++) {
    char text[96];
    snprintf(text, sizeof(text), "{\"id\":\"user-%zu\",\"tz\":\"UTC\"}",
             i % 300);
    ck_assert_int_eq(gr_pdict_encode(&d, text, &c[i], &len), CH_OK);
    if (len <= 3)
      small++; /* shape id and two codes */
    t = pdict_text(&d, c[i]);
    ck_assert_str_eq(t, text);
    free(t);
  }
  ck_assert_uint_eq(small, 255 + 255);
  for (i = 0; i < 600; i++)
    free(c[i]);
  /* a value longer than a code may hold, and one with 100 values */
  memset(big, 'x', 200);
  memcpy(big, "{\"k\":\"", 6);
  memcpy(big + 200, "\"}", 3);
  ck_assert_int_eq(gr_pdict_encode(&d, big, &c[0], &len), CH_OK);
  ck_assert_uint_gt(len, 190);
  t = pdict_text(&d, c[0]);
  ck_assert_str_eq(t, big);
  free(t);
  free(c[0]);
  len = (size_t)snprintf(big, sizeof(big), "{\"v\":[");
  for (i = 0; i < 100; i++)
    len += (size_t)snprintf(big + len, sizeof(big) - len, "%s%zu", i ? "," : "",
                            i);
  snprintf(big + len, sizeof(big) - len, "]}");
  ck_assert_int_eq(gr_pdict_encode(&d, big, &c[0], &len), CH_OK);
  t = pdict_text(&d, c[0]);
  ck_assert_str_eq(t, big);
  free(t);
  free(c[0]);
  gr_pdict_release(&d);
}
END_TEST

START_TEST(test_jsonl_shape) {
  struct graph *g = graph_new();
  int j = add_inst(g, "acme", "jira", jira_types);
  static const char *const kinds[] = {"resource", "entitlement", "grant",
                                      "identity"};
  char *text, *line, *save = NULL;
  int n = 0, k = 0;

  add_simple(g, j, "group", "devs");
  add_simple(g, j, "user", "u1");
  add_grant(g, j, "group", "devs", "member", "user", "u1", NULL);
  ck_assert_int_eq(graph_finish(g), CH_OK);
  text = render(g, GRAPH_JSONL);
  for (line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save), n++) {
    struct json_object *o = json_tokener_parse(line);
    ck_assert_msg(o != NULL, "line %d is not JSON: %s", n, line);
    if (!n) {
      ck_assert_ptr_nonnull(str(o, "generated_at"));
      ck_assert_uint_eq(arr_len(o, "instances"), 1);
      ck_assert_ptr_null(str(o, "kind"));
    } else {
      /* kinds come in blocks, in the JSON arrays' order */
      while (k < 4 && strcmp(str(o, "kind"), kinds[k]))
        k++;
      ck_assert_msg(k < 4, "line %d: kind out of order", n);
      ck_assert_ptr_nonnull(str(o, kinds[k][0] == 'g' ? "entitlement" : "key"));
    }
    json_object_put(o);
  }
  /* header, 2 resources, 1 entitlement, 1 grant, 1 identity */
  ck_assert_int_eq(n, 6);
  ck_assert_int_eq(k, 3);
  free(text);
  graph_free(g);
}
END_TEST

/* ---- determinism
 * ---------------------------------------------------------------- */

enum rec_kind { REC_RES, REC_GRANT };

struct rec {
  enum rec_kind kind;
  struct ch_resource r;
  struct ch_grant gr;
  const char *mk[2];
  const char *em[2];
  char id[32], pid[32], name[32], mkbuf[64], embuf[48];
};

#define NREC 700

static struct rec *make_records(size_t *n) {
  struct rec *v = calloc(NREC, sizeof(*v));
  size_t k = 0;
  int i;

  ck_assert_ptr_nonnull(v);
  for (i = 0; i < 200; i++, k++) {
    struct rec *x = &v[k];
    x->kind = REC_RES;
    snprintf(x->id, sizeof(x->id), "u/%d", i);
    snprintf(x->name, sizeof(x->name), "User %d", i);
    /* pairs of users share an email (case differs): merged identities */
    snprintf(x->embuf, sizeof(x->embuf), "%s%d@Acme.com", i % 2 ? "P" : "p",
             i / 2);
    snprintf(x->mkbuf, sizeof(x->mkbuf), "email=%s", x->embuf);
    x->em[0] = x->embuf;
    x->mk[0] = x->mkbuf;
    x->r.type = "user";
    x->r.id = x->id;
    x->r.display_name = x->name;
    x->r.emails = x->em;
    x->r.match_keys = x->mk;
  }
  for (i = 0; i < 20; i++, k++) {
    struct rec *x = &v[k];
    x->kind = REC_RES;
    snprintf(x->id, sizeof(x->id), "g#%d", i);
    x->r.type = "group";
    x->r.id = x->id;
  }
  for (i = 0; i < 400; i++, k++) {
    struct rec *x = &v[k];
    x->kind = REC_GRANT;
    snprintf(x->id, sizeof(x->id), "g#%d", i % 20);
    snprintf(x->pid, sizeof(x->pid), "u/%d", (i * 7) % 200);
    x->gr.resource.type = "group";
    x->gr.resource.id = x->id;
    x->gr.slug = "member";
    x->gr.principal.type = "user";
    x->gr.principal.id = x->pid;
  }
  for (i = 0; i < 20; i++, k++) {
    /* nested groups, with cycles: g#i ∋ g#(i*3+1)%20 */
    struct rec *x = &v[k];
    x->kind = REC_GRANT;
    snprintf(x->id, sizeof(x->id), "g#%d", i);
    snprintf(x->pid, sizeof(x->pid), "g#%d", (i * 3 + 1) % 20);
    x->gr.resource.type = "group";
    x->gr.resource.id = x->id;
    x->gr.slug = "member";
    x->gr.principal.type = "group";
    x->gr.principal.id = x->pid;
    x->gr.flags = CH_GRANT_EXPANDABLE;
    x->gr.expand_slug = "member";
  }
  /* duplicates that differ: the same user with another name, the same
     grant with a profile */
  for (i = 0; i < 30; i++, k++) {
    struct rec *x = &v[k];
    if (i % 2) {
      *x = v[i * 3];
      x->r.display_name = "Zz other name";
      x->r.id = x->id;
      x->r.emails = x->em;
      x->r.match_keys = x->mk;
      x->em[0] = x->embuf;
      x->mk[0] = x->mkbuf;
    } else {
      *x = v[220 + (i / 4) * 5];
      x->gr.resource.id = x->id;
      x->gr.principal.id = x->pid;
      x->gr.profile_json = i % 4 ? "{\"via\":\"b\"}" : "{\"via\":\"a\"}";
    }
  }
  *n = k;
  return v;
}

static void add_rec(struct graph *g, int inst, const struct rec *x) {
  struct ch_err err = {0};
  int rc = x->kind == REC_RES ? graph_add_resource(g, inst, &x->r, &err)
                              : graph_add_grant(g, inst, &x->gr, &err);
  ck_assert_msg(rc == CH_OK, "add: %s", err.msg);
}

struct feeder {
  struct graph *g;
  int inst;
  struct rec *v;
  size_t n, start, step;
};

static void *feed(void *arg) {
  struct feeder *f = arg;
  size_t i;

  /* backwards, strided: a different interleaving from the serial run */
  for (i = f->n; i-- > 0;) {
    if (i % f->step == f->start)
      add_rec(f->g, f->inst, &f->v[i]);
  }
  return NULL;
}

static struct graph *build(struct rec *v, size_t n, int threads) {
  struct graph *g = graph_new();
  int j;
  size_t i;

  add_inst(g, "zeta", "jira", jira_types);
  j = add_inst(g, "acme", "jira", jira_types);
  add_inst(g, "acme", "aaa", org_types);
  if (!threads) {
    for (i = 0; i < n; i++)
      add_rec(g, j, &v[i]);
  } else {
    pthread_t t[4];
    struct feeder f[4];
    for (i = 0; i < 4; i++) {
      f[i] = (struct feeder){g, j, v, n, i, 4};
      ck_assert_int_eq(pthread_create(&t[i], NULL, feed, &f[i]), 0);
    }
    for (i = 0; i < 4; i++)
      pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(graph_finish(g), CH_OK);
  return g;
}

START_TEST(test_deterministic_output) {
  size_t n;
  struct rec *v = make_records(&n);
  struct graph *a = build(v, n, 0);
  struct graph *b = build(v, n, 1);
  char *ja = render(a, GRAPH_JSON), *jb = render(b, GRAPH_JSON);
  char *la = render(a, GRAPH_JSONL), *lb = render(b, GRAPH_JSONL);
  struct json_object *doc;
  struct graph_counts c;

  ck_assert_str_eq(ja, jb);
  ck_assert_str_eq(la, lb);
  /* the lowest duplicate won and duplicate grants were folded */
  ck_assert_ptr_null(strstr(ja, "Zz other name"));
  ck_assert_ptr_nonnull(strstr(ja, "\"profile\":{\"via\":\"a\"}"));
  ck_assert_ptr_null(strstr(ja, "\"via\":\"b\""));
  graph_counts(a, &c);
  ck_assert_uint_eq(c.identities, 100);
  ck_assert_uint_eq(c.merged_identities, 100);
  ck_assert_uint_gt(c.derived_grants, 0);
  doc = json_tokener_parse(ja);
  ck_assert_ptr_nonnull(doc);
  /* instances sorted by tenant, then instance */
  ck_assert_str_eq(
      str(json_object_array_get_idx(arr(doc, "instances"), 0), "instance"),
      "aaa");
  ck_assert_str_eq(
      str(json_object_array_get_idx(arr(doc, "instances"), 2), "tenant"),
      "zeta");
  json_object_put(doc);
  free(ja);
  free(jb);
  free(la);
  free(lb);
  graph_free(a);
  graph_free(b);
  free(v);
}
END_TEST

START_TEST(test_sorted_by_key) {
  size_t n, i;
  struct rec *v = make_records(&n);
  struct graph *g = build(v, n, 0);
  struct json_object *doc = parse_graph(g);
  static const char *const arrays[] = {"resources", "entitlements",
                                       "identities"};
  struct json_object *a;

  for (i = 0; i < 3; i++) {
    size_t k;
    a = arr(doc, arrays[i]);
    for (k = 1; k < json_object_array_length(a); k++)
      ck_assert_int_lt(strcmp(str(json_object_array_get_idx(a, k - 1), "key"),
                              str(json_object_array_get_idx(a, k), "key")),
                       0);
  }
  a = arr(doc, "grants");
  for (i = 1; i < json_object_array_length(a); i++) {
    struct json_object *p = json_object_array_get_idx(a, i - 1);
    struct json_object *q = json_object_array_get_idx(a, i);
    int c = strcmp(str(p, "entitlement"), str(q, "entitlement"));
    ck_assert(c < 0 ||
              (c == 0 && strcmp(str(p, "principal"), str(q, "principal")) < 0));
  }
  json_object_put(doc);
  graph_free(g);
  free(v);
}
END_TEST

/* ---- atomic writes
 * --------------------------------------------------------------- */

static int write_text(FILE *f, void *arg, struct ch_err *err) {
  (void)err;
  return fputs(arg, f) < 0 ? CH_E_IO : CH_OK;
}

static int write_fail(FILE *f, void *arg, struct ch_err *err) {
  (void)arg;
  fputs("partial", f);
  return ch_err_set(err, CH_E_INVALID, "callback gave up");
}

static char *slurp(const char *path) {
  static char buf[256];
  FILE *f = fopen(path, "r");
  size_t n;

  if (!f)
    return NULL;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Files in `dir` other than `keep`: leftover temp files. */
static int strays(const char *dir, const char *keep) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;

  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
        strcmp(e->d_name, keep))
      n++;
  }
  closedir(d);
  return n;
}

START_TEST(test_output_atomic) {
  char dir[] = "/tmp/check_graph.XXXXXX";
  char path[256];
  struct ch_err err = {0};
  struct stat st;
  mode_t old;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/graph.json", dir);
  old = umask(022);
  ck_assert_int_eq(output_write_atomic(path, write_text, "old\n", &err), CH_OK);
  umask(old);
  ck_assert_str_eq(slurp(path), "old\n");
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0644);

  ck_assert_int_eq(output_write_atomic(path, write_fail, NULL, &err),
                   CH_E_INVALID);
  ck_assert_str_eq(err.msg, "callback gave up");
  ck_assert_str_eq(slurp(path), "old\n");
  ck_assert_int_eq(strays(dir, "graph.json"), 0);

  ck_assert_int_eq(output_write_atomic(path, write_text, "new\n", &err), CH_OK);
  ck_assert_str_eq(slurp(path), "new\n");
  ck_assert_int_eq(strays(dir, "graph.json"), 0);

  snprintf(path, sizeof(path), "%s/missing/graph.json", dir);
  ck_assert_int_eq(output_write_atomic(path, write_text, "x", &err), CH_E_IO);
  ck_assert_ptr_nonnull(strstr(err.msg, "cannot create a temporary file"));

  snprintf(path, sizeof(path), "%s/graph.json", dir);
  unlink(path);
  rmdir(dir);
}
END_TEST

START_TEST(test_output_atomic_readonly_dir) {
  char dir[] = "/tmp/check_graph.XXXXXX";
  char path[256];
  struct ch_err err = {0};
  pid_t pid;
  int status;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/graph.json", dir);
  ck_assert_int_eq(output_write_atomic(path, write_text, "old\n", &err), CH_OK);
  ck_assert_int_eq(chmod(dir, 0555), 0);
  /* root ignores directory permissions: try as an unprivileged user, in a
     child so the test process keeps its identity */
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (!pid) {
    int rc;
    if (geteuid() == 0) {
      struct passwd *pw = getpwnam("nobody");
      if (!pw || setgid(pw->pw_gid) || setuid(pw->pw_uid))
        _exit(3);
    }
    rc = output_write_atomic(path, write_text, "new\n", &err);
    _exit(rc == CH_E_IO && strstr(err.msg, "cannot create a temporary file")
              ? 0
              : 1);
  }
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status));
  ck_assert_int_eq(WEXITSTATUS(status), 0);
  ck_assert_str_eq(slurp(path), "old\n");
  ck_assert_int_eq(strays(dir, "graph.json"), 0);
  chmod(dir, 0755);
  unlink(path);
  rmdir(dir);
}
END_TEST

/* ---- suite
 * ---------------------------------------------------------------------- */

static Suite *graph_suite(void) {
  Suite *s = suite_create("graph");
  TCase *keys = tcase_create("keys");
  TCase *core = tcase_create("core");
  TCase *out = tcase_create("output");

  tcase_add_test(keys, test_key_encoding);
  tcase_add_test(keys, test_utf8_valid);
  tcase_add_test(keys, test_key_roundtrip);
  tcase_add_test(keys, test_key_parse_errors);
  tcase_add_test(keys, test_keys_in_output);
  suite_add_tcase(s, keys);

  tcase_add_test(core, test_malformed_records);
  tcase_add_test(core, test_identity_merge);
  tcase_add_test(core, test_expand_group);
  tcase_add_test(core, test_received_counts_distinct);
  tcase_add_test(core, test_expand_nested_cycle);
  tcase_add_test(core, test_expand_depth_limit);
  tcase_add_test(core, test_expand_coincides_with_direct);
  tcase_add_test(core, test_unknown_entitlement_fails_instance);
  tcase_add_test(core, test_unknown_entitlement_names_the_id_form);
  tcase_add_test(core, test_report_failure_drops_records);
  tcase_add_test(core, test_unknown_principal_dropped);
  suite_add_tcase(s, core);

  tcase_add_test(out, test_profile_canonical);
  tcase_add_test(out, test_profile_canon_fast);
  tcase_add_test(out, test_profile_dictionary);
  tcase_add_test(out, test_jsonl_shape);
  tcase_add_test(out, test_deterministic_output);
  tcase_add_test(out, test_sorted_by_key);
  tcase_add_test(out, test_output_atomic);
  tcase_add_test(out, test_output_atomic_readonly_dir);
  suite_add_tcase(s, out);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(graph_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
