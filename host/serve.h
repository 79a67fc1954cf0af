/* SPDX-License-Identifier: MIT */
/* What the modules of `connhost serve` share: the loaded config
   generations, each tenant's schedule state and the service itself.
   cmd_serve.c runs the lifecycle (start, reload, drain), serve_sched.c the
   schedule, serve_run.c one tenant run, serve_http.c the HTTP routes. */
#ifndef CONNHOST_SERVE_H
#define CONNHOST_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "config.h"
#include "httpd.h"
#include "instance.h"
#include "util.h"

#define SERVE_INTERVAL_MS (3600L * 1000L) /* schedule.interval default */
#define SERVE_JITTER_PCT 10               /* schedule.jitter default */
#define SERVE_GRACE_MS (30L * 1000L)      /* serve.shutdown_grace default */
#define SERVE_BACKOFF_BASE_MS (10L * 1000L)
#define SERVE_BACKOFF_MAX_MS (3600L * 1000L)
#define SERVE_DEFAULT_OUTPUT "{tenant}.json"

/* One loaded config; runs hold a reference so a reload never frees the
   config under a running sync. */
struct gen {
  struct config *config;
  int refs; /* guarded by serve.lock */
};

struct tenant_rt {
  char *name;
  pthread_t thread;
  int started;
  int gone;   /* dropped by a reload: leave after the current run */
  int queued; /* POST /api/v1/sync asked for a run */
  int running;
  int failures;    /* consecutive failed runs, for the backoff */
  int64_t next_us; /* monotonic time of the next run */
  struct serve *sv;
};

struct serve {
  pthread_mutex_t lock; /* guards everything below and gen refs */
  pthread_cond_t cond;
  pthread_mutex_t registry_lock; /* loading plugins */
  struct session *s;
  struct gen *cur;
  struct tenant_rt **tenants;
  size_t ntenants;
  int stopping;
  struct metrics *metrics;
  struct leases *leases; /* a shared (PostgreSQL) store's, else NULL */
  char *replica;         /* this replica's id (leases, runs) */
  unsigned rand_state;
  /* /readyz's reason last logged ("": ready): an answer leaves the
     store's path out, the log names it once. */
  char unready[CH_ERR_MSG_SIZE + 16];
};

static inline double serve_wall_s(void) {
  return (double)util_wall_ms() / 1000.0;
}

/* serve_sched.c */
void serve_gen_put(struct serve *sv, struct gen *g);
const struct config_tenant *serve_find_tenant(const struct config *c,
                                              const char *name);
int64_t serve_deadline_of(long ms);
/* Wait on sv->cond until `when_us` (at most a second); lock held. */
void serve_wait_until(struct serve *sv, int64_t when_us);
/* Start a thread for every tenant of the current config that has none;
   mark the others gone. Lock held. */
void serve_sync_tenants(struct serve *sv);

/* serve_run.c */
char *serve_output_pattern(const struct serve *sv, const struct config *c);
int serve_bind_instance(struct serve *sv, const struct config *c,
                        const struct config_instance *ci, struct instance **out,
                        struct ch_err *err);
void serve_release_all(struct instance **insts, size_t n);
int serve_run_tenant(struct serve *sv, struct tenant_rt *t, struct gen *g,
                     int workers);
int serve_tenant_workers(const struct serve *sv, const struct config *c);

/* serve_http.c */
extern const char *const serve_open_paths[];
void serve_on_http(void *arg, const struct httpd_request *rq,
                   struct httpd_reply *rp);

#endif
