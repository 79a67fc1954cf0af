/* SPDX-License-Identifier: MIT */
/* The sync engine: a queue of list/grants page actions run by N workers. */
#ifndef CONNHOST_ENGINE_H
#define CONNHOST_ENGINE_H

#include <stddef.h>

#include "graph.h"
#include "instance.h"

/* Where records go instead of the graph (an isolated child's stream);
   each returns CH_OK or fails the record with `err` set. */
struct engine_emit {
  int (*on_resource)(void *ctx, struct instance *in,
                     const struct ch_resource *r, struct ch_err *err);
  int (*on_grant)(void *ctx, struct instance *in, const struct ch_grant *g,
                  struct ch_err *err);
  void *ctx;
};

struct engine_opts {
  int workers;    /* threads; >= 1 */
  long max_pages; /* pages per list/grants chain before the instance fails */
  int progress;   /* a live line on a terminal, else an info line per 10 s */
  const struct engine_emit *emit; /* NULL: records go into the graph */
};

#define ENGINE_DEFAULT_MAX_PAGES 100000L

/* Default worker count: a small multiple of the cores (I/O bound), capped
   (--help prints these two numbers). */
#define ENGINE_WORKERS_PER_CORE 4
#define ENGINE_WORKERS_MAX 32
int engine_default_workers(void);

/*
 * Sync every opened instance in `insts` (those with a NULL pinst are
 * skipped) into `g` (or to opts->emit, when set; `g` may then be NULL).
 * Instances fail in isolation (instance_fail); the run goes on for the others.
 * Returns CH_OK, or CH_E_STOPPED when a stop was requested, or CH_E_NOMEM.
 */
int engine_sync(struct instance **insts, size_t n, struct graph *g,
                const struct engine_opts *opts);

#endif
