/* SPDX-License-Identifier: MIT */
/* A test plugin for the engine and loader tests: good data or one fault. */

/*
 * Types: `user` (match key email=<id>@example.test) and `group` (slug
 * `member`, grantable to users). Every id starts with option `id_prefix`,
 * so tests can put '/', '#', '%', ':' or non-ASCII bytes in ids.
 *
 * Option `mode` picks the behaviour:
 *   ok           `users` users u1..uN and one group `everyone` holding them
 *                all, lists and grants paged by `page_size`
 *   open_fail    open() returns CH_E_AUTH "credentials refused by test"
 *   check_fail   check() returns CH_E_AUTH "check refused by test"
 *   list_fail    listing users fails with CH_E_AUTH on page 2
 *   no_id        the first user page also emits a user without an id
 *   bad_grant    the group's grants include one on `ghost#member`, a group
 *                that is never listed
 *   bad_slug     the group's grants include one with slug `owner`, which
 *                the type does not declare
 *   same_token   the user list's page 2 returns the token it was given
 *   endless      the user list always returns a new token (one user per
 *                page), for the page limit
 *   slow         each user page sleeps `delay_ms` (stopping early when the
 *                host is stopping); `pages` pages of `page_size` users
 *   leak_secret  open() logs, and check() and the user list fail with,
 *                a message containing the `secret` option: the host must
 *                redact it
 * Page tokens are "p<page index>"; the instance is read-only after open().
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, strdup */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <connhost/plugin.h>

#define TC_PREFIX_MAX 200

enum tc_mode {
  TC_OK = 0,
  TC_OPEN_FAIL,
  TC_CHECK_FAIL,
  TC_LIST_FAIL,
  TC_NO_ID,
  TC_BAD_TYPE,
  TC_BAD_GRANT,
  TC_BAD_SLUG,
  TC_SAME_TOKEN,
  TC_ENDLESS,
  TC_SLOW,
  TC_LEAK_SECRET,
  TC_CHATTY
};

static const char *const tc_modes[] = {
    "ok",       "open_fail",   "check_fail", "list_fail",  "no_id",
    "bad_type", "bad_grant",   "bad_slug",   "same_token", "endless",
    "slow",     "leak_secret", "chatty",     NULL};

static const struct ch_option tc_options[] = {
    {"mode", CH_OPT_STRING, 0, "ok", "which behaviour (see t_chaos.c)"},
    {"users", CH_OPT_INT, 0, "5", "number of users (mode ok)"},
    {"page_size", CH_OPT_INT, 0, "2", "records per page"},
    {"delay_ms", CH_OPT_INT, 0, "200", "sleep per user page (mode slow)"},
    {"pages", CH_OPT_INT, 0, "50", "user pages (mode slow)"},
    {"secret", CH_OPT_STRING, CH_OPT_SECRET, NULL,
     "a secret that mode leak_secret puts in messages"},
    {"id_prefix", CH_OPT_STRING, 0, "", "prefix of every id"},
    {NULL, 0, 0, NULL, NULL}};

static const char *const tc_to_users[] = {"user", NULL};
static const struct ch_entitlement_def tc_user_ents[] = {{NULL, NULL, NULL}};
static const struct ch_entitlement_def tc_group_ents[] = {
    {"member", "Member", tc_to_users}, {NULL, NULL, NULL}};

static const struct ch_resource_type tc_types[] = {
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = tc_user_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = "group",
     .display_name = "Group",
     .traits = CH_TRAIT_GROUP,
     .entitlements = tc_group_ents,
     .caps = CH_CAP_SYNC},
    {.id = NULL}};

struct tc_inst {
  const struct ch_host *host;
  struct ch_hctx *hc;
  enum tc_mode mode;
  long long users; /* how many users exist (and are members) */
  long long page_size;
  long long delay_ms;
  long long pages;
  char *secret; /* "" when unset */
  char *prefix;
};

static const struct ch_opt_value *tc_opt(const struct ch_cfg *cfg,
                                         const char *name) {
  for (size_t i = 0; tc_options[i].name && i < cfg->nvalues; i++) {
    if (strcmp(tc_options[i].name, name) == 0)
      return cfg->values[i].set ? &cfg->values[i] : NULL;
  }
  return NULL;
}

static const char *tc_str(const struct ch_cfg *cfg, const char *name,
                          const char *def) {
  const struct ch_opt_value *v = tc_opt(cfg, name);
  return v && v->str ? v->str : def;
}

static long long tc_num(const struct ch_cfg *cfg, const char *name,
                        long long def) {
  const struct ch_opt_value *v = tc_opt(cfg, name);
  return v ? v->num : def;
}

static void tc_close(void *vinst) {
  struct tc_inst *ti = vinst;

  if (!ti)
    return;
  free(ti->secret);
  free(ti->prefix);
  free(ti);
}

