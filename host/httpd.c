/* SPDX-License-Identifier: MIT */
/* The `serve` and `explore` listener on libmicrohttpd: a thread per
   connection (so a slow answer, a store read, never holds up another
   request), capped connections, request memory, idle time and time to
   receive a request, so a slow or malformed client costs a bounded slot
   for a bounded time and never reaches the scheduler. */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "httpd.h"
#include "log.h"
#include "util.h"

#define HTTPD_MAX_CONNS 64  /* at once, all clients (threads) */
#define HTTPD_MAX_PER_IP 16 /* at once, one client address */
#define HTTPD_TIMEOUT_S 10  /* idle connection */
/* From accept (or the previous answer) to a whole request: line, headers
   and body. libmicrohttpd's idle time restarts with every byte, so a
   client that drips its headers would keep its slot for ever. */
#define HTTPD_REQUEST_S 10
#define HTTPD_REAP_MS 250        /* how often connections are held to it */
#define HTTPD_MEMORY (32 * 1024) /* per connection: request line + headers */
#define HTTPD_MAX_BODY 4096      /* only the sign-in form has one; cap it */
/* A body in chunks (no Content-Length to refuse up front) past the cap is
   read to its end for the 413, up to this much; past it, the connection
   is closed. */
#define HTTPD_MAX_DISCARD (1024 * 1024)
#define TOO_LARGE "request body too large: at most 4096 bytes\n"
#define HTTPD_HOST_MAX 128 /* the host part of the listen address */
#define HTTPD_SESSIONS 64  /* browser sign-ins kept (oldest replaced) */
#define HTTPD_SESSION_S (12 * 3600) /* how long one lasts */
#define SESSION_COOKIE "connhost_session"
#define SESSION_ID_LEN 32 /* hex digits of 16 random bytes */

/* A browser signed in with the token: its cookie's random id. */
struct session {
  char id[SESSION_ID_LEN + 1];
  time_t until; /* CLOCK_MONOTONIC seconds */
};

/* One TCP connection (libmicrohttpd's socket context), on the list the
   reaper holds to HTTPD_REQUEST_S. */
struct conn {
  struct conn *prev, *next;
  MHD_socket fd;
  int64_t since_us; /* accepted, or its previous answer sent */
  int answering;    /* its request is in: the handler and the answer go on */
  int cut;          /* shut down at the deadline */
};

struct httpd {
  struct MHD_Daemon *d;
  char *token;
  const char *const *open_paths;
  const char *login_path;
  httpd_handler handler;
  void *arg;
  unsigned port;
  /* The listen address's host part as given ("127.0.0.1", "[::1]",
     "localhost"): without a token, a Host naming anything else is a page
     whose name was rebound to this address. */
  char listen_host[HTTPD_HOST_MAX + 3];
  pthread_mutex_t lock; /* sessions: connections run on their own threads */
  struct session sessions[HTTPD_SESSIONS];
  size_t next_session;
  /* Guards `conns` and `stopping`: connections start and end on
     libmicrohttpd's threads, the reaper reads them on its own. */
  pthread_mutex_t conns_lock;
  pthread_cond_t reaper_wake;
  struct conn *conns;
  pthread_t reaper;
  int stopping;
};

struct httpd_request {
  struct MHD_Connection *conn;
  const char *method, *path;
};

/* Per-connection state while a body arrives. */
struct upload {
  size_t bytes;
  char body[HTTPD_MAX_BODY + 1];
};

int httpd_secret_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
  unsigned char diff = (unsigned char)(la != lb);

  for (size_t i = 0; i < n; i++) {
    unsigned char x = i < la ? (unsigned char)a[i] : 0;
    unsigned char y = i < lb ? (unsigned char)b[i] : 0;
    diff |= (unsigned char)(x ^ y);
  }
  return diff == 0;
}

