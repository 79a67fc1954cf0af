/* SPDX-License-Identifier: MIT */
/* The plugin SDK (libconnhost-sdk): JSON over the host HTTP service, a
   growable string, page tokens. Built with nothing but the installed
   headers, so it is what an out-of-tree plugin links too. */
#define _POSIX_C_SOURCE 200809L /* strdup, in place of autoconfig.h */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <connhost/sdk.h>

#include "jdoc_int.h"

const struct ch_opt_value *pj_opt(const struct ch_cfg *cfg,
                                  const struct ch_option *table,
                                  const char *name) {
  return ch_opt_get(cfg, table, name);
}

const char *pj_opt_str(const struct ch_cfg *cfg, const struct ch_option *table,
                       const char *name, const char *def) {
  const struct ch_opt_value *v = ch_opt_get(cfg, table, name);
  return v && v->str ? v->str : def;
}

long long pj_opt_num(const struct ch_cfg *cfg, const struct ch_option *table,
                     const char *name, long long def) {
  const struct ch_opt_value *v = ch_opt_get(cfg, table, name);
  return v ? v->num : def;
}

static int buf_grow(struct pj_buf *b, size_t more) {
  size_t need = b->len + more + 1;
  char *s;

  if (need <= b->cap)
    return CH_OK;
  size_t cap = b->cap ? b->cap : 128;
  while (cap < need)
    cap *= 2;
  s = realloc(b->s, cap);
  if (!s)
    return CH_E_NOMEM;
  b->s = s;
  b->cap = cap;
  return CH_OK;
}

int pj_buf_addn(struct pj_buf *b, const char *s, size_t n) {
  if (buf_grow(b, n))
    return CH_E_NOMEM;
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
  return CH_OK;
}

int pj_buf_add(struct pj_buf *b, const char *s) {
  return pj_buf_addn(b, s, strlen(s));
}

int pj_buf_addf(struct pj_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_grow(b, (size_t)n))
    return CH_E_NOMEM;
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return CH_OK;
}

int pj_buf_add_enc(struct pj_buf *b, const struct ch_host *host,
                   const char *s) {
  size_t n = host->url_encode(s, NULL, 0);
  if (buf_grow(b, n))
    return CH_E_NOMEM;
  host->url_encode(s, b->s + b->len, n + 1);
  b->len += n;
  return CH_OK;
}

