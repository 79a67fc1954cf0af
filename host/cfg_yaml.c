/* SPDX-License-Identifier: MIT */
/* YAML loading: the whole file, the flow-nesting prescan and libyaml's
   document turned into the located node tree (see cfg_int.h). */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "buf.h"
#include "cfg_int.h"

/* ---- the node tree ------------------------------------------------------ */

void cfg_node_free(struct cfg_node *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->n; i++) {
    cfg_node_free(n->kids[i]);
    if (n->knodes)
      cfg_node_free(n->knodes[i]);
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

const char *cfg_kind_name(enum cfg_kind k) {
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
    return cfg_fail(b->err, n, "text contains a NUL character");
  n->value = malloc(len + 1);
  if (!n->value)
    return cfg_nomem(b->err);
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
    return cfg_nomem(b->err);
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
    rc = cfg_nomem(b->err);
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    const yaml_node_pair_t *pair = &yn->data.mapping.pairs.start[i];
    rc = build(b, pair->key, depth + 1, &key);
    if (rc)
      goto out;
    if (key->kind != CFG_SCALAR) {
      rc = cfg_fail(b->err, key, "a map key must be text, not %s",
                    cfg_kind_name(key->kind));
      goto out;
    }
    for (size_t j = 0; j < n->n; j++) {
      if (strcmp(n->keys[j], key->value) == 0) {
        rc = cfg_fail(b->err, key,
                      "duplicate key '%s' (first defined at line %u)",
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
  cfg_node_free(key);
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
    return cfg_nomem(b->err);
  n->file = b->file;
  n->line = (unsigned)yn->start_mark.line + 1;
  n->col = (unsigned)yn->start_mark.column + 1;

  /* libyaml resolves an alias to the anchored node itself, so a node met a
     second time was reached through an alias. Rejecting them keeps the tree
     a tree (no cycles, no "billion laughs" blow-up) and every error points
     at one place. */
  if (b->seen[index - 1]) {
    rc = cfg_fail(b->err, n,
                  "YAML aliases are not supported: the value anchored here is "
                  "used again through an alias ('*'); write it out in full");
    goto out;
  }
  b->seen[index - 1] = 1;
  if (depth > CFG_MAX_DEPTH) {
    rc = cfg_fail(b->err, n, "nesting is deeper than %d levels", CFG_MAX_DEPTH);
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
    rc = cfg_fail(b->err, n, "unexpected empty YAML node");
    break;
  }
  if (rc)
    goto out;
  *out = n;
  n = NULL;
out:
  cfg_node_free(n);
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
    return cfg_nomem(err);
  if (p->error == YAML_READER_ERROR) {
    offset_to_mark(buf, len, p->problem_offset, &line, &col);
    return cfg_fail_at(err, file, line, col, "invalid YAML: %s", problem);
  }
  line = (unsigned)p->problem_mark.line + 1;
  col = (unsigned)p->problem_mark.column + 1;
  if (p->context)
    return cfg_fail_at(err, file, line, col, "invalid YAML: %s (%s)", problem,
                       p->context);
  return cfg_fail_at(err, file, line, col, "invalid YAML: %s", problem);
}

/* Read a whole file of at most `cap` bytes; `*len` excludes the NUL added
   at the end. Sets errno on failure (EFBIG when over the cap). */
int cfg_read_file(const char *path, long cap, char **out, size_t *len) {
  FILE *f = NULL;
  struct buf sb = {.wipe = 1};
  char chunk[4096];
  size_t n = 0;
  int rc = -1;

  f = fopen(path, "rb");
  if (!f)
    goto out;
  if (buf_add(&sb, "", 0))
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
    if (buf_add(&sb, chunk, n))
      goto out; /* errno is ENOMEM */
  } while (n == sizeof(chunk));
  *len = sb.len;
  *out = buf_take(&sb);
  rc = 0;
out:
  buf_wipe_mem(chunk, sizeof(chunk));
  buf_free(&sb);
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
        return cfg_fail_at(
            err, file, line, col,
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
int cfg_parse_yaml(const char *file, const char *buf, size_t len,
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
    rc = cfg_nomem(err);
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
    rc = cfg_fail_at(err, file, 1, 1,
                     "the config file is empty (it needs at least 'tenants')");
    goto out;
  }
  b.doc = &doc;
  b.file = file;
  b.err = err;
  b.nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
  b.seen = calloc(b.nnodes ? b.nnodes : 1, 1);
  if (!b.seen) {
    rc = cfg_nomem(err);
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
    rc = cfg_fail_at(err, file, (unsigned)top->start_mark.line + 1,
                     (unsigned)top->start_mark.column + 1,
                     "a second YAML document ('---') is not supported; put "
                     "everything in one document");
    goto out;
  }
  rc = CH_OK;
out:
  if (rc) {
    cfg_node_free(*root);
    *root = NULL;
  }
  free(b.seen);
  yaml_document_delete(&doc);
  if (parser_ok)
    yaml_parser_delete(&parser);
  return rc;
}
