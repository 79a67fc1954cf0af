/* SPDX-License-Identifier: MIT */
/* The process-wide stop flag: signal handlers only set it, workers poll. */
#include "autoconfig.h"

#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "stop.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

void stop_install_handlers(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int stop_requested(void) { return stop_signal; }

void stop_request(int sig) { stop_signal = sig; }

int stop_sleep_ms(long ms) {
  /* Sleep in short slices so a signal during a long Retry-After wait stops
     the run within ~50 ms. */
  while (ms > 0 && !stop_signal) {
    long slice = ms < 50 ? ms : 50;
    struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
  }
  return stop_signal != 0;
}
