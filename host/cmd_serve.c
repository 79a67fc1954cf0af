/* SPDX-License-Identifier: MIT */
/* `connhost serve`: every tenant syncs on its own thread and schedule
   through the same sync_run() as `connhost sync`; SIGHUP reloads the
   config, SIGTERM/SIGINT drain; /healthz, /readyz, /metrics and
   /api/v1/sync on one libmicrohttpd listener. */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "engine.h"
#include "explore.h"
#include "httpd.h"
#include "isolate.h"
#include "log.h"
#include "metrics.h"
#include "stop.h"
#include "store.h"
#include "syncrun.h"
#include "util.h"

#define SERVE_INTERVAL_MS (3600L * 1000L) /* schedule.interval default */
#define SERVE_JITTER_PCT 10               /* schedule.jitter default */
#define SERVE_GRACE_MS (30L * 1000L)      /* serve.shutdown_grace default */
#define SERVE_BACKOFF_BASE_MS (10L * 1000L)
#define SERVE_BACKOFF_MAX_MS (3600L * 1000L)
#define SERVE_DEFAULT_OUTPUT "{tenant}.json"

/* One loaded config; runs hold a reference so a reload never frees the
   config under a running sync. */
struct gen {
  struct config *config;
  int refs; /* guarded by serve.lock */
};

struct tenant_rt {
  char *name;
  pthread_t thread;
  int started;
  int gone;   /* dropped by a reload: leave after the current run */
  int queued; /* POST /api/v1/sync asked for a run */
  int running;
  int failures;    /* consecutive failed runs, for the backoff */
  int64_t next_us; /* monotonic time of the next run */
  struct serve *sv;
};

struct serve {
  pthread_mutex_t lock; /* guards everything below and gen refs */
  pthread_cond_t cond;
  pthread_mutex_t registry_lock; /* loading plugins */
  struct session *s;
  struct gen *cur;
  struct tenant_rt **tenants;
  size_t ntenants;
  int stopping;
  struct metrics *metrics;
  unsigned rand_state;
};

static double wall_s(void) { return (double)util_wall_ms() / 1000.0; }

static void gen_put(struct serve *sv, struct gen *g) {
  int last;
  pthread_mutex_lock(&sv->lock);
  last = --g->refs == 0;
  pthread_mutex_unlock(&sv->lock);
  if (last) {
    config_free(g->config);
    free(g);
  }
}

static const struct config_tenant *find_tenant(const struct config *c,
                                               const char *name) {
  for (size_t i = 0; i < c->ntenants; i++) {
    if (strcmp(c->tenants[i].name, name) == 0)
      return &c->tenants[i];
  }
  return NULL;
}

static long interval_ms(const struct config *c, const struct config_tenant *t) {
  if (t && t->schedule.interval_ms)
    return t->schedule.interval_ms;
  return c->schedule.interval_ms ? c->schedule.interval_ms : SERVE_INTERVAL_MS;
}

static int jitter_pct(const struct config *c, const struct config_tenant *t) {
  if (t && t->schedule.jitter_pct >= 0)
    return t->schedule.jitter_pct;
  return c->schedule.jitter_pct >= 0 ? c->schedule.jitter_pct
                                     : SERVE_JITTER_PCT;
}

/* A random extra wait of up to `pct` percent of `ms`; lock held. */
static long jitter(struct serve *sv, long ms, int pct) {
  long span = (long)((double)ms * pct / 100.0);
  return span > 0 ? (long)(rand_r(&sv->rand_state) % (span + 1)) : 0;
}

/* `output:` under serve: --output, the config's, else {tenant}.json beside
   the config. malloc'd; NULL when out of memory. */
static char *output_pattern(const struct serve *sv, const struct config *c) {
  if (sv->s->cli->output)
    return strdup(sv->s->cli->output);
  if (c->output)
    return strdup(c->output);
  return config_path(c, SERVE_DEFAULT_OUTPUT);
}

