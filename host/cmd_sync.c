/* SPDX-License-Identifier: MIT */
/* `connhost sync`, and the one sync run it shares with `connhost serve`:
   open the instances, run the engine, write the graph. */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "db.h"
#include "engine.h"
#include "graph.h"
#include "isolate.h"
#include "loader.h"
#include "log.h"
#include "safety.h"
#include "stop.h"
#include "store.h"
#include "syncrun.h"
#include "tickets.h"
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

/* CPU seconds of the calling thread: what recording the run costs. */
static double thread_cpu_s(void) {
  struct timespec t;

  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
    return 0;
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void register_all(struct instance **insts, size_t n, struct graph *g) {
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    const struct ch_plugin *d = in->plugin->desc;

    in->graph_index = graph_add_instance(g, in->ci->tenant, in->ci->name,
                                         d->name, d->version, d->types);
  }
}

/* The in-process ones: an isolated instance's child opens its own. */
static void open_all(struct instance **insts, size_t n) {
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    struct ch_err err = {0};

    if (!in->isolated && instance_open(in, &err) != CH_OK)
      instance_fail(in, "open: %s", err.msg);
  }
}

static void report_all(struct instance **insts, size_t n, struct graph *g) {
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    struct http_stats st;
    struct graph_report r = {0};

    instance_http_stats(in, &st);
    r.ok = !instance_failed(in);
    r.error = instance_failed(in) ? in->error : NULL;
    r.pages = in->pages;
    r.requests = st.requests;
    r.retries = st.retries;
    r.warnings = in->warnings;
    graph_set_report(g, in->graph_index, &r);
  }
}

/* One instance's figures, for the text summary and the JSON events. */
struct inst_figures {
  int ok;
  const char *error;
  struct http_stats st;
};

static void figures(const struct instance *in, const struct graph *g,
                    struct inst_figures *f) {
  f->error = NULL;
  f->ok = graph_instance_ok(g, in->graph_index, &f->error);
  if (!f->ok && !f->error)
    f->error = "unknown error";
  instance_http_stats(in, &f->st);
}

static void add_count(struct json_object *o, const char *name, uint64_t n) {
  json_object_object_add(o, name, json_object_new_int64((int64_t)n));
}

static struct json_object *instance_json(const struct instance *in,
                                         const struct inst_figures *f) {
  struct json_object *o = json_object_new_object();

  json_object_object_add(o, "tenant", json_object_new_string(in->ci->tenant));
  json_object_object_add(o, "instance", json_object_new_string(in->ci->name));
  json_object_object_add(o, "plugin", json_object_new_string(in->plugin->name));
  json_object_object_add(o, "status",
                         json_object_new_string(f->ok ? "ok" : "failed"));
  add_count(o, "resources", in->resources);
  add_count(o, "grants", in->grants);
  add_count(o, "requests", f->st.requests);
  add_count(o, "retries", f->st.retries);
  json_object_object_add(o, "wait_s", log_json_seconds(f->st.wait_s));
  if (!f->ok)
    json_object_object_add(o, "error", json_object_new_string(f->error));
  return o;
}

/* JSON logs: one instance_finished event per instance, then sync_finished
   with the totals and every instance's figures. `where` is the file
   written, NULL when none was. */
static void summary_events(struct instance **insts, size_t n, struct graph *g,
                           const char *where, const char *status,
                           double seconds) {
  struct json_object *fin = json_object_new_object();
  struct json_object *list = json_object_new_array();
  enum ch_log_level level = strcmp(status, "ok") ? CH_LOG_ERROR : CH_LOG_INFO;
  struct graph_counts gc;

  graph_counts(g, &gc);
  for (size_t i = 0; i < n; i++) {
    struct inst_figures f;
    struct json_object *one;

    figures(insts[i], g, &f);
    one = instance_json(insts[i], &f);
    json_object_array_add(list, json_object_get(one));
    log_event(f.ok ? CH_LOG_INFO : CH_LOG_ERROR, "instance_finished", one);
  }
  json_object_object_add(fin, "status", json_object_new_string(status));
  json_object_object_add(fin, "output",
                         where ? json_object_new_string(where) : NULL);
  add_count(fin, "resources", gc.resources);
  add_count(fin, "entitlements", gc.entitlements);
  add_count(fin, "grants", gc.grants);
  add_count(fin, "derived_grants", gc.derived_grants);
  add_count(fin, "identities", gc.identities);
  add_count(fin, "merged_identities", gc.merged_identities);
  json_object_object_add(fin, "seconds", log_json_seconds(seconds));
  json_object_object_add(fin, "instances", list);
  log_event(level, "sync_finished", fin);
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
    struct inst_figures f;

    figures(in, g, &f);
    fprintf(out,
            "  %s/%s (%s): %s, %llu resources, %llu grants, %llu requests, "
            "%llu retries, %.1f s waiting%s",
            in->ci->tenant, in->ci->name, in->plugin->name,
            f.ok ? "ok" : "FAILED", (unsigned long long)in->resources,
            (unsigned long long)in->grants, (unsigned long long)f.st.requests,
            (unsigned long long)f.st.retries, f.st.wait_s, f.ok ? "" : ": ");
    util_fput_text(f.ok ? "" : f.error, out); /* the error quotes data */
    putc('\n', out);
  }
}

