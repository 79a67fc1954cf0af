/* SPDX-License-Identifier: MIT */
/* The process-wide stop flag set by SIGINT/SIGTERM. */
#ifndef CONNHOST_STOP_H
#define CONNHOST_STOP_H

/* Install SIGINT/SIGTERM handlers that only set the flag. */
void stop_install_handlers(void);
/* The signal that asked to stop, or 0. Async-signal-safe to read. */
int stop_requested(void);
/* Ask to stop as if `sig` arrived (tests, fatal errors). */
void stop_request(int sig);
/* Sleep up to `ms` milliseconds, waking early when a stop is requested.
   Returns non-zero if stopping. */
int stop_sleep_ms(long ms);

#endif
