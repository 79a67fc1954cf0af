/* SPDX-License-Identifier: MIT */
/* Loader tests: the real test-only plugins built in tests/plugins/, each
   broken in one way, must be refused with a message naming the file; the
   plugin directory rules; the object loaded is the one checked. */
#include "autoconfig.h"

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance.h"
#include "loader.h"

static char test_dir[PATH_MAX];
static char tmp_dir[PATH_MAX];
static struct registry reg;

static void setup(void) {
  const char *d = getenv("CONNHOST_TEST_PLUGINS");
  struct ch_err err = {0};

  snprintf(test_dir, sizeof(test_dir), "%s", d ? d : "tests/plugins/.libs");
  ck_assert_int_eq(registry_init(&reg, test_dir, &err), CH_OK);
  snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/connhost-loader-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void teardown(void) {
  char cmd[PATH_MAX + 16];
  registry_release(&reg);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* Load `name` from the test plugin dir; expect failure mentioning each of
   the NULL-terminated fragments. */
static void expect_refused(const char *name, ...) {
  const struct plugin *p = NULL;
  struct ch_err err = {0};
  va_list ap;
  const char *frag;

  ck_assert_int_eq(registry_load(&reg, name, &p, &err), CH_E_CONFIG);
  ck_assert_ptr_null(p);
  va_start(ap, name);
  while ((frag = va_arg(ap, const char *)))
    ck_assert_msg(strstr(err.msg, frag), "'%s' not in: %s", frag, err.msg);
  va_end(ap);
}

START_TEST(names_are_validated) {
  ck_assert(loader_valid_name("jira_cloud"));
  ck_assert(loader_valid_name("a1_b2"));
  ck_assert(!loader_valid_name(""));
  ck_assert(!loader_valid_name("../etc/x"));
  ck_assert(!loader_valid_name("Jira"));
  ck_assert(!loader_valid_name("a.b"));
  ck_assert(!loader_valid_name("a-b"));
  ck_assert(!loader_valid_name(
      "a12345678901234567890123456789012345678901234567890123456789012345"));
  expect_refused("../plugins/x", "invalid plugin name", NULL);
}
END_TEST

START_TEST(good_plugin_loads_once) {
  const struct plugin *p1 = NULL, *p2 = NULL;
  struct ch_err err = {0};

  ck_assert_int_eq(registry_load(&reg, "t_chaos", &p1, &err), CH_OK);
  ck_assert_str_eq(p1->desc->name, "t_chaos");
  ck_assert_uint_eq(p1->desc->abi, CH_PLUGIN_ABI);
  ck_assert_ptr_nonnull(plugin_type(p1->desc, "user"));
  ck_assert_int_eq(registry_load(&reg, "t_chaos", &p2, &err), CH_OK);
  ck_assert_ptr_eq(p1, p2);
  ck_assert_uint_eq(reg.n, 1);
}
END_TEST

START_TEST(wrong_abi) {
  expect_refused("t_badabi", "t_badabi.so", "ABI 99", NULL);
}
END_TEST

START_TEST(short_descriptor) {
  expect_refused("t_short", "t_short.so", "descriptor size 8", NULL);
}
END_TEST

START_TEST(layout_size_below_abi_1) {
  expect_refused("t_stride", "t_stride.so", "option_size 4 is outside", NULL);
}
END_TEST

START_TEST(name_mismatch) {
  expect_refused("t_misname", "t_misname.so", "calls itself 'someone_else'",
                 NULL);
}
END_TEST

START_TEST(missing_symbol) {
  expect_refused("t_nosym", "t_nosym.so", "no 'connhost_plugin' symbol", NULL);
}
END_TEST

START_TEST(missing_mandatory_op) {
  expect_refused("t_noops", "t_noops.so", "missing mandatory op 'list'", NULL);
}
END_TEST

START_TEST(missing_file) {
  expect_refused("t_absent", "t_absent.so", "No such file", NULL);
}
END_TEST

/* A symlink or a directory named like a plugin is never loaded. */
START_TEST(only_regular_files) {
  char link[PATH_MAX + 32], target[PATH_MAX + 32], dir[PATH_MAX + 32];
  struct registry r2;
  struct ch_err err = {0};
  const struct plugin *p = NULL;

  snprintf(target, sizeof(target), "%s/t_chaos.so", test_dir);
  snprintf(link, sizeof(link), "%s/t_link.so", tmp_dir);
  snprintf(dir, sizeof(dir), "%s/t_dir.so", tmp_dir);
  ck_assert_int_eq(symlink(target, link), 0);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  ck_assert_int_eq(registry_init(&r2, tmp_dir, &err), CH_OK);
  ck_assert_int_eq(registry_load(&r2, "t_link", &p, &err), CH_E_CONFIG);
  ck_assert_msg(strstr(err.msg, "not a regular file"), "%s", err.msg);
  ck_assert_int_eq(registry_load(&r2, "t_dir", &p, &err), CH_E_CONFIG);
  ck_assert_msg(strstr(err.msg, "not a regular file"), "%s", err.msg);
  registry_release(&r2);
}
END_TEST

/* A file dlopen rejects gets dlerror and the ldd hint. */
START_TEST(dlopen_failure_has_hint) {
  char path[PATH_MAX + 32];
  struct registry r2;
  struct ch_err err = {0};
  const struct plugin *p = NULL;
  FILE *f;

  snprintf(path, sizeof(path), "%s/t_garbage.so", tmp_dir);
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("this is not an ELF file\n", f);
  fclose(f);
  ck_assert_int_eq(registry_init(&r2, tmp_dir, &err), CH_OK);
  ck_assert_int_eq(registry_load(&r2, "t_garbage", &p, &err), CH_E_CONFIG);
  ck_assert_msg(strstr(err.msg, "t_garbage.so"), "%s", err.msg);
  ck_assert_msg(strstr(err.msg, "ldd"), "%s", err.msg);
  /* dlerror named the descriptor it was given: the message names the file */
  ck_assert_msg(!strstr(err.msg, "/proc/self/fd"), "%s", err.msg);
  registry_release(&r2);
}
END_TEST

/* Copy test plugin `name`.so into directory `dir`. */
static void copy_plugin(const char *name, const char *dir) {
  char src[PATH_MAX + 32], dst[PATH_MAX + 32], buf[8192];
  ssize_t n;
  int in, out;

  snprintf(src, sizeof(src), "%s/%s.so", test_dir, name);
  snprintf(dst, sizeof(dst), "%s/%s.so", dir, name);
  in = open(src, O_RDONLY);
  out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  ck_assert_int_ge(in, 0);
  ck_assert_int_ge(out, 0);
  while ((n = read(in, buf, sizeof(buf))) > 0)
    ck_assert_int_eq(write(out, buf, (size_t)n), n);
  ck_assert_int_eq(n, 0);
  close(in);
  close(out);
}

/* tmp_dir/<sub> with mode `mode` (umask aside), and its path in `out`. */
static void make_dir(const char *sub, mode_t mode, char *out, size_t n) {
  ck_assert_int_lt(snprintf(out, n, "%s/%s", tmp_dir, sub), (int)n);
  ck_assert_int_eq(mkdir(out, 0700), 0);
  ck_assert_int_eq(chmod(out, mode), 0);
}

/* Load t_chaos from `dir`; expect `rc`, the message holding each of the
   NULL-terminated fragments. */
static void load_from(const char *dir, int allow_insecure, int rc, ...) {
  struct registry r2;
  struct ch_err err = {0};
  const struct plugin *p = NULL;
  const char *frag;
  va_list ap;

  ck_assert_int_eq(registry_init(&r2, dir, &err), CH_OK);
  r2.allow_insecure = allow_insecure;
  ck_assert_msg(registry_load(&r2, "t_chaos", &p, &err) == rc, "%s: %s", dir,
                err.msg);
  if (rc == CH_OK)
    ck_assert_str_eq(p->desc->name, "t_chaos");
  va_start(ap, rc);
  while ((frag = va_arg(ap, const char *)))
    ck_assert_msg(strstr(err.msg, frag), "'%s' not in: %s", frag, err.msg);
  va_end(ap);
  registry_release(&r2);
}

/* A directory above the plugin directory that others can write lets them
   rename the plugin directory away: refused, unless sticky (like /tmp). */
START_TEST(parent_writable_by_others_is_refused) {
  char mid[PATH_MAX], plugins[PATH_MAX + 16];

  make_dir("mid", 0777, mid, sizeof(mid));
  snprintf(plugins, sizeof(plugins), "%s/plugins", mid);
  ck_assert_int_eq(mkdir(plugins, 0755), 0);
  copy_plugin("t_chaos", plugins);
  load_from(plugins, 0, CH_E_CONFIG, "parent directory", mid,
            "writable by everyone", "chmod go-w", NULL);
  load_from(plugins, 1, CH_OK, NULL); /* allow_insecure_plugin_dir */
  ck_assert_int_eq(chmod(mid, 0775), 0);
  load_from(plugins, 0, CH_E_CONFIG, mid, "writable by group", "chmod g-w",
            NULL);
  ck_assert_int_eq(chmod(mid, 01777), 0);
  load_from(plugins, 0, CH_OK, NULL);
  ck_assert_int_eq(chmod(mid, 0755), 0);
  load_from(plugins, 0, CH_OK, NULL);
}
END_TEST

/* The plugin directory itself: not writable by group or others, even
   with the sticky bit; neither is the .so. */
START_TEST(plugin_dir_and_file_modes) {
  char plugins[PATH_MAX], so[PATH_MAX + 16];

  make_dir("plugins", 0755, plugins, sizeof(plugins));
  copy_plugin("t_chaos", plugins);
  snprintf(so, sizeof(so), "%s/t_chaos.so", plugins);
  load_from(plugins, 0, CH_OK, NULL);
  ck_assert_int_eq(chmod(plugins, 0775), 0);
  load_from(plugins, 0, CH_E_CONFIG, "plugin directory", plugins,
            "writable by group", "chmod g-w", NULL);
  ck_assert_int_eq(chmod(plugins, 03775), 0); /* setgid + sticky */
  load_from(plugins, 0, CH_E_CONFIG, "writable by group", NULL);
  ck_assert_int_eq(chmod(plugins, 01777), 0);
  load_from(plugins, 0, CH_E_CONFIG, "writable by everyone", "chmod go-w",
            NULL);
  load_from(plugins, 1, CH_OK, NULL);
  ck_assert_int_eq(chmod(plugins, 0755), 0);
  ck_assert_int_eq(chmod(so, 0775), 0);
  load_from(plugins, 0, CH_E_CONFIG, "plugin file", so, "writable by group",
            NULL);
  ck_assert_int_eq(chmod(so, 0757), 0);
  load_from(plugins, 0, CH_E_CONFIG, so, "writable by everyone", "chmod o-w",
            NULL);
  load_from(plugins, 1, CH_OK, NULL);
}
END_TEST

/* A symlink on the way is followed, but the directory holding it must be
   safe too: whoever can write it can point the link elsewhere. */
START_TEST(symlinked_plugin_dir) {
  char plugins[PATH_MAX], open_dir[PATH_MAX], link[PATH_MAX + 16];
  char rel[PATH_MAX + 32];

  make_dir("plugins", 0755, plugins, sizeof(plugins));
  copy_plugin("t_chaos", plugins);
  make_dir("open", 0755, open_dir, sizeof(open_dir));
  snprintf(link, sizeof(link), "%s/link", open_dir);
  ck_assert_int_eq(symlink("../plugins", link), 0);
  load_from(link, 0, CH_OK, NULL);
  snprintf(rel, sizeof(rel), "%s/./link/../open/link/", open_dir);
  load_from(rel, 0, CH_OK, NULL);
  ck_assert_int_eq(chmod(open_dir, 0777), 0);
  load_from(link, 0, CH_E_CONFIG, open_dir, "writable by everyone", NULL);
  if (geteuid() == 0) {
    ck_assert_int_eq(chmod(open_dir, 0755), 0);
    ck_assert_int_eq(lchown(link, 65534, 65534), 0);
    load_from(link, 0, CH_E_CONFIG, "symbolic link", link, "uid 65534", NULL);
  }
}
END_TEST

START_TEST(plugin_owned_by_another_user) {
  char plugins[PATH_MAX], so[PATH_MAX + 16];

  if (geteuid() != 0)
    return; /* needs root to give the file away */
  make_dir("plugins", 0755, plugins, sizeof(plugins));
  copy_plugin("t_chaos", plugins);
  snprintf(so, sizeof(so), "%s/t_chaos.so", plugins);
  ck_assert_int_eq(chown(so, 65534, 65534), 0);
  load_from(plugins, 0, CH_E_CONFIG, "plugin file", so, "uid 65534", "chown 0",
            NULL);
  ck_assert_int_eq(chown(so, 0, 0), 0);
  ck_assert_int_eq(chown(plugins, 65534, 65534), 0);
  load_from(plugins, 0, CH_E_CONFIG, "plugin directory", "uid 65534", NULL);
}
END_TEST

/*
 * The audit's race, made deterministic: tests/check_loader links with
 * -Wl,--wrap=dlopen, so this runs between the checks and the load (the
 * connhost binary has no such hook). When armed it swaps the checked
 * t_chaos.so with t_misname.so, as renameat2(RENAME_EXCHANGE) did in the
 * exploit; the object loaded must still be the checked one.
 */
static char swap_dir[PATH_MAX];
static int swaps;

void *__real_dlopen(const char *file, int mode);
void *__wrap_dlopen(const char *file, int mode);
void *__wrap_dlopen(const char *file, int mode) {
  if (swap_dir[0]) {
    char a[PATH_MAX + 32], b[PATH_MAX + 32];
    snprintf(a, sizeof(a), "%s/t_chaos.so", swap_dir);
    snprintf(b, sizeof(b), "%s/t_misname.so", swap_dir);
    if (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0)
      swaps++;
  }
  return __real_dlopen(file, mode);
}

START_TEST(swap_between_check_and_load) {
  char plugins[PATH_MAX], after[PATH_MAX + 16];
  struct registry r2;
  struct ch_err err = {0};
  const struct plugin *p = NULL;

  make_dir("plugins", 0755, plugins, sizeof(plugins));
  copy_plugin("t_chaos", plugins);
  copy_plugin("t_misname", plugins);
  ck_assert_int_eq(registry_init(&r2, plugins, &err), CH_OK);
  snprintf(swap_dir, sizeof(swap_dir), "%s", plugins);
  ck_assert_int_eq(registry_load(&r2, "t_chaos", &p, &err), CH_OK);
  swap_dir[0] = '\0';
  ck_assert_int_eq(swaps, 1);
  ck_assert_str_eq(p->desc->name, "t_chaos");
  /* The swap did happen: the path now holds the other plugin. */
  snprintf(after, sizeof(after), "%s/t_chaos.so", plugins);
  {
    void *h = __real_dlopen(after, RTLD_NOW | RTLD_LOCAL);
    const struct ch_plugin *(*entry)(uint32_t);
    ck_assert_ptr_nonnull(h);
    *(void **)&entry = dlsym(h, CH_PLUGIN_SYMBOL);
    ck_assert_str_eq(entry(CH_PLUGIN_ABI)->name, "someone_else");
    dlclose(h);
  }
  registry_release(&r2);
}
END_TEST

/* Plugins loaded one after another get the same descriptor number: each
   load is still its own file (glibc would hand back the first plugin for
   a /proc/self/fd/N name it has seen). */
START_TEST(one_descriptor_number_many_plugins) {
  const struct plugin *a = NULL, *b = NULL, *c = NULL;
  struct ch_err err = {0};

  ck_assert_int_eq(registry_load(&reg, "t_chaos", &a, &err), CH_OK);
  expect_refused("t_badabi", "t_badabi.so", "ABI 99", NULL);
  ck_assert_int_eq(registry_load(&reg, "t_old", &b, &err), CH_OK);
  ck_assert_int_eq(registry_load(&reg, "t_future", &c, &err), CH_OK);
  ck_assert_str_eq(a->desc->name, "t_chaos");
  ck_assert_str_eq(b->desc->name, "t_old");
  ck_assert_str_eq(c->desc->name, "t_future");
}
END_TEST

START_TEST(missing_directory) {
  struct registry r2;
  struct ch_err err = {0};
  ck_assert_int_eq(registry_init(&r2, "/nonexistent/connhost", &err),
                   CH_E_CONFIG);
  ck_assert_msg(strstr(err.msg, "/nonexistent/connhost"), "%s", err.msg);
}
END_TEST

/* The names of a host-layout table, comma-separated. */
static void names_of(const char *const *first, size_t stride, char *out,
                     size_t n) {
  out[0] = '\0';
  for (const char *p = (const char *)first; *(const char *const *)p;
       p += stride)
    snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? "," : "",
             *(const char *const *)p);
}

/* The tables t_layout.c declares, as the host must see them. */
static void expect_layout_tables(const struct plugin *p) {
  const struct ch_plugin *d = p->desc;
  const struct ch_resource_type *t = plugin_type(d, "project");
  const struct ch_action_def *a = plugin_action(d, "ping");
  char buf[256];

  names_of(&d->options[0].name, sizeof(*d->options), buf, sizeof(buf));
  ck_assert_str_eq(buf, "users,prefix,token");
  ck_assert_uint_eq(d->options[2].flags, CH_OPT_SECRET);
  ck_assert_str_eq(d->options[1].def, "User");
  names_of(&d->types[0].id, sizeof(*d->types), buf, sizeof(buf));
  ck_assert_str_eq(buf, "user,group,project");
  ck_assert_ptr_nonnull(t);
  ck_assert_str_eq(t->parent, "group");
  ck_assert_uint_eq(t->caps, CH_CAP_SYNC);
  names_of(&plugin_type(d, "group")->entitlements[0].slug,
           sizeof(struct ch_entitlement_def), buf, sizeof(buf));
  ck_assert_str_eq(buf, "member,owner");
  ck_assert(
      plugin_list_has(plugin_entitlement(t, "viewer")->grantable_to, "group"));
  names_of(&d->actions[0].name, sizeof(*d->actions), buf, sizeof(buf));
  ck_assert_str_eq(buf, "ping,echo");
  ck_assert_ptr_nonnull(a);
  ck_assert_str_eq(a->required[0], "who");
  ck_assert_ptr_null(plugin_action(d, "echo")->required);
}

/* A plugin built against the ABI 1.0 header: a 1.0 descriptor, no layout
   sizes, so every table has the 1.0 stride. */
START_TEST(old_header_plugin_has_the_1_0_layout) {
  const struct plugin *p = NULL;
  struct ch_err err = {0};

  ck_assert_int_eq(registry_load(&reg, "t_old", &p, &err), CH_OK);
  ck_assert_uint_eq(p->desc->size, CH_PLUGIN_SIZE_V1);
  ck_assert(!CH_PLUGIN_HAS(p->desc, option_size));
  ck_assert(CH_PLUGIN_HAS(p->desc, action));
  ck_assert_uint_eq(p->layout.option, sizeof(struct ch_option));
  ck_assert_uint_eq(p->layout.resource, sizeof(struct ch_resource));
  expect_layout_tables(p);
}
END_TEST

/* A plugin laid out as a later header would be: longer descriptor and
   elements, walked by the strides it declares; the host's copy is in the
   host's layout. */
START_TEST(later_layout_is_walked_by_its_strides) {
  const struct plugin *p = NULL;
  struct ch_err err = {0};

  ck_assert_int_eq(registry_load(&reg, "t_future", &p, &err), CH_OK);
  ck_assert_uint_gt(p->desc->size, sizeof(struct ch_plugin));
  ck_assert_uint_gt(p->layout.option, sizeof(struct ch_option));
  ck_assert_uint_gt(p->layout.type, sizeof(struct ch_resource_type));
  ck_assert_uint_gt(p->layout.entitlement, sizeof(struct ch_entitlement_def));
  ck_assert_uint_gt(p->layout.action, sizeof(struct ch_action_def));
  ck_assert_uint_gt(p->layout.resource, sizeof(struct ch_resource));
  ck_assert_uint_eq(p->desc->option_size, sizeof(struct ch_option));
  expect_layout_tables(p);
}
END_TEST

static char logged[512];

static void capture_log(struct ch_hctx *hc, enum ch_log_level level,
                        const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(logged, sizeof(logged), fmt, ap);
  va_end(ap);
}

static char answered[64];

static int capture_output(struct ch_result *res, const char *text) {
  (void)res;
  snprintf(answered, sizeof(answered), "%s", text);
  return CH_OK;
}

/* Run t_future's echo with a result of the host's `size`, in a buffer of
   exactly that size: a 1.0-sized result has no `output`, and reading it
   would overflow. A full one gets the answer through output(). */
static void echo_on_result_of(const struct plugin *p, void *inst, size_t size) {
  struct ch_result *res = calloc(1, size);
  struct ch_kv arg = {"text", "hi"};
  struct ch_err err = {0};

  ck_assert_ptr_nonnull(res);
  if (CH_SIZE_HAS(size, struct ch_result, output))
    res->output = capture_output;
  answered[0] = '\0';
  ck_assert_int_eq(p->desc->action(inst, "echo", &arg, 1, res, &err), CH_OK);
  ck_assert_str_eq(res->message, "echo hi");
  ck_assert_str_eq(answered,
                   CH_SIZE_HAS(size, struct ch_result, output) ? "hi" : "");
  free(res);
}

/* t_future's deprovision (ABI 1.3) says "manual" only to a host whose
   table has max_outcome; an older one gets an error instead. */
static void manual_on_host(const struct plugin *p, void *inst, int knows) {
  struct ch_change ch = {.principal = {"user", "u1"}};
  struct ch_result res = {0};
  struct ch_err err = {0};
  int rc = p->desc->deprovision_account(inst, &ch, &res, &err);

  ck_assert_int_eq(rc, knows ? CH_OK : CH_E_UNSUPPORTED);
  if (knows) {
    ck_assert_int_eq(res.outcome, CH_MANUAL);
    ck_assert_str_eq(res.message, "remove u1 by hand");
  } else {
    ck_assert_str_eq(err.msg, "remove u1 by hand (this host predates manual "
                              "work)");
  }
}

/* Open t_future (built against today's header) on a copy of the host
   table cut to `size` bytes, in a buffer of exactly that size, so reading
   past it is a heap overflow (ASan, valgrind) rather than luck. */
static void open_on_host_of(size_t size) {
  const struct plugin *p = NULL;
  struct ch_host *h = malloc(size);
  struct ch_cfg cfg = {.tenant = "t", .instance = "i"};
  struct ch_err err = {0};
  void *inst = NULL;

  ck_assert_ptr_nonnull(h);
  memcpy(h, &host_table, size);
  h->size = (uint32_t)size;
  h->log = capture_log;
  ck_assert_int_eq(registry_load(&reg, "t_future", &p, &err), CH_OK);
  logged[0] = '\0';
  ck_assert_int_eq(p->desc->open(h, NULL, &cfg, &inst, &err), CH_OK);
  echo_on_result_of(p, inst, CH_HOST_SIZEOF(h, result, CH_RESULT_SIZE_V1));
  manual_on_host(p, inst, CH_HOST_HAS(h, max_outcome));
  p->desc->close(inst);
  free(h);
}

START_TEST(new_plugin_detects_an_old_host_table) {
  char want[256];

  snprintf(want, sizeof(want),
           "host table %zu bytes: log_enabled no, sink %zu, result %zu bytes",
           (size_t)CH_HOST_SIZE_V1, (size_t)CH_SINK_SIZE_V1,
           (size_t)CH_RESULT_SIZE_V1);
  open_on_host_of(CH_HOST_SIZE_V1);
  ck_assert_str_eq(logged, want);

  /* The same binary on this host's full table uses the new service. */
  snprintf(want, sizeof(want),
           "host table %zu bytes: log_enabled yes (debug off), sink %zu, "
           "result %zu bytes",
           sizeof(struct ch_host), sizeof(struct ch_sink),
           sizeof(struct ch_result));
  open_on_host_of(sizeof(struct ch_host));
  ck_assert_str_eq(logged, want);
}
END_TEST

/* The scan reports every .so: the good ones loaded, the bad ones with
   their reason. */
START_TEST(scan_reports_each_file) {
  struct scan_entry *e = NULL;
  struct ch_err err = {0};
  size_t n = 0, good = 0, bad = 0;
  int saw_badabi = 0;

  ck_assert_int_eq(registry_scan(&reg, &e, &n, &err), CH_OK);
  ck_assert_uint_ge(n, 6);
  for (size_t i = 0; i < n; i++) {
    if (e[i].plugin) {
      good++;
    } else {
      bad++;
      ck_assert_msg(e[i].error[0], "no reason for %s", e[i].file);
      if (strcmp(e[i].file, "t_badabi.so") == 0) {
        saw_badabi = 1;
        ck_assert_msg(strstr(e[i].error, "ABI 99"), "%s", e[i].error);
      }
    }
    if (i)
      ck_assert_int_lt(strcmp(e[i - 1].file, e[i].file), 0);
  }
  ck_assert_uint_ge(good, 1);
  ck_assert_uint_ge(bad, 5);
  ck_assert(saw_badabi);
  scan_entries_free(e, n);
}
END_TEST

static Suite *loader_suite(void) {
  Suite *s = suite_create("loader");
  TCase *tc = tcase_create("load");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, names_are_validated);
  tcase_add_test(tc, good_plugin_loads_once);
  tcase_add_test(tc, wrong_abi);
  tcase_add_test(tc, short_descriptor);
  tcase_add_test(tc, name_mismatch);
  tcase_add_test(tc, layout_size_below_abi_1);
  tcase_add_test(tc, missing_symbol);
  tcase_add_test(tc, missing_mandatory_op);
  tcase_add_test(tc, missing_file);
  tcase_add_test(tc, only_regular_files);
  tcase_add_test(tc, dlopen_failure_has_hint);
  tcase_add_test(tc, missing_directory);
  tcase_add_test(tc, parent_writable_by_others_is_refused);
  tcase_add_test(tc, plugin_dir_and_file_modes);
  tcase_add_test(tc, symlinked_plugin_dir);
  tcase_add_test(tc, plugin_owned_by_another_user);
  tcase_add_test(tc, swap_between_check_and_load);
  tcase_add_test(tc, one_descriptor_number_many_plugins);
  tcase_add_test(tc, scan_reports_each_file);
  tcase_add_test(tc, old_header_plugin_has_the_1_0_layout);
  tcase_add_test(tc, later_layout_is_walked_by_its_strides);
  tcase_add_test(tc, new_plugin_detects_an_old_host_table);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(loader_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