/* Split "host:port" / "[v6]:port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss,
                        int *loopback, struct ch_err *err) {
  char host[128];
  const char *colon, *port_s;
  char *end;
  long port;
  size_t hlen;

  memset(ss, 0, sizeof(*ss));
  if (listen[0] == '[') {
    const char *close = strchr(listen, ']');
    if (!close || close[1] != ':')
      goto bad;
    hlen = (size_t)(close - listen - 1);
    if (hlen >= sizeof(host))
      goto bad;
    memcpy(host, listen + 1, hlen);
    port_s = close + 2;
  } else {
    colon = strrchr(listen, ':');
    if (!colon)
      goto bad;
    hlen = (size_t)(colon - listen);
    if (hlen >= sizeof(host))
      goto bad;
    memcpy(host, listen, hlen);
    port_s = colon + 1;
  }
  host[hlen] = '\0';
  port = strtol(port_s, &end, 10);
  if (!*port_s || *end || port < 0 || port > 65535)
    goto bad;
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof(host), "127.0.0.1");
  if (!host[0])
    snprintf(host, sizeof(host), "0.0.0.0");
  {
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons((uint16_t)port);
      *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
      return CH_OK;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons((uint16_t)port);
      *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
      return CH_OK;
    }
  }
bad:
  return ch_err_set(err, CH_E_CONFIG,
                    "listen address '%s' is not ADDR:PORT (e.g. "
                    "127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)",
                    listen);
}

int httpd_listen_is_loopback(const char *listen, int *loopback,
                             struct ch_err *err) {
  struct sockaddr_storage ss;
  return parse_listen(listen, &ss, loopback, err);
}

const char *httpd_method(const struct httpd_request *rq) { return rq->method; }
const char *httpd_path(const struct httpd_request *rq) { return rq->path; }
const char *httpd_query(const struct httpd_request *rq, const char *name) {
  return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct query_each {
  void (*fn)(void *arg, const char *name, const char *value);
  void *arg;
};

static enum MHD_Result query_each_one(void *cls, enum MHD_ValueKind kind,
                                      const char *name, const char *value) {
  const struct query_each *qe = cls;

  (void)kind;
  qe->fn(qe->arg, name, value);
  return MHD_YES;
}

void httpd_query_each(const struct httpd_request *rq,
                      void (*fn)(void *arg, const char *name,
                                 const char *value),
                      void *arg) {
  struct query_each qe = {fn, arg};

  MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_each_one,
                            &qe);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn,
                                  struct httpd_reply *rp) {
  const char *body = rp->body ? rp->body : "";
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret;

  free(rp->body);
  rp->body = NULL;
  if (!r) {
    free(rp->link);
    rp->link = NULL;
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type",
                          rp->content_type ? rp->content_type
                                           : "text/plain; charset=utf-8");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  /* The explorer's pages show names from the data: no inline script, no
     fetch from anywhere else, even if a name got through as markup. */
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'self'; script-src 'self'; "
                          "object-src 'none'; base-uri 'none'; "
                          "form-action 'self'; frame-ancestors 'none'");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (rp->allow)
    MHD_add_response_header(r, "Allow", rp->allow);
  if (rp->link)
    MHD_add_response_header(r, "Link", rp->link);
  free(rp->link);
  rp->link = NULL;
  if (rp->status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"connhost\"");
  ret = MHD_queue_response(conn, (unsigned)rp->status, r);
  MHD_destroy_response(r);
  return ret;
}

int httpd_is_api(const char *path) {
  return strncmp(path, HTTPD_API_PREFIX, strlen(HTTPD_API_PREFIX)) == 0;
}

void httpd_reply_error(struct httpd_reply *rp, int status, const char *fmt,
                       ...) {
  char msg[CH_ERR_MSG_SIZE + 256];
  struct json_object *o = json_object_new_object();
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  msg[strcspn(msg, "\n")] = '\0';
  json_object_object_add(o, "error", json_object_new_string(msg));
  rp->status = status;
  rp->content_type = "application/json";
  rp->body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
  json_object_put(o);
}

