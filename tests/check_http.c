/* SPDX-License-Identifier: MIT */
/* Tests of host/http.c against a loopback HTTP server run in-process. */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "stop.h"

#define SECRET "s3cr3t-pass-word"
#define BEARER "bearer-t0ken-value-xyz"
/* base64("user@example.com:" SECRET) */
#define BASIC_B64 "dXNlckBleGFtcGxlLmNvbTpzM2NyM3QtcGFzcy13b3Jk"

/* ---- the loopback server --------------------------------------------------
 */

#define SRV_MAX_REPLIES 8
#define SRV_MAX_REQS 32
#define SRV_MAX_CONNS 8
#define SRV_IO_TIMEOUT_MS 2000

/* One canned answer. The last one of a script repeats. */
struct reply {
  int status;
  const char *headers; /* extra header lines, each ending in "\r\n" */
  const char *body;
  size_t big;    /* > 0: a body of this many 'x' bytes instead */
  int no_length; /* no Content-Length: the body ends when we close */
  int drop;      /* close the connection without answering */
  int delay_ms;  /* wait this long before answering */
};

/* One request as the server read it. */
struct seen {
  char method[16];
  char target[512];
  char headers[2048];
  char body[1024];
  int conn; /* which accepted connection (0-based) it came on */
};

struct server {
  int lfd;
  int port;
  pthread_t th;
  int running;
  atomic_int stop;
  pthread_mutex_t lock;
  struct reply replies[SRV_MAX_REPLIES];
  size_t nreplies;
  size_t next;
  struct seen reqs[SRV_MAX_REQS];
  size_t nreqs;
  int nconns;
};

static struct server srv;

static int wait_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) > 0;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0)
      return;
    p += w;
    n -= (size_t)w;
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Read one request from `fd` and answer it. Returns 0 to keep the
   connection, -1 to close it. */
static int srv_serve_one(int fd, int conn) {
  char buf[8192];
  size_t len = 0, hdr_len, clen = 0, have;
  char *end, *p;
  struct seen s = {0};
  struct reply r;
  char head[1024];
  char *bigbody = NULL;
  const char *body;
  size_t body_len;

  for (;;) {
    ssize_t n;
    if (len + 1 >= sizeof(buf) || !wait_readable(fd, SRV_IO_TIMEOUT_MS))
      return -1;
    n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
    if (end)
      break;
  }
  hdr_len = (size_t)(end - buf) + 4;
  for (p = buf; p && p < end; p = strstr(p, "\r\n")) {
    if (p != buf)
      p += 2;
    if (strncasecmp(p, "Content-Length:", 15) == 0)
      clen = strtoul(p + 15, NULL, 10);
  }
  while (len - hdr_len < clen && len + 1 < sizeof(buf)) {
    ssize_t n;
    if (!wait_readable(fd, SRV_IO_TIMEOUT_MS))
      return -1;
    n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
  }

  sscanf(buf, "%15s %511s", s.method, s.target);
  p = strstr(buf, "\r\n");
  have = (size_t)(end - p);
  if (have >= sizeof(s.headers))
    have = sizeof(s.headers) - 1;
  memcpy(s.headers, p, have);
  have =
      len - hdr_len < sizeof(s.body) - 1 ? len - hdr_len : sizeof(s.body) - 1;
  memcpy(s.body, buf + hdr_len, have);
  s.conn = conn;

  pthread_mutex_lock(&srv.lock);
  if (srv.nreqs < SRV_MAX_REQS)
    srv.reqs[srv.nreqs++] = s;
  if (srv.nreplies == 0) {
    r = (struct reply){.status = 200, .body = "{}"};
  } else {
    r = srv.replies[srv.next];
    if (srv.next + 1 < srv.nreplies)
      srv.next++;
  }
  pthread_mutex_unlock(&srv.lock);

  if (r.delay_ms)
    sleep_ms(r.delay_ms);
  if (r.drop)
    return -1;
  if (r.big) {
    bigbody = malloc(r.big);
    memset(bigbody, 'x', r.big);
    body = bigbody;
    body_len = r.big;
  } else {
    body = r.body ? r.body : "";
    body_len = strlen(body);
  }
  if (r.no_length)
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nConnection: close\r\n"
             "Content-Type: application/json\r\n%s\r\n",
             r.status, r.headers ? r.headers : "");
  else
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
             "Content-Type: application/json\r\n%s\r\n",
             r.status, body_len, r.headers ? r.headers : "");
  send_all(fd, head, strlen(head));
  send_all(fd, body, body_len);
  free(bigbody);
  return r.no_length ? -1 : 0;
}

