/* SPDX-License-Identifier: MIT */
/* Unit tests for host/config.c and host/cfg_*.c: YAML loading, error locations,
   options,
   ${env:}/${file:} secrets and their redaction. */
#include "autoconfig.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* ---- helpers ------------------------------------------------------------ */

/* Kept well under PATH_MAX so "dir/name" always fits a PATH_MAX buffer. */
static char fixdir[1024]; /* tests/fixtures/config under top_srcdir */
static char tmpdir[1024]; /* per test, removed in teardown */

/* The option table of a made-up plugin, covering every option type. */
static const struct ch_option fake_opts[] = {
    {"url", CH_OPT_URL, CH_OPT_REQUIRED, NULL, "API base URL"},
    {"email", CH_OPT_STRING, CH_OPT_REQUIRED, NULL, "account email"},
    {"api_token", CH_OPT_STRING, CH_OPT_SECRET, NULL, "API token"},
    {"page_size", CH_OPT_INT, 0, "50", "items per page"},
    {"verify", CH_OPT_BOOL, 0, "true", "verify things"},
    {"tags", CH_OPT_LIST, 0, NULL, "labels"},
    {"export", CH_OPT_PATH, 0, "data/export.json", "export file"},
    {"note", CH_OPT_STRING, 0, NULL, "free text"},
    {NULL, 0, 0, NULL, NULL}};

enum {
  O_URL,
  O_EMAIL,
  O_TOKEN,
  O_PAGE_SIZE,
  O_VERIFY,
  O_TAGS,
  O_EXPORT,
  O_NOTE,
  O_COUNT
};

static const char *fixture(const char *name, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s", fixdir, name);
  return buf;
}

/* Write `text` to tmpdir/name (creating one level of subdirectory). */
static const char *write_tmp(const char *name, const char *text, char *buf,
                             size_t size) {
  FILE *f;
  char *slash;

  snprintf(buf, size, "%s/%s", tmpdir, name);
  slash = strrchr(buf, '/');
  if (slash > buf + strlen(tmpdir)) {
    *slash = '\0';
    mkdir(buf, 0700);
    *slash = '/';
  }
  f = fopen(buf, "wb");
  ck_assert_msg(f != NULL, "cannot write %s: %s", buf, strerror(errno));
  fputs(text, f);
  fclose(f);
  return buf;
}

static struct config *load_ok(const char *path) {
  struct config *c = NULL;
  struct ch_err err = {0};
  int rc = config_load(path, &c, &err);
  ck_assert_msg(rc == CH_OK, "config_load(%s) failed: %s", path, err.msg);
  ck_assert_ptr_ne(c, NULL);
  return c;
}

/* The load fails with exactly "PATH:WHERE: " then a message holding `text`. */
static void expect_load_error(const char *path, const char *where,
                              const char *text) {
  struct config *c = NULL;
  struct ch_err err = {0};
  char prefix[PATH_MAX + 64];
  int rc = config_load(path, &c, &err);

  ck_assert_int_eq(rc, CH_E_CONFIG);
  ck_assert_int_eq(err.code, CH_E_CONFIG);
  ck_assert_ptr_eq(c, NULL);
  snprintf(prefix, sizeof(prefix), "%s:%s: ", path, where);
  ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0,
                "expected prefix '%s', got '%s'", prefix, err.msg);
  ck_assert_msg(strstr(err.msg, text) != NULL, "expected '%s' in '%s'", text,
                err.msg);
}

static const struct config_instance *
find_instance(const struct config *c, const char *tenant, const char *name) {
  for (size_t t = 0; t < c->ntenants; t++) {
    if (strcmp(c->tenants[t].name, tenant) != 0)
      continue;
    for (size_t i = 0; i < c->tenants[t].ninstances; i++) {
      if (strcmp(c->tenants[t].instances[i].name, name) == 0)
        return &c->tenants[t].instances[i];
    }
  }
  ck_abort_msg("no instance %s/%s", tenant, name);
  return NULL;
}

static int resolve(const struct config *c, const char *tenant, const char *name,
                   struct config_options *o, struct ch_err *err) {
  return config_resolve_options(c, find_instance(c, tenant, name), fake_opts,
                                "fake", o, err);
}

/* Resolve and expect an error "PATH:WHERE: " + message holding `text`. */
static void expect_option_error(const struct config *c, const char *name,
                                const char *where, const char *text) {
  struct config_options o;
  struct ch_err err = {0};
  char prefix[PATH_MAX + 64];
  int rc = resolve(c, "t", name, &o, &err);

  ck_assert_int_eq(rc, CH_E_CONFIG);
  ck_assert_ptr_eq(o.values, NULL); /* released on failure */
  snprintf(prefix, sizeof(prefix), "%s:%s: ", c->path, where);
  ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0,
                "expected prefix '%s', got '%s'", prefix, err.msg);
  ck_assert_msg(strstr(err.msg, text) != NULL, "expected '%s' in '%s'", text,
                err.msg);
}

static char *slurp(const char *path) {
  static char buf[65536];
  FILE *f = fopen(path, "rb");
  size_t n;

  ck_assert_ptr_ne(f, NULL);
  n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  chmod(path, 0700);
  return remove(path);
}

static void setup(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX",
           base && *base ? base : "/tmp");
  ck_assert_ptr_ne(mkdtemp(tmpdir), NULL);
  log_setup(CH_LOG_INFO, LOG_TEXT, 0);
}

static void teardown(void) {
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  log_cleanup();
}

/* ---- good files --------------------------------------------------------- */

