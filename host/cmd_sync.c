/* SPDX-License-Identifier: MIT */
/* `connhost sync`, and the one sync run it shares with `connhost serve`:
   open the instances, run the engine, write the graph. */
#include "autoconfig.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "graph.h"
#include "log.h"
#include "stop.h"
#include "syncrun.h"
#include "util.h"

#define DEFAULT_OUTPUT "graph.json"

struct write_arg {
  const struct graph *graph;
  enum graph_format format;
  const char *generated_at;
};

static int write_graph(FILE *f, void *arg, struct ch_err *err) {
  const struct write_arg *wa = arg;
  return graph_write(wa->graph, f, wa->format, wa->generated_at, err);
}

/* RFC 3339 UTC; SOURCE_DATE_EPOCH pins it so identical data gives
   identical bytes (reproducible-builds convention). */
static void generated_at(char *buf, size_t n) {
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  time_t t = time(NULL);
  struct tm tm;

  if (sde && *sde) {
    char *end;
    long long v = strtoll(sde, &end, 10);
    if (!*end && v >= 0)
      t = (time_t)v;
  }
  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double now_s(void) { return (double)util_mono_us() / 1e6; }

static void open_all(struct instance **insts, size_t n, struct graph *g) {
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    const struct ch_plugin *d = in->plugin->desc;
    struct ch_err err = {0};

    in->graph_index = graph_add_instance(g, in->ci->tenant, in->ci->name,
                                         d->name, d->version, d->types);
    if (instance_open(in, &err) != CH_OK)
      instance_fail(in, "open: %s", err.msg);
  }
}

static void report_all(struct instance **insts, size_t n, struct graph *g) {
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    struct http_stats st;
    struct graph_report r = {0};

    http_client_stats(in->hctx.http, &st);
    r.ok = !instance_failed(in);
    r.error = instance_failed(in) ? in->error : NULL;
    r.pages = in->pages;
    r.requests = st.requests;
    r.retries = st.retries;
    r.warnings = in->warnings;
    graph_set_report(g, in->graph_index, &r);
  }
}

static void print_summary(struct instance **insts, size_t n, struct graph *g,
                          FILE *out, const char *where, double seconds) {
  struct graph_counts gc;

  graph_counts(g, &gc);
  if (where)
    fprintf(out, "graph written to %s\n", where);
  fprintf(out,
          "%zu resources, %zu entitlements, %zu grants (%zu derived), "
          "%zu identities (%zu joined across instances) in %.1f s\n",
          gc.resources, gc.entitlements, gc.grants, gc.derived_grants,
          gc.identities, gc.merged_identities, seconds);
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    struct http_stats st;
    const char *error = NULL;
    int ok = graph_instance_ok(g, in->graph_index, &error);

    http_client_stats(in->hctx.http, &st);
    fprintf(out,
            "  %s/%s (%s): %s, %llu resources, %llu grants, %llu requests, "
            "%llu retries, %.1f s waiting%s%s\n",
            in->ci->tenant, in->ci->name, in->plugin->name,
            ok ? "ok" : "FAILED", (unsigned long long)in->resources,
            (unsigned long long)in->grants, (unsigned long long)st.requests,
            (unsigned long long)st.retries, st.wait_s, ok ? "" : ": ",
            ok ? "" : (error ? error : "unknown error"));
  }
}

void sync_figures(struct instance *in, struct sync_figures *f) {
  struct http_stats st;

  http_client_stats(in->hctx.http, &st);
  f->ok = !instance_failed(in);
  f->error = f->ok ? NULL : in->error;
  f->resources = atomic_load(&in->resources);
  f->grants = atomic_load(&in->grants);
  f->pages = atomic_load(&in->pages);
  f->requests = st.requests;
  f->retries = st.retries;
  f->throttled = st.throttled;
  f->bytes = st.bytes_in + st.bytes_out;
  f->wait_s = st.wait_s;
}

/* The watchdog beside the engine: per-instance `timeout:` and a progress
   line at info every o->progress_ms, on a terminal or not. */