static void *srv_main(void *arg) {
  int conns[SRV_MAX_CONNS], ids[SRV_MAX_CONNS];
  size_t nconns = 0;

  (void)arg;
  while (!atomic_load(&srv.stop)) {
    struct pollfd pfd[SRV_MAX_CONNS + 1];
    pfd[0] = (struct pollfd){srv.lfd, POLLIN, 0};
    for (size_t i = 0; i < nconns; i++)
      pfd[i + 1] = (struct pollfd){conns[i], POLLIN, 0};
    if (poll(pfd, nconns + 1, 50) <= 0)
      continue;
    for (size_t i = nconns; i > 0; i--) {
      if (!pfd[i].revents)
        continue;
      if (srv_serve_one(conns[i - 1], ids[i - 1]) != 0) {
        close(conns[i - 1]);
        conns[i - 1] = conns[nconns - 1];
        ids[i - 1] = ids[nconns - 1];
        nconns--;
      }
    }
    if (pfd[0].revents) {
      int fd = accept(srv.lfd, NULL, NULL);
      if (fd >= 0 && nconns < SRV_MAX_CONNS) {
        int one = 1;
        /* Head and body go out in two writes: no Nagle delay between. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&srv.lock);
        ids[nconns] = srv.nconns++;
        pthread_mutex_unlock(&srv.lock);
        conns[nconns++] = fd;
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  for (size_t i = 0; i < nconns; i++)
    close(conns[i]);
  return NULL;
}

/* Bind 127.0.0.1 on an ephemeral port; returns the fd, port in *port. */
static int bind_loopback(int *port) {
  struct sockaddr_in sa = {0};
  socklen_t salen = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

  ck_assert_int_ge(fd, 0);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

static void server_start(void) {
  memset(&srv, 0, sizeof(srv));
  pthread_mutex_init(&srv.lock, NULL);
  srv.lfd = bind_loopback(&srv.port);
  ck_assert_int_eq(listen(srv.lfd, 16), 0);
  ck_assert_int_eq(pthread_create(&srv.th, NULL, srv_main, NULL), 0);
  srv.running = 1;
}

static void server_stop(void) {
  if (!srv.running)
    return;
  atomic_store(&srv.stop, 1);
  pthread_join(srv.th, NULL);
  close(srv.lfd);
  pthread_mutex_destroy(&srv.lock);
  srv.running = 0;
}

static void script(const struct reply *r, size_t n) {
  ck_assert_uint_le(n, SRV_MAX_REPLIES);
  pthread_mutex_lock(&srv.lock);
  memcpy(srv.replies, r, n * sizeof(*r));
  srv.nreplies = n;
  srv.next = 0;
  pthread_mutex_unlock(&srv.lock);
}

static size_t nseen(void) {
  size_t n;
  pthread_mutex_lock(&srv.lock);
  n = srv.nreqs;
  pthread_mutex_unlock(&srv.lock);
  return n;
}

/* The value of header `name` in request `i`, or NULL. */
static const char *seen_header(size_t i, const char *name, char *out,
                               size_t outsz) {
  const char *p = srv.reqs[i].headers;
  size_t nl = strlen(name);

  while ((p = strstr(p, "\r\n")) != NULL) {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      size_t n = strcspn(p + nl + 1, "\r");
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++, n--;
      snprintf(out, outsz, "%.*s", (int)n, v);
      return out;
    }
  }
  return NULL;
}

/* ---- capturing stderr (the log) ------------------------------------------ */

static int saved_stderr = -1;
static char cap_path[64];

static void capture_start(void) {
  int fd;

  snprintf(cap_path, sizeof(cap_path), "/tmp/check_http_log.XXXXXX");
  fd = mkstemp(cap_path);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  saved_stderr = dup(2);
  dup2(fd, 2);
  close(fd);
}

/* Stop capturing; returns the captured text (caller frees). */
static char *capture_end(void) {
  FILE *f;
  char *text;
  long n;

  if (saved_stderr < 0)
    return NULL;
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  saved_stderr = -1;
  f = fopen(cap_path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  text = calloc(1, (size_t)n + 1);
  ck_assert_uint_eq(fread(text, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  unlink(cap_path);
  return text;
}

/* ---- fixture --------------------------------------------------------------
 */

static struct http_client *cl;
static char base[64];
static struct ch_http_resp resp;
static struct ch_err err;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Small waits so retry tests run fast; the cap is small to test it. */
static void global_init(int max_attempts, size_t max_body) {
  struct http_global_conf gc;
  struct ch_err e = {0};

  http_global_defaults(&gc);
  gc.backoff_base_ms = 20;
  gc.backoff_max_ms = 80;
  gc.max_attempts = max_attempts;
  gc.max_body = max_body;
  ck_assert_msg(http_global_init(&gc, &e) == CH_OK, "%s", e.msg);
}

static void setup(void) {
  stop_request(0);
  log_setup(CH_LOG_WARN, LOG_TEXT, 0);
  global_init(4, 4096);
  server_start();
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", srv.port);
  cl = http_client_new("test:t/i");
  ck_assert_ptr_nonnull(cl);
  memset(&resp, 0, sizeof(resp));
  memset(&err, 0, sizeof(err));
}

static void teardown(void) {
  free(capture_end());
  http_resp_free(&resp);
  http_client_free(cl);
  cl = NULL;
  server_stop();
  http_global_cleanup();
  log_cleanup();
  stop_request(0);
}

static void reinit(int max_attempts, size_t max_body) {
  http_global_cleanup();
  global_init(max_attempts, max_body);
}

/* Send one request to the loopback server. */
static int req_full(const struct ch_http_req *tmpl, const char *path) {
  struct ch_http_req req = *tmpl;
  char url[512];

  snprintf(url, sizeof(url), "%s%s", base, path);
  req.url = url;
  http_resp_free(&resp);
  return http_request(cl, &req, &resp, &err);
}

static int req(const char *method, const char *path, const char *body,
               unsigned flags) {
  struct ch_http_req r = {.method = method, .body = body, .flags = flags};
  if (body)
    r.body_len = strlen(body);
  return req_full(&r, path);
}

static struct http_stats stats(void) {
  struct http_stats s;
  http_client_stats(cl, &s);
  return s;
}

/* ---- requests and headers -------------------------------------------------
 */

START_TEST(test_get_sends_expected_headers) {
  static const struct reply r[] = {{.status = 200, .body = "{\"ok\":true}"}};
  struct ch_http_req q = {.method = "GET",
                          .basic_user = "user@example.com",
                          .basic_secret = SECRET};
  char v[256];

  script(r, 1);
  ck_assert_int_eq(req_full(&q, "/rest/api/3/myself?expand=groups"), CH_OK);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_str_eq(resp.body, "{\"ok\":true}");
  ck_assert_uint_eq(resp.body_len, 11);
  ck_assert_str_eq(resp.content_type, "application/json");
  ck_assert_int_eq(resp.dry_run, 0);

  ck_assert_uint_eq(nseen(), 1);
  ck_assert_str_eq(srv.reqs[0].method, "GET");
  ck_assert_str_eq(srv.reqs[0].target, "/rest/api/3/myself?expand=groups");
  ck_assert_ptr_nonnull(seen_header(0, "Authorization", v, sizeof(v)));
  ck_assert_str_eq(v, "Basic " BASIC_B64);
  ck_assert_ptr_nonnull(seen_header(0, "Accept", v, sizeof(v)));
  ck_assert_str_eq(v, "application/json");
  ck_assert_ptr_nonnull(seen_header(0, "User-Agent", v, sizeof(v)));
  ck_assert_str_eq(v, "connhost/" PACKAGE_VERSION);
  ck_assert_ptr_null(seen_header(0, "Content-Type", v, sizeof(v)));

  ck_assert_uint_eq(stats().requests, 1);
  ck_assert_uint_eq(stats().retries, 0);
  ck_assert_uint_ge(stats().bytes_in, 11);
  ck_assert_uint_gt(stats().bytes_out, 0);
}
END_TEST

/* The host builds the Authorization line itself (curl's own cost a third of
   its CPU per request); a plugin's own line still wins, sent once. */
START_TEST(test_plugin_authorization_header_wins_once) {
  static const struct reply r[] = {{.status = 200, .body = "{}"},
                                   {.status = 200, .body = "{}"}};
  static const char *const own[] = {"authorization: Token abc", NULL};
  struct ch_http_req q = {.method = "GET",
                          .basic_user = "user@example.com",
                          .basic_secret = SECRET,
                          .headers = own};
  const char *h;
  char v[256];

  script(r, 2);
  ck_assert_int_eq(req_full(&q, "/rest/api/3/myself"), CH_OK);
  ck_assert_str_eq(seen_header(0, "Authorization", v, sizeof(v)), "Token abc");
  h = strcasestr(srv.reqs[0].headers, "Authorization:");
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_null(strcasestr(h + 1, "Authorization:"));
  ck_assert_ptr_null(strstr(srv.reqs[0].headers, BASIC_B64));

  /* A user without a secret still sends "Basic base64(user:)". */
  q.headers = NULL;
  q.basic_secret = NULL;
  ck_assert_int_eq(req_full(&q, "/rest/api/3/myself"), CH_OK);
  ck_assert_str_eq(seen_header(1, "Authorization", v, sizeof(v)),
                   "Basic dXNlckBleGFtcGxlLmNvbTo=");
}
END_TEST

START_TEST(test_post_sends_body_bearer_and_extra_headers) {
  static const struct reply r[] = {{.status = 201, .body = "{\"id\":\"7\"}"}};
  static const char *const extra[] = {"X-Atlassian-Token: no-check", NULL};
  struct ch_http_req q = {.method = "POST",
                          .body = "{\"name\":\"x\"}",
                          .body_len = 12,
                          .bearer = BEARER,
                          .headers = extra};
  char v[256];

  script(r, 1);
  ck_assert_int_eq(req_full(&q, "/v1/things"), CH_OK);
  ck_assert_int_eq(resp.status, 201);
  ck_assert_uint_eq(nseen(), 1);
  ck_assert_str_eq(srv.reqs[0].method, "POST");
  ck_assert_str_eq(srv.reqs[0].body, "{\"name\":\"x\"}");
  ck_assert_str_eq(seen_header(0, "Authorization", v, sizeof(v)),
                   "Bearer " BEARER);
  ck_assert_str_eq(seen_header(0, "Content-Type", v, sizeof(v)),
                   "application/json");
  ck_assert_str_eq(seen_header(0, "X-Atlassian-Token", v, sizeof(v)),
                   "no-check");

  /* A plugin's own content type wins; PATCH carries the body too. */
  q.method = "PATCH";
  q.content_type = "application/scim+json";
  ck_assert_int_eq(req_full(&q, "/scim/Users/1"), CH_OK);
  ck_assert_uint_eq(nseen(), 2);
  ck_assert_str_eq(srv.reqs[1].method, "PATCH");
  ck_assert_str_eq(srv.reqs[1].body, "{\"name\":\"x\"}");
  ck_assert_str_eq(seen_header(1, "Content-Type", v, sizeof(v)),
                   "application/scim+json");

  /* DELETE without a body sends no body and no content type. */
  ck_assert_int_eq(req("DELETE", "/v1/things/7", NULL, 0), CH_OK);
  ck_assert_str_eq(srv.reqs[2].method, "DELETE");
  ck_assert_ptr_null(seen_header(2, "Content-Type", v, sizeof(v)));
}
END_TEST

START_TEST(test_bad_requests_are_refused_before_sending) {
  static const char *const crlf[] = {"X-A: 1\r\nX-Injected: 2", NULL};
  struct ch_http_req q = {.method = "GET", .url = "ftp://example.com/x"};

  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_CONFIG);
  q.url = base;
  q.method = "get";
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_INVALID);
  q.method = "GET";
  q.headers = crlf;
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_INVALID);
  q.headers = NULL;
  q.bearer = BEARER;
  q.basic_user = "u";
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_INVALID);
  ck_assert_uint_eq(nseen(), 0);
  ck_assert_uint_eq(stats().errors, 4);
}
END_TEST

START_TEST(test_setup_rejects_bad_settings) {
  struct ch_http_conf conf = {.ca_file = "/nonexistent/ca.pem"};

  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/ca.pem"));
  conf.ca_file = NULL;
  conf.max_rps = -1;
  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_E_CONFIG);
  conf.max_rps = 0;
  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_OK);
}
END_TEST

/* ---- retries --------------------------------------------------------------
 */

START_TEST(test_429_retry_after_then_200) {
  static const struct reply r[] = {
      {.status = 429, .headers = "Retry-After: 1\r\n", .body = "{}"},
      {.status = 200, .body = "{\"ok\":1}"}};
  double t0;
  char *log, want[256];

  log_setup(CH_LOG_INFO, LOG_TEXT, 0);
  script(r, 2);
  capture_start();
  t0 = now_s();
  ck_assert_int_eq(req("GET", "/r?startAt=50", NULL, 0), CH_OK);
  ck_assert_double_ge(now_s() - t0, 0.95);
  log = capture_end();
  ck_assert_int_eq(resp.status, 200);
  ck_assert_str_eq(resp.body, "{\"ok\":1}");
  ck_assert_uint_eq(nseen(), 2);
  ck_assert_uint_eq(stats().requests, 2);
  ck_assert_uint_eq(stats().retries, 1);
  ck_assert_double_ge(stats().wait_s, 0.95);
  /* The operator sees one line per retry, without the query string. */
  snprintf(want, sizeof(want),
           "[test:t/i] GET %s/r: HTTP 429, retrying in 1.0 s (attempt 2/4)",
           base);
  ck_assert_msg(strstr(log, want), "log was: %s", log);
  ck_assert_ptr_null(strstr(log, "startAt"));
  free(log);
}
END_TEST

START_TEST(test_429_iso_ratelimit_reset) {
  struct reply r[] = {{.status = 429, .headers = NULL, .body = "{}"},
                      {.status = 200, .body = "{}"}};
  char hdr[96], stamp[32];
  struct timespec now;
  struct tm tm;
  time_t at;
  long ms;
  double t0;

  /* Jira's form with fractional seconds, one second from now. */
  clock_gettime(CLOCK_REALTIME, &now);
  ms = now.tv_nsec / 1000000L + 1000;
  at = now.tv_sec + ms / 1000;
  gmtime_r(&at, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(hdr, sizeof(hdr), "X-RateLimit-Reset: %s.%03ldZ\r\n", stamp,
           ms % 1000);
  r[0].headers = hdr;
  script(r, 2);
  t0 = now_s();
  ck_assert_int_eq(req("GET", "/rest/api/3/search", NULL, 0), CH_OK);
  ck_assert_double_ge(now_s() - t0, 0.8);
  ck_assert_double_lt(now_s() - t0, 3.0);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_uint_eq(nseen(), 2);
  ck_assert_uint_eq(stats().retries, 1);
}
END_TEST

START_TEST(test_503_then_200) {
  static const struct reply r[] = {{.status = 503, .body = "busy"},
                                   {.status = 200, .body = "{}"}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_uint_eq(nseen(), 2);
  ck_assert_uint_eq(stats().retries, 1);
}
END_TEST

START_TEST(test_409_retried_on_reads_only) {
  /* Jira's users/search: 409 when the request took over 10 s */
  static const struct reply r[] = {{.status = 409, .body = "{}"},
                                   {.status = 200, .body = "[]"}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/users/search", NULL, 0), CH_OK);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_uint_eq(nseen(), 2);
  /* a write's 409 is a conflict, even one marked safe to repeat */
  script(r, 2);
  ck_assert_int_eq(req("PUT", "/role/1", "{}", CH_HTTP_RETRY_SAFE), CH_OK);
  ck_assert_int_eq(resp.status, 409);
  ck_assert_uint_eq(nseen(), 3); /* counted across both scripts */
}
END_TEST

START_TEST(test_get_500_then_200) {
  static const struct reply r[] = {{.status = 500, .body = "oops"},
                                   {.status = 200, .body = "{}"}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_uint_eq(nseen(), 2);
}
END_TEST

START_TEST(test_write_answered_5xx_is_not_retried) {
  static const int codes[] = {500, 502, 503};

  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    struct reply r[] = {{.status = codes[i], .body = "{\"message\":\"x\"}"},
                        {.status = 200, .body = "{}"}};
    script(r, 2);
    ck_assert_int_eq(req("POST", "/create", "{}", 0), CH_OK);
    /* The plugin sees the failure; the write ran at most once. */
    ck_assert_int_eq(resp.status, codes[i]);
    ck_assert_str_eq(resp.body, "{\"message\":\"x\"}");
    ck_assert_uint_eq(nseen(), i + 1);
  }
  ck_assert_uint_eq(stats().retries, 0);
}
END_TEST

START_TEST(test_write_answered_429_is_retried) {
  static const struct reply r[] = {
      {.status = 429, .headers = "Retry-After: 0\r\n", .body = "{}"},
      {.status = 201, .body = "{}"}};
  script(r, 2);
  ck_assert_int_eq(req("POST", "/create", "{\"a\":1}", 0), CH_OK);
  ck_assert_int_eq(resp.status, 201);
  ck_assert_uint_eq(nseen(), 2);
  ck_assert_str_eq(srv.reqs[1].body, "{\"a\":1}");
}
END_TEST

START_TEST(test_write_marked_safe_is_retried) {
  static const struct reply r[] = {{.status = 500, .body = "{}"},
                                   {.status = 204}};
  script(r, 2);
  ck_assert_int_eq(req("PUT", "/role/1", "{}", CH_HTTP_RETRY_SAFE), CH_OK);
  ck_assert_int_eq(resp.status, 204);
  ck_assert_ptr_null(resp.body);
  ck_assert_uint_eq(nseen(), 2);
}
END_TEST

START_TEST(test_no_retry_flag) {
  static const struct reply r[] = {
      {.status = 429, .headers = "Retry-After: 0\r\n"}, {.status = 200}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/x", NULL, CH_HTTP_NO_RETRY), CH_OK);
  ck_assert_int_eq(resp.status, 429);
  ck_assert_uint_eq(nseen(), 1);
}
END_TEST

START_TEST(test_retries_exhausted_returns_last_status) {
  static const struct reply r[] = {{.status = 503, .body = "{\"n\":1}"},
                                   {.status = 502, .body = "{\"n\":2}"}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  ck_assert_int_eq(resp.status, 502);
  ck_assert_str_eq(resp.body, "{\"n\":2}");
  ck_assert_uint_eq(nseen(), 4);
  ck_assert_uint_eq(stats().requests, 4);
  ck_assert_uint_eq(stats().retries, 3);
  ck_assert_uint_eq(stats().errors, 0);
}
END_TEST

START_TEST(test_connection_reset_then_200) {
  static const struct reply r[] = {{.drop = 1}, {.status = 200, .body = "{}"}};
  script(r, 2);
  ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  ck_assert_int_eq(resp.status, 200);
  ck_assert_uint_eq(nseen(), 2);
}
END_TEST

START_TEST(test_connection_refused_is_io_quickly) {
  int port, fd = bind_loopback(&port);
  char url[128], want[160];
  struct ch_http_req q = {.method = "GET", .url = url};
  double t0;

  close(fd); /* nobody listens there now */
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x?id=1", port);
  t0 = now_s();
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_IO);
  ck_assert_double_lt(now_s() - t0, 2.0);
  ck_assert_int_eq(err.code, CH_E_IO);
  snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/x: ", port);
  ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
  ck_assert_ptr_null(strstr(err.msg, "id=1"));
  ck_assert_uint_eq(stats().requests, 4);
  ck_assert_uint_eq(stats().errors, 1);
  ck_assert_int_eq(resp.status, 0);
  ck_assert_ptr_null(resp.body);
  /* A write is tried once. */
  q.method = "POST";
  q.body = "{}";
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_IO);
  ck_assert_uint_eq(stats().requests, 5);
}
END_TEST

START_TEST(test_timeout_is_retry_after_attempts) {
  static const struct reply r[] = {{.status = 200, .delay_ms = 600}};
  struct ch_http_conf conf = {.timeout_ms = 150};
  double t0;

  reinit(2, 4096);
  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_OK);
  script(r, 1);
  t0 = now_s();
  ck_assert_int_eq(req("GET", "/slow", NULL, 0), CH_E_RETRY);
  ck_assert_double_lt(now_s() - t0, 1.5);
  ck_assert_msg(strstr(err.msg, "timed out"), "%s", err.msg);
  ck_assert_uint_eq(stats().requests, 2);
}
END_TEST

static void *stopper(void *arg) {
  (void)arg;
  sleep_ms(200);
  stop_request(SIGTERM);
  return NULL;
}

START_TEST(test_stop_aborts_a_long_wait) {
  static const struct reply r[] = {
      {.status = 429, .headers = "Retry-After: 30\r\n"}};
  pthread_t th;
  double t0;

  script(r, 1);
  ck_assert_int_eq(pthread_create(&th, NULL, stopper, NULL), 0);
  t0 = now_s();
  ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_E_STOPPED);
  pthread_join(th, NULL);
  ck_assert_double_lt(now_s() - t0, 2.0);
  ck_assert_uint_eq(nseen(), 1);
}
END_TEST

/* ---- caps -------------------------------------------------------------------
 */

START_TEST(test_body_over_cap) {
  /* With Content-Length (refused up front) and without (cut mid-stream). */
  static const struct reply r1[] = {{.status = 200, .big = 8192}};
  static const struct reply r2[] = {
      {.status = 200, .big = 8192, .no_length = 1}};
  char want[160];

  snprintf(want, sizeof(want),
           "GET %s/big: response body over the "
           "4096-byte cap",
           base);
  script(r1, 1);
  ck_assert_int_eq(req("GET", "/big?page=2", NULL, 0), CH_E_LIMIT);
  ck_assert_str_eq(err.msg, want);
  script(r2, 1);
  ck_assert_int_eq(req("GET", "/big?page=2", NULL, 0), CH_E_LIMIT);
  ck_assert_str_eq(err.msg, want);
  ck_assert_ptr_null(resp.body);
  /* The cap is not transient: no retries. */
  ck_assert_uint_eq(nseen(), 2);
}
END_TEST

START_TEST(test_body_at_cap_is_kept) {
  static const struct reply r[] = {
      {.status = 200, .big = 4096, .no_length = 1}};
  script(r, 1);
  ck_assert_int_eq(req("GET", "/big", NULL, 0), CH_OK);
  ck_assert_uint_eq(resp.body_len, 4096);
  ck_assert_uint_eq(strlen(resp.body), 4096);
}
END_TEST

START_TEST(test_rate_cap_paces_requests) {
  struct ch_http_conf conf = {.max_rps = 20};
  double t0, unpaced;

  /* What five requests take with no cap: under valgrind on a busy machine
     that alone may fill some of the gaps, and the cap then waits less. */
  t0 = now_s();
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  unpaced = now_s() - t0;
  ck_assert_double_eq(stats().wait_s, 0);

  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_OK);
  t0 = now_s();
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(req("GET", "/x", NULL, 0), CH_OK);
  /* Five requests at 20/s need four 50 ms gaps. */
  ck_assert_double_ge(now_s() - t0, 0.19);
  ck_assert_double_ge(stats().wait_s, 0.15 - unpaced);
  ck_assert_uint_eq(nseen(), 10);
}
END_TEST

/* ---- the connection pool
 * ------------------------------------------------------ */

static void *get_in_thread(void *arg) {
  struct ch_http_resp r = {0};
  struct ch_err e = {0};
  struct ch_http_req q = {.method = "GET", .url = arg};
  intptr_t rc = http_request(cl, &q, &r, &e);

  http_resp_free(&r);
  return (void *)rc;
}

START_TEST(test_keepalive_and_shared_pool) {
  char url[128];
  pthread_t th;
  void *rc;

  ck_assert_int_eq(req("GET", "/a", NULL, 0), CH_OK);
  ck_assert_int_eq(req("GET", "/b", NULL, 0), CH_OK);
  /* A worker thread's handle takes the same connection from the pool. */
  snprintf(url, sizeof(url), "%s/c", base);
  ck_assert_int_eq(pthread_create(&th, NULL, get_in_thread, url), 0);
  pthread_join(th, &rc);
  ck_assert_int_eq((intptr_t)rc, CH_OK);
  ck_assert_uint_eq(nseen(), 3);
  pthread_mutex_lock(&srv.lock);
  ck_assert_int_eq(srv.nconns, 1);
  pthread_mutex_unlock(&srv.lock);
}
END_TEST

/* ---- secrets and dry run ----------------------------------------------------
 */

START_TEST(test_secrets_never_reach_errors_or_logs) {
  static const struct reply r[] = {
      {.status = 429,
       .headers = "Retry-After: 0\r\n",
       .body = "{\"message\":\"slow down " SECRET "\"}"},
      {.status = 401,
       .body = "{\"message\":\"token " BEARER " rejected for "
               "user@example.com:" SECRET "\"}"}};
  struct ch_http_req q = {.method = "GET",
                          .basic_user = "user@example.com",
                          .basic_secret = SECRET};
  char *log, v[256];

  log_add_secret(SECRET);
  log_add_secret(BEARER);
  log_setup(CH_LOG_DEBUG, LOG_TEXT, 0);
  script(r, 2);
  capture_start();
  ck_assert_int_eq(req_full(&q, "/me"), CH_OK);
  ck_assert_int_eq(resp.status, 401);
  ck_assert_int_eq(http_error(&resp, "check credentials", &err), CH_E_AUTH);
  q.basic_user = q.basic_secret = NULL;
  q.bearer = BEARER;
  script(r + 1, 1);
  ck_assert_int_eq(req_full(&q, "/me"), CH_OK);
  log = capture_end();

  /* Positive control: the credentials did go out on the wire. */
  ck_assert_str_eq(seen_header(0, "Authorization", v, sizeof(v)),
                   "Basic " BASIC_B64);
  ck_assert_ptr_nonnull(strstr(log, "slow down ***"));
  ck_assert_ptr_nonnull(strstr(log, "retrying"));
  ck_assert_ptr_null(strstr(log, SECRET));
  ck_assert_ptr_null(strstr(log, BEARER));
  ck_assert_ptr_null(strstr(log, BASIC_B64));
  ck_assert_ptr_null(strstr(log, "Authorization"));
  ck_assert_ptr_null(strstr(err.msg, SECRET));
  ck_assert_ptr_null(strstr(err.msg, BEARER));
  ck_assert_msg(strstr(err.msg, "check credentials: HTTP 401: token *** "
                                "rejected for user@example.com:***"),
                "%s", err.msg);
  free(log);
}
END_TEST

/* Item 1 of issue 10: ".." as an id must not collapse onto the parent. */
START_TEST(test_dot_segments_are_refused) {
  static const char *const paths[] = {
      "/groups/G/members/..", "/groups/G/members/.", "/groups/%2e%2E/members",
      "/groups/G/%2E?x=1", "/a/./b"};
  char out[32];
  FILE *f;
  char *dry = NULL;
  size_t drylen = 0;

  ck_assert_uint_eq(http_url_encode("..", out, sizeof(out)), 6);
  ck_assert_str_eq(out, "%2E%2E");
  http_url_encode(".", out, sizeof(out));
  ck_assert_str_eq(out, "%2E");
  http_url_encode("a..b", out, sizeof(out));
  ck_assert_str_eq(out, "a..b");
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    ck_assert_int_eq(req("DELETE", paths[i], NULL, 0), CH_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err.msg, "'.' or '..' path segment"));
  }
  ck_assert_uint_eq(nseen(), 0);
  /* Neither does a dry run print one; "..." and "a..b" are ordinary. */
  f = open_memstream(&dry, &drylen);
  ck_assert_ptr_nonnull(f);
  http_client_set_dry_run(cl, f);
  ck_assert_int_eq(req("DELETE", "/groups/G/members/..", NULL, 0),
                   CH_E_INVALID);
  ck_assert_int_eq(req("DELETE", "/groups/G/members/...", NULL, 0), CH_OK);
  ck_assert_int_eq(req("DELETE", "/groups/a..b/x./.y", NULL, 0), CH_OK);
  fclose(f);
  ck_assert_ptr_null(strstr(dry, "members/..\n"));
  ck_assert_ptr_nonnull(strstr(dry, "members/...\n"));
  free(dry);
}
END_TEST