/* An answer of the listener's own (a refusal): JSON under the API, as
   every answer there is, else text. */
static void reply_own(struct httpd_reply *rp, const char *path, int status,
                      const char *text) {
  if (httpd_is_api(path)) {
    httpd_reply_error(rp, status, "%s", text);
    return;
  }
  rp->status = status;
  rp->body = strdup(text);
}

static time_t mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

/* A new session id in `id` (SESSION_ID_LEN + 1 bytes); -1 without
   randomness. */
static int session_new(struct httpd *h, char *id) {
  unsigned char r[SESSION_ID_LEN / 2];
  struct session *s;

  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return -1;
  for (size_t i = 0; i < sizeof(r); i++)
    snprintf(id + 2 * i, 3, "%02x", r[i]);
  pthread_mutex_lock(&h->lock);
  s = &h->sessions[h->next_session++ % HTTPD_SESSIONS];
  memcpy(s->id, id, SESSION_ID_LEN + 1);
  s->until = mono_s() + HTTPD_SESSION_S;
  pthread_mutex_unlock(&h->lock);
  return 0;
}

static int session_valid(struct httpd *h, const char *id) {
  time_t now = mono_s();
  int ok = 0;

  if (!id || strlen(id) != SESSION_ID_LEN)
    return 0;
  pthread_mutex_lock(&h->lock);
  for (size_t i = 0; i < HTTPD_SESSIONS; i++) {
    const struct session *s = &h->sessions[i];
    ok |= s->until > now && httpd_secret_equal(id, s->id);
  }
  pthread_mutex_unlock(&h->lock);
  return ok;
}

/* The sign-in form's POST (token=...): a session cookie when the token is
   right, then back to the pages; else back to the form. */
static enum MHD_Result sign_in(struct httpd *h, struct MHD_Connection *conn,
                               struct upload *up) {
  char id[SESSION_ID_LEN + 1], cookie[128], *save = NULL;
  const char *where = "/";
  struct MHD_Response *r;
  enum MHD_Result ret;
  int ok = 0;

  up->body[up->bytes] = 0;
  for (char *f = strtok_r(up->body, "&", &save); f;
       f = strtok_r(NULL, "&", &save)) {
    if (strncmp(f, "token=", 6) != 0)
      continue;
    for (char *p = f + 6; *p; p++)
      *p = *p == '+' ? ' ' : *p; /* a form's space */
    MHD_http_unescape(f + 6);
    ok = h->token && httpd_secret_equal(f + 6, h->token);
  }
  if (h->token && !(ok && session_new(h, id) == 0))
    where = "/login?failed=1";
  r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Location", where);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (h->token && ok) {
    /* HttpOnly: no script reads it; Strict: no other site's page sends it */
    snprintf(cookie, sizeof(cookie),
             SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; "
                            "Max-Age=%d",
             id, HTTPD_SESSION_S);
    MHD_add_response_header(r, "Set-Cookie", cookie);
    memset(cookie, 0, sizeof(cookie));
  }
  memset(up->body, 0, sizeof(up->body));
  ret = MHD_queue_response(conn, MHD_HTTP_SEE_OTHER, r);
  MHD_destroy_response(r);
  return ret;
}

static int path_open(const struct httpd *h, const char *path) {
  for (size_t i = 0; h->open_paths && h->open_paths[i]; i++) {
    if (strcmp(h->open_paths[i], path) == 0)
      return 1;
  }
  return 0;
}

/* The token as a Bearer header; or, to read (GET, HEAD), a signed-in
   browser's session cookie. */
