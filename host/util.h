/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#ifndef CONNHOST_UTIL_H
#define CONNHOST_UTIL_H

#include <stdint.h>

/* The directory part of `path` ("." when it has none, "/" for "/x"), as
   written (not resolved). malloc'd; NULL when out of memory. */
char *util_dirname(const char *path);

/* Wall-clock milliseconds since the epoch. */
int64_t util_wall_ms(void);
/* Monotonic microseconds (for durations and waits). */
int64_t util_mono_us(void);

#endif