/* Item 4: the Basic credential and the Bearer value the host puts on the
   wire are redacted when a server echoes them, even though only the
   configured secret itself was registered. */
START_TEST(test_echoed_authorization_is_redacted) {
  static const struct reply r[] = {
      {.status = 400,
       .body =
           "{\"message\":\"bad header Authorization: Basic " BASIC_B64 "\"}"},
      {.status = 400,
       .body =
           "{\"message\":\"bad header Authorization: Bearer " BEARER "\"}"}};
  struct ch_http_req q = {.method = "GET",
                          .basic_user = "user@example.com",
                          .basic_secret = SECRET};
  char *log;

  log_add_secret(SECRET);
  log_setup(CH_LOG_INFO, LOG_TEXT, 0);
  script(r, 2);
  capture_start();
  ck_assert_int_eq(req_full(&q, "/me"), CH_OK);
  ck_assert_int_eq(http_error(&resp, "check", &err), CH_E_INVALID);
  log_msg(NULL, CH_LOG_ERROR, "%s", err.msg);
  ck_assert_ptr_null(strstr(err.msg, BASIC_B64));
  ck_assert_ptr_nonnull(strstr(err.msg, "Basic ***"));
  http_resp_free(&resp);
  q.basic_user = q.basic_secret = NULL;
  q.bearer = BEARER;
  ck_assert_int_eq(req_full(&q, "/me"), CH_OK);
  ck_assert_int_eq(http_error(&resp, "check", &err), CH_E_INVALID);
  log_msg(NULL, CH_LOG_ERROR, "%s", err.msg);
  log = capture_end();
  ck_assert_ptr_nonnull(strstr(err.msg, "Bearer ***"));
  ck_assert_ptr_null(strstr(log, BASIC_B64));
  ck_assert_ptr_null(strstr(log, BEARER));
  free(log);
}
END_TEST