static int authorized(struct httpd *h, struct MHD_Connection *conn,
                      const char *method, const char *path) {
  const char *auth;

  if (!h->token || path_open(h, path))
    return 1;
  auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  if (auth && strncmp(auth, "Bearer ", 7) == 0)
    return httpd_secret_equal(auth + 7, h->token);
  return h->login_path &&
         (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
         session_valid(h, MHD_lookup_connection_value(conn, MHD_COOKIE_KIND,
                                                      SESSION_COOKIE));
}

/* A browser asking for a page without the token goes to the sign-in. */
static int wants_page(const struct httpd *h, struct MHD_Connection *conn,
                      const char *method, const char *path) {
  const char *accept =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
  /* the API answers JSON even to a browser: a 401, never the form */
  return h->login_path && strcmp(method, "GET") == 0 && !httpd_is_api(path) &&
         accept && strstr(accept, "text/html");
}

/* Whether `host` (a Host header: NAME or NAME:PORT, NAME maybe "[v6]")
   names this listener: the listen address as given, or localhost,
   127.0.0.1 or [::1]. Any port: a local proxy may forward another. */
static int host_is_ours(const struct httpd *h, const char *host) {
  static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
  const char *end = host[0] == '[' ? strchr(host, ']') : strchr(host, ':');
  size_t n;

  if (host[0] == '[' && end)
    end++;
  n = end ? (size_t)(end - host) : strlen(host);
  if (end && *end) {
    if (end[0] != ':' || !end[1] || strlen(end + 1) > 5 ||
        strspn(end + 1, "0123456789") != strlen(end + 1))
      return 0;
  }
  if (n == strlen(h->listen_host) && strncasecmp(host, h->listen_host, n) == 0)
    return 1;
  for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
    if (n == strlen(loopback[i]) && strncasecmp(host, loopback[i], n) == 0)
      return 1;
  }
  return 0;
}

/* A POST's Origin, when sent, must be this listener's own: the scheme and
   the Host the request was sent to. A page elsewhere (another site, or
   another port on this host) gets no CORS preflight for a bodyless POST,
   so this is what keeps it from triggering a sync or a sign-in. */
static int origin_is_ours(const char *origin, const char *host) {
  const char *rest = NULL;

  if (strncasecmp(origin, "http://", 7) == 0)
    rest = origin + 7;
  else if (strncasecmp(origin, "https://", 8) == 0)
    rest = origin + 8;
  return rest && host && strcasecmp(rest, host) == 0;
}

/* *con_cls of a request whose target holds %00 (set by on_uri, before
   libmicrohttpd decodes the target): decoded, the NUL would cut the path
   or an argument short ("alpha%00junk" read as "alpha"). */
static char target_has_nul;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  (void)conn;
  return strstr(uri, "%00") ? &target_has_nul : NULL;
}

/* A request's target (RFC 9112 3.2): origin-form "/path" is its path; of
   absolute-form "http://HOST[:PORT]/path", which a server MUST accept
   (3.2.2), the path, its authority taking the Host header's place. */
struct target {
  const char *path; /* NULL: absolute-form with no host, or a too long one */
  char host[HTTPD_HOST_MAX + 8]; /* the authority; "" in origin-form */
  int nul;                       /* a %00 in it */
};

static void target_parse(const char *url, int nul, struct target *t) {
  const char *auth = NULL, *slash;
  size_t len;

  t->path = url;
  t->host[0] = '\0';
  t->nul = nul;
  if (strncasecmp(url, "http://", 7) == 0)
    auth = url + 7;
  else if (strncasecmp(url, "https://", 8) == 0)
    auth = url + 8;
  if (!auth)
    return;
  slash = strchr(auth, '/');
  len = slash ? (size_t)(slash - auth) : strlen(auth);
  if (!len || len >= sizeof(t->host)) {
    t->path = NULL;
    return;
  }
  memcpy(t->host, auth, len);
  t->host[len] = '\0';
  t->path = slash ? slash : "/";
}

/* The query arguments' names, to find one given twice. */
struct arg_names {
  const char *name[HTTPD_MAX_ARGS];
  size_t n;
  const char *twice; /* the first name given again, or NULL */
  int too_many;
};