/* The summary in the log's format: text on `out`, or JSON events. */
static void summary(struct instance **insts, size_t n, struct graph *g,
                    const struct sync_opts *o, FILE *out, const char *where,
                    const char *status, double seconds) {
  if (log_format() == LOG_JSON) {
    if (o->events)
      summary_events(insts, n, g, where, status, seconds);
  } else if (o->summary)
    print_summary(insts, n, g, out, where && strcmp(where, "-") ? where : NULL,
                  seconds);
}

/* "jsonl" or "json" from the path's extension, NULL for any other. */
static const char *format_of_path(const char *path) {
  const char *dot = strrchr(path, '.');

  if (!dot || strchr(dot, '/'))
    return NULL;
  if (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".ndjson") == 0)
    return "jsonl";
  if (strcmp(dot, ".json") == 0)
    return "json";
  return NULL;
}

/* --format, else the -o extension, else the config's format, else the
   config output's extension, else json. */
static const char *pick_format(const struct cli *cli, const struct config *c) {
  const char *f = NULL;

  if (cli->format)
    return cli->format;
  if (cli->output && (f = format_of_path(cli->output)))
    return f;
  if (c->format)
    return c->format;
  if (!cli->output && c->output && (f = format_of_path(c->output)))
    return f;
  return "json";
}

/* The output's directory must exist and be writable before the first
   request: finding out after an hour's sync loses the hour. */
