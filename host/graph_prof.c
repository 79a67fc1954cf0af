/* SPDX-License-Identifier: MIT */
/* Profiles kept small: a dictionary of shapes and values. The canonical
   profiles of one resource type repeat their keys on every resource and
   most of their values (account types, statuses, time zones), so a
   profile is stored as its shape (the text with every string and number
   value cut out, kept once) and, per value, a one-byte code into that
   value position's dictionary or, when the value is new and the
   dictionary is full, the value's text. Decoding gives back the exact
   canonical bytes. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "graph_int.h"

/* Canonical JSON escapes every byte below 0x20, so these never occur in
   it: HOLE marks a value in a shape, '\0' ends an inlined value. */
#define HOLE '\x01'
#define PD_CODES 255       /* codes 1..255 per value position; 0 = inline */
#define PD_MAX_SHAPES 4096 /* past these a profile is kept as its text */
#define PD_MAX_HOLES 64
#define PD_MAX_VALUE 64 /* longer values are inlined, never coded */
#define PD_RAW 0        /* shape id 0: the text follows, NUL-terminated */

struct pd_val {
  const char *s; /* in d->strs */
  size_t len;
};

struct pd_hole {       /* one value position of a shape */
  struct pd_val *vals; /* by code - 1 */
  size_t n, cap;
};

struct pd_shape {
  const char *text; /* with HOLE for each value; in d->strs */
  size_t len, nholes;
  struct pd_hole *holes;
};

void gr_pdict_init(struct gr_pdict *d) {
  memset(d, 0, sizeof(*d));
  pthread_mutex_init(&d->lock, NULL);
  hmap_init(&d->shapes);
  hmap_init(&d->values);
}

void gr_pdict_release(struct gr_pdict *d) {
  for (size_t i = 0; i < d->nshapes; i++) {
    struct pd_shape *s = d->v[i];
    for (size_t h = 0; h < s->nholes; h++)
      free(s->holes[h].vals);
    free(s->holes);
    free(s);
  }
  free(d->v);
  hmap_release(&d->shapes);
  hmap_release(&d->values);
  gr_arena_release(&d->strs);
  pthread_mutex_destroy(&d->lock);
}

/* Append the varint `v` to `b`. */
static void put_varint(struct buf *b, size_t v) {
  unsigned char c[10];
  size_t n = 0;

  do {
    c[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v)
      c[n] |= 0x80;
    n++;
  } while (v);
  buf_add(b, (const char *)c, n);
}

static size_t get_varint(const unsigned char **pp) {
  const unsigned char *p = *pp;
  size_t v = 0;
  unsigned shift = 0;

  do {
    v |= (size_t)(*p & 0x7f) << shift;
    shift += 7;
  } while (*p++ & 0x80);
  *pp = p;
  return v;
}

struct span {
  const char *s;
  size_t len;
};

/* Split canonical `text` into its shape (in `shape`) and its string and
   number values (in `vals`, at most `max`). Returns the number of values,
   or (size_t)-1 when there are more than `max`. Object keys, structure
   and the literals true, false and null stay in the shape. */
static size_t pd_split(const char *text, struct buf *shape, struct span *vals,
                       size_t max) {
  const char *p = text, *run = text;
  size_t n = 0;

  while (*p) {
    const char *v = p;
    if (*p == '"') {
      for (p++; *p != '"'; p++) {
        if (*p == '\\')
          p++;
      }
      p++;
      if (*p == ':')
        continue; /* an object key */
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
      while (*p && !strchr(",]}", *p))
        p++;
    } else {
      p++;
      continue;
    }
    if (n == max)
      return (size_t)-1;
    buf_add(shape, run, (size_t)(v - run));
    buf_add(shape, "\x01", 1);
    vals[n].s = v;
    vals[n].len = (size_t)(p - v);
    n++;
    run = p;
  }
  buf_add(shape, run, (size_t)(p - run));
  return n;
}

/* The shape with `text`, created when new, or NULL (no room). Under
   d->lock. */
static struct pd_shape *pd_shape_get(struct gr_pdict *d, const char *text,
                                     size_t len, size_t nholes, size_t *id) {
  uintptr_t i = (uintptr_t)hmap_get(&d->shapes, text, len);
  struct pd_shape *s;

  if (i) {
    *id = i;
    return d->v[i - 1];
  }
  if (d->nshapes >= PD_MAX_SHAPES ||
      util_grow(&d->v, &d->cshapes, d->nshapes + 1, sizeof(*d->v)))
    return NULL;
  s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->holes = calloc(nholes ? nholes : 1, sizeof(*s->holes));
  s->text = gr_arena_dup(&d->strs, text, len);
  if (!s->holes || !s->text ||
      hmap_put(&d->shapes, s->text, len, (void *)(d->nshapes + 1))) {
    free(s->holes);
    free(s);
    return NULL;
  }
  s->len = len;
  s->nholes = nholes;
  d->v[d->nshapes++] = s;
  *id = d->nshapes;
  return s;
}

