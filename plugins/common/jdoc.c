/* SPDX-License-Identifier: MIT */
/* The SDK's tree-free JSON reader (struct pj_doc, see <connhost/sdk.h>):
   jsmn tokenizes the text into one growing token array, a validation
   pass checks what jsmn does not (separators, number and literal syntax,
   depth, one value per text) and unescapes every string in place, so a
   page costs one allocation instead of a malloc per value. */
#define _POSIX_C_SOURCE 200809L /* in place of autoconfig.h */

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <connhost/sdk.h>

#include "jdoc_int.h"

#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

/* json-c's default depth: deeper documents fail as they did there. */
#define PJ_MAX_DEPTH 32

/*
 * After validation a token's fields mean: `start` where the value's text
 * begins (for a string, its unescaped bytes, NUL-terminated), `end` where
 * it ends (for a string, start + unescaped length), `size` the number of
 * elements or members, and `parent` the index of the next element of the
 * same array or the next key of the same object (-1 after the last).
 */
struct pj_doc {
  char *text;
  size_t len;
  size_t replaced;            /* invalid UTF-8 sequences read as U+FFFD */
  const struct ch_host *host; /* frees `resp` when set */
  struct ch_http_resp resp;   /* owns `text` when host is set */
  int ntok, cap;
  jsmntok_t tok[];
};

struct vstate {
  char *t;
  size_t len;
  jsmntok_t *tok;
  int n;
  int escapes; /* the text has a backslash: strings need unescaping */
  const char *why;
};

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const struct vstate *s, size_t p) {
  while (p < s->len && is_ws(s->t[p]))
    p++;
  return p;
}

/* Where token i's text begins, quote included. */
static size_t tok_begin(const jsmntok_t *t) {
  return (size_t)t->start - (t->type == JSMN_STRING);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return c - 'A' + 10; /* jsmn let only hex digits through */
}

static unsigned hex4(const char *p) {
  return (unsigned)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 |
                    hexval(p[3]));
}

