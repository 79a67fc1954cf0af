/* SPDX-License-Identifier: MIT */
/* Writing HTML from data: the one escaper every name on a page goes
   through, and the query-string encoding of values put in links. */
#ifndef CONNHOST_HTML_H
#define CONNHOST_HTML_H

#include <stddef.h>
#include <stdio.h>

/*
 * Write `s` as text (element content or a quoted attribute value): & < >
 * " ' become references, and control characters (util_is_control) other
 * than tab, LF, CR and DEL (which HTML forbids) become U+FFFD.
 * Everything else, RTL marks, emoji and zero-width characters included,
 * is written as the UTF-8 it is. NULL writes nothing.
 */
void html_text(FILE *f, const char *s);

/* html_text of at most `max` code points of `s`, with "…" when cut. */
void html_text_cut(FILE *f, const char *s, size_t max);

/* `s` percent-encoded for a query value: only A-Z a-z 0-9 - . _ ~ stay,
   so the result is also safe inside a quoted attribute. */
void html_url_arg(FILE *f, const char *s);

#endif
