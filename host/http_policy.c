/* SPDX-License-Identifier: MIT */
/* The HTTP retry and rate-limit policy: which failures are retried, the
   backoff, the server's own waits (Retry-After, X-RateLimit-Reset) and
   the pacing budgets' inputs. */
#include "autoconfig.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "http_int.h"
#include "pace.h"
#include "util.h"

/* A uniform value in [0, max]. Per-thread state keeps rand_r lock-free. */
static long jitter(long max) {
  static _Thread_local unsigned seed;
  static _Thread_local int seeded;
  double r;

  if (!seeded) {
    seed = (unsigned)util_mono_us() ^ (unsigned)(uintptr_t)&seed;
    seeded = 1;
  }
  r = (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
  return (long)(r * ((double)max + 1.0));
}

/* Full-jitter exponential backoff after failed attempt `attempt` (1-based). */
long http_backoff_ms(int attempt) {
  long cap = http_conf()->backoff_base_ms;

  for (int i = 1; i < attempt && cap < http_conf()->backoff_max_ms; i++)
    cap = cap > LONG_MAX / 2 ? LONG_MAX : cap * 2;
  if (cap > http_conf()->backoff_max_ms)
    cap = http_conf()->backoff_max_ms;
  return jitter(cap);
}

static long clamp_ms(int64_t ms) {
  if (ms < 0)
    return 0;
  return ms > LONG_MAX ? LONG_MAX : (long)ms;
}

/* GET and HEAD are safe to repeat; everything else may have been applied. */
int http_method_idempotent(const char *m) {
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ||
         strcmp(m, "OPTIONS") == 0;
}

/* Transport failures worth another attempt: nothing usable arrived and the
   cause is likely to pass. TLS verification failures are not among them. */
int http_curl_transient(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
}

int http_curl_status(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    return CH_E_RETRY;
  case CURLE_OUT_OF_MEMORY:
    return CH_E_NOMEM;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_SSL_CACERT_BADFILE:
    return CH_E_CONFIG;
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_BAD_CONTENT_ENCODING:
    return CH_E_PROTOCOL;
  case CURLE_FILESIZE_EXCEEDED:
    return CH_E_LIMIT;
  case CURLE_ABORTED_BY_CALLBACK:
    return CH_E_STOPPED;
  default:
    return CH_E_IO;
  }
}

/* 429/503 may say when to come back; other retryable answers use backoff.
   A read answered 409 is Jira's "the request took longer than 10 seconds
   or was interrupted" (users/search); a write's 409 is a real conflict. */
int http_status_retryable(long status, int read) {
  if (status == 429 || status == 408 || (status == 409 && read))
    return 1;
  /* 501 and 505 will not change on a second try. */
  return status >= 500 && status <= 599 && status != 501 && status != 505;
}

/* The server's own wait after a 429 or 503 (Retry-After, else
   X-RateLimit-Reset), capped; -1 when it gave none. */
long http_server_wait_ms(long status, const struct xfer *x) {
  long wait = -1;

  if (status == 429 || status == 503) {
    int64_t now = util_wall_ms();
    if (x->retry_after[0])
      wait = http_parse_retry_after(x->retry_after, now);
    if (wait < 0 && x->rl_reset[0])
      wait = http_parse_iso_reset(x->rl_reset, now);
    if (wait > http_conf()->max_wait_ms)
      wait = http_conf()->max_wait_ms;
  }
  return wait;
}

/* How long to wait before the next attempt after `status`. */
long http_retry_wait_ms(long status, const struct xfer *x, int attempt) {
  long wait = http_server_wait_ms(status, x);

  return wait < 0 ? http_backoff_ms(attempt) : wait;
}

/* A non-negative decimal header value, or -1. */
static long header_num(const char *v) {
  char *end;
  long n;

  if (!isdigit((unsigned char)*v))
    return -1;
  n = strtol(v, &end, 10);
  return *end ? -1 : n;
}

/* The request's pacing budget; NULL (unpaced) when out of memory. The
   credential only goes into the key's hash. */
