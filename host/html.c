/* SPDX-License-Identifier: MIT */
/* HTML from data: see html.h. */
#include "autoconfig.h"

#include <string.h>

#include "html.h"
#include "util.h"

/* Escape the `n` bytes at `s`. */
static void text_n(FILE *f, const char *s, size_t n) {
  const char *run = s, *end = s + n;

  for (const char *p = s; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    const char *ref;

    switch (c) {
    case '&':
      ref = "&amp;";
      break;
    case '<':
      ref = "&lt;";
      break;
    case '>':
      ref = "&gt;";
      break;
    case '"':
      ref = "&quot;";
      break;
    case '\'':
      ref = "&#39;";
      break;
    default:
      /* tab, LF, CR and DEL are text in HTML, the other controls not */
      if (!util_is_control(c) || c == '\t' || c == '\n' || c == '\r' ||
          c == 0x7f)
        continue;
      ref = UTIL_CONTROL_SHOWN;
    }
    fwrite(run, 1, (size_t)(p - run), f);
    fputs(ref, f);
    run = p + 1;
  }
  fwrite(run, 1, (size_t)(end - run), f);
}

void html_text(FILE *f, const char *s) {
  if (s)
    text_n(f, s, strlen(s));
}

void html_text_cut(FILE *f, const char *s, size_t max) {
  size_t points = 0, i;

  if (!s)
    return;
  for (i = 0; s[i]; i++) {
    /* A code point starts at every byte that is not a continuation. */
    if (((unsigned char)s[i] & 0xC0) != 0x80 && points++ == max)
      break;
  }
  text_n(f, s, i);
  if (s[i])
    fputs("\xe2\x80\xa6", f);
}

void html_url_arg(FILE *f, const char *s) {
  static const char hex[] = "0123456789ABCDEF";

  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || strchr("-._~", c)) {
      fputc(c, f);
      continue;
    }
    fputc('%', f);
    fputc(hex[c >> 4], f);
    fputc(hex[c & 15], f);
  }
}
