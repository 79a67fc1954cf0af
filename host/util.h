/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#ifndef CONNHOST_UTIL_H
#define CONNHOST_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The directory part of `path` ("." when it has none, "/" for "/x"), as
   written (not resolved). malloc'd; NULL when out of memory. */
char *util_dirname(const char *path);

/* Make room for `need` elements of `size` bytes in *pp, an array whose
   capacity is *cap (doubling from 16). 0, or -1 when out of memory (the
   array is left as it was). */
int util_grow(void *pp, size_t *cap, size_t need, size_t size);

/* What data from a source shows in place of a control character (C0 or
   DEL) on a terminal or a page: U+FFFD, so a name can neither send an
   escape sequence nor break a line or a row. */
#define UTIL_CONTROL_SHOWN "\xef\xbf\xbd"
static inline int util_is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}
/* `s` with each control character as UTIL_CONTROL_SHOWN. malloc'd; NULL
   when out of memory. */
char *util_visible(const char *s);
/* Write `s` as one line of text: each control character as an escape
   (\n, \r, \t, \xHH), so data in a log line or a summary (a name or an
   id from a source, a server's error text) can neither forge a line of
   its own nor send the terminal an escape sequence. */
void util_fput_text(const char *s, FILE *f);

/* The value of one hex digit, or -1. */
int util_hexval(char c);

/* Wall-clock milliseconds since the epoch. */
int64_t util_wall_ms(void);
/* Monotonic microseconds (for durations and waits). */
int64_t util_mono_us(void);
/* pthread_cond_timedwait for at most `us` microseconds (its deadline is on
   CLOCK_REALTIME, the condition's default clock). */
void util_cond_wait_us(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t us);

/*
 * The name in `table` closest to `word` by edit distance (a swap of two
 * neighbours counts as one edit), or NULL when none is a near miss. Each
 * of the `n` entries, `stride` bytes apart, starts with its name as a
 * `const char *` (struct option, struct ch_option, a plain string array).
 */
const char *util_closest(const char *word, const void *table, size_t n,
                         size_t stride);

#endif
