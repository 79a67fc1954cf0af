/* SPDX-License-Identifier: MIT */
/* The growable buffer and the JSON string escaper (see buf.h). */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void buf_wipe_mem(void *p, size_t len) {
  volatile unsigned char *v = p;
  while (len--)
    *v++ = 0;
}

static int grow(struct buf *b, size_t more) {
  size_t need, cap;
  char *p;

  if (b->failed)
    return -1;
  if (more > (size_t)-1 - b->len - 1 || (b->max && b->len + more > b->max)) {
    b->failed = 1;
    return -1;
  }
  need = b->len + more + 1;
  if (need <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > (size_t)-1 / 2 ? need : cap * 2;
  if (b->wipe) {
    /* copy instead of realloc so no stray copy of a secret stays behind */
    p = malloc(cap);
    if (p && b->p) {
      memcpy(p, b->p, b->len + 1);
      buf_wipe_mem(b->p, b->cap);
      free(b->p);
    }
  } else {
    p = realloc(b->p, cap);
  }
  if (!p) {
    b->failed = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

int buf_add(struct buf *b, const void *s, size_t n) {
  if (grow(b, n))
    return -1;
  if (n)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

int buf_reserve(struct buf *b, size_t more) { return grow(b, more); }

int buf_puts(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = 1;
    return -1;
  }
  if (grow(b, (size_t)n))
    return -1;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void json_escape(const char *s, size_t n,
                 void (*put)(void *ctx, const char *p, size_t n), void *ctx) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;

  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6] = {'\\', 0};
    size_t elen = 2;

    if (json_plain_byte(c))
      continue; /* UTF-8 as the source wrote it, copied in runs */
    if (i > run)
      put(ctx, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"':
    case '\\':
      esc[1] = (char)c;
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 0xf];
      elen = 6;
    }
    put(ctx, esc, elen);
  }
  if (n > run)
    put(ctx, s + run, n - run);
}

static void buf_put(void *ctx, const char *p, size_t n) { buf_add(ctx, p, n); }

int buf_json_str(struct buf *b, const char *s, size_t n) {
  buf_add(b, "\"", 1);
  json_escape(s, n, buf_put, b);
  return buf_add(b, "\"", 1);
}

char *buf_take(struct buf *b) {
  char *p;

  if (!b->failed && !b->p)
    buf_add(b, "", 0);
  if (b->failed) {
    buf_free(b);
    return NULL;
  }
  p = b->p;
  b->p = NULL;
  b->len = b->cap = 0;
  return p;
}

void buf_free(struct buf *b) {
  if (b->p && b->wipe)
    buf_wipe_mem(b->p, b->cap);
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}