static enum MHD_Result arg_name_one(void *cls, enum MHD_ValueKind kind,
                                    const char *name, const char *value) {
  struct arg_names *a = cls;

  (void)kind;
  (void)value;
  for (size_t i = 0; i < a->n; i++) {
    if (strcmp(a->name[i], name) == 0) {
      a->twice = name;
      return MHD_NO;
    }
  }
  if (a->n == HTTPD_MAX_ARGS) {
    a->too_many = 1;
    return MHD_NO;
  }
  a->name[a->n++] = name;
  return MHD_YES;
}

/* A query argument given twice (?tenant=a&tenant=b) is no choice of one:
   refused rather than the first taken. 1 with `rp` filled when so. */
static int args_refused(struct MHD_Connection *conn, const char *path,
                        struct httpd_reply *rp) {
  struct arg_names a = {0};
  char msg[160];

  MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, arg_name_one, &a);
  if (a.twice)
    snprintf(msg, sizeof(msg),
             "bad request: the query argument '%.64s' is given more than "
             "once\n",
             a.twice);
  else if (a.too_many)
    snprintf(msg, sizeof(msg), "bad request: more than %d query arguments\n",
             HTTPD_MAX_ARGS);
  else
    return 0;
  reply_own(rp, path, MHD_HTTP_BAD_REQUEST, msg);
  return 1;
}

/* The checks made once the headers are in, before any body is read: the
   Host of a token-less listener, a POST's Origin, the announced body
   size, the query arguments. 1 with `rp` filled
   when the request is refused. */
static int refused(const struct httpd *h, struct MHD_Connection *conn,
                   const char *method, const char *url, const struct target *t,
                   const char *version, struct httpd_reply *rp) {
  const char *path = t->path ? t->path : url;
  const char *host =
      t->host[0] ? t->host
                 : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
  const char *origin =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
  const char *length =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

  if (!t->path) {
    reply_own(rp, path, MHD_HTTP_BAD_REQUEST,
              "bad request: an absolute-form target needs a host (of at "
              "most 128 characters)\n");
    return 1;
  }
  if (t->nul) {
    reply_own(rp, path, MHD_HTTP_BAD_REQUEST,
              "bad request: a NUL (%00) in the path or a query argument\n");
    return 1;
  }
  if (!h->token && !host && strcmp(version, "HTTP/1.0") != 0) {
    reply_own(rp, path, MHD_HTTP_BAD_REQUEST, "bad request: no Host header\n");
    return 1;
  }
  if (!h->token && host && !host_is_ours(h, host)) {
    reply_own(rp, path, MHD_HTTP_MISDIRECTED_REQUEST,
              "misdirected request: this listener has no token and "
              "answers only Host localhost, 127.0.0.1, [::1] or its "
              "listen address\n");
    return 1;
  }
  if (strcmp(method, "POST") == 0 && origin && !origin_is_ours(origin, host)) {
    reply_own(rp, path, MHD_HTTP_FORBIDDEN,
              "forbidden: a POST from a page of another origin\n");
    return 1;
  }
  if (length && strtoull(length, NULL, 10) > HTTPD_MAX_BODY) {
    reply_own(rp, path, MHD_HTTP_CONTENT_TOO_LARGE, TOO_LARGE);
    return 1;
  }
  return args_refused(conn, path, rp);
}

/* The connection's request is in (`answering`), or its next one starts
   arriving now. */