/* Item 4: a log line longer than the line cap is redacted before it is
   cut, so a secret straddling the cut leaks no part of itself. */
START_TEST(test_log_line_cut_after_redaction) {
  static char pad[4090];
  char *log;

  memset(pad, 'y', sizeof(pad) - 1);
  log_add_secret(SECRET);
  log_setup(CH_LOG_INFO, LOG_TEXT, 0);
  capture_start();
  log_msg(NULL, CH_LOG_ERROR, "%s%s tail", pad, SECRET);
  log = capture_end();
  ck_assert_ptr_null(strstr(log, "s3cr3t"));
  ck_assert_ptr_nonnull(strstr(log, "yyy***"));
  free(log);
}
END_TEST

/* Item 4: the debug body cut happens after redaction, so a secret that
   straddles the 500-byte mark leaks no part of itself. */
START_TEST(test_debug_body_cut_after_redaction) {
  static char body[700];
  static struct reply r[1];
  static const char token[] =
      "ATATT3xFfGF0abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
  struct ch_http_req q = {.method = "GET"};
  char *log, part[12];

  memset(body, 'x', 480);
  memcpy(body + 480, token, sizeof(token));
  r[0].status = 200;
  r[0].body = body;
  log_add_secret(token);
  log_setup(CH_LOG_DEBUG, LOG_TEXT, 0);
  script(r, 1);
  capture_start();
  ck_assert_int_eq(req_full(&q, "/me"), CH_OK);
  log = capture_end();
  memcpy(part, token, sizeof(part) - 1);
  part[sizeof(part) - 1] = '\0';
  ck_assert_ptr_nonnull(strstr(log, "xxx***"));
  ck_assert_ptr_null(strstr(log, part));
  free(log);
}
END_TEST

