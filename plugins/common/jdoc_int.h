/* SPDX-License-Identifier: MIT */
/* What the SDK's reader (jdoc.c) shares with the rest of the SDK. */
#ifndef CONNHOST_JDOC_INT_H
#define CONNHOST_JDOC_INT_H

#include <stddef.h>

/* `len` bytes of `text` with every maximal invalid UTF-8 subpart as
   U+FFFD: *out NULL when the text is valid UTF-8 already (*replaced 0),
   else a malloc'd NUL-terminated copy of *outlen bytes. CH_OK or
   CH_E_NOMEM. */
__attribute__((visibility("hidden"))) int pj_utf8_scrub(const char *text,
                                                        size_t len, char **out,
                                                        size_t *outlen,
                                                        size_t *replaced);

#endif
