/* SPDX-License-Identifier: MIT */
/* A byte-string-keyed open-addressing hash map with linear probing. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "hmap.h"

#define HMAP_MIN_CAP 16

void hmap_init(struct hmap *m) {
  m->slots = NULL;
  m->cap = 0;
  m->count = 0;
}

void hmap_release(struct hmap *m) {
  if (!m)
    return;
  free(m->slots);
  hmap_init(m);
}

uint32_t hmap_hash(const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = 0xcbf29ce484222325ULL;
  size_t i;

  /* FNV-1a is cheap on the short keys we store (ids, slugs, match keys);
     the murmur3 finalizer makes the low bits, which pick the slot, depend
     on every input byte. */
  for (i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return (uint32_t)h;
}

/* The slot holding `key`, or the empty slot where it would go. */
static struct hmap_slot *hmap_find(const struct hmap *m, const void *key,
                                   size_t len, uint32_t hash) {
  size_t mask = m->cap - 1;
  size_t i = hash & mask;

  for (;;) {
    struct hmap_slot *s = &m->slots[i];
    if (!s->key)
      return s;
    if (s->hash == hash && s->len == len && !memcmp(s->key, key, len))
      return s;
    i = (i + 1) & mask;
  }
}

void *hmap_get(const struct hmap *m, const void *key, size_t len) {
  struct hmap_slot *s;

  if (!m->count)
    return NULL;
  s = hmap_find(m, key, len, hmap_hash(key, len));
  return s->key ? s->value : NULL;
}

void *hmap_gets(const struct hmap *m, const char *key) {
  return hmap_get(m, key, strlen(key));
}

static int hmap_grow(struct hmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : HMAP_MIN_CAP;
  struct hmap_slot *old = m->slots;
  size_t ocap = m->cap;
  size_t i;

  if (ncap < m->cap || ncap > SIZE_MAX / sizeof(*old))
    return -1;
  m->slots = calloc(ncap, sizeof(*m->slots));
  if (!m->slots) {
    m->slots = old;
    return -1;
  }
  m->cap = ncap;
  for (i = 0; i < ocap; i++) {
    if (old[i].key)
      *hmap_find(m, old[i].key, old[i].len, old[i].hash) = old[i];
  }
  free(old);
  return 0;
}

int hmap_put(struct hmap *m, const void *key, size_t len, void *value) {
  uint32_t hash = hmap_hash(key, len);
  struct hmap_slot *s;

  if (len > UINT32_MAX)
    return -1;
  /* Grow at 70% load: linear probing slows down sharply past that. */
  if ((m->count + 1) * 10 > m->cap * 7 && hmap_grow(m))
    return -1;
  s = hmap_find(m, key, len, hash);
  if (!s->key) {
    s->key = key;
    s->len = (uint32_t)len;
    s->hash = hash;
    m->count++;
  }
  s->value = value;
  return 0;
}

int hmap_puts(struct hmap *m, const char *key, void *value) {
  return hmap_put(m, key, strlen(key), value);
}

int hmap_next(const struct hmap *m, size_t *pos, const char **key, size_t *len,
              void **value) {
  while (*pos < m->cap) {
    const struct hmap_slot *s = &m->slots[(*pos)++];
    if (!s->key)
      continue;
    if (key)
      *key = s->key;
    if (len)
      *len = s->len;
    if (value)
      *value = s->value;
    return 1;
  }
  return 0;
}
