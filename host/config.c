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
#include "db.h"     /* db_is_url: a store URL is not a path */
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
    free(tn->tickets.instance);
    free(tn->tickets.project);
    free(tn->tickets.issue_type);
  }
  free(c->tenants);
  cfg_node_free(c->root);
  free(c->path);
  free(c->dir);
  free(c->plugin_dir);
  free(c->output);
  free(c->format);
  free(c->serve_listen);
  free(c->serve_replica_id);
  if (c->serve_auth_token)
    buf_wipe_mem(c->serve_auth_token, strlen(c->serve_auth_token));
  free(c->serve_auth_token);
  free(c->store);
  free(c);
}

/* ---- the host's keys -------------------------------------------------- */

/* Each map of host keys is a key table the option engine resolves
   (cfg_resolve_host), as it does a plugin's options; the few forms it has
   no type for (a share "80%", a choice, a span up to "30d") are text to
   it and checked here. The order is the order errors list them in. */
#define KEY(name, type)                                                        \
  { CH_OPTION(name, type, 0, NULL, NULL) }
#define RANGED(name, type, noun, lo, hi)                                       \
  { CH_OPTION(name, type, 0, NULL, noun), CH_OPT_RANGE(lo, hi) }
#define BLOCK(name)                                                            \
  { CH_OPTION(name, CH_OPT_STRING, CFG_KEY_BLOCK, NULL, NULL) }

enum {
  TOP_PLUGIN_DIR,
  TOP_OUTPUT,
  TOP_FORMAT,
  TOP_WORKERS,
  TOP_MAX_PAGES,
  TOP_HTTP,
  TOP_MAX_SHRINK,
  TOP_INSECURE,
  TOP_ISOLATION,
  TOP_TENANTS,
  TOP_SCHEDULE,
  TOP_SERVE,
  TOP_STORE,
  TOP_KEEP_RUNS
};
static const struct ch_config_key top_keys[] = {
    KEY("plugin_dir", CH_OPT_PATH),
    KEY("output", CH_OPT_PATH),
    KEY("format", CH_OPT_STRING),
    RANGED("workers", CH_OPT_INT, NULL, "1", "256"),
    RANGED("max_pages", CH_OPT_INT, NULL, "1", "1000000000"),
    BLOCK("http"),
    KEY("max_shrink", CH_OPT_STRING),
    KEY("allow_insecure_plugin_dir", CH_OPT_BOOL),
    KEY("isolation", CH_OPT_STRING),
    BLOCK("tenants"),
    BLOCK("schedule"),
    BLOCK("serve"),
    KEY("store", CH_OPT_STRING), /* a path beside the config, or a URL */
    RANGED("keep_runs", CH_OPT_INT, NULL, "1", "100000"),
    {CH_OPTION_END}};

enum { HTTP_TIMEOUT, HTTP_CONNECT_TIMEOUT, HTTP_MAX_ATTEMPTS, HTTP_MAX_BODY };
static const struct ch_config_key http_keys[] = {
    RANGED("timeout_seconds", CH_OPT_NUMBER, "a number of seconds", "0.001",
           "86400"),
    RANGED("connect_timeout_seconds", CH_OPT_NUMBER, "a number of seconds",
           "0.001", "86400"),
    RANGED("max_attempts", CH_OPT_INT, NULL, "1", "20"),
    /* 1 GiB keeps the byte count inside a 32-bit long */
    RANGED("max_body_mb", CH_OPT_INT, NULL, "1", "1024"),
    {CH_OPTION_END}};

enum {
  SERVE_LISTEN,
  SERVE_AUTH_TOKEN,
  SERVE_GRACE,
  SERVE_REPLICA_ID,
  SERVE_LEASE_EXPIRY
};
static const struct ch_config_key serve_keys[] = {
    KEY("listen", CH_OPT_STRING),         KEY("auth_token", CH_OPT_STRING),
    KEY("shutdown_grace", CH_OPT_STRING), KEY("replica_id", CH_OPT_STRING),
    KEY("lease_expiry", CH_OPT_STRING),   {CH_OPTION_END}};

enum { SCHED_INTERVAL, SCHED_JITTER };
static const struct ch_config_key schedule_keys[] = {
    KEY("interval", CH_OPT_STRING),
    KEY("jitter", CH_OPT_STRING),
    {CH_OPTION_END}};

