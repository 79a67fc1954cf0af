/* SPDX-License-Identifier: MIT */
/* `connhost sync`: open the instances, run the engine, write the graph. */
#include "autoconfig.h"

#include <signal.h>
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

int cmd_sync(struct session *s) {
  struct cli *cli = s->cli;
  struct graph *g = graph_new();
  struct engine_opts eo = {0};
  struct ch_err err = {0};
  const char *output = cli->output;
  const char *format = cli->format;
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
  if (!format)
    format = s->config->format ? s->config->format : "json";
  to_stdout = strcmp(output, "-") == 0;
  eo.workers = cli->workers         ? cli->workers
               : s->config->workers ? s->config->workers
                                    : engine_default_workers();
  eo.max_pages = cli->max_pages         ? cli->max_pages
                 : s->config->max_pages ? s->config->max_pages
                                        : ENGINE_DEFAULT_MAX_PAGES;
  eo.progress = !cli->quiet;

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
    if (!cli->quiet)
      print_summary(s, g, stderr, NULL, now_s() - t0);
    log_error("%zu of %zu instances failed: no graph written; %s left as it "
              "was (--allow-partial writes what succeeded)",
              nfail, nfail + nok, to_stdout ? "the output" : output);
    rc = nok ? EXIT_PARTIAL : EXIT_FAIL;
    goto out;
  }

  generated_at(stamp, sizeof(stamp));
  wa.graph = g;
  wa.format = strcmp(format, "jsonl") == 0 ? GRAPH_JSONL : GRAPH_JSON;
  wa.generated_at = stamp;
  if (to_stdout) {
    if (write_graph(stdout, &wa, &err) != CH_OK || fflush(stdout) != 0) {
      log_error("writing the graph to stdout: %s",
                err.msg[0] ? err.msg : "write error");
      goto out;
    }
  } else if (output_write_atomic(output, write_graph, &wa, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  if (!cli->quiet)
    print_summary(s, g, to_stdout ? stderr : stdout, to_stdout ? NULL : output,
                  now_s() - t0);
  rc = nfail ? (nok ? EXIT_PARTIAL : EXIT_FAIL) : EXIT_OK;
out:
  graph_free(g);
  return rc;
}
