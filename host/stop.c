/* SPDX-License-Identifier: MIT */
/* The process-wide stop flag: signal handlers only set it, workers poll. */
#include "autoconfig.h"

#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "stop.h"

/* A lock-free atomic: safe to set from a signal handler and to read from
   any worker thread without a data race. */
static atomic_int stop_signal;

static void on_signal(int sig) { atomic_store(&stop_signal, sig); }

void stop_install_handlers(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int stop_requested(void) { return atomic_load(&stop_signal); }

void stop_request(int sig) { atomic_store(&stop_signal, sig); }

int stop_sleep_ms(long ms) {
  /* Sleep in short slices so a signal during a long Retry-After wait stops
     the run within ~50 ms. */
  while (ms > 0 && !atomic_load(&stop_signal)) {
    long slice = ms < 50 ? ms : 50;
    struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
  }
  return atomic_load(&stop_signal) != 0;
}
