/* SPDX-License-Identifier: MIT */
/* One scheduled run of a tenant under `serve`: bind its instances, run them
   through sync_run(), log and count what each did. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "engine.h"
#include "isolate.h"
#include "log.h"
#include "metrics.h"
#include "serve.h"
#include "syncrun.h"
#include "util.h"

/* `output:` under serve: --output, the config's, else {tenant}.json beside
   the config. malloc'd; NULL when out of memory. */
char *serve_output_pattern(const struct serve *sv, const struct config *c) {
  if (sv->s->cli->output)
    return strdup(sv->s->cli->output);
  if (c->output)
    return strdup(c->output);
  return config_path(c, SERVE_DEFAULT_OUTPUT);
}

/* Bind one instance of `c` for a run (plugins load under a lock: the
   registry is shared by every tenant thread). */
int serve_bind_instance(struct serve *sv, const struct config *c,
                        const struct config_instance *ci, struct instance **out,
                        struct ch_err *err) {
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

void serve_release_all(struct instance **insts, size_t n) {
  for (size_t i = 0; i < n; i++) {
    instance_release(insts[i]);
    free(insts[i]);
  }
  free(insts);
}

/* One sync_finished per instance run: a JSON event in JSON logs, else a
   text line with the same fields. `f` NULL: the instance did not start.
   `unwritten`: it succeeded, but its tenant's graph was not written
   (another instance failed), said as graph=not_written. */
static void log_finished(const struct config_instance *ci,
                         const struct sync_figures *f, const char *why,
                         double seconds, int unwritten) {
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
    json_object_object_add(o, "duration_s", log_json_seconds(seconds));
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
    if (ok && unwritten)
      json_object_object_add(o, "graph", json_object_new_string("not_written"));
    if (error)
      json_object_object_add(o, "error", json_object_new_string(error));
    log_event(ok ? CH_LOG_INFO : CH_LOG_ERROR, "sync_finished", o);
    return;
  }
  log_msg(NULL, ok ? CH_LOG_INFO : CH_LOG_ERROR,
          "sync_finished: tenant=%s instance=%s status=%s duration=%.3fs "
          "resources=%llu grants=%llu requests=%llu retries=%llu "
          "throttled=%llu bytes=%llu%s%s%s%s",
          ci->tenant, ci->name, ok ? "ok" : "failed", seconds,
          (unsigned long long)f->resources, (unsigned long long)f->grants,
          (unsigned long long)f->requests, (unsigned long long)f->retries,
          (unsigned long long)f->throttled, (unsigned long long)f->bytes,
          ok && unwritten ? " graph=not_written" : "", error ? " error=\"" : "",
          error ? error : "", error ? "\"" : "");
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

  log_finished(ci, NULL, why, 0.0, 0);
  mr.started = started;
  mr.finished = serve_wall_s();
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

/* Whether an instance that succeeded in a run whose graph was not written
   still succeeded: the graph was held back because another failed (as
   `sync` without --allow-partial), not because the run stopped or failed
   on its own. */
static int unwritten_ok(const struct run_state *r) {
  return r->nfail > 0 && !r->signal && r->aborted == CH_OK;
}

/* One run of tenant `t` under config `g`: every enabled instance, since
   the tenant's output holds them all. Returns 1 when every instance
   succeeded and the output was written. */
int serve_run_tenant(struct serve *sv, struct tenant_rt *t, struct gen *g,
                     int workers) {
  const struct config *c = g->config;
  const struct config_tenant *ct = serve_find_tenant(c, t->name);
  struct instance **insts = NULL;
  struct sync_opts o = {0};
  struct sync_status st;
  char *pattern = NULL;
  double started = serve_wall_s();
  size_t n = 0;
  int ok = 1;

  if (!ct)
    return 0;
  insts = calloc(ct->ninstances, sizeof(*insts));
  pattern = serve_output_pattern(sv, c);
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
    if (serve_bind_instance(sv, c, ci, &insts[n], &err) != CH_OK) {
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
  o.replica = sv->replica;
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
    /* The tenant's graph not written: when another instance failed, that
       is its failure, and this one's sync (in the store) stands; when
       the run itself was stopped or failed, no instance's did. */
    if (f.ok && !st.written && !unwritten_ok(&st.run)) {
      f.ok = 0;
      f.error = st.run.signal
                    ? "not written: the run was stopped"
                    : "not written: the tenant's graph could not be written";
    }
    log_finished(insts[i]->ci, &f, NULL, st.duration, !st.written);
    mr = (struct metrics_run){.tenant = insts[i]->ci->tenant,
                              .instance = insts[i]->ci->name,
                              .ok = f.ok,
                              .started = started,
                              .finished = serve_wall_s(),
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
  serve_release_all(insts, n);
  free((char *)o.output);
  free(pattern);
  return ok;
}

/* Workers per tenant run: the host-wide pool split evenly between the
   tenants, at least one each, so a big tenant cannot take another's. */
int serve_tenant_workers(const struct serve *sv, const struct config *c) {
  int total = sv->s->cli->workers ? sv->s->cli->workers
              : c->workers        ? c->workers
                                  : engine_default_workers();
  int share = sv->ntenants ? total / (int)sv->ntenants : total;
  return share > 0 ? share : 1;
}