struct watch {
  struct instance **insts;
  size_t n;
  long progress_ms;
  double t0;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;
};

static void watch_tick(struct watch *w, double now, double *next_progress) {
  for (size_t i = 0; i < w->n; i++) {
    struct instance *in = w->insts[i];
    long limit = in->ci->timeout_ms;
    if (limit > 0 && !instance_failed(in) &&
        (now - w->t0) * 1000.0 >= (double)limit)
      instance_fail(in, "timed out after %.1f s (timeout: %.1f s)", now - w->t0,
                    (double)limit / 1000.0);
  }
  if (w->progress_ms <= 0 || now < *next_progress)
    return;
  *next_progress = now + (double)w->progress_ms / 1000.0;
  for (size_t i = 0; i < w->n; i++) {
    struct sync_figures f;
    if (!w->insts[i]->pinst || instance_failed(w->insts[i]))
      continue;
    sync_figures(w->insts[i], &f);
    log_msg(w->insts[i]->hctx.label, CH_LOG_INFO,
            "sync_progress: %llu resources, %llu grants, %llu requests, "
            "%llu retries, %.0f s so far",
            (unsigned long long)f.resources, (unsigned long long)f.grants,
            (unsigned long long)f.requests, (unsigned long long)f.retries,
            now - w->t0);
  }
}

static void *watch_main(void *arg) {
  struct watch *w = arg;
  double next_progress = w->t0 + (double)w->progress_ms / 1000.0;

  pthread_mutex_lock(&w->lock);
  while (!w->done) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    if (!w->done)
      watch_tick(w, now_s(), &next_progress);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

static int watch_needed(struct instance **insts, size_t n, long progress_ms) {
  if (progress_ms > 0)
    return 1;
  for (size_t i = 0; i < n; i++) {
    if (insts[i]->ci->timeout_ms > 0)
      return 1;
  }
  return 0;
}

static const char *signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
}

