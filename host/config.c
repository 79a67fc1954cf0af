/* SPDX-License-Identifier: MIT */
/* The YAML config: libyaml document -> located node tree -> tenant/instance
   model, ${env:}/${file:} expansion and option checks against a plugin. */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "options.h"
#include "util.h"

/* A config is small; the caps only stop a wrong path (a log file, a disk
   image) from being slurped into memory. */
#define CFG_MAX_FILE (16L * 1024 * 1024)
#define CFG_MAX_SECRET_FILE (1024L * 1024)
/* The node tree is built recursively; a config needs 5 levels. */
#define CFG_MAX_DEPTH 64

#define CH_VPRINTF(f) __attribute__((format(printf, f, 0)))

/* ---- errors ------------------------------------------------------------- */

static int fail_vat(struct ch_err *err, const char *file, unsigned line,
                    unsigned col, const char *fmt, va_list ap) CH_VPRINTF(5);
static int fail_vat(struct ch_err *err, const char *file, unsigned line,
                    unsigned col, const char *fmt, va_list ap) {
  int len;

  if (!err)
    return CH_E_CONFIG;
  err->code = CH_E_CONFIG;
  len = snprintf(err->msg, sizeof(err->msg), "%s:%u:%u: ", file, line, col);
  if (len >= 0 && (size_t)len < sizeof(err->msg))
    vsnprintf(err->msg + len, sizeof(err->msg) - (size_t)len, fmt, ap);
  return CH_E_CONFIG;
}

static int fail_at(struct ch_err *err, const char *file, unsigned line,
                   unsigned col, const char *fmt, ...) CH_PRINTF(5, 6);
static int fail_at(struct ch_err *err, const char *file, unsigned line,
                   unsigned col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_vat(err, file, line, col, fmt, ap);
  va_end(ap);
  return CH_E_CONFIG;
}

/* Every config error points at the node it is about. */
static int fail(struct ch_err *err, const struct cfg_node *n, const char *fmt,
                ...) CH_PRINTF(3, 4);
static int fail(struct ch_err *err, const struct cfg_node *n, const char *fmt,
                ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_vat(err, n->file, n->line, n->col, fmt, ap);
  va_end(ap);
  return CH_E_CONFIG;
}

static int nomem(struct ch_err *err) {
  return ch_err_set(err, CH_E_NOMEM, "out of memory");
}

/* ---- small helpers ------------------------------------------------------ */

/* Overwrite memory that held a secret before it goes back to malloc. */
static void wipe(void *p, size_t len) {
  volatile unsigned char *v = p;
  while (len--)
    *v++ = 0;
}

struct sbuf {
  char *p;
  size_t len, cap;
};

static int sb_add(struct sbuf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    char *p;
    while (cap < b->len + n + 1)
      cap *= 2;
    p = malloc(cap);
    if (!p)
      return -1;
    /* copy instead of realloc so no stray copy of a secret stays behind */
    if (b->p) {
      memcpy(p, b->p, b->len);
      wipe(b->p, b->cap);
      free(b->p);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static void sb_wipe_free(struct sbuf *b) {
  if (b->p) {
    wipe(b->p, b->cap);
    free(b->p);
  }
  b->p = NULL;
  b->len = b->cap = 0;
}

static int is_name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* Tenant and instance names end up in graph keys and log prefixes. */
static int valid_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++) {
    if (!is_name_char(*s))
      return 0;
  }
  return 1;
}

/* The loader's rule for plugin names; checked here to point at the line. */
static int valid_plugin_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return 0;
  }
  return 1;
}

static int ascii_ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z')
      x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = (char)(y - 'A' + 'a');
    if (x != y)
      return 0;
  }
  return *a == *b;
}

/* YAML's null: an empty plain value (`key:`), `~` or `null`. */
static int is_null(const struct cfg_node *n) {
  if (!n || n->kind != CFG_SCALAR || !n->plain)
    return 0;
  return !n->value[0] || strcmp(n->value, "~") == 0 ||
         strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
         strcmp(n->value, "NULL") == 0;
}

/* Decimal only: "010" is ten, not eight, and no "0x" surprises. */
static int parse_ll(const char *s, long long *out) {
  const char *p = s;
  long long v = 0;
  int neg = 0;

  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (!*p)
    return -1;
  for (; *p; p++) {
    int d;
    if (*p < '0' || *p > '9')
      return -1;
    d = *p - '0';
    if (v > (LLONG_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = neg ? -v : v;
  return 0;
}

static int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  for (size_t i = 0; i < 3; i++) {
    if (ascii_ieq(s, yes[i])) {
      *out = 1;
      return 0;
    }
    if (ascii_ieq(s, no[i])) {
      *out = 0;
      return 0;
    }
  }
  return -1;
}

/* "30", "2.5", "0.25" seconds -> milliseconds, without strtod's locale. */
static int parse_seconds_ms(const char *s, long max_s, long *out_ms) {
  long whole = 0, frac = 0, scale = 100;
  const char *p = s;

  if (*p < '0' || *p > '9')
    return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    whole = whole * 10 + (*p - '0');
    if (whole > max_s)
      return -1;
  }
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9')
      return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
      frac += (*p - '0') * scale;
      scale /= 10;
    }
  }
  if (*p)
    return -1;
  *out_ms = whole * 1000 + frac;
  if (*out_ms <= 0 || *out_ms > max_s * 1000)
    return -1;
  return 0;
}

int config_parse_duration(const char *s, long *out_ms) {
  static const struct {
    const char *suffix;
    long ms;
  } units[] = {{"ms", 1},       {"s", 1000},      {"m", 60000},
               {"h", 3600000L}, {"d", 86400000L}, {"", 1000}};
  size_t len = strlen(s), num = 0;
  char digits[32];
  long whole_ms;

  while (num < len && ((s[num] >= '0' && s[num] <= '9') || s[num] == '.'))
    num++;
  if (!num || num >= sizeof(digits))
    return -1;
  memcpy(digits, s, num);
  digits[num] = '\0';
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
    long max_s = 30L * 86400L * 1000L / units[u].ms; /* 30 days in all */
    if (strcmp(s + num, units[u].suffix) != 0)
      continue;
    /* parse_seconds_ms reads "N[.F]" as N.F thousandths of the unit */
    if (parse_seconds_ms(digits, max_s, &whole_ms))
      return -1;
    *out_ms = (long)((double)whole_ms * (double)units[u].ms / 1000.0);
    return *out_ms > 0 ? 0 : -1;
  }
  return -1;
}

/* http:// or https:// followed by a host; no spaces or control bytes. */
static int valid_url(const char *s) {
  const char *host;

  if (strncmp(s, "https://", 8) == 0)
    host = s + 8;
  else if (strncmp(s, "http://", 7) == 0)
    host = s + 7;
  else
    return 0;
  if (!*host || *host == '/' || *host == '?' || *host == '#')
    return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p <= 0x20 || *p == 0x7f)
      return 0;
  }
  return 1;
}

/* ---- the node tree ------------------------------------------------------ */

static void node_free(struct cfg_node *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->n; i++) {
    node_free(n->kids[i]);
    if (n->knodes)
      node_free(n->knodes[i]);
  }
  free(n->kids);
  free(n->knodes);
  free(n->keys); /* the strings belong to knodes[i]->value */
  free(n->value);
  free(n);
}

const struct cfg_node *cfg_get(const struct cfg_node *map, const char *key) {
  if (!map || map->kind != CFG_MAP)
    return NULL;
  for (size_t i = 0; i < map->n; i++) {
    if (strcmp(map->keys[i], key) == 0)
      return map->kids[i];
  }
  return NULL;
}

static const char *kind_name(enum cfg_kind k) {
  return k == CFG_MAP ? "a map" : k == CFG_SEQ ? "a list" : "a value";
}