START_TEST(test_full_file) {
  char path[PATH_MAX], want[PATH_MAX + 32], real[PATH_MAX];
  struct config *c = load_ok(fixture("full.yaml", path, sizeof(path)));
  const struct config_instance *ci;

  ck_assert_ptr_ne(realpath(fixdir, real), NULL);
  ck_assert_str_eq(c->path, path);
  ck_assert_str_eq(c->dir, real);
  snprintf(want, sizeof(want), "%s/plugins", real);
  ck_assert_str_eq(c->plugin_dir, want);
  snprintf(want, sizeof(want), "%s/out/graph.json", real);
  ck_assert_str_eq(c->output, want);
  ck_assert_str_eq(c->format, "jsonl");
  ck_assert_int_eq(c->workers, 4);
  ck_assert_int_eq(c->max_pages, 500);
  ck_assert_int_eq(c->http_timeout_ms, 2500);
  ck_assert_int_eq(c->http_connect_timeout_ms, 5000);
  ck_assert_int_eq(c->http_max_attempts, 3);
  ck_assert_int_eq(c->http_max_body_bytes, 8L * 1024 * 1024);

  /* tenants and instances keep the file's order */
  ck_assert_uint_eq(c->ntenants, 2);
  ck_assert_str_eq(c->tenants[0].name, "acme");
  ck_assert_str_eq(c->tenants[1].name, "globex.eu");
  ck_assert_uint_eq(c->tenants[0].ninstances, 2);
  ck_assert_uint_eq(c->tenants[1].ninstances, 1);

  ci = find_instance(c, "acme", "jira");
  ck_assert_str_eq(ci->tenant, "acme");
  ck_assert_str_eq(ci->plugin, "jira_cloud");
  ck_assert_int_eq(ci->enabled, 1);
  ck_assert_int_eq(ci->provisioning, 1);
  ck_assert_ptr_ne(ci->options, NULL);
  ck_assert_str_eq(cfg_get(ci->options, "email")->value, "ops@acme.com");
  /* options stay raw until config_resolve_options */
  ck_assert_str_eq(cfg_get(ci->options, "api_token")->value,
                   "${env:CH_TEST_JIRA_TOKEN}");
  ck_assert_uint_eq(ci->node->line, 15);
  ck_assert_uint_eq(ci->node->col, 7);

  ci = find_instance(c, "acme", "flatfile");
  ck_assert_str_eq(ci->plugin, "flatfile"); /* defaults to the name */
  ck_assert_int_eq(ci->enabled, 0);
  ck_assert_int_eq(ci->provisioning, 0);

  ci = find_instance(c, "globex.eu", "org");
  ck_assert_str_eq(ci->plugin, "atlassian_org");
  ck_assert_int_eq(ci->enabled, 1);      /* "yes" */
  ck_assert_int_eq(ci->provisioning, 0); /* "off" */
  /* a quoted value is not plain: it is never taken for a number */
  ck_assert_int_eq(cfg_get(ci->options, "org_id")->plain, 0);
  ck_assert_int_eq(cfg_get(ci->options, "api_token")->plain, 1);
  config_free(c);
}
END_TEST

START_TEST(test_minimal_defaults) {
  char path[PATH_MAX];
  struct config *c = load_ok(fixture("minimal.yaml", path, sizeof(path)));
  const struct config_instance *ci = find_instance(c, "solo", "flatfile");

  ck_assert_ptr_eq(c->plugin_dir, NULL);
  ck_assert_ptr_eq(c->output, NULL);
  ck_assert_ptr_eq(c->format, NULL);
  ck_assert_int_eq(c->workers, 0);
  ck_assert_int_eq(c->max_pages, 0);
  ck_assert_int_eq(c->http_timeout_ms, 0);
  ck_assert_int_eq(c->http_connect_timeout_ms, 0);
  ck_assert_int_eq(c->http_max_attempts, 0);
  ck_assert_int_eq(c->http_max_body_bytes, 0);
  ck_assert_str_eq(ci->plugin, "flatfile");
  ck_assert_int_eq(ci->enabled, 1);
  ck_assert_int_eq(ci->provisioning, 0);
  ck_assert_ptr_eq(ci->options, NULL);
  config_free(c);
}
END_TEST

/* The snapshot store: beside the config by default, `none` turns it off,
   a relative path follows the config file. */
START_TEST(test_store_keys) {
  char path[PATH_MAX], want[PATH_MAX + 64], real[PATH_MAX];
  struct config *c;

  ck_assert_ptr_ne(realpath(tmpdir, real), NULL);
  c = load_ok(
      write_tmp("s1.yaml", "tenants: {t: {i: }}\n", path, sizeof(path)));
  snprintf(want, sizeof(want), "%s/connhost.db", real);
  ck_assert_str_eq(c->store, want);
  ck_assert_int_eq(c->keep_runs, 30);
  config_free(c);
  c = load_ok(write_tmp("s2.yaml", "store: none\ntenants: {t: {i: }}\n", path,
                        sizeof(path)));
  ck_assert_ptr_eq(c->store, NULL);
  config_free(c);
  c = load_ok(write_tmp("s3.yaml",
                        "store: db/x.db\nkeep_runs: 5\ntenants: {t: {i: }}\n",
                        path, sizeof(path)));
  snprintf(want, sizeof(want), "%s/db/x.db", real);
  ck_assert_str_eq(c->store, want);
  ck_assert_int_eq(c->keep_runs, 5);
  config_free(c);
}
END_TEST

/* `schedule.jitter`: a percentage, or a bare 0 (no jitter, unambiguous);
   any other bare number is refused, since it could mean percent or time. */
START_TEST(test_schedule_jitter) {
  char path[PATH_MAX];
  struct config *c;

  c = load_ok(write_tmp("j1.yaml",
                        "schedule: {interval: 1h, jitter: 0}\n"
                        "tenants: {t: {i: }}\n",
                        path, sizeof(path)));
  ck_assert_int_eq(c->schedule.jitter_pct, 0);
  config_free(c);
  c = load_ok(write_tmp("j2.yaml",
                        "schedule: {jitter: 25%}\n"
                        "tenants:\n  t:\n    i:\n    schedule: {jitter: 0}\n",
                        path, sizeof(path)));
  ck_assert_int_eq(c->schedule.jitter_pct, 25);
  ck_assert_int_eq(c->tenants[0].schedule.jitter_pct, 0);
  config_free(c);
  write_tmp("j3.yaml", "schedule: {jitter: 5}\ntenants: {t: {i: }}\n", path,
            sizeof(path));
  expect_load_error(path, "1:20",
                    "'schedule.jitter' must be a percentage of the interval "
                    "from 0% to 100%, such as 10%");
  write_tmp("j4.yaml", "schedule: {jitter: 0.5}\ntenants: {t: {i: }}\n", path,
            sizeof(path));
  expect_load_error(path, "1:20", "'schedule.jitter' must be a percentage");
}
END_TEST

/* The commented example shipped in conf/ must stay a valid config. */
START_TEST(test_shipped_example_loads) {
  const char *top = getenv("top_srcdir");
  char path[PATH_MAX];
  struct config *c;

  snprintf(path, sizeof(path), "%s/conf/connhost.yaml.example",
           top && *top ? top : ".");
  c = load_ok(path);
  ck_assert_uint_eq(c->ntenants, 2);
  ck_assert_str_eq(find_instance(c, "acme", "org")->plugin, "atlassian_org");
  ck_assert_int_eq(find_instance(c, "globex", "jira")->provisioning, 1);
  ck_assert_str_eq(find_instance(c, "globex", "legacy_hr")->plugin, "flatfile");
  ck_assert_int_eq(find_instance(c, "globex", "legacy_hr")->enabled, 0);
  ck_assert_int_eq(c->isolation, CFG_ISOLATION_UNSET);
  ck_assert_int_eq(find_instance(c, "acme", "jira")->isolation,
                   CFG_ISOLATION_PROCESS);
  ck_assert_int_eq(find_instance(c, "acme", "org")->isolation,
                   CFG_ISOLATION_UNSET);
  config_free(c);
}
END_TEST

