/* SPDX-License-Identifier: MIT */
/* The config model: host keys, tenants and instances, loaded from the
   node tree (cfg_yaml.c) with values expanded (cfg_expand.c). */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg_int.h"
#include "loader.h" /* loader_valid_name: plugin names */
#include "log.h"
#include "options.h"
#include "util.h"

/* ---- the model -------------------------------------------------------- */

static void instance_release(struct config_instance *ci) {
  free(ci->tenant);
  free(ci->name);
  free(ci->plugin);
}

void config_free(struct config *c) {
  if (!c)
    return;
  for (size_t t = 0; t < c->ntenants; t++) {
    struct config_tenant *tn = &c->tenants[t];
    for (size_t i = 0; i < tn->ninstances; i++)
      instance_release(&tn->instances[i]);
    free(tn->instances);
    free(tn->name);
  }
  free(c->tenants);
  cfg_node_free(c->root);
  free(c->path);
  free(c->dir);
  free(c->plugin_dir);
  free(c->output);
  free(c->format);
  free(c->serve_listen);
  if (c->serve_auth_token)
    buf_wipe_mem(c->serve_auth_token, strlen(c->serve_auth_token));
  free(c->serve_auth_token);
  free(c->store);
  free(c);
}

/* One host-level scalar, expanded. `name` is how errors call the key. */
static int host_text(const struct config *c, const struct cfg_node *n,
                     const char *name, char **out, struct ch_err *err) {
  char what[96];

  *out = NULL;
  if (n->kind != CFG_SCALAR)
    return cfg_fail(err, n, "'%s' must be a single value, not %s", name,
                    cfg_kind_name(n->kind));
  snprintf(what, sizeof(what), "key '%s'", name);
  *out = config_expand(c, n, what, NULL, err);
  return *out ? CH_OK : err->code;
}

static int host_int(const struct config *c, const struct cfg_node *n,
                    const char *name, long long lo, long long hi, long *out,
                    struct ch_err *err) {
  char *text = NULL;
  long long v;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (cfg_parse_ll(text, &v))
    rc = cfg_fail(err, n, "'%s' must be an integer", name);
  else if (v < lo || v > hi)
    rc = cfg_fail(err, n, "'%s' must be between %lld and %lld", name, lo, hi);
  else
    *out = (long)v;
  free(text);
  return rc;
}

static int host_bool(const struct config *c, const struct cfg_node *n,
                     const char *name, int *out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (cfg_parse_bool(text, out))
    rc = cfg_fail(err, n, "'%s' must be true or false", name);
  free(text);
  return rc;
}

/* "80%" or 80: a share from 0 to 100 percent. */
static int host_percent(const struct config *c, const struct cfg_node *n,
                        const char *name, int *out, struct ch_err *err) {
  char *text = NULL;
  size_t len;
  long long v;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  len = strlen(text);
  if (len && text[len - 1] == '%')
    text[len - 1] = '\0';
  if (cfg_parse_ll(text, &v) || v < 0 || v > 100)
    rc = cfg_fail(err, n, "'%s' must be a share from 0%% to 100%%, like 80%%",
                  name);
  else
    *out = (int)v;
  free(text);
  return rc;
}

static int host_path(const struct config *c, const struct cfg_node *n,
                     const char *name, char **out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (!text[0]) {
    rc = cfg_fail(err, n, "'%s' must not be empty", name);
  } else {
    *out = config_path(c, text);
    if (!*out)
      rc = cfg_nomem(err);
  }
  free(text);
  return rc;
}

static int host_seconds(const struct config *c, const struct cfg_node *n,
                        const char *name, long *out_ms, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (cfg_parse_seconds_ms(text, 86400, out_ms))
    rc = cfg_fail(err, n,
                  "'%s' must be a number of seconds between 0.001 and 86400",
                  name);
  free(text);
  return rc;
}

static int host_duration(const struct config *c, const struct cfg_node *n,
                         const char *name, long *out_ms, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (config_parse_duration(text, out_ms))
    rc = cfg_fail(err, n,
                  "'%s' must be a duration such as 30s, 15m, 1h or 1d (at most "
                  "30 days), not '%s'",
                  name, text);
  free(text);
  return rc;
}

