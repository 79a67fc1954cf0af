/* SPDX-License-Identifier: MIT */
/* The plugin test kit (see <connhost/testkit.h>). */
#define _POSIX_C_SOURCE                                                        \
  200809L /* strdup, getline, in place of autoconfig.h                         \
           */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <connhost/testkit.h>

struct route {
  char *method, *path, *file;
  long status;
};

struct ch_testkit {
  struct ch_host host;
  char *dir;
  struct route *routes;
  size_t nroutes;
  char **reqs, **bodies;
  size_t nreqs;
  char *log;
  size_t loglen;
};

/* The kit's handle is the kit itself. */
#define KIT(hc) ((struct ch_testkit *)(void *)(hc))

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;

  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
      fread(buf, 1, (size_t)n, f) == (size_t)n) {
    buf[n] = '\0';
    *len = (size_t)n;
  } else {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

static void kit_vlog(struct ch_hctx *hc, enum ch_log_level level,
                     const char *fmt, va_list ap) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  struct ch_testkit *tk = KIT(hc);
  char line[1024];
  int n = snprintf(line, sizeof(line), "%s: ", names[level & 3]);
  char *grown;

  vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  strcat(line, "\n");
  grown = realloc(tk->log, tk->loglen + strlen(line) + 1);
  if (!grown)
    return;
  tk->log = grown;
  memcpy(tk->log + tk->loglen, line, strlen(line) + 1);
  tk->loglen += strlen(line);
}

static void kit_log(struct ch_hctx *hc, enum ch_log_level level,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_vlog(hc, level, fmt, ap);
  va_end(ap);
}

static int kit_http_setup(struct ch_hctx *hc, const struct ch_http_conf *conf,
                          struct ch_err *err) {
  (void)hc;
  (void)conf;
  (void)err;
  return CH_OK;
}

/* "/path?query" of an absolute URL. */
static const char *url_path(const char *url) {
  const char *p = strstr(url, "://");
  p = p ? strchr(p + 3, '/') : NULL;
  return p ? p : "/";
}

static const struct route *match(const struct ch_testkit *tk,
                                 const char *method, const char *path) {
  size_t plen = strcspn(path, "?");

  for (size_t i = 0; i < tk->nroutes; i++) {
    const struct route *r = &tk->routes[i];
    if (strcmp(r->method, method) != 0)
      continue;
    if (strchr(r->path, '?')
            ? strcmp(r->path, path) == 0
            : strlen(r->path) == plen && strncmp(r->path, path, plen) == 0)
      return r;
  }
  return NULL;
}

static int record(struct ch_testkit *tk, const char *method, const char *path,
                  const struct ch_http_req *req) {
  size_t n = strlen(method) + strlen(path) + 2;
  char **reqs = realloc(tk->reqs, (tk->nreqs + 1) * sizeof(*reqs));
  char **bodies;

  if (!reqs)
    return CH_E_NOMEM;
  tk->reqs = reqs;
  bodies = realloc(tk->bodies, (tk->nreqs + 1) * sizeof(*bodies));
  if (!bodies)
    return CH_E_NOMEM;
  tk->bodies = bodies;
  reqs[tk->nreqs] = malloc(n);
  bodies[tk->nreqs] = req->body ? strndup(req->body, req->body_len) : NULL;
  if (!reqs[tk->nreqs])
    return CH_E_NOMEM;
  snprintf(reqs[tk->nreqs], n, "%s %s", method, path);
  tk->nreqs++;
  return CH_OK;
}

static int kit_http(struct ch_hctx *hc, const struct ch_http_req *req,
                    struct ch_http_resp *resp, struct ch_err *err) {
  struct ch_testkit *tk = KIT(hc);
  const char *method = req->method ? req->method : "GET";
  const char *path = url_path(req->url);
  const struct route *r = match(tk, method, path);
  char file[4096];

  memset(resp, 0, CH_HTTP_RESP_SIZE_V1);
  if (record(tk, method, path, req) != CH_OK)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  resp->status = r ? r->status : 404;
  if (r && strcmp(r->file, "-") != 0) {
    snprintf(file, sizeof(file), "%s/%s", tk->dir, r->file);
    resp->body = slurp(file, &resp->body_len);
    if (!resp->body)
      return ch_err_set(err, CH_E_IO, "testkit: cannot read %s", file);
    resp->content_type = strdup("application/json");
  }
  return CH_OK;
}

