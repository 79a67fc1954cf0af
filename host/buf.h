/* SPDX-License-Identifier: MIT */
/* The host's one growable text buffer (optionally capped, optionally wiped
   for secrets) and its one JSON string escaper. */
#ifndef CONNHOST_BUF_H
#define CONNHOST_BUF_H

#include <stddef.h>

#include <connhost/plugin.h>

/*
 * Zero-initialise, then set `max` and `wipe` if wanted. After any append
 * `p` is NUL-terminated. An append that would pass `max` bytes (0: no cap)
 * or runs out of memory returns -1 and sets `failed`; later appends do
 * nothing, so a writer may check once at the end.
 */
struct buf {
  char *p;
  size_t len, cap;
  size_t max;          /* 0: no cap */
  unsigned wipe : 1;   /* it holds secrets: grow by copy, zero old blocks */
  unsigned failed : 1; /* an append failed (out of memory or over max) */
};

int buf_add(struct buf *b, const void *s, size_t n);
/* Room for `more` bytes past `len` in one allocation (the same cap and
   failure rules as an append of that size); nothing is appended. */
int buf_reserve(struct buf *b, size_t more);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) CH_PRINTF(2, 3);
/* `s[0..n)` as a quoted JSON string: '"', '\\' and control bytes (and
   0x7f) escaped, everything else (UTF-8) as written. */
int buf_json_str(struct buf *b, const char *s, size_t n);
/* The same escaping (without the quotes) for any writer: `put` gets the
   text in pieces, runs of plain bytes and escapes (graph_json.c's writer
   uses it too). */
void json_escape(const char *s, size_t n,
                 void (*put)(void *ctx, const char *p, size_t n), void *ctx);
/* Whether json_escape writes byte `c` as is. */
static inline int json_plain_byte(unsigned char c) {
  return c >= 0x20 && c != '"' && c != '\\' && c != 0x7f;
}
/* The text, handed over (malloc'd, "" for an empty buffer), the buffer
   reset; NULL when an append failed or out of memory (then freed). */
char *buf_take(struct buf *b);
/* Release (wiping first when `wipe`); the buffer may be reused. */
void buf_free(struct buf *b);

/* Overwrite memory that held a secret before it goes back to malloc. */
void buf_wipe_mem(void *p, size_t len);

#endif
