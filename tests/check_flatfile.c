/* SPDX-License-Identifier: MIT */
/* Unit tests for the flatfile plugin: the built .so, driven by a fake host. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <connhost/plugin.h>

/* ---- the plugin under test ---------------------------------------------- */

static void *so;
static const struct ch_plugin *pl;
static char tmpdir[512];

/* The .so the build just made (PAM's tst-dlopen idea): $CONNHOST_PLUGINS,
   else plugins/.libs under $top_builddir or the current directory. */
static void load_plugin(void) {
  const char *dir = getenv("CONNHOST_PLUGINS");
  const char *top = getenv("top_builddir");
  char path[1024];
  ch_plugin_entry_fn entry;

  if (dir && *dir)
    snprintf(path, sizeof(path), "%s/flatfile.so", dir);
  else
    snprintf(path, sizeof(path), "%s/plugins/.libs/flatfile.so",
             top && *top ? top : ".");
  so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(so != NULL, "dlopen %s: %s", path, dlerror());
  *(void **)&entry = dlsym(so, CH_PLUGIN_SYMBOL);
  ck_assert_msg(entry != NULL, "no %s in %s", CH_PLUGIN_SYMBOL, path);
  pl = entry(CH_PLUGIN_ABI);
  ck_assert_ptr_nonnull(pl);
}

static const char *fixture(void) {
  static char path[1024];
  const char *top = getenv("top_srcdir");

  snprintf(path, sizeof(path), "%s/tests/fixtures/flatfile/legacy-hr.json",
           top && *top ? top : ".");
  return path;
}

/* ---- a fake host: logs are captured, nothing else is needed ------------- */

static char logbuf[8192];
static size_t loglen;
static pthread_mutex_t loglock = PTHREAD_MUTEX_INITIALIZER;
static char hc_token; /* the opaque struct ch_hctx * we hand out */

static void fh_vlog(struct ch_hctx *hc, enum ch_log_level level,
                    const char *fmt, va_list ap) {
  int n;

  ck_assert_ptr_eq(hc, (struct ch_hctx *)&hc_token);
  pthread_mutex_lock(&loglock);
  if (loglen < sizeof(logbuf) - 1) {
    n = snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%d: ", level);
    loglen += n > 0 ? (size_t)n : 0;
  }
  if (loglen < sizeof(logbuf) - 1) {
    n = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
    loglen += n > 0 ? (size_t)n : 0;
  }
  if (loglen < sizeof(logbuf) - 1)
    logbuf[loglen++] = '\n';
  if (loglen >= sizeof(logbuf))
    loglen = sizeof(logbuf) - 1;
  logbuf[loglen] = '\0';
  pthread_mutex_unlock(&loglock);
}

static void fh_log(struct ch_hctx *hc, enum ch_log_level level, const char *fmt,
                   ...) CH_PRINTF(3, 4);
static void fh_log(struct ch_hctx *hc, enum ch_log_level level, const char *fmt,
                   ...) {
  va_list ap;
  va_start(ap, fmt);
  fh_vlog(hc, level, fmt, ap);
  va_end(ap);
}

static int64_t fh_now_ms(void) { return 1700000000000LL; }
static int fh_stopping(struct ch_hctx *hc) { return 0; }
static int fh_dry_run(struct ch_hctx *hc) { return 0; }

/* HTTP and encoding stay NULL: flatfile must never need them. */
static const struct ch_host fake_host = {
    .abi = CH_PLUGIN_ABI,
    .size = sizeof(struct ch_host),
    .log = fh_log,
    .vlog = fh_vlog,
    .now_ms = fh_now_ms,
    .stopping = fh_stopping,
    .dry_run = fh_dry_run,
};

/* ---- a collecting sink -------------------------------------------------- */

/* Each record becomes one line of text, so runs compare with strcmp. */
struct col {
  struct ch_sink sink; /* first: the callbacks cast back */
  char **items;
  size_t n, cap;
  char *next;      /* the token of the last call, or NULL */
  int next_calls;  /* next_page calls in the last call */
  long stop_after; /* stop (return 1) at this item; -1 never */
};

static void col_add(struct col *c, char *line) {
  ck_assert_ptr_nonnull(line);
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->items = realloc(c->items, c->cap * sizeof(*c->items));
    ck_assert_ptr_nonnull(c->items);
  }
  c->items[c->n++] = line;
}

/* Append "sep s0 sep s1..." of a NULL-terminated list. */
static void cat_list(char *buf, size_t sz, const char *const *l) {
  for (size_t i = 0; l && l[i]; i++) {
    strncat(buf, ",", sz - strlen(buf) - 1);
    strncat(buf, l[i], sz - strlen(buf) - 1);
  }
}

