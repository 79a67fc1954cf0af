/* SPDX-License-Identifier: MIT */
/* One sync run: a set of bound instances into their own graph and output,
   shared by `connhost sync` and `connhost serve`. */
#ifndef CONNHOST_SYNCRUN_H
#define CONNHOST_SYNCRUN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "graph.h"
#include "instance.h"
#include "runstate.h"

/* How often a running sync logs its progress (DESIGN: every 10 s). */
#define SYNC_PROGRESS_MS 10000L

struct sync_opts {
  const char *output; /* a path, or "-" for stdout */
  const char *format; /* "json" or "jsonl" */
  int workers;        /* engine threads for this run */
  long max_pages;
  int progress;      /* the terminal progress line on stderr */
  int allow_partial; /* write what succeeded when instances failed */
  int summary;       /* print the human summary */
  int events;        /* JSON logs: the run's instance_ and sync_finished
                        events (serve logs its own, one per instance) */
  long progress_ms;  /* log a progress line this often at info (0: never) */
  int accept_shrink; /* skip the safety thresholds (safety.h) */
  int max_shrink;    /* the host's max_shrink share, -1 for the default */
  const struct config *config;     /* the host-wide isolation key */
  enum config_isolation isolation; /* where plugins run if nothing says */
  const char *store;   /* the snapshot store to record the run in, or NULL */
  long keep_runs;      /* runs the store keeps */
  const char *replica; /* serve's replica id, recorded with the run */
  /* the config whose tickets are checked after the run (tickets.h), or
     NULL for none */
  const struct config *tickets;
};

/* How a run went. */
struct sync_status {
  struct run_state run; /* the instances' outcomes and the run's failures */
  int rc;               /* run_exit_code(&run), set once the run is over */
  int written;          /* the output was replaced */
  double duration;      /* seconds */
  struct graph_counts counts; /* of the finished graph (zero if none) */
  long long run_id;           /* the run's id in the store, 0 if none */
};

/* One instance's figures after (or during) a run. `error` is borrowed from
   the instance. */
struct sync_figures {
  int ok;
  const char *error;
  uint64_t resources, grants, pages;
  uint64_t requests, retries, throttled, bytes;
  double wait_s;
};

/*
 * Open `insts` (bound, not yet opened), sync them into a fresh graph and
 * write it to o->output atomically. An instance with a `timeout:` fails
 * when it passes it. Instances stay bound (the caller releases them); their
 * figures can be read with sync_figures().
 */
int sync_run(struct instance **insts, size_t n, const struct sync_opts *o,
             struct sync_status *st);
void sync_figures(struct instance *in, struct sync_figures *f);

/* An `output:` pattern with every "{tenant}" replaced by `tenant`
   (malloc'd; NULL when out of memory). */
char *sync_output_of(const char *pattern, const char *tenant);

#endif