static void conn_phase(struct httpd *h, struct MHD_Connection *conn,
                       int answering) {
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  struct conn *c = info ? info->socket_context : NULL;

  if (!c)
    return;
  pthread_mutex_lock(&h->conns_lock);
  c->answering = answering;
  c->since_us = util_mono_us();
  pthread_mutex_unlock(&h->conns_lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  struct httpd *h = cls;
  struct conn *c = *socket_context;
  const union MHD_ConnectionInfo *info;

  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
      return;
    c = calloc(1, sizeof(*c));
    if (!c) {
      /* no deadline to hold it to: not served */
      shutdown(info->connect_fd, SHUT_RDWR);
      return;
    }
    c->fd = info->connect_fd;
    c->since_us = util_mono_us();
    pthread_mutex_lock(&h->conns_lock);
    c->next = h->conns;
    if (h->conns)
      h->conns->prev = c;
    h->conns = c;
    pthread_mutex_unlock(&h->conns_lock);
    *socket_context = c;
    return;
  }
  if (!c)
    return;
  /* before libmicrohttpd closes the socket: the reaper never shuts down
     a descriptor that may have been reused */
  pthread_mutex_lock(&h->conns_lock);
  if (c->prev)
    c->prev->next = c->next;
  else
    h->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pthread_mutex_unlock(&h->conns_lock);
  free(c);
  *socket_context = NULL;
}

/* Shut down each connection whose request has not all arrived within
   HTTPD_REQUEST_S; its libmicrohttpd thread then reads the end of the
   stream and closes it, without an answer (none can be queued before
   the headers are in). */
static void *reaper_main(void *arg) {
  struct httpd *h = arg;

  pthread_mutex_lock(&h->conns_lock);
  while (!h->stopping) {
    int64_t now = util_mono_us();
    for (struct conn *c = h->conns; c; c = c->next) {
      if (c->answering || c->cut ||
          now - c->since_us < HTTPD_REQUEST_S * 1000000LL)
        continue;
      shutdown(c->fd, SHUT_RDWR);
      c->cut = 1;
      log_msg("httpd", CH_LOG_DEBUG,
              "closed a connection whose request did not arrive within %d s",
              HTTPD_REQUEST_S);
    }
    util_cond_wait_us(&h->reaper_wake, &h->conns_lock, HTTPD_REAP_MS * 1000LL);
  }
  pthread_mutex_unlock(&h->conns_lock);
  return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  struct httpd *h = cls;
  struct upload *up = *con_cls == &target_has_nul ? NULL : *con_cls;
  struct httpd_reply rp = {0};
  struct target t;
  struct httpd_request rq = {conn, method, NULL};
  const char *path;

  target_parse(url, *con_cls == &target_has_nul, &t);
  path = rq.path = t.path ? t.path : url; /* refused when NULL */
  if (!up) {
    /* First call: headers only. Refuse now (MHD then reads no body), or
       keep a counter for the body. */
    if (refused(h, conn, method, url, &t, version, &rp)) {
      conn_phase(h, conn, 1);
      return send_reply(conn, &rp);
    }
    up = calloc(1, sizeof(*up));
    if (!up)
      return MHD_NO;
    *con_cls = up;
    return MHD_YES;
  }
  if (*data_size) {
    /* No answer can be queued while a body arrives (libmicrohttpd takes
       none with upload data): keep what fits, count the rest, and answer
       once the body has ended. */
    if (up->bytes + *data_size <= HTTPD_MAX_BODY)
      memcpy(up->body + up->bytes, data, *data_size);
    up->bytes += *data_size;
    *data_size = 0;
    return up->bytes > HTTPD_MAX_DISCARD ? MHD_NO : MHD_YES;
  }
  conn_phase(h, conn, 1); /* the whole request is in: it is answered now */
  if (up->bytes > HTTPD_MAX_BODY) {
    reply_own(&rp, path, MHD_HTTP_CONTENT_TOO_LARGE, TOO_LARGE);
    return send_reply(conn, &rp);
  }
  if (h->login_path && strcmp(method, "POST") == 0 &&
      strcmp(path, h->login_path) == 0)
    return sign_in(h, conn, up);
  if (!authorized(h, conn, method, path) && wants_page(h, conn, method, path)) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    if (!r)
      return MHD_NO;
    MHD_add_response_header(r, "Location", h->login_path);
    ret = MHD_queue_response(conn, MHD_HTTP_SEE_OTHER, r);
    MHD_destroy_response(r);
    return ret;
  }
  if (!authorized(h, conn, method, path)) {
    reply_own(&rp, path, MHD_HTTP_UNAUTHORIZED,
              "unauthorized: send 'Authorization: Bearer "
              "<serve.auth_token>'\n");
    return send_reply(conn, &rp);
  }
  h->handler(h->arg, &rq, &rp);
  if (!rp.status)
    rp.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
  return send_reply(conn, &rp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
  if (*con_cls != &target_has_nul)
    free(*con_cls);
  *con_cls = NULL;
  conn_phase(cls, conn, 0); /* a kept-alive connection's next request */
}

