/* SPDX-License-Identifier: MIT */
/* The host HTTP service: the per-instance client and the request loop
   (http_int.h names the modules it draws on). */
#include "autoconfig.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http_int.h"
#include "log.h"
#include "pace.h"
#include "stop.h"
#include "util.h"

#define USER_AGENT "connhost/" PACKAGE_VERSION
#define DEBUG_BODY_MAX 500
/* Longest secret whose redaction a cut is guaranteed not to split. */
#define SECRET_WINDOW 8192

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
  /* http_client_watch_stats(): told of every change to `stats` */
  void (*watch)(void *arg, const struct http_stats *st);
  void *watch_arg;
  int64_t next_us;      /* monotonic time the next request may start */
  atomic_int cancelled; /* http_client_cancel(): send nothing more */
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

void http_client_cancel(struct http_client *c) {
  if (c)
    atomic_store(&c->cancelled, 1);
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

void http_client_watch_stats(struct http_client *c,
                             void (*fn)(void *arg, const struct http_stats *st),
                             void *arg) {
  pthread_mutex_lock(&c->lock);
  c->watch = fn;
  c->watch_arg = arg;
  pthread_mutex_unlock(&c->lock);
}

/* After each change to c->stats, with c->lock held. */
static void stats_changed(struct http_client *c) {
  if (c->watch)
    c->watch(c->watch_arg, &c->stats);
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
  /* In slices, so that a cancel (the instance failed) ends a long
     Retry-After wait as a stop does. */
  do {
    long slice = ms < 200 ? ms : 200;
    stopped = stop_sleep_ms(slice) || atomic_load(&c->cancelled);
    ms -= slice;
  } while (ms > 0 && !stopped);
  if (wait_end)
    wait_end(wait_arg);
  spent = util_mono_us() - t0;

  pthread_mutex_lock(&c->lock);
  c->stats.wait_s += (double)spent / 1e6;
  stats_changed(c);
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
 * The request's Authorization line: "Authorization: Bearer <v>" or
 * "Authorization: Basic base64(user:secret)", malloc'd in *line (NULL when
 * the request has no credentials; the caller wipes and frees it). Each form
 * is registered for redaction first: a server that echoes its request
 * headers in an error body would otherwise put them in our logs.
 * The host builds the line rather than libcurl: curl formats its own a byte
 * at a time, twice per request, which was a third of its CPU per request.
 * Non-zero when out of memory.
 */
static int auth_line(const struct ch_http_req *req, char **line) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  static const char basic[] = "Authorization: Basic ";
  static const char bearer[] = "Authorization: Bearer ";
  const char *user = req->basic_user ? req->basic_user : "";
  const char *pass = req->basic_secret ? req->basic_secret : "";
  size_t ul = strlen(user), pl = strlen(pass), n = ul + 1 + pl;
  size_t o = sizeof(basic) - 1;
  unsigned char *raw;
  char *out;

  *line = NULL;
  if (req->bearer) {
    size_t bl = strlen(req->bearer);

    add_secret_forms(req->bearer);
    if (!(out = malloc(sizeof(bearer) + bl)))
      return -1;
    memcpy(out, bearer, sizeof(bearer) - 1);
    memcpy(out + sizeof(bearer) - 1, req->bearer, bl + 1);
    *line = out;
    return 0;
  }
  if (!req->basic_user && !req->basic_secret)
    return 0;
  raw = malloc(n);
  out = malloc(o + 4 * ((n + 2) / 3) + 1);
  if (!raw || !out) {
    free(raw);
    free(out);
    return -1;
  }
  memcpy(raw, user, ul);
  raw[ul] = ':';
  memcpy(raw + ul + 1, pass, pl);
  memcpy(out, basic, o);
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)raw[i] << 16;
    if (i + 1 < n)
      v |= (unsigned)raw[i + 1] << 8;
    if (i + 2 < n)
      v |= raw[i + 2];
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = '\0';
  buf_wipe_mem(raw, n);
  free(raw);
  add_secret_forms(out + sizeof(basic) - 1);
  *line = out;
  return 0;
}

/* Free a string that held a credential, wiping it first. */
static void free_wiped(char *s) {
  if (s) {
    buf_wipe_mem(s, strlen(s));
    free(s);
  }
}