enum { TICKETS_INSTANCE, TICKETS_PROJECT, TICKETS_ISSUE_TYPE };
static const struct ch_config_key tickets_keys[] = {
    KEY("instance", CH_OPT_STRING),
    KEY("project", CH_OPT_STRING),
    KEY("issue_type", CH_OPT_STRING),
    {CH_OPTION_END}};

enum {
  INST_PLUGIN,
  INST_ENABLED,
  INST_PROVISIONING,
  INST_OPTIONS,
  INST_HTTP,
  INST_MAX_SHRINK,
  INST_ISOLATION,
  INST_TIMEOUT
};
static const struct ch_config_key instance_keys[] = {
    KEY("plugin", CH_OPT_STRING),
    KEY("enabled", CH_OPT_BOOL),
    KEY("provisioning", CH_OPT_BOOL),
    BLOCK("options"),
    BLOCK("http"),
    KEY("max_shrink", CH_OPT_STRING),
    KEY("isolation", CH_OPT_STRING),
    KEY("timeout", CH_OPT_STRING),
    {CH_OPTION_END}};

/* The resolved value of key `i`, or NULL when it is not given. */
static const struct ch_opt_value *given(const struct config_options *o,
                                        size_t i) {
  return o->values[i].set ? &o->values[i] : NULL;
}

/* The node key `i` of `map` was written at, for the checks below. */
static const struct cfg_node *node_of(const struct cfg_node *map,
                                      const struct ch_config_key *table,
                                      size_t i) {
  return cfg_get(map, table[i].name);
}

/* "80%" or 80: a share from 0 to 100 percent. */
static int host_percent(const struct cfg_node *n, const char *label,
                        const char *text, int *out, struct ch_err *err) {
  size_t len = strlen(text);
  long long v;
  char num[32];

  if (len && text[len - 1] == '%')
    len--;
  if (len < sizeof(num)) {
    memcpy(num, text, len);
    num[len] = '\0';
  }
  if (len >= sizeof(num) || cfg_parse_ll(num, &v) || v < 0 || v > 100)
    return cfg_fail(err, n, "'%s' must be a share from 0%% to 100%%, like 80%%",
                    label);
  *out = (int)v;
  return CH_OK;
}

static int host_span(const struct cfg_node *n, const char *label,
                     const char *text, long *out_ms, struct ch_err *err) {
  if (config_parse_duration(text, out_ms))
    return cfg_fail(err, n,
                    "'%s' must be a duration such as 30s, 15m, 1h or 1d (at "
                    "most 30 days), not '%s'",
                    label, text);
  return CH_OK;
}

/* `isolation: none | process` (host default or per instance). */
static int host_isolation(const struct cfg_node *n, const char *text,
                          enum config_isolation *out, struct ch_err *err) {
  if (strcmp(text, "none") == 0)
    *out = CFG_ISOLATION_NONE;
  else if (strcmp(text, "process") == 0)
    *out = CFG_ISOLATION_PROCESS;
  else
    return cfg_fail(err, n, "'isolation' must be none or process, not '%s'",
                    text);
  return CH_OK;
}

static int keep_text(const struct ch_opt_value *v, char **out,
                     struct ch_err *err) {
  *out = strdup(v->str);
  return *out ? CH_OK : cfg_nomem(err);
}

/* `schedule: {interval: 1h, jitter: 10%}`, host-wide or in a tenant. */
static int load_schedule(const struct config *c, const struct cfg_node *n,
                         const char *where, struct config_schedule *out,
                         struct ch_err *err) {
  struct config_options o;
  const struct ch_opt_value *v;
  int rc;

  if (n->kind != CFG_MAP)
    return cfg_fail(err, n, "%s: 'schedule' must be a map (interval, jitter)",
                    where);
  rc =
      cfg_resolve_host(c, n, schedule_keys, "'schedule'", "schedule.", &o, err);
  if (rc)
    return rc;
  if ((v = given(&o, SCHED_INTERVAL)))
    rc = host_span(node_of(n, schedule_keys, SCHED_INTERVAL),
                   "schedule.interval", v->str, &out->interval_ms, err);
  if (!rc && (v = given(&o, SCHED_JITTER))) {
    char *end = NULL;
    long pct = strtol(v->str, &end, 10);
    /* a bare 0 is no jitter whatever the unit; other bare numbers could
       mean percent or seconds, so they need the '%' */
    if (strcmp(v->str, "0") == 0)
      out->jitter_pct = 0;
    else if (end == v->str || strcmp(end, "%") != 0 || pct < 0 || pct > 100)
      rc = cfg_fail(err, node_of(n, schedule_keys, SCHED_JITTER),
                    "'schedule.jitter' must be a percentage of the interval "
                    "from 0%% to 100%%, such as 10%%");
    else
      out->jitter_pct = (int)pct;
  }
  config_options_release(&o);
  return rc;
}