/* `schedule: {interval: 1h, jitter: 10%}`, host-wide or in a tenant. */
static int load_schedule(const struct config *c, const struct cfg_node *n,
                         const char *where, struct config_schedule *out,
                         struct ch_err *err) {
  static const char *const keys[] = {"interval", "jitter", NULL};
  const struct cfg_node *k;
  int rc;

  if (n->kind != CFG_MAP)
    return cfg_fail(err, n, "%s: 'schedule' must be a map (interval, jitter)",
                    where);
  rc = cfg_check_keys(n, keys, "'schedule'", err);
  if (rc)
    return rc;
  k = cfg_get(n, "interval");
  if (k &&
      (rc = host_duration(c, k, "schedule.interval", &out->interval_ms, err)))
    return rc;
  k = cfg_get(n, "jitter");
  if (k) {
    char *text = NULL, *end = NULL;
    long v;
    rc = host_text(c, k, "schedule.jitter", &text, err);
    if (rc)
      return rc;
    v = strtol(text, &end, 10);
    if (end == text || strcmp(end, "%") != 0 || v < 0 || v > 100)
      rc = cfg_fail(err, k,
                    "'schedule.jitter' must be a percentage of the interval "
                    "from 0%% to 100%%, such as 10%%");
    else
      out->jitter_pct = (int)v;
    free(text);
  }
  return rc;
}

/* `serve: {listen, auth_token, shutdown_grace}`. */
static int load_serve(struct config *c, const struct cfg_node *n,
                      struct ch_err *err) {
  static const char *const keys[] = {"listen", "auth_token", "shutdown_grace",
                                     NULL};
  const struct cfg_node *k;
  int rc;

  if (cfg_is_null(n))
    return CH_OK;
  if (n->kind != CFG_MAP)
    return cfg_fail(err, n, "'serve' must be a map, not %s",
                    cfg_kind_name(n->kind));
  rc = cfg_check_keys(n, keys, "'serve'", err);
  if (rc)
    return rc;
  k = cfg_get(n, "listen");
  if (k && (rc = host_text(c, k, "serve.listen", &c->serve_listen, err)))
    return rc;
  k = cfg_get(n, "auth_token");
  if (k) {
    rc = host_text(c, k, "serve.auth_token", &c->serve_auth_token, err);
    if (rc)
      return rc;
    if (strlen(c->serve_auth_token) < 16)
      return cfg_fail(err, k,
                      "'serve.auth_token' is too short: use at least 16 "
                      "characters (e.g. ${file:/run/secrets/connhost-token})");
    log_add_secret(c->serve_auth_token);
    if (k->kind == CFG_SCALAR && !strstr(k->value, "${"))
      log_warn("%s:%u:%u: 'serve.auth_token' is a secret written inline in "
               "the config; use ${env:NAME} or ${file:PATH} instead",
               k->file, k->line, k->col);
  }
  k = cfg_get(n, "shutdown_grace");
  if (k && (rc = host_duration(c, k, "serve.shutdown_grace", &c->serve_grace_ms,
                               err)))
    return rc;
  return CH_OK;
}

static int load_http(struct config *c, const struct cfg_node *http,
                     struct ch_err *err) {
  static const char *const keys[] = {"timeout_seconds",
                                     "connect_timeout_seconds", "max_attempts",
                                     "max_body_mb", NULL};
  const struct cfg_node *n;
  long v;
  int rc;

  if (cfg_is_null(http))
    return CH_OK;
  if (http->kind != CFG_MAP)
    return cfg_fail(err, http, "'http' must be a map, not %s",
                    cfg_kind_name(http->kind));
  rc = cfg_check_keys(http, keys, "'http'", err);
  if (rc)
    return rc;
  n = cfg_get(http, "timeout_seconds");
  if (n && (rc = host_seconds(c, n, "http.timeout_seconds", &c->http_timeout_ms,
                              err)))
    return rc;
  n = cfg_get(http, "connect_timeout_seconds");
  if (n && (rc = host_seconds(c, n, "http.connect_timeout_seconds",
                              &c->http_connect_timeout_ms, err)))
    return rc;
  n = cfg_get(http, "max_attempts");
  if (n) {
    rc = host_int(c, n, "http.max_attempts", 1, 20, &v, err);
    if (rc)
      return rc;
    c->http_max_attempts = (int)v;
  }
  n = cfg_get(http, "max_body_mb");
  if (n) {
    /* 1 GiB keeps the byte count inside a 32-bit long */
    rc = host_int(c, n, "http.max_body_mb", 1, 1024, &v, err);
    if (rc)
      return rc;
    c->http_max_body_bytes = v * 1024L * 1024L;
  }
  return CH_OK;
}