static int output_dir_ok(const char *output) {
  char *dir;
  struct stat st;
  int ok = 0;

  /* A device, FIFO or descriptor link is written straight into (output.c):
     its directory needs no write access. A directory is no file to write. */
  if (stat(output, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      log_error("output '%s' is a directory: name the graph file in it (for "
                "example %s/graph.json)",
                output, output);
      return 0;
    }
    if (!S_ISREG(st.st_mode))
      return 1;
  }
  dir = util_dirname(output);
  if (!dir) {
    log_error("out of memory");
    return 0;
  }
  if (stat(dir, &st) != 0)
    log_error("output '%s': directory '%s': %s (create it, or choose "
              "another output with -o or 'output:')",
              output, dir, strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    log_error("output '%s': '%s' is not a directory", output, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    log_error("output '%s': directory '%s' is not writable: %s", output, dir,
              strerror(errno));
  else
    ok = 1;
  free(dir);
  return ok;
}

/* The most match keys one account has (a plugin gives a handful). */
#define JOIN_KEYS_MAX 32

struct join_arg {
  struct graph *g;
  const struct instance *in;
};

static int join_one(void *arg, const char *type, const char *match_keys) {
  const struct join_arg *j = arg;
  const struct ch_resource_type *t = plugin_type(j->in->plugin->desc, type);
  json_object *a;
  const char *keys[JOIN_KEYS_MAX + 1];
  size_t n = 0;
  int rc;

  if (!t || !(t->traits & CH_TRAIT_USER))
    return 0;
  if (!(a = json_tokener_parse(match_keys)) ||
      !json_object_is_type(a, json_type_array)) {
    json_object_put(a);
    return 0; /* a row the store wrote: never so; skip it, not the run */
  }
  for (size_t i = 0; i < json_object_array_length(a) && n < JOIN_KEYS_MAX;
       i++) {
    const char *k = json_object_get_string(json_object_array_get_idx(a, i));
    if (k && *k)
      keys[n++] = k;
  }
  keys[n] = NULL;
  rc = graph_add_join_keys(j->g, j->in->graph_index, keys);
  json_object_put(a);
  return rc == CH_E_NOMEM ? rc : 0;
}

/* A failed instance answers from its last good data in the store; its
   accounts there still join identities, or a healthy account would split
   from its person (and lose, in `access`, all it holds through them)
   until the instance is back. */
static int join_stale_accounts(struct instance **insts, size_t n,
                               struct graph *g, const char *store) {
  for (size_t i = 0; i < n; i++) {
    struct join_arg j = {g, insts[i]};
    struct ch_err err = {0};
    int rc;
    if (!instance_failed(insts[i]))
      continue;
    rc = store_last_match_keys(store, insts[i]->ci->tenant, insts[i]->ci->name,
                               join_one, &j, &err);
    if (rc == CH_E_NOMEM)
      return rc;
    if (rc)
      log_warn("%s/%s: its last good accounts are not joined to "
               "identities: %s",
               insts[i]->ci->tenant, insts[i]->ci->name, err.msg);
  }
  return CH_OK;
}

/* The output must not be a file an instance reads (a path option, such as
   flatfile's `path`): the first run would replace the input with the
   graph, and the next would fail on it. Logged; 0 when it is one. */
static int output_not_an_input(struct instance **insts, size_t n,
                               const char *output) {
  struct stat out, in;

  if (stat(output, &out) != 0)
    return 1; /* a new file is nobody's input */
  for (size_t i = 0; i < n; i++) {
    const struct plugin *p = insts[i]->plugin;
    for (size_t k = 0; k < p->nkeys && k < insts[i]->opts.n; k++) {
      const char *v = insts[i]->opts.values[k].str;
      if (p->keys[k].type != CH_OPT_PATH || !v || stat(v, &in) != 0 ||
          in.st_dev != out.st_dev || in.st_ino != out.st_ino)
        continue;
      log_error("output '%s' is what instance %s/%s reads (option '%s'): "
                "writing the graph there would replace it; choose another "
                "output with -o or 'output:'",
                output, insts[i]->ci->tenant, insts[i]->ci->name,
                p->keys[k].name);
      return 0;
    }
  }
  return 1;
}

/* Fail each instance that shrank past its threshold since the last good
   run, before graph_finish drops failed instances' records. The counts
   are the graph's, as the last good ones were: a record a server sent
   twice must not hide a shrink. */
static int check_shrink(struct instance **insts, size_t n, struct graph *g,
                        const struct sync_opts *o, const char *output) {
  struct safety_prev *prev;

  if (o->accept_shrink)
    return 0;
  prev = safety_prev_load(output);
  if (!prev || safety_prev_add_store(prev, o->store)) {
    safety_prev_free(prev);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    uint64_t res = 0, grants = 0;
    int pct = in->ci->max_shrink >= 0 ? in->ci->max_shrink
              : o->max_shrink >= 0    ? o->max_shrink
                                      : SAFETY_DEFAULT_MAX_SHRINK;
    char why[256];

    if (instance_failed(in) ||
        graph_received(g, in->graph_index, &res, &grants) != CH_OK)
      continue;
    if (safety_check(safety_prev_get(prev, in->ci->tenant, in->ci->name),
                     &(struct safety_counts){res, grants}, pct, why,
                     sizeof(why)))
      instance_fail(in, "%s", why);
  }
  safety_prev_free(prev);
  return 0;
}

void sync_figures(struct instance *in, struct sync_figures *f) {
  struct http_stats st;

  instance_http_stats(in, &st);
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
    /* isolated: records counted as they arrive, requests as the child
       publishes them */
    if ((!w->insts[i]->pinst && !w->insts[i]->isolated) ||
        instance_failed(w->insts[i]))
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
    util_cond_wait_us(&w->cond, &w->lock, 100000);
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

/* With `-o -` the graph owns stdout: what a plugin prints there (its
   children inherit the descriptor) would land inside the graph. Until the
   graph is written, descriptor 1 is stderr; the graph goes to `*graph`
   (the real stdout). 0, or -1 when that cannot be arranged (then as
   before). */
static int stdout_for_the_graph(FILE **graph, int *saved) {
  int fd;

  *graph = NULL;
  *saved = -1;
  fflush(stdout);
  if ((*saved = dup(STDOUT_FILENO)) < 0)
    return -1;
  fd = dup(*saved);
  if (fd < 0 || !(*graph = fdopen(fd, "w")) ||
      dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    if (*graph)
      fclose(*graph);
    else if (fd >= 0)
      close(fd);
    close(*saved);
    *graph = NULL;
    *saved = -1;
    return -1;
  }
  return 0;
}

/* Descriptor 1 back to the real stdout. */
static void stdout_restore(FILE *graph, int saved) {
  if (saved < 0)
    return;
  fflush(stdout);
  if (graph)
    fclose(graph);
  dup2(saved, STDOUT_FILENO);
  close(saved);
}

int sync_run(struct instance **insts, size_t n, const struct sync_opts *o,
             struct sync_status *st) {
  struct graph *g = graph_new();
  struct engine_opts eo = {0};
  struct isolate *iso = NULL;
  struct ch_err err = {0};
  struct watch w = {.insts = insts, .n = n, .progress_ms = o->progress_ms};
  pthread_t watcher;
  int watching = 0;
  char stamp[32];
  struct write_arg wa;
  int to_stdout = strcmp(o->output, "-") == 0;
  FILE *graph_out = NULL;
  int saved_stdout = -1;
  const char *status;
  int erc;
  int64_t started_ms = util_wall_ms(), run_id = 0;

  memset(st, 0, sizeof(*st));
  w.t0 = now_s();
  if (to_stdout)
    stdout_for_the_graph(&graph_out, &saved_stdout);
  if (!g) {
    log_error("out of memory");
    run_abort(&st->run, CH_E_NOMEM);
    goto out;
  }
  if (!to_stdout && (!output_dir_ok(o->output) ||
                     !output_not_an_input(insts, n, o->output))) {
    run_abort(&st->run, CH_E_CONFIG);
    goto out;
  }
  eo.workers = o->workers;
  eo.max_pages = o->max_pages;
  eo.progress = o->progress;
  log_debug("%d workers, %s output", eo.workers, o->format);

  if (o->config)
    isolate_choose(insts, n, o->config, o->isolation);
  register_all(insts, n, g);
  /* forked before this run's watcher and workers start */
  if (isolate_start(insts, n, g, &eo, &iso) != CH_OK) {
    log_error("out of memory starting the plugin processes");
    run_abort(&st->run, CH_E_NOMEM);
    goto out;
  }
  open_all(insts, n);
  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  if (watch_needed(insts, n, o->progress_ms) &&
      pthread_create(&watcher, NULL, watch_main, &w) == 0)
    watching = 1;
  erc = engine_sync(insts, n, g, &eo);
  isolate_finish(iso);
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
    run_abort(&st->run, CH_E_NOMEM);
    goto out;
  }
  if (stop_requested()) {
    int sig = stop_requested();
    log_error("stopped by %s: no graph written; %s left as it was",
              stop_signal_name(sig) ? stop_signal_name(sig) : "a signal",
              to_stdout ? "the output" : o->output);
    run_stopped(&st->run, sig);
    goto out;
  }
  if (check_shrink(insts, n, g, o, to_stdout ? NULL : o->output)) {
    log_error("out of memory");
    run_abort(&st->run, CH_E_NOMEM);
    goto out;
  }
  if (o->store && join_stale_accounts(insts, n, g, o->store)) {
    log_error("out of memory");
    run_abort(&st->run, CH_E_NOMEM);
    goto out;
  }
  report_all(insts, n, g);
  graph_finish(g);
  for (size_t i = 0; i < n; i++) {
    struct instance *in = insts[i];
    const char *error = NULL;
    int ok = graph_instance_ok(g, in->graph_index, &error);

    run_count(&st->run, ok);
    if (ok) {
      /* From here on an instance counts what the graph kept: a record
         the plugin sent twice counts once, in the summary, the events
         and serve's metrics as in the graph's stats and the store. */
      struct graph_inst_view v;
      graph_instance_view(g, (size_t)in->graph_index, &v);
      atomic_store(&in->resources, v.resources);
      atomic_store(&in->grants, v.grants);
      continue;
    }
    /* Failed while the graph was checked (e.g. a grant on an unknown
       entitlement): record it like any other instance failure. */
    if (!instance_failed(in))
      instance_fail(in, "%s", error ? error : "invalid records");
  }
  graph_counts(g, &st->counts);
  /* The store records every run, failed instances included (they keep
     their last good data there); its failure never costs the graph. */
  if (o->store) {
    double t = now_s(), cpu = thread_cpu_s();
    if (store_save_as(o->store, o->replica, g, started_ms, o->keep_runs,
                      &run_id, &err) != CH_OK) {
      log_error("%s; the graph is still written", err.msg);
      run_degrade(&st->run, err.code ? err.code : CH_E_IO);
      memset(&err, 0, sizeof(err));
    } else {
      log_debug("run %lld recorded in %.2f s (%.2f s CPU)", (long long)run_id,
                now_s() - t, thread_cpu_s() - cpu);
    }
  }
  st->run_id = run_id;
  /* Tickets for manual work are checked against what this run saw. */
  if (run_id)
    tickets_after_sync(o->tickets, insts, n, g, o->store, run_id);
  if (st->run.nfail && !o->allow_partial) {
    double dt = now_s() - w.t0;
    status = run_word(&st->run);
    /* The text summary leads up to the error; sync_finished ends the run. */
    if (log_format() != LOG_JSON)
      summary(insts, n, g, o, stderr, NULL, status, dt);
    log_error("%zu of %zu instances failed: no graph written; %s left as it "
              "was (--allow-partial writes what succeeded)",
              st->run.nfail, st->run.nfail + st->run.nok,
              to_stdout ? "the output" : o->output);
    if (log_format() == LOG_JSON)
      summary(insts, n, g, o, stderr, NULL, status, dt);
    goto out;
  }

  generated_at(stamp, sizeof(stamp));
  wa.graph = g;
  wa.format = strcmp(o->format, "jsonl") == 0 ? GRAPH_JSONL : GRAPH_JSON;
  wa.generated_at = stamp;
  if (to_stdout) {
    FILE *f = graph_out ? graph_out : stdout;
    graph_out = NULL; /* output_write_stream closes it */
    if (output_write_stream(f, "stdout", write_graph, &wa, &err) != CH_OK) {
      log_error("writing the graph to stdout: %s",
                err.msg[0] ? err.msg : "write error");
      run_abort(&st->run, CH_E_IO);
      goto out;
    }
  } else if (output_write_atomic(o->output, write_graph, &wa, &err) != CH_OK) {
    log_error("%s", err.msg);
    run_abort(&st->run, CH_E_IO);
    goto out;
  }
  st->written = 1;
  status = run_word(&st->run);
  summary(insts, n, g, o, to_stdout ? stderr : stdout, o->output, status,
          now_s() - w.t0);
  if (run_id && o->summary && log_format() == LOG_TEXT) {
    char *where = db_redact_target(o->store); /* a URL's password */
    fprintf(to_stdout ? stderr : stdout, "run %lld recorded in %s\n",
            (long long)run_id, where ? where : "the store");
    free(where);
  }
out:
  stdout_restore(graph_out, saved_stdout);
  st->rc = run_exit_code(&st->run);
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
  struct run_state total = {0};

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
      run_abort(&total, CH_E_NOMEM);
      break;
    }
    o.output = path;
    sync_run(s->insts + i, j - i, &o, &st);
    free(path);
    run_merge(&total, &st.run);
    if (total.signal)
      break; /* the other tenants are not started */
    i = j;
  }
  return run_exit_code(&total);
}

