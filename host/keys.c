/* SPDX-License-Identifier: MIT */
/* Printed resource and entitlement keys: percent-encoding and parsing. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "util.h"

static const char hexdig[] = "0123456789ABCDEF";

size_t key_utf8_seq(const unsigned char *s, size_t avail) {
  unsigned char c = s[0];
  size_t n, i;
  uint32_t cp;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0; /* continuation byte, overlong lead (c0, c1) or > U+10FFFF */
  }
  if (avail < n)
    return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  /* Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF
     so that every accepted sequence is the one canonical spelling. */
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

int key_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;

  while (i < len) {
    size_t n;
    /* ASCII, most of every text, eight bytes at a time */
    for (; i + 8 <= len; i += 8) {
      uint64_t v;
      memcpy(&v, p + i, 8);
      if (v & 0x8080808080808080u)
        break;
    }
    if (i >= len)
      break;
    n = key_utf8_seq(p + i, len - i);
    if (!n)
      return 0;
    i += n;
  }
  return 1;
}

static int key_special(unsigned char c) {
  return c == '%' || c == '/' || c == '#' || c < 0x20 || c == 0x7f;
}

/*
 * Encode `in` into `out` (which has room for key_enclen(in) bytes), or only
 * measure when `out` is NULL. Bytes that are not part of a well-formed UTF-8
 * sequence are encoded too, so a key is always valid UTF-8 (and valid JSON
 * text) while decoding still gives back the exact bytes.
 */
static size_t key_enc(const char *in, char *out) {
  const unsigned char *p = (const unsigned char *)in;
  size_t len = strlen(in);
  size_t i = 0, o = 0;

  while (i < len) {
    size_t n = p[i] < 0x80 ? 1 : key_utf8_seq(p + i, len - i);
    if (!n || (n == 1 && key_special(p[i]))) {
      if (out) {
        out[o] = '%';
        out[o + 1] = hexdig[p[i] >> 4];
        out[o + 2] = hexdig[p[i] & 0xf];
      }
      o += 3;
      i++;
      continue;
    }
    if (out)
      memcpy(out + o, p + i, n);
    o += n;
    i += n;
  }
  return o;
}

size_t key_encode_to(const char *component, char *out) {
  return key_enc(component, out);
}

char *key_encode(const char *component) {
  size_t n = key_enc(component, NULL);
  char *out = malloc(n + 1);

  if (!out)
    return NULL;
  key_enc(component, out);
  out[n] = '\0';
  return out;
}

char *key_resource(const char *tenant, const char *instance, const char *type,
                   const char *id) {
  const char *parts[4] = {tenant, instance, type, id};
  size_t n = 3, i, o = 0;
  char *out;

  for (i = 0; i < 4; i++)
    n += key_enc(parts[i], NULL);
  out = malloc(n + 1);
  if (!out)
    return NULL;
  for (i = 0; i < 4; i++) {
    if (i)
      out[o++] = '/';
    o += key_enc(parts[i], out + o);
  }
  out[o] = '\0';
  return out;
}

char *key_entitlement(const char *resource_key, const char *slug) {
  size_t rl = strlen(resource_key);
  size_t n = rl + 1 + key_enc(slug, NULL);
  char *out = malloc(n + 1);

  if (!out)
    return NULL;
  memcpy(out, resource_key, rl);
  out[rl] = '#';
  key_enc(slug, out + rl + 1);
  out[n] = '\0';
  return out;
}

/* Decode `in[0..len)` into a new string; `what` names the part in errors. */
static int key_dec(const char *in, size_t len, const char *what, char **out,
                   struct ch_err *err) {
  char *s;
  size_t i, o = 0;

  if (!len)
    return ch_err_set(err, CH_E_INVALID, "invalid key: empty %s", what);
  s = malloc(len + 1);
  if (!s)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    int hi, lo;
    if (c < 0x20 || c == 0x7f) {
      free(s);
      return ch_err_set(err, CH_E_INVALID,
                        "invalid key: raw control byte 0x%02x in %s (write "
                        "it as %%%02X)",
                        c, what, c);
    }
    if (c != '%') {
      s[o++] = (char)c;
      continue;
    }
    hi = i + 2 < len ? util_hexval(in[i + 1]) : -1;
    lo = hi >= 0 ? util_hexval(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      free(s);
      return ch_err_set(err, CH_E_INVALID,
                        "invalid key: '%%' in %s is not followed by two hex "
                        "digits",
                        what);
    }
    if (!hi && !lo) {
      free(s);
      return ch_err_set(err, CH_E_INVALID, "invalid key: %%00 in %s", what);
    }
    s[o++] = (char)(hi * 16 + lo);
    i += 2;
  }
  s[o] = '\0';
  /* "." and ".." would be dot segments in a URL path: a revoke of user
     ".." would address the group itself. No real id is only dots. */
  if (!s[strspn(s, ".")]) {
    free(s);
    return ch_err_set(err, CH_E_INVALID,
                      "invalid key: the %s is only dots (no resource has "
                      "such an id)",
                      what);
  }
  *out = s;
  return CH_OK;
}

void key_parts_release(struct key_parts *p) {
  if (!p)
    return;
  free(p->tenant);
  free(p->instance);
  free(p->type);
  free(p->id);
  free(p->slug);
  memset(p, 0, sizeof(*p));
}

int key_parse(const char *key, int want_slug, struct key_parts *out,
              struct ch_err *err) {
  static const char *const names[4] = {"tenant", "instance", "type", "id"};
  char **dst[4];
  const char *hash, *p, *end;
  int result = CH_E_INVALID;
  int i;

  memset(out, 0, sizeof(*out));
  dst[0] = &out->tenant;
  dst[1] = &out->instance;
  dst[2] = &out->type;
  dst[3] = &out->id;
  if (!key || !*key) {
    ch_err_set(err, CH_E_INVALID, "empty key");
    goto out;
  }
  /* '#' and '/' are always encoded inside components, so the raw ones are
     separators and splitting the printed form is unambiguous. */
  hash = strchr(key, '#');
  if (hash && strchr(hash + 1, '#')) {
    ch_err_set(err, CH_E_INVALID,
               "invalid key '%.200s': more than one '#' (write '#' inside a "
               "component as %%23)",
               key);
    goto out;
  }
  if (want_slug && !hash) {
    ch_err_set(err, CH_E_INVALID,
               "invalid entitlement key '%.200s': expected "
               "tenant/instance/type/id#slug",
               key);
    goto out;
  }
  if (!want_slug && hash) {
    ch_err_set(err, CH_E_INVALID,
               "invalid resource key '%.200s': unexpected '#' (expected "
               "tenant/instance/type/id)",
               key);
    goto out;
  }
  end = hash ? hash : key + strlen(key);
  p = key;
  for (i = 0; i < 4; i++) {
    const char *sep = i < 3 ? memchr(p, '/', (size_t)(end - p)) : end;
    if (!sep || (i == 3 && memchr(p, '/', (size_t)(end - p)))) {
      ch_err_set(err, CH_E_INVALID,
                 "invalid key '%.200s': expected tenant/instance/type/id "
                 "(write '/' inside a component as %%2F)",
                 key);
      goto out;
    }
    result = key_dec(p, (size_t)(sep - p), names[i], dst[i], err);
    if (result)
      goto out;
    result = CH_E_INVALID;
    p = sep + 1;
  }
  if (hash) {
    result = key_dec(hash + 1, strlen(hash + 1), "slug", &out->slug, err);
    if (result)
      goto out;
  }
  result = CH_OK;
out:
  if (result)
    key_parts_release(out);
  return result;
}