/* `serve: {listen, auth_token, shutdown_grace, replica_id, lease_expiry}`. */
static int load_serve(struct config *c, const struct cfg_node *n,
                      struct ch_err *err) {
  const struct cfg_node *k = node_of(n, serve_keys, SERVE_AUTH_TOKEN);
  struct config_options o;
  const struct ch_opt_value *v;
  int rc;

  if (cfg_is_null(n))
    return CH_OK;
  if (n->kind != CFG_MAP)
    return cfg_fail(err, n, "'serve' must be a map, not %s",
                    cfg_kind_name(n->kind));
  rc = cfg_resolve_host(c, n, serve_keys, "'serve'", "serve.", &o, err);
  if (rc)
    return rc;
  if ((v = given(&o, SERVE_LISTEN)))
    rc = keep_text(v, &c->serve_listen, err);
  if (!rc && (v = given(&o, SERVE_AUTH_TOKEN))) {
    if (strlen(v->str) < 16) {
      rc = cfg_fail(err, k,
                    "'serve.auth_token' is too short: use at least 16 "
                    "characters (e.g. ${file:/run/secrets/connhost-token})");
    } else if (!(rc = keep_text(v, &c->serve_auth_token, err))) {
      log_add_secret(c->serve_auth_token);
      if (!strstr(k->value, "${"))
        log_warn("%s:%u:%u: 'serve.auth_token' is a secret written inline "
                 "in the config; use ${env:NAME} or ${file:PATH} instead",
                 k->file, k->line, k->col);
    }
  }
  if (!rc && (v = given(&o, SERVE_GRACE)))
    rc = host_span(node_of(n, serve_keys, SERVE_GRACE), "serve.shutdown_grace",
                   v->str, &c->serve_grace_ms, err);
  if (!rc && (v = given(&o, SERVE_REPLICA_ID)))
    rc = keep_text(v, &c->serve_replica_id, err);
  if (!rc && (v = given(&o, SERVE_LEASE_EXPIRY)))
    rc = host_span(node_of(n, serve_keys, SERVE_LEASE_EXPIRY),
                   "serve.lease_expiry", v->str, &c->serve_lease_ms, err);
  config_options_release(&o);
  return rc;
}

/* Seconds of a number the engine checked, as milliseconds. */
static long seconds_ms(const struct ch_opt_value *v) {
  return (long)(strtod(v->str, NULL) * 1000.0 + 0.5);
}

static int load_http(struct config *c, const struct cfg_node *http,
                     struct ch_err *err) {
  struct config_options o;
  const struct ch_opt_value *v;
  int rc;

  if (cfg_is_null(http))
    return CH_OK;
  if (http->kind != CFG_MAP)
    return cfg_fail(err, http, "'http' must be a map, not %s",
                    cfg_kind_name(http->kind));
  rc = cfg_resolve_host(c, http, http_keys, "'http'", "http.", &o, err);
  if (rc)
    return rc;
  if ((v = given(&o, HTTP_TIMEOUT)))
    c->http_timeout_ms = seconds_ms(v);
  if ((v = given(&o, HTTP_CONNECT_TIMEOUT)))
    c->http_connect_timeout_ms = seconds_ms(v);
  if ((v = given(&o, HTTP_MAX_ATTEMPTS)))
    c->http_max_attempts = (int)v->num;
  if ((v = given(&o, HTTP_MAX_BODY)))
    c->http_max_body_bytes = (long)v->num * 1024L * 1024L;
  config_options_release(&o);
  return CH_OK;
}

/* `plugin:`, or the instance's name when it is a plugin name. */
static int instance_plugin(struct config_instance *ci, const char *where,
                           const struct ch_opt_value *v,
                           const struct cfg_node *n,
                           const struct cfg_node *knode, struct ch_err *err) {
  if (v) {
    if (!loader_valid_name(v->str))
      return cfg_fail(err, n,
                      "%s: plugin name must match [a-z0-9_]+ (at most 64 "
                      "bytes)",
                      where);
    ci->plugin = strdup(v->str);
  } else {
    if (!loader_valid_name(ci->name))
      return cfg_fail(
          err, knode,
          "%s: '%s' is not a plugin name ([a-z0-9_]+); add 'plugin:' "
          "to say which plugin it uses",
          where, ci->name);
    ci->plugin = strdup(ci->name);
  }
  return ci->plugin ? CH_OK : cfg_nomem(err);
}