/* The code of value `v` at hole `h` of shape `id`, added when there is
   room, or 0 (inline it). Under d->lock. */
static unsigned pd_code(struct gr_pdict *d, struct pd_shape *s, size_t id,
                        size_t h, const struct span *v) {
  struct pd_hole *ho = &s->holes[h];
  char key[PD_MAX_VALUE + 8];
  size_t klen = v->len + 6;
  uint32_t id32 = (uint32_t)id;
  uintptr_t c;
  char *k;

  if (v->len > PD_MAX_VALUE)
    return 0;
  /* keyed by (shape, hole, value): one map for every position */
  memcpy(key, &id32, 4);
  key[4] = (char)(h & 0xff);
  key[5] = (char)(h >> 8);
  memcpy(key + 6, v->s, v->len);
  c = (uintptr_t)hmap_get(&d->values, key, klen);
  if (c || ho->n >= PD_CODES)
    return (unsigned)c;
  if (util_grow(&ho->vals, &ho->cap, ho->n + 1, sizeof(*ho->vals)))
    return 0;
  k = gr_arena_dup(&d->strs, key, klen);
  if (!k || hmap_put(&d->values, k, klen, (void *)(uintptr_t)(ho->n + 1)))
    return 0;
  ho->vals[ho->n].s = k + 6;
  ho->vals[ho->n].len = v->len;
  return (unsigned)++ho->n;
}

int gr_pdict_encode(struct gr_pdict *d, const char *text, unsigned char **out,
                    size_t *outlen) {
  struct span vals[PD_MAX_HOLES];
  struct buf shape = {0}, code = {0};
  struct pd_shape *s = NULL;
  size_t n, id = PD_RAW, i;

  n = pd_split(text, &shape, vals, PD_MAX_HOLES);
  pthread_mutex_lock(&d->lock);
  if (n != (size_t)-1 && !shape.failed)
    s = pd_shape_get(d, shape.p ? shape.p : "", shape.len, n, &id);
  if (!s) {
    put_varint(&code, PD_RAW);
    buf_add(&code, text, strlen(text) + 1);
  } else {
    put_varint(&code, id);
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)pd_code(d, s, id, i, &vals[i]);
      buf_add(&code, (const char *)&c, 1);
      if (!c) {
        buf_add(&code, vals[i].s, vals[i].len);
        buf_add(&code, "", 1);
      }
    }
  }
  pthread_mutex_unlock(&d->lock);
  buf_free(&shape);
  *outlen = code.len;
  *out = (unsigned char *)code.p;
  if (code.failed) {
    buf_free(&code);
    *out = NULL;
    return CH_E_NOMEM;
  }
  return CH_OK;
}

void gr_pdict_write(const struct gr_pdict *d, const unsigned char *c,
                    struct jw *w) {
  const unsigned char *p = c;
  size_t id = get_varint(&p), h = 0;
  const struct pd_shape *s;
  const char *t, *hole;

  if (id == PD_RAW) {
    jw_put(w, (const char *)p, strlen((const char *)p));
    return;
  }
  s = d->v[id - 1];
  t = s->text;
  while ((hole = memchr(t, HOLE, s->len - (size_t)(t - s->text)))) {
    unsigned code = *p++;
    jw_put(w, t, (size_t)(hole - t));
    if (code) {
      const struct pd_val *v = &s->holes[h].vals[code - 1];
      jw_put(w, v->s, v->len);
    } else {
      size_t n = strlen((const char *)p);
      jw_put(w, (const char *)p, n);
      p += n + 1;
    }
    h++;
    t = hole + 1;
  }
  jw_put(w, t, s->len - (size_t)(t - s->text));
}

char *gr_pdict_text(struct gr_pdict *d, const unsigned char *c) {
  struct jw w = {0};

  pthread_mutex_lock(&d->lock);
  gr_pdict_write(d, c, &w);
  pthread_mutex_unlock(&d->lock);
  jw_put(&w, "", 1);
  if (w.failed) {
    free(w.buf);
    return NULL;
  }
  return w.buf;
}
