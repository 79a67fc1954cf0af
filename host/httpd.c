/* SPDX-License-Identifier: MIT */
/* The `serve` and `explore` listener on libmicrohttpd: a thread per
   connection (so a slow answer, a store read, never holds up another
   request), capped connections, request memory and idle time, so a slow
   or malformed client costs a bounded slot and never reaches the
   scheduler. */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "httpd.h"
#include "log.h"

#define HTTPD_MAX_CONNS 64       /* at once, all clients (threads) */
#define HTTPD_MAX_PER_IP 16      /* at once, one client address */
#define HTTPD_TIMEOUT_S 10       /* idle connection */
#define HTTPD_MEMORY (32 * 1024) /* per connection: request line + headers */
#define HTTPD_MAX_BODY 4096 /* no endpoint takes a body; cap what is read */

struct httpd {
  struct MHD_Daemon *d;
  char *token;
  const char *const *open_paths;
  httpd_handler handler;
  void *arg;
  unsigned port;
};

struct httpd_request {
  struct MHD_Connection *conn;
  const char *method, *path;
};

/* Per-connection state while a body arrives. */
struct upload {
  size_t bytes;
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

static enum MHD_Result send_reply(struct MHD_Connection *conn,
                                  struct httpd_reply *rp) {
  const char *body = rp->body ? rp->body : "";
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  enum MHD_Result ret;

  free(rp->body);
  rp->body = NULL;
  if (!r)
    return MHD_NO;
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
  if (rp->status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"connhost\"");
  ret = MHD_queue_response(conn, (unsigned)rp->status, r);
  MHD_destroy_response(r);
  return ret;
}

static void reply_text(struct httpd_reply *rp, int status, const char *text) {
  rp->status = status;
  rp->body = strdup(text);
}

static int path_open(const struct httpd *h, const char *path) {
  for (size_t i = 0; h->open_paths && h->open_paths[i]; i++) {
    if (strcmp(h->open_paths[i], path) == 0)
      return 1;
  }
  return 0;
}

static int authorized(const struct httpd *h, struct MHD_Connection *conn,
                      const char *path) {
  const char *auth;

  if (!h->token || path_open(h, path))
    return 1;
  auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  if (!auth || strncmp(auth, "Bearer ", 7) != 0)
    return 0;
  return httpd_secret_equal(auth + 7, h->token);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *data,
                                  size_t *data_size, void **con_cls) {
  struct httpd *h = cls;
  struct upload *up = *con_cls;
  struct httpd_reply rp = {0};
  struct httpd_request rq = {conn, method, url};

  if (!up) {
    /* First call: headers only. Keep a counter for the body. */
    up = calloc(1, sizeof(*up));
    if (!up)
      return MHD_NO;
    *con_cls = up;
    return MHD_YES;
  }
  if (*data_size) {
    up->bytes += *data_size;
    *data_size = 0;
    if (up->bytes > HTTPD_MAX_BODY) {
      reply_text(&rp, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
      return send_reply(conn, &rp);
    }
    return MHD_YES;
  }
  if (up->bytes > HTTPD_MAX_BODY)
    return MHD_YES; /* already answered */
  if (!authorized(h, conn, url)) {
    reply_text(
        &rp, MHD_HTTP_UNAUTHORIZED,
        "unauthorized: send 'Authorization: Bearer <serve.auth_token>'\n");
    return send_reply(conn, &rp);
  }
  h->handler(h->arg, &rq, &rp);
  if (!rp.status)
    rp.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
  return send_reply(conn, &rp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
  free(*con_cls);
  *con_cls = NULL;
}

/* libmicrohttpd's own complaints (bad requests, limits) at debug. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  log_vmsg("httpd", CH_LOG_DEBUG, fmt, ap);
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
      MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
  if (!h->d) {
    free(h->token);
    free(h);
    return ch_err_set(err, CH_E_CONFIG,
                      "cannot listen on '%s' (in use, or not an address of "
                      "this host)",
                      conf->listen);
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
  MHD_stop_daemon(h->d);
  if (h->token) {
    volatile char *v = h->token;
    while (*v)
      *v++ = 0;
  }
  free(h->token);
  free(h);
}