START_TEST(test_dry_run_sends_nothing) {
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream(&out, &outlen);
  char want[256];
  struct ch_http_req q = {.method = "POST",
                          .body = "{\"token\":\"" SECRET "\",\"n\":1}",
                          .bearer = BEARER};

  ck_assert_ptr_nonnull(f);
  log_add_secret(SECRET);
  http_client_set_dry_run(cl, f);
  ck_assert_int_eq(http_client_dry_run(cl), 1);
  ck_assert_int_eq(req_full(&q, "/rest/api/3/group/user?groupId=9"), CH_OK);
  ck_assert_int_eq(resp.dry_run, 1);
  ck_assert_int_eq(resp.status, 0);
  q.method = "GET";
  q.body = NULL;
  ck_assert_int_eq(req_full(&q, "/rest/api/3/user"), CH_OK);
  fclose(f);

  ck_assert_uint_eq(nseen(), 0);
  ck_assert_uint_eq(stats().requests, 0);
  snprintf(want, sizeof(want),
           "DRY RUN: POST %s/rest/api/3/group/user?groupId=9\n"
           "{\"token\":\"***\",\"n\":1}\n"
           "DRY RUN: GET %s/rest/api/3/user\n",
           base, base);
  ck_assert_str_eq(out, want);
  ck_assert_ptr_null(strstr(out, BEARER));
  free(out);
}
END_TEST

