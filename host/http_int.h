/* SPDX-License-Identifier: MIT */
/* Inside the HTTP service: what its modules share. http.c is the client
   and the request loop; http_pool.c the process-wide curl state;
   http_policy.c when to retry and how long to wait; http_xfer.c one
   transfer's capped body and headers; http_error.c error summaries;
   http_url.c URL checks and encoding. */
#ifndef CONNHOST_HTTP_INT_H
#define CONNHOST_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"
#include "http.h"
#include "pace.h"

#define HDR_VALUE_MAX 128
#define SHOWN_URL_MAX 160
/* Summaries are built and redacted at this width and only then cut to the
   message size, so a cut can never leave half a secret unredacted. */
#define WIDE_MSG_MAX 1024

/* ---- http_pool.c ---- */

/* The settings http_global_init() took; read-only after it. */
const struct http_global_conf *http_conf(void);
/* Whether http_global_init() ran. */
int http_ready(void);
/* The calling thread's easy handle on the shared pool; NULL on failure. */
CURL *http_thread_easy(void);

/* ---- http_xfer.c ---- */

/* One attempt's response: the body (capped at `max`) and the headers the
   retry and pacing policy read. */
struct xfer {
  struct buf body; /* the host's growable buffer; the cap is checked here */
  size_t max;
  int over_cap;
  int nomem;
  char retry_after[HDR_VALUE_MAX];
  char rl_reset[HDR_VALUE_MAX];
  char rl_limit[HDR_VALUE_MAX];
  char rl_remaining[HDR_VALUE_MAX];
  char content_length[HDR_VALUE_MAX]; /* sizes the body in one allocation */
};

/* The curl callbacks that fill it (WRITEDATA / HEADERDATA: the xfer), and
   the progress callback that lets a stop request end a transfer. */
size_t http_xfer_write(char *ptr, size_t size, size_t nmemb, void *userp);
size_t http_xfer_header(char *ptr, size_t size, size_t nitems, void *userp);
int http_xfer_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow);
/* Empty it for the next attempt (the buffer is kept). */
void http_xfer_reset(struct xfer *x);

/* ---- http_policy.c ---- */

/* Full-jitter exponential backoff after failed attempt `attempt`. */
long http_backoff_ms(int attempt);
int http_method_idempotent(const char *m);
/* A transport failure worth another attempt. */
int http_curl_transient(CURLcode rc);
/* The CH_E_* code of a transport failure. */
int http_curl_status(CURLcode rc);
/* An HTTP status worth another attempt. */
int http_status_retryable(long status, int read);
/* The server's own wait after a 429 or 503, capped; -1 when it gave none. */
long http_server_wait_ms(long status, const struct xfer *x);
/* How long to wait before the next attempt after `status`. */
long http_retry_wait_ms(long status, const struct xfer *x, int attempt);
/* The request's pacing budget (pace.h); NULL (unpaced) when out of memory. */
struct pace_budget *http_budget_of(const struct ch_http_req *req);
/* Teach the budget what the answer said about the limit. */
void http_budget_observe(struct pace_budget *b, long status,
                         const struct xfer *x);

/* ---- http_error.c: text for messages and logs ---- */

/* `n` bytes of `in` as one line: control bytes become spaces, runs of
   spaces collapse. */
void http_squash(const char *in, size_t n, char *out, size_t outsz);
/* Cut `s` to at most `max` bytes on a UTF-8 boundary. */
void http_utf8_cut(char *s, size_t max);
/* Copy `src` into a message buffer, cut on a UTF-8 boundary. */
void http_set_msg(char *dst, size_t dstsz, const char *src);

/* ---- http_url.c ---- */

/* The URL as errors and logs show it (no userinfo, query or fragment). */
void http_shown_url(const char *url, char *out, size_t outsz);
/* Whether the URL's path has a "." or ".." segment (literal or %2E). */
int http_has_dot_segment(const char *url);

#endif
