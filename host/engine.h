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
  int progress;   /* a live line on a terminal, else an info line per 10 s */
};

#define ENGINE_DEFAULT_MAX_PAGES 100000L

/* Default worker count: a small multiple of the cores (I/O bound). */
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
