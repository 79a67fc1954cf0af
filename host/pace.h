/* SPDX-License-Identifier: MIT */
/* Adaptive pacing: one send budget per (base URL, credential, route,
   method), learned from the provider's answers and shared process-wide. */
#ifndef CONNHOST_PACE_H
#define CONNHOST_PACE_H

#include <stdint.h>

/*
 * A budget starts unpaced. It learns a rate from X-RateLimit-Limit (read
 * as requests per second, the unit of Jira's burst limits), sending at
 * PACE_MARGIN of it, and from 429s: with a known limit every 429 is real
 * (the rate halves, at most once a second, and the budget holds until
 * Retry-After); without one, only a crowd counts: more than
 * PACE_429_SHARE of the last second's answers (20 at least) were 429 (a
 * real limiter refuses everything past it; a stray 429 is retried
 * alone). After a
 * quiet second the rate climbs back additively to its ceiling.
 * X-RateLimit-Remaining: 0 on a success empties the bucket.
 *
 * The clock is a parameter so tests can script it. Thread-safe.
 */
#define PACE_MARGIN 0.95
#define PACE_429_SHARE 0.25

typedef int64_t (*pace_clock_fn)(void *arg); /* monotonic microseconds */

struct pace_table;
struct pace_budget;

/* A table of budgets; `clock` NULL means util_mono_us. */
struct pace_table *pace_table_new(pace_clock_fn clock, void *arg);
void pace_table_free(struct pace_table *t);
/* The process-wide table every HTTP client shares (created on first use;
   freed by pace_global_cleanup). NULL when out of memory. */
struct pace_table *pace_global(void);
void pace_global_cleanup(void);
/* In a child just forked from a host with other threads: start a fresh
   global table (the parent's budgets and their locks may be held by
   threads that do not exist here; they are left alone, never freed). */
void pace_fork_child(void);

/* The budget for `key` (copied), created on first use; it lives as long
   as the table. NULL when out of memory. */
struct pace_budget *pace_budget_get(struct pace_table *t, const char *key);

/* Take a send token: 0 when the request may go now, else microseconds to
   wait before asking again. */
int64_t pace_acquire(struct pace_budget *b);

/* What one answer said: its status, the X-RateLimit-Limit and
   X-RateLimit-Remaining values (-1 when absent) and the Retry-After wait
   in milliseconds (-1 when absent). */
void pace_observe(struct pace_budget *b, long status, long limit,
                  long remaining, long retry_after_ms);

/* The current send rate in requests per second; 0 when unpaced. */
double pace_rate(struct pace_budget *b);
/* The learned X-RateLimit-Limit, or 0. */
long pace_limit(struct pace_budget *b);

/*
 * The budget key for a request: "scheme://host:port\nCRED\nMETHOD ROUTE",
 * CRED a salted 64-bit hash of the credential (never the credential
 * itself). `route` NULL or "" derives a conservative one from the URL's
 * path: every segment that is not only lowercase letters, '-' and '_'
 * becomes "{}", so all ids (and keys, numbers, versions) share a budget.
 * The key is cut to `outsz` - 1 bytes (PACE_KEY_MAX is plenty); returns
 * its length.
 */
#define PACE_KEY_MAX 512
size_t pace_key(const char *url, const char *method, const char *route,
                const char *cred_a, const char *cred_b, char *out,
                size_t outsz);

#endif