int sync_run(struct instance **insts, size_t n, const struct sync_opts *o,
             struct sync_status *st) {
  struct graph *g = graph_new();
  struct engine_opts eo = {0};
  struct ch_err err = {0};
  struct watch w = {.insts = insts, .n = n, .progress_ms = o->progress_ms};
  pthread_t watcher;
  int watching = 0;
  char stamp[32];
  struct write_arg wa;
  int to_stdout = strcmp(o->output, "-") == 0;
  int erc;

  memset(st, 0, sizeof(*st));
  st->rc = EXIT_FAIL;
  w.t0 = now_s();
  if (!g) {
    log_error("out of memory");
    return st->rc;
  }
  eo.workers = o->workers;
  eo.max_pages = o->max_pages;
  eo.progress = o->progress;

  open_all(insts, n, g);
  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  if (watch_needed(insts, n, o->progress_ms) &&
      pthread_create(&watcher, NULL, watch_main, &w) == 0)
    watching = 1;
  erc = engine_sync(insts, n, g, &eo);
  if (watching) {
    pthread_mutex_lock(&w.lock);
    w.done = 1;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(watcher, NULL);
  }
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.lock);
  if (erc == CH_E_NOMEM) {
    log_error("out of memory during the sync");
    goto out;
  }
  if (stop_requested()) {
    int sig = stop_requested();
    log_error("stopped by %s: no graph written; %s left as it was",
              signal_name(sig), to_stdout ? "the output" : o->output);
    st->rc = 128 + sig;
    goto out;
  }
  report_all(insts, n, g);
  graph_finish(g);
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    const char *error = NULL;
    if (graph_instance_ok(g, in->graph_index, &error)) {
      st->nok++;
      continue;
    }
    st->nfail++;
    /* Failed while the graph was checked (e.g. a grant on an unknown
       entitlement): record it like any other instance failure. */
    if (!instance_failed(in))
      instance_fail(in, "%s", error ? error : "invalid records");
  }
  graph_counts(g, &st->counts);
  if (st->nfail && !o->allow_partial) {
    if (o->summary)
      print_summary(insts, n, g, stderr, NULL, now_s() - w.t0);
    log_error("%zu of %zu instances failed: no graph written; %s left as it "
              "was (--allow-partial writes what succeeded)",
              st->nfail, st->nfail + st->nok,
              to_stdout ? "the output" : o->output);
    st->rc = st->nok ? EXIT_PARTIAL : EXIT_FAIL;
    goto out;
  }

  generated_at(stamp, sizeof(stamp));
  wa.graph = g;
  wa.format = strcmp(o->format, "jsonl") == 0 ? GRAPH_JSONL : GRAPH_JSON;
  wa.generated_at = stamp;
  if (to_stdout) {
    if (write_graph(stdout, &wa, &err) != CH_OK || fflush(stdout) != 0) {
      log_error("writing the graph to stdout: %s",
                err.msg[0] ? err.msg : "write error");
      goto out;
    }
  } else if (output_write_atomic(o->output, write_graph, &wa, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  st->written = 1;
  if (o->summary)
    print_summary(insts, n, g, to_stdout ? stderr : stdout,
                  to_stdout ? NULL : o->output, now_s() - w.t0);
  st->rc = st->nfail ? (st->nok ? EXIT_PARTIAL : EXIT_FAIL) : EXIT_OK;
out:
  st->duration = now_s() - w.t0;
  graph_free(g);
  return st->rc;
}

char *sync_output_of(const char *pattern, const char *tenant) {
  size_t tl = strlen(tenant), n = 1;
  const char *p;
  char *out, *o;

  for (p = pattern; *p;) {
    if (strncmp(p, "{tenant}", 8) == 0) {
      n += tl;
      p += 8;
    } else {
      n++;
      p++;
    }
  }
  out = malloc(n);
  if (!out)
    return NULL;
  for (p = pattern, o = out; *p;) {
    if (strncmp(p, "{tenant}", 8) == 0) {
      memcpy(o, tenant, tl);
      o += tl;
      p += 8;
    } else {
      *o++ = *p++;
    }
  }
  *o = '\0';
  return out;
}

/* An output pattern with {tenant}: one run and one file per tenant (the
   session's instances come grouped by tenant). */
static int sync_per_tenant(struct session *s, const struct sync_opts *base) {
  const char *pattern = base->output;
  size_t nok = 0, nfail = 0;

  for (size_t i = 0; i < s->ninsts;) {
    const char *tenant = s->insts[i]->ci->tenant;
    struct sync_opts o = *base;
    struct sync_status st;
    size_t j = i;
    char *path;

    while (j < s->ninsts && strcmp(s->insts[j]->ci->tenant, tenant) == 0)
      j++;
    path = sync_output_of(pattern, tenant);
    if (!path) {
      log_error("out of memory");
      return EXIT_FAIL;
    }
    o.output = path;
    sync_run(s->insts + i, j - i, &o, &st);
    free(path);
    if (st.rc >= 128)
      return st.rc;
    if (st.rc == EXIT_OK)
      nok++;
    else
      nfail++;
    i = j;
  }
  return nfail ? (nok ? EXIT_PARTIAL : EXIT_FAIL) : EXIT_OK;
}

int cmd_sync(struct session *s) {
  struct cli *cli = s->cli;
  struct sync_opts o = {0};
  struct sync_status st;

  o.output = cli->output         ? cli->output
             : s->config->output ? s->config->output
                                 : DEFAULT_OUTPUT;
  o.format = cli->format         ? cli->format
             : s->config->format ? s->config->format
                                 : "json";
  o.workers = cli->workers         ? cli->workers
              : s->config->workers ? s->config->workers
                                   : engine_default_workers();
  o.max_pages = cli->max_pages         ? cli->max_pages
                : s->config->max_pages ? s->config->max_pages
                                       : ENGINE_DEFAULT_MAX_PAGES;
  o.progress = !cli->quiet && isatty(STDERR_FILENO);
  o.allow_partial = cli->allow_partial;
  o.summary = !cli->quiet;
  o.progress_ms = SYNC_PROGRESS_MS;
  if (strstr(o.output, "{tenant}"))
    return sync_per_tenant(s, &o);
  return sync_run(s->insts, s->ninsts, &o, &st);
}
