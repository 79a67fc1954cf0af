/* SPDX-License-Identifier: MIT */
/* Connector instances, the host services table plugins call into, and
   the dispatch layer every call into a plugin goes through. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"
#include "isolate.h"
#include "log.h"
#include "options.h"
#include "stop.h"
#include "util.h"

static void host_vlog(struct ch_hctx *hc, enum ch_log_level level,
                      const char *fmt, va_list ap) {
  log_vmsg(hc ? hc->label : NULL, level, fmt, ap);
}

static void host_log(struct ch_hctx *hc, enum ch_log_level level,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  host_vlog(hc, level, fmt, ap);
  va_end(ap);
}

static int host_log_enabled(struct ch_hctx *hc, enum ch_log_level level) {
  (void)hc;
  return log_enabled(level);
}

/* `rec` as a host-layout structure of `size` bytes: itself when the
   plugin's `have` bytes cover it, else a copy in `buf` zero past `have`. */
static const void *widen(const void *rec, size_t have, void *buf, size_t size) {
  if (!rec || have >= size)
    return rec;
  memset(buf, 0, size);
  memcpy(buf, rec, have);
  return buf;
}

/* A plugin that still forwards its own settings overrides the http:
   block only where it sets something. */
static int host_http_setup(struct ch_hctx *hc, const struct ch_http_conf *conf,
                           struct ch_err *err) {
  struct ch_http_conf buf, merged = hc->http_base;

  conf = widen(conf, hc->layout->http_conf, &buf, sizeof(buf));
  if (!conf)
    return http_client_setup(hc->http, NULL, err);
  if (conf->ca_file && *conf->ca_file)
    merged.ca_file = conf->ca_file;
  if (conf->max_rps != 0)
    merged.max_rps = conf->max_rps;
  if (conf->timeout_ms)
    merged.timeout_ms = conf->timeout_ms;
  if (conf->connect_timeout_ms)
    merged.connect_timeout_ms = conf->connect_timeout_ms;
  return http_client_setup(hc->http, &merged, err);
}

/* The response is filled in the host's layout and copied out in the
   plugin's. */
static int host_http(struct ch_hctx *hc, const struct ch_http_req *req,
                     struct ch_http_resp *resp, struct ch_err *err) {
  struct ch_http_req rq;
  struct ch_http_resp rs;
  int rc;

  req = widen(req, hc->layout->http_req, &rq, sizeof(rq));
  if (hc->layout->http_resp >= sizeof(rs))
    return http_request(hc->http, req, resp, err);
  rc = http_request(hc->http, req, &rs, err);
  memcpy(resp, &rs, hc->layout->http_resp);
  return rc;
}

/* The host cannot tell whose build a response came from, so it touches
   only first-ABI-1 fields (appended ones must not own memory). */
static void host_http_free(struct ch_http_resp *resp) {
  struct ch_http_resp cur = {0};

  if (!resp)
    return;
  memcpy(&cur, resp, CH_HTTP_RESP_SIZE_V1);
  http_resp_free(&cur);
  memset(resp, 0, CH_HTTP_RESP_SIZE_V1);
}

static int host_http_error(struct ch_hctx *hc, const struct ch_http_resp *resp,
                           const char *what, struct ch_err *err) {
  (void)hc;
  return http_error(resp, what, err);
}

static int host_stopping(struct ch_hctx *hc) {
  (void)hc;
  return stop_requested() != 0;
}

static int host_dry_run(struct ch_hctx *hc) { return hc && hc->dry_run; }

const struct ch_host host_table = {
    .abi = CH_PLUGIN_ABI,
    .size = sizeof(struct ch_host),
    .log = host_log,
    .vlog = host_vlog,
    .http_setup = host_http_setup,
    .http = host_http,
    .http_free = host_http_free,
    .http_error = host_http_error,
    .url_encode = http_url_encode,
    .url_query_get = http_url_query_get,
    .now_ms = util_wall_ms,
    .stopping = host_stopping,
    .dry_run = host_dry_run,
    .log_enabled = host_log_enabled,
    .sink_size = sizeof(struct ch_sink),
    .cfg_size = sizeof(struct ch_cfg),
    .change_size = sizeof(struct ch_change),
    .account_size = sizeof(struct ch_account),
    .result_size = sizeof(struct ch_result),
    .max_outcome = CH_MANUAL,
};