/* Free the request's header list, wiping the credential line copied in. */
static void free_headers(struct curl_slist *list) {
  for (struct curl_slist *l = list; l; l = l->next) {
    if (strncasecmp(l->data, "Authorization:", 14) == 0)
      buf_wipe_mem(l->data, strlen(l->data));
  }
  curl_slist_free_all(list);
}

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

static int method_valid(const char *m) {
  if (!*m || strlen(m) > 16)
    return 0;
  for (const char *p = m; *p; p++) {
    if (*p < 'A' || *p > 'Z')
      return 0;
  }
  return 1;
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
    http_set_msg(k->err->msg, sizeof(k->err->msg), clean);
  }
  pthread_mutex_lock(&k->c->lock);
  k->c->stats.errors++;
  stats_changed(k->c);
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
                        const char *auth, struct curl_slist **headers,
                        char *errbuf) {
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
  /* A plugin's own Authorization header wins, as it did over curl's. */
  if (auth && !has_header(req->headers, "Authorization") &&
      append_header(headers, auth))
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
  SETOPT(CURLOPT_TIMEOUT_MS,
         c->timeout_ms ? c->timeout_ms : http_conf()->timeout_ms);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms
                                        ? c->connect_timeout_ms
                                        : http_conf()->connect_timeout_ms);
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max);
  SETOPT(CURLOPT_WRITEFUNCTION, http_xfer_write);
  SETOPT(CURLOPT_WRITEDATA, x);
  SETOPT(CURLOPT_HEADERFUNCTION, http_xfer_header);
  SETOPT(CURLOPT_HEADERDATA, x);
  SETOPT(CURLOPT_XFERINFOFUNCTION, http_xfer_progress);
  SETOPT(CURLOPT_NOPROGRESS, 0L);

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

/* A request is counted as it is sent, so a process killed while it waits
   for the answer (an isolated plugin past its `timeout:`) has counted it. */
static void count_sent(struct http_client *c) {
  pthread_mutex_lock(&c->lock);
  c->stats.requests++;
  stats_changed(c);
  pthread_mutex_unlock(&c->lock);
}

static void count_attempt(struct http_client *c, CURL *h, long status) {
  curl_off_t down = 0, up = 0;
  long hdr_in = 0, hdr_out = 0;

  curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(h, CURLINFO_HEADER_SIZE, &hdr_in);
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &hdr_out);
  pthread_mutex_lock(&c->lock);
  if (status == 429)
    c->stats.throttled++;
  c->stats.bytes_in += (uint64_t)down + (uint64_t)hdr_in;
  c->stats.bytes_out += (uint64_t)up + (uint64_t)hdr_out;
  stats_changed(c);
  pthread_mutex_unlock(&c->lock);
}

static void debug_body(struct call *k, long status, const struct xfer *x) {
  /* Redacted at a width that holds any secret starting inside the shown
     part, and only then cut, so the cut cannot split a secret. */
  char wide[DEBUG_BODY_MAX + SECRET_WINDOW], clean[sizeof(wide)];

  if (!log_enabled(CH_LOG_DEBUG)) /* --quiet drops it: not even built */
    return;
  http_squash(x->body.p ? x->body.p : "", x->body.len, wide, sizeof(wide));
  log_redact(wide, clean, sizeof(clean));
  http_utf8_cut(clean, DEBUG_BODY_MAX);
  log_msg(k->c->label, CH_LOG_DEBUG, "%s %s: HTTP %ld, %zu bytes: %s",
          k->req->method, k->url, status, x->body.len, clean);
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
  if (x->body.len) {
    resp->body = x->body.p;
    resp->body_len = x->body.len;
    x->body.p = NULL; /* the response owns it now */
    x->body.cap = x->body.len = 0;
  }
  return CH_OK;
}