/* An instance's `options:` or `http:` map (checked against the plugin's
   table or options_http_table when the instance is prepared). */
static int instance_map(const struct cfg_node *val, size_t i, const char *where,
                        const struct cfg_node **out, struct ch_err *err) {
  const struct cfg_node *n = node_of(val, instance_keys, i);

  if (!n || cfg_is_null(n))
    return CH_OK;
  if (n->kind != CFG_MAP)
    return cfg_fail(err, n, "%s: '%s' must be a map, not %s", where,
                    instance_keys[i].name, cfg_kind_name(n->kind));
  *out = n;
  return CH_OK;
}

static int instance_keys_load(struct config *c, struct config_instance *ci,
                              const struct cfg_node *knode,
                              const struct cfg_node *val, const char *where,
                              struct ch_err *err) {
  const struct cfg_node *map = val->kind == CFG_MAP ? val : NULL;
  struct config_options o;
  const struct ch_opt_value *v;
  int rc = cfg_resolve_host(c, map, instance_keys, where, "", &o, err);

  if (rc)
    return rc;
  rc = instance_plugin(ci, where, given(&o, INST_PLUGIN),
                       node_of(map, instance_keys, INST_PLUGIN), knode, err);
  if ((v = given(&o, INST_ENABLED)))
    ci->enabled = (int)v->num;
  if ((v = given(&o, INST_PROVISIONING)))
    ci->provisioning = (int)v->num;
  if (!rc && (v = given(&o, INST_MAX_SHRINK)))
    rc = host_percent(node_of(map, instance_keys, INST_MAX_SHRINK),
                      "max_shrink", v->str, &ci->max_shrink, err);
  if (!rc && (v = given(&o, INST_ISOLATION)))
    rc = host_isolation(node_of(map, instance_keys, INST_ISOLATION), v->str,
                        &ci->isolation, err);
  if (!rc && (v = given(&o, INST_TIMEOUT)))
    rc = host_span(node_of(map, instance_keys, INST_TIMEOUT), "timeout", v->str,
                   &ci->timeout_ms, err);
  if (!rc)
    rc = instance_map(map, INST_OPTIONS, where, &ci->options, err);
  if (!rc)
    rc = instance_map(map, INST_HTTP, where, &ci->http, err);
  config_options_release(&o);
  return rc;
}

static int load_instance(struct config *c, struct config_tenant *tn,
                         const struct cfg_node *knode,
                         const struct cfg_node *val, struct config_instance *ci,
                         struct ch_err *err) {
  char where[300];

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
  return instance_keys_load(c, ci, knode, val, where, err);
}

/* `tickets: {instance, project, issue_type}` in a tenant; `instance` must
   be one of the tenant's (checked once they are all loaded). */
static int load_tickets(const struct config *c, const struct cfg_node *n,
                        struct config_tenant *tn, struct ch_err *err) {
  struct config_options o;
  const struct ch_opt_value *v;
  int rc;

  tn->tickets.node = n;
  if (n->kind != CFG_MAP)
    return cfg_fail(err, n,
                    "tenant '%s': 'tickets' must be a map (instance, project, "
                    "issue_type)",
                    tn->name);
  rc = cfg_resolve_host(c, n, tickets_keys, "'tickets'", "tickets.", &o, err);
  if (rc)
    return rc;
  if (!(v = given(&o, TICKETS_INSTANCE)))
    rc = cfg_fail(err, n,
                  "tenant '%s': 'tickets' needs 'instance', the instance that "
                  "opens the tickets",
                  tn->name);
  else
    rc = keep_text(v, &tn->tickets.instance, err);
  if (!rc && (v = given(&o, TICKETS_PROJECT)))
    rc = keep_text(v, &tn->tickets.project, err);
  if (!rc && (v = given(&o, TICKETS_ISSUE_TYPE)))
    rc = keep_text(v, &tn->tickets.issue_type, err);
  config_options_release(&o);
  return rc;
}