/* `isolation`: a host default and a per-instance value, UNSET when not
   written (the command picks its default). */
START_TEST(test_isolation_key) {
  char path[PATH_MAX];
  struct config *c;

  write_tmp("iso.yaml",
            "isolation: process\n"
            "tenants:\n"
            "  t:\n"
            "    a:\n"
            "      isolation: none\n"
            "    b:\n"
            "      isolation: process\n"
            "    c:\n",
            path, sizeof(path));
  c = load_ok(path);
  ck_assert_int_eq(c->isolation, CFG_ISOLATION_PROCESS);
  ck_assert_int_eq(find_instance(c, "t", "a")->isolation, CFG_ISOLATION_NONE);
  ck_assert_int_eq(find_instance(c, "t", "b")->isolation,
                   CFG_ISOLATION_PROCESS);
  ck_assert_int_eq(find_instance(c, "t", "c")->isolation, CFG_ISOLATION_UNSET);
  config_free(c);
}
END_TEST

/* Relative paths follow the config file, not the working directory. */
START_TEST(test_relative_paths) {
  char path[PATH_MAX], want[PATH_MAX + 64], cwd[PATH_MAX], real[PATH_MAX];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};

  write_tmp("etc/connhost.yaml",
            "plugin_dir: ../lib/plugins\n"
            "output: /var/tmp/graph.json\n"
            "tenants:\n"
            "  t:\n"
            "    i:\n"
            "      plugin: fake\n"
            "      options:\n"
            "        url: https://example.test\n"
            "        email: a@example.test\n"
            "        export: ./exports/users.json\n",
            path, sizeof(path));
  ck_assert_ptr_ne(getcwd(cwd, sizeof(cwd)), NULL);
  ck_assert_int_eq(chdir(tmpdir), 0);
  c = load_ok("etc/connhost.yaml"); /* relative to the working directory */
  ck_assert_int_eq(chdir(cwd), 0);

  ck_assert_ptr_ne(realpath(tmpdir, real), NULL);
  snprintf(want, sizeof(want), "%s/etc", real);
  ck_assert_str_eq(c->dir, want);
  snprintf(want, sizeof(want), "%s/etc/../lib/plugins", real);
  ck_assert_str_eq(c->plugin_dir, want);
  ck_assert_str_eq(c->output, "/var/tmp/graph.json");

  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_OK);
  snprintf(want, sizeof(want), "%s/etc/exports/users.json", real);
  ck_assert_str_eq(o.values[O_EXPORT].str, want);
  config_options_release(&o);
  config_free(c);
}
END_TEST

START_TEST(test_options_good) {
  char path[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 32];
  struct config *c = load_ok(fixture("options.yaml", path, sizeof(path)));
  struct config_options o;
  struct ch_err err = {0};

  ck_assert_ptr_ne(realpath(fixdir, real), NULL);
  ck_assert_int_eq(resolve(c, "t", "good", &o, &err), CH_OK);
  ck_assert_uint_eq(o.n, O_COUNT);
  for (size_t i = 0; i < O_COUNT; i++)
    ck_assert_str_eq(o.values[i].name, fake_opts[i].name);
  ck_assert_str_eq(o.values[O_URL].str, "https://example.test/api");
  ck_assert_str_eq(o.values[O_EMAIL].str, "ops@example.test");
  /* quoted digits are still an integer */
  ck_assert_int_eq(o.values[O_PAGE_SIZE].set, 1);
  ck_assert_int_eq(o.values[O_PAGE_SIZE].num, 25);
  ck_assert_int_eq(o.values[O_VERIFY].num, 0);
  ck_assert_str_eq(o.values[O_VERIFY].str, "false");
  /* list items are trimmed, empty ones dropped */
  ck_assert_uint_eq(o.values[O_TAGS].nlist, 2);
  ck_assert_str_eq(o.values[O_TAGS].list[0], "red");
  ck_assert_str_eq(o.values[O_TAGS].list[1], "green");
  ck_assert_ptr_eq(o.values[O_TAGS].list[2], NULL);
  snprintf(want, sizeof(want), "%s/data/in.json", real);
  ck_assert_str_eq(o.values[O_EXPORT].str, want);
  /* no value and no default: not set */
  ck_assert_int_eq(o.values[O_TOKEN].set, 0);
  ck_assert_ptr_eq(o.values[O_TOKEN].str, NULL);
  config_options_release(&o);

  ck_assert_int_eq(resolve(c, "t", "commas", &o, &err), CH_OK);
  ck_assert_str_eq(o.values[O_URL].str, "http://127.0.0.1:8080");
  /* a comma-separated scalar is a list too */
  ck_assert_uint_eq(o.values[O_TAGS].nlist, 3);
  ck_assert_str_eq(o.values[O_TAGS].list[0], "red");
  ck_assert_str_eq(o.values[O_TAGS].list[1], "green");
  ck_assert_str_eq(o.values[O_TAGS].list[2], "blue");
  /* defaults are applied and parsed by type */
  ck_assert_int_eq(o.values[O_PAGE_SIZE].set, 1);
  ck_assert_int_eq(o.values[O_PAGE_SIZE].num, 50);
  ck_assert_int_eq(o.values[O_VERIFY].num, 1);
  snprintf(want, sizeof(want), "%s/data/export.json", real);
  ck_assert_str_eq(o.values[O_EXPORT].str, want);
  /* `note:` with no value counts as not given */
  ck_assert_int_eq(o.values[O_NOTE].set, 0);
  config_options_release(&o);
  config_options_release(&o); /* twice is harmless */
  config_free(c);
}
END_TEST

/* ---- load errors: each with its exact location -------------------------- */

