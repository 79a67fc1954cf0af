/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

char *util_dirname(const char *path) {
  const char *slash = strrchr(path, '/');

  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

int64_t util_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void util_cond_wait_us(pthread_cond_t *cond, pthread_mutex_t *lock,
                       int64_t us) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(us / 1000000);
  ts.tv_nsec += (long)(us % 1000000) * 1000;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(cond, lock, &ts);
}

char *util_visible(const char *s) {
  size_t n = 0, len = strlen(s);
  char *out, *o;

  for (const char *p = s; *p; p++)
    n += util_is_control((unsigned char)*p);
  out = malloc(len + n * (sizeof(UTIL_CONTROL_SHOWN) - 2) + 1);
  if (!out)
    return NULL;
  for (o = out; *s; s++) {
    if (!util_is_control((unsigned char)*s)) {
      *o++ = *s;
      continue;
    }
    memcpy(o, UTIL_CONTROL_SHOWN, sizeof(UTIL_CONTROL_SHOWN) - 1);
    o += sizeof(UTIL_CONTROL_SHOWN) - 1;
  }
  *o = 0;
  return out;
}

int util_hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Optimal string alignment distance, capped: past `cap` the exact value
   does not matter. Names are short, so three rows on the stack do. */
static size_t edit_distance(const char *a, const char *b, size_t cap) {
  enum { MAXLEN = 64 };
  size_t rows[3][MAXLEN + 1];
  size_t la = strlen(a), lb = strlen(b);
  size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];

  if (la > MAXLEN || lb > MAXLEN)
    return cap + 1;
  for (size_t j = 0; j <= lb; j++)
    prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
      size_t best = sub < del ? sub : del;
      if (ins < best)
        best = ins;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          prev2[j - 2] + 1 < best)
        best = prev2[j - 2] + 1;
      cur[j] = best;
    }
    size_t *t = prev2;
    prev2 = prev;
    prev = cur;
    cur = t;
  }
  return prev[lb];
}

const char *util_closest(const char *word, const void *table, size_t n,
                         size_t stride) {
  const char *best = NULL;
  size_t best_d = 0;
  size_t len = strlen(word);
  /* A near miss: one edit in a short name, up to three in a long one. */
  size_t cap = len <= 4 ? 1 : len <= 10 ? 2 : 3;

  for (size_t i = 0; i < n; i++) {
    const char *name =
        *(const char *const *)(const void *)((const char *)table + i * stride);
    size_t d;
    if (!name)
      break;
    d = edit_distance(word, name, cap);
    if (d <= cap && (!best || d < best_d)) {
      best = name;
      best_d = d;
    }
  }
  return best;
}

/* Make room for `need` elements of `size` bytes in *p (capacity *cap). */
int util_grow(void *pp, size_t *cap, size_t need, size_t size) {
  void **p = pp;
  size_t ncap = *cap ? *cap : 16;
  void *np;

  if (need <= *cap)
    return 0;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / size)
      return -1;
    ncap *= 2;
  }
  np = realloc(*p, ncap * size);
  if (!np)
    return -1;
  *p = np;
  *cap = ncap;
  return 0;
}

void util_fput_text(const char *s, FILE *f) {
  static const char hex[] = "0123456789abcdef";

  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!util_is_control(c)) {
      putc(c, f);
      continue;
    }
    putc('\\', f);
    if (c == '\n' || c == '\r' || c == '\t') {
      putc(c == '\n' ? 'n' : c == '\r' ? 'r' : 't', f);
    } else {
      putc('x', f);
      putc(hex[c >> 4], f);
      putc(hex[c & 15], f);
    }
  }
}