/* The http: block, and the deprecated per-plugin aliases of its keys
   (options.h) taken from the plugin's options with a warning. */
static int prepare_http(struct instance *in, const struct config *c,
                        struct ch_err *err) {
  const struct config_instance *ci = in->ci;
  const struct plugin *p = in->plugin;
  struct options_http *h;
  int rc;

  rc = config_resolve_block(c, ci, ci->http, options_http_table,
                            "the 'http' block", &in->http_opts, err);
  if (rc != CH_OK)
    return rc;
  h = options_fill(options_http_table, in->http_opts.values, in->http_opts.n,
                   sizeof(*h));
  if (!h)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  for (size_t i = p->nkeys; i < in->opts.n && rc == CH_OK; i++) {
    const struct ch_opt_value *v = &in->opts.values[i];
    const struct cfg_node *n = cfg_get(ci->options, v->name);

    if (!v->set)
      continue;
    if (cfg_get(ci->http, v->name)) {
      rc = ch_err_set(err, CH_E_CONFIG,
                      "%s:%u:%u: instance '%s/%s': '%s' is set both in "
                      "options and in the http block: keep the http one",
                      n->file, n->line, n->col, ci->tenant, ci->name, v->name);
      break;
    }
    log_msg(in->hctx.label, CH_LOG_WARN,
            "%s:%u:%u: option '%s' is deprecated: move it to the instance's "
            "'http:' block (docs/config.md)",
            n->file, n->line, n->col, v->name);
    if (strcmp(v->name, "ca_file") == 0)
      h->ca_file = v->str;
    else
      h->max_rps = strtod(v->str, NULL);
  }
  in->hctx.http_base.ca_file = h->ca_file;
  in->hctx.http_base.max_rps = h->max_rps;
  in->hctx.http_base.timeout_ms = (long)h->timeout_ms;
  in->hctx.http_base.connect_timeout_ms = (long)h->connect_timeout_ms;
  free(h);
  if (rc == CH_OK)
    rc = http_client_setup(in->hctx.http, &in->hctx.http_base, err);
  return rc;
}