static const struct {
  const char *file, *where, *text;
} fixture_errors[] = {
    {"bad_yaml.yaml", "6:6",
     "invalid YAML: did not find expected key (while parsing a block "
     "mapping)"},
    /* The top-level list outgrew an error message: it is logged on the
       line above in full (test_host.py reads it there). */
    {"unknown_top.yaml", "2:1",
     "unknown key 'wrokers' in the top-level map; did you mean 'workers'? "
     "(expected one of: on the line above)"},
    {"unknown_instance_key.yaml", "5:7",
     "unknown key 'enable' in instance 'acme/jira'; did you mean 'enabled'? "
     "(expected one of: plugin, enabled, provisioning, options, http, "
     "max_shrink, isolation, timeout)"},
    {"wrong_type.yaml", "2:10", "'workers' must be an integer"},
    {"bad_tenant_name.yaml", "4:3", "tenant name 'acme corp' is not valid"},
    {"duplicate_key.yaml", "7:5",
     "duplicate key 'jira' (first defined at line 3)"},
    {"empty.yaml", "1:1", "the config file is empty"},
    {"no_tenants.yaml", "1:1", "missing required key 'tenants'"},
    {"empty_tenant.yaml", "4:3", "tenant 'globex' has no instances"},
    {"alias.yaml", "3:11", "YAML aliases are not supported"},
};

START_TEST(test_fixture_error) {
  char path[PATH_MAX];
  expect_load_error(fixture(fixture_errors[_i].file, path, sizeof(path)),
                    fixture_errors[_i].where, fixture_errors[_i].text);
}
END_TEST

/* Smaller cases, written to a temp file. */
static const struct {
  const char *yaml, *where, *text;
} inline_errors[] = {
    {"workers: 0\ntenants: {t: {i: }}\n", "1:10",
     "'workers' must be between 1 and 256"},
    {"workers: 257\ntenants: {t: {i: }}\n", "1:10",
     "'workers' must be between 1 and 256"},
    {"max_pages: 0\ntenants: {t: {i: }}\n", "1:12",
     "'max_pages' must be between 1 and 1000000000"},
    {"format: xml\ntenants: {t: {i: }}\n", "1:9",
     "'format' must be json or jsonl"},
    {"output: [a, b]\ntenants: {t: {i: }}\n", "1:9",
     "'output' must be a single value, not a list"},
    {"plugin_dir: ''\ntenants: {t: {i: }}\n", "1:13",
     "'plugin_dir' must not be empty"},
    {"keep_runs: 0\ntenants: {t: {i: }}\n", "1:12",
     "'keep_runs' must be between 1 and 100000"},
    {"store: ''\ntenants: {t: {i: }}\n", "1:8", "'store' must not be empty"},
    {"http:\n  max_attempts: 21\ntenants: {t: {i: }}\n", "2:17",
     "'http.max_attempts' must be between 1 and 20"},
    {"http:\n  timeout_seconds: -1\ntenants: {t: {i: }}\n", "2:20",
     "'http.timeout_seconds' must be a number of seconds"},
    {"http:\n  timeout_seconds: 0\ntenants: {t: {i: }}\n", "2:20",
     "'http.timeout_seconds' must be a number of seconds"},
    {"http:\n  max_body_mb: 1.5\ntenants: {t: {i: }}\n", "2:16",
     "'http.max_body_mb' must be an integer"},
    {"http:\n  retries: 2\ntenants: {t: {i: }}\n", "2:3",
     "unknown key 'retries' in 'http' (expected one of: timeout_seconds, "
     "connect_timeout_seconds, max_attempts, max_body_mb)"},
    {"http: 5\ntenants: {t: {i: }}\n", "1:7", "'http' must be a map"},
    {"isolation: fork\ntenants: {t: {i: }}\n", "1:12",
     "'isolation' must be none or process, not 'fork'"},
    {"tenants:\n  t:\n    i:\n      isolation: [process]\n", "4:18",
     "'isolation' must be a single value, not a list"},
    {"tenants:\n", "1:9", "'tenants' is empty: add at least one tenant"},
    {"tenants: [a, b]\n", "1:10", "'tenants' must be a map of tenant names"},
    {"tenants:\n  t: [a]\n", "2:6", "tenant 't' must be a map of instance"},
    {"tenants:\n  t:\n    'my jira':\n      plugin: jira_cloud\n", "3:5",
     "instance name 'my jira' in tenant 't' is not valid"},
    {"tenants:\n  t:\n    Jira-EU:\n      enabled: true\n", "3:5",
     "instance 't/Jira-EU': 'Jira-EU' is not a plugin name ([a-z0-9_]+); "
     "add 'plugin:'"},
    {"tenants:\n  t:\n    j:\n      plugin: Jira\n", "4:15",
     "instance 't/j': plugin name must match [a-z0-9_]+"},
    /* the loader's rule, checked where the name is written */
    {"tenants:\n  t:\n    j:\n      plugin: "
     "a2345678901234567890123456789012345678901234567890123456789012345\n",
     "4:15", "plugin name must match [a-z0-9_]+ (at most 64 bytes)"},
    {"tenants:\n  t:\n    j:\n      enabled: maybe\n", "4:16",
     "'enabled' must be true or false"},
    {"tenants:\n  t:\n    j:\n      provisioning: 1\n", "4:21",
     "'provisioning' must be true or false"},
    {"tenants:\n  t:\n    j:\n      options: [a]\n", "4:16",
     "instance 't/j': 'options' must be a map, not a list"},
    {"tenants:\n  t:\n    j: 5\n", "3:8", "instance 't/j' must be a map"},
    {"- a\n- b\n", "1:1", "the config must be a map of keys, not a list"},
    {"tenants:\n  t:\n    j:\n---\ntenants:\n", "5:1",
     "a second YAML document ('---') is not supported"},
    {"tenants:\n  t:\n    j:\n      plugin: \"jira\n", "5:1",
     "invalid YAML: found unexpected end of stream (while scanning a "
     "quoted scalar)"},
    {"tenants:\n  t:\n    j:\n      plugin: \xff\xfe\n", "4:15",
     "invalid YAML: invalid leading UTF-8 octet"},
    {"tenants:\n  t:\n    j:\n      plugin: \"a\\0b\"\n", "4:15",
     "text contains a NUL character"},
    {"tenants:\n  t:\n    j:\n  ? [a]\n  : x\n", "4:5",
     "a map key must be text, not a list"},
    {"workers: ${env:CH_TEST_NO_SUCH_VAR}\ntenants: {t: {i: }}\n", "1:10",
     "key 'workers': environment variable 'CH_TEST_NO_SUCH_VAR' is not set"},
    {"max_shrink: 101%\ntenants: {t: {i: }}\n", "1:13",
     "'max_shrink' must be a share from 0% to 100%"},
    {"tenants:\n  t:\n    j:\n      max_shrink: lots\n", "4:19",
     "'max_shrink' must be a share from 0% to 100%"},
    {"allow_insecure_plugin_dir: yes please\ntenants: {t: {i: }}\n", "1:28",
     "'allow_insecure_plugin_dir' must be true or false"},
    {"tenants:\n  t:\n    j:\n      options: {a: [[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]\n",
     "4:83", "flow nesting ('[' and '{') is deeper than 64 levels"},
};