static int col_resource(struct ch_sink *s, const struct ch_resource *r) {
  struct col *c = (struct col *)s;
  char buf[2048];

  snprintf(buf, sizeof(buf), "%s|%s|%s|%d|%d|%s|%s|%s|", r->type,
           r->id ? r->id : "(null)", r->display_name ? r->display_name : "",
           (int)r->status, (int)r->account_type,
           r->profile_json ? r->profile_json : "",
           r->parent_type ? r->parent_type : "",
           r->parent_id ? r->parent_id : "");
  cat_list(buf, sizeof(buf), r->emails);
  strncat(buf, "|", sizeof(buf) - strlen(buf) - 1);
  cat_list(buf, sizeof(buf), r->match_keys);
  col_add(c, strdup(buf));
  return c->stop_after >= 0 && (long)c->n > c->stop_after;
}

static int col_grant(struct ch_sink *s, const struct ch_grant *g) {
  struct col *c = (struct col *)s;
  char buf[1024];

  snprintf(buf, sizeof(buf), "%s/%s#%s<-%s/%s|%u|%s", g->resource.type,
           g->resource.id, g->slug, g->principal.type, g->principal.id,
           g->flags, g->expand_slug ? g->expand_slug : "");
  col_add(c, strdup(buf));
  return c->stop_after >= 0 && (long)c->n > c->stop_after;
}

static int col_next(struct ch_sink *s, const char *token) {
  struct col *c = (struct col *)s;

  free(c->next);
  c->next = token && *token ? strdup(token) : NULL;
  c->next_calls++;
  return 0;
}

static void col_init(struct col *c) {
  memset(c, 0, sizeof(*c));
  c->sink.resource = col_resource;
  c->sink.grant = col_grant;
  c->sink.next_page = col_next;
  c->stop_after = -1;
}

static void col_release(struct col *c) {
  for (size_t i = 0; i < c->n; i++)
    free(c->items[i]);
  free(c->items);
  free(c->next);
  memset(c, 0, sizeof(*c));
}

static void col_same(const struct col *a, const struct col *b) {
  ck_assert_uint_eq(a->n, b->n);
  for (size_t i = 0; i < a->n; i++)
    ck_assert_str_eq(a->items[i], b->items[i]);
}

/* ---- helpers ------------------------------------------------------------- */

/* Open with `path` and, when page_size > 0, that page size. Values are laid
   out by the plugin's own option table, as the host does. */
static int ff_open_ps(const char *path, long long page_size, void **inst,
                      struct ch_err *err) {
  struct ch_opt_value vals[8];
  char num[32];
  struct ch_cfg cfg = {.tenant = "legacy",
                       .instance = "hr",
                       .config_dir = tmpdir,
                       .values = vals};

  memset(vals, 0, sizeof(vals));
  for (size_t i = 0; pl->options[i].name; i++) {
    ck_assert_uint_lt(i, 8);
    vals[i].name = pl->options[i].name;
    if (strcmp(vals[i].name, "path") == 0 && path) {
      vals[i].set = 1;
      vals[i].str = path;
    } else if (strcmp(vals[i].name, "page_size") == 0 && page_size) {
      snprintf(num, sizeof(num), "%lld", page_size);
      vals[i].set = 1;
      vals[i].str = num;
      vals[i].num = page_size;
    }
    cfg.nvalues = i + 1;
  }
  memset(err, 0, sizeof(*err));
  *inst = NULL;
  return pl->open(&fake_host, (struct ch_hctx *)&hc_token, &cfg, inst, err);
}

static void *open_ok(const char *path, long long page_size) {
  struct ch_err err;
  void *inst;
  int rc = ff_open_ps(path, page_size, &inst, &err);

  ck_assert_msg(rc == CH_OK, "open %s: %d %s", path, rc, err.msg);
  ck_assert_ptr_nonnull(inst);
  return inst;
}