static int tc_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  struct tc_inst *ti = NULL;
  const char *mode = tc_str(cfg, "mode", "ok");
  int m = -1;
  int rc = CH_E_CONFIG;

  *instp = NULL;
  for (int i = 0; tc_modes[i]; i++) {
    if (strcmp(tc_modes[i], mode) == 0)
      m = i;
  }
  if (m < 0) {
    ch_err_set(err, CH_E_CONFIG, "unknown mode '%s'", mode);
    goto out;
  }
  if (m == TC_OPEN_FAIL) {
    rc = ch_err_set(err, CH_E_AUTH, "credentials refused by test");
    goto out;
  }
  ti = calloc(1, sizeof(*ti));
  if (!ti) {
    rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  ti->host = host;
  ti->hc = hc;
  ti->mode = (enum tc_mode)m;
  ti->users = tc_num(cfg, "users", 5);
  ti->page_size = tc_num(cfg, "page_size", 2);
  ti->delay_ms = tc_num(cfg, "delay_ms", 200);
  ti->pages = tc_num(cfg, "pages", 50);
  ti->secret = strdup(tc_str(cfg, "secret", ""));
  ti->prefix = strdup(tc_str(cfg, "id_prefix", ""));
  if (!ti->secret || !ti->prefix) {
    rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  if (ti->users < 0 || ti->page_size < 1 || ti->delay_ms < 0 || ti->pages < 1) {
    ch_err_set(err, CH_E_CONFIG,
               "users, page_size, delay_ms or pages out of range");
    goto out;
  }
  if (strlen(ti->prefix) > TC_PREFIX_MAX) {
    ch_err_set(err, CH_E_CONFIG, "id_prefix longer than %d bytes",
               TC_PREFIX_MAX);
    goto out;
  }
  /* In slow mode the users are whatever the pages hold. */
  if (ti->mode == TC_SLOW)
    ti->users = ti->pages * ti->page_size;
  if (ti->mode == TC_LEAK_SECRET)
    host->log(hc, CH_LOG_WARN, "opening with secret %s", ti->secret);
  *instp = ti;
  ti = NULL;
  rc = CH_OK;
out:
  tc_close(ti);
  return rc;
}

static int tc_check(void *vinst, struct ch_err *err) {
  struct tc_inst *ti = vinst;

  if (ti->mode == TC_CHECK_FAIL)
    return ch_err_set(err, CH_E_AUTH, "check refused by test");
  if (ti->mode == TC_LEAK_SECRET)
    return ch_err_set(err, CH_E_AUTH, "token %s refused by test", ti->secret);
  return CH_OK;
}

/* "p<n>" -> n; no token is page 0. */
static int tc_page(const char *token, long long *page, struct ch_err *err) {
  char *end;

  *page = 0;
  if (!token || !*token)
    return CH_OK;
  if (token[0] != 'p')
    return ch_err_set(err, CH_E_INVALID, "page token is not valid");
  *page = strtoll(token + 1, &end, 10);
  if (*end || *page < 1)
    return ch_err_set(err, CH_E_INVALID, "page token is not valid");
  return CH_OK;
}

static int tc_next(struct ch_sink *sink, long long page, struct ch_err *err) {
  char token[32];

  snprintf(token, sizeof(token), "p%lld", page);
  if (sink->next_page(sink, token))
    return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  return CH_OK;
}

static void tc_user_id(const struct tc_inst *ti, long long n, char *buf,
                       size_t sz) {
  snprintf(buf, sz, "%su%lld", ti->prefix, n);
}

/* User number `n` (1-based); with `no_id` the id is left out. */
static int tc_emit_user(const struct tc_inst *ti, struct ch_sink *sink,
                        long long n, int no_id /* 2: undeclared type */) {
  char id[TC_PREFIX_MAX + 32];
  char name[64];
  char email[sizeof(id) + 16];
  char mk[sizeof(email) + 8];
  const char *emails[] = {email, NULL};
  const char *keys[] = {mk, NULL};
  struct ch_resource r = {0};

  tc_user_id(ti, n, id, sizeof(id));
  snprintf(name, sizeof(name), "User %lld", n);
  snprintf(email, sizeof(email), "%s@example.test", id);
  snprintf(mk, sizeof(mk), "email=%s", email);
  r.type = no_id == 2 ? "nosuch" : "user";
  r.id = no_id == 1 ? NULL : id;
  r.display_name = name;
  r.status = CH_RES_ENABLED;
  r.account_type = CH_ACCOUNT_HUMAN;
  r.emails = emails;
  r.match_keys = keys;
  return sink->resource(sink, &r);
}

/* Sleep `ms` in short slices, giving up when the host is stopping. */
static int tc_sleep(const struct tc_inst *ti, long long ms) {
  while (ms > 0) {
    long long slice = ms < 10 ? ms : 10;
    struct timespec ts = {0, (long)slice * 1000000L};

    if (ti->host->stopping && ti->host->stopping(ti->hc))
      return 1;
    nanosleep(&ts, NULL);
    ms -= slice;
  }
  return 0;
}

static int tc_list_users(const struct tc_inst *ti, const char *token,
                         struct ch_sink *sink, struct ch_err *err) {
  long long page;
  long long first;
  long long last;
  int rc = tc_page(token, &page, err);

  if (rc)
    return rc;
  switch (ti->mode) {
  case TC_LEAK_SECRET:
    return ch_err_set(err, CH_E_AUTH, "token %s refused by test", ti->secret);
  case TC_LIST_FAIL:
    if (page == 1)
      return ch_err_set(err, CH_E_AUTH,
                        "credentials refused by test on page 2");
    break;
  case TC_ENDLESS:
    if (tc_emit_user(ti, sink, page + 1, 0))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
    return tc_next(sink, page + 1, err);
  case TC_SLOW:
    if (tc_sleep(ti, ti->delay_ms))
      return ch_err_set(err, CH_E_STOPPED, "stopping");
    break;
  case TC_CHATTY: /* a plugin that prints its progress on stdout */
    printf("chatty: listing page %lld\n", page);
    fflush(stdout);
    break;
  default:
    break;
  }
  first = page * ti->page_size;
  last = first + ti->page_size < ti->users ? first + ti->page_size : ti->users;
  for (long long n = first; n < last; n++) {
    if (tc_emit_user(ti, sink, n + 1, 0))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  /* no_id: a user without an id; bad_type: one of a type not declared */
  if ((ti->mode == TC_NO_ID || ti->mode == TC_BAD_TYPE) && page == 0 &&
      tc_emit_user(ti, sink, 0, ti->mode == TC_NO_ID ? 1 : 2))
    return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  /* Both faults need a page 2, whatever `users` is. The infinite-loop
     case: page 2 hands back the token it was given. */
  if (ti->mode == TC_SAME_TOKEN || ti->mode == TC_LIST_FAIL)
    return tc_next(sink, page >= 1 ? page : 1, err);
  if (last < ti->users)
    return tc_next(sink, page + 1, err);
  return CH_OK;
}

static int tc_list(void *vinst, const char *type, const struct ch_ref *parent,
                   const char *page_token, struct ch_sink *sink,
                   struct ch_err *err) {
  const struct tc_inst *ti = vinst;
  char id[TC_PREFIX_MAX + 32];
  struct ch_resource r = {0};

  if (strcmp(type, "user") == 0)
    return tc_list_users(ti, page_token, sink, err);
  if (strcmp(type, "group") != 0)
    return ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'", type);
  snprintf(id, sizeof(id), "%severyone", ti->prefix);
  r.type = "group";
  r.id = id;
  r.display_name = "Everyone";
  if (sink->resource(sink, &r))
    return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  return CH_OK;
}

static int tc_grant(struct ch_sink *sink, const char *group, const char *slug,
                    const char *user) {
  struct ch_grant g = {0};

  g.resource.type = "group";
  g.resource.id = group;
  g.slug = slug;
  g.principal.type = "user";
  g.principal.id = user;
  return sink->grant(sink, &g);
}

static int tc_grants(void *vinst, const struct ch_ref *resource,
                     const char *page_token, struct ch_sink *sink,
                     struct ch_err *err) {
  const struct tc_inst *ti = vinst;
  char group[TC_PREFIX_MAX + 32];
  char ghost[TC_PREFIX_MAX + 32];
  char user[TC_PREFIX_MAX + 32];
  long long page;
  long long first;
  long long last;
  int rc;

  if (strcmp(resource->type, "group") != 0)
    return CH_OK;
  snprintf(group, sizeof(group), "%severyone", ti->prefix);
  if (strcmp(resource->id, group) != 0)
    return ch_err_set(err, CH_E_NOTFOUND, "no group '%s'", resource->id);
  rc = tc_page(page_token, &page, err);
  if (rc)
    return rc;
  first = page * ti->page_size;
  last = first + ti->page_size < ti->users ? first + ti->page_size : ti->users;
  for (long long n = first; n < last; n++) {
    tc_user_id(ti, n + 1, user, sizeof(user));
    if (tc_grant(sink, group, "member", user))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  if (page == 0 && (ti->mode == TC_BAD_GRANT || ti->mode == TC_BAD_SLUG)) {
    snprintf(ghost, sizeof(ghost), "%sghost", ti->prefix);
    tc_user_id(ti, 1, user, sizeof(user));
    rc = ti->mode == TC_BAD_GRANT ? tc_grant(sink, ghost, "member", user)
                                  : tc_grant(sink, group, "owner", user);
    if (rc)
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  if (last < ti->users)
    return tc_next(sink, page + 1, err);
  return CH_OK;
}

static const struct ch_plugin tc_plugin = {
    CH_PLUGIN_INIT,
    .name = "t_chaos",
    .version = "0.0.1",
    .description = "engine test plugin: good data or one chosen fault",
    .options = tc_options,
    .types = tc_types,
    .open = tc_open,
    .close = tc_close,
    .check = tc_check,
    .list = tc_list,
    .grants = tc_grants,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &tc_plugin : NULL;
}
