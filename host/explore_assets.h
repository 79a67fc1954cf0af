/* SPDX-License-Identifier: MIT */
/* The explorer's pages, embedded at build time (tools/embed-assets.sh). */
#ifndef CONNHOST_EXPLORE_ASSETS_H
#define CONNHOST_EXPLORE_ASSETS_H

#include <stddef.h>

struct explore_asset {
  const char *name; /* file name under host/explore_assets/ */
  const unsigned char *data;
  size_t len;
};

/* Ends with a NULL name. */
extern const struct explore_asset explore_assets[];

#endif
