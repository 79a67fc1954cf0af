/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#ifndef CONNHOST_UTIL_H
#define CONNHOST_UTIL_H

/* The directory part of `path` ("." when it has none, "/" for "/x"), as
   written (not resolved). malloc'd; NULL when out of memory. */
char *util_dirname(const char *path);

#endif