/* `isolation: none | process` (host default or per instance). */
static int host_isolation(const struct config *c, const struct cfg_node *n,
                          enum config_isolation *out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, "isolation", &text, err);

  if (rc)
    return rc;
  if (strcmp(text, "none") == 0)
    *out = CFG_ISOLATION_NONE;
  else if (strcmp(text, "process") == 0)
    *out = CFG_ISOLATION_PROCESS;
  else
    rc =
        cfg_fail(err, n, "'isolation' must be none or process, not '%s'", text);
  free(text);
  return rc;
}

static int load_instance(struct config *c, struct config_tenant *tn,
                         const struct cfg_node *knode,
                         const struct cfg_node *val, struct config_instance *ci,
                         struct ch_err *err) {
  static const char *const keys[] = {"plugin",    "enabled", "provisioning",
                                     "options",   "http",    "max_shrink",
                                     "isolation", "timeout", NULL};
  char where[300];
  const struct cfg_node *n;
  int rc;

  ci->enabled = 1;
  ci->max_shrink = -1;
  ci->node = val;
  ci->tenant = strdup(tn->name);
  ci->name = strdup(knode->value);
  if (!ci->tenant || !ci->name)
    return cfg_nomem(err);
  if (!cfg_valid_name(ci->name))
    return cfg_fail(
        err, knode,
        "instance name '%s' in tenant '%s' is not valid: use letters, "
        "digits, '_', '.' and '-'",
        ci->name, tn->name);
  snprintf(where, sizeof(where), "instance '%s/%s'", tn->name, ci->name);
  if (!cfg_is_null(val) && val->kind != CFG_MAP)
    return cfg_fail(err, val,
                    "%s must be a map (plugin, enabled, provisioning, "
                    "options, http, max_shrink, isolation, timeout), not %s",
                    where, cfg_kind_name(val->kind));
  if (val->kind == CFG_MAP) {
    rc = cfg_check_keys(val, keys, where, err);
    if (rc)
      return rc;
  }

  n = cfg_get(val, "plugin");
  if (n) {
    rc = host_text(c, n, "plugin", &ci->plugin, err);
    if (rc)
      return rc;
    if (!loader_valid_name(ci->plugin))
      return cfg_fail(
          err, n, "%s: plugin name must match [a-z0-9_]+ (at most 64 bytes)",
          where);
  } else {
    if (!loader_valid_name(ci->name))
      return cfg_fail(
          err, knode,
          "%s: '%s' is not a plugin name ([a-z0-9_]+); add 'plugin:' "
          "to say which plugin it uses",
          where, ci->name);
    ci->plugin = strdup(ci->name);
    if (!ci->plugin)
      return cfg_nomem(err);
  }
  n = cfg_get(val, "enabled");
  if (n && (rc = host_bool(c, n, "enabled", &ci->enabled, err)))
    return rc;
  n = cfg_get(val, "provisioning");
  if (n && (rc = host_bool(c, n, "provisioning", &ci->provisioning, err)))
    return rc;
  n = cfg_get(val, "max_shrink");
  if (n && (rc = host_percent(c, n, "max_shrink", &ci->max_shrink, err)))
    return rc;
  n = cfg_get(val, "isolation");
  if (n && (rc = host_isolation(c, n, &ci->isolation, err)))
    return rc;
  n = cfg_get(val, "timeout");
  if (n && (rc = host_duration(c, n, "timeout", &ci->timeout_ms, err)))
    return rc;
  n = cfg_get(val, "options");
  if (n && !cfg_is_null(n)) {
    if (n->kind != CFG_MAP)
      return cfg_fail(err, n, "%s: 'options' must be a map, not %s", where,
                      cfg_kind_name(n->kind));
    ci->options = n;
  }
  /* checked against options_http_table when the instance is prepared */
  n = cfg_get(val, "http");
  if (n && !cfg_is_null(n)) {
    if (n->kind != CFG_MAP)
      return cfg_fail(err, n, "%s: 'http' must be a map, not %s", where,
                      cfg_kind_name(n->kind));
    ci->http = n;
  }
  return CH_OK;
}