struct pace_budget *http_budget_of(const struct ch_http_req *req) {
  struct pace_table *t = pace_global();
  char key[PACE_KEY_MAX];

  if (!t)
    return NULL;
  if (req->bearer)
    pace_key(req->url, req->method, req->route, "\001bearer", req->bearer, key,
             sizeof(key));
  else
    pace_key(req->url, req->method, req->route, req->basic_user,
             req->basic_secret, key, sizeof(key));
  return pace_budget_get(t, key);
}

/* Teach the budget what the answer said about the limit. */
void http_budget_observe(struct pace_budget *b, long status,
                         const struct xfer *x) {
  if (b && status > 0)
    pace_observe(b, status, header_num(x->rl_limit),
                 header_num(x->rl_remaining),
                 status == 429 ? http_server_wait_ms(status, x) : -1);
}

/* ---- Retry-After and X-RateLimit-Reset ---- */

long http_parse_retry_after(const char *value, int64_t now_ms) {
  const char *p = value;
  time_t when;

  if (!p)
    return -1;
  while (*p == ' ' || *p == '\t')
    p++;
  if (isdigit((unsigned char)*p)) {
    int64_t secs = 0;
    for (; isdigit((unsigned char)*p); p++) {
      /* Saturate: a huge value only needs to be "longer than the cap". */
      if (secs < INT64_MAX / 10000)
        secs = secs * 10 + (*p - '0');
    }
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p)
      return -1;
    return clamp_ms(secs * 1000);
  }
  if (!*p)
    return -1;
  /* curl_getdate() reads the three HTTP date forms (RFC 9110 5.6.7). */
  when = curl_getdate(p, NULL);
  if (when == -1)
    return -1;
  return clamp_ms((int64_t)when * 1000 - now_ms);
}

/* Read exactly `n` digits. */
static const char *digits(const char *p, int n, int *out) {
  int v = 0;

  for (int i = 0; i < n; i++, p++) {
    if (!isdigit((unsigned char)*p))
      return NULL;
    v = v * 10 + (*p - '0');
  }
  *out = v;
  return p;
}

long http_parse_iso_reset(const char *value, int64_t now_ms) {
  int y, mo, d, hh, mi, sec = 0, off_min = 0;
  long frac_ms = 0;
  const char *p = value;
  struct tm tm = {0};
  time_t t;

  if (!p)
    return -1;
  while (*p == ' ' || *p == '\t')
    p++;
  if (!(p = digits(p, 4, &y)) || *p++ != '-' || !(p = digits(p, 2, &mo)) ||
      *p++ != '-' || !(p = digits(p, 2, &d)) ||
      (*p != 'T' && *p != 't' && *p != ' ') || !(p = digits(p + 1, 2, &hh)) ||
      *p++ != ':' || !(p = digits(p, 2, &mi)))
    return -1;
  if (*p == ':') {
    if (!(p = digits(p + 1, 2, &sec)))
      return -1;
    if (*p == '.' || *p == ',') {
      long scale = 100;
      p++;
      if (!isdigit((unsigned char)*p))
        return -1;
      for (; isdigit((unsigned char)*p); p++, scale /= 10)
        frac_ms += (*p - '0') * scale;
    }
  }
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p == '-' ? -1 : 1, oh, om;
    if (!(p = digits(p + 1, 2, &oh)))
      return -1;
    if (*p == ':')
      p++;
    if (!(p = digits(p, 2, &om)) || oh > 23 || om > 59)
      return -1;
    off_min = sign * (oh * 60 + om);
  }
  /* No zone at all is read as UTC: the header is documented as UTC. */
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 ||
      sec > 60)
    return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = hh;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  t = timegm(&tm);
  /* timegm() normalises 31 February into March: that is garbage. */
  if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_mon != mo - 1)
    return -1;
  return clamp_ms((int64_t)t * 1000 + frac_ms - (int64_t)off_min * 60000 -
                  now_ms);
}