/* libmicrohttpd's own complaints (bad requests, limits) at debug. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  log_vmsg("httpd", CH_LOG_DEBUG, fmt, ap);
}

/* What httpd_start() set up besides the daemon and its reaper. */
static void httpd_free(struct httpd *h) {
  pthread_cond_destroy(&h->reaper_wake);
  pthread_mutex_destroy(&h->conns_lock);
  pthread_mutex_destroy(&h->lock);
  memset(h->sessions, 0, sizeof(h->sessions));
  if (h->token) {
    volatile char *v = h->token;
    while (*v)
      *v++ = 0;
  }
  free(h->token);
  free(h);
}

int httpd_start(const struct httpd_conf *conf, struct httpd **out,
                struct ch_err *err) {
  struct sockaddr_storage ss;
  struct httpd *h = NULL;
  const union MHD_DaemonInfo *info;
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD |
                   MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
  int loopback = 0, rc;

  *out = NULL;
  rc = parse_listen(conf->listen, &ss, &loopback, err);
  if (rc != CH_OK)
    return rc;
  if (!loopback && !conf->token)
    return ch_err_set(err, CH_E_CONFIG,
                      "listening on '%s' (not loopback) needs "
                      "'serve.auth_token' in the config: without it anyone "
                      "who reaches the port could trigger syncs",
                      conf->listen);
  h = calloc(1, sizeof(*h));
  if (!h || (conf->token && !(h->token = strdup(conf->token)))) {
    free(h);
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  h->open_paths = conf->open_paths;
  h->login_path = conf->login_path;
  {
    /* "[v6]" with its brackets, as a Host header spells it */
    const char *end = conf->listen[0] == '[' ? strchr(conf->listen, ']') + 1
                                             : strrchr(conf->listen, ':');
    snprintf(h->listen_host, sizeof(h->listen_host), "%.*s",
             (int)(end - conf->listen), conf->listen);
  }
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->conns_lock, NULL);
  pthread_cond_init(&h->reaper_wake, NULL);
  h->handler = conf->handler;
  h->arg = conf->arg;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  h->d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)HTTPD_MAX_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      (unsigned)HTTPD_MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)HTTPD_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)HTTPD_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
      MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_URI_LOG_CALLBACK,
      on_uri, h, MHD_OPTION_END);
  if (!h->d) {
    httpd_free(h);
    return ch_err_set(err, CH_E_CONFIG,
                      "cannot listen on '%s' (in use, or not an address of "
                      "this host)",
                      conf->listen);
  }
  if (pthread_create(&h->reaper, NULL, reaper_main, h) != 0) {
    MHD_stop_daemon(h->d);
    httpd_free(h);
    return ch_err_set(err, CH_E_NOMEM, "cannot start the listener's reaper");
  }
  info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : 0;
  *out = h;
  return CH_OK;
}

unsigned httpd_port(const struct httpd *h) { return h->port; }

void httpd_stop(struct httpd *h) {
  if (!h)
    return;
  pthread_mutex_lock(&h->conns_lock);
  h->stopping = 1;
  pthread_cond_signal(&h->reaper_wake);
  pthread_mutex_unlock(&h->conns_lock);
  pthread_join(h->reaper, NULL);
  MHD_stop_daemon(h->d); /* each connection's NOTIFY_CLOSED comes first */
  httpd_free(h);
}
