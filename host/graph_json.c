/* SPDX-License-Identifier: MIT */
/* The graph's JSON writer (buffered, fixed key order and escaping) and
   the canonical form of plugin profiles. */
#include "autoconfig.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "graph_int.h"

void jw_flush(struct jw *w) {
  if (w->f && w->len && !w->failed) {
    errno = 0;
    if (fwrite(w->buf, 1, w->len, w->f) != w->len)
      w->failed = errno ? errno : EIO;
  }
  w->len = 0;
}

void jw_put_slow(struct jw *w, const char *s, size_t n) {
  if (w->failed || !n)
    return;
  if (w->len + n > w->cap) {
    if (w->f) {
      jw_flush(w);
      if (n > w->cap) {
        errno = 0;
        if (!w->failed && fwrite(s, 1, n, w->f) != n)
          w->failed = errno ? errno : EIO;
        return;
      }
    } else if (gr_grow(&w->buf, &w->cap, w->len + n, 1)) {
      w->failed = -1;
      return;
    }
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
}

static void jw_put_piece(void *w, const char *s, size_t n) { jw_put(w, s, n); }

void jw_strn(struct jw *w, const char *s, size_t n) {
  jw_lit(w, "\"");
  json_escape(s, n, jw_put_piece, w); /* the host's one JSON string rule */
  jw_lit(w, "\"");
}

void jw_str(struct jw *w, const char *s) { jw_strn(w, s, strlen(s)); }

/* A printed key. Keys never hold control bytes (they are percent-encoded),
   so most need no escaping at all: `plain` was worked out once. */
void jw_k(struct jw *w, const char *key, uint32_t len, int plain) {
  if (!plain) {
    jw_strn(w, key, len);
    return;
  }
  jw_lit(w, "\"");
  jw_put(w, key, len);
  jw_lit(w, "\"");
}

int gr_key_plain(const char *k, uint32_t *len) {
  size_t n = strlen(k);

  *len = (uint32_t)n;
  return !memchr(k, '"', n) && !memchr(k, '\\', n);
}

void jw_u64(struct jw *w, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof(b), "%" PRIu64, v);
  jw_put(w, b, (size_t)n);
}

/* `,"name":` (or without the comma for the first field) */
void jw_key(struct jw *w, const char *name, int first) {
  if (!first)
    jw_lit(w, ",");
  jw_str(w, name);
  jw_lit(w, ":");
}

void jw_field_str(struct jw *w, const char *name, const char *v) {
  jw_key(w, name, 0);
  jw_str(w, v ? v : "");
}

void jw_strlist(struct jw *w, const char *name, const char *const *v,
                size_t n) {
  size_t i;

  jw_key(w, name, 0);
  jw_lit(w, "[");
  for (i = 0; i < n; i++) {
    if (i)
      jw_lit(w, ",");
    jw_str(w, v[i]);
  }
  jw_lit(w, "]");
}

/* ---- profiles: parse, check, emit canonically ---------------------------- */

struct kv {
  const char *k;
  struct json_object *v;
};

static int cmp_kv(const void *a, const void *b) {
  return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* Emit `o` with object keys sorted by byte order. Returns NULL or a
   description of what is wrong. */
static const char *jw_canon(struct jw *w, struct json_object *o) {
  const char *why = NULL;
  struct kv *kvs = NULL;
  const char *s;
  size_t i, n;

  switch (json_object_get_type(o)) {
  case json_type_null:
    jw_lit(w, "null");
    break;
  case json_type_boolean:
    if (json_object_get_boolean(o))
      jw_lit(w, "true");
    else
      jw_lit(w, "false");
    break;
  case json_type_double:
    if (!isfinite(json_object_get_double(o)))
      return "a number is not finite";
    /* fall through */
  case json_type_int:
    /* json-c keeps the number's original spelling: same text in, same
       bytes out. */
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    jw_put(w, s, strlen(s));
    break;
  case json_type_string:
    s = json_object_get_string(o);
    n = (size_t)json_object_get_string_len(o);
    if (!key_utf8_valid(s, n))
      return "a string is not valid UTF-8";
    jw_strn(w, s, n);
    break;
  case json_type_array:
    n = json_object_array_length(o);
    jw_lit(w, "[");
    for (i = 0; i < n && !why; i++) {
      if (i)
        jw_lit(w, ",");
      why = jw_canon(w, json_object_array_get_idx(o, i));
    }
    jw_lit(w, "]");
    break;
  case json_type_object:
    n = (size_t)json_object_object_length(o);
    if (n) {
      kvs = calloc(n, sizeof(*kvs));
      if (!kvs)
        return "out of memory";
    }
    i = 0;
    {
      json_object_object_foreach(o, k, v) {
        kvs[i].k = k;
        kvs[i].v = v;
        i++;
      }
    }
    gr_sort(kvs, n, sizeof(*kvs), cmp_kv);
    jw_lit(w, "{");
    for (i = 0; i < n && !why; i++) {
      if (!key_utf8_valid(kvs[i].k, strlen(kvs[i].k))) {
        why = "an object key is not valid UTF-8";
        break;
      }
      jw_key(w, kvs[i].k, i == 0);
      why = jw_canon(w, kvs[i].v);
    }
    jw_lit(w, "}");
    free(kvs);
    break;
  }
  return why;
}

/* Parse a plugin's profile text and return its canonical form (malloc'd)
   in *out, or CH_E_INVALID with the reason in `why`. */
int gr_profile_canon(const char *text, char **out, char *why, size_t whysz) {
  struct json_tokener *tok = NULL;
  struct json_object *o = NULL;
  struct jw w = {0};
  const char *bad;
  size_t len = strlen(text), end;
  int result = CH_E_INVALID;

  *out = NULL;
  if (len > PROFILE_MAX) {
    snprintf(why, whysz, "profile is larger than %d bytes", PROFILE_MAX);
    goto out;
  }
  if (!key_utf8_valid(text, len)) {
    snprintf(why, whysz, "profile is not valid UTF-8");
    goto out;
  }
  tok = json_tokener_new();
  if (!tok) {
    result = CH_E_NOMEM;
    snprintf(why, whysz, "out of memory");
    goto out;
  }
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  o = json_tokener_parse_ex(tok, text, (int)len);
  if (!o || json_tokener_get_error(tok) != json_tokener_success) {
    enum json_tokener_error e = json_tokener_get_error(tok);
    snprintf(why, whysz, "profile is not valid JSON: %s",
             e == json_tokener_continue ? "unexpected end of text"
                                        : json_tokener_error_desc(e));
    goto out;
  }
#if JSON_C_VERSION_NUM >= ((0 << 16) | (15 << 8))
  end = json_tokener_get_parse_end(tok);
#else
  end = (size_t)tok->char_offset;
#endif
  for (; end < len; end++) {
    if (!strchr(" \t\r\n", text[end])) {
      snprintf(why, whysz, "profile has text after the JSON value");
      goto out;
    }
  }
  if (!json_object_is_type(o, json_type_object)) {
    snprintf(why, whysz, "profile is not a JSON object");
    goto out;
  }
  bad = jw_canon(&w, o);
  jw_put(&w, "", 1);
  if (bad || w.failed) {
    snprintf(why, whysz, "profile: %s", bad ? bad : "out of memory");
    result = bad ? CH_E_INVALID : CH_E_NOMEM;
    goto out;
  }
  *out = w.buf;
  w.buf = NULL;
  result = CH_OK;
out:
  free(w.buf);
  json_object_put(o);
  if (tok)
    json_tokener_free(tok);
  return result;
}
