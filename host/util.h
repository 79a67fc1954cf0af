/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#ifndef CONNHOST_UTIL_H
#define CONNHOST_UTIL_H

#include <stdint.h>

/* The directory part of `path` ("." when it has none, "/" for "/x"), as
   written (not resolved). malloc'd; NULL when out of memory. */
char *util_dirname(const char *path);

/* The value of one hex digit, or -1. */
int util_hexval(char c);

/* Wall-clock milliseconds since the epoch. */
int64_t util_wall_ms(void);
/* Monotonic microseconds (for durations and waits). */
int64_t util_mono_us(void);

#endif
