/* SPDX-License-Identifier: MIT */
/* The host HTTP service: libcurl with a shared pool, retries, caps. */
#include "autoconfig.h"

#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "http.h"
#include "log.h"
#include "pace.h"
#include "stop.h"
#include "util.h"

#define USER_AGENT "connhost/" PACKAGE_VERSION
#define HDR_VALUE_MAX 128
#define SHOWN_URL_MAX 160
#define DEBUG_BODY_MAX 500
/* Longest secret whose redaction a cut is guaranteed not to split. */
#define SECRET_WINDOW 8192
#define TEXT_SUMMARY_MAX 120
/* Summaries are built and redacted at this width and only then cut to the
   message size, so a cut can never leave half a secret unredacted. */
#define WIDE_MSG_MAX 1024
/* Error bodies bigger than this are not worth parsing as JSON. */
#define ERROR_JSON_MAX (1024 * 1024)

/* ---- process-wide state -------------------------------------------------- */

/* Written by http_global_init() before any worker starts, then only read. */
static struct http_global_conf gconf;
static int ginit;
static CURLSH *gshare;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
/* Each thread keeps one easy handle so its connections stay warm; the key's
   destructor frees it when a worker thread exits. */
static pthread_key_t easy_key;

void http_global_defaults(struct http_global_conf *conf) {
  conf->timeout_ms = 30000;
  conf->connect_timeout_ms = 10000;
  conf->max_body = (size_t)64 * 1024 * 1024;
  conf->max_attempts = 6;
  conf->backoff_base_ms = 500;
  conf->backoff_max_ms = 30000;
  conf->max_wait_ms = 120000;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access,
                       void *userp) {
  (void)h;
  (void)access;
  (void)userp;
  if ((unsigned)data < CURL_LOCK_DATA_LAST)
    pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp) {
  (void)h;
  (void)userp;
  if ((unsigned)data < CURL_LOCK_DATA_LAST)
    pthread_mutex_unlock(&share_locks[data]);
}

static void easy_destroy(void *p) { curl_easy_cleanup(p); }

