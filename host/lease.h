/* SPDX-License-Identifier: MIT */
/* Leases: how `serve` replicas sharing a PostgreSQL store divide the
   tenant runs. One row per tenant in connhost_leases holds the tenant's
   next due time and, while a run goes on, which replica holds it and until
   when; the holder's heartbeat renews the expiry. docs/scale-out.md has
   the design and why rows, not advisory locks. */
#ifndef CONNHOST_LEASE_H
#define CONNHOST_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include <connhost/plugin.h>

/* serve.lease_expiry default: a dead replica's tenants wait this long. */
#define LEASE_EXPIRY_MS (30L * 1000L)

struct leases;

/*
 * Connect to `url` as replica `replica` (its id in the table, the runs and
 * /metrics) and create the table if needed; start the heartbeat thread,
 * which renews the held leases every `expiry_ms` / 3 and reconnects while
 * the database is out of reach. A database that cannot be reached at
 * start is not an error: the replica starts not ready and keeps trying.
 * Errors: out of memory, or a thread that cannot start.
 */
int leases_open(const char *url, const char *replica, long expiry_ms,
                struct leases **out, struct ch_err *err);
void leases_close(struct leases *l);

enum lease_result {
  LEASE_TAKEN = 0, /* this replica runs the tenant now */
  LEASE_BUSY,      /* not due, or another replica holds it */
  LEASE_DOWN       /* no database: no new work */
};

/*
 * Take tenant's lease when its run is due and no live replica holds it
 * (a first sight of the tenant makes it due at once). `now` asks for a run
 * ahead of the schedule (POST /api/v1/sync); when another replica holds
 * the tenant the request stays queued in the table for the next taker.
 * `*retry_ms` gets how long to wait before asking again when not taken.
 */
enum lease_result leases_acquire(struct leases *l, const char *tenant, int now,
                                 long *retry_ms);

/*
 * The run of `tenant` is over: free the lease and make the next run due in
 * `next_ms`. A lease another replica took meanwhile (ours expired) counts
 * as lost.
 */
void leases_release(struct leases *l, const char *tenant, long next_ms);

/* Why the replica takes no new work (the database is out of reach), or
   NULL: `why` is filled. */
const char *leases_not_ready(struct leases *l, char *why, size_t n);

/* The lease families of /metrics appended to `body` (malloc'd, freed
   here); NULL when out of memory. */
char *leases_render_metrics(struct leases *l, char *body);

#endif
