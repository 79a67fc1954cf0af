/* SPDX-License-Identifier: MIT */
/* UTF-8 text whatever the process's locale: a UTF-8 locale_t of its own
   (for wcwidth and case mapping), and lowercasing for case-insensitive
   search. */
#ifndef CONNHOST_UTF8_H
#define CONNHOST_UTF8_H

#include <locale.h>
#include <stddef.h>

/* A UTF-8 LC_CTYPE locale (C.UTF-8, else en_US.UTF-8), made once; NULL when
   none is installed. */
locale_t utf8_locale(void);

/* `s` (n bytes) with every letter in its lowercase form, towlower(3) in
   utf8_locale() (A-Z only when there is none); bytes that are not UTF-8
   are kept. malloc'd and NUL-terminated, its length in *outlen; NULL when
   out of memory. */
char *utf8_lower(const char *s, size_t n, size_t *outlen);

/* `in` into `out` (outsz bytes, cut on a character boundary) with every
   byte that is not part of a valid UTF-8 sequence as U+FFFD. */
void utf8_repair(const char *in, char *out, size_t outsz);

#endif