int http_global_init(const struct http_global_conf *conf, struct ch_err *err) {
  int result = CH_E_CONFIG;
  int curl_done = 0, key_done = 0;
  size_t nlocks = 0;

  if (ginit)
    return ch_err_set(err, CH_E_CONFIG, "http service initialised twice");

  /* Zero or negative means "not set": keep the default. */
  http_global_defaults(&gconf);
  if (conf) {
    if (conf->timeout_ms > 0)
      gconf.timeout_ms = conf->timeout_ms;
    if (conf->connect_timeout_ms > 0)
      gconf.connect_timeout_ms = conf->connect_timeout_ms;
    if (conf->max_body > 0)
      gconf.max_body = conf->max_body;
    if (conf->max_attempts > 0)
      gconf.max_attempts = conf->max_attempts;
    if (conf->backoff_base_ms > 0)
      gconf.backoff_base_ms = conf->backoff_base_ms;
    if (conf->backoff_max_ms > 0)
      gconf.backoff_max_ms = conf->backoff_max_ms;
    if (conf->max_wait_ms > 0)
      gconf.max_wait_ms = conf->max_wait_ms;
  }

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    ch_err_set(err, CH_E_IO, "cannot initialise libcurl");
    goto out;
  }
  curl_done = 1;
  for (; nlocks < CURL_LOCK_DATA_LAST; nlocks++) {
    if (pthread_mutex_init(&share_locks[nlocks], NULL)) {
      ch_err_set(err, CH_E_NOMEM, "cannot create the http pool locks");
      goto out;
    }
  }
  if (pthread_key_create(&easy_key, easy_destroy)) {
    ch_err_set(err, CH_E_NOMEM, "cannot create the http thread key");
    goto out;
  }
  key_done = 1;
  gshare = curl_share_init();
  if (!gshare || curl_share_setopt(gshare, CURLSHOPT_LOCKFUNC, share_lock) ||
      curl_share_setopt(gshare, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
      curl_share_setopt(gshare, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) ||
      curl_share_setopt(gshare, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
      curl_share_setopt(gshare, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) {
    ch_err_set(err, CH_E_NOMEM, "cannot create the http connection pool");
    goto out;
  }
  ginit = 1;
  result = CH_OK;
out:
  if (result != CH_OK) {
    if (gshare)
      curl_share_cleanup(gshare);
    gshare = NULL;
    if (key_done)
      pthread_key_delete(easy_key);
    while (nlocks > 0)
      pthread_mutex_destroy(&share_locks[--nlocks]);
    if (curl_done)
      curl_global_cleanup();
  }
  return result;
}

void http_global_cleanup(void) {
  CURL *h;

  if (!ginit)
    return;
  /* Worker threads freed their handles on exit; the caller's is ours. */
  h = pthread_getspecific(easy_key);
  if (h) {
    pthread_setspecific(easy_key, NULL);
    curl_easy_cleanup(h);
  }
  if (curl_share_cleanup(gshare) != CURLSHE_OK) {
    /* A thread that is still running holds a handle on the pool: leaking it
       is better than freeing memory that thread may still use. */
    log_warn("http: connection pool still in use at exit");
  } else {
    for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
      pthread_mutex_destroy(&share_locks[i]);
  }
  gshare = NULL;
  pthread_key_delete(easy_key);
  curl_global_cleanup();
  pace_global_cleanup();
  ginit = 0;
}

/* The calling thread's easy handle, reset to defaults; NULL on failure. */
static CURL *thread_easy(void) {
  CURL *h = pthread_getspecific(easy_key);

  /* http_request() resets the handle after use: reset keeps the live
     connections and the share and drops every option. */
  if (h)
    return h;
  h = curl_easy_init();
  if (!h)
    return NULL;
  if (curl_easy_setopt(h, CURLOPT_SHARE, gshare) != CURLE_OK ||
      pthread_setspecific(easy_key, h)) {
    curl_easy_cleanup(h);
    return NULL;
  }
  return h;
}

/* ---- time and randomness ------------------------------------------------ */

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
static long backoff_ms(int attempt) {
  long cap = gconf.backoff_base_ms;

  for (int i = 1; i < attempt && cap < gconf.backoff_max_ms; i++)
    cap = cap > LONG_MAX / 2 ? LONG_MAX : cap * 2;
  if (cap > gconf.backoff_max_ms)
    cap = gconf.backoff_max_ms;
  return jitter(cap);
}

static long clamp_ms(int64_t ms) {
  if (ms < 0)
    return 0;
  return ms > LONG_MAX ? LONG_MAX : (long)ms;
}

/* ---- the client --------------------------------------------------------- */

struct http_client {
  char *label;
  char *ca_file;
  long timeout_ms; /* 0: the global default */
  long connect_timeout_ms;
  double max_rps;
  FILE *dry_out;        /* non-NULL: dry run */
  pthread_mutex_t lock; /* guards stats and next_us */
  struct http_stats stats;
  int64_t next_us; /* monotonic time the next request may start */
};

struct http_client *http_client_new(const char *label) {
  struct http_client *c = calloc(1, sizeof(*c));

  if (!c)
    return NULL;
  if (label) {
    c->label = strdup(label);
    if (!c->label) {
      free(c);
      return NULL;
    }
  }
  if (pthread_mutex_init(&c->lock, NULL)) {
    free(c->label);
    free(c);
    return NULL;
  }
  return c;
}

void http_client_free(struct http_client *c) {
  if (!c)
    return;
  pthread_mutex_destroy(&c->lock);
  free(c->label);
  free(c->ca_file);
  free(c);
}

int http_client_setup(struct http_client *c, const struct ch_http_conf *conf,
                      struct ch_err *err) {
  char *ca = NULL;

  if (!c || !conf)
    return ch_err_set(err, CH_E_INVALID, "http setup without settings");
  if (conf->max_rps < 0 || conf->max_rps != conf->max_rps)
    return ch_err_set(err, CH_E_CONFIG, "max_rps must be 0 or more");
  if (conf->timeout_ms < 0 || conf->connect_timeout_ms < 0)
    return ch_err_set(err, CH_E_CONFIG, "http timeouts must be 0 or more");
  if (conf->ca_file && *conf->ca_file) {
    /* Fail at open() with the file's name rather than on the first request
       with a TLS error that does not mention it. */
    if (access(conf->ca_file, R_OK) != 0)
      return ch_err_set(err, CH_E_CONFIG, "ca_file '%s' is not readable",
                        conf->ca_file);
    ca = strdup(conf->ca_file);
    if (!ca)
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  free(c->ca_file);
  c->ca_file = ca;
  c->max_rps = conf->max_rps;
  c->timeout_ms = conf->timeout_ms;
  c->connect_timeout_ms = conf->connect_timeout_ms;
  return CH_OK;
}

void http_client_set_dry_run(struct http_client *c, FILE *out) {
  c->dry_out = out;
}

int http_client_dry_run(const struct http_client *c) {
  return c && c->dry_out != NULL;
}

void http_client_stats(struct http_client *c, struct http_stats *out) {
  pthread_mutex_lock(&c->lock);
  *out = c->stats;
  pthread_mutex_unlock(&c->lock);
}

/* The calling thread's hooks (an engine's worker sets its own). */
static _Thread_local void (*wait_begin)(void *, int);
static _Thread_local void (*wait_end)(void *);
static _Thread_local void *wait_arg;

void http_set_wait_hooks(void (*begin)(void *arg, int paced),
                         void (*end)(void *arg), void *arg) {
  wait_begin = begin;
  wait_end = end;
  wait_arg = arg;
}

/* Sleep `ms` and count it as waiting (`paced`: for a budget or the rate
   cap, not a retry). Returns non-zero when stopping. */
static int client_wait(struct http_client *c, long ms, int paced) {
  int64_t t0 = util_mono_us(), spent;
  int stopped;

  if (wait_begin)
    wait_begin(wait_arg, paced);
  stopped = stop_sleep_ms(ms);
  if (wait_end)
    wait_end(wait_arg);
  spent = util_mono_us() - t0;

  pthread_mutex_lock(&c->lock);
  c->stats.wait_s += (double)spent / 1e6;
  pthread_mutex_unlock(&c->lock);
  return stopped;
}

/* The request-rate cap: each caller books the next free slot under the lock
   and then sleeps outside it, so concurrent workers queue fairly. */
static int client_pace(struct http_client *c) {
  int64_t now, start, interval;

  if (c->max_rps <= 0)
    return 0;
  interval = (int64_t)(1e6 / c->max_rps);
  pthread_mutex_lock(&c->lock);
  now = util_mono_us();
  start = c->next_us > now ? c->next_us : now;
  c->next_us = start + interval;
  pthread_mutex_unlock(&c->lock);
  if (start <= now)
    return 0;
  return client_wait(c, (long)((start - now + 999) / 1000), 1);
}

/* ---- small text helpers ------------------------------------------------- */

/* Copy `n` bytes of `in` as one line: control bytes become spaces and runs
   of spaces collapse, so a body cannot forge extra log lines. */
static void squash(const char *in, size_t n, char *out, size_t outsz) {
  size_t o = 0;
  int space = 1; /* also trims leading space */

  if (!outsz)
    return;
  for (size_t i = 0; i < n && in[i] && o + 1 < outsz; i++) {
    unsigned char ch = (unsigned char)in[i];
    if (ch < 0x20 || ch == 0x7f || ch == ' ') {
      if (!space)
        out[o++] = ' ';
      space = 1;
    } else {
      out[o++] = (char)ch;
      space = 0;
    }
  }
  while (o > 0 && out[o - 1] == ' ')
    o--;
  out[o] = '\0';
}

/* Cut `s` to at most `max` bytes without splitting a UTF-8 sequence. */
static void utf8_cut(char *s, size_t max) {
  size_t len = strlen(s);

  if (len <= max)
    return;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  s[max] = '\0';
}

/* Copy `src` into a message buffer, cutting on a UTF-8 boundary. */
static void set_msg(char *dst, size_t dstsz, const char *src) {
  size_t n = strlen(src);

  if (n >= dstsz) {
    n = dstsz - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* The URL as errors and logs show it: no userinfo, no query, no fragment,
   and not too long. */
static void shown_url(const char *url, char *out, size_t outsz) {
  const char *p = url, *scheme_end = strstr(url, "://");
  size_t o = 0;

  if (scheme_end) {
    const char *host = scheme_end + 3;
    const char *at = host + strcspn(host, "@/?#");
    size_t pre = (size_t)(host - url);
    if (*at == '@') {
      /* Drop "user:password@" but keep the scheme. */
      if (pre >= outsz)
        pre = outsz - 1;
      memcpy(out, url, pre);
      o = pre;
      p = at + 1;
    }
  }
  for (; *p && *p != '?' && *p != '#' && o + 1 < outsz; p++)
    out[o++] = *p;
  out[o] = '\0';
  if (o > SHOWN_URL_MAX && SHOWN_URL_MAX + 4 < outsz)
    memcpy(out + SHOWN_URL_MAX, "...", 4);
}

/* Whether the path of `url` has a "." or ".." segment, literal or
   percent-encoded: a resolver would collapse it, so `.../user/..` would
   address the parent (a revoke becoming a delete of the group). */
static int has_dot_segment(const char *url) {
  const char *p = strstr(url, "://");

  p = p ? p + 3 : url;
  p += strcspn(p, "/?#"); /* past the authority */
  while (*p == '/') {
    size_t dots = 0, len;
    p++;
    len = strcspn(p, "/?#");
    for (size_t i = 0; i < len;) {
      if (p[i] == '.') {
        i++;
      } else if (p[i] == '%' && i + 2 < len && p[i + 1] == '2' &&
                 (p[i + 2] == 'e' || p[i + 2] == 'E')) {
        i += 3;
      } else {
        dots = 3; /* not only dots */
        break;
      }
      dots++;
    }
    if (len && (dots == 1 || dots == 2))
      return 1;
    p += len;
  }
  return 0;
}

/* Register `s` and its JSON-escaped spelling ("/" as "\\/") as secrets. */
static void add_secret_forms(const char *s) {
  char esc[2 * HDR_VALUE_MAX * 4];
  size_t o = 0;

  log_add_secret(s);
  if (!strchr(s, '/'))
    return;
  for (; *s && o + 3 < sizeof(esc); s++) {
    if (*s == '/')
      esc[o++] = '\\';
    esc[o++] = *s;
  }
  esc[o] = '\0';
  if (!*s)
    log_add_secret(esc);
}

/*
 * The credentials libcurl derives go on the wire as "Bearer <v>" and
 * "Basic base64(user:secret)"; a server that echoes its request headers in
 * an error body would otherwise put them in our logs.
 */
static void register_derived_secrets(const struct ch_http_req *req) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *user = req->basic_user ? req->basic_user : "";
  const char *pass = req->basic_secret ? req->basic_secret : "";
  size_t ul = strlen(user), pl = strlen(pass), n = ul + 1 + pl, o = 0;
  unsigned char *raw;
  char *enc;

  if (req->bearer)
    add_secret_forms(req->bearer);
  if (!req->basic_user && !req->basic_secret)
    return;
  raw = malloc(n);
  enc = malloc(4 * ((n + 2) / 3) + 1);
  if (raw && enc) {
    memcpy(raw, user, ul);
    raw[ul] = ':';
    memcpy(raw + ul + 1, pass, pl);
    for (size_t i = 0; i < n; i += 3) {
      unsigned v = (unsigned)raw[i] << 16;
      if (i + 1 < n)
        v |= (unsigned)raw[i + 1] << 8;
      if (i + 2 < n)
        v |= raw[i + 2];
      enc[o++] = b64[(v >> 18) & 63];
      enc[o++] = b64[(v >> 12) & 63];
      enc[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
      enc[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    enc[o] = '\0';
    add_secret_forms(enc);
  }
  free(raw);
  free(enc);
}

/* ---- one transfer ------------------------------------------------------- */

struct xfer {
  char *body;
  size_t len;
  size_t cap;
  size_t max;
  int over_cap;
  int nomem;
  char retry_after[HDR_VALUE_MAX];
  char rl_reset[HDR_VALUE_MAX];
  char rl_limit[HDR_VALUE_MAX];
  char rl_remaining[HDR_VALUE_MAX];
};

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp) {
  struct xfer *x = userp;
  size_t n = size * nmemb;

  if (n > x->max - x->len) {
    x->over_cap = 1;
    return 0; /* makes curl abort the transfer */
  }
  if (x->len + n + 1 > x->cap) {
    size_t cap = x->cap ? x->cap * 2 : 16384;
    char *grown;
    if (cap < x->len + n + 1)
      cap = x->len + n + 1;
    grown = realloc(x->body, cap);
    if (!grown) {
      x->nomem = 1;
      return 0;
    }
    x->body = grown;
    x->cap = cap;
  }
  memcpy(x->body + x->len, ptr, n);
  x->len += n;
  x->body[x->len] = '\0';
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

static size_t header_cb(char *ptr, size_t size, size_t nitems, void *userp) {
  struct xfer *x = userp;
  size_t n = size * nitems;

  /* A new status line (after a 100 Continue) starts a new header set. */
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    x->retry_after[0] = x->rl_reset[0] = '\0';
    x->rl_limit[0] = x->rl_remaining[0] = '\0';
    return n;
  }
  capture_header(ptr, n, "Retry-After", x->retry_after);
  capture_header(ptr, n, "X-RateLimit-Reset", x->rl_reset);
  capture_header(ptr, n, "X-RateLimit-Limit", x->rl_limit);
  capture_header(ptr, n, "X-RateLimit-Remaining", x->rl_remaining);
  return n;
}

/* Lets a stop request cut a slow transfer short instead of waiting for its
   timeout. */
static int xferinfo_cb(void *userp, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  (void)userp;
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  return stop_requested() ? 1 : 0;
}

static void xfer_reset(struct xfer *x) {
  x->len = 0;
  if (x->body)
    x->body[0] = '\0';
  x->over_cap = 0;
  x->nomem = 0;
  x->retry_after[0] = x->rl_reset[0] = '\0';
  x->rl_limit[0] = x->rl_remaining[0] = '\0';
}

/* Whether the extra header lines already set `name`. */
static int has_header(const char *const *headers, const char *name) {
  size_t nl = strlen(name);

  for (size_t i = 0; headers && headers[i]; i++) {
    if (strncasecmp(headers[i], name, nl) == 0 && headers[i][nl] == ':')
      return 1;
  }
  return 0;
}

static int append_header(struct curl_slist **list, const char *line) {
  struct curl_slist *grown = curl_slist_append(*list, line);

  if (!grown)
    return -1;
  *list = grown;
  return 0;
}

/* GET and HEAD are safe to repeat; everything else may have been applied. */
static int method_idempotent(const char *m) {
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ||
         strcmp(m, "OPTIONS") == 0;
}

static int method_valid(const char *m) {
  if (!*m || strlen(m) > 16)
    return 0;
  for (const char *p = m; *p; p++) {
    if (*p < 'A' || *p > 'Z')
      return 0;
  }
  return 1;
}

/* Transport failures worth another attempt: nothing usable arrived and the
   cause is likely to pass. TLS verification failures are not among them. */
static int curl_transient(CURLcode rc) {
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

static int curl_status(CURLcode rc) {
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

/* 429/503 may say when to come back; other retryable answers use backoff. */
static int status_retryable(long status) {
  if (status == 429 || status == 408)
    return 1;
  /* 501 and 505 will not change on a second try. */
  return status >= 500 && status <= 599 && status != 501 && status != 505;
}

/* curl's messages start with a capital, ours are lowercase; "SSL ..." keeps
   its acronym. */
static void lower_first(char *s) {
  if (isupper((unsigned char)s[0]) && islower((unsigned char)s[1]))
    s[0] = (char)tolower((unsigned char)s[0]);
}

/* Everything one http_request() call carries between its steps. */
struct call {
  struct http_client *c;
  const struct ch_http_req *req;
  struct ch_err *err;
  char url[SHOWN_URL_MAX + 8];
  size_t body_len;
};

/* Fill `err` with "METHOD url: detail", redacted, and count the failure. */
static int call_fail(struct call *k, int code, const char *fmt, ...)
    CH_PRINTF(3, 4);
static int call_fail(struct call *k, int code, const char *fmt, ...) {
  char detail[WIDE_MSG_MAX];
  char raw[WIDE_MSG_MAX + SHOWN_URL_MAX + 32], clean[sizeof(raw)];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  snprintf(raw, sizeof(raw), "%s %s: %s",
           k->req && k->req->method ? k->req->method : "?", k->url, detail);
  log_redact(raw, clean, sizeof(clean));
  if (k->err) {
    k->err->code = code;
    set_msg(k->err->msg, sizeof(k->err->msg), clean);
  }
  pthread_mutex_lock(&k->c->lock);
  k->c->stats.errors++;
  pthread_mutex_unlock(&k->c->lock);
  return code;
}

static int dry_print(struct call *k, struct ch_http_resp *resp) {
  const struct ch_http_req *req = k->req;
  size_t ulen = strlen(req->url);
  char *url = NULL, *body = NULL, *clean = NULL;
  int result = CH_E_NOMEM;

  url = malloc(ulen + 1);
  if (!url)
    goto out;
  log_redact(req->url, url, ulen + 1);
  if (req->body) {
    /* Redaction only shrinks text (a secret is at least 4 bytes, "***" is
       3), so the copy's size is enough. */
    body = malloc(k->body_len + 1);
    clean = malloc(k->body_len + 1);
    if (!body || !clean)
      goto out;
    memcpy(body, req->body, k->body_len);
    body[k->body_len] = '\0';
    log_redact(body, clean, k->body_len + 1);
  }
  flockfile(k->c->dry_out);
  fprintf(k->c->dry_out, "DRY RUN: %s %s\n", req->method, url);
  if (clean)
    fprintf(k->c->dry_out, "%s\n", clean);
  fflush(k->c->dry_out);
  funlockfile(k->c->dry_out);
  resp->dry_run = 1;
  result = CH_OK;
out:
  free(url);
  free(body);
  free(clean);
  if (result != CH_OK)
    return call_fail(k, result, "out of memory");
  return result;
}

/* Set every option of one request on the thread's handle. */
static int call_prepare(struct call *k, CURL *h, struct xfer *x,
                        struct curl_slist **headers, char *errbuf) {
  const struct ch_http_req *req = k->req;
  struct http_client *c = k->c;
  const char *m = req->method;
  int with_body = req->body != NULL || strcmp(m, "POST") == 0 ||
                  strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
  CURLcode rc = CURLE_OK;
  char line[256];

  if (!has_header(req->headers, "Accept") &&
      append_header(headers, "Accept: application/json"))
    return -1;
  if (with_body && !has_header(req->headers, "Content-Type")) {
    if (req->body) {
      snprintf(line, sizeof(line), "Content-Type: %s",
               req->content_type ? req->content_type : "application/json");
      if (append_header(headers, line))
        return -1;
    } else {
      /* An empty write has no type; curl's form default would be wrong. */
      if (append_header(headers, "Content-Type:"))
        return -1;
    }
  }
  /* Servers that ignore 100-continue would stall big bodies for a second. */
  if (append_header(headers, "Expect:"))
    return -1;
  for (size_t i = 0; req->headers && req->headers[i]; i++) {
    if (append_header(headers, req->headers[i]))
      return -1;
  }

#define SETOPT(opt, val)                                                       \
  do {                                                                         \
    if (rc == CURLE_OK)                                                        \
      rc = curl_easy_setopt(h, opt, val);                                      \
  } while (0)

  SETOPT(CURLOPT_URL, req->url);
  /* Send the path exactly as built (and as a dry run prints it). */
  SETOPT(CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_ERRORBUFFER, errbuf);
  SETOPT(CURLOPT_USERAGENT, USER_AGENT);
  SETOPT(CURLOPT_HTTPHEADER, *headers);
  SETOPT(CURLOPT_ACCEPT_ENCODING, "");
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  /* The connection cache is shared (gshare), and each perform caps it at
     the handle's MAXCONNECTS (default 5): with more workers than that,
     each finished request closed another's idle connection, and most
     requests paid for a new one. */
  SETOPT(CURLOPT_MAXCONNECTS, 256L);
  /* Verification is always on; a private CA comes in through ca_file. */
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  if (c->ca_file)
    SETOPT(CURLOPT_CAINFO, c->ca_file);
  SETOPT(CURLOPT_TIMEOUT_MS, c->timeout_ms ? c->timeout_ms : gconf.timeout_ms);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms
                                        ? c->connect_timeout_ms
                                        : gconf.connect_timeout_ms);
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max);
  SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
  SETOPT(CURLOPT_WRITEDATA, x);
  SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
  SETOPT(CURLOPT_HEADERDATA, x);
  SETOPT(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  SETOPT(CURLOPT_NOPROGRESS, 0L);

  if (req->bearer) {
    SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
    SETOPT(CURLOPT_XOAUTH2_BEARER, req->bearer);
  } else if (req->basic_user || req->basic_secret) {
    SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    SETOPT(CURLOPT_USERNAME, req->basic_user ? req->basic_user : "");
    SETOPT(CURLOPT_PASSWORD, req->basic_secret ? req->basic_secret : "");
  }

  if (strcmp(m, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (!with_body) {
    SETOPT(CURLOPT_HTTPGET, 1L);
    if (strcmp(m, "GET") != 0)
      SETOPT(CURLOPT_CUSTOMREQUEST, m);
  } else {
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->body_len);
    SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    if (strcmp(m, "POST") != 0)
      SETOPT(CURLOPT_CUSTOMREQUEST, m);
  }
#undef SETOPT
  return rc == CURLE_OK ? 0 : -1;
}

static void count_attempt(struct http_client *c, CURL *h, long status) {
  curl_off_t down = 0, up = 0;
  long hdr_in = 0, hdr_out = 0;

  curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(h, CURLINFO_HEADER_SIZE, &hdr_in);
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &hdr_out);
  pthread_mutex_lock(&c->lock);
  c->stats.requests++;
  if (status == 429)
    c->stats.throttled++;
  c->stats.bytes_in += (uint64_t)down + (uint64_t)hdr_in;
  c->stats.bytes_out += (uint64_t)up + (uint64_t)hdr_out;
  pthread_mutex_unlock(&c->lock);
}

static void debug_body(struct call *k, long status, const struct xfer *x) {
  /* Redacted at a width that holds any secret starting inside the shown
     part, and only then cut, so the cut cannot split a secret. */
  char wide[DEBUG_BODY_MAX + SECRET_WINDOW], clean[sizeof(wide)];

  if (log_level() < CH_LOG_DEBUG)
    return;
  squash(x->body ? x->body : "", x->len, wide, sizeof(wide));
  log_redact(wide, clean, sizeof(clean));
  utf8_cut(clean, DEBUG_BODY_MAX);
  log_msg(k->c->label, CH_LOG_DEBUG, "%s %s: HTTP %ld, %zu bytes: %s",
          k->req->method, k->url, status, x->len, clean);
}

/* The server's own wait after a 429 or 503 (Retry-After, else
   X-RateLimit-Reset), capped; -1 when it gave none. */
static long server_wait_ms(long status, const struct xfer *x) {
  long wait = -1;

  if (status == 429 || status == 503) {
    int64_t now = util_wall_ms();
    if (x->retry_after[0])
      wait = http_parse_retry_after(x->retry_after, now);
    if (wait < 0 && x->rl_reset[0])
      wait = http_parse_iso_reset(x->rl_reset, now);
    if (wait > gconf.max_wait_ms)
      wait = gconf.max_wait_ms;
  }
  return wait;
}

/* How long to wait before the next attempt after `status`. */
static long retry_wait_ms(long status, const struct xfer *x, int attempt) {
  long wait = server_wait_ms(status, x);

  return wait < 0 ? backoff_ms(attempt) : wait;
}

/* ---- pacing ---------------------------------------------------------- */

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
static struct pace_budget *call_budget(const struct ch_http_req *req) {
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

/* Wait for a send token of the budget. Non-zero when stopping. */
static int call_pace(struct http_client *c, struct pace_budget *b) {
  int64_t us;

  while (b && (us = pace_acquire(b)) > 0) {
    if (client_wait(c, (long)((us + 999) / 1000), 1))
      return 1;
  }
  return 0;
}

/* Teach the budget what the answer said about the limit. */
static void call_observe(struct pace_budget *b, long status,
                         const struct xfer *x) {
  if (b && status > 0)
    pace_observe(b, status, header_num(x->rl_limit),
                 header_num(x->rl_remaining),
                 status == 429 ? server_wait_ms(status, x) : -1);
}

/* Hand the final response to the caller: the body buffer moves over. */
static int call_response(struct call *k, CURL *h, long status, struct xfer *x,
                         struct ch_http_resp *resp) {
  char *ct = NULL;

  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) {
    resp->content_type = strdup(ct);
    if (!resp->content_type)
      return call_fail(k, CH_E_NOMEM, "out of memory");
  }
  resp->status = status;
  if (x->len) {
    resp->body = x->body;
    resp->body_len = x->len;
    x->body = NULL;
    x->cap = 0;
  }
  return CH_OK;
}

int http_request(struct http_client *c, const struct ch_http_req *req,
                 struct ch_http_resp *resp, struct ch_err *err) {
  struct call k = {c, req, err, "", 0};
  struct xfer x = {0};
  struct curl_slist *headers = NULL;
  char errbuf[CURL_ERROR_SIZE];
  CURL *h = NULL;
  int result = CH_E_IO;
  int may_repeat, safe, attempt;
  struct pace_budget *budget;

  if (resp)
    memset(resp, 0, sizeof(*resp));
  if (!c || !req || !resp)
    return ch_err_set(err, CH_E_INVALID, "http request without a client");
  if (req->url)
    shown_url(req->url, k.url, sizeof(k.url));
  if (!req->method || !req->url || !method_valid(req->method))
    return call_fail(&k, CH_E_INVALID, "bad request method or url");
  if (strncasecmp(req->url, "http://", 7) != 0 &&
      strncasecmp(req->url, "https://", 8) != 0)
    return call_fail(&k, CH_E_CONFIG, "not an http or https url");
  if (has_dot_segment(req->url))
    return call_fail(&k, CH_E_INVALID,
                     "refusing a URL with a '.' or '..' path segment (an id "
                     "made only of dots cannot be addressed)");
  if (req->bearer && (req->basic_user || req->basic_secret))
    return call_fail(&k, CH_E_INVALID, "both basic and bearer credentials");
  for (size_t i = 0; req->headers && req->headers[i]; i++) {
    /* A line break in a header would let a value inject more headers. */
    if (strpbrk(req->headers[i], "\r\n") || !strchr(req->headers[i], ':'))
      return call_fail(&k, CH_E_INVALID, "malformed extra header");
  }
  if (req->content_type && strpbrk(req->content_type, "\r\n"))
    return call_fail(&k, CH_E_INVALID, "malformed content type");
  /* A body given without a length is taken to be a C string. */
  k.body_len =
      req->body ? (req->body_len ? req->body_len : strlen(req->body)) : 0;

  register_derived_secrets(req);
  if (c->dry_out)
    return dry_print(&k, resp);
  if (!ginit)
    return call_fail(&k, CH_E_CONFIG, "http service not initialised");

  h = thread_easy();
  if (!h)
    return call_fail(&k, CH_E_NOMEM, "cannot create a curl handle");
  x.max = gconf.max_body;
  errbuf[0] = '\0';
  if (call_prepare(&k, h, &x, &headers, errbuf)) {
    result = call_fail(&k, CH_E_NOMEM, "cannot set up the request");
    goto out;
  }

  budget = call_budget(req);
  may_repeat = !(req->flags & CH_HTTP_NO_RETRY);
  safe = method_idempotent(req->method) || (req->flags & CH_HTTP_RETRY_SAFE);
  for (attempt = 1;; attempt++) {
    int final = attempt >= gconf.max_attempts || !may_repeat;
    long status = 0, wait;
    CURLcode rc;

    if (stop_requested() || client_pace(c) || call_pace(c, budget)) {
      result = call_fail(&k, CH_E_STOPPED, "stopped");
      goto out;
    }
    xfer_reset(&x);
    errbuf[0] = '\0';
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    count_attempt(c, h, status);
    if (rc == CURLE_OK)
      call_observe(budget, status, &x);

    if (x.over_cap || rc == CURLE_FILESIZE_EXCEEDED) {
      result = call_fail(&k, CH_E_LIMIT, "response body over the %zu-byte cap",
                         x.max);
      goto out;
    }
    if (x.nomem) {
      result = call_fail(&k, CH_E_NOMEM, "out of memory for the response");
      goto out;
    }
    if (rc != CURLE_OK) {
      char why[CURL_ERROR_SIZE];
      snprintf(why, sizeof(why), "%s",
               errbuf[0] ? errbuf : curl_easy_strerror(rc));
      lower_first(why);
      if (rc == CURLE_ABORTED_BY_CALLBACK) {
        result = call_fail(&k, CH_E_STOPPED, "stopped");
        goto out;
      }
      if (final || !safe || !curl_transient(rc)) {
        if (attempt > 1)
          result = call_fail(&k, curl_status(rc), "%s (after %d attempts)", why,
                             attempt);
        else
          result = call_fail(&k, curl_status(rc), "%s", why);
        goto out;
      }
      wait = backoff_ms(attempt);
      log_msg(c->label, CH_LOG_INFO,
              "%s %s: %s, retrying in %.1f s (attempt %d/%d)", req->method,
              k.url, why, (double)wait / 1000.0, attempt + 1,
              gconf.max_attempts);
    } else {
      debug_body(&k, status, &x);
      /* A write answered 429 was refused before it ran; any other failure
         of a write may have been applied, so it is only repeated when the
         plugin says so. */
      if (final || !status_retryable(status) || (!safe && status != 429)) {
        result = call_response(&k, h, status, &x, resp);
        goto out;
      }
      wait = retry_wait_ms(status, &x, attempt);
      log_msg(c->label, CH_LOG_INFO,
              "%s %s: HTTP %ld, retrying in %.1f s (attempt %d/%d)",
              req->method, k.url, status, (double)wait / 1000.0, attempt + 1,
              gconf.max_attempts);
    }
    pthread_mutex_lock(&c->lock);
    c->stats.retries++;
    pthread_mutex_unlock(&c->lock);
    if (client_wait(c, wait, 0)) {
      result = call_fail(&k, CH_E_STOPPED, "stopped");
      goto out;
    }
  }
out:
  if (result != CH_OK)
    http_resp_free(resp);
  curl_slist_free_all(headers);
  free(x.body);
  /* The handle outlives this call; the header list, buffers and body it
     points to do not, and the credentials it copied should not linger. */
  if (h)
    curl_easy_reset(h);
  return result;
}

void http_resp_free(struct ch_http_resp *resp) {
  if (!resp)
    return;
  free(resp->body);
  free(resp->content_type);
  memset(resp, 0, sizeof(*resp));
}

/* ---- http_error ---------------------------------------------------------- */

struct summary {
  char buf[WIDE_MSG_MAX];
  size_t len;
};

static void sum_add(struct summary *s, const char *sep, const char *text) {
  char flat[WIDE_MSG_MAX];
  int n;

  squash(text, strlen(text), flat, sizeof(flat));
  if (!flat[0] || s->len + 1 >= sizeof(s->buf))
    return;
  n = snprintf(s->buf + s->len, sizeof(s->buf) - s->len, "%s%s",
               s->len ? sep : "", flat);
  if (n > 0)
    s->len += (size_t)n < sizeof(s->buf) - s->len ? (size_t)n
                                                  : sizeof(s->buf) - s->len - 1;
}

/* A string or number member of `obj`, or NULL. */
static const char *json_str(struct json_object *obj, const char *key) {
  struct json_object *v;

  if (!json_object_is_type(obj, json_type_object) ||
      !json_object_object_get_ex(obj, key, &v))
    return NULL;
  if (!json_object_is_type(v, json_type_string) &&
      !json_object_is_type(v, json_type_int))
    return NULL;
  return json_object_get_string(v);
}

/* Jira: {"errorMessages":[...],"errors":{"field":"msg"}}; Atlassian Org and
   JSON:API: {"errors":[{"code","title","detail"}]}. */
static void sum_errors(struct json_object *root, struct summary *s) {
  struct json_object *v;

  if (json_object_object_get_ex(root, "errorMessages", &v) &&
      json_object_is_type(v, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(v); i++) {
      struct json_object *e = json_object_array_get_idx(v, i);
      if (json_object_is_type(e, json_type_string))
        sum_add(s, "; ", json_object_get_string(e));
    }
  }
  if (!json_object_object_get_ex(root, "errors", &v))
    return;
  if (json_object_is_type(v, json_type_object)) {
    json_object_object_foreach(v, field, msg) {
      char line[WIDE_MSG_MAX];
      if (!json_object_is_type(msg, json_type_string))
        continue;
      snprintf(line, sizeof(line), "%s: %s", field,
               json_object_get_string(msg));
      sum_add(s, "; ", line);
    }
  } else if (json_object_is_type(v, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(v); i++) {
      struct json_object *e = json_object_array_get_idx(v, i);
      const char *title = json_str(e, "title");
      const char *detail = json_str(e, "detail");
      const char *msg = json_str(e, "message");
      char line[WIDE_MSG_MAX];

      if (json_object_is_type(e, json_type_string)) {
        sum_add(s, "; ", json_object_get_string(e));
        continue;
      }
      if (title && detail)
        snprintf(line, sizeof(line), "%s: %s", title, detail);
      else if (title || detail || msg)
        snprintf(line, sizeof(line), "%s",
                 title    ? title
                 : detail ? detail
                          : msg);
      else if (json_str(e, "code"))
        snprintf(line, sizeof(line), "%s", json_str(e, "code"));
      else
        continue;
      sum_add(s, "; ", line);
    }
  }
}

static void sum_json(struct json_object *root, struct summary *s) {
  const char *msg, *detail, *scim_type, *error;
  struct json_object *v;

  if (!json_object_is_type(root, json_type_object))
    return;
  sum_errors(root, s);
  if (s->len)
    return;
  msg = json_str(root, "message");
  if (msg) {
    sum_add(s, "; ", msg);
    return;
  }
  /* SCIM: {"detail": ..., "scimType": ..., "status": ...} */
  detail = json_str(root, "detail");
  scim_type = json_str(root, "scimType");
  if (detail) {
    char line[WIDE_MSG_MAX];
    if (scim_type)
      snprintf(line, sizeof(line), "%s (%s)", detail, scim_type);
    else
      snprintf(line, sizeof(line), "%s", detail);
    sum_add(s, "; ", line);
    return;
  }
  error = json_str(root, "error");
  if (error) {
    const char *desc = json_str(root, "error_description");
    sum_add(s, "; ", error);
    if (desc)
      sum_add(s, ": ", desc);
    return;
  }
  /* {"error": {"message": ...}} */
  if (json_object_object_get_ex(root, "error", &v) &&
      (msg = json_str(v, "message")) != NULL) {
    sum_add(s, "; ", msg);
    return;
  }
  if ((msg = json_str(root, "title")) != NULL)
    sum_add(s, "; ", msg);
}

static void summarise(const struct ch_http_resp *resp, struct summary *s) {
  const char *p = resp->body;
  size_t len = resp->body ? resp->body_len : 0;
  size_t skip = 0;

  s->len = 0;
  s->buf[0] = '\0';
  if (!len)
    return;
  while (skip < len && isspace((unsigned char)p[skip]))
    skip++;
  if (skip < len && p[skip] == '{' && len < ERROR_JSON_MAX) {
    struct json_tokener *tok = json_tokener_new_ex(32);
    struct json_object *root = NULL;
    if (tok) {
      root = json_tokener_parse_ex(tok, p, (int)len);
      if (json_tokener_get_error(tok) == json_tokener_success && root)
        sum_json(root, s);
      json_object_put(root);
      json_tokener_free(tok);
    }
    if (s->len)
      return;
  }
  /* Not a known shape: the start of the body as text. The slice is wide so
     that redaction sees whole secrets before the summary is cut. */
  squash(p, len, s->buf, sizeof(s->buf));
  s->len = strlen(s->buf);
}

static int status_code(long status) {
  switch (status) {
  case 400:
    return CH_E_INVALID;
  case 401:
    return CH_E_AUTH;
  case 403:
    return CH_E_PERM;
  case 404:
    return CH_E_NOTFOUND;
  case 409:
    return CH_E_CONFLICT;
  case 408:
  case 429:
    return CH_E_RETRY;
  default:
    return status >= 500 && status <= 599 ? CH_E_RETRY : CH_E_PROTOCOL;
  }
}

int http_error(const struct ch_http_resp *resp, const char *what,
               struct ch_err *err) {
  struct summary s;
  char raw[WIDE_MSG_MAX + 64], clean[WIDE_MSG_MAX + 64];
  int code;

  if (!what)
    what = "request";
  if (!resp || resp->dry_run || resp->status == 0) {
    snprintf(raw, sizeof(raw), "%s: %s", what,
             resp && resp->dry_run ? "not sent (dry run)" : "no HTTP response");
    code = CH_E_PROTOCOL;
  } else {
    code = status_code(resp->status);
    summarise(resp, &s);
    if (s.len) {
      char sum[WIDE_MSG_MAX];
      log_redact(s.buf, sum, sizeof(sum));
      utf8_cut(sum, TEXT_SUMMARY_MAX);
      snprintf(raw, sizeof(raw), "%s: HTTP %ld: %s", what, resp->status, sum);
    } else {
      snprintf(raw, sizeof(raw), "%s: HTTP %ld", what, resp->status);
    }
  }
  log_redact(raw, clean, sizeof(clean));
  if (err) {
    err->code = code;
    set_msg(err->msg, sizeof(err->msg), clean);
  }
  return code;
}

/* ---- URLs -----------------------------------------------------------------
 */

size_t http_url_encode(const char *in, char *out, size_t outsz) {
  static const char hex[] = "0123456789ABCDEF";
  size_t need = 0, w = 0;
  int full = 0; /* once a piece does not fit, stop writing */
  int all_dots = in && *in && !in[strspn(in, ".")];

  for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p;
       p++) {
    char piece[3];
    size_t n;
    /* A value made only of dots would be a "." or ".." path segment, which
       URL normalisation collapses: "%2E" keeps it one opaque segment (and
       http_request refuses it as a segment either way). */
    if (isalnum(*p) || *p == '-' || (*p == '.' && !all_dots) || *p == '_' ||
        *p == '~') {
      piece[0] = (char)*p;
      n = 1;
    } else {
      piece[0] = '%';
      piece[1] = hex[*p >> 4];
      piece[2] = hex[*p & 0x0F];
      n = 3;
    }
    if (!full && w + n < outsz) {
      memcpy(out + w, piece, n);
      w += n;
    } else {
      full = 1;
    }
    need += n;
  }
  if (outsz)
    out[w] = '\0';
  return need;
}

/* Decode one byte of a query component at *pp and advance past it. */
static int decode_next(const char **pp, const char *end) {
  const char *p = *pp;

  if (*p == '+') {
    *pp = p + 1;
    return ' ';
  }
  if (*p == '%' && end - p >= 3 && util_hexval(p[1]) >= 0 &&
      util_hexval(p[2]) >= 0) {
    *pp = p + 3;
    return util_hexval(p[1]) * 16 + util_hexval(p[2]);
  }
  *pp = p + 1;
  return (unsigned char)*p;
}

static int key_matches(const char *p, const char *end, const char *name) {
  const unsigned char *n = (const unsigned char *)name;

  while (p < end) {
    if (!*n || decode_next(&p, end) != *n)
      return 0;
    n++;
  }
  return *n == '\0';
}

int http_url_query_get(const char *url, const char *name, char *out,
                       size_t outsz) {
  const char *p, *end;

  if (outsz)
    out[0] = '\0';
  if (!url || !name)
    return 0;
  p = strchr(url, '?');
  if (!p)
    return 0;
  p++;
  end = p + strcspn(p, "#");
  while (p < end) {
    const char *seg_end = p, *eq = NULL;
    while (seg_end < end && *seg_end != '&') {
      if (*seg_end == '=' && !eq)
        eq = seg_end;
      seg_end++;
    }
    if (key_matches(p, eq ? eq : seg_end, name)) {
      const char *v = eq ? eq + 1 : seg_end;
      size_t o = 0;
      while (v < seg_end) {
        int ch = decode_next(&v, seg_end);
        if (o + 1 < outsz)
          out[o++] = (char)ch;
      }
      if (outsz)
        out[o] = '\0';
      return 1;
    }
    p = seg_end + 1;
  }
  return 0;
}

/* ---- Retry-After and X-RateLimit-Reset ------------------------------------
 */

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
