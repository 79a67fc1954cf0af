/* SPDX-License-Identifier: MIT */
/* The process-wide stop flag set by SIGINT/SIGTERM. */
#ifndef CONNHOST_STOP_H
#define CONNHOST_STOP_H

/* Seconds a stop may take before the process exits anyway. */
#define STOP_GRACE_S 10

/*
 * Install the handlers: the first SIGINT/SIGTERM only sets the flag (and
 * starts the grace period); a second one, or the grace period running
 * out, exits at once with 128 + the first signal's number (the output is
 * written atomically, so the previous one stays intact). SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL and SIGABRT print one line naming the plugin op running
 * on the faulting thread (see stop_enter_op) and then kill the process
 * with the same signal. Threads created afterwards get a 1 MiB stack
 * guard, so a plugin's stack overflow faults there instead of writing on
 * into another thread's stack.
 */
void stop_install_handlers(void);
/* Name the plugin op this thread is about to run: `label` is the
   instance's log prefix ("jira_cloud:acme/jira"), `op` "list", `arg` the
   type. The strings must outlive the op. */
/* "SIGSEGV" and the like, NULL for a signal without a name here;
   async-signal-safe. */
const char *stop_signal_name(int sig);

void stop_enter_op(const char *label, const char *op, const char *arg);
void stop_leave_op(void);
/* The signal that asked to stop, or 0. Async-signal-safe to read. */
int stop_requested(void);
/* Ask to stop as if `sig` arrived (tests, fatal errors). */
void stop_request(int sig);
/* Sleep up to `ms` milliseconds, waking early when a stop is requested.
   Returns non-zero if stopping. */
int stop_sleep_ms(long ms);

#endif
