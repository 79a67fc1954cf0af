/* SPDX-License-Identifier: MIT */
/* The one place a run's outcome becomes an exit code (see runstate.h). */
#include "autoconfig.h"

#include <connhost/plugin.h>

#include "runstate.h"

const char run_exit_table[] =
    "  0    ok\n"
    "  1    failure (every instance failed, the output or the store could\n"
    "       not be written, the operation failed, or diff --exit-code\n"
    "       found changes)\n"
    "  2    usage or config error (nothing was sent)\n"
    "  3    partial: some instances failed (the output is kept as it was\n"
    "       unless --allow-partial)\n"
    "  130  stopped by SIGINT, 143 by SIGTERM (serve: 0)\n";

void run_count(struct run_state *r, int ok) {
  if (ok)
    r->nok++;
  else
    r->nfail++;
}

void run_abort(struct run_state *r, int ch_status) {
  if (r->aborted == CH_OK)
    r->aborted = ch_status;
}

void run_degrade(struct run_state *r, int ch_status) {
  if (r->degraded == CH_OK)
    r->degraded = ch_status;
}

void run_stopped(struct run_state *r, int sig) {
  if (!r->signal)
    r->signal = sig;
}

void run_merge(struct run_state *total, const struct run_state *part) {
  run_stopped(total, part->signal);
  run_count(total, run_exit_code(part) == EXIT_OK);
}

int run_exit_code(const struct run_state *r) {
  if (r->signal)
    return EXIT_SIGNAL_BASE + r->signal;
  if (r->aborted == CH_E_CONFIG)
    return EXIT_USAGE;
  if (r->aborted != CH_OK)
    return EXIT_FAIL;
  if (r->nfail)
    return r->nok ? EXIT_PARTIAL : EXIT_FAIL;
  return r->degraded != CH_OK ? EXIT_FAIL : EXIT_OK;
}

const char *run_word(const struct run_state *r) {
  switch (run_exit_code(r)) {
  case EXIT_OK:
    return "ok";
  case EXIT_PARTIAL:
    return "partial";
  default:
    return "failed";
  }
}

int run_exit_of(int ch_status) {
  return ch_status == CH_OK ? EXIT_OK : EXIT_FAIL;
}
