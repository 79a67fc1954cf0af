/* SPDX-License-Identifier: MIT */
/* Process isolation: an instance's plugin runs in a child process of its
   own, which streams the sink records to the host (see isowire.h). */
#ifndef CONNHOST_ISOLATE_H
#define CONNHOST_ISOLATE_H

#include <stddef.h>

#include "config.h"
#include "engine.h"
#include "graph.h"
#include "instance.h"

/* Whether a child may be forked while other threads run (serve). Not in
   an AddressSanitizer build: its allocator (GCC 12's libasan) keeps locks
   that fork() does not reset, so a child forked while another thread is
   in malloc waits for ever; serve then runs plugins in-process. */
#if defined(__SANITIZE_ADDRESS__)
#define ISOLATE_THREADED_FORK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ISOLATE_THREADED_FORK 0
#endif
#endif
#ifndef ISOLATE_THREADED_FORK
#define ISOLATE_THREADED_FORK 1
#endif

/* How long children get to stop after a stop request before SIGKILL. */
#define ISOLATE_GRACE_MS 5000

struct isolate;

/* Set each instance's `isolated`: its own `isolation` key, else the
   config's, else `dflt` (the command's default). */
void isolate_choose(struct instance **insts, size_t n, const struct config *c,
                    enum config_isolation dflt);

/*
 * Fork a child for every isolated instance and start reading their
 * records into `g`. Safe while other threads run (serve's tenants): the
 * child resets what it inherits from them (isolate.c, child_reinit). The
 * child opens the plugin and runs the engine with `opts`. An instance
 * whose child cannot be started fails. *out is NULL when none is
 * isolated. Returns CH_OK or CH_E_NOMEM.
 */
int isolate_start(struct instance **insts, size_t n, struct graph *g,
                  const struct engine_opts *opts, struct isolate **out);

/*
 * Wait for every child; on a stop request each gets SIGTERM, and SIGKILL
 * ISOLATE_GRACE_MS later. A child whose instance the host failed
 * meanwhile (its `timeout:`) is SIGKILLed at once. Fails the instances whose
 * child crashed
 * ("plugin P crashed (SIGSEGV) in list(user) for T/I"), was killed, or
 * sent a bad stream; copies each one's counters. Frees `iso` (NULL is
 * fine).
 */
void isolate_finish(struct isolate *iso);

/* The dispatch layer names each plugin op before calling it ("list",
   "user"; `arg` may be NULL) and clears it after. No-ops outside a
   child. */
void isolate_op_enter(const char *op, const char *arg);
void isolate_op_leave(void);

#endif
