/* SPDX-License-Identifier: MIT */
/* Values: paths against the config's directory, ${env:}/${file:}
   expansion through a wiping buffer, since values may be secrets
   (see config.h). */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg_int.h"

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

/* `len` bytes of [A-Za-z0-9_], at least one. */
static int word_chars(const char *s, size_t len) {
  if (!len)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_'))
      return 0;
  }
  return 1;
}

static int valid_env_name(const char *s, size_t len) {
  return word_chars(s, len) && !(s[0] >= '0' && s[0] <= '9');
}

/* Show a reference's type in an error only when it looks like one (a word),
   so a mangled inline secret never gets echoed. */
static int short_word(const char *s, size_t len) {
  return len <= 16 && word_chars(s, len);
}

static int expand_env(const struct cfg_node *n, const char *what,
                      const char *name, size_t len, struct buf *sb,
                      struct ch_err *err) {
  char var[256];
  const char *val;

  if (!valid_env_name(name, len) || len >= sizeof(var))
    return cfg_fail(
        err, n, "%s: '${env:%.*s}' is not a valid environment variable name",
        what, (int)(len > 64 ? 64 : len), name);
  memcpy(var, name, len);
  var[len] = '\0';
  val = getenv(var);
  if (!val)
    return cfg_fail(err, n, "%s: environment variable '%s' is not set", what,
                    var);
  if (buf_add(sb, val, strlen(val)))
    return cfg_nomem(err);
  return CH_OK;
}

static int expand_file(const struct config *c, const struct cfg_node *n,
                       const char *what, const char *arg, size_t len,
                       struct buf *sb, struct ch_err *err) {
  char *rel = NULL, *path = NULL, *data = NULL;
  size_t dlen = 0;
  int rc = CH_E_NOMEM;

  if (!len) {
    rc = cfg_fail(err, n, "%s: '${file:}' needs a path", what);
    goto out;
  }
  rel = strndup(arg, len);
  if (!rel) {
    rc = cfg_nomem(err);
    goto out;
  }
  path = config_path(c, rel);
  if (!path) {
    rc = cfg_nomem(err);
    goto out;
  }
  if (cfg_read_file(path, CFG_MAX_SECRET_FILE, &data, &dlen)) {
    rc = cfg_fail(err, n, "%s: cannot read file '%s': %s", what, path,
                  errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
    goto out;
  }
  if (memchr(data, '\0', dlen)) {
    rc = cfg_fail(err, n, "%s: file '%s' contains a NUL byte", what, path);
    goto out;
  }
  /* Editors and `echo` add one final newline; the value does not have it. */
  if (dlen && data[dlen - 1] == '\n') {
    dlen--;
    if (dlen && data[dlen - 1] == '\r')
      dlen--;
  }
  if (buf_add(sb, data, dlen)) {
    rc = cfg_nomem(err);
    goto out;
  }
  rc = CH_OK;
out:
  if (data) {
    buf_wipe_mem(data, dlen);
    free(data);
  }
  free(rel);
  free(path);
  return rc;
}

char *config_expand(const struct config *c, const struct cfg_node *n,
                    const char *what, int *secret, struct ch_err *err) {
  struct buf sb = {.wipe = 1};
  const char *p, *lit;
  char *result = NULL;
  int expanded = 0;

  if (secret)
    *secret = 0;
  if (!what)
    what = "value";
  if (n->kind != CFG_SCALAR) {
    cfg_fail(err, n, "%s must be a single value, not %s", what,
             cfg_kind_name(n->kind));
    goto out;
  }
  if (buf_add(&sb, "", 0)) {
    cfg_nomem(err);
    goto out;
  }
  p = lit = n->value;
  while (*p) {
    const char *ref, *end, *colon;

    if (p[0] != '$' || (p[1] != '{' && !(p[1] == '$' && p[2] == '{'))) {
      p++;
      continue;
    }
    if (buf_add(&sb, lit, (size_t)(p - lit))) {
      cfg_nomem(err);
      goto out;
    }
    if (p[1] == '$') { /* "$${" is a literal "${" */
      if (buf_add(&sb, "${", 2)) {
        cfg_nomem(err);
        goto out;
      }
      p += 3;
      lit = p;
      continue;
    }
    ref = p + 2;
    end = strchr(ref, '}');
    if (!end) {
      cfg_fail(
          err, n,
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
      cfg_fail(err, n,
               "%s: unknown reference '${%.*s:...}' (use ${env:NAME} or "
               "${file:PATH}, or '$${' for a literal '${')",
               what, (int)(colon - ref), ref);
      goto out;
    } else {
      cfg_fail(err, n,
               "%s: malformed '${...}' reference (use ${env:NAME} or "
               "${file:PATH}, or '$${' for a literal '${')",
               what);
      goto out;
    }
    expanded = 1;
    p = end + 1;
    lit = p;
  }
  if (buf_add(&sb, lit, (size_t)(p - lit))) {
    cfg_nomem(err);
    goto out;
  }
  if (secret)
    *secret = expanded;
  result = buf_take(&sb);
  if (!result)
    cfg_nomem(err);
out:
  buf_free(&sb);
  return result;
}
