/* SPDX-License-Identifier: MIT */
/* How a command or a run ended, decided in one place: the instances'
   outcomes and the run's own failures go in, one ch_status-level verdict
   and one process exit code come out (the table in README.md, "Exit
   status", and `connhost --help` print run_exit_table). */
#ifndef CONNHOST_RUNSTATE_H
#define CONNHOST_RUNSTATE_H

#include <stddef.h>

/* The process exit codes (DESIGN §6). A stop by a signal exits with
   128 + the signal's number: 130 for SIGINT, 143 for SIGTERM. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3 };
#define EXIT_SIGNAL_BASE 128

struct run_state {
  size_t nok, nfail; /* instances (or, merged, tenant runs) */
  /* The run stopped before its output for a reason of its own (CH_OK when
     it did not): CH_E_CONFIG is a usage or config error, anything else a
     failure, whatever the instances did. */
  int aborted;
  /* A failure after the output was written (the store): the exit code of
     a run that was otherwise fine says it. */
  int degraded;
  int signal; /* stopped by this signal, 0 when not */
};

/* One instance (or tenant run) finished, well or not. */
void run_count(struct run_state *r, int ok);
/* The run stopped for a reason of its own; the first reason stays. */
void run_abort(struct run_state *r, int ch_status);
void run_degrade(struct run_state *r, int ch_status);
void run_stopped(struct run_state *r, int sig);
/* `part`, one run of several (a tenant of an `{tenant}` output), into
   `total`: counted ok when its exit code is, its signal carried over. */
void run_merge(struct run_state *total, const struct run_state *part);

/* The process exit code: 128 + signal, EXIT_USAGE, EXIT_FAIL when
   aborted, EXIT_PARTIAL or EXIT_FAIL when instances failed, EXIT_FAIL when
   degraded, else EXIT_OK. */
int run_exit_code(const struct run_state *r);
/* "ok", "partial" or "failed", for summaries and sync_finished events. */
const char *run_word(const struct run_state *r);

/* A single operation's ch_status (grant, revoke, provision, action) as an
   exit code: CH_OK 0, anything else 1 (the op ran; its failure is not a
   usage error even when the plugin calls it CH_E_CONFIG). */
int run_exit_of(int ch_status);

/* The exit codes, one line each ("  0  ok ..."), as README.md and
   `connhost --help` show them. */
extern const char run_exit_table[];

#endif