/* What serve needs of a config beyond config_load's checks; logs why not. */
static int serve_config_ok(struct serve *sv, const struct config *c) {
  char *pattern = output_pattern(sv, c);
  int ok = 1;

  if (!pattern)
    return 0;
  if (strcmp(pattern, "-") == 0) {
    log_error("%s: serve writes files: 'output' cannot be '-'", c->path);
    ok = 0;
  } else if (c->ntenants > 1 && !strstr(pattern, "{tenant}")) {
    log_error("%s: serve syncs each tenant on its own: 'output' must name a "
              "file per tenant with '{tenant}' (e.g. out/{tenant}.json), "
              "not '%s'",
              c->path, pattern);
    ok = 0;
  }
  free(pattern);
  return ok;
}

/* Bind one instance of `c` for a run (plugins load under a lock: the
   registry is shared by every tenant thread). */
static int bind_instance(struct serve *sv, const struct config *c,
                         const struct config_instance *ci,
                         struct instance **out, struct ch_err *err) {
  const struct plugin *p = NULL;
  struct instance *in;
  int rc;

  *out = NULL;
  pthread_mutex_lock(&sv->registry_lock);
  rc = registry_load(&sv->s->registry, ci->plugin, &p, err);
  pthread_mutex_unlock(&sv->registry_lock);
  if (rc != CH_OK)
    return ch_err_set(err, rc, "%s:%u:%u: tenant '%s' instance '%s': %s",
                      ci->node->file, ci->node->line, ci->node->col, ci->tenant,
                      ci->name, err->msg);
  in = calloc(1, sizeof(*in));
  if (!in)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  rc = instance_prepare(in, c, ci, p, err);
  if (rc != CH_OK) {
    instance_release(in);
    free(in);
    return rc;
  }
  *out = in;
  return CH_OK;
}

static void release_all(struct instance **insts, size_t n) {
  for (size_t i = 0; i < n; i++) {
    instance_release(insts[i]);
    free(insts[i]);
  }
  free(insts);
}

/* One sync_finished per instance run: a JSON event in JSON logs, else a
   text line with the same fields. `f` NULL: the instance did not start. */
static void log_finished(const struct config_instance *ci,
                         const struct sync_figures *f, const char *why,
                         double seconds) {
  int ok = f && f->ok;
  const char *error = ok ? NULL : f ? (f->error ? f->error : "") : why;
  struct sync_figures none = {0};

  if (!f)
    f = &none;
  if (log_format() == LOG_JSON) {
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "tenant", json_object_new_string(ci->tenant));
    json_object_object_add(o, "instance", json_object_new_string(ci->name));
    json_object_object_add(o, "status",
                           json_object_new_string(ok ? "ok" : "failed"));
    json_object_object_add(o, "duration_s", json_object_new_double(seconds));
    json_object_object_add(o, "resources",
                           json_object_new_int64((int64_t)f->resources));
    json_object_object_add(o, "grants",
                           json_object_new_int64((int64_t)f->grants));
    json_object_object_add(o, "requests",
                           json_object_new_int64((int64_t)f->requests));
    json_object_object_add(o, "retries",
                           json_object_new_int64((int64_t)f->retries));
    json_object_object_add(o, "throttled",
                           json_object_new_int64((int64_t)f->throttled));
    json_object_object_add(o, "bytes",
                           json_object_new_int64((int64_t)f->bytes));
    if (error)
      json_object_object_add(o, "error", json_object_new_string(error));
    log_event(ok ? CH_LOG_INFO : CH_LOG_ERROR, "sync_finished", o);
    return;
  }
  log_msg(NULL, ok ? CH_LOG_INFO : CH_LOG_ERROR,
          "sync_finished: tenant=%s instance=%s status=%s duration=%.3fs "
          "resources=%llu grants=%llu requests=%llu retries=%llu "
          "throttled=%llu bytes=%llu%s%s%s",
          ci->tenant, ci->name, ok ? "ok" : "failed", seconds,
          (unsigned long long)f->resources, (unsigned long long)f->grants,
          (unsigned long long)f->requests, (unsigned long long)f->retries,
          (unsigned long long)f->throttled, (unsigned long long)f->bytes,
          error ? " error=\"" : "", error ? error : "", error ? "\"" : "");
}

