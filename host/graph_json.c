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
    } else if (util_grow(&w->buf, &w->cap, w->len + n, 1)) {
      w->failed = -1;
      return;
    }
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
}

static void jw_put_piece(void *w, const char *s, size_t n) { jw_put(w, s, n); }

void jw_strn(struct jw *w, const char *s, size_t n) {
  size_t i = 0;

  /* Nearly every string is plain: one copy instead of the escaper's
     pieces. */
  while (i < n && json_plain_byte((unsigned char)s[i]))
    i++;
  jw_lit(w, "\"");
  if (i == n)
    jw_put(w, s, n);
  else
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

/* ---- profiles: the fast path -------------------------------------------- */

/*
 * Most profiles are flat objects the SDK built (strings without escapes,
 * booleans, small integers): canonicalizing those needs no tree. The fast
 * path accepts only a subset of JSON where its output is sure to be the
 * tree path's byte for byte, and declines everything else, valid or not,
 * so the tree path (json-c) stays the one that decides what is wrong:
 * - strings without a backslash or a control byte (their bytes are their
 *   value; the caller checked the whole text is UTF-8);
 * - integers of at most 18 digits in canonical spelling (no "-0"), which
 *   json-c prints back as written;
 * - true, false, null; whitespace of " \t\n\r";
 * - objects of at most FAST_MEMBERS members with distinct keys, nesting
 *   at most FAST_DEPTH deep.
 */
#define FAST_MEMBERS 64
#define FAST_DEPTH 8

struct fmember {
  const char *k, *v; /* the key's bytes; where its value's text starts */
  size_t klen;
};

static int cmp_fmember(const void *a, const void *b) {
  const struct fmember *x = a, *y = b;
  int c = memcmp(x->k, y->k, x->klen < y->klen ? x->klen : y->klen);
  return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static const char *fast_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  return p;
}

/* The end of the plain string whose quote is at p, or NULL. */
static const char *fast_str(const char *p) {
  for (p++; *p != '"'; p++) {
    if ((unsigned char)*p < 0x20 || *p == '\\')
      return NULL; /* escapes, control bytes and the text's end */
  }
  return p + 1;
}

/* Emit the value whose text starts at p (no whitespace before it) to `w`
   (NULL: only check it); returns the end of its text, or NULL to decline. */
static const char *fast_value(const char *p, int depth, struct jw *w) {
  struct fmember m[FAST_MEMBERS];
  const char *q;
  size_t n = 0, i;

  switch (*p) {
  case '"':
    if (!(q = fast_str(p)))
      return NULL;
    if (w)
      jw_strn(w, p + 1, (size_t)(q - p - 2));
    return q;
  case 't':
  case 'f':
  case 'n':
    n = *p == 'f' ? 5 : 4;
    if (strncmp(p, *p == 't' ? "true" : *p == 'f' ? "false" : "null", n))
      return NULL;
    if (w)
      jw_put(w, p, n);
    return p + n;
  case '[':
    if (depth >= FAST_DEPTH)
      return NULL;
    if (w)
      jw_lit(w, "[");
    p = fast_ws(p + 1);
    if (*p != ']') {
      for (;;) {
        if (!(p = fast_value(p, depth + 1, w)))
          return NULL;
        p = fast_ws(p);
        if (*p == ']')
          break;
        if (*p != ',')
          return NULL;
        if (w)
          jw_lit(w, ",");
        p = fast_ws(p + 1);
      }
    }
    if (w)
      jw_lit(w, "]");
    return p + 1;
  case '{':
    if (depth >= FAST_DEPTH)
      return NULL;
    p = fast_ws(p + 1);
    if (*p != '}') {
      for (;;) {
        if (n == FAST_MEMBERS || *p != '"' || !(q = fast_str(p)))
          return NULL;
        m[n].k = p + 1;
        m[n].klen = (size_t)(q - p - 2);
        p = fast_ws(q);
        if (*p != ':')
          return NULL;
        m[n].v = p = fast_ws(p + 1);
        if (!(p = fast_value(p, depth + 1, NULL)))
          return NULL;
        n++;
        p = fast_ws(p);
        if (*p == '}')
          break;
        if (*p != ',')
          return NULL;
        p = fast_ws(p + 1);
      }
    }
    q = p + 1;
    if (!w)
      return q;
    gr_sort(m, n, sizeof(*m), cmp_fmember);
    for (i = 1; i < n; i++) {
      if (!cmp_fmember(&m[i - 1], &m[i]))
        return NULL; /* a repeated key: json-c keeps the last */
    }
    jw_lit(w, "{");
    for (i = 0; i < n; i++) {
      if (i)
        jw_lit(w, ",");
      jw_strn(w, m[i].k, m[i].klen);
      jw_lit(w, ":");
      if (!fast_value(m[i].v, depth + 1, w))
        return NULL; /* a repeated key deeper down */
    }
    jw_lit(w, "}");
    return q;
  default:
    break;
  }
  /* a number */
  q = p;
  if (*q == '-')
    q++;
  if (*q == '0') {
    q++;
    if (q - p == 2)
      return NULL; /* -0: json-c prints 0 */
  } else if (*q >= '1' && *q <= '9') {
    while (*q >= '0' && *q <= '9')
      q++;
  } else {
    return NULL;
  }
  if (q - p > 18 || *q == '.' || *q == 'e' || *q == 'E' ||
      (*q >= '0' && *q <= '9'))
    return NULL;
  if (w)
    jw_put(w, p, (size_t)(q - p));
  return q;
}

int gr_profile_canon_fast(const char *text, size_t len, struct jw *w) {
  /* text[len] is its NUL: every scan below stops there */
  const char *p = fast_ws(text);

  if (*p != '{' || !(p = fast_value(p, 0, w)) ||
      (size_t)(fast_ws(p) - text) != len)
    return 0;
  return !w->failed;
}

/* Parse a plugin's profile text and return its canonical form (malloc'd)
   in *out, or CH_E_INVALID with the reason in `why`. */
int gr_profile_canon(const char *text, char **out, char *why, size_t whysz) {
  size_t len = strlen(text);
  struct jw w = {0};

  *out = NULL;
  /* the canonical text is seldom longer than the plugin's: one malloc */
  if (len <= PROFILE_MAX && key_utf8_valid(text, len) &&
      !util_grow(&w.buf, &w.cap, len + 1, 1) &&
      gr_profile_canon_fast(text, len, &w)) {
    jw_put(&w, "", 1);
    if (!w.failed) {
      *out = w.buf;
      return CH_OK;
    }
  }
  free(w.buf);
  return gr_profile_canon_tree(text, out, why, whysz);
}

/* The same through a json-c tree: every profile the fast path declines,
   and so every error's words. */
int gr_profile_canon_tree(const char *text, char **out, char *why,
                          size_t whysz) {
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
