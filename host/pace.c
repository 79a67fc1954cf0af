/* SPDX-License-Identifier: MIT */
/* Adaptive pacing: token buckets refilled at a rate learned from the
   rate-limit headers and the 429s (additive increase, multiplicative
   decrease). */
#include "autoconfig.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "pace.h"
#include "util.h"

#define US 1000000
#define MIN_RATE 0.5      /* never slower than one request per 2 s */
#define BURST_S 0.05      /* bucket depth in seconds of the rate */
#define RECOVER_SHARE 0.1 /* climb by this share of the ceiling per second */
#define FLOOR_SHARE 0.25  /* the ceiling never drops below this of the limit */
#define MIN_SAMPLE 20     /* answers in a window before the 429 share counts */

struct pace_budget {
  char *key;
  pace_clock_fn clock;
  void *arg;
  pthread_mutex_t lock;
  long limit;     /* X-RateLimit-Limit, 0 unknown */
  double rate;    /* requests per second; 0 = unpaced */
  double ceiling; /* where additive increase stops */
  double tokens;  /* in the bucket, at `refill_us` */
  int64_t refill_us;
  int64_t hold_until_us; /* nothing is sent before (Retry-After) */
  int64_t last_cut_us;   /* last multiplicative decrease */
  int64_t last_grow_us;  /* last additive increase */
  int64_t win_us;        /* the one-second window the counts below fill */
  unsigned win_sent, win_answers, win_429;
  unsigned prev_sent; /* sends in the window before */
};

struct pace_table {
  pace_clock_fn clock;
  void *arg;
  pthread_mutex_t lock;
  struct hmap map;
};

static int64_t mono_clock(void *arg) {
  (void)arg;
  return util_mono_us();
}

struct pace_table *pace_table_new(pace_clock_fn clock, void *arg) {
  struct pace_table *t = calloc(1, sizeof(*t));

  if (!t)
    return NULL;
  t->clock = clock ? clock : mono_clock;
  t->arg = arg;
  hmap_init(&t->map);
  if (pthread_mutex_init(&t->lock, NULL)) {
    free(t);
    return NULL;
  }
  return t;
}