static int load_tenant(struct config *c, const struct cfg_node *knode,
                       const struct cfg_node *val, struct config_tenant *tn,
                       struct ch_err *err) {
  int rc;

  tn->node = val;
  tn->schedule.jitter_pct = -1;
  tn->name = strdup(knode->value);
  if (!tn->name)
    return cfg_nomem(err);
  if (!cfg_valid_name(tn->name))
    return cfg_fail(err, knode,
                    "tenant name '%s' is not valid: use letters, digits, '_', "
                    "'.' and '-'",
                    tn->name);
  if (cfg_is_null(val) || (val->kind == CFG_MAP && !val->n))
    return cfg_fail(err, knode, "tenant '%s' has no instances", tn->name);
  if (val->kind != CFG_MAP)
    return cfg_fail(err, val,
                    "tenant '%s' must be a map of instance names, not %s",
                    tn->name, cfg_kind_name(val->kind));
  tn->instances = calloc(val->n, sizeof(*tn->instances));
  if (!tn->instances)
    return cfg_nomem(err);
  for (size_t i = 0; i < val->n; i++) {
    /* `schedule` is the tenant's own schedule, not an instance */
    if (strcmp(val->keys[i], "schedule") == 0) {
      char where[300];
      snprintf(where, sizeof(where), "tenant '%s'", tn->name);
      rc = load_schedule(c, val->kids[i], where, &tn->schedule, err);
      if (rc)
        return rc;
      continue;
    }
    /* counted first so config_free releases a half-built instance */
    tn->ninstances++;
    rc = load_instance(c, tn, val->knodes[i], val->kids[i],
                       &tn->instances[tn->ninstances - 1], err);
    if (rc)
      return rc;
  }
  if (!tn->ninstances)
    return cfg_fail(err, knode, "tenant '%s' has no instances", tn->name);
  return CH_OK;
}

/* `store: PATH` (default connhost.db beside the config; `none` turns the
   store off) and `keep_runs: N` (default 30). */
static int load_store(struct config *c, const struct cfg_node *root,
                      struct ch_err *err) {
  const struct cfg_node *n = cfg_get(root, "store");
  int rc;

  c->keep_runs = 30;
  if (!n) {
    c->store = config_path(c, "connhost.db");
    if (!c->store)
      return cfg_nomem(err);
  } else if (!(n->kind == CFG_SCALAR && n->plain &&
               strcmp(n->value, "none") == 0)) {
    rc = host_path(c, n, "store", &c->store, err);
    if (rc)
      return rc;
  }
  n = cfg_get(root, "keep_runs");
  if (n && (rc = host_int(c, n, "keep_runs", 1, 100000, &c->keep_runs, err)))
    return rc;
  return CH_OK;
}