static void kit_http_free(struct ch_http_resp *resp) {
  if (!resp)
    return;
  free(resp->body);
  free(resp->content_type);
  memset(resp, 0, CH_HTTP_RESP_SIZE_V1);
}

static int kit_http_error(struct ch_hctx *hc, const struct ch_http_resp *resp,
                          const char *what, struct ch_err *err) {
  long s = resp->status;
  int code = s == 400               ? CH_E_INVALID
             : s == 401             ? CH_E_AUTH
             : s == 403             ? CH_E_PERM
             : s == 404             ? CH_E_NOTFOUND
             : s == 409             ? CH_E_CONFLICT
             : s == 429 || s >= 500 ? CH_E_RETRY
                                    : CH_E_PROTOCOL;
  (void)hc;
  return ch_err_set(err, code, "%s: HTTP %ld", what, s);
}

static size_t kit_url_encode(const char *in, char *out, size_t outsz) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;

  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
               (*p >= '0' && *p <= '9') || strchr("-._~", *p);
    char enc[4] = {(char)*p, 0, 0, 0};
    if (!keep) {
      enc[0] = '%';
      enc[1] = hex[*p >> 4];
      enc[2] = hex[*p & 15];
    }
    for (size_t i = 0; enc[i] && i < 3; i++, n++) {
      if (n + 1 < outsz)
        out[n] = enc[i];
    }
  }
  if (outsz)
    out[n < outsz ? n : outsz - 1] = '\0';
  return n;
}

static int kit_url_query_get(const char *url, const char *name, char *out,
                             size_t outsz) {
  const char *q = strchr(url, '?');
  size_t len = strlen(name);

  if (outsz)
    out[0] = '\0';
  while (q && *q) {
    q++;
    if (strncmp(q, name, len) == 0 && q[len] == '=') {
      size_t i = 0;
      for (q += len + 1; *q && *q != '&' && i + 1 < outsz; q++)
        out[i++] = *q; /* canned URLs carry no escapes worth decoding */
      out[i] = '\0';
      return 1;
    }
    q = strchr(q, '&');
  }
  return 0;
}

static int64_t kit_now_ms(void) { return (int64_t)time(NULL) * 1000; }
static int kit_no(struct ch_hctx *hc) {
  (void)hc;
  return 0;
}
static int kit_log_enabled(struct ch_hctx *hc, enum ch_log_level level) {
  (void)hc;
  (void)level;
  return 1;
}

static int load_routes(struct ch_testkit *tk) {
  char path[4096], *line = NULL;
  size_t cap = 0;
  FILE *f;
  int rc = 0;

  snprintf(path, sizeof(path), "%s/routes", tk->dir);
  f = fopen(path, "r");
  if (!f)
    return -1;
  while (getline(&line, &cap, f) > 0) {
    char m[16], p[2048], file[1024];
    long status;
    struct route *grown;

    if (line[0] == '#' ||
        sscanf(line, "%15s %2047s %ld %1023s", m, p, &status, file) != 4)
      continue;
    grown = realloc(tk->routes, (tk->nroutes + 1) * sizeof(*grown));
    if (!grown) {
      rc = -1;
      break;
    }
    tk->routes = grown;
    grown[tk->nroutes].method = strdup(m);
    grown[tk->nroutes].path = strdup(p);
    grown[tk->nroutes].file = strdup(file);
    grown[tk->nroutes].status = status;
    tk->nroutes++;
  }
  free(line);
  fclose(f);
  return rc;
}

struct ch_testkit *ch_testkit_new(const char *canned_dir) {
  struct ch_testkit *tk = calloc(1, sizeof(*tk));