void pace_table_free(struct pace_table *t) {
  size_t pos = 0;
  void *v;

  if (!t)
    return;
  while (hmap_next(&t->map, &pos, NULL, NULL, &v)) {
    struct pace_budget *b = v;
    pthread_mutex_destroy(&b->lock);
    free(b->key);
    free(b);
  }
  hmap_release(&t->map);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pace_table *global_table;

struct pace_table *pace_global(void) {
  struct pace_table *t;

  pthread_mutex_lock(&global_lock);
  if (!global_table)
    global_table = pace_table_new(NULL, NULL);
  t = global_table;
  pthread_mutex_unlock(&global_lock);
  return t;
}

void pace_global_cleanup(void) {
  pthread_mutex_lock(&global_lock);
  pace_table_free(global_table);
  global_table = NULL;
  pthread_mutex_unlock(&global_lock);
}

void pace_fork_child(void) {
  pthread_mutex_init(&global_lock, NULL);
  global_table = NULL;
}

struct pace_budget *pace_budget_get(struct pace_table *t, const char *key) {
  struct pace_budget *b;

  pthread_mutex_lock(&t->lock);
  b = hmap_gets(&t->map, key);
  if (!b && (b = calloc(1, sizeof(*b))) != NULL) {
    b->key = strdup(key);
    b->clock = t->clock;
    b->arg = t->arg;
    if (!b->key || pthread_mutex_init(&b->lock, NULL) ||
        hmap_puts(&t->map, b->key, b) != 0) {
      free(b->key);
      free(b);
      b = NULL;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return b;
}

/* Roll the one-second counting window forward to `now`. */
static void roll_window(struct pace_budget *b, int64_t now) {
  if (now - b->win_us < US)
    return;
  b->prev_sent = now - b->win_us < 2 * US ? b->win_sent : 0;
  b->win_us = now;
  b->win_sent = b->win_answers = b->win_429 = 0;
}

static void refill(struct pace_budget *b, int64_t now) {
  double depth = b->rate * BURST_S < 1.0 ? 1.0 : b->rate * BURST_S;

  if (now > b->refill_us)
    b->tokens += (double)(now - b->refill_us) * b->rate / US;
  if (b->tokens > depth)
    b->tokens = depth;
  b->refill_us = now;
}

/* Start pacing, or change the rate, keeping the bucket consistent. */
static void set_rate(struct pace_budget *b, double rate, int64_t now) {
  if (b->rate > 0)
    refill(b, now);
  else
    b->tokens = 1.0, b->refill_us = now;
  b->rate = rate < MIN_RATE ? MIN_RATE : rate;
  b->last_grow_us = now;
}

int64_t pace_acquire(struct pace_budget *b) {
  int64_t now, wait = 0;

  pthread_mutex_lock(&b->lock);
  now = b->clock(b->arg);
  roll_window(b, now);
  if (now < b->hold_until_us) {
    wait = b->hold_until_us - now;
  } else if (b->rate > 0) {
    refill(b, now);
    if (b->tokens >= 1.0)
      b->tokens -= 1.0;
    else
      wait = (int64_t)((1.0 - b->tokens) * US / b->rate) + 1;
  }
  if (!wait)
    b->win_sent++;
  pthread_mutex_unlock(&b->lock);
  return wait;
}

/* A 429 said we are too fast: halve (once a second, so the answers of
   requests already in flight count as one signal) and lower the ceiling a
   little so the saw-tooth settles under the real limit. */
static void cut(struct pace_budget *b, int64_t now) {
  double floor = b->limit ? b->limit * PACE_MARGIN * FLOOR_SHARE : MIN_RATE;

  if (now - b->last_cut_us < US && b->last_cut_us)
    return;
  b->last_cut_us = now;
  b->ceiling *= 0.95;
  if (b->ceiling < floor)
    b->ceiling = floor;
  set_rate(b, b->rate / 2, now);
  if (b->tokens > 0)
    b->tokens = 0;
}

void pace_observe(struct pace_budget *b, long status, long limit,
                  long remaining, long retry_after_ms) {
  int64_t now;

  pthread_mutex_lock(&b->lock);
  now = b->clock(b->arg);
  roll_window(b, now);
  b->win_answers++;
  if (limit > 0 && limit != b->limit) {
    /* A new or changed limit: pace just under it. */
    b->limit = limit;
    b->ceiling = limit * PACE_MARGIN;
    set_rate(b, b->ceiling, now);
  }
  if (status == 429) {
    /* Without a limit header only a crowd of 429s is a limiter: stray
       ones (a flaky proxy, an injected fault) must not slow everything. */
    int crowd;
    b->win_429++;
    crowd = b->win_answers >= MIN_SAMPLE &&
            b->win_429 > b->win_answers * PACE_429_SHARE;
    if (b->rate <= 0 && crowd) {
      /* No limit given, but a limiter is refusing a share: the accepted
         rate is about what the limit is. */
      unsigned sent = b->prev_sent > b->win_sent ? b->prev_sent : b->win_sent;
      double ok = sent * (1.0 - (double)b->win_429 / b->win_answers);
      b->ceiling = ok * PACE_MARGIN;
      set_rate(b, b->ceiling, now);
      b->last_cut_us = now;
    } else if (b->rate > 0 && (b->limit || crowd)) {
      cut(b, now);
    }
    if (b->rate > 0 && (b->limit || crowd) && retry_after_ms > 0 &&
        now + retry_after_ms * 1000 > b->hold_until_us)
      b->hold_until_us = now + (int64_t)retry_after_ms * 1000;
  } else if (b->rate > 0) {
    if (remaining == 0) {
      refill(b, now);
      if (b->tokens > 0)
        b->tokens = 0;
    }
    if (now - b->last_cut_us >= US && b->rate < b->ceiling) {
      double grow =
          b->ceiling * RECOVER_SHARE * (double)(now - b->last_grow_us) / US;
      refill(b, now);
      b->rate = b->rate + grow > b->ceiling ? b->ceiling : b->rate + grow;
      b->last_grow_us = now;
    } else {
      b->last_grow_us = now;
    }
  }
  pthread_mutex_unlock(&b->lock);
}

double pace_rate(struct pace_budget *b) {
  double r;

  pthread_mutex_lock(&b->lock);
  r = b->rate;
  pthread_mutex_unlock(&b->lock);
  return r;
}

long pace_limit(struct pace_budget *b) {
  long l;

  pthread_mutex_lock(&b->lock);
  l = b->limit;
  pthread_mutex_unlock(&b->lock);
  return l;
}

/* ---- keys ----------------------------------------------------------------
 */

/* FNV-1a over the credential, salted per process, so equal credentials
   share a budget and the key reveals nothing that outlives the process. */
static uint64_t salt;

static void salt_init(void) {
  salt = ((uint64_t)util_mono_us() * 0x9E3779B97F4A7C15ULL) ^
         (uint64_t)(uintptr_t)&salt ^ (uint64_t)util_wall_ms();
}

static uint64_t cred_hash(const char *a, const char *b) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  uint64_t h = 1469598103934665603ULL;
  const char *parts[2] = {a ? a : "", b ? b : ""};

  pthread_once(&once, salt_init);
  h ^= salt;
  for (int i = 0; i < 2; i++) {
    for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
      h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL; /* separator: ("ab","") != ("a","b") */
  }
  return h;
}

static int word_segment(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!islower((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
      return 0;
  }
  return n > 0;
}

/* Append the derived route of `path` (up to the query) to out[*o]. */
static void derive_route(const char *path, char *out, size_t outsz, size_t *o) {
  const char *p = path;
  size_t end = strcspn(path, "?#");

  while ((size_t)(p - path) < end) {
    const char *seg;
    size_t n;
    if (*p == '/') {
      if (*o + 1 < outsz)
        out[(*o)++] = '/';
      p++;
      continue;
    }
    seg = p;
    n = strcspn(seg, "/?#");
    if ((size_t)(seg - path) + n > end)
      n = end - (size_t)(seg - path);
    if (!word_segment(seg, n)) {
      seg = "{}";
      p += n;
      n = 2;
    } else {
      p += n;
    }
    for (size_t i = 0; i < n && *o + 1 < outsz; i++)
      out[(*o)++] = seg[i];
  }
}

size_t pace_key(const char *url, const char *method, const char *route,
                const char *cred_a, const char *cred_b, char *out,
                size_t outsz) {
  const char *host = strstr(url, "://");
  const char *path;
  size_t o = 0;
  int n;

  host = host ? host + 3 : url;
  path = host + strcspn(host, "/?#");
  /* scheme://authority, lowercased (hosts are case-insensitive). */
  for (const char *p = url; p < path && o + 1 < outsz; p++)
    out[o++] = (char)tolower((unsigned char)*p);
  n = snprintf(out + o, outsz > o ? outsz - o : 0, "\n%016llx\n%s ",
               (unsigned long long)cred_hash(cred_a, cred_b),
               method ? method : "GET");
  if (n > 0)
    o = o + (size_t)n < outsz ? o + (size_t)n : (outsz ? outsz - 1 : 0);
  if (route && *route) {
    for (const char *p = route; *p && o + 1 < outsz; p++)
      out[o++] = *p;
  } else {
    derive_route(*path == '/' ? path : "/", out, outsz, &o);
  }
  if (outsz)
    out[o] = '\0';
  return o;
}
