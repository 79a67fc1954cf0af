/* SPDX-License-Identifier: MIT */
/* The `serve` HTTP routes: /healthz, /readyz, /metrics, POST /api/v1/sync
   and the explorer, on the listener of httpd.c. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explore.h"
#include "httpd.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "serve.h"
#include "store.h"
#include "util.h"

/* Health checks, and the explorer's style sheet and script (they hold no
   data; its pages do). */
const char *const serve_open_paths[] = {
    "/healthz", "/readyz", "/explore.js", "/explore.css", "/login", NULL};

static void reply(struct httpd_reply *rp, int status, const char *fmt, ...)
    CH_PRINTF(3, 4);
static void reply(struct httpd_reply *rp, int status, const char *fmt, ...) {
  va_list ap;
  char buf[512];

  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  rp->status = status;
  rp->body = strdup(buf);
}

/* Why the service is not ready, or NULL; lock held. A SQLite store must
   open (a read: it never waits on a run being recorded); one not written
   yet is fine as long as its directory takes the file. A PostgreSQL store
   must answer the lease connection. */
static const char *not_ready(const struct serve *sv, char *why, size_t n) {
  const char *path;
  struct store *st = NULL;
  struct ch_err err = {0};
  char *dir;
  int dir_ok;

  if (sv->stopping)
    return "shutting down";
  if (!sv->cur || !sv->cur->config)
    return "no config loaded";
  path = sv->cur->config->store;
  if (!path)
    return NULL;
  if (sv->leases) /* a PostgreSQL store: no file to look at */
    return leases_not_ready(sv->leases, why, n);
  if (!store_missing(path)) {
    if (store_open(path, 0, &st, &err) != CH_OK) {
      snprintf(why, n, "%s", err.msg);
      return why;
    }
    store_close(st);
    return NULL;
  }
  dir = util_dirname(path);
  dir_ok = dir && access(dir, W_OK | X_OK) == 0;
  free(dir);
  if (dir_ok)
    return NULL;
  snprintf(why, n, "store '%s': its directory cannot be written", path);
  return why;
}

/* /readyz; lock held. The reason is said without the store's path (an
   HTTP client learns no server path) and logged with it when it changes. */
static void readyz(struct serve *sv, struct httpd_reply *rp) {
  char buf[sizeof(sv->unready)], shown[sizeof(sv->unready)];
  const char *why = not_ready(sv, buf, sizeof(buf));
  const char *store =
      sv->cur && sv->cur->config ? sv->cur->config->store : NULL;

  if (strcmp(why ? why : "", sv->unready) != 0) {
    if (why)
      log_warn("not ready: %s", why);
    else
      log_info("ready");
    snprintf(sv->unready, sizeof(sv->unready), "%s", why ? why : "");
  }
  if (!why) {
    reply(rp, 200, "ready\n");
    return;
  }
  if (!store || !store_msg_unnamed(store, why, shown, sizeof(shown)))
    snprintf(shown, sizeof(shown), "%s", why);
  reply(rp, 503, "not ready: %s\n", shown);
}

/* The first query argument POST /api/v1/sync does not take, or NULL. */
struct sync_args {
  const char *unknown;
};

static void sync_arg_check(void *arg, const char *name, const char *value) {
  struct sync_args *a = arg;

  (void)value;
  if (!a->unknown && strcmp(name, "tenant") != 0 &&
      strcmp(name, "instance") != 0)
    a->unknown = name;
}

