/* SPDX-License-Identifier: MIT */
/* URLs for the HTTP service: as shown in messages, the dot-segment
   check, percent-encoding and query lookup. */
#include "autoconfig.h"

#include <ctype.h>
#include <string.h>

#include "http_int.h"
#include "util.h"

/* The URL as errors and logs show it: no userinfo, no query, no fragment,
   and not too long. */
void http_shown_url(const char *url, char *out, size_t outsz) {
  const char *p = url, *scheme_end = strstr(url, "://");
  size_t o = 0;

  if (scheme_end) {
    const char *host = scheme_end + 3;
    const char *at = host + strcspn(host, "@/?#");
    size_t pre = (size_t)(host - url);
    if (*at == '@') {
      /* Drop "user:password@" but keep the scheme. */
      if (pre >= outsz)
        pre = outsz - 1;
      memcpy(out, url, pre);
      o = pre;
      p = at + 1;
    }
  }
  for (; *p && *p != '?' && *p != '#' && o + 1 < outsz; p++)
    out[o++] = *p;
  out[o] = '\0';
  if (o > SHOWN_URL_MAX && SHOWN_URL_MAX + 4 < outsz)
    memcpy(out + SHOWN_URL_MAX, "...", 4);
}

/* Whether the path of `url` has a "." or ".." segment, literal or
   percent-encoded: a resolver would collapse it, so `.../user/..` would
   address the parent (a revoke becoming a delete of the group). */
int http_has_dot_segment(const char *url) {
  const char *p = strstr(url, "://");

  p = p ? p + 3 : url;
  p += strcspn(p, "/?#"); /* past the authority */
  while (*p == '/') {
    size_t dots = 0, len;
    p++;
    len = strcspn(p, "/?#");
    for (size_t i = 0; i < len;) {
      if (p[i] == '.') {
        i++;
      } else if (p[i] == '%' && i + 2 < len && p[i + 1] == '2' &&
                 (p[i + 2] == 'e' || p[i + 2] == 'E')) {
        i += 3;
      } else {
        dots = 3; /* not only dots */
        break;
      }
      dots++;
    }
    if (len && (dots == 1 || dots == 2))
      return 1;
    p += len;
  }
  return 0;
}

size_t http_url_encode(const char *in, char *out, size_t outsz) {
  static const char hex[] = "0123456789ABCDEF";
  size_t need = 0, w = 0;
  int full = 0; /* once a piece does not fit, stop writing */
  int all_dots = in && *in && !in[strspn(in, ".")];

  for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p;
       p++) {
    char piece[3];
    size_t n;
    /* A value made only of dots would be a "." or ".." path segment, which
       URL normalisation collapses: "%2E" keeps it one opaque segment (and
       http_request refuses it as a segment either way). */
    if (isalnum(*p) || *p == '-' || (*p == '.' && !all_dots) || *p == '_' ||
        *p == '~') {
      piece[0] = (char)*p;
      n = 1;
    } else {
      piece[0] = '%';
      piece[1] = hex[*p >> 4];
      piece[2] = hex[*p & 0x0F];
      n = 3;
    }
    if (!full && w + n < outsz) {
      memcpy(out + w, piece, n);
      w += n;
    } else {
      full = 1;
    }
    need += n;
  }
  if (outsz)
    out[w] = '\0';
  return need;
}

/* Decode one byte of a query component at *pp and advance past it. */
static int decode_next(const char **pp, const char *end) {
  const char *p = *pp;

  if (*p == '+') {
    *pp = p + 1;
    return ' ';
  }
  if (*p == '%' && end - p >= 3 && util_hexval(p[1]) >= 0 &&
      util_hexval(p[2]) >= 0) {
    *pp = p + 3;
    return util_hexval(p[1]) * 16 + util_hexval(p[2]);
  }
  *pp = p + 1;
  return (unsigned char)*p;
}

static int key_matches(const char *p, const char *end, const char *name) {
  const unsigned char *n = (const unsigned char *)name;

  while (p < end) {
    if (!*n || decode_next(&p, end) != *n)
      return 0;
    n++;
  }
  return *n == '\0';
}

int http_url_query_get(const char *url, const char *name, char *out,
                       size_t outsz) {
  const char *p, *end;

  if (outsz)
    out[0] = '\0';
  if (!url || !name)
    return 0;
  p = strchr(url, '?');
  if (!p)
    return 0;
  p++;
  end = p + strcspn(p, "#");
  while (p < end) {
    const char *seg_end = p, *eq = NULL;
    while (seg_end < end && *seg_end != '&') {
      if (*seg_end == '=' && !eq)
        eq = seg_end;
      seg_end++;
    }
    if (key_matches(p, eq ? eq : seg_end, name)) {
      const char *v = eq ? eq + 1 : seg_end;
      size_t o = 0;
      while (v < seg_end) {
        int ch = decode_next(&v, seg_end);
        if (o + 1 < outsz)
          out[o++] = (char)ch;
      }
      if (outsz)
        out[o] = '\0';
      return 1;
    }
    p = seg_end + 1;
  }
  return 0;
}
