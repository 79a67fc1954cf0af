/* SPDX-License-Identifier: MIT */
/* Connector instances and the host services table plugins call into. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"
#include "log.h"
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

static int host_http_setup(struct ch_hctx *hc, const struct ch_http_conf *conf,
                           struct ch_err *err) {
  return http_client_setup(hc->http, conf, err);
}

static int host_http(struct ch_hctx *hc, const struct ch_http_req *req,
                     struct ch_http_resp *resp, struct ch_err *err) {
  return http_request(hc->http, req, resp, err);
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
    .http_free = http_resp_free,
    .http_error = host_http_error,
    .url_encode = http_url_encode,
    .url_query_get = http_url_query_get,
    .now_ms = util_wall_ms,
    .stopping = host_stopping,
    .dry_run = host_dry_run,
};

int instance_prepare(struct instance *in, const struct config *c,
                     const struct config_instance *ci,
                     const struct plugin *plugin, struct ch_err *err) {
  size_t len;
  int rc;

  memset(in, 0, sizeof(*in));
  pthread_mutex_init(&in->lock, NULL);
  in->ci = ci;
  in->plugin = plugin;
  in->graph_index = -1;
  len = strlen(plugin->name) + strlen(ci->tenant) + strlen(ci->name) + 3;
  in->hctx.label = malloc(len);
  if (!in->hctx.label)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  snprintf(in->hctx.label, len, "%s:%s/%s", plugin->name, ci->tenant, ci->name);
  in->hctx.http = http_client_new(in->hctx.label);
  if (!in->hctx.http)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  rc = config_resolve_options(c, ci, plugin->desc->options, plugin->name,
                              &in->opts, err);
  if (rc != CH_OK)
    return rc;
  in->cfg.tenant = ci->tenant;
  in->cfg.instance = ci->name;
  in->cfg.config_dir = c->dir;
  in->cfg.provisioning = ci->provisioning;
  in->cfg.nvalues = in->opts.n;
  in->cfg.values = in->opts.values;
  return CH_OK;
}

int instance_open(struct instance *in, struct ch_err *err) {
  int rc;

  err->code = 0;
  err->msg[0] = '\0';
  rc =
      in->plugin->desc->open(&host_table, &in->hctx, &in->cfg, &in->pinst, err);
  if (rc != CH_OK) {
    in->pinst = NULL;
    if (!err->msg[0])
      ch_err_set(err, rc, "open failed (%d)", rc);
    err->code = rc;
  }
  return rc;
}

void instance_set_dry_run(struct instance *in, FILE *out) {
  in->hctx.dry_run = 1;
  http_client_set_dry_run(in->hctx.http, out);
}

void instance_release(struct instance *in) {
  if (!in || !in->ci)
    return;
  if (in->pinst)
    in->plugin->desc->close(in->pinst);
  in->pinst = NULL;
  config_options_release(&in->opts);
  http_client_free(in->hctx.http);
  free(in->hctx.label);
  pthread_mutex_destroy(&in->lock);
  in->ci = NULL;
}

void instance_fail(struct instance *in, const char *fmt, ...) {
  char msg[sizeof(in->error)], clean[sizeof(in->error)];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  log_redact(msg, clean, sizeof(clean));
  pthread_mutex_lock(&in->lock);
  if (!in->failed) {
    snprintf(in->error, sizeof(in->error), "%s", clean);
    in->failed = 1;
  }
  pthread_mutex_unlock(&in->lock);
  log_msg(in->hctx.label, CH_LOG_ERROR, "%s", clean);
}

int instance_failed(struct instance *in) { return in->failed; }
