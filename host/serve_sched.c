/* SPDX-License-Identifier: MIT */
/* The `serve` schedule: one thread per tenant that waits for its next run,
   runs it and sets the one after (the interval, its jitter, the backoff
   after a failure). */
#include "autoconfig.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "log.h"
#include "serve.h"
#include "util.h"

void serve_gen_put(struct serve *sv, struct gen *g) {
  int last;
  pthread_mutex_lock(&sv->lock);
  last = --g->refs == 0;
  pthread_mutex_unlock(&sv->lock);
  if (last) {
    config_free(g->config);
    free(g);
  }
}

const struct config_tenant *serve_find_tenant(const struct config *c,
                                              const char *name) {
  for (size_t i = 0; i < c->ntenants; i++) {
    if (strcmp(c->tenants[i].name, name) == 0)
      return &c->tenants[i];
  }
  return NULL;
}

static long interval_ms(const struct config *c, const struct config_tenant *t) {
  if (t && t->schedule.interval_ms)
    return t->schedule.interval_ms;
  return c->schedule.interval_ms ? c->schedule.interval_ms : SERVE_INTERVAL_MS;
}

static int jitter_pct(const struct config *c, const struct config_tenant *t) {
  if (t && t->schedule.jitter_pct >= 0)
    return t->schedule.jitter_pct;
  return c->schedule.jitter_pct >= 0 ? c->schedule.jitter_pct
                                     : SERVE_JITTER_PCT;
}

/* A random extra wait of up to `pct` percent of `ms`; lock held. */
static long jitter(struct serve *sv, long ms, int pct) {
  long span = (long)((double)ms * pct / 100.0);
  return span > 0 ? (long)(rand_r(&sv->rand_state) % (span + 1)) : 0;
}

int64_t serve_deadline_of(long ms) {
  return util_mono_us() + (int64_t)ms * 1000;
}

void serve_wait_until(struct serve *sv, int64_t when_us) {
  int64_t left = when_us - util_mono_us();

  if (left <= 0)
    return;
  if (left > 1000000)
    left = 1000000; /* re-check the clock each second */
  util_cond_wait_us(&sv->cond, &sv->lock, left);
}

/* With a shared store, whether this replica may run `t` now (lease.h).
   A run asked for while another replica holds the tenant stays queued in
   the table; with the database out of reach nothing runs (/readyz says
   why). Lock held; dropped while the database answers. */
static int take_lease(struct serve *sv, struct tenant_rt *t) {
  int now = t->queued;
  enum lease_result res;
  long retry_ms;

  pthread_mutex_unlock(&sv->lock);
  res = leases_acquire(sv->leases, t->name, now, &retry_ms);
  pthread_mutex_lock(&sv->lock);
  if (res == LEASE_TAKEN && (sv->stopping || t->gone)) {
    pthread_mutex_unlock(&sv->lock);
    leases_release(sv->leases, t->name, 0); /* due at once, elsewhere */
    pthread_mutex_lock(&sv->lock);
    return 0;
  }
  if (res == LEASE_TAKEN)
    return 1;
  t->queued = 0;
  t->next_us = serve_deadline_of(retry_ms);
  return 0;
}

static void *tenant_main(void *arg) {
  struct tenant_rt *t = arg;
  struct serve *sv = t->sv;

  pthread_mutex_lock(&sv->lock);
  while (!sv->stopping && !t->gone) {
    struct gen *g;
    const struct config_tenant *ct;
    int workers, ok;
    long every, wait;

    if (!t->queued && util_mono_us() < t->next_us) {
      serve_wait_until(sv, t->next_us);
      continue;
    }
    if (sv->leases && !take_lease(sv, t))
      continue;
    g = sv->cur;
    g->refs++;
    t->queued = 0;
    t->running = 1;
    workers = serve_tenant_workers(sv, g->config);
    pthread_mutex_unlock(&sv->lock);

    ok = serve_run_tenant(sv, t, g, workers);

    pthread_mutex_lock(&sv->lock);
    t->running = 0;
    pthread_cond_broadcast(&sv->cond);
    ct = serve_find_tenant(sv->cur->config, t->name);
    every = interval_ms(sv->cur->config, ct);
    if (ok) {
      t->failures = 0;
      wait = every + jitter(sv, every, jitter_pct(sv->cur->config, ct));
    } else {
      /* exponential from min(10 s, interval), capped at min(interval, 1 h) */
      long base = every < SERVE_BACKOFF_BASE_MS ? every : SERVE_BACKOFF_BASE_MS;
      long cap = every < SERVE_BACKOFF_MAX_MS ? every : SERVE_BACKOFF_MAX_MS;
      int shift = t->failures < 20 ? t->failures : 20;
      t->failures++;
      wait = base << shift;
      if (wait > cap || wait <= 0)
        wait = cap;
      log_msg(NULL, CH_LOG_WARN,
              "tenant '%s': run failed (%d in a row); retrying in %.1f s",
              t->name, t->failures, (double)wait / 1000.0);
    }
    t->next_us = serve_deadline_of(wait);
    pthread_mutex_unlock(&sv->lock);
    if (sv->leases) /* the next run is due for every replica alike */
      leases_release(sv->leases, t->name, wait);
    serve_gen_put(sv, g);
    pthread_mutex_lock(&sv->lock);
  }
  pthread_mutex_unlock(&sv->lock);
  return NULL;
}

/* Start a thread for every tenant of the current config that has none;
   mark the others gone. Lock held. */
void serve_sync_tenants(struct serve *sv) {
  const struct config *c = sv->cur->config;

  /* gone stays gone: its thread leaves, a tenant added back gets a new one */
  for (size_t i = 0; i < sv->ntenants; i++) {
    if (!serve_find_tenant(c, sv->tenants[i]->name))
      sv->tenants[i]->gone = 1;
  }
  for (size_t i = 0; i < c->ntenants; i++) {
    const struct config_tenant *ct = &c->tenants[i];
    struct tenant_rt *t = NULL, **grown;
    for (size_t j = 0; j < sv->ntenants; j++) {
      if (strcmp(sv->tenants[j]->name, ct->name) == 0 && !sv->tenants[j]->gone)
        t = sv->tenants[j];
    }
    if (t || !cli_tenant_selected(sv->s->cli, ct->name))
      continue;
    t = calloc(1, sizeof(*t));
    grown = realloc(sv->tenants, (sv->ntenants + 1) * sizeof(*sv->tenants));
    if (grown)
      sv->tenants = grown;
    if (!t || !grown || !(t->name = strdup(ct->name))) {
      free(t);
      log_error("tenant '%s': out of memory; not scheduled", ct->name);
      continue;
    }
    t->sv = sv;
    /* the first run comes at once, spread by the jitter */
    t->next_us = serve_deadline_of(
        jitter(sv, interval_ms(c, ct), jitter_pct(c, ct)) / 10);
    sv->tenants[sv->ntenants++] = t;
    t->started = pthread_create(&t->thread, NULL, tenant_main, t) == 0;
    if (!t->started)
      log_error("tenant '%s': cannot start its thread", ct->name);
  }
}
