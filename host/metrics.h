/* SPDX-License-Identifier: MIT */
/* What `serve` knows about each tenant/instance's runs, and its rendering
   in the Prometheus text exposition format (version 0.0.4). */
#ifndef CONNHOST_METRICS_H
#define CONNHOST_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;

/* One instance's finished run (strings borrowed for the call). */
struct metrics_run {
  const char *tenant, *instance;
  int ok;
  double started, finished;     /* wall-clock seconds since the epoch */
  double duration;              /* seconds */
  uint64_t nresources, ngrants; /* what the run synced */
  uint64_t requests, retries, throttled, bytes;
};

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* A run of tenant/instance starts at `when` (wall seconds). Thread-safe. */
void metrics_attempt(struct metrics *m, const char *tenant,
                     const char *instance, double when);
/* A run finished. Thread-safe. */
void metrics_record(struct metrics *m, const struct metrics_run *r);
/* Drop the series of every tenant/instance `keep` says no to (after a
   reload removed them). Thread-safe; `keep` runs with the lock held. */
void metrics_retain(struct metrics *m,
                    int (*keep)(void *arg, const char *tenant,
                                const char *instance),
                    void *arg);
/* The outcome of the last config (re)load; `when` is kept only when `ok`
   (the success timestamp is that of the config running). */
void metrics_config_loaded(struct metrics *m, int ok, double when);

/* The whole exposition, malloc'd ("text/plain; version=0.0.4"). NULL when
   out of memory. Thread-safe. */
char *metrics_render(struct metrics *m);

/* Append `s` to `out` escaped as a label value: backslash, double quote and
   newline escaped; bytes that are not well-formed UTF-8 become U+FFFD.
   Returns 0, or -1 when `out` is too small (then out holds a prefix). */
int metrics_escape_label(const char *s, char *out, size_t outsz);

#endif