/* ---- TLS --------------------------------------------------------------------
 */

static char tls_dir[64];
static char tls_cert[96];
static pid_t tls_pid;
static int tls_port;
static const char *tls_skip;

static void tls_start(void) {
  char cmd[512], key[96], accept[32];
  int fd, port;

  tls_skip = NULL;
  if (system("command -v openssl >/dev/null 2>&1") != 0) {
    tls_skip = "openssl is not on PATH";
    return;
  }
  snprintf(tls_dir, sizeof(tls_dir), "/tmp/check_http_tls.XXXXXX");
  if (!mkdtemp(tls_dir)) {
    tls_skip = "mkdtemp failed";
    return;
  }
  snprintf(tls_cert, sizeof(tls_cert), "%s/C", tls_dir);
  snprintf(key, sizeof(key), "%s/K", tls_dir);
  snprintf(cmd, sizeof(cmd),
           "openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
           "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
           "-keyout %s -out %s >/dev/null 2>&1",
           key, tls_cert);
  if (system(cmd) != 0) {
    tls_skip = "openssl req failed";
    return;
  }
  /* Learn a free port, release it, and let s_server take it. */
  {
    struct sockaddr_in sa = {0};
    socklen_t salen = sizeof(sa);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &salen);
    port = ntohs(sa.sin_port);
    close(fd);
  }
  snprintf(accept, sizeof(accept), "127.0.0.1:%d", port);
  tls_pid = fork();
  if (tls_pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert",
           tls_cert, "-key", key, "-www", (char *)NULL);
    _exit(127);
  }
  if (tls_pid < 0) {
    tls_skip = "fork failed";
    return;
  }
  tls_port = port;
  /* Wait until it accepts connections. */
  for (int i = 0; i < 100; i++) {
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
      close(fd);
      return;
    }
    close(fd);
    sleep_ms(50);
  }
  tls_skip = "openssl s_server did not start";
}

