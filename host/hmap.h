/* SPDX-License-Identifier: MIT */
/* A small byte-string-keyed open-addressing hash map (linear probing). */
#ifndef CONNHOST_HMAP_H
#define CONNHOST_HMAP_H

#include <stddef.h>
#include <stdint.h>

/*
 * Keys are byte strings (any bytes, NUL included) given as pointer + length.
 * The map BORROWS the key bytes: they must stay valid and unchanged for as
 * long as the entry is in the map (point them into the value itself).
 * Values are opaque pointers; the map never frees keys or values.
 *
 * Iteration order depends on the hash and the insertion history: never let
 * it reach an output file.
 *
 * Not thread-safe: the caller locks.
 */
struct hmap_slot {
  const char *key; /* NULL: empty slot */
  uint32_t len;
  uint32_t hash;
  void *value;
};

struct hmap {
  struct hmap_slot *slots;
  size_t cap; /* 0 or a power of two */
  size_t count;
};

#define HMAP_INIT                                                              \
  { NULL, 0, 0 }

void hmap_init(struct hmap *m);
/* Free the table (not the keys or values). The map is empty afterwards and
   may be reused. Accepts NULL. */
void hmap_release(struct hmap *m);

uint32_t hmap_hash(const void *key, size_t len);

/* The value stored under `key`, or NULL. */
void *hmap_get(const struct hmap *m, const void *key, size_t len);
/* Same with a NUL-terminated key. */
void *hmap_gets(const struct hmap *m, const char *key);

/*
 * Store `value` under `key` (borrowed, see above), replacing the value of an
 * existing equal key (its original key pointer is kept). `len` must be below
 * 4 GiB. Returns 0, or -1 when out of memory (the map is unchanged).
 */
int hmap_put(struct hmap *m, const void *key, size_t len, void *value);
int hmap_puts(struct hmap *m, const char *key, void *value);

/*
 * Walk the entries: start with *pos = 0; each call returns 1 and fills the
 * non-NULL out-params, or 0 at the end. The map must not change meanwhile.
 */
int hmap_next(const struct hmap *m, size_t *pos, const char **key, size_t *len,
              void **value);

#endif