struct builder {
  yaml_document_t *doc;
  const char *file;
  unsigned char *seen; /* per document node: already in the tree */
  size_t nnodes;
  struct ch_err *err;
};

static int build(struct builder *b, int index, unsigned depth,
                 struct cfg_node **out);

static int build_scalar(struct builder *b, const yaml_node_t *yn,
                        struct cfg_node *n) {
  size_t len = yn->data.scalar.length;

  /* "\0" in a double-quoted scalar would silently cut C strings short */
  if (memchr(yn->data.scalar.value, '\0', len))
    return fail(b->err, n, "text contains a NUL character");
  n->value = malloc(len + 1);
  if (!n->value)
    return nomem(b->err);
  memcpy(n->value, yn->data.scalar.value, len);
  n->value[len] = '\0';
  n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  return CH_OK;
}

static int build_seq(struct builder *b, const yaml_node_t *yn, unsigned depth,
                     struct cfg_node *n) {
  size_t count =
      (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
  int rc;

  n->kids = calloc(count ? count : 1, sizeof(*n->kids));
  if (!n->kids)
    return nomem(b->err);
  for (size_t i = 0; i < count; i++) {
    rc = build(b, yn->data.sequence.items.start[i], depth + 1, &n->kids[i]);
    if (rc)
      return rc;
    n->n++;
  }
  return CH_OK;
}

static int build_map(struct builder *b, const yaml_node_t *yn, unsigned depth,
                     struct cfg_node *n) {
  size_t count =
      (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
  struct cfg_node *key = NULL;
  int rc = CH_E_NOMEM;

  n->kids = calloc(count ? count : 1, sizeof(*n->kids));
  n->knodes = calloc(count ? count : 1, sizeof(*n->knodes));
  n->keys = calloc(count ? count : 1, sizeof(*n->keys));
  if (!n->kids || !n->knodes || !n->keys) {
    rc = nomem(b->err);
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    const yaml_node_pair_t *pair = &yn->data.mapping.pairs.start[i];
    rc = build(b, pair->key, depth + 1, &key);
    if (rc)
      goto out;
    if (key->kind != CFG_SCALAR) {
      rc = fail(b->err, key, "a map key must be text, not %s",
                kind_name(key->kind));
      goto out;
    }
    for (size_t j = 0; j < n->n; j++) {
      if (strcmp(n->keys[j], key->value) == 0) {
        rc = fail(b->err, key, "duplicate key '%s' (first defined at line %u)",
                  key->value, n->knodes[j]->line);
        goto out;
      }
    }
    rc = build(b, pair->value, depth + 1, &n->kids[i]);
    if (rc)
      goto out;
    n->knodes[i] = key;
    n->keys[i] = key->value;
    key = NULL;
    n->n++;
  }
  rc = CH_OK;
out:
  node_free(key);
  return rc;
}

static int build(struct builder *b, int index, unsigned depth,
                 struct cfg_node **out) {
  yaml_node_t *yn = yaml_document_get_node(b->doc, index);
  struct cfg_node *n = NULL;
  int rc = CH_E_CONFIG;

  *out = NULL;
  if (!yn || (size_t)index > b->nnodes)
    return ch_err_set(b->err, CH_E_CONFIG, "%s: broken YAML document", b->file);
  n = calloc(1, sizeof(*n));
  if (!n)
    return nomem(b->err);
  n->file = b->file;
  n->line = (unsigned)yn->start_mark.line + 1;
  n->col = (unsigned)yn->start_mark.column + 1;

  /* libyaml resolves an alias to the anchored node itself, so a node met a
     second time was reached through an alias. Rejecting them keeps the tree
     a tree (no cycles, no "billion laughs" blow-up) and every error points
     at one place. */
  if (b->seen[index - 1]) {
    rc = fail(b->err, n,
              "YAML aliases are not supported: the value anchored here is "
              "used again through an alias ('*'); write it out in full");
    goto out;
  }
  b->seen[index - 1] = 1;
  if (depth > CFG_MAX_DEPTH) {
    rc = fail(b->err, n, "nesting is deeper than %d levels", CFG_MAX_DEPTH);
    goto out;
  }

  switch (yn->type) {
  case YAML_SCALAR_NODE:
    n->kind = CFG_SCALAR;
    rc = build_scalar(b, yn, n);
    break;
  case YAML_SEQUENCE_NODE:
    n->kind = CFG_SEQ;
    rc = build_seq(b, yn, depth, n);
    break;
  case YAML_MAPPING_NODE:
    n->kind = CFG_MAP;
    rc = build_map(b, yn, depth, n);
    break;
  default:
    rc = fail(b->err, n, "unexpected empty YAML node");
    break;
  }
  if (rc)
    goto out;
  *out = n;
  n = NULL;
out:
  node_free(n);
  return rc;
}

/* libyaml's reader reports a byte offset, not a mark: count it out. */
static void offset_to_mark(const char *buf, size_t len, size_t off,
                           unsigned *line, unsigned *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off && i < len; i++) {
    if (buf[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

static int yaml_fail(struct ch_err *err, const char *file,
                     const yaml_parser_t *p, const char *buf, size_t len) {
  unsigned line, col;
  const char *problem = p->problem ? p->problem : "unknown error";

  if (p->error == YAML_MEMORY_ERROR)
    return nomem(err);
  if (p->error == YAML_READER_ERROR) {
    offset_to_mark(buf, len, p->problem_offset, &line, &col);
    return fail_at(err, file, line, col, "invalid YAML: %s", problem);
  }
  line = (unsigned)p->problem_mark.line + 1;
  col = (unsigned)p->problem_mark.column + 1;
  if (p->context)
    return fail_at(err, file, line, col, "invalid YAML: %s (%s)", problem,
                   p->context);
  return fail_at(err, file, line, col, "invalid YAML: %s", problem);
}

/* Read a whole file of at most `cap` bytes; `*len` excludes the NUL added
   at the end. Sets errno on failure (EFBIG when over the cap). */
static int read_file(const char *path, long cap, char **out, size_t *len) {
  FILE *f = NULL;
  struct sbuf sb = {0};
  char chunk[4096];
  size_t n = 0;
  int rc = -1;

  f = fopen(path, "rb");
  if (!f)
    goto out;
  if (sb_add(&sb, "", 0))
    goto out;
  do {
    errno = 0;
    n = fread(chunk, 1, sizeof(chunk), f);
    if (ferror(f)) {
      if (!errno)
        errno = EIO;
      goto out;
    }
    if (sb.len + n > (size_t)cap) {
      errno = EFBIG;
      goto out;
    }
    if (sb_add(&sb, chunk, n))
      goto out; /* errno is ENOMEM */
  } while (n == sizeof(chunk));
  *out = sb.p;
  *len = sb.len;
  sb.p = NULL;
  rc = 0;
out:
  wipe(chunk, sizeof(chunk));
  sb_wipe_free(&sb);
  if (f) {
    int saved = errno;
    fclose(f);
    errno = saved;
  }
  return rc;
}

/*
 * libyaml's scanner is quadratic in flow nesting (200 KB of '[' took 48 s),
 * so the depth limit is enforced on the bytes before it runs: '[' and '{'
 * outside quoted scalars and comments. A bracket inside a plain scalar
 * counts too, which can only make the check stricter than libyaml's.
 */
static int prescan_flow(const char *file, const char *buf, size_t len,
                        struct ch_err *err) {
  unsigned line = 1, col = 1, depth = 0;
  char quote = 0, prev = '\n';

  for (size_t i = 0; i < len; i++) {
    char ch = buf[i];
    if (quote) {
      if (quote == '"' && ch == '\\' && i + 1 < len) {
        i++;
        col++;
      } else if (ch == quote) {
        /* '' inside a single-quoted scalar is an escaped quote */
        if (quote == '\'' && i + 1 < len && buf[i + 1] == '\'') {
          i++;
          col++;
        } else {
          quote = 0;
        }
      }
    } else if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
      while (i + 1 < len && buf[i + 1] != '\n')
        i++;
    } else if ((ch == '"' || ch == '\'') && strchr(" \t\n[{,:-", prev)) {
      quote = ch;
    } else if (ch == '[' || ch == '{') {
      if (++depth > CFG_MAX_DEPTH)
        return fail_at(err, file, line, col,
                       "flow nesting ('[' and '{') is deeper than %d levels",
                       CFG_MAX_DEPTH);
    } else if ((ch == ']' || ch == '}') && depth) {
      depth--;
    }
    prev = ch;
    if (ch == '\n') {
      line++;
      col = 1;
    } else if (((unsigned char)ch & 0xC0) != 0x80) {
      col++;
    }
  }
  return CH_OK;
}

/* Parse `buf` into the node tree: exactly one document, not empty. */
static int parse_yaml(const char *file, const char *buf, size_t len,
                      struct cfg_node **root, struct ch_err *err) {
  yaml_parser_t parser;
  yaml_document_t doc;
  int parser_ok = 0;
  struct builder b = {0};
  yaml_node_t *top;
  int rc = CH_E_CONFIG;

  *root = NULL;
  memset(&doc, 0, sizeof(doc));
  if ((rc = prescan_flow(file, buf, len, err)))
    goto out;
  rc = CH_E_CONFIG;
  if (!yaml_parser_initialize(&parser)) {
    rc = nomem(err);
    goto out;
  }
  parser_ok = 1;
  yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);

  /* yaml_parser_load() leaves `doc` deleted (all zero) when it fails, so
     deleting it again at out: is harmless and covers the success path. */
  if (!yaml_parser_load(&parser, &doc)) {
    rc = yaml_fail(err, file, &parser, buf, len);
    goto out;
  }
  top = yaml_document_get_root_node(&doc);
  if (!top) {
    rc = fail_at(err, file, 1, 1,
                 "the config file is empty (it needs at least 'tenants')");
    goto out;
  }
  b.doc = &doc;
  b.file = file;
  b.err = err;
  b.nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
  b.seen = calloc(b.nnodes ? b.nnodes : 1, 1);
  if (!b.seen) {
    rc = nomem(err);
    goto out;
  }
  rc = build(&b, 1, 0, root);
  if (rc)
    goto out;

  /* A second "---" document would be silently ignored otherwise. */
  yaml_document_delete(&doc);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = yaml_fail(err, file, &parser, buf, len);
    goto out;
  }
  top = yaml_document_get_root_node(&doc);
  if (top) {
    rc = fail_at(err, file, (unsigned)top->start_mark.line + 1,
                 (unsigned)top->start_mark.column + 1,
                 "a second YAML document ('---') is not supported; put "
                 "everything in one document");
    goto out;
  }
  rc = CH_OK;
out:
  if (rc) {
    node_free(*root);
    *root = NULL;
  }
  free(b.seen);
  yaml_document_delete(&doc);
  if (parser_ok)
    yaml_parser_delete(&parser);
  return rc;
}

/* ---- paths and ${...} expansion ------------------------------------------ */

char *config_path(const struct config *c, const char *p) {
  size_t dlen, plen;
  char *out;

  if (p[0] == '/')
    return strdup(p);
  while (p[0] == '.' && p[1] == '/') {
    p += 2;
    while (*p == '/')
      p++;
  }
  if (!p[0] || strcmp(p, ".") == 0)
    return strdup(c->dir);
  dlen = strlen(c->dir);
  plen = strlen(p);
  out = malloc(dlen + plen + 2);
  if (!out)
    return NULL;
  memcpy(out, c->dir, dlen);
  if (dlen && c->dir[dlen - 1] != '/')
    out[dlen++] = '/';
  memcpy(out + dlen, p, plen + 1);
  return out;
}

static int valid_env_name(const char *s, size_t len) {
  if (!len || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_'))
      return 0;
  }
  return 1;
}

/* Show a reference's type in an error only when it looks like one (a word),
   so a mangled inline secret never gets echoed. */
static int short_word(const char *s, size_t len) {
  if (!len || len > 16)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_'))
      return 0;
  }
  return 1;
}

static int expand_env(const struct cfg_node *n, const char *what,
                      const char *name, size_t len, struct sbuf *sb,
                      struct ch_err *err) {
  char var[256];
  const char *val;

  if (!valid_env_name(name, len) || len >= sizeof(var))
    return fail(err, n,
                "%s: '${env:%.*s}' is not a valid environment variable name",
                what, (int)(len > 64 ? 64 : len), name);
  memcpy(var, name, len);
  var[len] = '\0';
  val = getenv(var);
  if (!val)
    return fail(err, n, "%s: environment variable '%s' is not set", what, var);
  if (sb_add(sb, val, strlen(val)))
    return nomem(err);
  return CH_OK;
}

static int expand_file(const struct config *c, const struct cfg_node *n,
                       const char *what, const char *arg, size_t len,
                       struct sbuf *sb, struct ch_err *err) {
  char *rel = NULL, *path = NULL, *data = NULL;
  size_t dlen = 0;
  int rc = CH_E_NOMEM;

  if (!len) {
    rc = fail(err, n, "%s: '${file:}' needs a path", what);
    goto out;
  }
  rel = strndup(arg, len);
  if (!rel) {
    rc = nomem(err);
    goto out;
  }
  path = config_path(c, rel);
  if (!path) {
    rc = nomem(err);
    goto out;
  }
  if (read_file(path, CFG_MAX_SECRET_FILE, &data, &dlen)) {
    rc = fail(err, n, "%s: cannot read file '%s': %s", what, path,
              errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
    goto out;
  }
  if (memchr(data, '\0', dlen)) {
    rc = fail(err, n, "%s: file '%s' contains a NUL byte", what, path);
    goto out;
  }
  /* Editors and `echo` add one final newline; the value does not have it. */
  if (dlen && data[dlen - 1] == '\n') {
    dlen--;
    if (dlen && data[dlen - 1] == '\r')
      dlen--;
  }
  if (sb_add(sb, data, dlen)) {
    rc = nomem(err);
    goto out;
  }
  rc = CH_OK;
out:
  if (data) {
    wipe(data, dlen);
    free(data);
  }
  free(rel);
  free(path);
  return rc;
}

char *config_expand(const struct config *c, const struct cfg_node *n,
                    const char *what, int *secret, struct ch_err *err) {
  struct sbuf sb = {0};
  const char *p, *lit;
  char *result = NULL;
  int expanded = 0;

  if (secret)
    *secret = 0;
  if (!what)
    what = "value";
  if (n->kind != CFG_SCALAR) {
    fail(err, n, "%s must be a single value, not %s", what, kind_name(n->kind));
    goto out;
  }
  if (sb_add(&sb, "", 0)) {
    nomem(err);
    goto out;
  }
  p = lit = n->value;
  while (*p) {
    const char *ref, *end, *colon;

    if (p[0] != '$' || (p[1] != '{' && !(p[1] == '$' && p[2] == '{'))) {
      p++;
      continue;
    }
    if (sb_add(&sb, lit, (size_t)(p - lit))) {
      nomem(err);
      goto out;
    }
    if (p[1] == '$') { /* "$${" is a literal "${" */
      if (sb_add(&sb, "${", 2)) {
        nomem(err);
        goto out;
      }
      p += 3;
      lit = p;
      continue;
    }
    ref = p + 2;
    end = strchr(ref, '}');
    if (!end) {
      fail(err, n,
           "%s: '${' without a closing '}' (write '$${' for a literal '${')",
           what);
      goto out;
    }
    colon = memchr(ref, ':', (size_t)(end - ref));
    if (colon && colon - ref == 3 && strncmp(ref, "env", 3) == 0) {
      if (expand_env(n, what, colon + 1, (size_t)(end - colon - 1), &sb, err))
        goto out;
    } else if (colon && colon - ref == 4 && strncmp(ref, "file", 4) == 0) {
      if (expand_file(c, n, what, colon + 1, (size_t)(end - colon - 1), &sb,
                      err))
        goto out;
    } else if (colon && short_word(ref, (size_t)(colon - ref))) {
      fail(err, n,
           "%s: unknown reference '${%.*s:...}' (use ${env:NAME} or "
           "${file:PATH}, or '$${' for a literal '${')",
           what, (int)(colon - ref), ref);
      goto out;
    } else {
      fail(err, n,
           "%s: malformed '${...}' reference (use ${env:NAME} or "
           "${file:PATH}, or '$${' for a literal '${')",
           what);
      goto out;
    }
    expanded = 1;
    p = end + 1;
    lit = p;
  }
  if (sb_add(&sb, lit, (size_t)(p - lit))) {
    nomem(err);
    goto out;
  }
  if (secret)
    *secret = expanded;
  result = sb.p;
  sb.p = NULL;
out:
  sb_wipe_free(&sb);
  return result;
}

/* ---- the model -------------------------------------------------------- */

static void instance_release(struct config_instance *ci) {
  free(ci->tenant);
  free(ci->name);
  free(ci->plugin);
}

void config_free(struct config *c) {
  if (!c)
    return;
  for (size_t t = 0; t < c->ntenants; t++) {
    struct config_tenant *tn = &c->tenants[t];
    for (size_t i = 0; i < tn->ninstances; i++)
      instance_release(&tn->instances[i]);
    free(tn->instances);
    free(tn->name);
  }
  free(c->tenants);
  node_free(c->root);
  free(c->path);
  free(c->dir);
  free(c->plugin_dir);
  free(c->output);
  free(c->format);
  free(c->serve_listen);
  free(c->serve_replica_id);
  if (c->serve_auth_token)
    wipe(c->serve_auth_token, strlen(c->serve_auth_token));
  free(c->serve_auth_token);
  free(c->store);
  free(c);
}

/* "<what>; did you mean 'y'? (<label>: a, b)". The list is never cut: when
   the message outgrows a ch_err, the list is logged on a line of its own
   ("<listed>: a, b") and the error points at it. `names` is a table whose
   rows start with a name, `stride` bytes apart. */
static int fail_unknown(struct ch_err *err, const struct cfg_node *key,
                        const char *what, const char *label, const char *listed,
                        const void *names, size_t n, size_t stride) {
  const char *near = util_closest(key->value, names, n, stride);
  char hint[160] = "";
  size_t len = sizeof("none");
  int head;
  char *list;

  if (near)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", near);
  for (size_t j = 0; j < n; j++)
    len += strlen(*(const char *const *)((const char *)names + j * stride)) + 2;
  list = malloc(len);
  if (!list)
    return nomem(err);
  strcpy(list, n ? "" : "none");
  for (size_t j = 0; j < n; j++) {
    if (j)
      strcat(list, ", ");
    strcat(list, *(const char *const *)((const char *)names + j * stride));
  }
  head = snprintf(NULL, 0, "%s:%u:%u: %s%s (%s: ", key->file, key->line,
                  key->col, what, hint, label);
  if (head < 0 || (size_t)head + strlen(list) + 2 > sizeof(err->msg)) {
    log_error("%s:%u:%u: %s: %s", key->file, key->line, key->col, listed, list);
    strcpy(list, "on the line above");
  }
  fail(err, key, "%s%s (%s: %s)", what, hint, label, list);
  free(list);
  return CH_E_CONFIG;
}

/* "unknown key 'x' in <where> (expected one of: a, b, c)" */
static int check_keys(const struct cfg_node *map, const char *const *allowed,
                      const char *where, struct ch_err *err) {
  size_t nallowed = 0;

  while (allowed[nallowed])
    nallowed++;
  for (size_t i = 0; i < map->n; i++) {
    char what[CH_ERR_MSG_SIZE], listed[CH_ERR_MSG_SIZE];
    int known = 0;

    for (size_t j = 0; j < nallowed; j++) {
      if (strcmp(map->keys[i], allowed[j]) == 0)
        known = 1;
    }
    if (known)
      continue;
    snprintf(what, sizeof(what), "unknown key '%s' in %s", map->keys[i], where);
    snprintf(listed, sizeof(listed), "the keys of %s", where);
    return fail_unknown(err, map->knodes[i], what, "expected one of", listed,
                        allowed, nallowed, sizeof(*allowed));
  }
  return CH_OK;
}

/* One host-level scalar, expanded. `name` is how errors call the key. */
static int host_text(const struct config *c, const struct cfg_node *n,
                     const char *name, char **out, struct ch_err *err) {
  char what[96];

  *out = NULL;
  if (n->kind != CFG_SCALAR)
    return fail(err, n, "'%s' must be a single value, not %s", name,
                kind_name(n->kind));
  snprintf(what, sizeof(what), "key '%s'", name);
  *out = config_expand(c, n, what, NULL, err);
  return *out ? CH_OK : err->code;
}

static int host_int(const struct config *c, const struct cfg_node *n,
                    const char *name, long long lo, long long hi, long *out,
                    struct ch_err *err) {
  char *text = NULL;
  long long v;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (parse_ll(text, &v))
    rc = fail(err, n, "'%s' must be an integer", name);
  else if (v < lo || v > hi)
    rc = fail(err, n, "'%s' must be between %lld and %lld", name, lo, hi);
  else
    *out = (long)v;
  free(text);
  return rc;
}

static int host_bool(const struct config *c, const struct cfg_node *n,
                     const char *name, int *out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (parse_bool(text, out))
    rc = fail(err, n, "'%s' must be true or false", name);
  free(text);
  return rc;
}

/* "80%" or 80: a share from 0 to 100 percent. */
static int host_percent(const struct config *c, const struct cfg_node *n,
                        const char *name, int *out, struct ch_err *err) {
  char *text = NULL;
  size_t len;
  long long v;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  len = strlen(text);
  if (len && text[len - 1] == '%')
    text[len - 1] = '\0';
  if (parse_ll(text, &v) || v < 0 || v > 100)
    rc =
        fail(err, n, "'%s' must be a share from 0%% to 100%%, like 80%%", name);
  else
    *out = (int)v;
  free(text);
  return rc;
}

static int host_path(const struct config *c, const struct cfg_node *n,
                     const char *name, char **out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (!text[0]) {
    rc = fail(err, n, "'%s' must not be empty", name);
  } else {
    *out = config_path(c, text);
    if (!*out)
      rc = nomem(err);
  }
  free(text);
  return rc;
}

static int host_seconds(const struct config *c, const struct cfg_node *n,
                        const char *name, long *out_ms, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (parse_seconds_ms(text, 86400, out_ms))
    rc = fail(err, n,
              "'%s' must be a number of seconds between 0.001 and 86400", name);
  free(text);
  return rc;
}

static int host_duration(const struct config *c, const struct cfg_node *n,
                         const char *name, long *out_ms, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, name, &text, err);

  if (rc)
    return rc;
  if (config_parse_duration(text, out_ms))
    rc = fail(err, n,
              "'%s' must be a duration such as 30s, 15m, 1h or 1d (at most "
              "30 days), not '%s'",
              name, text);
  free(text);
  return rc;
}

/* `schedule: {interval: 1h, jitter: 10%}`, host-wide or in a tenant. */
static int load_schedule(const struct config *c, const struct cfg_node *n,
                         const char *where, struct config_schedule *out,
                         struct ch_err *err) {
  static const char *const keys[] = {"interval", "jitter", NULL};
  const struct cfg_node *k;
  int rc;

  if (n->kind != CFG_MAP)
    return fail(err, n, "%s: 'schedule' must be a map (interval, jitter)",
                where);
  rc = check_keys(n, keys, "'schedule'", err);
  if (rc)
    return rc;
  k = cfg_get(n, "interval");
  if (k &&
      (rc = host_duration(c, k, "schedule.interval", &out->interval_ms, err)))
    return rc;
  k = cfg_get(n, "jitter");
  if (k) {
    char *text = NULL, *end = NULL;
    long v;
    rc = host_text(c, k, "schedule.jitter", &text, err);
    if (rc)
      return rc;
    v = strtol(text, &end, 10);
    if (end == text || strcmp(end, "%") != 0 || v < 0 || v > 100)
      rc = fail(err, k,
                "'schedule.jitter' must be a percentage of the interval "
                "from 0%% to 100%%, such as 10%%");
    else
      out->jitter_pct = (int)v;
    free(text);
  }
  return rc;
}

/* `serve: {listen, auth_token, shutdown_grace, replica_id, lease_expiry}`. */
static int load_serve(struct config *c, const struct cfg_node *n,
                      struct ch_err *err) {
  static const char *const keys[] = {"listen",         "auth_token",
                                     "shutdown_grace", "replica_id",
                                     "lease_expiry",   NULL};
  const struct cfg_node *k;
  int rc;

  if (is_null(n))
    return CH_OK;
  if (n->kind != CFG_MAP)
    return fail(err, n, "'serve' must be a map, not %s", kind_name(n->kind));
  rc = check_keys(n, keys, "'serve'", err);
  if (rc)
    return rc;
  k = cfg_get(n, "listen");
  if (k && (rc = host_text(c, k, "serve.listen", &c->serve_listen, err)))
    return rc;
  k = cfg_get(n, "auth_token");
  if (k) {
    rc = host_text(c, k, "serve.auth_token", &c->serve_auth_token, err);
    if (rc)
      return rc;
    if (strlen(c->serve_auth_token) < 16)
      return fail(err, k,
                  "'serve.auth_token' is too short: use at least 16 "
                  "characters (e.g. ${file:/run/secrets/connhost-token})");
    log_add_secret(c->serve_auth_token);
    if (k->kind == CFG_SCALAR && !strstr(k->value, "${"))
      log_warn("%s:%u:%u: 'serve.auth_token' is a secret written inline in "
               "the config; use ${env:NAME} or ${file:PATH} instead",
               k->file, k->line, k->col);
  }
  k = cfg_get(n, "shutdown_grace");
  if (k && (rc = host_duration(c, k, "serve.shutdown_grace", &c->serve_grace_ms,
                               err)))
    return rc;
  k = cfg_get(n, "replica_id");
  if (k &&
      (rc = host_text(c, k, "serve.replica_id", &c->serve_replica_id, err)))
    return rc;
  k = cfg_get(n, "lease_expiry");
  if (k &&
      (rc = host_duration(c, k, "serve.lease_expiry", &c->serve_lease_ms, err)))
    return rc;
  return CH_OK;
}

static int load_http(struct config *c, const struct cfg_node *http,
                     struct ch_err *err) {
  static const char *const keys[] = {"timeout_seconds",
                                     "connect_timeout_seconds", "max_attempts",
                                     "max_body_mb", NULL};
  const struct cfg_node *n;
  long v;
  int rc;

  if (is_null(http))
    return CH_OK;
  if (http->kind != CFG_MAP)
    return fail(err, http, "'http' must be a map, not %s",
                kind_name(http->kind));
  rc = check_keys(http, keys, "'http'", err);
  if (rc)
    return rc;
  n = cfg_get(http, "timeout_seconds");
  if (n && (rc = host_seconds(c, n, "http.timeout_seconds", &c->http_timeout_ms,
                              err)))
    return rc;
  n = cfg_get(http, "connect_timeout_seconds");
  if (n && (rc = host_seconds(c, n, "http.connect_timeout_seconds",
                              &c->http_connect_timeout_ms, err)))
    return rc;
  n = cfg_get(http, "max_attempts");
  if (n) {
    rc = host_int(c, n, "http.max_attempts", 1, 20, &v, err);
    if (rc)
      return rc;
    c->http_max_attempts = (int)v;
  }
  n = cfg_get(http, "max_body_mb");
  if (n) {
    /* 1 GiB keeps the byte count inside a 32-bit long */
    rc = host_int(c, n, "http.max_body_mb", 1, 1024, &v, err);
    if (rc)
      return rc;
    c->http_max_body_bytes = v * 1024L * 1024L;
  }
  return CH_OK;
}

/* `isolation: none | process` (host default or per instance). */
static int host_isolation(const struct config *c, const struct cfg_node *n,
                          enum config_isolation *out, struct ch_err *err) {
  char *text = NULL;
  int rc = host_text(c, n, "isolation", &text, err);

  if (rc)
    return rc;
  if (strcmp(text, "none") == 0)
    *out = CFG_ISOLATION_NONE;
  else if (strcmp(text, "process") == 0)
    *out = CFG_ISOLATION_PROCESS;
  else
    rc = fail(err, n, "'isolation' must be none or process, not '%s'", text);
  free(text);
  return rc;
}

static int load_instance(struct config *c, struct config_tenant *tn,
                         const struct cfg_node *knode,
                         const struct cfg_node *val, struct config_instance *ci,
                         struct ch_err *err) {
  static const char *const keys[] = {"plugin",    "enabled", "provisioning",
                                     "options",   "http",    "max_shrink",
                                     "isolation", "timeout", NULL};
  char where[300];
  const struct cfg_node *n;
  int rc;

  ci->enabled = 1;
  ci->max_shrink = -1;
  ci->node = val;
  ci->tenant = strdup(tn->name);
  ci->name = strdup(knode->value);
  if (!ci->tenant || !ci->name)
    return nomem(err);
  if (!valid_name(ci->name))
    return fail(err, knode,
                "instance name '%s' in tenant '%s' is not valid: use letters, "
                "digits, '_', '.' and '-'",
                ci->name, tn->name);
  snprintf(where, sizeof(where), "instance '%s/%s'", tn->name, ci->name);
  if (!is_null(val) && val->kind != CFG_MAP)
    return fail(err, val,
                "%s must be a map (plugin, enabled, provisioning, "
                "options, http, max_shrink, isolation, timeout), not %s",
                where, kind_name(val->kind));
  if (val->kind == CFG_MAP) {
    rc = check_keys(val, keys, where, err);
    if (rc)
      return rc;
  }

  n = cfg_get(val, "plugin");
  if (n) {
    rc = host_text(c, n, "plugin", &ci->plugin, err);
    if (rc)
      return rc;
    if (!valid_plugin_name(ci->plugin))
      return fail(err, n, "%s: plugin name must match [a-z0-9_]+", where);
  } else {
    if (!valid_plugin_name(ci->name))
      return fail(err, knode,
                  "%s: '%s' is not a plugin name ([a-z0-9_]+); add 'plugin:' "
                  "to say which plugin it uses",
                  where, ci->name);
    ci->plugin = strdup(ci->name);
    if (!ci->plugin)
      return nomem(err);
  }
  n = cfg_get(val, "enabled");
  if (n && (rc = host_bool(c, n, "enabled", &ci->enabled, err)))
    return rc;
  n = cfg_get(val, "provisioning");
  if (n && (rc = host_bool(c, n, "provisioning", &ci->provisioning, err)))
    return rc;
  n = cfg_get(val, "max_shrink");
  if (n && (rc = host_percent(c, n, "max_shrink", &ci->max_shrink, err)))
    return rc;
  n = cfg_get(val, "isolation");
  if (n && (rc = host_isolation(c, n, &ci->isolation, err)))
    return rc;
  n = cfg_get(val, "timeout");
  if (n && (rc = host_duration(c, n, "timeout", &ci->timeout_ms, err)))
    return rc;
  n = cfg_get(val, "options");
  if (n && !is_null(n)) {
    if (n->kind != CFG_MAP)
      return fail(err, n, "%s: 'options' must be a map, not %s", where,
                  kind_name(n->kind));
    ci->options = n;
  }
  /* checked against options_http_table when the instance is prepared */
  n = cfg_get(val, "http");
  if (n && !is_null(n)) {
    if (n->kind != CFG_MAP)
      return fail(err, n, "%s: 'http' must be a map, not %s", where,
                  kind_name(n->kind));
    ci->http = n;
  }
  return CH_OK;
}

static int load_tenant(struct config *c, const struct cfg_node *knode,
                       const struct cfg_node *val, struct config_tenant *tn,
                       struct ch_err *err) {
  int rc;

  tn->node = val;
  tn->schedule.jitter_pct = -1;
  tn->name = strdup(knode->value);
  if (!tn->name)
    return nomem(err);
  if (!valid_name(tn->name))
    return fail(err, knode,
                "tenant name '%s' is not valid: use letters, digits, '_', "
                "'.' and '-'",
                tn->name);
  if (is_null(val) || (val->kind == CFG_MAP && !val->n))
    return fail(err, knode, "tenant '%s' has no instances", tn->name);
  if (val->kind != CFG_MAP)
    return fail(err, val, "tenant '%s' must be a map of instance names, not %s",
                tn->name, kind_name(val->kind));
  tn->instances = calloc(val->n, sizeof(*tn->instances));
  if (!tn->instances)
    return nomem(err);
  for (size_t i = 0; i < val->n; i++) {
    /* `schedule` is the tenant's own schedule, not an instance */
    if (strcmp(val->keys[i], "schedule") == 0) {
      char where[300];
      snprintf(where, sizeof(where), "tenant '%s'", tn->name);
      rc = load_schedule(c, val->kids[i], where, &tn->schedule, err);
      if (rc)
        return rc;
      continue;
    }
    /* counted first so config_free releases a half-built instance */
    tn->ninstances++;
    rc = load_instance(c, tn, val->knodes[i], val->kids[i],
                       &tn->instances[tn->ninstances - 1], err);
    if (rc)
      return rc;
  }
  if (!tn->ninstances)
    return fail(err, knode, "tenant '%s' has no instances", tn->name);
  return CH_OK;
}

/* `store: PATH` or `store: postgresql://...` (default connhost.db beside
   the config; `none` turns the store off) and `keep_runs: N` (default 30). */
static int load_store(struct config *c, const struct cfg_node *root,
                      struct ch_err *err) {
  const struct cfg_node *n = cfg_get(root, "store");
  int rc;

  c->keep_runs = 30;
  if (!n) {
    c->store = config_path(c, "connhost.db");
    if (!c->store)
      return nomem(err);
  } else if (!(n->kind == CFG_SCALAR && n->plain &&
               strcmp(n->value, "none") == 0)) {
    char *text = NULL;
    /* a postgresql:// URL is not a path beside the config */
    rc = host_text(c, n, "store", &text, err);
    if (rc)
      return rc;
    if (!text[0])
      rc = fail(err, n, "'store' must not be empty");
    else if (!(c->store =
                   db_is_url(text) ? strdup(text) : config_path(c, text)))
      rc = nomem(err);
    free(text);
    if (rc)
      return rc;
  }
  n = cfg_get(root, "keep_runs");
  if (n && (rc = host_int(c, n, "keep_runs", 1, 100000, &c->keep_runs, err)))
    return rc;
  return CH_OK;
}

static int load_model(struct config *c, struct ch_err *err) {
  static const char *const keys[] = {
      "plugin_dir", "output",    "format",     "workers",
      "max_pages",  "http",      "max_shrink", "allow_insecure_plugin_dir",
      "isolation",  "tenants",   "schedule",   "serve",
      "store",      "keep_runs", NULL};
  const struct cfg_node *root = c->root, *n, *tenants;
  long v;
  int rc;

  if (root->kind != CFG_MAP)
    return fail(err, root, "the config must be a map of keys, not %s",
                kind_name(root->kind));
  rc = check_keys(root, keys, "the top-level map", err);
  if (rc)
    return rc;

  n = cfg_get(root, "plugin_dir");
  if (n && (rc = host_path(c, n, "plugin_dir", &c->plugin_dir, err)))
    return rc;
  n = cfg_get(root, "output");
  if (n && (rc = host_path(c, n, "output", &c->output, err)))
    return rc;
  n = cfg_get(root, "format");
  if (n) {
    rc = host_text(c, n, "format", &c->format, err);
    if (rc)
      return rc;
    if (strcmp(c->format, "json") != 0 && strcmp(c->format, "jsonl") != 0)
      return fail(err, n, "'format' must be json or jsonl");
  }
  n = cfg_get(root, "workers");
  if (n) {
    rc = host_int(c, n, "workers", 1, 256, &v, err);
    if (rc)
      return rc;
    c->workers = (int)v;
  }
  n = cfg_get(root, "max_pages");
  if (n &&
      (rc = host_int(c, n, "max_pages", 1, 1000000000L, &c->max_pages, err)))
    return rc;
  n = cfg_get(root, "http");
  if (n && (rc = load_http(c, n, err)))
    return rc;
  c->max_shrink = -1;
  n = cfg_get(root, "max_shrink");
  if (n && (rc = host_percent(c, n, "max_shrink", &c->max_shrink, err)))
    return rc;
  n = cfg_get(root, "allow_insecure_plugin_dir");
  if (n && (rc = host_bool(c, n, "allow_insecure_plugin_dir",
                           &c->allow_insecure_plugin_dir, err)))
    return rc;
  n = cfg_get(root, "isolation");
  if (n && (rc = host_isolation(c, n, &c->isolation, err)))
    return rc;
  c->schedule.jitter_pct = -1;
  n = cfg_get(root, "schedule");
  if (n && (rc = load_schedule(c, n, "the top-level map", &c->schedule, err)))
    return rc;
  n = cfg_get(root, "serve");
  if (n && (rc = load_serve(c, n, err)))
    return rc;
  rc = load_store(c, root, err);
  if (rc)
    return rc;

  tenants = cfg_get(root, "tenants");
  if (!tenants)
    return fail(err, root, "missing required key 'tenants'");
  if (is_null(tenants) || (tenants->kind == CFG_MAP && !tenants->n))
    return fail(err, tenants, "'tenants' is empty: add at least one tenant");
  if (tenants->kind != CFG_MAP)
    return fail(err, tenants, "'tenants' must be a map of tenant names, not %s",
                kind_name(tenants->kind));
  c->tenants = calloc(tenants->n, sizeof(*c->tenants));
  if (!c->tenants)
    return nomem(err);
  for (size_t i = 0; i < tenants->n; i++) {
    c->ntenants++;
    rc = load_tenant(c, tenants->knodes[i], tenants->kids[i], &c->tenants[i],
                     err);
    if (rc)
      return rc;
  }
  return CH_OK;
}

/* The absolute directory holding `path`, for resolving relative paths. */
static char *dir_of(const char *path) {
  char *dir = util_dirname(path), *abs;

  if (!dir)
    return NULL;
  abs = realpath(dir, NULL);
  free(dir);
  return abs;
}

int config_load(const char *path, struct config **out, struct ch_err *err) {
  struct config *c = NULL;
  struct ch_err spare;
  char *buf = NULL;
  size_t len = 0;
  int rc = CH_E_NOMEM;

  *out = NULL;
  if (!err)
    err = &spare;
  c = calloc(1, sizeof(*c));
  if (!c || !(c->path = strdup(path))) {
    rc = nomem(err);
    goto out;
  }
  if (read_file(path, CFG_MAX_FILE, &buf, &len)) {
    rc = ch_err_set(err, CH_E_CONFIG, "%s: cannot read config file: %s", path,
                    errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
    goto out;
  }
  c->dir = dir_of(path);
  if (!c->dir) {
    rc = ch_err_set(err, CH_E_CONFIG, "%s: cannot resolve its directory: %s",
                    path, strerror(errno));
    goto out;
  }
  rc = parse_yaml(c->path, buf, len, &c->root, err);
  if (rc)
    goto out;
  rc = load_model(c, err);
  if (rc)
    goto out;
  *out = c;
  c = NULL;
out:
  free(buf);
  config_free(c);
  return rc;
}

/* ---- options against a plugin's table ----------------------------------- */

/* Everything a config_options owns, freed in one sweep. */
struct opt_store {
  void **ptrs;
  size_t n, cap;
};

/* Take ownership of `p` (freed on failure too). */
static void *store_keep(struct opt_store *st, void *p) {
  if (!p)
    return NULL;
  if (st->n == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 16;
    void **grown = realloc(st->ptrs, cap * sizeof(*grown));
    if (!grown) {
      free(p);
      return NULL;
    }
    st->ptrs = grown;
    st->cap = cap;
  }
  st->ptrs[st->n++] = p;
  return p;
}

static char *store_strdup(struct opt_store *st, const char *s) {
  return store_keep(st, strdup(s));
}

void config_options_release(struct config_options *o) {
  struct opt_store *st;

  if (!o)
    return;
  st = o->storage;
  if (st) {
    for (size_t i = 0; i < st->n; i++)
      free(st->ptrs[i]);
    free(st->ptrs);
    free(st);
  }
  free(o->values);
  memset(o, 0, sizeof(*o));
}

static const char *type_name(enum ch_opt_type t) {
  switch (t) {
  case CH_OPT_INT:
    return "an integer";
  case CH_OPT_BOOL:
    return "true or false";
  case CH_OPT_LIST:
    return "a list";
  case CH_OPT_PATH:
    return "a path";
  case CH_OPT_URL:
    return "an http:// or https:// URL";
  case CH_OPT_NUMBER:
    return "a number";
  case CH_OPT_DURATION:
    return "a duration (30s, 500ms, 2m, 1h, or seconds)";
  case CH_OPT_STRING:
  default:
    return "text";
  }
}

/* Where an option's value came from, for its errors. */
struct opt_ctx {
  const struct config *c;
  const struct cfg_node *at; /* node errors point at */
  const struct ch_config_key *opt;
  struct opt_store *st;
  int from_default;
  const char *plugin;
  struct ch_err *err;
  const char *owner; /* "plugin 'x'" or "the 'http' block" */
};

static int opt_bad(struct opt_ctx *x) {
  if (x->from_default)
    return fail(x->err, x->at,
                "plugin '%s' declares an invalid default for option '%s' "
                "(it must be %s)",
                x->plugin, x->opt->name, type_name(x->opt->type));
  return fail(x->err, x->at, "option '%s' must be %s", x->opt->name,
              type_name(x->opt->type));
}

/* Split on commas, trim blanks, drop empty items. */
static int opt_add_items(struct opt_ctx *x, const char *text, char ***items,
                         size_t *n, size_t *cap) {
  const char *p = text;

  while (1) {
    const char *end = strchr(p, ',');
    const char *a = p, *b = end ? end : p + strlen(p);
    while (a < b && (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r'))
      a++;
    while (b > a &&
           (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
      b--;
    if (b > a) {
      if (*n + 2 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        char **grown = realloc(*items, ncap * sizeof(*grown));
        if (!grown)
          return nomem(x->err);
        *items = grown;
        *cap = ncap;
      }
      (*items)[*n] = store_keep(x->st, strndup(a, (size_t)(b - a)));
      if (!(*items)[*n])
        return nomem(x->err);
      (*n)++;
      (*items)[*n] = NULL;
    }
    if (!end)
      break;
    p = end + 1;
  }
  return CH_OK;
}

/* Fill `v` from one or more texts (several only for a YAML list). */
static int opt_set(struct opt_ctx *x, const char *const *texts, size_t ntexts,
                   struct ch_opt_value *v) {
  const char *text = ntexts ? texts[0] : "";
  char range[160];
  long long num;
  int b;

  switch (x->opt->type) {
  case CH_OPT_LIST: {
    char **items = NULL;
    size_t n = 0, cap = 0;
    struct sbuf joined = {0};
    int rc = CH_OK;

    for (size_t i = 0; i < ntexts && !rc; i++)
      rc = opt_add_items(x, texts[i], &items, &n, &cap);
    if (!rc && !items) {
      items = calloc(1, sizeof(*items));
      if (!items)
        rc = nomem(x->err);
    }
    /* `str` gets the items joined, handy for messages and debugging */
    for (size_t i = 0; !rc && i < n; i++) {
      if ((i && sb_add(&joined, ",", 1)) ||
          sb_add(&joined, items[i], strlen(items[i])))
        rc = nomem(x->err);
    }
    if (!rc && !store_keep(x->st, items)) {
      items = NULL; /* freed by store_keep */
      rc = nomem(x->err);
    }
    if (rc) {
      free(items);
      sb_wipe_free(&joined);
      return rc;
    }
    v->list = (const char *const *)items;
    v->nlist = n;
    v->str = store_keep(x->st, joined.p ? joined.p : strdup(""));
    if (!v->str)
      return nomem(x->err);
    break;
  }
  case CH_OPT_INT:
    if (parse_ll(text, &num))
      return opt_bad(x);
    v->num = num;
    v->str = store_strdup(x->st, text);
    break;
  case CH_OPT_BOOL:
    if (parse_bool(text, &b))
      return opt_bad(x);
    v->num = b;
    v->str = store_strdup(x->st, b ? "true" : "false");
    break;
  case CH_OPT_PATH:
    if (!text[0])
      return opt_bad(x);
    v->str = store_keep(x->st, config_path(x->c, text));
    break;
  case CH_OPT_URL:
    if (!valid_url(text))
      return opt_bad(x);
    v->str = store_strdup(x->st, text);
    break;
  case CH_OPT_NUMBER: {
    char *end = NULL;
    double d = strtod(text, &end);
    /* d - d is 0 only for finite values: no NaN or infinity. */
    if (end == text || *end || d - d != 0)
      return opt_bad(x);
    v->str = store_strdup(x->st, text);
    break;
  }
  case CH_OPT_DURATION:
    if (options_parse_duration(text, &num))
      return opt_bad(x);
    v->num = num;
    v->str = store_strdup(x->st, text);
    break;
  case CH_OPT_STRING:
    /* a required option is there to be used: "" is a config error */
    if (!text[0] && (x->opt->flags & CH_OPT_REQUIRED))
      return fail(x->err, x->at, "option '%s' must not be empty", x->opt->name);
    v->str = store_strdup(x->st, text);
    break;
  default:
    return fail(x->err, x->at, "plugin '%s': option '%s' has an unknown type",
                x->plugin, x->opt->name);
  }
  if (!v->str)
    return nomem(x->err);
  v->set = 1;
  if (options_check_range(x->opt, v, range, sizeof(range)))
    return fail(x->err, x->at, "%soption '%s' %s",
                x->from_default ? "default of " : "", x->opt->name, range);
  return CH_OK;
}

static void register_secret(const struct ch_opt_value *v) {
  log_add_secret(v->str);
  for (size_t i = 0; i < v->nlist; i++)
    log_add_secret(v->list[i]);
}

/* The password of "scheme://user:password@host/...", if there is one. */
static void register_url_password(const char *url) {
  const char *auth = url ? strstr(url, "://") : NULL;
  const char *end, *at = NULL, *colon;
  char *pw;

  if (!auth)
    return;
  auth += 3;
  end = auth + strcspn(auth, "/?#");
  for (const char *p = auth; p < end; p++) {
    if (*p == '@')
      at = p;
  }
  colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
  if (!colon)
    return;
  pw = strndup(colon + 1, (size_t)(at - colon - 1));
  log_add_secret(pw);
  free(pw);
}

/* An option given in the config: expand, type-check, register secrets. */
static int opt_from_node(struct opt_ctx *x, const struct cfg_node *n,
                         struct ch_opt_value *v, int *expanded) {
  char what[96];
  char **texts = NULL;
  size_t ntexts = 0;
  int rc = CH_E_CONFIG;

  *expanded = 0;
  snprintf(what, sizeof(what), "option '%s'", x->opt->name);
  if (n->kind == CFG_MAP ||
      (n->kind == CFG_SEQ && x->opt->type != CH_OPT_LIST)) {
    rc = fail(x->err, n, "option '%s' must be %s, not %s", x->opt->name,
              type_name(x->opt->type), kind_name(n->kind));
    goto out;
  }
  texts = calloc(n->kind == CFG_SEQ && n->n ? n->n : 1, sizeof(*texts));
  if (!texts) {
    rc = nomem(x->err);
    goto out;
  }
  if (n->kind == CFG_SEQ) {
    for (size_t i = 0; i < n->n; i++) {
      int sec = 0;
      if (n->kids[i]->kind != CFG_SCALAR) {
        rc = fail(x->err, n->kids[i],
                  "option '%s' must be a list of single values, not of %s",
                  x->opt->name, kind_name(n->kids[i]->kind));
        goto out;
      }
      texts[i] = config_expand(x->c, n->kids[i], what, &sec, x->err);
      if (!texts[i]) {
        rc = x->err->code;
        goto out;
      }
      ntexts++;
      *expanded |= sec;
    }
  } else {
    texts[0] = config_expand(x->c, n, what, expanded, x->err);
    if (!texts[0]) {
      rc = x->err->code;
      goto out;
    }
    ntexts = 1;
  }
  x->at = n;
  rc = opt_set(x, (const char *const *)texts, ntexts, v);
  if (rc)
    goto out;
  /* An expanded value may be a secret the plugin did not mark; but a URL
     option names a site, which dry runs and errors must show: of a URL
     only a password in it is a secret. */
  if (x->opt->flags & CH_OPT_SECRET)
    register_secret(v);
  else if (*expanded && x->opt->type == CH_OPT_URL)
    register_url_password(v->str);
  else if (*expanded)
    register_secret(v);
  rc = CH_OK;
out:
  for (size_t i = 0; i < ntexts; i++) {
    wipe(texts[i], strlen(texts[i]));
    free(texts[i]);
  }
  free(texts);
  return rc;
}

static void warn_inline_secret(const struct config_instance *ci,
                               const char *plugin, const struct cfg_node *n,
                               const char *name) {
  char prefix[300];

  snprintf(prefix, sizeof(prefix), "%s:%s/%s", plugin, ci->tenant, ci->name);
  log_msg(prefix, CH_LOG_WARN,
          "%s:%u:%u: option '%s' is a secret written inline in the config; "
          "use ${env:NAME} or ${file:PATH} instead",
          n->file, n->line, n->col, name);
}

static int unknown_option(const struct config_instance *ci,
                          const struct ch_config_key *table, size_t ntable,
                          const char *owner, const struct cfg_node *key,
                          struct ch_err *err) {
  char what[CH_ERR_MSG_SIZE], listed[128];

  snprintf(what, sizeof(what), "instance '%s/%s': unknown option '%s' for %s",
           ci->tenant, ci->name, key->value, owner);
  snprintf(listed, sizeof(listed), "%s knows these options", owner);
  return fail_unknown(err, key, what, "known options", listed, table, ntable,
                      sizeof(*table));
}

/* A ch_option table is a config map without bounds or offsets. */
int config_resolve_options(const struct config *c,
                           const struct config_instance *ci,
                           const struct ch_option *table,
                           const char *plugin_name, struct config_options *out,
                           struct ch_err *err) {
  struct ch_config_key *keys;
  char owner[128];
  size_t n = 0;
  int rc;

  while (table && table[n].name)
    n++;
  keys = calloc(n + 1, sizeof(*keys));
  if (!keys) {
    memset(out, 0, sizeof(*out));
    return nomem(err);
  }
  for (size_t i = 0; i < n; i++)
    keys[i] = (struct ch_config_key){CH_OPTION(table[i].name, table[i].type,
                                               table[i].flags, table[i].def,
                                               table[i].help)};
  snprintf(owner, sizeof(owner), "plugin '%s'",
           plugin_name ? plugin_name : ci->plugin);
  rc = config_resolve_block(c, ci, ci->options, keys, owner, out, err);
  free(keys);
  return rc;
}

int config_resolve_block(const struct config *c,
                         const struct config_instance *ci,
                         const struct cfg_node *opts,
                         const struct ch_config_key *table, const char *owner,
                         struct config_options *out, struct ch_err *err) {
  const char *plugin = ci->plugin;
  struct opt_store *st;
  struct ch_err spare;
  size_t ntable = 0;
  int rc = CH_E_NOMEM;

  memset(out, 0, sizeof(*out));
  if (!err)
    err = &spare;
  while (table && table[ntable].name)
    ntable++;
  st = calloc(1, sizeof(*st));
  out->storage = st;
  out->values = calloc(ntable ? ntable : 1, sizeof(*out->values));
  if (!st || !out->values) {
    rc = nomem(err);
    goto out;
  }
  out->n = ntable;

  for (size_t i = 0; opts && i < opts->n; i++) {
    size_t j = 0;
    while (j < ntable && strcmp(table[j].name, opts->keys[i]) != 0)
      j++;
    if (j == ntable) {
      rc = unknown_option(ci, table, ntable, owner, opts->knodes[i], err);
      goto out;
    }
  }

  for (size_t i = 0; i < ntable; i++) {
    const struct ch_config_key *opt = &table[i];
    struct ch_opt_value *v = &out->values[i];
    const struct cfg_node *n = cfg_get(opts, opt->name);
    struct opt_ctx x = {c, ci->node, opt, st, 0, plugin, err, owner};
    int expanded = 0;

    v->name = store_strdup(st, opt->name);
    if (!v->name) {
      rc = nomem(err);
      goto out;
    }
    /* `key:` with nothing after it means "not given": default or missing */
    if (n && !is_null(n)) {
      rc = opt_from_node(&x, n, v, &expanded);
      if (rc)
        goto out;
      if ((opt->flags & CH_OPT_SECRET) && !expanded)
        warn_inline_secret(ci, plugin, n, opt->name);
    } else if (opt->def) {
      x.from_default = 1;
      rc = opt_set(&x, &opt->def, 1, v);
      if (rc)
        goto out;
      if (opt->flags & CH_OPT_SECRET)
        register_secret(v);
    } else if (opt->flags & CH_OPT_REQUIRED) {
      rc = fail(err, ci->node,
                "instance '%s/%s': missing required option '%s' for %s",
                ci->tenant, ci->name, opt->name, owner);
      goto out;
    }
  }
  rc = CH_OK;
out:
  if (rc)
    config_options_release(out);
  return rc;
}
