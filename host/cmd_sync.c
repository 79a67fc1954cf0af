/* SPDX-License-Identifier: MIT */
/* `connhost sync`: open the instances, run the engine, write the graph. */
#include "autoconfig.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "engine.h"
#include "graph.h"
#include "log.h"
#include "safety.h"
#include "stop.h"
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

static void open_all(struct session *s, struct graph *g) {
  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
    const struct ch_plugin *d = in->plugin->desc;
    struct ch_err err = {0};

    in->graph_index = graph_add_instance(g, in->ci->tenant, in->ci->name,
                                         d->name, d->version, d->types);
    if (instance_open(in, &err) != CH_OK)
      instance_fail(in, "open: %s", err.msg);
  }
}

static void report_all(struct session *s, struct graph *g) {
  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
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
  http_client_stats(in->hctx.http, &f->st);
}

/* Seconds to the millisecond, printed as such (not 17 digits). */
static struct json_object *json_seconds(double v) {
  char text[32];
  snprintf(text, sizeof(text), "%.3f", v);
  return json_object_new_double_s(v, text);
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
  json_object_object_add(o, "wait_s", json_seconds(f->st.wait_s));
  if (!f->ok)
    json_object_object_add(o, "error", json_object_new_string(f->error));
  return o;
}

/* JSON logs: one instance_finished event per instance, then sync_finished
   with the totals and every instance's figures. `where` is the file
   written, NULL when none was. */
static void summary_events(struct session *s, struct graph *g,
                           const char *where, const char *status,
                           double seconds) {
  struct json_object *fin = json_object_new_object();
  struct json_object *list = json_object_new_array();
  enum ch_log_level level = strcmp(status, "ok") ? CH_LOG_ERROR : CH_LOG_INFO;
  struct graph_counts gc;

  graph_counts(g, &gc);
  for (size_t i = 0; i < s->ninsts; i++) {
    struct inst_figures f;
    struct json_object *one;

    figures(s->insts[i], g, &f);
    one = instance_json(s->insts[i], &f);
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
  json_object_object_add(fin, "seconds", json_seconds(seconds));
  json_object_object_add(fin, "instances", list);
  log_event(level, "sync_finished", fin);
}

static void print_summary(struct session *s, struct graph *g, FILE *out,
                          const char *where, double seconds) {
  struct graph_counts gc;

  graph_counts(g, &gc);
  if (where)
    fprintf(out, "graph written to %s\n", where);
  fprintf(out,
          "%zu resources, %zu entitlements, %zu grants (%zu derived), "
          "%zu identities (%zu joined across instances) in %.1f s\n",
          gc.resources, gc.entitlements, gc.grants, gc.derived_grants,
          gc.identities, gc.merged_identities, seconds);
  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
    struct inst_figures f;

    figures(in, g, &f);
    fprintf(out,
            "  %s/%s (%s): %s, %llu resources, %llu grants, %llu requests, "
            "%llu retries, %.1f s waiting%s%s\n",
            in->ci->tenant, in->ci->name, in->plugin->name,
            f.ok ? "ok" : "FAILED", (unsigned long long)in->resources,
            (unsigned long long)in->grants, (unsigned long long)f.st.requests,
            (unsigned long long)f.st.retries, f.st.wait_s, f.ok ? "" : ": ",
            f.ok ? "" : f.error);
  }
}

