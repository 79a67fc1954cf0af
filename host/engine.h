/* SPDX-License-Identifier: MIT */
/* The sync engine: a queue of list/grants page actions run by N workers. */
#ifndef CONNHOST_ENGINE_H
#define CONNHOST_ENGINE_H

#include <stddef.h>

#include "graph.h"
#include "instance.h"

struct engine_opts {
  int workers;    /* threads; >= 1 */
  long max_pages; /* pages per list/grants chain before the instance fails */
  int progress;   /* print a progress line on stderr */
};

#define ENGINE_DEFAULT_MAX_PAGES 100000L

/* Default worker count: a small multiple of the cores (I/O bound), capped
   (--help prints these two numbers). */
#define ENGINE_WORKERS_PER_CORE 4
#define ENGINE_WORKERS_MAX 32
int engine_default_workers(void);

/*
 * Sync every opened instance in `insts` (those with a NULL pinst are
 * skipped) into `g`. Instances fail in isolation (instance_fail); the run
 * goes on for the others. Returns CH_OK, or CH_E_STOPPED when a stop was
 * requested, or CH_E_NOMEM.
 */
int engine_sync(struct instance **insts, size_t n, struct graph *g,
                const struct engine_opts *opts);

#endif
