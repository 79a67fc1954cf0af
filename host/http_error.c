/* SPDX-License-Identifier: MIT */
/* HTTP error messages: http_error()'s one-line summary of an error body
   (Jira, Atlassian Org, SCIM, OAuth shapes), redacted and cut safely. */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "graph.h"
#include "http_int.h"
#include "log.h"

#define TEXT_SUMMARY_MAX 120
/* Error bodies bigger than this are not worth parsing as JSON. */
#define ERROR_JSON_MAX (1024 * 1024)

/* Copy `n` bytes of `in` as one line: control bytes become spaces and runs
   of spaces collapse, so a body cannot forge extra log lines; a byte that
   is not UTF-8 becomes U+FFFD, so the line stays valid text (a JSON log
   line, an error in the store) whatever the server sent. Cut on a
   character boundary. */
void http_squash(const char *in, size_t n, char *out, size_t outsz) {
  const unsigned char *p = (const unsigned char *)in;
  size_t o = 0;
  int space = 1; /* also trims leading space */

  if (!outsz)
    return;
  for (size_t i = 0; i < n && in[i] && o + 1 < outsz;) {
    unsigned char ch = p[i];
    size_t k;
    if (ch < 0x20 || ch == 0x7f || ch == ' ') {
      if (!space)
        out[o++] = ' ';
      space = 1;
      i++;
      continue;
    }
    space = 0;
    k = ch < 0x80 ? 1 : key_utf8_seq(p + i, n - i);
    if (o + (k ? k : 3) >= outsz)
      break;
    if (k) {
      memcpy(out + o, in + i, k);
      o += k;
      i += k;
    } else {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    }
  }
  while (o > 0 && out[o - 1] == ' ')
    o--;
  out[o] = '\0';
}

/* Cut `s` to at most `max` bytes without splitting a UTF-8 sequence. */
void http_utf8_cut(char *s, size_t max) {
  size_t len = strlen(s);

  if (len <= max)
    return;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  s[max] = '\0';
}

/* Copy `src` into a message buffer, cutting on a UTF-8 boundary. */
void http_set_msg(char *dst, size_t dstsz, const char *src) {
  size_t n = strlen(src);

  if (n >= dstsz) {
    n = dstsz - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* ---- http_error ---- */

struct summary {
  char buf[WIDE_MSG_MAX];
  size_t len;
};

static void sum_add(struct summary *s, const char *sep, const char *text) {
  char flat[WIDE_MSG_MAX];
  int n;

  http_squash(text, strlen(text), flat, sizeof(flat));
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
  http_squash(p, len, s->buf, sizeof(s->buf));
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
      http_utf8_cut(sum, TEXT_SUMMARY_MAX);
      snprintf(raw, sizeof(raw), "%s: HTTP %ld: %s", what, resp->status, sum);
    } else {
      snprintf(raw, sizeof(raw), "%s: HTTP %ld", what, resp->status);
    }
  }
  log_redact(raw, clean, sizeof(clean));
  if (err) {
    err->code = code;
    http_set_msg(err->msg, sizeof(err->msg), clean);
  }
  return code;
}