static void log_started(const struct config_instance *ci) {
  if (log_format() == LOG_JSON) {
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "tenant", json_object_new_string(ci->tenant));
    json_object_object_add(o, "instance", json_object_new_string(ci->name));
    json_object_object_add(o, "plugin", json_object_new_string(ci->plugin));
    log_event(CH_LOG_INFO, "sync_started", o);
    return;
  }
  log_msg(NULL, CH_LOG_INFO, "sync_started: tenant=%s instance=%s plugin=%s",
          ci->tenant, ci->name, ci->plugin);
}

/* A failed run that never reached the engine (bad ${file:}, no plugin). */
static void record_unbound(struct serve *sv, const struct config_instance *ci,
                           const char *why, double started) {
  struct metrics_run mr = {.tenant = ci->tenant, .instance = ci->name};

  log_finished(ci, NULL, why, 0.0);
  mr.started = started;
  mr.finished = wall_s();
  metrics_record(sv->metrics, &mr);
}

/* Bound instances that will not run because another did not bind: the
   tenant's file holds all of them, so it is not written without one. */
static void record_not_run(struct serve *sv, struct instance **insts, size_t n,
                           double started) {
  for (size_t i = 0; i < n; i++)
    record_unbound(sv, insts[i]->ci,
                   "not run: another instance of the tenant did not start",
                   started);
}

/* One run of tenant `t` under config `g`: every enabled instance, since
   the tenant's output holds them all. Returns 1 when every instance
   succeeded and the output was written. */
static int run_tenant(struct serve *sv, struct tenant_rt *t, struct gen *g,
                      int workers) {
  const struct config *c = g->config;
  const struct config_tenant *ct = find_tenant(c, t->name);
  struct instance **insts = NULL;
  struct sync_opts o = {0};
  struct sync_status st;
  char *pattern = NULL;
  double started = wall_s();
  size_t n = 0;
  int ok = 1;

  if (!ct)
    return 0;
  insts = calloc(ct->ninstances, sizeof(*insts));
  pattern = output_pattern(sv, c);
  o.output = pattern ? sync_output_of(pattern, t->name) : NULL;
  if (!insts || !o.output) {
    log_error("tenant '%s': out of memory", t->name);
    ok = 0;
    goto out;
  }
  for (size_t i = 0; i < ct->ninstances; i++) {
    const struct config_instance *ci = &ct->instances[i];
    struct ch_err err = {0};
    if (!ci->enabled)
      continue;
    metrics_attempt(sv->metrics, ci->tenant, ci->name, started);
    log_started(ci);
    if (bind_instance(sv, c, ci, &insts[n], &err) != CH_OK) {
      record_unbound(sv, ci, err.msg, started);
      ok = 0;
      continue;
    }
    n++;
  }
  if (!ok) {
    record_not_run(sv, insts, n, started);
    goto out;
  }
  if (!n)
    goto out;
  o.format = sv->s->cli->format ? sv->s->cli->format
             : c->format        ? c->format
                                : "json";
  o.workers = workers;
  o.max_pages = sv->s->cli->max_pages ? sv->s->cli->max_pages
                : c->max_pages        ? c->max_pages
                                      : ENGINE_DEFAULT_MAX_PAGES;
  o.progress_ms = SYNC_PROGRESS_MS;
  o.max_shrink = c->max_shrink;
  o.store = c->store;
  o.keep_runs = c->keep_runs;
  o.tickets = c;
  /* Each instance's plugin in a child of its own unless the config says
     `isolation: none` (docs/config.md): a crash or a hang costs only that
     instance's run, never the other tenants'. */
  if (ISOLATE_THREADED_FORK) {
    o.config = c;
    o.isolation = CFG_ISOLATION_PROCESS;
  }
  sync_run(insts, n, &o, &st);
  if (!st.written)
    ok = 0;
  for (size_t i = 0; i < n; i++) {
    struct sync_figures f;
    struct metrics_run mr;
    sync_figures(insts[i], &f);
    /* an instance that is fine but whose tenant's graph was not written
       (another instance failed) did not land either */
    if (f.ok && !st.written) {
      f.ok = 0;
      f.error = "not written: another instance of the tenant failed";
    }
    log_finished(insts[i]->ci, &f, NULL, st.duration);
    mr = (struct metrics_run){.tenant = insts[i]->ci->tenant,
                              .instance = insts[i]->ci->name,
                              .ok = f.ok,
                              .started = started,
                              .finished = wall_s(),
                              .duration = st.duration,
                              .nresources = f.resources,
                              .ngrants = f.grants,
                              .requests = f.requests,
                              .retries = f.retries,
                              .throttled = f.throttled,
                              .bytes = f.bytes};
    /* A tenant a reload dropped while this run went on keeps no series:
       its removal (metrics_retain) happens under the same lock. */
    pthread_mutex_lock(&sv->lock);
    if (!t->gone)
      metrics_record(sv->metrics, &mr);
    pthread_mutex_unlock(&sv->lock);
  }
out:
  release_all(insts, n);
  free((char *)o.output);
  free(pattern);
  return ok;
}