static void tls_stop(void) {
  char path[128];

  if (tls_pid > 0) {
    kill(tls_pid, SIGTERM);
    waitpid(tls_pid, NULL, 0);
    tls_pid = 0;
  }
  if (tls_dir[0]) {
    snprintf(path, sizeof(path), "%s/C", tls_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/K", tls_dir);
    unlink(path);
    rmdir(tls_dir);
    tls_dir[0] = '\0';
  }
}

START_TEST(test_tls_verification_is_always_on) {
  char url[64];
  struct ch_http_req q = {.method = "GET", .url = url};
  struct ch_http_conf conf = {0};

  if (tls_skip) {
    fprintf(stderr, "check_http: TLS test skipped: %s\n", tls_skip);
    return;
  }
  snprintf(url, sizeof(url), "https://127.0.0.1:%d/", tls_port);
  /* s_server's status page is bigger than the other tests' cap. */
  reinit(4, 1024 * 1024);
  /* The system store does not know the throwaway CA: refused, no retry. */
  ck_assert_int_eq(http_request(cl, &q, &resp, &err), CH_E_IO);
  ck_assert_msg(strstr(err.msg, "certificate"), "%s", err.msg);
  ck_assert_uint_eq(stats().requests, 1);

  conf.ca_file = tls_cert;
  ck_assert_int_eq(http_client_setup(cl, &conf, &err), CH_OK);
  ck_assert_msg(http_request(cl, &q, &resp, &err) == CH_OK, "%s", err.msg);
  ck_assert_int_eq(resp.status, 200);
}
END_TEST

/* ---- http_error
 * ---------------------------------------------------------------- */

struct error_case {
  long status;
  const char *body;
  int code;
  const char *msg;
};

START_TEST(test_http_error_shapes) {
  static const struct error_case cases[] = {
      {404,
       "{\"errorMessages\":[\"Issue does not exist or you do not have "
       "permission to see it.\"],\"errors\":{}}",
       CH_E_NOTFOUND,
       "get: HTTP 404: Issue does not exist or you do not have permission to "
       "see it."},
      {400,
       "{\"errorMessages\":[],\"errors\":{\"summary\":\"You must specify a "
       "summary of the issue.\"}}",
       CH_E_INVALID,
       "get: HTTP 400: summary: You must specify a summary of the issue."},
      {403,
       "{\"errors\":[{\"code\":\"FORBIDDEN\",\"title\":\"Forbidden\","
       "\"detail\":\"Not an org admin\"}]}",
       CH_E_PERM, "get: HTTP 403: Forbidden: Not an org admin"},
      {429, "{\"code\":429,\"message\":\"Too many requests\"}", CH_E_RETRY,
       "get: HTTP 429: Too many requests"},
      {500, "{\"message\":\"Internal error\"}", CH_E_RETRY,
       "get: HTTP 500: Internal error"},
      {409,
       "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:Error\"],"
       "\"detail\":\"User already exists\",\"scimType\":\"uniqueness\","
       "\"status\":\"409\"}",
       CH_E_CONFLICT, "get: HTTP 409: User already exists (uniqueness)"},
      {401, "{\"error\":\"invalid_token\"}", CH_E_AUTH,
       "get: HTTP 401: invalid_token"},
      {502, "<html>\n<body>\tBad   gateway</body></html>\n", CH_E_RETRY,
       "get: HTTP 502: <html> <body> Bad gateway</body></html>"},
      {422, "{\"message\": \"trunc", CH_E_PROTOCOL,
       "get: HTTP 422: {\"message\": \"trunc"},
      {418, NULL, CH_E_PROTOCOL, "get: HTTP 418"},
  };

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct ch_http_resp r = {.status = cases[i].status,
                             .body = (char *)cases[i].body};
    struct ch_err e = {0};
    r.body_len = r.body ? strlen(r.body) : 0;
    ck_assert_int_eq(http_error(&r, "get", &e), cases[i].code);
    ck_assert_int_eq(e.code, cases[i].code);
    ck_assert_str_eq(e.msg, cases[i].msg);
  }
}
END_TEST

START_TEST(test_http_error_text_is_short_and_redacted) {
  char body[1000];
  struct ch_http_resp r = {.status = 503, .body = body};
  struct ch_err e = {0};
  const char *summary;

  memset(body, 'a', sizeof(body) - 1);
  body[sizeof(body) - 1] = '\0';
  /* A secret straddling the summary's cut must not leak its first part. */
  memcpy(body + 110, SECRET, strlen(SECRET));
  r.body_len = strlen(body);
  log_add_secret(SECRET);
  ck_assert_int_eq(http_error(&r, "list users", &e), CH_E_RETRY);
  summary = e.msg + strlen("list users: HTTP 503: ");
  ck_assert_uint_le(strlen(summary), 120);
  ck_assert_ptr_null(strstr(e.msg, "s3cr"));
  ck_assert_ptr_nonnull(strstr(e.msg, "***"));

  r.status = 0;
  r.body = NULL;
  r.body_len = 0;
  ck_assert_int_eq(http_error(&r, "list users", &e), CH_E_PROTOCOL);
  log_cleanup();
}
END_TEST

/* ---- URLs and header parsing ------------------------------------------------
 */

