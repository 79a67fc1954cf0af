/* SPDX-License-Identifier: MIT */
/* One HTTP transfer's response: the body under its cap, the rate-limit
   headers, and the stop check while bytes flow. */
#include "autoconfig.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_int.h"
#include "stop.h"

#define RESERVE_MAX ((unsigned long long)1 << 20)

size_t http_xfer_write(char *ptr, size_t size, size_t nmemb, void *userp) {
  struct xfer *x = userp;
  size_t n = size * nmemb;

  if (n > x->max - x->body.len) {
    x->over_cap = 1;
    return 0; /* makes curl abort the transfer */
  }
  if (x->body.len == 0 && x->content_length[0]) {
    /* The announced size in one allocation rather than a dozen doublings
       (a compressed answer announces less, and grows from there). Up to
       RESERVE_MAX only: a server's number is not trusted with more. */
    unsigned long long want = strtoull(x->content_length, NULL, 10);
    if (want > n && want <= RESERVE_MAX && want <= x->max &&
        buf_reserve(&x->body, (size_t)want)) {
      x->nomem = 1;
      return 0;
    }
  }
  if (buf_add(&x->body, ptr, n)) {
    x->nomem = 1;
    return 0;
  }
  return n;
}

static void capture_header(const char *line, size_t n, const char *name,
                           char *out) {
  size_t nl = strlen(name), len;
  const char *v, *end = line + n;

  if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
    return;
  v = line + nl + 1;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && isspace((unsigned char)end[-1]))
    end--;
  len = (size_t)(end - v);
  if (len >= HDR_VALUE_MAX)
    len = HDR_VALUE_MAX - 1;
  memcpy(out, v, len);
  out[len] = '\0';
}

/* Forget the captured headers: a new attempt, or a new header set. */
static void headers_clear(struct xfer *x) {
  x->retry_after[0] = x->rl_reset[0] = '\0';
  x->rl_limit[0] = x->rl_remaining[0] = '\0';
  x->content_length[0] = '\0';
}

size_t http_xfer_header(char *ptr, size_t size, size_t nitems, void *userp) {
  struct xfer *x = userp;
  size_t n = size * nitems;

  /* A new status line (after a 100 Continue) starts a new header set. */
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    headers_clear(x);
    return n;
  }
  capture_header(ptr, n, "Content-Length", x->content_length);
  capture_header(ptr, n, "Retry-After", x->retry_after);
  capture_header(ptr, n, "X-RateLimit-Reset", x->rl_reset);
  capture_header(ptr, n, "X-RateLimit-Limit", x->rl_limit);
  capture_header(ptr, n, "X-RateLimit-Remaining", x->rl_remaining);
  return n;
}

/* Lets a stop request cut a slow transfer short instead of waiting for its
   timeout. */
int http_xfer_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  (void)userp;
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  return stop_requested() ? 1 : 0;
}

void http_xfer_reset(struct xfer *x) {
  x->body.len = 0;
  x->body.failed = 0;
  if (x->body.p)
    x->body.p[0] = '\0';
  x->over_cap = 0;
  x->nomem = 0;
  headers_clear(x);
}