/* Workers per tenant run: the host-wide pool split evenly between the
   tenants, at least one each, so a big tenant cannot take another's. */
static int tenant_workers(const struct serve *sv, const struct config *c) {
  int total = sv->s->cli->workers ? sv->s->cli->workers
              : c->workers        ? c->workers
                                  : engine_default_workers();
  int share = sv->ntenants ? total / (int)sv->ntenants : total;
  return share > 0 ? share : 1;
}

static int64_t deadline_of(long ms) {
  return util_mono_us() + (int64_t)ms * 1000;
}

static void wait_until(struct serve *sv, int64_t when_us) {
  int64_t left = when_us - util_mono_us();

  if (left <= 0)
    return;
  if (left > 1000000)
    left = 1000000; /* re-check the clock each second */
  util_cond_wait_us(&sv->cond, &sv->lock, left);
}

static void *tenant_main(void *arg) {
  struct tenant_rt *t = arg;
  struct serve *sv = t->sv;

  pthread_mutex_lock(&sv->lock);
  while (!sv->stopping && !t->gone) {
    struct gen *g;
    const struct config_tenant *ct;
    int workers, ok;
    long every, wait;

    if (!t->queued && util_mono_us() < t->next_us) {
      wait_until(sv, t->next_us);
      continue;
    }
    g = sv->cur;
    g->refs++;
    t->queued = 0;
    t->running = 1;
    workers = tenant_workers(sv, g->config);
    pthread_mutex_unlock(&sv->lock);

    ok = run_tenant(sv, t, g, workers);

    pthread_mutex_lock(&sv->lock);
    t->running = 0;
    pthread_cond_broadcast(&sv->cond);
    ct = find_tenant(sv->cur->config, t->name);
    every = interval_ms(sv->cur->config, ct);
    if (ok) {
      t->failures = 0;
      wait = every + jitter(sv, every, jitter_pct(sv->cur->config, ct));
    } else {
      /* exponential from min(10 s, interval), capped at min(interval, 1 h) */
      long base = every < SERVE_BACKOFF_BASE_MS ? every : SERVE_BACKOFF_BASE_MS;
      long cap = every < SERVE_BACKOFF_MAX_MS ? every : SERVE_BACKOFF_MAX_MS;
      int shift = t->failures < 20 ? t->failures : 20;
      t->failures++;
      wait = base << shift;
      if (wait > cap || wait <= 0)
        wait = cap;
      log_msg(NULL, CH_LOG_WARN,
              "tenant '%s': run failed (%d in a row); retrying in %.1f s",
              t->name, t->failures, (double)wait / 1000.0);
    }
    t->next_us = deadline_of(wait);
    pthread_mutex_unlock(&sv->lock);
    gen_put(sv, g);
    pthread_mutex_lock(&sv->lock);
  }
  pthread_mutex_unlock(&sv->lock);
  return NULL;
}

/* Start a thread for every tenant of the current config that has none;
   mark the others gone. Lock held. */