int cmd_sync(struct session *s) {
  struct cli *cli = s->cli;
  struct sync_opts o = {0};
  struct sync_status st;

  o.output = cli->output         ? cli->output
             : s->config->output ? s->config->output
                                 : DEFAULT_OUTPUT;
  o.format = pick_format(cli, s->config);
  o.workers = cli->workers         ? cli->workers
              : s->config->workers ? s->config->workers
                                   : engine_default_workers();
  o.max_pages = cli->max_pages         ? cli->max_pages
                : s->config->max_pages ? s->config->max_pages
                                       : ENGINE_DEFAULT_MAX_PAGES;
  /* The progress line is for a person at a terminal, never in JSON logs. */
  /* The engine's progress: a live line on a terminal, else an info line
     every 10 s (so the watcher logs none). */
  o.progress = !cli->quiet;
  o.allow_partial = cli->allow_partial;
  o.accept_shrink = cli->accept_shrink;
  o.max_shrink = s->config->max_shrink;
  o.summary = !cli->quiet;
  o.events = 1;
  o.config = s->config;
  o.store = s->config->store;
  o.keep_runs = s->config->keep_runs;
  o.tickets = s->config;
  /* one-shot sync: in-process unless the config says otherwise */
  o.isolation = CFG_ISOLATION_NONE;
  if (strstr(o.output, "{tenant}"))
    return sync_per_tenant(s, &o);
  return sync_run(s->insts, s->ninsts, &o, &st);
}