static int load_model(struct config *c, struct ch_err *err) {
  static const char *const keys[] = {
      "plugin_dir", "output",    "format",     "workers",
      "max_pages",  "http",      "max_shrink", "allow_insecure_plugin_dir",
      "isolation",  "tenants",   "schedule",   "serve",
      "store",      "keep_runs", NULL};
  const struct cfg_node *root = c->root, *n, *tenants;
  long v;
  int rc;

  if (root->kind != CFG_MAP)
    return cfg_fail(err, root, "the config must be a map of keys, not %s",
                    cfg_kind_name(root->kind));
  rc = cfg_check_keys(root, keys, "the top-level map", err);
  if (rc)
    return rc;

  n = cfg_get(root, "plugin_dir");
  if (n && (rc = host_path(c, n, "plugin_dir", &c->plugin_dir, err)))
    return rc;
  n = cfg_get(root, "output");
  if (n && (rc = host_path(c, n, "output", &c->output, err)))
    return rc;
  n = cfg_get(root, "format");
  if (n) {
    rc = host_text(c, n, "format", &c->format, err);
    if (rc)
      return rc;
    if (strcmp(c->format, "json") != 0 && strcmp(c->format, "jsonl") != 0)
      return cfg_fail(err, n, "'format' must be json or jsonl");
  }
  n = cfg_get(root, "workers");
  if (n) {
    rc = host_int(c, n, "workers", 1, 256, &v, err);
    if (rc)
      return rc;
    c->workers = (int)v;
  }
  n = cfg_get(root, "max_pages");
  if (n &&
      (rc = host_int(c, n, "max_pages", 1, 1000000000L, &c->max_pages, err)))
    return rc;
  n = cfg_get(root, "http");
  if (n && (rc = load_http(c, n, err)))
    return rc;
  c->max_shrink = -1;
  n = cfg_get(root, "max_shrink");
  if (n && (rc = host_percent(c, n, "max_shrink", &c->max_shrink, err)))
    return rc;
  n = cfg_get(root, "allow_insecure_plugin_dir");
  if (n && (rc = host_bool(c, n, "allow_insecure_plugin_dir",
                           &c->allow_insecure_plugin_dir, err)))
    return rc;
  n = cfg_get(root, "isolation");
  if (n && (rc = host_isolation(c, n, &c->isolation, err)))
    return rc;
  c->schedule.jitter_pct = -1;
  n = cfg_get(root, "schedule");
  if (n && (rc = load_schedule(c, n, "the top-level map", &c->schedule, err)))
    return rc;
  n = cfg_get(root, "serve");
  if (n && (rc = load_serve(c, n, err)))
    return rc;
  rc = load_store(c, root, err);
  if (rc)
    return rc;

  tenants = cfg_get(root, "tenants");
  if (!tenants)
    return cfg_fail(err, root, "missing required key 'tenants'");
  if (cfg_is_null(tenants) || (tenants->kind == CFG_MAP && !tenants->n))
    return cfg_fail(err, tenants,
                    "'tenants' is empty: add at least one tenant");
  if (tenants->kind != CFG_MAP)
    return cfg_fail(err, tenants,
                    "'tenants' must be a map of tenant names, not %s",
                    cfg_kind_name(tenants->kind));
  c->tenants = calloc(tenants->n, sizeof(*c->tenants));
  if (!c->tenants)
    return cfg_nomem(err);
  for (size_t i = 0; i < tenants->n; i++) {
    c->ntenants++;
    rc = load_tenant(c, tenants->knodes[i], tenants->kids[i], &c->tenants[i],
                     err);
    if (rc)
      return rc;
  }
  return CH_OK;
}

/* The absolute directory holding `path`, for resolving relative paths. */
static char *dir_of(const char *path) {
  char *dir = util_dirname(path), *abs;

  if (!dir)
    return NULL;
  abs = realpath(dir, NULL);
  free(dir);
  return abs;
}

int config_load(const char *path, struct config **out, struct ch_err *err) {
  struct config *c = NULL;
  struct ch_err spare;
  char *buf = NULL;
  size_t len = 0;
  int rc = CH_E_NOMEM;

  *out = NULL;
  if (!err)
    err = &spare;
  c = calloc(1, sizeof(*c));
  if (!c || !(c->path = strdup(path))) {
    rc = cfg_nomem(err);
    goto out;
  }
  if (cfg_read_file(path, CFG_MAX_FILE, &buf, &len)) {
    rc = ch_err_set(err, CH_E_CONFIG, "%s: cannot read config file: %s", path,
                    errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
    goto out;
  }
  c->dir = dir_of(path);
  if (!c->dir) {
    rc = ch_err_set(err, CH_E_CONFIG, "%s: cannot resolve its directory: %s",
                    path, strerror(errno));
    goto out;
  }
  rc = cfg_parse_yaml(c->path, buf, len, &c->root, err);
  if (rc)
    goto out;
  rc = load_model(c, err);
  if (rc)
    goto out;
  *out = c;
  c = NULL;
out:
  free(buf);
  config_free(c);
  return rc;
}