START_TEST(test_inline_error) {
  char path[PATH_MAX];
  write_tmp("c.yaml", inline_errors[_i].yaml, path, sizeof(path));
  expect_load_error(path, inline_errors[_i].where, inline_errors[_i].text);
}
END_TEST

/* Item 9 of issue 10: deep flow nesting is refused before libyaml scans
   it (libyaml took 48 s on 200 KB of '['); quoted and commented brackets
   do not count. */
START_TEST(test_flow_nesting_prescan) {
  static char deep[200 * 1024 + 16];
  char path[PATH_MAX], text[512];
  struct timespec t0, t1;
  struct config *c;

  memcpy(deep, "tenants: ", 9);
  memset(deep + 9, '[', 200 * 1024);
  write_tmp("deep.yaml", deep, path, sizeof(path));
  clock_gettime(CLOCK_MONOTONIC, &t0);
  expect_load_error(path, "1:74", "deeper than 64 levels");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);

  snprintf(
      text, sizeof(text),
      "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[\n"
      "tenants:\n  t:\n    j:\n      options: {a: \"[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"\", b: '[[[[''"
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['}"
      "\n      max_shrink: 80%%\n");
  c = load_ok(write_tmp("ok.yaml", text, path, sizeof(path)));
  ck_assert_int_eq(c->tenants[0].instances[0].max_shrink, 80);
  ck_assert_int_eq(c->max_shrink, -1);
  ck_assert_int_eq(c->allow_insecure_plugin_dir, 0);
  config_free(c);
}
END_TEST

START_TEST(test_missing_file) {
  char path[PATH_MAX];
  struct config *c = NULL;
  struct ch_err err = {0};

  snprintf(path, sizeof(path), "%s/nope.yaml", tmpdir);
  ck_assert_int_eq(config_load(path, &c, &err), CH_E_CONFIG);
  ck_assert_ptr_eq(c, NULL);
  ck_assert_msg(strstr(err.msg, path) == err.msg, "%s", err.msg);
  ck_assert_ptr_ne(strstr(err.msg, strerror(ENOENT)), NULL);
}
END_TEST

/* ---- option errors ------------------------------------------------------ */

START_TEST(test_option_errors) {
  char path[PATH_MAX];
  struct config *c = load_ok(fixture("options.yaml", path, sizeof(path)));

  expect_option_error(c, "unknown_opt", "25:9",
                      "instance 't/unknown_opt': unknown option 'colour' for "
                      "plugin 'fake' (known options: url, email, api_token, "
                      "page_size, verify, tags, export, note)");
  expect_option_error(c, "bad_int", "31:20",
                      "option 'page_size' must be an integer");
  expect_option_error(c, "bad_bool", "37:17",
                      "option 'verify' must be true or false");
  expect_option_error(c, "bad_url", "41:14",
                      "option 'url' must be an http:// or https:// URL");
  /* a missing option points at the instance */
  expect_option_error(c, "missing_req", "44:7",
                      "instance 't/missing_req': missing required option "
                      "'email' for plugin 'fake'");
  expect_option_error(c, "list_of_maps", "53:13",
                      "option 'tags' must be a list of single values, not of "
                      "a map");
  config_free(c);
}
END_TEST

static const struct {
  const char *value, *text;
} url_cases[] = {
    {"example.test", "must be an http:// or https:// URL"},
    {"https://", "must be an http:// or https:// URL"},
    {"https:///path", "must be an http:// or https:// URL"},
    {"'https://exa mple.test'", "must be an http:// or https:// URL"},
    {"[https://a.test]", "option 'url' must be an http:// or https:// URL, "
                         "not a list"},
    {"{a: b}", "option 'url' must be an http:// or https:// URL, not a map"},
};

START_TEST(test_bad_url_values) {
  char path[PATH_MAX], yaml[512];
  struct config *c;

  snprintf(yaml, sizeof(yaml),
           "tenants:\n  t:\n    i:\n      plugin: fake\n      options:\n"
           "        email: a@example.test\n        url: %s\n",
           url_cases[_i].value);
  c = load_ok(write_tmp("u.yaml", yaml, path, sizeof(path)));
  expect_option_error(c, "i", "7:14", url_cases[_i].text);
  config_free(c);
}
END_TEST

/* A plugin bug (a default that does not parse) is named as such. */
START_TEST(test_bad_default) {
  static const struct ch_option table[] = {
      {"limit", CH_OPT_INT, 0, "lots", NULL}, {NULL, 0, 0, NULL, NULL}};
  char path[PATH_MAX];
  struct config *c = load_ok(fixture("minimal.yaml", path, sizeof(path)));
  struct config_options o;
  struct ch_err err = {0};

  ck_assert_int_eq(config_resolve_options(c, &c->tenants[0].instances[0], table,
                                          "flatfile", &o, &err),
                   CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(err.msg, "plugin 'flatfile' declares an invalid "
                                   "default for option 'limit'"),
                   NULL);
  config_free(c);
}
END_TEST

/* A plugin without options rejects any option. */
START_TEST(test_no_option_table) {
  static const struct ch_option table[] = {{NULL, 0, 0, NULL, NULL}};
  char path[PATH_MAX];
  struct config *c = load_ok(fixture("options.yaml", path, sizeof(path)));
  struct config_options o;
  struct ch_err err = {0};

  ck_assert_int_eq(config_resolve_options(c, find_instance(c, "t", "good"),
                                          table, "bare", &o, &err),
                   CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(err.msg, "unknown option 'url' for plugin 'bare' "
                                   "(known options: none)"),
                   NULL);
  /* and an instance without options is fine */
  config_free(c);
  c = load_ok(fixture("minimal.yaml", path, sizeof(path)));
  ck_assert_int_eq(config_resolve_options(c, &c->tenants[0].instances[0], table,
                                          "bare", &o, &err),
                   CH_OK);
  ck_assert_uint_eq(o.n, 0);
  config_options_release(&o);
  config_free(c);
}
END_TEST

/* ---- ${env:} and ${file:} ----------------------------------------------- */