static void sync_tenants(struct serve *sv) {
  const struct config *c = sv->cur->config;

  /* gone stays gone: its thread leaves, a tenant added back gets a new one */
  for (size_t i = 0; i < sv->ntenants; i++) {
    if (!find_tenant(c, sv->tenants[i]->name))
      sv->tenants[i]->gone = 1;
  }
  for (size_t i = 0; i < c->ntenants; i++) {
    const struct config_tenant *ct = &c->tenants[i];
    struct tenant_rt *t = NULL, **grown;
    for (size_t j = 0; j < sv->ntenants; j++) {
      if (strcmp(sv->tenants[j]->name, ct->name) == 0 && !sv->tenants[j]->gone)
        t = sv->tenants[j];
    }
    if (t || !cli_tenant_selected(sv->s->cli, ct->name))
      continue;
    t = calloc(1, sizeof(*t));
    grown = realloc(sv->tenants, (sv->ntenants + 1) * sizeof(*sv->tenants));
    if (grown)
      sv->tenants = grown;
    if (!t || !grown || !(t->name = strdup(ct->name))) {
      free(t);
      log_error("tenant '%s': out of memory; not scheduled", ct->name);
      continue;
    }
    t->sv = sv;
    /* the first run comes at once, spread by the jitter */
    t->next_us =
        deadline_of(jitter(sv, interval_ms(c, ct), jitter_pct(c, ct)) / 10);
    sv->tenants[sv->ntenants++] = t;
    t->started = pthread_create(&t->thread, NULL, tenant_main, t) == 0;
    if (!t->started)
      log_error("tenant '%s': cannot start its thread", ct->name);
  }
}

/* Every enabled, selected instance binds (plugin loads, options and
   secrets resolve): the check a config passes before it runs. */
static int config_binds(struct serve *sv, const struct config *c) {
  int ok = 1;

  for (size_t t = 0; t < c->ntenants; t++) {
    const struct config_tenant *ct = &c->tenants[t];
    if (!cli_tenant_selected(sv->s->cli, ct->name))
      continue;
    for (size_t i = 0; i < ct->ninstances; i++) {
      struct instance *in = NULL;
      struct ch_err err = {0};
      if (!ct->instances[i].enabled)
        continue;
      if (bind_instance(sv, c, &ct->instances[i], &in, &err) != CH_OK) {
        log_error("%s", err.msg);
        ok = 0;
        continue;
      }
      instance_release(in);
      free(in);
    }
  }
  return ok;
}

/* Whether `c` still runs tenant/instance (for metrics_retain). */
static int still_served(void *arg, const char *tenant, const char *instance) {
  const struct config *c = arg;
  const struct config_tenant *ct = find_tenant(c, tenant);

  for (size_t i = 0; ct && i < ct->ninstances; i++) {
    if (strcmp(ct->instances[i].name, instance) == 0)
      return ct->instances[i].enabled;
  }
  return 0;
}

