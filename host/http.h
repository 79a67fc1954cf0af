/* SPDX-License-Identifier: MIT */
/* The host HTTP service: libcurl with a shared pool, retries, caps. */
#ifndef CONNHOST_HTTP_H
#define CONNHOST_HTTP_H

#include <stdint.h>
#include <stdio.h>

#include <connhost/plugin.h>

/* Process-wide settings; http_global_init() runs once in main before any
   thread starts (it calls curl_global_init). */
struct http_global_conf {
  long timeout_ms;         /* default total timeout per attempt (30000) */
  long connect_timeout_ms; /* default 10000 */
  size_t max_body;         /* response body cap in bytes (64 MiB) */
  int max_attempts;        /* attempts per request including the first (6) */
  long backoff_base_ms;    /* first backoff (500), doubled per attempt */
  long backoff_max_ms;     /* cap of one wait (30000) */
  long max_wait_ms;        /* cap of a Retry-After wait (120000) */
};

int http_global_init(const struct http_global_conf *conf, struct ch_err *err);
void http_global_cleanup(void);
/* In a child just forked from a host with other threads: a fresh
   connection pool and lock set, and no easy handle yet on this thread.
   The parent's pool, its connections (TLS state shared with the parent's
   sockets) and its handles are never used nor freed here: a cleanup
   could send a TLS close over a socket the parent still uses. */
int http_fork_child(void);
void http_global_defaults(struct http_global_conf *conf);

/* Per-instance counters, read after a run. */
struct http_stats {
  uint64_t requests; /* attempts sent (counted as sent), retries included */
  uint64_t retries;
  uint64_t throttled; /* answers that were 429 */
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t errors; /* requests that ended in a negative status */
  double wait_s;   /* time spent waiting before retries and rate caps */
};

/* One instance's HTTP state: settings, rate limiter, counters. */
struct http_client;

/* `label` prefixes log lines ("jira_cloud:acme/jira"); copied. */
struct http_client *http_client_new(const char *label);
void http_client_free(struct http_client *c);
int http_client_setup(struct http_client *c, const struct ch_http_conf *conf,
                      struct ch_err *err);
/* Dry run: print requests to `out` (redacted) instead of sending them. */
/* Send nothing more through `c`: requests waiting for a retry or a send
   slot end with CH_E_STOPPED (the instance failed; its work is void). */
void http_client_cancel(struct http_client *c);
void http_client_set_dry_run(struct http_client *c, FILE *out);
int http_client_dry_run(const struct http_client *c);
void http_client_stats(struct http_client *c, struct http_stats *out);
/* Have `fn` called with the counters after every change to them, on the
   thread that made it and under the client's lock (so: short, and no
   call back into `c`). An isolated plugin's process publishes them so,
   where its host still reads them after killing it (isolate.c). */
void http_client_watch_stats(struct http_client *c,
                             void (*fn)(void *arg, const struct http_stats *st),
                             void *arg);

/* Called around every sleep of a request on the sleeping thread, so a
   worker pool can lend the thread's slot meanwhile (engine.c). `paced` is
   1 for a wait on a pacing budget or the rate cap (the endpoint is the
   bottleneck), 0 for a retry's wait. Per thread: each worker sets its
   own (several engines run at once under serve). */
void http_set_wait_hooks(void (*begin)(void *arg, int paced),
                         void (*end)(void *arg), void *arg);

/* The ch_host.http contract (see plugin.h). Requests share the pacing
   budget of their base URL, credential, route and method (pace.h).
   Thread-safe. */
int http_request(struct http_client *c, const struct ch_http_req *req,
                 struct ch_http_resp *resp, struct ch_err *err);
void http_resp_free(struct ch_http_resp *resp);
/* The ch_host.http_error contract. */
int http_error(const struct ch_http_resp *resp, const char *what,
               struct ch_err *err);

size_t http_url_encode(const char *in, char *out, size_t outsz);
int http_url_query_get(const char *url, const char *name, char *out,
                       size_t outsz);

/* Parse a Retry-After value (delta seconds or an HTTP date) or an ISO-8601
   X-RateLimit-Reset ("2026-11-23T10:15Z", seconds optional) into a wait in
   milliseconds from `now_ms`. Returns -1 when unparseable. Exposed for
   tests. */
long http_parse_retry_after(const char *value, int64_t now_ms);
long http_parse_iso_reset(const char *value, int64_t now_ms);

#endif