/* The summary in the log's format: text on `out`, or JSON events. */
static void summary(struct session *s, struct graph *g, FILE *out,
                    const char *where, const char *status, double seconds) {
  if (log_format() == LOG_JSON)
    summary_events(s, g, where, status, seconds);
  else if (!s->cli->quiet)
    print_summary(s, g, out, where && strcmp(where, "-") ? where : NULL,
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
     its directory needs no write access. */
  if (stat(output, &st) == 0 && !S_ISREG(st.st_mode))
    return 1;
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

/* Fail each instance that shrank past its threshold since the last good
   run, before graph_finish drops failed instances' records. */
static int check_shrink(struct session *s, const char *output) {
  struct safety_prev *prev;

  if (s->cli->accept_shrink)
    return 0;
  prev = safety_prev_load(output);
  if (!prev)
    return -1;
  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
    struct safety_counts now = {in->resources, in->grants};
    int pct = in->ci->max_shrink >= 0      ? in->ci->max_shrink
              : s->config->max_shrink >= 0 ? s->config->max_shrink
                                           : SAFETY_DEFAULT_MAX_SHRINK;
    char why[256];

    if (!instance_failed(in) &&
        safety_check(safety_prev_get(prev, in->ci->tenant, in->ci->name), &now,
                     pct, why, sizeof(why)))
      instance_fail(in, "%s", why);
  }
  safety_prev_free(prev);
  return 0;
}

int cmd_sync(struct session *s) {
  struct cli *cli = s->cli;
  struct graph *g = graph_new();
  struct engine_opts eo = {0};
  struct ch_err err = {0};
  const char *output = cli->output;
  const char *format;
  char stamp[32];
  struct write_arg wa;
  size_t nok = 0, nfail = 0;
  double t0 = now_s();
  int to_stdout, rc = EXIT_FAIL;

  if (!g) {
    log_error("out of memory");
    return EXIT_FAIL;
  }
  if (!output)
    output = s->config->output ? s->config->output : DEFAULT_OUTPUT;
  format = pick_format(cli, s->config);
  to_stdout = strcmp(output, "-") == 0;
  if (!to_stdout && !output_dir_ok(output)) {
    rc = EXIT_USAGE;
    goto out;
  }
  eo.workers = cli->workers         ? cli->workers
               : s->config->workers ? s->config->workers
                                    : engine_default_workers();
  eo.max_pages = cli->max_pages         ? cli->max_pages
                 : s->config->max_pages ? s->config->max_pages
                                        : ENGINE_DEFAULT_MAX_PAGES;
  /* The progress line is for a person at a terminal, never in JSON logs. */
  eo.progress =
      !cli->quiet && log_format() == LOG_TEXT && isatty(STDERR_FILENO);
  log_debug("%d workers, %s output", eo.workers, format);

  open_all(s, g);
  if (engine_sync(s->insts, s->ninsts, g, &eo) == CH_E_NOMEM) {
    log_error("out of memory during the sync");
    goto out;
  }
  if (stop_requested()) {
    int sig = stop_requested();
    log_error("stopped by %s: no graph written; %s left as it was",
              sig == SIGINT    ? "SIGINT"
              : sig == SIGTERM ? "SIGTERM"
                               : "signal",
              to_stdout ? "the output" : output);
    rc = 128 + sig;
    goto out;
  }
  if (check_shrink(s, to_stdout ? NULL : output)) {
    log_error("out of memory");
    goto out;
  }
  report_all(s, g);
  graph_finish(g);
  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
    const char *error = NULL;
    if (graph_instance_ok(g, in->graph_index, &error)) {
      nok++;
      continue;
    }
    nfail++;
    /* Failed while the graph was checked (e.g. a grant on an unknown
       entitlement): record it like any other instance failure. */
    if (!instance_failed(in))
      instance_fail(in, "%s", error ? error : "invalid records");
  }
  if (nfail && !cli->allow_partial) {
    const char *status = nok ? "partial" : "failed";
    double dt = now_s() - t0;
    /* The text summary leads up to the error; sync_finished ends the run. */
    if (log_format() != LOG_JSON)
      summary(s, g, stderr, NULL, status, dt);
    log_error("%zu of %zu instances failed: no graph written; %s left as it "
              "was (--allow-partial writes what succeeded)",
              nfail, nfail + nok, to_stdout ? "the output" : output);
    if (log_format() == LOG_JSON)
      summary(s, g, stderr, NULL, status, dt);
    rc = nok ? EXIT_PARTIAL : EXIT_FAIL;
    goto out;
  }

  generated_at(stamp, sizeof(stamp));
  wa.graph = g;
  wa.format = strcmp(format, "jsonl") == 0 ? GRAPH_JSONL : GRAPH_JSON;
  wa.generated_at = stamp;
  if (to_stdout) {
    if (output_write_stream(stdout, "stdout", write_graph, &wa, &err) !=
        CH_OK) {
      log_error("writing the graph to stdout: %s",
                err.msg[0] ? err.msg : "write error");
      goto out;
    }
  } else if (output_write_atomic(output, write_graph, &wa, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  rc = nfail ? (nok ? EXIT_PARTIAL : EXIT_FAIL) : EXIT_OK;
  summary(s, g, to_stdout ? stderr : stdout, to_stdout ? "-" : output,
          rc == EXIT_OK        ? "ok"
          : rc == EXIT_PARTIAL ? "partial"
                               : "failed",
          now_s() - t0);
out:
  graph_free(g);
  return rc;
}