  if (!tk || !(tk->dir = strdup(canned_dir)) || load_routes(tk) != 0) {
    ch_testkit_free(tk);
    return NULL;
  }
  tk->host = (struct ch_host){.abi = CH_PLUGIN_ABI,
                              .size = sizeof(struct ch_host),
                              .log = kit_log,
                              .vlog = kit_vlog,
                              .http_setup = kit_http_setup,
                              .http = kit_http,
                              .http_free = kit_http_free,
                              .http_error = kit_http_error,
                              .url_encode = kit_url_encode,
                              .url_query_get = kit_url_query_get,
                              .now_ms = kit_now_ms,
                              .stopping = kit_no,
                              .dry_run = kit_no,
                              .log_enabled = kit_log_enabled,
                              .sink_size = sizeof(struct ch_sink),
                              .cfg_size = sizeof(struct ch_cfg),
                              .change_size = sizeof(struct ch_change),
                              .account_size = sizeof(struct ch_account),
                              .result_size = sizeof(struct ch_result)};
  return tk;
}

void ch_testkit_free(struct ch_testkit *tk) {
  if (!tk)
    return;
  for (size_t i = 0; i < tk->nroutes; i++) {
    free(tk->routes[i].method);
    free(tk->routes[i].path);
    free(tk->routes[i].file);
  }
  for (size_t i = 0; i < tk->nreqs; i++) {
    free(tk->reqs[i]);
    free(tk->bodies[i]);
  }
  free(tk->routes);
  free(tk->reqs);
  free(tk->bodies);
  free(tk->log);
  free(tk->dir);
  free(tk);
}

const struct ch_host *ch_testkit_host(struct ch_testkit *tk) {
  return &tk->host;
}
struct ch_hctx *ch_testkit_hctx(struct ch_testkit *tk) {
  return (struct ch_hctx *)(void *)tk;
}
size_t ch_testkit_nrequests(const struct ch_testkit *tk) { return tk->nreqs; }
const char *ch_testkit_request(const struct ch_testkit *tk, size_t i) {
  return i < tk->nreqs ? tk->reqs[i] : NULL;
}
const char *ch_testkit_request_body(const struct ch_testkit *tk, size_t i) {
  return i < tk->nreqs ? tk->bodies[i] : NULL;
}
const char *ch_testkit_log(const struct ch_testkit *tk) {
  return tk->log ? tk->log : "";
}

/* ---- the recording sink ---------------------------------------------- */

static int sink_line(struct ch_testkit_sink *s, const char *fmt, ...)
    CH_PRINTF(2, 3);
static int sink_line(struct ch_testkit_sink *s, const char *fmt, ...) {
  char buf[2048];
  char **grown = realloc(s->lines, (s->nlines + 1) * sizeof(*grown));
  va_list ap;

  if (!grown)
    return 1;
  s->lines = grown;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  s->lines[s->nlines] = strdup(buf);
  if (!s->lines[s->nlines])
    return 1;
  s->nlines++;
  return 0;
}

static int rec_resource(struct ch_sink *sink, const struct ch_resource *r) {
  struct ch_testkit_sink *s = (struct ch_testkit_sink *)sink;
  s->nresources++;
  return sink_line(s, "resource %s %s %s", r->type, r->id,
                   r->display_name ? r->display_name : "");
}

static int rec_grant(struct ch_sink *sink, const struct ch_grant *g) {
  struct ch_testkit_sink *s = (struct ch_testkit_sink *)sink;
  s->ngrants++;
  return sink_line(s, "grant %s %s#%s %s %s", g->resource.type, g->resource.id,
                   g->slug, g->principal.type, g->principal.id);
}

static int rec_next(struct ch_sink *sink, const char *token) {
  struct ch_testkit_sink *s = (struct ch_testkit_sink *)sink;
  snprintf(s->next, sizeof(s->next), "%s", token ? token : "");
  return 0;
}

void ch_testkit_sink_init(struct ch_testkit_sink *s) {
  memset(s, 0, sizeof(*s));
  s->sink.resource = rec_resource;
  s->sink.grant = rec_grant;
  s->sink.next_page = rec_next;
}

void ch_testkit_sink_reset(struct ch_testkit_sink *s) {
  for (size_t i = 0; i < s->nlines; i++)
    free(s->lines[i]);
  s->nlines = s->nresources = s->ngrants = 0;
  s->next[0] = '\0';
}

void ch_testkit_sink_free(struct ch_testkit_sink *s) {
  ch_testkit_sink_reset(s);
  free(s->lines);
  s->lines = NULL;
}