static void api_sync(struct serve *sv, const struct httpd_request *rq,
                     struct httpd_reply *rp) {
  const char *tenant = httpd_query(rq, "tenant");
  const char *instance = httpd_query(rq, "instance");
  const struct config_tenant *ct;
  struct tenant_rt *t = NULL;
  char why[CH_ERR_MSG_SIZE];
  struct sync_args args = {0};

  if (strcmp(httpd_method(rq), "POST") != 0) {
    rp->allow = "POST";
    httpd_reply_error(rp, 405, "use POST");
    return;
  }
  /* a misspelt ?instnace= would otherwise sync the whole tenant */
  httpd_query_each(rq, sync_arg_check, &args);
  if (args.unknown) {
    httpd_reply_error(rp, 400,
                      "unknown argument '%s': POST /api/v1/sync takes "
                      "tenant and instance",
                      args.unknown);
    return;
  }
  if (!tenant || !tenant[0]) {
    httpd_reply_error(rp, 400, "missing ?tenant=NAME");
    return;
  }
  pthread_mutex_lock(&sv->lock);
  if (sv->stopping) {
    httpd_reply_error(rp, 503, "shutting down");
    goto out;
  }
  if (sv->leases && leases_not_ready(sv->leases, why, sizeof(why))) {
    httpd_reply_error(rp, 503, "not ready: %s", why);
    goto out;
  }
  ct = serve_find_tenant(sv->cur->config, tenant);
  for (size_t i = 0; ct && i < sv->ntenants; i++) {
    if (!sv->tenants[i]->gone && strcmp(sv->tenants[i]->name, tenant) == 0)
      t = sv->tenants[i];
  }
  if (!t) {
    httpd_reply_error(rp, 404, "no tenant '%s' is served", tenant);
    goto out;
  }
  if (instance) {
    size_t i;
    for (i = 0; i < ct->ninstances; i++) {
      if (strcmp(ct->instances[i].name, instance) == 0 &&
          ct->instances[i].enabled)
        break;
    }
    if (i == ct->ninstances) {
      httpd_reply_error(rp, 404, "no enabled instance '%s' in tenant '%s'",
                        instance, tenant);
      goto out;
    }
  }
  t->queued = 1;
  pthread_cond_broadcast(&sv->cond);
  rp->content_type = "application/json";
  reply(rp, 202, "{\"queued\":true,\"running\":%s}\n",
        t->running ? "true" : "false");
out:
  pthread_mutex_unlock(&sv->lock);
}

/* The explorer over the current config's store (the path copied: a
   reload may free the config while the request reads). */
static int explore_route(struct serve *sv, const struct httpd_request *rq,
                         struct httpd_reply *rp) {
  char *db = NULL;
  int handled;

  pthread_mutex_lock(&sv->lock);
  if (sv->cur && sv->cur->config && sv->cur->config->store)
    db = strdup(sv->cur->config->store);
  pthread_mutex_unlock(&sv->lock);
  handled = explore_handle(db, rq, rp);
  free(db);
  return handled;
}

void serve_on_http(void *arg, const struct httpd_request *rq,
                   struct httpd_reply *rp) {
  struct serve *sv = arg;
  const char *path = httpd_path(rq), *method = httpd_method(rq);

  if (strcmp(path, "/api/v1/sync") == 0) {
    api_sync(sv, rq, rp);
    return;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    rp->allow = "GET, HEAD";
    if (httpd_is_api(path))
      httpd_reply_error(rp, 405, "read-only: use GET");
    else
      reply(rp, 405, "use GET\n");
    return;
  }
  if (strcmp(path, "/healthz") == 0) {
    reply(rp, 200, "ok\n");
  } else if (strcmp(path, "/readyz") == 0) {
    pthread_mutex_lock(&sv->lock);
    readyz(sv, rp);
    pthread_mutex_unlock(&sv->lock);
  } else if (strcmp(path, "/metrics") == 0) {
    rp->status = 200;
    rp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rp->body = metrics_render(sv->metrics);
    if (rp->body && sv->leases)
      rp->body = leases_render_metrics(sv->leases, rp->body);
    if (!rp->body)
      reply(rp, 500, "out of memory\n");
  } else if (explore_route(sv, rq, rp)) {
    return;
  } else if (httpd_is_api(path)) {
    httpd_reply_error(rp, 404,
                      "not found: try /api/v1/runs or POST "
                      "/api/v1/sync?tenant=T");
  } else {
    reply(rp, 404,
          "not found: try /healthz, /readyz, /metrics, / (the explorer) or "
          "POST /api/v1/sync?tenant=T\n");
  }
}