int instance_prepare(struct instance *in, const struct config *c,
                     const struct config_instance *ci,
                     const struct plugin *plugin, struct ch_err *err) {
  char owner[128];
  size_t len;
  int rc;

  memset(in, 0, sizeof(*in));
  pthread_mutex_init(&in->lock, NULL);
  in->ci = ci;
  in->plugin = plugin;
  in->graph_index = -1;
  in->hctx.layout = &plugin->layout;
  len = strlen(plugin->name) + strlen(ci->tenant) + strlen(ci->name) + 3;
  in->hctx.label = malloc(len);
  if (!in->hctx.label)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  snprintf(in->hctx.label, len, "%s:%s/%s", plugin->name, ci->tenant, ci->name);
  in->hctx.http = http_client_new(in->hctx.label);
  if (!in->hctx.http)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  snprintf(owner, sizeof(owner), "plugin '%s'", plugin->name);
  rc = config_resolve_block(c, ci, ci->options, plugin->keys, owner, &in->opts,
                            err);
  if (rc != CH_OK)
    return rc;
  rc = prepare_http(in, c, err);
  if (rc != CH_OK)
    return rc;
  if (plugin->desc->config_size) {
    in->conf = options_fill(plugin->keys, in->opts.values, plugin->nkeys,
                            plugin->desc->config_size);
    if (!in->conf)
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  in->cfg.config = in->conf;
  in->cfg.tenant = ci->tenant;
  in->cfg.instance = ci->name;
  in->cfg.config_dir = c->dir;
  in->cfg.provisioning = ci->provisioning;
  in->cfg.nvalues = plugin->nkeys; /* the aliases are the host's */
  in->cfg.values = in->opts.values;
  return CH_OK;
}

/* ---- dispatch --------------------------------------------------------- */

/* Whether the plugin has op `op`: its descriptor reaches it and it is set
   (the host's copy reads NULL past the plugin's size, and says so). */
#define HAS_OP(in, op)                                                         \
  (CH_PLUGIN_HAS((in)->plugin->desc, op) && (in)->plugin->desc->op)

/* Where a crash happened: the fatal-signal handler (stop.h) and, in a
   plugin process, the host watching it (isolate.h) both need the op. */
static void op_mark(const struct instance *in, const char *op,
                    const char *arg) {
  stop_enter_op(in->hctx.label, op, arg);
  isolate_op_enter(op, arg);
}

static void op_unmark(void) {
  stop_leave_op();
  isolate_op_leave();
}

/* Every op call starts with a clean error buffer, and names itself to the
   fatal-signal handler (stop.h) so a crash says where it happened. */
static void op_begin(const struct instance *in, const char *op, const char *arg,
                     struct ch_err *err) {
  err->code = 0;
  err->msg[0] = '\0';
  op_mark(in, op, arg);
}

static int op_missing(const struct instance *in, const char *op,
                      struct ch_err *err) {
  op_unmark();
  return ch_err_set(err, CH_E_UNSUPPORTED, "plugin '%s' has no '%s' op",
                    in->plugin->name, op);
}

/* A failure always has a code and a message, with no secret in it. */
static int op_end(int rc, struct ch_err *err) {
  char clean[sizeof(err->msg)];

  op_unmark();
  if (rc == CH_OK)
    return rc;
  if (!err->msg[0])
    snprintf(err->msg, sizeof(err->msg), "%s", ch_strerror(rc));
  err->code = rc;
  log_redact(err->msg, clean, sizeof(clean));
  memcpy(err->msg, clean, sizeof(err->msg));
  return rc;
}

int instance_open(struct instance *in, struct ch_err *err) {
  int rc;

  op_begin(in, "open", NULL, err);
  rc =
      in->plugin->desc->open(&host_table, &in->hctx, &in->cfg, &in->pinst, err);
  if (rc != CH_OK)
    in->pinst = NULL;
  return op_end(rc, err);
}

int instance_check(struct instance *in, struct ch_err *err) {
  op_begin(in, "check", NULL, err);
  if (!HAS_OP(in, check))
    return op_missing(in, "check", err);
  return op_end(in->plugin->desc->check(in->pinst, err), err);
}

/* The sink a plugin is given: records in the plugin's layout reach the
   caller's sink in the host's. */
struct op_sink {
  struct ch_sink sink; /* first: the callbacks cast back */
  struct ch_sink *to;
  const struct plugin_layout *layout;
};

static int op_sink_resource(struct ch_sink *s, const struct ch_resource *r) {
  struct op_sink *os = (struct op_sink *)s;
  struct ch_resource buf;
  return os->to->resource(os->to,
                          widen(r, os->layout->resource, &buf, sizeof(buf)));
}

static int op_sink_grant(struct ch_sink *s, const struct ch_grant *g) {
  struct op_sink *os = (struct op_sink *)s;
  struct ch_grant buf;
  return os->to->grant(os->to, widen(g, os->layout->grant, &buf, sizeof(buf)));
}

static int op_sink_next_page(struct ch_sink *s, const char *token) {
  struct op_sink *os = (struct op_sink *)s;
  return os->to->next_page(os->to, token);
}

/* Since ABI 1.2; a plugin calls it only when the host's sink size says
   it is there, and the host's own sinks may leave it unset. */
static int op_sink_expect(struct ch_sink *s, uint64_t total) {
  struct op_sink *os = (struct op_sink *)s;
  return os->to->expect ? os->to->expect(os->to, total) : 0;
}

#define OP_SINK(in, to)                                                        \
  {                                                                            \
    {op_sink_resource, op_sink_grant, op_sink_next_page, op_sink_expect},      \
        (to), &(in)->plugin->layout                                            \
  }

int instance_list(struct instance *in, const char *type,
                  const struct ch_ref *parent, const char *token,
                  struct ch_sink *sink, struct ch_err *err) {
  struct op_sink os = OP_SINK(in, sink);
  int rc;

  op_begin(in, "list", type, err);
  rc = in->plugin->desc->list(in->pinst, type, parent, token, &os.sink, err);
  in->pages++;
  return op_end(rc, err);
}

int instance_grants(struct instance *in, const struct ch_ref *resource,
                    const char *token, struct ch_sink *sink,
                    struct ch_err *err) {
  struct op_sink os = OP_SINK(in, sink);
  int rc;

  op_begin(in, "grants", resource->type, err);
  if (!HAS_OP(in, grants))
    return op_missing(in, "grants", err);
  rc = in->plugin->desc->grants(in->pinst, resource, token, &os.sink, err);
  in->pages++;
  return op_end(rc, err);
}

int instance_grant(struct instance *in, const struct ch_change *change,
                   struct ch_result *result, struct ch_err *err) {
  op_begin(in, "grant", NULL, err);
  if (!HAS_OP(in, grant))
    return op_missing(in, "grant", err);
  return op_end(in->plugin->desc->grant(in->pinst, change, result, err), err);
}

int instance_revoke(struct instance *in, const struct ch_change *change,
                    struct ch_result *result, struct ch_err *err) {
  op_begin(in, "revoke", NULL, err);
  if (!HAS_OP(in, revoke))
    return op_missing(in, "revoke", err);
  return op_end(in->plugin->desc->revoke(in->pinst, change, result, err), err);
}

int instance_provision(struct instance *in, const struct ch_account *account,
                       struct ch_result *result, struct ch_err *err) {
  op_begin(in, "provision_account", NULL, err);
  if (!HAS_OP(in, provision_account))
    return op_missing(in, "provision_account", err);
  return op_end(
      in->plugin->desc->provision_account(in->pinst, account, result, err),
      err);
}

int instance_deprovision(struct instance *in, const struct ch_change *change,
                         struct ch_result *result, struct ch_err *err) {
  op_begin(in, "deprovision_account", NULL, err);
  if (!HAS_OP(in, deprovision_account))
    return op_missing(in, "deprovision_account", err);
  return op_end(
      in->plugin->desc->deprovision_account(in->pinst, change, result, err),
      err);
}

int instance_action(struct instance *in, const char *name,
                    const struct ch_kv *args, size_t nargs,
                    struct ch_result *result, struct ch_err *err) {
  op_begin(in, "action", name, err);
  if (!HAS_OP(in, action))
    return op_missing(in, "action", err);
  return op_end(
      in->plugin->desc->action(in->pinst, name, args, nargs, result, err), err);
}

void instance_http_stats(const struct instance *in, struct http_stats *st) {
  /* an isolated instance's requests were all the child's; they arrive
     while a progress line may be reading them */
  if (in->isolated) {
    pthread_mutex_lock((pthread_mutex_t *)&in->lock);
    *st = in->child_http;
    pthread_mutex_unlock((pthread_mutex_t *)&in->lock);
  } else {
    http_client_stats(in->hctx.http, st);
  }
}

void instance_set_child_http(struct instance *in, const struct http_stats *st) {
  pthread_mutex_lock(&in->lock);
  in->child_http = *st;
  pthread_mutex_unlock(&in->lock);
}

void instance_set_dry_run(struct instance *in, FILE *out) {
  in->hctx.dry_run = 1;
  http_client_set_dry_run(in->hctx.http, out);
}

void instance_release(struct instance *in) {
  if (!in || !in->ci)
    return;
  if (in->pinst) {
    op_mark(in, "close", NULL);
    in->plugin->desc->close(in->pinst);
    op_unmark();
  }
  in->pinst = NULL;
  config_options_release(&in->opts);
  config_options_release(&in->http_opts);
  free(in->conf);
  http_client_free(in->hctx.http);
  free(in->hctx.label);
  pthread_mutex_destroy(&in->lock);
  in->ci = NULL;
}

/* Keep the first error only. */
static void record_error(struct instance *in, const char *clean) {
  pthread_mutex_lock(&in->lock);
  if (!in->failed) {
    snprintf(in->error, sizeof(in->error), "%s", clean);
    in->failed = 1;
  }
  pthread_mutex_unlock(&in->lock);
  /* Its other requests would only be thrown away: stop their retries. */
  http_client_cancel(in->hctx.http);
}

void instance_fail(struct instance *in, const char *fmt, ...) {
  char msg[sizeof(in->error)], clean[sizeof(in->error)];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  log_redact(msg, clean, sizeof(clean));
  record_error(in, clean);
  log_msg(in->hctx.label, CH_LOG_ERROR, "%s", clean);
}

void instance_fail_logged(struct instance *in, const char *msg) {
  char clean[sizeof(in->error)];

  log_redact(msg, clean, sizeof(clean));
  record_error(in, clean);
}

int instance_failed(struct instance *in) { return in->failed; }