void pj_buf_free(struct pj_buf *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

static json_object *parse_json(const char *text, size_t len, const char **why) {
  struct json_tokener *tok = json_tokener_new();
  json_object *o;

  if (!tok) {
    *why = "out of memory";
    return NULL;
  }
  o = json_tokener_parse_ex(tok, text, (int)len);
  if (!o) {
    enum json_tokener_error e = json_tokener_get_error(tok);
    /* A body that stops mid-document is still "continue": truncated. */
    *why = e == json_tokener_continue ? "truncated document"
                                      : json_tokener_error_desc(e);
  } else if (json_tokener_get_parse_end(tok) < len) {
    size_t end = json_tokener_get_parse_end(tok);
    while (end < len && strchr(" \t\r\n", text[end]))
      end++;
    if (end < len) {
      json_object_put(o);
      o = NULL;
      *why = "trailing data after the document";
    }
  }
  json_tokener_free(tok);
  return o;
}

/* Where an answer goes: a json-c tree, a pj_doc, or nowhere. */
struct answer {
  json_object **tree;
  struct pj_doc **doc;
};

/* Invalid UTF-8 in an answer is read as U+FFFD (sdk.h): say so, since the
   names it was in now differ from what the server holds. */
static void tell_replaced(const struct pj_client *c, const char *what,
                          size_t n) {
  if (n)
    c->host->log(c->hc, CH_LOG_WARN,
                 "%s: the answer is not valid UTF-8: %zu invalid byte "
                 "sequence(s) read as U+FFFD",
                 what, n);
}

static int parse_answer(const struct pj_client *c, struct ch_http_resp *resp,
                        const struct answer *a, const char *what,
                        const char **why) {
  json_object *o;
  char *clean = NULL;
  size_t clen, bad;
  int rc;

  if (a->doc) {
    rc = pj_doc_take(c->host, resp, a->doc, why);
    if (!rc)
      tell_replaced(c, what, pj_doc_replaced(*a->doc));
    return rc;
  }
  if (pj_utf8_scrub(resp->body, resp->body_len, &clean, &clen, &bad)) {
    *why = "out of memory";
    return CH_E_NOMEM;
  }
  o = parse_json(clean ? clean : resp->body, clen, why);
  free(clean);
  if (o)
    tell_replaced(c, what, bad);
  if (a->tree)
    *a->tree = o;
  else
    json_object_put(o);
  return o ? CH_OK : CH_E_PROTOCOL;
}

static void drop_answer(const struct answer *a) {
  if (a->tree) {
    json_object_put(*a->tree);
    *a->tree = NULL;
  }
  if (a->doc) {
    pj_doc_free(*a->doc);
    *a->doc = NULL;
  }
}

static int request_once(const struct pj_client *c, const char *route,
                        const char *method, const char *url, json_object *body,
                        unsigned flags, const char *what, long *status,
                        const struct answer *a, struct ch_err *err) {
  struct ch_http_req req = {0};
  struct ch_http_resp resp = {0};
  const char *why = NULL;
  int rc, prc = CH_OK;

  if (a->tree)
    *a->tree = NULL;
  if (a->doc)
    *a->doc = NULL;
  *status = 0;
  req.method = method;
  req.url = url;
  req.basic_user = c->basic_user;
  req.basic_secret = c->basic_secret;
  req.bearer = c->bearer;
  req.flags = flags;
  req.route = route;
  if (body) {
    req.body = json_object_to_json_string_ext(
        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    req.body_len = strlen(req.body);
  }
  rc = c->host->http(c->hc, &req, &resp, err);
  if (rc != CH_OK)
    goto out;
  *status = resp.status;
  if (resp.dry_run)
    goto out;
  /* The error first: a pj_doc unescapes the body in place. */
  if (resp.status < 200 || resp.status > 299)
    rc = c->host->http_error(c->hc, &resp, what, err);
  /* A tree keeps an error body for the caller to inspect. */
  if (resp.body_len && (rc == CH_OK || a->tree))
    prc = parse_answer(c, &resp, a, what, &why);
  if (rc == CH_OK && prc == CH_E_NOMEM)
    rc = pj_nomem(err);
  else if (rc == CH_OK && prc)
    rc = ch_err_set(err, CH_E_PROTOCOL, "%s: malformed JSON: %s", what, why);
out:
  c->host->http_free(&resp);
  return rc;
}

/* Reads whose 2xx body did not parse are sent again this many times: a
   body cut short by a proxy is a transient fault, and a GET is safe to
   repeat. A server that always answers garbage still fails the op. */
#define BAD_BODY_RETRIES 2

static int request_retry(const struct pj_client *c, const char *route,
                         const char *method, const char *url, json_object *body,
                         unsigned flags, const char *what, long *status,
                         const struct answer *a, struct ch_err *err) {
  int rc, tries = 0;

  for (;;) {
    rc = request_once(c, route, method, url, body, flags, what, status, a, err);
    if (rc != CH_E_PROTOCOL || *status < 200 || *status > 299 ||
        strcmp(method, "GET") || tries++ >= BAD_BODY_RETRIES ||
        c->host->stopping(c->hc))
      return rc;
    c->host->log(c->hc, CH_LOG_WARN, "%s; sending the request again", err->msg);
    drop_answer(a);
  }
}

int pj_request(const struct pj_client *c, const char *method, const char *url,
               json_object *body, unsigned flags, const char *what,
               long *status, json_object **out, struct ch_err *err) {
  return pj_request_route(c, NULL, method, url, body, flags, what, status, out,
                          err);
}

int pj_request_route(const struct pj_client *c, const char *route,
                     const char *method, const char *url, json_object *body,
                     unsigned flags, const char *what, long *status,
                     json_object **out, struct ch_err *err) {
  struct answer a = {out, NULL};
  return request_retry(c, route, method, url, body, flags, what, status, &a,
                       err);
}

int pj_request_doc(const struct pj_client *c, const char *route,
                   const char *method, const char *url, json_object *body,
                   unsigned flags, const char *what, long *status,
                   struct pj_doc **out, struct ch_err *err) {
  struct answer a = {NULL, out};
  return request_retry(c, route, method, url, body, flags, what, status, &a,
                       err);
}

const char *pj_str(json_object *o, const char *key) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v) ||
      !json_object_is_type(v, json_type_string))
    return NULL;
  return json_object_get_string(v);
}

json_object *pj_arr(json_object *o, const char *key) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v) ||
      !json_object_is_type(v, json_type_array))
    return NULL;
  return v;
}

json_object *pj_obj(json_object *o, const char *key) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v) ||
      !json_object_is_type(v, json_type_object))
    return NULL;
  return v;
}

int pj_bool(json_object *o, const char *key, int def) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v) ||
      !json_object_is_type(v, json_type_boolean))
    return def;
  return json_object_get_boolean(v);
}

long long pj_int(json_object *o, const char *key, long long def) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v) ||
      !json_object_is_type(v, json_type_int))
    return def;
  return (long long)json_object_get_int64(v);
}

json_object *pj_token_decode(const char *token, struct ch_err *err) {
  json_object *o;
  const char *why = NULL;

  if (!token || !*token)
    return json_object_new_object();
  o = parse_json(token, strlen(token), &why);
  if (!o || !json_object_is_type(o, json_type_object)) {
    json_object_put(o);
    ch_err_set(err, CH_E_INVALID, "page token is not valid");
    return NULL;
  }
  return o;
}

const char *pj_json_text(json_object *o) {
  return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                               JSON_C_TO_STRING_NOSLASHESCAPE);
}

char *pj_base_url(const char *url) {
  char *c = strdup(url);
  size_t n;

  if (!c)
    return NULL;
  n = strlen(c);
  while (n > 0 && c[n - 1] == '/')
    c[--n] = '\0';
  return c;
}

int pj_nomem(struct ch_err *err) {
  return ch_err_set(err, CH_E_NOMEM, "out of memory");
}

int pj_cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int pj_valid_name(const char *s) {
  if (!s || !*s)
    return 0;
  for (; *s; s++) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  }
  return 1;
}