#define ENV_SECRET "env-s3cret-token-4f1c"
#define FILE_SECRET "file-s3cret-key-9a7e"
#define INLINE_SECRET "inline-s3cret-value-77b2"

static struct config *instance_config(const char *options, char *path,
                                      size_t size) {
  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           "tenants:\n"
           "  t:\n"
           "    i:\n"
           "      plugin: fake\n"
           "      options:\n"
           "        url: https://example.test\n"
           "        email: a@example.test\n"
           "%s",
           options);
  return load_ok(write_tmp("i.yaml", yaml, path, size));
}

START_TEST(test_env_secret) {
  char path[PATH_MAX], out[256];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};

  setenv("CH_TEST_TOKEN", ENV_SECRET, 1);
  setenv("CH_TEST_HOST", "h.example.test", 1);
  c = instance_config("        api_token: ${env:CH_TEST_TOKEN}\n"
                      "        note: \"a ${env:CH_TEST_HOST} b $${x} "
                      "${env:CH_TEST_HOST}$$ c $\"\n",
                      path, sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_OK);
  ck_assert_str_eq(o.values[O_TOKEN].str, ENV_SECRET);
  /* several references in text; "$${" is a literal "${" */
  ck_assert_str_eq(o.values[O_NOTE].str,
                   "a h.example.test b ${x} h.example.test$$ c $");
  /* both came from ${env:}: registered as secrets */
  log_redact("token=" ENV_SECRET ";", out, sizeof(out));
  ck_assert_str_eq(out, "token=***;");
  log_redact("a h.example.test b ${x} h.example.test$$ c $", out, sizeof(out));
  ck_assert_str_eq(out, "***");
  config_options_release(&o);
  config_free(c);
}
END_TEST

/* Host-level keys take references too (and are not treated as secrets). */
START_TEST(test_env_host_keys_ok) {
  char path[PATH_MAX], want[PATH_MAX + 32], real[PATH_MAX];
  struct config *c;

  setenv("CH_TEST_WORKERS", "7", 1);
  setenv("CH_TEST_OUT", "graphs", 1);
  c = load_ok(write_tmp("h.yaml",
                        "workers: ${env:CH_TEST_WORKERS}\n"
                        "output: ${env:CH_TEST_OUT}/g.json\n"
                        "tenants: {t: {i: }}\n",
                        path, sizeof(path)));
  ck_assert_int_eq(c->workers, 7);
  ck_assert_ptr_ne(realpath(tmpdir, real), NULL);
  snprintf(want, sizeof(want), "%s/graphs/g.json", real);
  ck_assert_str_eq(c->output, want);
  config_free(c);
}
END_TEST

/* The host's keys go through the option engine that plugins' options
   use: the same null-means-unset rule, did-you-mean in every block, and
   ranges that say the value they refuse. */
START_TEST(test_host_keys_by_the_engine) {
  static const struct {
    const char *yaml, *where, *text;
  } bad[] = {
      {"workers: 0\ntenants: {t: {i: }}\n", "1:10",
       "key 'workers' must be between 1 and 256, not 0"},
      {"http:\n  max_atempts: 3\ntenants: {t: {i: }}\n", "2:3",
       "unknown key 'max_atempts' in 'http'; did you mean 'max_attempts'?"},
      {"http:\n  timeout_seconds: 90000\ntenants: {t: {i: }}\n", "2:20",
       "key 'http.timeout_seconds' must be a number of seconds between 0.001 "
       "and 86400, not 90000"},
      {"serve: {shutdown_grase: 1m}\ntenants: {t: {i: }}\n", "1:9",
       "did you mean 'shutdown_grace'?"},
  };
  char path[PATH_MAX];
  struct config *c;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_tmp("k.yaml", bad[i].yaml, path, sizeof(path));
    expect_load_error(path, bad[i].where, bad[i].text);
  }
  c = load_ok(write_tmp("k.yaml",
                        "workers:\nmax_pages: ~\nhttp:\n  max_attempts:\n"
                        "  timeout_seconds: 2.5\ntenants: {t: {i: }}\n",
                        path, sizeof(path)));
  ck_assert_int_eq(c->workers, 0);
  ck_assert_int_eq(c->max_pages, 0);
  ck_assert_int_eq(c->http_max_attempts, 0);
  ck_assert_int_eq(c->http_timeout_ms, 2500);
  config_free(c);
}
END_TEST

START_TEST(test_file_secret) {
  char path[PATH_MAX], out[256];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};

  /* one trailing CRLF is stripped; relative to the config's folder */
  write_tmp("secrets/key", FILE_SECRET "\r\n", path, sizeof(path));
  write_tmp("secrets/multi", "two\nlines\n\n", path, sizeof(path));
  c = instance_config("        api_token: ${file:secrets/key}\n"
                      "        note: ${file:./secrets/multi}\n",
                      path, sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_OK);
  ck_assert_str_eq(o.values[O_TOKEN].str, FILE_SECRET);
  ck_assert_str_eq(o.values[O_NOTE].str, "two\nlines\n"); /* only one */
  log_redact("Authorization: " FILE_SECRET, out, sizeof(out));
  ck_assert_str_eq(out, "Authorization: ***");
  config_options_release(&o);
  config_free(c);
}
END_TEST

START_TEST(test_env_missing) {
  char path[PATH_MAX], want[PATH_MAX + 128];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};

  unsetenv("CH_TEST_UNSET_VAR");
  c = instance_config("        api_token: ${env:CH_TEST_UNSET_VAR}\n", path,
                      sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  snprintf(want, sizeof(want),
           "%s:8:20: option 'api_token': environment variable "
           "'CH_TEST_UNSET_VAR' is not set",
           path);
  ck_assert_str_eq(err.msg, want);
  config_free(c);
}
END_TEST

/* An unreadable ${file:} names the key, the path and the reason, and never
   shows what is in the file. */