static size_t put_utf8(char *w, unsigned cp) {
  if (cp < 0x80) {
    w[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    w[0] = (char)(0xC0 | cp >> 6);
    w[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    w[0] = (char)(0xE0 | cp >> 12);
    w[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    w[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  w[0] = (char)(0xF0 | cp >> 18);
  w[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  w[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  w[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/*
 * Unescape the n bytes at s in place (the text jsmn checked: escapes are
 * complete and \u has four hex digits) and NUL-terminate them; returns the
 * new length. \u0000 becomes U+FFFD, as a surrogate that is not half of
 * a pair does: a NUL would end the C string every name and id travels
 * in, and "Ann\u0000Evil" would reach the graph as "Ann" (or an id as
 * another record's). Never longer than the input, so the closing quote's
 * byte takes the NUL.
 */
static size_t unescape(char *s, size_t n) {
  char *bs = memchr(s, '\\', n);
  size_t r, w;

  if (!bs) {
    s[n] = '\0';
    return n;
  }
  r = w = (size_t)(bs - s);
  while (r < n) {
    char c = s[r];
    unsigned cp;
    if (c != '\\') {
      s[w++] = c;
      r++;
      continue;
    }
    c = s[r + 1];
    r += 2;
    switch (c) {
    case 'b':
      s[w++] = '\b';
      continue;
    case 'f':
      s[w++] = '\f';
      continue;
    case 'n':
      s[w++] = '\n';
      continue;
    case 'r':
      s[w++] = '\r';
      continue;
    case 't':
      s[w++] = '\t';
      continue;
    case 'u':
      break;
    default: /* " \ / */
      s[w++] = c;
      continue;
    }
    cp = hex4(s + r);
    r += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF && r + 6 <= n && s[r] == '\\' &&
        s[r + 1] == 'u') {
      unsigned lo = hex4(s + r + 2);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        r += 6;
      }
    }
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
      cp = 0xFFFD;
    w += put_utf8(s + w, cp);
  }
  s[w] = '\0';
  return w;
}

static int lit_is(const char *p, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* A primitive jsmn let through: true, false, null or an RFC 8259
   number. */
static const char *check_primitive(const char *p, size_t n) {
  size_t i = 0;

  if (*p == 't' || *p == 'f')
    return lit_is(p, n, "true") || lit_is(p, n, "false") ? NULL
                                                         : "boolean expected";
  if (*p == 'n')
    return lit_is(p, n, "null") ? NULL : "null expected";
  if (p[i] == '-')
    i++;
  if (i < n && p[i] == '0')
    i++;
  else if (i < n && p[i] >= '1' && p[i] <= '9')
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
  else
    return "number expected";
  if (i < n && p[i] == '.') {
    if (++i >= n || p[i] < '0' || p[i] > '9')
      return "number expected";
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    if (++i < n && (p[i] == '+' || p[i] == '-'))
      i++;
    if (i >= n || p[i] < '0' || p[i] > '9')
      return "number expected";
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
  }
  return i == n ? NULL : "number expected";
}

/* Check the value of token i, which must begin at *pos, and everything
   inside it; returns the index after it (or -1 with s->why set) and
   leaves *pos after its text. */
static int check_value(struct vstate *s, int i, size_t *pos, int depth) {
  jsmntok_t *t;
  size_t p;
  int j, obj;

  if (i >= s->n || tok_begin(&s->tok[i]) != *pos) {
    s->why = "unexpected character";
    return -1;
  }
  t = &s->tok[i];
  if (t->type == JSMN_PRIMITIVE) {
    s->why = check_primitive(s->t + t->start, (size_t)(t->end - t->start));
    *pos = (size_t)t->end;
    t->parent = -1;
    return s->why ? -1 : i + 1;
  }
  if (t->type == JSMN_STRING) {
    *pos = (size_t)t->end + 1;
    if (s->escapes)
      t->end = t->start +
               (int)unescape(s->t + t->start, (size_t)(t->end - t->start));
    else
      s->t[t->end] = '\0'; /* the closing quote */
    t->parent = -1;
    return i + 1;
  }
  if (depth >= PJ_MAX_DEPTH) {
    s->why = "nesting too deep";
    return -1;
  }
  obj = t->type == JSMN_OBJECT;
  p = (size_t)t->start + 1;
  j = i + 1;
  t->parent = -1;
  for (int k = 0; k < t->size; k++) {
    int cur;
    p = skip_ws(s, p);
    if (k > 0) {
      if (p >= s->len || s->t[p] != ',') {
        s->why = obj ? "object value separator ',' expected"
                     : "array value separator ',' expected";
        return -1;
      }
      p = skip_ws(s, p + 1);
    }
    cur = j;
    if (obj) {
      if (j >= s->n || s->tok[j].type != JSMN_STRING ||
          tok_begin(&s->tok[j]) != p) {
        s->why = "quoted object property name expected";
        return -1;
      }
      j = check_value(s, j, &p, depth + 1);
      p = skip_ws(s, p);
      if (p >= s->len || s->t[p] != ':') {
        s->why = "object property name separator ':' expected";
        return -1;
      }
      p = skip_ws(s, p + 1);
    }
    j = check_value(s, j, &p, depth + 1);
    if (j < 0)
      return -1;
    s->tok[cur].parent = k + 1 < t->size ? j : -1;
  }
  p = skip_ws(s, p);
  if (p + 1 != (size_t)t->end) {
    /* A comma before the bracket wants one more value (RFC 8259 has
       no trailing commas). */
    if (t->size == 0 || (p < s->len && s->t[p] == ','))
      s->why =
          obj ? "quoted object property name expected" : "unexpected character";
    else
      s->why = obj ? "object value separator ',' expected"
                   : "array value separator ',' expected";
    return -1;
  }
  *pos = (size_t)t->end;
  return j;
}

/* The first index past `p` that is not whitespace or a NUL (json-c's
   end of data, which the callers before took as whitespace). */
static size_t skip_tail(const char *t, size_t p, size_t len) {
  while (p < len && (is_ws(t[p]) || t[p] == '\0'))
    p++;
  return p;
}

/* Where the nesting first passes PJ_MAX_DEPTH, or len: jsmn finds the
   container a bracket closes by walking up from the last token, which is
   quadratic in the depth, so it never reads past the limit. */
static size_t depth_cut(const char *t, size_t len) {
  int depth = 0;

  for (size_t i = 0; i < len; i++) {
    char c = t[i];
    if (c == '"') {
      /* Most of a page is strings: jump to the quote that ends this one,
         the first not escaped by an odd run of backslashes. */
      size_t from = i + 1;
      for (;;) {
        const char *q = memchr(t + from, '"', len - from);
        size_t k, bs = 0;
        if (!q)
          return len;
        k = (size_t)(q - t);
        while (t[k - bs - 1] == '\\') /* stops at the opening quote */
          bs++;
        from = k + 1;
        if (bs % 2 == 0)
          break;
      }
      i = from - 1;
    } else if (c == '[' || c == '{') {
      if (++depth > PJ_MAX_DEPTH)
        return i;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return len;
}

/* json-c's word for what jsmn refused at `pos` (JSMN_ERROR_INVAL). */
static const char *invalid_why(const struct pj_doc *d, const jsmn_parser *jp) {
  const jsmntok_t *last = jp->toknext ? &d->tok[jp->toknext - 1] : NULL;
  const jsmntok_t *sup = jp->toksuper >= 0 ? &d->tok[jp->toksuper] : NULL;

  char c = d->text[jp->pos];

  if (c == '"')
    return "invalid string sequence";
  /* A bracket that closes the wrong container: the separator that was
     due there. */
  if ((c == ']' || c == '}') && sup) {
    if (sup->type == JSMN_STRING && sup->parent >= 0)
      sup = &d->tok[sup->parent];
    return sup->type == JSMN_OBJECT ? "object value separator ',' expected"
                                    : "array value separator ',' expected";
  }
  /* A value where an object wants a key: after a key, its ':' is
     missing. */
  if (sup && sup->type == JSMN_OBJECT && sup->end < 0)
    return last && last->type == JSMN_STRING && last->size == 0 &&
                   last->parent == jp->toksuper
               ? "object property name separator ':' expected"
               : "quoted object property name expected";
  return "unexpected character";
}

/* ---- text that is not UTF-8 ---------------------------------------------- */

/*
 * RFC 8259 text is UTF-8, and the host refuses names and ids that are not
 * (graph.h), which failed a whole instance on one broken display name.
 * The reader reads each maximal invalid subpart (Unicode's "substitution
 * of maximal subparts", as WHATWG's decoder does) as U+FFFD, like a lone
 * surrogate; pj_doc_replaced() says how many.
 */

/* The length of the valid sequence at s[0..n) (s[0] >= 0x80), or minus
   the length of the maximal invalid subpart there. */
static long utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t need, k;

  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
    hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    lo = c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
  } else {
    return -1;
  }
  for (k = 1; k <= need; k++) {
    if (k >= n || s[k] < lo || s[k] > hi)
      return -(long)k;
    lo = 0x80;
    hi = 0xBF;
  }
  return (long)k;
}

/* Where the first byte that is not ASCII or part of a valid sequence is,
   or n. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;

  while (i < n) {
    long q;
    /* Nearly every answer is ASCII: eight bytes at a time. */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & UINT64_C(0x8080808080808080))
        break;
      i += 8;
    }
    if (i >= n)
      break;
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    q = utf8_seq(s + i, n - i);
    if (q < 0)
      return i;
    i += (size_t)q;
  }
  return n;
}

int pj_utf8_scrub(const char *text, size_t len, char **out, size_t *outlen,
                  size_t *replaced) {
  const unsigned char *s = (const unsigned char *)text;
  size_t i = utf8_valid_prefix(s, len), w;
  char *o;

  *out = NULL;
  *outlen = len;
  *replaced = 0;
  if (i == len)
    return CH_OK;
  /* each invalid byte becomes at most three */
  if (len > (SIZE_MAX - 1) / 3 || !(o = malloc(len * 3 + 1)))
    return CH_E_NOMEM;
  memcpy(o, text, i);
  w = i;
  while (i < len) {
    size_t ok = i + utf8_valid_prefix(s + i, len - i);
    memcpy(o + w, text + i, ok - i);
    w += ok - i;
    if ((i = ok) >= len)
      break;
    memcpy(o + w, "\xEF\xBF\xBD", 3);
    w += 3;
    ++*replaced;
    i += (size_t)-utf8_seq(s + i, len - i);
  }
  o[w] = '\0';
  *out = o;
  *outlen = w;
  return CH_OK;
}

/* Tokenize and check `text`, growing *dp's token array as needed. */
static int doc_parse(struct pj_doc **dp, const char **why) {
  struct pj_doc *d = *dp;
  struct vstate s = {0};
  jsmn_parser jp;
  size_t p = 0, cut;
  int r;

  if (d->len > INT_MAX / 2) {
    *why = "document too large";
    return CH_E_PROTOCOL;
  }
  cut = depth_cut(d->text, d->len);
  jsmn_init(&jp);
  for (;;) {
    r = jsmn_parse(&jp, d->text, cut, d->tok, (unsigned)d->cap);
    if (r != JSMN_ERROR_NOMEM)
      break;
    struct pj_doc *g =
        realloc(d, sizeof(*d) + (size_t)d->cap * 2 * sizeof(jsmntok_t));
    if (!g) {
      *why = "out of memory";
      return CH_E_NOMEM;
    }
    g->cap *= 2;
    *dp = d = g;
  }
  d->ntok = (int)jp.toknext;
  s.t = d->text;
  s.len = d->len;
  s.tok = d->tok;
  s.n = d->ntok;
  /* one scan of the page instead of one per string */
  s.escapes = memchr(d->text, '\\', d->len) != NULL;
  /* An error past a complete first value is data after the document;
     check the value first, as json-c did. */
  if ((r < 0 || cut < d->len) && !(d->ntok > 0 && d->tok[0].end >= 0 &&
                                   jp.pos >= (unsigned)d->tok[0].end)) {
    if (r == JSMN_ERROR_INVAL)
      *why = invalid_why(d, &jp);
    else if (cut < d->len)
      *why = "nesting too deep";
    else
      *why = memchr(d->text, '\0', d->len) ? "unexpected end of data"
                                           : "truncated document";
    return CH_E_PROTOCOL;
  }
  if (d->ntok == 0) {
    *why = "truncated document";
    return CH_E_PROTOCOL;
  }
  p = skip_ws(&s, 0);
  if (check_value(&s, 0, &p, 0) < 0) {
    *why = s.why;
    return CH_E_PROTOCOL;
  }
  if (skip_tail(d->text, p, d->len) < d->len) {
    *why = "trailing data after the document";
    return CH_E_PROTOCOL;
  }
  return CH_OK;
}

/* Room for a token per 8 bytes of text: a page of records seldom needs
   more, so the array is rarely grown. */
static struct pj_doc *doc_new(size_t len) {
  size_t cap = len / 8 + 16;
  struct pj_doc *d;

  if (cap > INT_MAX / 4)
    cap = INT_MAX / 4;
  d = malloc(sizeof(*d) + cap * sizeof(jsmntok_t));
  if (d) {
    memset(d, 0, sizeof(*d));
    d->cap = (int)cap;
  }
  return d;
}

int pj_doc_parse(const char *text, size_t len, struct pj_doc **out,
                 const char **why) {
  struct pj_doc *d = doc_new(len);
  char *clean = NULL;
  size_t clen, bad;
  int rc;

  *out = NULL;
  if (!d || pj_utf8_scrub(text, len, &clean, &clen, &bad) ||
      (!clean && !(clean = malloc(len + 1)))) {
    free(d);
    *why = "out of memory";
    return CH_E_NOMEM;
  }
  if (!bad) {
    memcpy(clean, text, len);
    clean[len] = '\0';
  }
  d->text = clean;
  d->len = clen;
  d->replaced = bad;
  rc = doc_parse(&d, why);
  if (rc) {
    pj_doc_free(d);
    return rc;
  }
  *out = d;
  return CH_OK;
}

int pj_doc_take(const struct ch_host *host, struct ch_http_resp *resp,
                struct pj_doc **out, const char **why) {
  struct pj_doc *d = doc_new(resp->body_len);
  char *clean = NULL;
  size_t clen, bad;
  int rc;

  *out = NULL;
  if (!d || pj_utf8_scrub(resp->body, resp->body_len, &clean, &clen, &bad)) {
    free(d);
    host->http_free(resp);
    *why = "out of memory";
    return CH_E_NOMEM;
  }
  if (clean) {
    /* the doc reads its own copy; the body goes back now */
    host->http_free(resp);
    d->text = clean;
    d->len = clen;
    d->replaced = bad;
  } else {
    d->host = host;
    d->resp = *resp;
    memset(resp, 0, sizeof(*resp));
    d->text = d->resp.body;
    d->len = d->resp.body_len;
  }
  rc = doc_parse(&d, why);
  if (rc) {
    pj_doc_free(d);
    return rc;
  }
  *out = d;
  return CH_OK;
}

size_t pj_doc_replaced(const struct pj_doc *d) { return d ? d->replaced : 0; }

void pj_doc_free(struct pj_doc *d) {
  if (!d)
    return;
  if (d->host)
    d->host->http_free(&d->resp);
  else
    free(d->text);
  free(d);
}

/* ---- values -------------------------------------------------------------- */

static const jsmntok_t *tok_of(struct pj_val v) {
  return v.doc && v.i >= 0 && v.i < v.doc->ntok ? &v.doc->tok[v.i] : NULL;
}

static struct pj_val none(void) {
  struct pj_val v = {NULL, -1};
  return v;
}

struct pj_val pj_doc_root(struct pj_doc *d) {
  struct pj_val v = {d, d ? 0 : -1};
  return v;
}

enum pj_type pj_val_type(struct pj_val v) {
  const jsmntok_t *t = tok_of(v);

  if (!t)
    return PJ_NONE;
  switch (t->type) {
  case JSMN_OBJECT:
    return PJ_OBJ;
  case JSMN_ARRAY:
    return PJ_ARR;
  case JSMN_STRING:
    return PJ_STR;
  default:
    break;
  }
  switch (v.doc->text[t->start]) {
  case 'n':
    return PJ_NULL;
  case 't':
  case 'f':
    return PJ_BOOL;
  default:
    return PJ_NUM;
  }
}

size_t pj_val_len(struct pj_val v) {
  const jsmntok_t *t = tok_of(v);
  return t && (t->type == JSMN_OBJECT || t->type == JSMN_ARRAY)
             ? (size_t)t->size
             : 0;
}

struct pj_val pj_val_first(struct pj_val v) {
  const jsmntok_t *t = tok_of(v);
  struct pj_val c = {v.doc, v.i + 1};

  if (!t || (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY) || !t->size)
    return none();
  return c;
}

struct pj_val pj_val_next(struct pj_val v) {
  const jsmntok_t *t = tok_of(v);
  struct pj_val n = {v.doc, t ? t->parent : -1};

  return n.i >= 0 ? n : none();
}

struct pj_val pj_member_value(struct pj_val key) {
  struct pj_val v = {key.doc, key.i + 1};
  return tok_of(key) ? v : none();
}

struct pj_val pj_get(struct pj_val obj, const char *key) {
  const jsmntok_t *t = tok_of(obj);
  struct pj_val found = none();
  size_t n = strlen(key);

  if (!t || t->type != JSMN_OBJECT)
    return found;
  /* The last of repeated keys wins, as in json-c. */
  for (struct pj_val k = pj_val_first(obj); k.i >= 0; k = pj_val_next(k)) {
    const jsmntok_t *kt = &obj.doc->tok[k.i];
    if ((size_t)(kt->end - kt->start) == n &&
        memcmp(obj.doc->text + kt->start, key, n) == 0)
      found = pj_member_value(k);
  }
  return found;
}

const char *pj_val_str(struct pj_val v, size_t *len) {
  const jsmntok_t *t = tok_of(v);

  if (!t || t->type != JSMN_STRING)
    return NULL;
  if (len)
    *len = (size_t)(t->end - t->start);
  return v.doc->text + t->start;
}

int pj_val_bool(struct pj_val v, int def) {
  return pj_val_type(v) == PJ_BOOL ? v.doc->text[tok_of(v)->start] == 't' : def;
}

int pj_val_int(struct pj_val v, long long *out) {
  const jsmntok_t *t = tok_of(v);
  const char *p;
  size_t n;

  if (pj_val_type(v) != PJ_NUM)
    return 0;
  p = v.doc->text + t->start;
  n = (size_t)(t->end - t->start);
  /* An integer in json-c's sense: no fraction, no exponent. */
  for (size_t i = 0; i < n; i++)
    if (p[i] == '.' || p[i] == 'e' || p[i] == 'E')
      return 0;
  /* Out of range clamps, as json_object_get_int64 does. The number ends
     at a delimiter jsmn found, so strtoll stops there. */
  *out = strtoll(p, NULL, 10);
  return 1;
}

const char *pj_get_str(struct pj_val obj, const char *key) {
  return pj_val_str(pj_get(obj, key), NULL);
}

struct pj_val pj_get_arr(struct pj_val obj, const char *key) {
  struct pj_val v = pj_get(obj, key);
  return pj_val_type(v) == PJ_ARR ? v : none();
}

struct pj_val pj_get_obj(struct pj_val obj, const char *key) {
  struct pj_val v = pj_get(obj, key);
  return pj_val_type(v) == PJ_OBJ ? v : none();
}

int pj_get_bool(struct pj_val obj, const char *key, int def) {
  return pj_val_bool(pj_get(obj, key), def);
}

long long pj_get_int(struct pj_val obj, const char *key, long long def) {
  long long n;
  return pj_val_int(pj_get(obj, key), &n) ? n : def;
}

/* ---- back to text -------------------------------------------------------- */

int pj_buf_add_jstr(struct pj_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;

  if (pj_buf_addn(b, "\"", 1))
    return CH_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7] = "\\u00";
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    if (pj_buf_addn(b, s + run, i - run))
      return CH_E_NOMEM;
    run = i + 1;
    if (c == '"' || c == '\\') {
      esc[1] = (char)c;
      esc[2] = '\0';
    } else {
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      esc[6] = '\0';
    }
    if (pj_buf_add(b, esc))
      return CH_E_NOMEM;
  }
  if (pj_buf_addn(b, s + run, n - run) || pj_buf_addn(b, "\"", 1))
    return CH_E_NOMEM;
  return CH_OK;
}

int pj_buf_add_val(struct pj_buf *b, struct pj_val v) {
  const jsmntok_t *t = tok_of(v);
  int obj;

  if (!t)
    return pj_buf_add(b, "null");
  switch (t->type) {
  case JSMN_STRING:
    return pj_buf_add_jstr(b, v.doc->text + t->start,
                           (size_t)(t->end - t->start));
  case JSMN_PRIMITIVE:
    return pj_buf_addn(b, v.doc->text + t->start, (size_t)(t->end - t->start));
  default:
    break;
  }
  obj = t->type == JSMN_OBJECT;
  if (pj_buf_add(b, obj ? "{" : "["))
    return CH_E_NOMEM;
  for (struct pj_val c = pj_val_first(v); c.i >= 0; c = pj_val_next(c)) {
    if ((c.i != v.i + 1 && pj_buf_add(b, ",")) || pj_buf_add_val(b, c) ||
        (obj && (pj_buf_add(b, ":") || pj_buf_add_val(b, pj_member_value(c)))))
      return CH_E_NOMEM;
  }
  return pj_buf_add(b, obj ? "}" : "]");
}

int pj_buf_add_key(struct pj_buf *b, const char *key) {
  if (b->len && b->s[b->len - 1] != '{' && pj_buf_addn(b, ",", 1))
    return CH_E_NOMEM;
  if (pj_buf_add_jstr(b, key, strlen(key)) || pj_buf_addn(b, ":", 1))
    return CH_E_NOMEM;
  return CH_OK;
}