static int check_tickets(const struct config_tenant *tn, struct ch_err *err) {
  if (!tn->tickets.instance)
    return CH_OK;
  for (size_t i = 0; i < tn->ninstances; i++) {
    if (strcmp(tn->instances[i].name, tn->tickets.instance) == 0)
      return CH_OK;
  }
  return cfg_fail(err, cfg_get(tn->tickets.node, "instance"),
                  "tenant '%s': tickets.instance '%s' is not an instance of "
                  "the tenant",
                  tn->name, tn->tickets.instance);
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
    /* `tickets` says where the tenant's tickets go, not an instance */
    if (strcmp(val->keys[i], "tickets") == 0) {
      if ((rc = load_tickets(c, val->kids[i], tn, err)))
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
  return check_tickets(tn, err);
}

/* `store: PATH` or `store: postgresql://...` (default connhost.db beside
   the config; `none` turns the store off) and `keep_runs: N` (default 30). */
static int load_store(struct config *c, const struct config_options *o,
                      struct ch_err *err) {
  const struct cfg_node *n = node_of(c->root, top_keys, TOP_STORE);
  const struct ch_opt_value *v = given(o, TOP_STORE);

  c->keep_runs =
      given(o, TOP_KEEP_RUNS) ? (long)o->values[TOP_KEEP_RUNS].num : 30;
  if (n && n->kind == CFG_SCALAR && n->plain && strcmp(n->value, "none") == 0)
    return CH_OK;
  if (v && !v->str[0])
    return cfg_fail(err, n, "'store' must not be empty");
  if (v)
    c->store = db_is_url(v->str) ? strdup(v->str) : config_path(c, v->str);
  else
    c->store = config_path(c, "connhost.db");
  return c->store ? CH_OK : cfg_nomem(err);
}

static int load_tenants(struct config *c, struct ch_err *err) {
  const struct cfg_node *root = c->root, *tenants = cfg_get(root, "tenants");
  int rc;

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

/* The top-level keys, then the blocks and the tenants. */
static int load_top(struct config *c, const struct config_options *o,
                    struct ch_err *err) {
  const struct cfg_node *root = c->root, *n;
  const struct ch_opt_value *v;
  int rc = CH_OK;

  if ((v = given(o, TOP_PLUGIN_DIR)) &&
      (rc = keep_text(v, &c->plugin_dir, err)))
    return rc;
  if ((v = given(o, TOP_OUTPUT)) && (rc = keep_text(v, &c->output, err)))
    return rc;
  if ((v = given(o, TOP_FORMAT))) {
    if (strcmp(v->str, "json") != 0 && strcmp(v->str, "jsonl") != 0)
      return cfg_fail(err, node_of(root, top_keys, TOP_FORMAT),
                      "'format' must be json or jsonl");
    if ((rc = keep_text(v, &c->format, err)))
      return rc;
  }
  if ((v = given(o, TOP_WORKERS)))
    c->workers = (int)v->num;
  if ((v = given(o, TOP_MAX_PAGES)))
    c->max_pages = (long)v->num;
  if ((n = node_of(root, top_keys, TOP_HTTP)) && (rc = load_http(c, n, err)))
    return rc;
  c->max_shrink = -1;
  if ((v = given(o, TOP_MAX_SHRINK)) &&
      (rc = host_percent(node_of(root, top_keys, TOP_MAX_SHRINK), "max_shrink",
                         v->str, &c->max_shrink, err)))
    return rc;
  if ((v = given(o, TOP_INSECURE)))
    c->allow_insecure_plugin_dir = (int)v->num;
  if ((v = given(o, TOP_ISOLATION)) &&
      (rc = host_isolation(node_of(root, top_keys, TOP_ISOLATION), v->str,
                           &c->isolation, err)))
    return rc;
  c->schedule.jitter_pct = -1;
  if ((n = node_of(root, top_keys, TOP_SCHEDULE)) &&
      (rc = load_schedule(c, n, "the top-level map", &c->schedule, err)))
    return rc;
  if ((n = node_of(root, top_keys, TOP_SERVE)) && (rc = load_serve(c, n, err)))
    return rc;
  if ((rc = load_store(c, o, err)))
    return rc;
  return load_tenants(c, err);
}

static int load_model(struct config *c, struct ch_err *err) {
  struct config_options o;
  int rc;

  if (c->root->kind != CFG_MAP)
    return cfg_fail(err, c->root, "the config must be a map of keys, not %s",
                    cfg_kind_name(c->root->kind));
  rc = cfg_resolve_host(c, c->root, top_keys, "the top-level map", "", &o, err);
  if (rc)
    return rc;
  rc = load_top(c, &o, err);
  config_options_release(&o);
  return rc;
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