START_TEST(test_file_unreadable) {
  char path[PATH_MAX], dir[PATH_MAX], secret[PATH_MAX];
  char want[2 * PATH_MAX + 128];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};

  c = instance_config("        api_token: ${file:missing/key}\n", path,
                      sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  ck_assert_ptr_ne(realpath(tmpdir, dir), NULL);
  snprintf(want, sizeof(want),
           "%s:8:20: option 'api_token': cannot read file "
           "'%s/missing/key': %s",
           path, dir, strerror(ENOENT));
  ck_assert_str_eq(err.msg, want);
  config_free(c);

  /* a directory */
  c = instance_config("        api_token: ${file:.}\n", path, sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(err.msg, strerror(EISDIR)), NULL);
  config_free(c);

  /* a NUL byte in the file */
  {
    FILE *f;
    snprintf(secret, sizeof(secret), "%s/nul", tmpdir);
    f = fopen(secret, "wb");
    ck_assert_ptr_ne(f, NULL);
    fwrite(FILE_SECRET "\0x", 1, sizeof(FILE_SECRET) + 1, f);
    fclose(f);
  }
  c = instance_config("        api_token: ${file:nul}\n", path, sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(err.msg, "option 'api_token': file '"), NULL);
  ck_assert_ptr_ne(strstr(err.msg, "contains a NUL byte"), NULL);
  ck_assert_ptr_eq(strstr(err.msg, FILE_SECRET), NULL);
  config_free(c);

  /* no permission (root reads everything, so only as a normal user) */
  if (geteuid() != 0) {
    write_tmp("locked", FILE_SECRET, secret, sizeof(secret));
    chmod(secret, 0);
    c = instance_config("        api_token: ${file:locked}\n", path,
                        sizeof(path));
    ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
    ck_assert_ptr_ne(strstr(err.msg, strerror(EACCES)), NULL);
    ck_assert_ptr_ne(strstr(err.msg, "option 'api_token'"), NULL);
    ck_assert_ptr_eq(strstr(err.msg, FILE_SECRET), NULL);
    config_free(c);
  }
}
END_TEST

START_TEST(test_reference_syntax_errors) {
  static const struct {
    const char *value, *text;
  } cases[] = {
      {"${vault:kv/x}", "option 'note': unknown reference '${vault:...}'"},
      {"abc ${env:X", "option 'note': '${' without a closing '}'"},
      {"${}", "option 'note': malformed '${...}' reference"},
      {"${env:}", "option 'note': '${env:}' is not a valid environment"},
      {"${env:1X}", "'${env:1X}' is not a valid environment variable name"},
      {"${file:}", "option 'note': '${file:}' needs a path"},
  };
  char path[PATH_MAX], opts[256];

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct config *c;
    snprintf(opts, sizeof(opts), "        note: '%s'\n", cases[i].value);
    c = instance_config(opts, path, sizeof(path));
    expect_option_error(c, "i", "8:15", cases[i].text);
    config_free(c);
  }
}
END_TEST

/* ---- secrets never leak ----------------------------------------------- */

/* Run `fn` with stderr going to a file; return what was written. */
static char *capture_stderr(void (*fn)(void *), void *arg) {
  char file[PATH_MAX];
  int fd, saved;

  snprintf(file, sizeof(file), "%s/stderr.txt", tmpdir);
  fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  saved = dup(STDERR_FILENO);
  ck_assert_int_ge(saved, 0);
  dup2(fd, STDERR_FILENO);
  close(fd);
  fn(arg);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  return slurp(file);
}

struct resolve_run {
  struct config *c;
  struct config_options o;
  struct ch_err err;
  int rc;
};

static void run_resolve(void *arg) {
  struct resolve_run *r = arg;
  r->rc = resolve(r->c, "t", "i", &r->o, &r->err);
  /* even a careless log line with the value comes out redacted */
  log_warn("token in use: %s", r->rc == CH_OK ? r->o.values[O_TOKEN].str : "");
}

START_TEST(test_secret_not_in_errors) {
  char path[PATH_MAX];
  struct config *c;
  struct config_options o;
  struct ch_err err = {0};
  struct resolve_run r = {0};
  const char *logged;

  setenv("CH_TEST_TOKEN", ENV_SECRET, 1);

  /* an expanded value that fails its type check is not echoed */
  c = instance_config("        page_size: ${env:CH_TEST_TOKEN}\n", path,
                      sizeof(path));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(err.msg, "option 'page_size' must be"), NULL);
  ck_assert_ptr_eq(strstr(err.msg, ENV_SECRET), NULL);
  config_free(c);

  c = load_ok(write_tmp("u.yaml",
                        "tenants:\n  t:\n    i:\n      plugin: fake\n"
                        "      options:\n        email: a@b.test\n"
                        "        url: ${env:CH_TEST_TOKEN}\n",
                        path, sizeof(path)));
  ck_assert_int_eq(resolve(c, "t", "i", &o, &err), CH_E_CONFIG);
  ck_assert_ptr_eq(strstr(err.msg, ENV_SECRET), NULL);
  config_free(c);

  /* host-level keys too */
  write_tmp("w.yaml", "workers: ${env:CH_TEST_TOKEN}\ntenants: {t: {i: }}\n",
            path, sizeof(path));
  expect_load_error(path, "1:10", "'workers' must be an integer");
  {
    struct config *none = NULL;
    ck_assert_int_eq(config_load(path, &none, &err), CH_E_CONFIG);
    ck_assert_ptr_eq(strstr(err.msg, ENV_SECRET), NULL);
  }

  /* an inline secret next to a broken option stays out of the message
     (and out of the warning logged about it) */
  r.c = instance_config("        api_token: " INLINE_SECRET "\n"
                        "        verify: " INLINE_SECRET "\n",
                        path, sizeof(path));
  logged = capture_stderr(run_resolve, &r);
  ck_assert_int_eq(r.rc, CH_E_CONFIG);
  ck_assert_ptr_ne(strstr(r.err.msg, "option 'verify' must be true or false"),
                   NULL);
  ck_assert_ptr_eq(strstr(r.err.msg, INLINE_SECRET), NULL);
  ck_assert_ptr_ne(strstr(logged, "secret written inline"), NULL);
  ck_assert_ptr_eq(strstr(logged, INLINE_SECRET), NULL);
  config_free(r.c);
}
END_TEST

START_TEST(test_inline_secret_warning) {
  char path[PATH_MAX], out[256];
  struct resolve_run r = {0};
  const char *logged;

  r.c = instance_config("        api_token: " INLINE_SECRET "\n", path,
                        sizeof(path));
  logged = capture_stderr(run_resolve, &r);
  ck_assert_int_eq(r.rc, CH_OK);
  ck_assert_str_eq(r.o.values[O_TOKEN].str, INLINE_SECRET);
  ck_assert_msg(strstr(logged, "[fake:t/i]") != NULL, "log: %s", logged);
  ck_assert_msg(strstr(logged, ":8:20: option 'api_token' is a secret "
                               "written inline") != NULL,
                "log: %s", logged);
  ck_assert_msg(strstr(logged, "${env:NAME} or ${file:PATH}") != NULL,
                "log: %s", logged);
  ck_assert_msg(strstr(logged, "token in use: ***") != NULL, "log: %s", logged);
  ck_assert_msg(strstr(logged, INLINE_SECRET) == NULL, "leaked: %s", logged);
  log_redact("x" INLINE_SECRET "x", out, sizeof(out));
  ck_assert_str_eq(out, "x***x");
  config_options_release(&r.o);
  config_free(r.c);
}
END_TEST