/* Write `len` bytes of `text` to tmpdir/name; returns the path (static). */
static const char *write_file_n(const char *name, const char *text,
                                size_t len) {
  static char path[1024];
  FILE *f;

  snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
  f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(text, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
  return path;
}

static const char *write_file(const char *name, const char *text) {
  return write_file_n(name, text, strlen(text));
}

/* Follow page tokens to the end of one listing (grants when `res` is set).
   Checks each token is fresh, non-empty and names no record. Returns the
   number of pages. */
static size_t drain(void *inst, const char *type, const struct ch_ref *res,
                    struct col *c) {
  char *token = NULL;
  size_t pages = 0;
  struct ch_err err;
  int rc;

  for (;;) {
    size_t before = c->n;

    memset(&err, 0, sizeof(err));
    c->next_calls = 0;
    if (res)
      rc = pl->grants(inst, res, token, &c->sink, &err);
    else
      rc = pl->list(inst, type, NULL, token, &c->sink, &err);
    ck_assert_msg(rc == CH_OK, "page %zu: %d %s", pages, rc, err.msg);
    pages++;
    ck_assert_uint_le(c->next_calls, 1);
    if (!c->next)
      break;
    ck_assert_msg(c->n > before, "a page with a token emitted nothing");
    ck_assert_msg(!token || strcmp(token, c->next) != 0, "token repeated");
    for (size_t i = before; i < c->n; i++) {
      /* "type|id|..." or "type/id#...": the id never leaks into a token */
      const char *id = strpbrk(c->items[i], "|/") + 1;
      size_t idlen = strcspn(id, "|#");
      char copy[256];
      snprintf(copy, sizeof(copy), "%.*s", (int)idlen, id);
      ck_assert_msg(strstr(c->next, copy) == NULL, "token %s names %s", c->next,
                    copy);
    }
    free(token);
    token = c->next;
    c->next = NULL;
    ck_assert_uint_lt(pages, 1000);
  }
  free(token);
  return pages;
}

/* Everything the instance serves, in order, as lines. */
static void serve_all(void *inst, struct col *c) {
  static const char *const types[] = {"user", "group", "role", NULL};

  for (int t = 0; types[t]; t++) {
    struct col ids;
    col_init(&ids);
    drain(inst, types[t], NULL, &ids);
    for (size_t i = 0; i < ids.n; i++) {
      char id[256];
      struct ch_ref ref = {types[t], id};
      snprintf(id, sizeof(id), "%.*s",
               (int)strcspn(ids.items[i] + strlen(types[t]) + 1, "|"),
               ids.items[i] + strlen(types[t]) + 1);
      col_add(c, strdup(ids.items[i]));
      drain(inst, NULL, &ref, c);
    }
    col_release(&ids);
  }
}

/* ---- fixtures ------------------------------------------------------------ */

static void setup(void) {
  const char *base = getenv("TMPDIR");

  load_plugin();
  loglen = 0;
  logbuf[0] = '\0';
  snprintf(tmpdir, sizeof(tmpdir), "%s/check_flatfile.XXXXXX",
           base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  char path[1024];

  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
    chmod(path, 0700);
    if (unlink(path))
      rmdir(path);
  }
  if (d)
    closedir(d);
  rmdir(tmpdir);
  dlclose(so);
  so = NULL;
  pl = NULL;
}

/* ---- the descriptor ------------------------------------------------------ */

START_TEST(test_descriptor) {
  const struct ch_resource_type *t = pl->types;

  ck_assert_uint_eq(pl->abi, CH_PLUGIN_ABI);
  ck_assert_uint_ge(pl->size, CH_PLUGIN_SIZE_V1);
  ck_assert_str_eq(pl->name, "flatfile");
  ck_assert_ptr_nonnull(pl->version);
  ck_assert_ptr_nonnull(pl->open);
  ck_assert_ptr_nonnull(pl->close);
  ck_assert_ptr_nonnull(pl->check);
  ck_assert_ptr_nonnull(pl->list);
  ck_assert_ptr_nonnull(pl->grants);
  /* a read-only source: no provisioning ops */
  ck_assert_ptr_null(pl->grant);
  ck_assert_ptr_null(pl->revoke);
  ck_assert_ptr_null(pl->provision_account);
  ck_assert_ptr_null(pl->action);

  ck_assert_str_eq(pl->options[0].name, "path");
  ck_assert_int_eq(pl->options[0].type, CH_OPT_PATH);
  ck_assert_uint_eq(pl->options[0].flags & CH_OPT_REQUIRED, CH_OPT_REQUIRED);
  ck_assert_str_eq(pl->options[1].name, "page_size");
  ck_assert_int_eq(pl->options[1].type, CH_OPT_INT);
  ck_assert_str_eq(pl->options[1].def, "100");
  ck_assert_ptr_null(pl->options[2].name);

  ck_assert_str_eq(t[0].id, "user");
  ck_assert_uint_eq(t[0].traits, CH_TRAIT_USER);
  ck_assert_ptr_null(t[0].entitlements[0].slug);
  ck_assert_str_eq(t[1].id, "group");
  ck_assert_str_eq(t[1].entitlements[0].slug, "member");
  ck_assert_str_eq(t[1].entitlements[0].grantable_to[0], "user");
  ck_assert_str_eq(t[1].entitlements[0].grantable_to[1], "group");
  ck_assert_str_eq(t[2].id, "role");
  ck_assert_uint_eq(t[2].traits, CH_TRAIT_ROLE);
  ck_assert_str_eq(t[2].entitlements[0].slug, "assigned");
  ck_assert_ptr_null(t[3].id);
  for (int i = 0; i < 3; i++)
    ck_assert_uint_eq(t[i].caps, CH_CAP_SYNC);

  /* another ABI gets nothing */
  {
    ch_plugin_entry_fn entry;
    *(void **)&entry = dlsym(so, CH_PLUGIN_SYMBOL);
    ck_assert_ptr_null(entry(CH_PLUGIN_ABI + 1));
  }
}
END_TEST

/* ---- serving the sample export ------------------------------------------ */

START_TEST(test_fixture_records) {
  void *inst = open_ok(fixture(), 100);
  struct col c;

  ck_assert_ptr_nonnull(
      strstr(logbuf, "2: loaded 12 users, 4 groups, 3 roles"));

  col_init(&c);
  ck_assert_uint_eq(drain(inst, "user", NULL, &c), 1);
  ck_assert_uint_eq(c.n, 12);
  ck_assert_str_eq(c.items[0],
                   "user|1001|Ana Souza|1|1|{\"department\":\"People\","
                   "\"title\":\"HR Director\"}|||,ana.souza@legacy.example|"
                   ",email=ana.souza@legacy.example,employee_id=E1001");
  /* two emails, both match keys, lowercased; the emails as written */
  ck_assert_ptr_nonnull(strstr(c.items[3],
                               "|,bjorn.odegard@legacy.example,"
                               "Bjorn.Odegard@old-domain.example|"
                               ",email=bjorn.odegard@legacy.example,"
                               "email=bjorn.odegard@old-domain.example,"
                               "employee_id=E1004"));
  ck_assert_ptr_nonnull(strstr(c.items[5], "user|1006|李娜|1|1|"));
  ck_assert_ptr_nonnull(strstr(c.items[7], "user|1008|Łukasz Wójcik|2|1|"));
  ck_assert_ptr_nonnull(
      strstr(c.items[11], "user|svc-payroll-export|Payroll export job|1|2|"));
  col_release(&c);

  col_init(&c);
  drain(inst, "group", NULL, &c);
  ck_assert_uint_eq(c.n, 4);
  ck_assert_str_eq(c.items[0], "group|all-staff|All staff|0|0|||||");
  col_release(&c);

  col_init(&c);
  drain(inst, "role", NULL, &c);
  ck_assert_uint_eq(c.n, 3);
  ck_assert_str_eq(c.items[0], "role|hr-admin|HR administrator|0|0|"
                               "{\"scope\":\"all employee records\"}||||");
  col_release(&c);
  pl->close(inst);
}
END_TEST

START_TEST(test_grants_shape) {
  void *inst = open_ok(fixture(), 100);
  struct ch_ref all = {"group", "all-staff"};
  struct ch_ref ss = {"role", "self-service"};
  struct ch_ref pa = {"role", "payroll-approver"};
  struct ch_ref u = {"user", "1001"};
  struct col c;

  col_init(&c);
  drain(inst, NULL, &all, &c);
  ck_assert_uint_eq(c.n, 4);
  /* users first, direct; then nested groups, expandable through member */
  ck_assert_str_eq(c.items[0], "group/all-staff#member<-user/1001|0|");
  ck_assert_str_eq(c.items[1], "group/all-staff#member<-user/1009|0|");
  ck_assert_str_eq(c.items[2],
                   "group/all-staff#member<-group/finance|1|member");
  ck_assert_str_eq(c.items[3],
                   "group/all-staff#member<-group/engineering|1|member");
  col_release(&c);

  col_init(&c);
  drain(inst, NULL, &ss, &c);
  ck_assert_uint_eq(c.n, 1);
  ck_assert_str_eq(c.items[0],
                   "role/self-service#assigned<-group/all-staff|1|member");
  col_release(&c);

  col_init(&c);
  drain(inst, NULL, &pa, &c);
  ck_assert_uint_eq(c.n, 2);
  ck_assert_str_eq(c.items[0], "role/payroll-approver#assigned<-user/1007|0|");
  ck_assert_str_eq(c.items[1],
                   "role/payroll-approver#assigned<-group/payroll-admins|1|"
                   "member");
  col_release(&c);

  /* users carry no entitlements: nothing, and no error */
  col_init(&c);
  drain(inst, NULL, &u, &c);
  ck_assert_uint_eq(c.n, 0);
  col_release(&c);
  pl->close(inst);
}
END_TEST

/* Page sizes 1, 3 and 100 serve exactly the same records in the same
   order, in the expected number of pages. */
START_TEST(test_paging_same_records) {
  static const long long sizes[] = {1, 3, 100};
  struct col ref;

  col_init(&ref);
  for (size_t s = 0; s < 3; s++) {
    void *inst = open_ok(fixture(), sizes[s]);
    struct col c, users;

    col_init(&c);
    serve_all(inst, &c);
    if (s == 0) {
      ref = c;
      ref.sink.resource = NULL;
    } else {
      col_same(&ref, &c);
      col_release(&c);
    }
    col_init(&users);
    ck_assert_uint_eq(drain(inst, "user", NULL, &users),
                      (12 + sizes[s] - 1) / sizes[s]);
    col_release(&users);
    pl->close(inst);
  }
  /* 12 users + 4 groups + 3 roles + 15 group grants + 5 role grants */
  ck_assert_uint_eq(ref.n, 12 + 4 + 3 + 15 + 5);
  col_release(&ref);
}
END_TEST

/* The instance keeps no position: a token replays, works in another
   instance of the same file, and survives other listings in between. */
START_TEST(test_tokens_position_free) {
  void *a = open_ok(fixture(), 3);
  void *b = open_ok(fixture(), 3);
  struct ch_ref eng = {"group", "engineering"};
  struct col p1, p2a, p2b, p2c, other;
  struct ch_err err;
  char *t1;

  col_init(&p1);
  ck_assert_int_eq(pl->list(a, "user", NULL, NULL, &p1.sink, &err), CH_OK);
  ck_assert_uint_eq(p1.n, 3);
  ck_assert_ptr_nonnull(p1.next);
  t1 = p1.next;

  col_init(&p2a);
  ck_assert_int_eq(pl->list(a, "user", NULL, t1, &p2a.sink, &err), CH_OK);
  col_init(&other);
  drain(a, "group", NULL, &other);
  drain(a, NULL, &eng, &other);
  col_init(&p2b);
  ck_assert_int_eq(pl->list(a, "user", NULL, t1, &p2b.sink, &err), CH_OK);
  col_init(&p2c);
  ck_assert_int_eq(pl->list(b, "user", NULL, t1, &p2c.sink, &err), CH_OK);

  ck_assert_uint_eq(p2a.n, 3);
  ck_assert_ptr_nonnull(strstr(p2a.items[0], "user|1004|"));
  col_same(&p2a, &p2b);
  col_same(&p2a, &p2c);
  ck_assert_str_eq(p2a.next, p2b.next);
  ck_assert_str_eq(p2a.next, p2c.next);

  col_release(&p1);
  col_release(&p2a);
  col_release(&p2b);
  col_release(&p2c);
  col_release(&other);

  /* a grants token also works in another instance */
  col_init(&p1);
  ck_assert_int_eq(pl->grants(a, &eng, NULL, &p1.sink, &err), CH_OK);
  ck_assert_ptr_nonnull(p1.next);
  col_init(&p2a);
  ck_assert_int_eq(pl->grants(b, &eng, p1.next, &p2a.sink, &err), CH_OK);
  ck_assert_uint_eq(p2a.n, 2);
  ck_assert_str_eq(p2a.items[0], "group/engineering#member<-user/1008|0|");
  ck_assert_ptr_null(p2a.next);
  col_release(&p1);
  col_release(&p2a);
  pl->close(a);
  pl->close(b);
}
END_TEST

START_TEST(test_bad_tokens) {
  static const char *const bad[] = {"garbage",
                                    "{}",
                                    "[3]",
                                    "{\"o\":0}",
                                    "{\"o\":-1}",
                                    "{\"o\":12}",
                                    "{\"o\":99999999999}",
                                    "{\"o\":\"3\"}",
                                    "{\"o\":3",
                                    NULL};
  void *inst = open_ok(fixture(), 3);
  struct ch_ref eng = {"group", "engineering"};

  for (int i = 0; bad[i]; i++) {
    struct col c;
    struct ch_err err = {0};
    col_init(&c);
    ck_assert_int_eq(pl->list(inst, "user", NULL, bad[i], &c.sink, &err),
                     CH_E_INVALID);
    ck_assert_str_eq(err.msg, "page token is not valid");
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_eq(pl->grants(inst, &eng, bad[i], &c.sink, &err),
                     CH_E_INVALID);
    col_release(&c);
  }
  pl->close(inst);
}
END_TEST

START_TEST(test_op_errors) {
  void *inst = open_ok(fixture(), 100);
  struct ch_ref nope = {"group", "nope"};
  struct ch_ref thing = {"thing", "x"};
  struct ch_ref parent = {"group", "finance"};
  struct ch_err err = {0};
  struct col c;

  col_init(&c);
  ck_assert_int_eq(pl->list(inst, "thing", NULL, NULL, &c.sink, &err),
                   CH_E_INVALID);
  ck_assert_str_eq(err.msg, "unknown resource type 'thing'");
  ck_assert_int_eq(pl->list(inst, "user", &parent, NULL, &c.sink, &err),
                   CH_E_INVALID);
  ck_assert_int_eq(pl->grants(inst, &nope, NULL, &c.sink, &err), CH_E_NOTFOUND);
  ck_assert_str_eq(err.msg, "group 'nope' is not in the file");
  ck_assert_int_eq(pl->grants(inst, &thing, NULL, &c.sink, &err), CH_E_INVALID);
  ck_assert_uint_eq(c.n, 0);
  col_release(&c);
  pl->close(inst);
}
END_TEST

/* A sink that asks to stop gets CH_E_STOPPED and no page token. */
START_TEST(test_sink_stop) {
  void *inst = open_ok(fixture(), 5);
  struct ch_ref eng = {"group", "engineering"};
  struct ch_err err = {0};
  struct col c;

  col_init(&c);
  c.stop_after = 1;
  ck_assert_int_eq(pl->list(inst, "user", NULL, NULL, &c.sink, &err),
                   CH_E_STOPPED);
  ck_assert_uint_eq(c.n, 2);
  ck_assert_ptr_null(c.next);
  col_release(&c);

  col_init(&c);
  c.stop_after = 0;
  ck_assert_int_eq(pl->grants(inst, &eng, NULL, &c.sink, &err), CH_E_STOPPED);
  ck_assert_uint_eq(c.n, 1);
  col_release(&c);
  pl->close(inst);
}
END_TEST

/* Ids are opaque bytes: '/', '#', '%', ':' and non-ASCII pass through
   untouched, and a file without a BOM or with one reads the same. */
START_TEST(test_odd_ids_and_bom) {
  static const char doc[] =
      "{\"users\":[{\"id\":\"a/b#c%2F:d\",\"email\":\"A@X.test\"},"
      "{\"id\":\"\xc3\xbc\\u00e9\"}],"
      "\"groups\":[{\"id\":\"g:1/2\",\"members\":[\"a/b#c%2F:d\","
      "\"\xc3\xbc\xc3\xa9\"]}]}";
  char bom[sizeof(doc) + 3] = "\xEF\xBB\xBF";
  struct ch_ref g = {"group", "g:1/2"};
  struct col c, d;
  void *inst;

  memcpy(bom + 3, doc, sizeof(doc));
  for (int pass = 0; pass < 2; pass++) {
    inst = open_ok(write_file("odd.json", pass ? bom : doc), 1);
    col_init(&c);
    drain(inst, "user", NULL, &c);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_str_eq(
        c.items[0],
        "user|a/b#c%2F:d|a/b#c%2F:d|1|1||||,A@X.test|,email=a@x.test");
    ck_assert_str_eq(c.items[1],
                     "user|\xc3\xbc\xc3\xa9|\xc3\xbc\xc3\xa9|1|1|||||");
    col_init(&d);
    drain(inst, NULL, &g, &d);
    ck_assert_uint_eq(d.n, 2);
    ck_assert_str_eq(d.items[1],
                     "group/g:1/2#member<-user/\xc3\xbc\xc3\xa9|0|");
    col_release(&c);
    col_release(&d);
    pl->close(inst);
  }
}
END_TEST

START_TEST(test_empty_export) {
  void *inst = open_ok(write_file("empty.json", "{\"flatfile\": 1}\n"), 0);
  struct col c;

  col_init(&c);
  ck_assert_uint_eq(drain(inst, "user", NULL, &c), 1);
  ck_assert_uint_eq(drain(inst, "group", NULL, &c), 1);
  ck_assert_uint_eq(drain(inst, "role", NULL, &c), 1);
  ck_assert_uint_eq(c.n, 0);
  col_release(&c);
  pl->close(inst);
}
END_TEST

/* Many threads list one instance at once (workers do): every thread sees
   the same data. Run under helgrind/TSan to check there are no races. */
struct conc_arg {
  void *inst;
  const struct col *want;
  int ok;
};

static void *conc_worker(void *p) {
  struct conc_arg *a = p;
  struct col c;

  for (int round = 0; round < 5; round++) {
    col_init(&c);
    serve_all(a->inst, &c);
    a->ok = c.n == a->want->n;
    for (size_t i = 0; a->ok && i < c.n; i++)
      a->ok = strcmp(c.items[i], a->want->items[i]) == 0;
    col_release(&c);
    if (!a->ok)
      break;
  }
  return NULL;
}

START_TEST(test_concurrent_reads) {
  void *inst = open_ok(fixture(), 2);
  struct conc_arg args[4];
  pthread_t th[4];
  struct col want;

  col_init(&want);
  serve_all(inst, &want);
  for (int i = 0; i < 4; i++) {
    args[i].inst = inst;
    args[i].want = &want;
    args[i].ok = 0;
    ck_assert_int_eq(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(args[i].ok, "thread %d saw different data", i);
  }
  col_release(&want);
  pl->close(inst);
}
END_TEST

/* ---- open errors --------------------------------------------------------- */

static void open_fails(const char *path, long long ps, int code,
                       const char *want) {
  struct ch_err err;
  void *inst = (void *)&inst;
  int rc = ff_open_ps(path, ps, &inst, &err);

  ck_assert_msg(rc == code, "open: want %d, got %d (%s)", code, rc, err.msg);
  ck_assert_int_eq(err.code, code);
  ck_assert_ptr_null(inst);
  ck_assert_msg(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'",
                err.msg, want);
}

START_TEST(test_options) {
  open_fails(NULL, 0, CH_E_CONFIG, "option 'path' is required");
  open_fails(fixture(), -1, CH_E_CONFIG,
             "option 'page_size' must be 1..10000, not -1");
  open_fails(fixture(), 10001, CH_E_CONFIG,
             "option 'page_size' must be 1..10000, not 10001");
  pl->close(open_ok(fixture(), 10000));
  pl->close(open_ok(fixture(), 1));
}
END_TEST

START_TEST(test_file_errors) {
  char path[1024];

  snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
  open_fails(path, 0, CH_E_CONFIG, "cannot open '");
  open_fails(path, 0, CH_E_CONFIG, "missing.json': No such file or directory");
  open_fails(tmpdir, 0, CH_E_CONFIG, "' is not a regular file");

  write_file_n("nul.json", "{\"users\":\0[]}", 13);
  snprintf(path, sizeof(path), "%s/nul.json", tmpdir);
  open_fails(path, 0, CH_E_CONFIG,
             "nul.json:1:10: malformed JSON: NUL byte in the file (byte 9)");

  /* root reads anything: only check permissions as another user */
  if (geteuid() != 0) {
    snprintf(path, sizeof(path), "%s", write_file("locked.json", "{}"));
    ck_assert_int_eq(chmod(path, 0), 0);
    open_fails(path, 0, CH_E_CONFIG, "Permission denied");
  }
}
END_TEST

/* One malformed export each: the code is CH_E_CONFIG and the message names
   the file and the record (tcase loop: each case reported on its own). */
static const struct {
  const char *doc;
  const char *want;
} bad_docs[] = {
    {"{\n  \"users\": [\n    {\"id\": \"a\",, }\n  ]\n}",
     "bad.json:3:16: malformed JSON: quoted object property name expected "
     "(byte 30)"},
    {"{\"users\": [", "bad.json:1:12: malformed JSON: unexpected end of data"},
    {"", "bad.json:1:1: malformed JSON: unexpected end of data (byte 0)"},
    {"{} {}", "bad.json:1:4: malformed JSON: data after the top-level object"},
    {"{\"users\":[{\"id\":\"\xff\"}]}", "bad.json:1:"},
    {"[]", "bad.json: the top level must be a JSON object"},
    {"null", "bad.json: the top level must be a JSON object"},
    {"{\"accounts\": []}", "bad.json: unknown top-level key 'accounts'"},
    {"{\"flatfile\": 2}", "bad.json: unsupported \"flatfile\" format version"},
    {"{\"users\": {}}", "bad.json: \"users\" must be an array"},
    {"{\"users\": [\"a\"]}", "bad.json: users[0]: must be an object"},
    {"{\"users\": [{\"id\": \"a\"}, {\"name\": \"B\"}]}",
     "bad.json: users[1]: missing \"id\""},
    {"{\"users\": [{\"id\": 5}]}",
     "bad.json: users[0]: \"id\" must be a string"},
    {"{\"users\": [{\"id\": \"\"}]}",
     "bad.json: users[0]: \"id\" must not be empty"},
    {"{\"users\": [{\"id\": \"a\\u0000b\"}]}",
     "bad.json: users[0]: \"id\" contains a NUL character"},
    {"{\"users\": [{\"id\": \"a\"}, {\"id\": \"b\"}, {\"id\": \"a\"}]}",
     "bad.json: users[2] 'a': duplicate id (also users[0])"},
    {"{\"groups\": [{\"id\": \"g\"}, {\"id\": \"g\"}]}",
     "bad.json: groups[1] 'g': duplicate id (also groups[0])"},
    {"{\"users\": [{\"id\": \"a\", \"mail\": \"a@x\"}]}",
     "bad.json: users[0] 'a': unknown field 'mail' (put extra attributes in "
     "\"profile\")"},
    {"{\"groups\": [{\"id\": \"g\", \"member\": []}]}",
     "bad.json: groups[0] 'g': unknown field 'member'"},
    {"{\"users\": [{\"id\": \"a\", \"email\": \"a@x\", \"emails\": []}]}",
     "bad.json: users[0] 'a': give \"email\" or \"emails\", not both"},
    {"{\"users\": [{\"id\": \"a\", \"emails\": [\"a@x\", \"nope\"]}]}",
     "bad.json: users[0] 'a': email 'nope' has no '@'"},
    {"{\"users\": [{\"id\": \"a\", \"emails\": [\"a@x\", \"a@x\"]}]}",
     "bad.json: users[0] 'a': \"emails\" lists 'a@x' twice"},
    {"{\"users\": [{\"id\": \"a\", \"status\": \"active\"}]}",
     "bad.json: users[0] 'a': \"status\" must be \"enabled\" or \"disabled\", "
     "not 'active'"},
    {"{\"users\": [{\"id\": \"a\", \"account_type\": \"robot\"}]}",
     "bad.json: users[0] 'a': \"account_type\" must be \"human\", \"service\" "
     "or \"customer\", not 'robot'"},
    {"{\"users\": [{\"id\": \"a\", \"match\": [\"x\"]}]}",
     "bad.json: users[0] 'a': \"match\" must be an object of strings"},
    {"{\"users\": [{\"id\": \"a\", \"match\": {\"employee_id\": 7}}]}",
     "bad.json: users[0] 'a': match key 'employee_id' must be a non-empty "
     "string"},
    {"{\"users\": [{\"id\": \"a\", \"match\": {\"Employee ID\": \"7\"}}]}",
     "bad.json: users[0] 'a': match key 'Employee ID' must match [a-z0-9_]+"},
    {"{\"users\": [{\"id\": \"a\", \"profile\": \"x\"}]}",
     "bad.json: users[0] 'a': \"profile\" must be an object"},
    {"{\"groups\": [{\"id\": \"g\", \"members\": \"a\"}]}",
     "bad.json: groups[0] 'g': \"members\" must be an array of strings"},
    {"{\"groups\": [{\"id\": \"g\", \"members\": [\"\"]}]}",
     "bad.json: groups[0] 'g': \"members\"[0] must be a non-empty string"},
    {"{\"users\": [{\"id\": \"a\"}], \"groups\": [{\"id\": \"g\", "
     "\"members\": [\"a\", \"zz\"]}]}",
     "bad.json: groups[0] 'g': \"members\" names 'zz', which is not a user in "
     "the file"},
    /* a group id is not a user id: the kinds have separate id spaces */
    {"{\"groups\": [{\"id\": \"g\"}, {\"id\": \"h\", \"members\": [\"g\"]}]}",
     "bad.json: groups[1] 'h': \"members\" names 'g', which is not a user in "
     "the file"},
    {"{\"groups\": [{\"id\": \"g\", \"member_groups\": [\"nope\"]}]}",
     "bad.json: groups[0] 'g': \"member_groups\" names 'nope', which is not a "
     "group in the file"},
    {"{\"users\": [{\"id\": \"a\"}], \"groups\": [{\"id\": \"g\", "
     "\"members\": [\"a\", \"a\"]}]}",
     "bad.json: groups[0] 'g': \"members\" lists 'a' twice"},
    {"{\"roles\": [{\"id\": \"r\", \"assigned_users\": [\"ghost\"]}]}",
     "bad.json: roles[0] 'r': \"assigned_users\" names 'ghost', which is not "
     "a user in the file"},
    {"{\"roles\": [{\"id\": \"r\", \"assigned_groups\": [\"ghost\"]}]}",
     "bad.json: roles[0] 'r': \"assigned_groups\" names 'ghost', which is not "
     "a group in the file"},
    {"{\"roles\": [{\"id\": \"r\", \"members\": []}]}",
     "bad.json: roles[0] 'r': unknown field 'members'"},
};

START_TEST(test_bad_export) {
  const char *path = write_file("bad.json", bad_docs[_i].doc);

  open_fails(path, 0, CH_E_CONFIG, bad_docs[_i].want);
}
END_TEST

/* ---- check() re-reads the file ---------------------------------------------
 */

START_TEST(test_check_rereads) {
  static const char good[] = "{\"users\":[{\"id\":\"a\"},{\"id\":\"b\"}]}";
  const char *path = write_file("live.json", good);
  void *inst = open_ok(path, 0);
  struct ch_err err = {0};
  struct col c;

  ck_assert_int_eq(pl->check(inst, &err), CH_OK);
  ck_assert_ptr_nonnull(strstr(logbuf, "3: '"));
  ck_assert_ptr_nonnull(strstr(logbuf, "live.json' is valid: 2 users"));

  write_file("live.json", "{\"users\":[{\"id\":\"a\"},{\"id\":\"a\"}]}");
  ck_assert_int_eq(pl->check(inst, &err), CH_E_CONFIG);
  ck_assert_str_eq(err.msg,
                   "live.json: users[1] 'a': duplicate id (also users[0])");
  /* the instance still serves the snapshot open() took */
  col_init(&c);
  drain(inst, "user", NULL, &c);
  ck_assert_uint_eq(c.n, 2);
  col_release(&c);

  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(pl->check(inst, &err), CH_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err.msg, "cannot open '"));

  write_file("live.json", good);
  ck_assert_int_eq(pl->check(inst, &err), CH_OK);
  pl->close(inst);
}
END_TEST

/* ---- the suite -------------------------------------------------------------
 */

static Suite *flatfile_suite(void) {
  Suite *s = suite_create("flatfile");
  TCase *tc = tcase_create("serve");
  TCase *te = tcase_create("errors");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_descriptor);
  tcase_add_test(tc, test_fixture_records);
  tcase_add_test(tc, test_grants_shape);
  tcase_add_test(tc, test_paging_same_records);
  tcase_add_test(tc, test_tokens_position_free);
  tcase_add_test(tc, test_bad_tokens);
  tcase_add_test(tc, test_op_errors);
  tcase_add_test(tc, test_sink_stop);
  tcase_add_test(tc, test_odd_ids_and_bom);
  tcase_add_test(tc, test_empty_export);
  tcase_add_test(tc, test_concurrent_reads);
  suite_add_tcase(s, tc);

  tcase_add_checked_fixture(te, setup, teardown);
  tcase_add_test(te, test_options);
  tcase_add_test(te, test_file_errors);
  tcase_add_loop_test(te, test_bad_export, 0,
                      (int)(sizeof(bad_docs) / sizeof(bad_docs[0])));
  tcase_add_test(te, test_check_rereads);
  suite_add_tcase(s, te);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(flatfile_suite());
  int failed;

  srunner_run_all(sr, CK_ENV);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