START_TEST(test_url_encode) {
  char out[64];

  ck_assert_uint_eq(http_url_encode("a b/c#d%e?f&g=h+i", out, sizeof(out)),
                    strlen("a%20b%2Fc%23d%25e%3Ff%26g%3Dh%2Bi"));
  ck_assert_str_eq(out, "a%20b%2Fc%23d%25e%3Ff%26g%3Dh%2Bi");
  ck_assert_uint_eq(http_url_encode("Az09-._~", out, sizeof(out)), 8);
  ck_assert_str_eq(out, "Az09-._~");
  /* UTF-8 bytes each become %XX, uppercase. */
  http_url_encode("J\xc3\xb6rg \xe2\x82\xac", out, sizeof(out));
  ck_assert_str_eq(out, "J%C3%B6rg%20%E2%82%AC");
  /* Too small: the size needed, NUL-terminated, no half escape. */
  ck_assert_uint_eq(http_url_encode("ab cd", out, 5), 7);
  ck_assert_str_eq(out, "ab");
  ck_assert_uint_eq(http_url_encode("ab cd", NULL, 0), 7);
  ck_assert_uint_eq(http_url_encode("", out, sizeof(out)), 0);
  ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_url_query_get) {
  const char *url = "https://h/rest/api/3/search?startAt=50&jql=project%20%3D"
                    "%20X&q=a+b&flag&na%6De=v&empty=#frag=1";
  char out[64];

  ck_assert_int_eq(http_url_query_get(url, "startAt", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "50");
  ck_assert_int_eq(http_url_query_get(url, "jql", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "project = X");
  ck_assert_int_eq(http_url_query_get(url, "q", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "a b");
  ck_assert_int_eq(http_url_query_get(url, "flag", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(http_url_query_get(url, "name", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "v");
  ck_assert_int_eq(http_url_query_get(url, "empty", out, sizeof(out)), 1);
  ck_assert_str_eq(out, "");
  strcpy(out, "junk");
  ck_assert_int_eq(http_url_query_get(url, "frag", out, sizeof(out)), 0);
  ck_assert_str_eq(out, "");
  ck_assert_int_eq(http_url_query_get(url, "start", out, sizeof(out)), 0);
  ck_assert_int_eq(http_url_query_get("https://h/p", "a", out, sizeof(out)), 0);
  ck_assert_int_eq(http_url_query_get(url, "jql", out, 8), 1);
  ck_assert_str_eq(out, "project");
}
END_TEST

START_TEST(test_parse_retry_after) {
  /* 2015-10-21T07:28:00Z */
  const int64_t t = INT64_C(1445412480) * 1000;

  ck_assert_int_eq(http_parse_retry_after("1", t), 1000);
  ck_assert_int_eq(http_parse_retry_after(" 120 ", t), 120000);
  ck_assert_int_eq(http_parse_retry_after("0", t), 0);
  ck_assert_int_eq(
      http_parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", t - 500), 10500);
  ck_assert_int_eq(
      http_parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", t), 10000);
  ck_assert_int_eq(http_parse_retry_after("Wed Oct 21 07:28:10 2015", t),
                   10000);
  /* A date in the past means "now". */
  ck_assert_int_eq(http_parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", t),
                   0);
  ck_assert_int_eq(http_parse_retry_after("soon", t), -1);
  ck_assert_int_eq(http_parse_retry_after("", t), -1);
  ck_assert_int_eq(http_parse_retry_after("1.5", t), -1);
  ck_assert_int_eq(http_parse_retry_after("-3", t), -1);
  ck_assert_int_eq(http_parse_retry_after("12abc", t), -1);
  ck_assert_int_eq(http_parse_retry_after(NULL, t), -1);
}
END_TEST

START_TEST(test_parse_iso_reset) {
  /* 2026-11-23T10:14:30Z */
  const int64_t t = INT64_C(1795428870) * 1000;

  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15Z", t), 30000);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15:10Z", t), 40000);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15:10.5Z", t), 40500);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15:10.123456Z", t),
                   40123);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15+00:00", t), 30000);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T11:15+01:00", t), 30000);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15", t), 30000);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:00Z", t), 0);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23", t), -1);
  ck_assert_int_eq(http_parse_iso_reset("2026-13-01T00:00Z", t), -1);
  ck_assert_int_eq(http_parse_iso_reset("2026-02-31T00:00Z", t), -1);
  ck_assert_int_eq(http_parse_iso_reset("2026-11-23T10:15Zjunk", t), -1);
  ck_assert_int_eq(http_parse_iso_reset("1795428900", t), -1);
  ck_assert_int_eq(http_parse_iso_reset("", t), -1);
}
END_TEST

static Suite *http_suite(void) {
  Suite *s = suite_create("http");
  TCase *tc = tcase_create("requests");
  TCase *tls = tcase_create("tls");
  TCase *pure = tcase_create("parsing");

  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_get_sends_expected_headers);
  tcase_add_test(tc, test_post_sends_body_bearer_and_extra_headers);
  tcase_add_test(tc, test_plugin_authorization_header_wins_once);
  tcase_add_test(tc, test_bad_requests_are_refused_before_sending);
  tcase_add_test(tc, test_setup_rejects_bad_settings);
  tcase_add_test(tc, test_429_retry_after_then_200);
  tcase_add_test(tc, test_429_iso_ratelimit_reset);
  tcase_add_test(tc, test_503_then_200);
  tcase_add_test(tc, test_409_retried_on_reads_only);
  tcase_add_test(tc, test_get_500_then_200);
  tcase_add_test(tc, test_write_answered_5xx_is_not_retried);
  tcase_add_test(tc, test_write_answered_429_is_retried);
  tcase_add_test(tc, test_write_marked_safe_is_retried);
  tcase_add_test(tc, test_no_retry_flag);
  tcase_add_test(tc, test_retries_exhausted_returns_last_status);
  tcase_add_test(tc, test_connection_reset_then_200);
  tcase_add_test(tc, test_connection_refused_is_io_quickly);
  tcase_add_test(tc, test_timeout_is_retry_after_attempts);
  tcase_add_test(tc, test_stop_aborts_a_long_wait);
  tcase_add_test(tc, test_body_over_cap);
  tcase_add_test(tc, test_body_at_cap_is_kept);
  tcase_add_test(tc, test_rate_cap_paces_requests);
  tcase_add_test(tc, test_keepalive_and_shared_pool);
  tcase_add_test(tc, test_secrets_never_reach_errors_or_logs);
  tcase_add_test(tc, test_dry_run_sends_nothing);
  tcase_add_test(tc, test_dot_segments_are_refused);
  tcase_add_test(tc, test_echoed_authorization_is_redacted);
  tcase_add_test(tc, test_debug_body_cut_after_redaction);
  tcase_add_test(tc, test_log_line_cut_after_redaction);
  suite_add_tcase(s, tc);

  tcase_add_unchecked_fixture(tls, tls_start, tls_stop);
  tcase_add_checked_fixture(tls, setup, teardown);
  tcase_set_timeout(tls, 30);
  tcase_add_test(tls, test_tls_verification_is_always_on);
  suite_add_tcase(s, tls);

  tcase_add_test(pure, test_http_error_shapes);
  tcase_add_test(pure, test_http_error_text_is_short_and_redacted);
  tcase_add_test(pure, test_url_encode);
  tcase_add_test(pure, test_url_query_get);
  tcase_add_test(pure, test_parse_retry_after);
  tcase_add_test(pure, test_parse_iso_reset);
  suite_add_tcase(s, pure);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(http_suite());
  int failed;

  /* A peer that hangs up mid-write must not kill the test program. */
  signal(SIGPIPE, SIG_IGN);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