/* A secret from ${env:} does not trigger the warning but is redacted. */
/* The redaction's matcher: the longest of secrets sharing a start wins,
   one sharing only its first byte is left alone, a text that ends inside
   a secret is not redacted (nor read past its end), and the secrets'
   table is empty again after log_cleanup. */
START_TEST(test_redact_matcher) {
  char out[256];

  log_add_secret("tok-short");
  log_add_secret("tok-short-and-longer");
  log_add_secret("tail-secret-value");
  log_redact("a tok-short-and-longer b tok-short c tok-sh", out, sizeof(out));
  ck_assert_str_eq(out, "a *** b *** c tok-sh");
  log_redact("toktok-short tail-secret-valu", out, sizeof(out));
  ck_assert_str_eq(out, "tok*** tail-secret-valu");
  log_redact("tail-secret-value", out, sizeof(out));
  ck_assert_str_eq(out, "***");
  /* cut to the buffer, never past it */
  log_redact("0123456789", out, 5);
  ck_assert_str_eq(out, "0123");
  log_cleanup();
  log_redact("tok-short tail-secret-value", out, sizeof(out));
  ck_assert_str_eq(out, "tok-short tail-secret-value");
}
END_TEST

START_TEST(test_env_secret_not_logged) {
  char path[PATH_MAX];
  struct resolve_run r = {0};
  const char *logged;

  setenv("CH_TEST_TOKEN", ENV_SECRET, 1);
  r.c = instance_config("        api_token: ${env:CH_TEST_TOKEN}\n", path,
                        sizeof(path));
  logged = capture_stderr(run_resolve, &r);
  ck_assert_int_eq(r.rc, CH_OK);
  ck_assert_msg(strstr(logged, "written inline") == NULL, "log: %s", logged);
  ck_assert_msg(strstr(logged, "token in use: ***") != NULL, "log: %s", logged);
  ck_assert_msg(strstr(logged, ENV_SECRET) == NULL, "leaked: %s", logged);
  config_options_release(&r.o);
  config_free(r.c);
}
END_TEST

/* ---- config_expand and config_path directly ----------------------------- */

START_TEST(test_expand_and_path) {
  char path[PATH_MAX], want[PATH_MAX + 32], real[PATH_MAX];
  struct config *c = load_ok(fixture("minimal.yaml", path, sizeof(path)));
  struct cfg_node n = {0};
  struct ch_err err = {0};
  char *s;
  int secret = -1;

  n.kind = CFG_SCALAR;
  n.file = "x.yaml";
  n.line = 3;
  n.col = 4;
  n.value = "no references, $5 and $$";
  s = config_expand(c, &n, "key 'k'", &secret, &err);
  ck_assert_str_eq(s, "no references, $5 and $$");
  ck_assert_int_eq(secret, 0);
  free(s);

  setenv("CH_TEST_A", "AA", 1);
  n.value = "${env:CH_TEST_A}";
  s = config_expand(c, &n, "key 'k'", &secret, &err);
  ck_assert_str_eq(s, "AA");
  ck_assert_int_eq(secret, 1);
  free(s);

  n.value = "${env:CH_TEST_NOT_SET_EITHER}";
  ck_assert_ptr_eq(config_expand(c, &n, "key 'k'", &secret, &err), NULL);
  ck_assert_str_eq(err.msg, "x.yaml:3:4: key 'k': environment variable "
                            "'CH_TEST_NOT_SET_EITHER' is not set");

  ck_assert_ptr_ne(realpath(fixdir, real), NULL);
  s = config_path(c, "/abs/x");
  ck_assert_str_eq(s, "/abs/x");
  free(s);
  s = config_path(c, "./a/b");
  snprintf(want, sizeof(want), "%s/a/b", real);
  ck_assert_str_eq(s, want);
  free(s);
  s = config_path(c, ".");
  ck_assert_str_eq(s, real);
  free(s);
  config_free(c);
  config_free(NULL); /* destroy functions accept NULL */
  config_options_release(NULL);
}
END_TEST

/* ---- the suite ---------------------------------------------------------- */

static Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *tc;

  tc = tcase_create("good");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_full_file);
  tcase_add_test(tc, test_minimal_defaults);
  tcase_add_test(tc, test_shipped_example_loads);
  tcase_add_test(tc, test_isolation_key);
  tcase_add_test(tc, test_store_keys);
  tcase_add_test(tc, test_schedule_jitter);
  tcase_add_test(tc, test_relative_paths);
  tcase_add_test(tc, test_options_good);
  tcase_add_test(tc, test_expand_and_path);
  suite_add_tcase(s, tc);

  tc = tcase_create("errors");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, test_fixture_error, 0,
                      sizeof(fixture_errors) / sizeof(fixture_errors[0]));
  tcase_add_test(tc, test_host_keys_by_the_engine);
  tcase_add_loop_test(tc, test_inline_error, 0,
                      sizeof(inline_errors) / sizeof(inline_errors[0]));
  tcase_add_test(tc, test_missing_file);
  tcase_add_test(tc, test_flow_nesting_prescan);
  tcase_add_test(tc, test_option_errors);
  tcase_add_loop_test(tc, test_bad_url_values, 0,
                      sizeof(url_cases) / sizeof(url_cases[0]));
  tcase_add_test(tc, test_bad_default);
  tcase_add_test(tc, test_no_option_table);
  suite_add_tcase(s, tc);

  tc = tcase_create("secrets");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_env_secret);
  tcase_add_test(tc, test_env_host_keys_ok);
  tcase_add_test(tc, test_file_secret);
  tcase_add_test(tc, test_env_missing);
  tcase_add_test(tc, test_file_unreadable);
  tcase_add_test(tc, test_reference_syntax_errors);
  tcase_add_test(tc, test_secret_not_in_errors);
  tcase_add_test(tc, test_inline_secret_warning);
  tcase_add_test(tc, test_env_secret_not_logged);
  tcase_add_test(tc, test_redact_matcher);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *top = getenv("top_srcdir");
  SRunner *sr;
  int failed;

  snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/config",
           top && *top ? top : ".");
  sr = srunner_create(config_suite());
  srunner_run_all(sr, CK_ENV);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