int http_request(struct http_client *c, const struct ch_http_req *req,
                 struct ch_http_resp *resp, struct ch_err *err) {
  struct call k = {c, req, err, "", 0};
  struct xfer x = {0};
  struct curl_slist *headers = NULL;
  char errbuf[CURL_ERROR_SIZE], *auth = NULL;
  CURL *h = NULL;
  int result = CH_E_IO;
  int may_repeat, reading, safe, attempt;
  struct pace_budget *budget;

  if (resp)
    memset(resp, 0, sizeof(*resp));
  if (!c || !req || !resp)
    return ch_err_set(err, CH_E_INVALID, "http request without a client");
  if (req->url)
    http_shown_url(req->url, k.url, sizeof(k.url));
  if (!req->method || !req->url || !method_valid(req->method))
    return call_fail(&k, CH_E_INVALID, "bad request method or url");
  if (strncasecmp(req->url, "http://", 7) != 0 &&
      strncasecmp(req->url, "https://", 8) != 0)
    return call_fail(&k, CH_E_CONFIG, "not an http or https url");
  if (http_has_dot_segment(req->url))
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

  if (auth_line(req, &auth))
    return call_fail(&k, CH_E_NOMEM, "out of memory");
  if (c->dry_out) {
    free_wiped(auth);
    return dry_print(&k, resp);
  }
  if (!http_ready()) {
    result = call_fail(&k, CH_E_CONFIG, "http service not initialised");
    goto out;
  }
  h = http_thread_easy();
  if (!h) {
    result = call_fail(&k, CH_E_NOMEM, "cannot create a curl handle");
    goto out;
  }
  x.max = http_conf()->max_body;
  errbuf[0] = '\0';
  if (call_prepare(&k, h, &x, auth, &headers, errbuf)) {
    result = call_fail(&k, CH_E_NOMEM, "cannot set up the request");
    goto out;
  }

  budget = http_budget_of(req);
  may_repeat = !(req->flags & CH_HTTP_NO_RETRY);
  reading = http_method_idempotent(req->method);
  safe = reading || (req->flags & CH_HTTP_RETRY_SAFE);
  /* libcurl sends a request again, unasked, when a reused connection dies
     before any answer: the server may have acted on the first (a second
     create, a second issue). A write that must not be repeated gets a
     connection of its own. */
  if (!safe && curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK) {
    result = call_fail(&k, CH_E_NOMEM, "cannot set up the request");
    goto out;
  }
  for (attempt = 1;; attempt++) {
    int final = attempt >= http_conf()->max_attempts || !may_repeat;
    long status = 0, wait;
    CURLcode rc;

    if (stop_requested() || client_pace(c) || call_pace(c, budget)) {
      result = call_fail(&k, CH_E_STOPPED, "stopped");
      goto out;
    }
    if (atomic_load(&c->cancelled)) {
      result = call_fail(&k, CH_E_STOPPED, "not sent: the instance failed");
      goto out;
    }
    http_xfer_reset(&x);
    errbuf[0] = '\0';
    count_sent(c);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    count_attempt(c, h, status);
    if (rc == CURLE_OK)
      http_budget_observe(budget, status, &x);

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
      if (final || !safe || !http_curl_transient(rc)) {
        if (attempt > 1)
          result = call_fail(&k, http_curl_status(rc), "%s (after %d attempts)",
                             why, attempt);
        else
          result = call_fail(&k, http_curl_status(rc), "%s", why);
        goto out;
      }
      wait = http_backoff_ms(attempt);
      log_msg(c->label, CH_LOG_INFO,
              "%s %s: %s, retrying in %.1f s (attempt %d/%d)", req->method,
              k.url, why, (double)wait / 1000.0, attempt + 1,
              http_conf()->max_attempts);
    } else {
      debug_body(&k, status, &x);
      /* A write answered 429 was refused before it ran; any other failure
         of a write may have been applied, so it is only repeated when the
         plugin says so. */
      if (final || !http_status_retryable(status, reading) ||
          (!safe && status != 429)) {
        result = call_response(&k, h, status, &x, resp);
        goto out;
      }
      wait = http_retry_wait_ms(status, &x, attempt);
      log_msg(c->label, CH_LOG_INFO,
              "%s %s: HTTP %ld, retrying in %.1f s (attempt %d/%d)",
              req->method, k.url, status, (double)wait / 1000.0, attempt + 1,
              http_conf()->max_attempts);
    }
    pthread_mutex_lock(&c->lock);
    c->stats.retries++;
    stats_changed(c);
    pthread_mutex_unlock(&c->lock);
    if (client_wait(c, wait, 0)) {
      result = call_fail(&k, CH_E_STOPPED, "stopped");
      goto out;
    }
  }
out:
  if (result != CH_OK)
    http_resp_free(resp);
  free_headers(headers);
  free_wiped(auth);
  buf_free(&x.body);
  /* The handle outlives this call; the header list (with the credential
     line, wiped above), buffers and body it points to do not. */
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
