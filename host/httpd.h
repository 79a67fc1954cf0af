/* SPDX-License-Identifier: MIT */
/* The HTTP listener of `serve` and `explore` (libmicrohttpd): bounded
   requests, concurrent connections, optional bearer token, one handler
   callback. */
#ifndef CONNHOST_HTTPD_H
#define CONNHOST_HTTPD_H

#include <stddef.h>

#include <connhost/plugin.h>

#define HTTPD_DEFAULT_LISTEN "127.0.0.1:9464"
/* The most query arguments of a request (more are refused with 400). */
#define HTTPD_MAX_ARGS 64

struct httpd;
struct httpd_request;

/* What a handler answers; `body` is malloc'd (the listener frees it). */
struct httpd_reply {
  int status;
  const char *content_type; /* default "text/plain; charset=utf-8" */
  const char *allow;        /* the Allow header of a 405 */
  char *body;
  char *link; /* the Link header (RFC 8288), or NULL; freed with body */
};

/* Called on the request's connection thread, several at once: must be
   thread-safe; it may take its time (other requests go on). */
typedef void (*httpd_handler)(void *arg, const struct httpd_request *rq,
                              struct httpd_reply *rp);

struct httpd_conf {
  const char *listen; /* "ADDR:PORT", "[V6]:PORT" or "localhost:PORT" */
  /* Bearer token every request needs, or NULL: then only a Host naming
     loopback or the listen address is answered (no DNS rebinding). With
     or without, a POST whose Origin is not the listener's gets 403. */
  const char *token;
  const char *const *open_paths; /* paths served without the token */
  /* With a token: where a browser signs in. A POST there with the form
     field token=... sets a session cookie (HttpOnly, SameSite=Strict,
     12 h) that stands for the token on GET and HEAD; a browser's GET
     without either is sent there. NULL: no sign-in. */
  const char *login_path;
  httpd_handler handler;
  void *arg;
};

/*
 * Parse `listen` and say whether it is a loopback address (127.0.0.0/8,
 * ::1, localhost). Returns CH_OK or CH_E_CONFIG with a message.
 */
int httpd_listen_is_loopback(const char *listen, int *loopback,
                             struct ch_err *err);

/* Start listening (a non-loopback address without a token is refused).
   Returns CH_OK with *out set, or an error naming the address. */
int httpd_start(const struct httpd_conf *conf, struct httpd **out,
                struct ch_err *err);
/* The port actually bound (useful with port 0). */
unsigned httpd_port(const struct httpd *h);
/* Stop listening and close every connection; accepts NULL. */
void httpd_stop(struct httpd *h);

const char *httpd_method(const struct httpd_request *rq);
const char *httpd_path(const struct httpd_request *rq);
/* A query argument, or NULL. */
const char *httpd_query(const struct httpd_request *rq, const char *name);
/* Call `fn` with each query argument, in the order of the URL, decoded
   (`value` NULL for an argument without '='). */
void httpd_query_each(const struct httpd_request *rq,
                      void (*fn)(void *arg, const char *name,
                                 const char *value),
                      void *arg);

/* Where the JSON API lives: every answer under it is JSON, an error
   {"error": "..."} (the listener's own refusals included). */
#define HTTPD_API_PREFIX "/api/v1/"
/* 1 when `path` is under HTTPD_API_PREFIX. */
int httpd_is_api(const char *path);
/* Answer `status` with the message (printf-style; a final newline
   dropped) as {"error": "..."}. */
void httpd_reply_error(struct httpd_reply *rp, int status, const char *fmt, ...)
    CH_PRINTF(3, 4);

/* Compare two secrets in time that depends only on their lengths' maximum,
   not on where they differ. 1 when equal. */
int httpd_secret_equal(const char *a, const char *b);

#endif
