/* SPDX-License-Identifier: MIT */
#include "autoconfig.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "graph.h"
#include "utf8.h"

static locale_t loc;

static void loc_init(void) {
  loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  if (!loc)
    loc = newlocale(LC_CTYPE_MASK, "en_US.UTF-8", (locale_t)0);
}

locale_t utf8_locale(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;

  pthread_once(&once, loc_init);
  return loc;
}

char *utf8_lower(const char *s, size_t n, size_t *outlen) {
  /* a lowercase letter can take one byte more than its capital (U+023A,
     two bytes, becomes U+2C65, three) */
  char *out = malloc(n * 2 + MB_LEN_MAX + 1);
  locale_t l = utf8_locale(), old = (locale_t)0;
  mbstate_t in, outst;
  size_t o = 0;

  if (!out)
    return NULL;
  if (l)
    old = uselocale(l);
  memset(&in, 0, sizeof(in));
  memset(&outst, 0, sizeof(outst));
  while (n) {
    unsigned char c = (unsigned char)*s;
    wchar_t wc;
    size_t len;
    if (c < 0x80 || !l) { /* ASCII, or no locale to map the rest */
      out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      s++;
      n--;
      continue;
    }
    len = mbrtowc(&wc, s, n, &in);
    if (len == (size_t)-1 || len == (size_t)-2 || len == 0) {
      memset(&in, 0, sizeof(in));
      out[o++] = *s++; /* not UTF-8: kept as it is */
      n--;
      continue;
    }
    wc = (wchar_t)towlower((wint_t)wc);
    {
      size_t w = wcrtomb(out + o, wc, &outst);
      if (w == (size_t)-1) { /* cannot happen for a mapped letter */
        memcpy(out + o, s, len);
        w = len;
      }
      o += w;
    }
    s += len;
    n -= len;
  }
  if (l)
    uselocale(old);
  out[o] = '\0';
  if (outlen)
    *outlen = o;
  return out;
}

void utf8_repair(const char *in, char *out, size_t outsz) {
  const unsigned char *p = (const unsigned char *)in;
  size_t len = strlen(in), i = 0, o = 0;

  if (!outsz)
    return;
  while (i < len) {
    size_t k = p[i] < 0x80 ? 1 : key_utf8_seq(p + i, len - i);
    if (o + (k ? k : 3) >= outsz)
      break;
    memcpy(out + o, k ? in + i : "\xEF\xBF\xBD", k ? k : 3);
    o += k ? k : 3;
    i += k ? k : 1;
  }
  out[o] = '\0';
}