static void reload(struct serve *sv) {
  struct config *c = NULL;
  struct ch_err err = {0};
  struct gen *g, *old;
  const char *path = sv->cur->config->path;

  log_info("SIGHUP: reloading %s", path);
  if (config_load(path, &c, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto bad;
  }
  if (!serve_config_ok(sv, c) || !config_binds(sv, c))
    goto bad;
  if ((c->serve_listen == NULL) != (sv->cur->config->serve_listen == NULL) ||
      (c->serve_listen &&
       strcmp(c->serve_listen, sv->cur->config->serve_listen) != 0) ||
      (c->serve_auth_token == NULL) !=
          (sv->cur->config->serve_auth_token == NULL) ||
      (c->serve_auth_token &&
       !httpd_secret_equal(c->serve_auth_token,
                           sv->cur->config->serve_auth_token)))
    log_warn("%s: serve.listen and serve.auth_token take effect at the next "
             "start, not on reload",
             path);
  if ((c->plugin_dir == NULL) != (sv->cur->config->plugin_dir == NULL) ||
      (c->plugin_dir &&
       strcmp(c->plugin_dir, sv->cur->config->plugin_dir) != 0))
    log_warn("%s: plugin_dir takes effect at the next start; plugins still "
             "load from '%s'",
             path, session_plugin_dir(sv->s));
  g = calloc(1, sizeof(*g));
  if (!g) {
    log_error("out of memory");
    goto bad;
  }
  g->config = c;
  g->refs = 1;
  pthread_mutex_lock(&sv->lock);
  old = sv->cur;
  sv->cur = g;
  sync_tenants(sv);
  metrics_retain(sv->metrics, still_served, c);
  pthread_cond_broadcast(&sv->cond);
  pthread_mutex_unlock(&sv->lock);
  gen_put(sv, old); /* `path` was the old config's: use the new one's */
  metrics_config_loaded(sv->metrics, 1, wall_s());
  log_info("%s reloaded: %zu tenants", c->path, c->ntenants);
  return;
bad:
  config_free(c);
  metrics_config_loaded(sv->metrics, 0, wall_s());
  log_error("%s: reload failed; the running config stays in effect", path);
}

/* ---- HTTP -------------------------------------------------------------- */

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

/* Why serve is not ready, or NULL. Lock held. The snapshot store, once
   serve records into it, adds "store not open" here. */
/* Why the service is not ready, or NULL. The store must open (a read: it
   never waits on a run being recorded); one not written yet is fine as long
   as its directory takes the file. */
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
  if (access(path, F_OK) == 0) {
    if (store_open(path, 0, &st, &err) != CH_OK) {
      snprintf(why, n, "store: %s", err.msg);
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

static void api_sync(struct serve *sv, const struct httpd_request *rq,
                     struct httpd_reply *rp) {
  const char *tenant = httpd_query(rq, "tenant");
  const char *instance = httpd_query(rq, "instance");
  const struct config_tenant *ct;
  struct tenant_rt *t = NULL;

  if (strcmp(httpd_method(rq), "POST") != 0) {
    rp->allow = "POST";
    reply(rp, 405, "use POST\n");
    return;
  }
  if (!tenant || !tenant[0]) {
    reply(rp, 400, "missing ?tenant=NAME\n");
    return;
  }
  pthread_mutex_lock(&sv->lock);
  if (sv->stopping) {
    reply(rp, 503, "shutting down\n");
    goto out;
  }
  ct = find_tenant(sv->cur->config, tenant);
  for (size_t i = 0; ct && i < sv->ntenants; i++) {
    if (!sv->tenants[i]->gone && strcmp(sv->tenants[i]->name, tenant) == 0)
      t = sv->tenants[i];
  }
  if (!t) {
    reply(rp, 404, "no tenant '%s' is served\n", tenant);
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
      reply(rp, 404, "no enabled instance '%s' in tenant '%s'\n", instance,
            tenant);
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

static void on_http(void *arg, const struct httpd_request *rq,
                    struct httpd_reply *rp) {
  struct serve *sv = arg;
  const char *path = httpd_path(rq), *method = httpd_method(rq);
  const char *why;
  char buf[CH_ERR_MSG_SIZE + 16];

  if (strcmp(path, "/api/v1/sync") == 0) {
    api_sync(sv, rq, rp);
    return;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    rp->allow = "GET, HEAD";
    reply(rp, 405, "use GET\n");
    return;
  }
  if (strcmp(path, "/healthz") == 0) {
    reply(rp, 200, "ok\n");
  } else if (strcmp(path, "/readyz") == 0) {
    pthread_mutex_lock(&sv->lock);
    why = not_ready(sv, buf, sizeof(buf));
    if (why)
      reply(rp, 503, "not ready: %s\n", why);
    else
      reply(rp, 200, "ready\n");
    pthread_mutex_unlock(&sv->lock);
  } else if (strcmp(path, "/metrics") == 0) {
    rp->status = 200;
    rp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rp->body = metrics_render(sv->metrics);
    if (!rp->body)
      reply(rp, 500, "out of memory\n");
  } else if (!explore_route(sv, rq, rp)) {
    reply(rp, 404,
          "not found: try /healthz, /readyz, /metrics, / (the explorer) or "
          "POST "
          "/api/v1/sync?tenant=T\n");
  }
}

/* ---- the main loop ----------------------------------------------------- */

/* Health checks, and the explorer's style sheet and script (they hold no
   data; its pages do). */
static const char *const open_paths[] = {
    "/healthz", "/readyz", "/explore.js", "/explore.css", "/login", NULL};

/* Stop: no new runs; in-flight ones get the grace period, then the stop
   flag aborts them (their outputs stay as they were). */
static void drain(struct serve *sv, int sig) {
  long grace = sv->cur->config->serve_grace_ms ? sv->cur->config->serve_grace_ms
                                               : SERVE_GRACE_MS;
  int64_t until = deadline_of(grace);
  int busy = 1;

  log_info("%s: stopping; in-flight syncs get %.1f s to finish",
           sig == SIGINT ? "SIGINT" : "SIGTERM", (double)grace / 1000.0);
  pthread_mutex_lock(&sv->lock);
  sv->stopping = 1;
  pthread_cond_broadcast(&sv->cond);
  while (busy) {
    busy = 0;
    for (size_t i = 0; i < sv->ntenants; i++)
      busy |= sv->tenants[i]->running;
    if (!busy)
      break;
    if (util_mono_us() >= until) {
      log_warn("shutdown grace of %.1f s passed: aborting the running "
               "syncs (their outputs stay as they were)",
               (double)grace / 1000.0);
      stop_request(sig);
      break;
    }
    wait_until(sv, until);
  }
  pthread_mutex_unlock(&sv->lock);
  for (size_t i = 0; i < sv->ntenants; i++) {
    if (sv->tenants[i]->started)
      pthread_join(sv->tenants[i]->thread, NULL);
  }
}

static int serve_loop(struct serve *sv, const sigset_t *sigs) {
  for (;;) {
    siginfo_t info;
    struct timespec ts = {1, 0};
    int sig = sigtimedwait(sigs, &info, &ts);
    if (sig == SIGHUP) {
      reload(sv);
    } else if (sig == SIGTERM || sig == SIGINT) {
      drain(sv, sig);
      return EXIT_OK;
    } else if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      log_error("waiting for signals: %s", strerror(errno));
      drain(sv, SIGTERM);
      return EXIT_FAIL;
    }
  }
}

int cmd_serve(struct session *s) {
  struct serve sv = {0};
  struct httpd_conf hc = {0};
  struct httpd *h = NULL;
  struct ch_err err = {0};
  sigset_t sigs;
  const char *listen;
  int rc = EXIT_USAGE;

  pthread_mutex_init(&sv.lock, NULL);
  pthread_cond_init(&sv.cond, NULL);
  pthread_mutex_init(&sv.registry_lock, NULL);
  sv.s = s;
  sv.rand_state = (unsigned)util_mono_us() ^ (unsigned)util_wall_ms();
  /* session_setup checked that every instance binds; serve binds afresh
     for each run (a rotated ${file:} secret is read again). */
  release_all(s->insts, s->ninsts);
  s->insts = NULL;
  s->ninsts = 0;
  sv.metrics = metrics_new();
  sv.cur = calloc(1, sizeof(*sv.cur));
  if (!sv.metrics || !sv.cur) {
    log_error("out of memory");
    rc = EXIT_FAIL;
    goto out;
  }
  sv.cur->config = s->config;
  sv.cur->refs = 1;
  s->config = NULL; /* the generation owns it now */
  if (!serve_config_ok(&sv, sv.cur->config))
    goto out;
  metrics_config_loaded(sv.metrics, 1, wall_s());

  /* Signals go to this thread's sigtimedwait only: block them before any
     thread (listener, tenants, workers) starts, so all inherit the mask. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  listen = s->cli->listen                 ? s->cli->listen
           : sv.cur->config->serve_listen ? sv.cur->config->serve_listen
                                          : HTTPD_DEFAULT_LISTEN;
  hc.listen = listen;
  hc.token = sv.cur->config->serve_auth_token;
  hc.open_paths = open_paths;
  hc.login_path = "/login"; /* the explorer's sign-in form */
  hc.handler = on_http;
  hc.arg = &sv;
  if (httpd_start(&hc, &h, &err) != CH_OK) {
    log_error("%s: %s", sv.cur->config->path, err.msg);
    goto out;
  }
  log_info("serve: listening on %s (port %u), %zu tenants", listen,
           httpd_port(h), sv.cur->config->ntenants);
  pthread_mutex_lock(&sv.lock);
  sync_tenants(&sv);
  pthread_mutex_unlock(&sv.lock);
  rc = serve_loop(&sv, &sigs);
  log_info("serve: stopped");
out:
  httpd_stop(h);
  for (size_t i = 0; i < sv.ntenants; i++) {
    free(sv.tenants[i]->name);
    free(sv.tenants[i]);
  }
  free(sv.tenants);
  if (sv.cur)
    gen_put(&sv, sv.cur);
  metrics_free(sv.metrics);
  pthread_mutex_destroy(&sv.registry_lock);
  pthread_cond_destroy(&sv.cond);
  pthread_mutex_destroy(&sv.lock);
  return rc;
}
