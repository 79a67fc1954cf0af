/* SPDX-License-Identifier: MIT */
/* Instance options and blocks resolved against a declared key table:
   types, ranges, defaults, paths and secrets (see config.h). */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg_int.h"
#include "log.h"
#include "options.h"

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
  /* the host's own keys: named "key '<prefix><name>'" in errors, ranges
     in words, nothing registered as a secret; NULL for options */
  const char *prefix;
};

/* How errors name the key: "option 'x'", or "key 'http.x'". */
static const char *key_what(const struct opt_ctx *x, char *buf, size_t sz) {
  if (x->prefix)
    snprintf(buf, sz, "key '%s%s'", x->prefix, x->opt->name);
  else
    snprintf(buf, sz, "option '%s'", x->opt->name);
  return buf;
}

static int opt_bad(struct opt_ctx *x) {
  char what[160];

  if (x->from_default)
    return cfg_fail(x->err, x->at,
                    "plugin '%s' declares an invalid default for option '%s' "
                    "(it must be %s)",
                    x->plugin, x->opt->name, type_name(x->opt->type));
  return cfg_fail(x->err, x->at, "%s must be %s",
                  key_what(x, what, sizeof(what)), type_name(x->opt->type));
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
          return cfg_nomem(x->err);
        *items = grown;
        *cap = ncap;
      }
      (*items)[*n] = store_keep(x->st, strndup(a, (size_t)(b - a)));
      if (!(*items)[*n])
        return cfg_nomem(x->err);
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
  char range[160], what[160];
  long long num;
  int b;

  switch (x->opt->type) {
  case CH_OPT_LIST: {
    char **items = NULL;
    size_t n = 0, cap = 0;
    struct buf joined = {.wipe = 1};
    int rc = CH_OK;

    for (size_t i = 0; i < ntexts && !rc; i++)
      rc = opt_add_items(x, texts[i], &items, &n, &cap);
    if (!rc && !items) {
      items = calloc(1, sizeof(*items));
      if (!items)
        rc = cfg_nomem(x->err);
    }
    /* `str` gets the items joined, handy for messages and debugging */
    for (size_t i = 0; !rc && i < n; i++) {
      if ((i && buf_add(&joined, ",", 1)) ||
          buf_add(&joined, items[i], strlen(items[i])))
        rc = cfg_nomem(x->err);
    }
    if (!rc && !store_keep(x->st, items)) {
      items = NULL; /* freed by store_keep */
      rc = cfg_nomem(x->err);
    }
    if (rc) {
      free(items);
      buf_free(&joined);
      return rc;
    }
    v->list = (const char *const *)items;
    v->nlist = n;
    v->str = store_keep(x->st, buf_take(&joined));
    if (!v->str)
      return cfg_nomem(x->err);
    break;
  }
  case CH_OPT_INT:
    if (cfg_parse_ll(text, &num))
      return opt_bad(x);
    v->num = num;
    v->str = store_strdup(x->st, text);
    break;
  case CH_OPT_BOOL:
    if (cfg_parse_bool(text, &b))
      return opt_bad(x);
    v->num = b;
    v->str = store_strdup(x->st, b ? "true" : "false");
    break;
  case CH_OPT_PATH:
    if (!text[0])
      return cfg_fail(x->err, x->at, "%s must not be empty",
                      key_what(x, what, sizeof(what)));
    v->str = store_keep(x->st, config_path(x->c, text));
    break;
  case CH_OPT_URL:
    if (!cfg_valid_url(text))
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
      return cfg_fail(x->err, x->at, "%s must not be empty",
                      key_what(x, what, sizeof(what)));
    v->str = store_strdup(x->st, text);
    break;
  default:
    return cfg_fail(x->err, x->at,
                    "plugin '%s': option '%s' has an unknown type", x->plugin,
                    x->opt->name);
  }
  if (!v->str)
    return cfg_nomem(x->err);
  v->set = 1;
  if (x->prefix) {
    /* a host key's help is the noun of its range: "a number of seconds" */
    if (options_check_range_words(x->opt, v, x->opt->help ? x->opt->help : "",
                                  range, sizeof(range)))
      return cfg_fail(x->err, x->at, "%s %s", key_what(x, what, sizeof(what)),
                      range);
  } else if (options_check_range(x->opt, v, range, sizeof(range))) {
    return cfg_fail(x->err, x->at, "%soption '%s' %s",
                    x->from_default ? "default of " : "", x->opt->name, range);
  }
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
  key_what(x, what, sizeof(what));
  if (x->prefix && n->kind != CFG_SCALAR) {
    rc = cfg_fail(x->err, n, "%s must be a single value, not %s", what,
                  cfg_kind_name(n->kind));
    goto out;
  }
  if (n->kind == CFG_MAP ||
      (n->kind == CFG_SEQ && x->opt->type != CH_OPT_LIST)) {
    rc = cfg_fail(x->err, n, "option '%s' must be %s, not %s", x->opt->name,
                  type_name(x->opt->type), cfg_kind_name(n->kind));
    goto out;
  }
  texts = calloc(n->kind == CFG_SEQ && n->n ? n->n : 1, sizeof(*texts));
  if (!texts) {
    rc = cfg_nomem(x->err);
    goto out;
  }
  if (n->kind == CFG_SEQ) {
    for (size_t i = 0; i < n->n; i++) {
      int sec = 0;
      if (n->kids[i]->kind != CFG_SCALAR) {
        rc = cfg_fail(x->err, n->kids[i],
                      "option '%s' must be a list of single values, not of %s",
                      x->opt->name, cfg_kind_name(n->kids[i]->kind));
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
  if (x->prefix)
    ; /* the host registers its own secrets (serve.auth_token) */
  else if (x->opt->flags & CH_OPT_SECRET)
    register_secret(v);
  else if (*expanded && x->opt->type == CH_OPT_URL)
    register_url_password(v->str);
  else if (*expanded && !(x->opt->flags & CH_OPT_PUBLIC))
    register_secret(v);
  rc = CH_OK;
out:
  for (size_t i = 0; i < ntexts; i++) {
    buf_wipe_mem(texts[i], strlen(texts[i]));
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
  return cfg_fail_unknown(err, key, what, "known options", listed, table,
                          ntable, sizeof(*table));
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
    return cfg_nomem(err);
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

/* The engine's loop over one map: `ci` and `owner` for an instance's
   options or blocks, `where` and `prefix` (ci NULL) for host keys. */
struct resolve {
  const struct config *c;
  const struct config_instance *ci;
  const struct cfg_node *map;
  const struct ch_config_key *table;
  const char *owner;
  const char *where, *prefix;
};

/* A key of `r->map` that `r->table` does not declare, or NULL. */
static const struct cfg_node *unknown_key(const struct resolve *r,
                                          size_t ntable) {
  for (size_t i = 0; r->map && i < r->map->n; i++) {
    size_t j = 0;
    while (j < ntable && strcmp(r->table[j].name, r->map->keys[i]) != 0)
      j++;
    if (j == ntable)
      return r->map->knodes[i];
  }
  return NULL;
}

static int unknown_host_key(const struct resolve *r, size_t ntable,
                            const struct cfg_node *key, struct ch_err *err) {
  char what[CH_ERR_MSG_SIZE], listed[CH_ERR_MSG_SIZE];

  snprintf(what, sizeof(what), "unknown key '%s' in %s", key->value, r->where);
  snprintf(listed, sizeof(listed), "the keys of %s", r->where);
  return cfg_fail_unknown(err, key, what, "expected one of", listed, r->table,
                          ntable, sizeof(*r->table));
}

static int resolve(const struct resolve *r, struct config_options *out,
                   struct ch_err *err) {
  const struct config_instance *ci = r->ci;
  const char *plugin = ci ? ci->plugin : NULL;
  const struct cfg_node *at = ci ? ci->node : r->map, *bad;
  struct opt_store *st;
  struct ch_err spare;
  size_t ntable = 0;
  int rc = CH_E_NOMEM;

  memset(out, 0, sizeof(*out));
  if (!err)
    err = &spare;
  while (r->table && r->table[ntable].name)
    ntable++;
  st = calloc(1, sizeof(*st));
  out->storage = st;
  out->values = calloc(ntable ? ntable : 1, sizeof(*out->values));
  if (!st || !out->values) {
    rc = cfg_nomem(err);
    goto out;
  }
  out->n = ntable;

  if ((bad = unknown_key(r, ntable))) {
    rc = ci ? unknown_option(ci, r->table, ntable, r->owner, bad, err)
            : unknown_host_key(r, ntable, bad, err);
    goto out;
  }

  for (size_t i = 0; i < ntable; i++) {
    const struct ch_config_key *opt = &r->table[i];
    struct ch_opt_value *v = &out->values[i];
    const struct cfg_node *n = cfg_get(r->map, opt->name);
    struct opt_ctx x = {r->c, at, opt, st, 0, plugin, err, r->owner, r->prefix};
    int expanded = 0;

    v->name = store_strdup(st, opt->name);
    if (!v->name) {
      rc = cfg_nomem(err);
      goto out;
    }
    if (opt->flags & CFG_KEY_BLOCK)
      continue; /* a map of its own, the caller's */
    /* `key:` with nothing after it means "not given": default or missing */
    if (n && !cfg_is_null(n)) {
      rc = opt_from_node(&x, n, v, &expanded);
      if (rc)
        goto out;
      if ((opt->flags & CH_OPT_SECRET) && !expanded && ci)
        warn_inline_secret(ci, plugin, n, opt->name);
    } else if (opt->def) {
      x.from_default = 1;
      rc = opt_set(&x, &opt->def, 1, v);
      if (rc)
        goto out;
      if ((opt->flags & CH_OPT_SECRET) && ci)
        register_secret(v);
    } else if ((opt->flags & CH_OPT_REQUIRED) && ci) {
      rc = cfg_fail(err, ci->node,
                    "instance '%s/%s': missing required option '%s' for %s",
                    ci->tenant, ci->name, opt->name, r->owner);
      goto out;
    } else if (opt->flags & CH_OPT_REQUIRED) {
      rc = cfg_fail(err, at, "missing required key '%s%s'",
                    r->prefix ? r->prefix : "", opt->name);
      goto out;
    }
  }
  rc = CH_OK;
out:
  if (rc)
    config_options_release(out);
  return rc;
}

int config_resolve_block(const struct config *c,
                         const struct config_instance *ci,
                         const struct cfg_node *opts,
                         const struct ch_config_key *table, const char *owner,
                         struct config_options *out, struct ch_err *err) {
  const struct resolve r = {c, ci, opts, table, owner, NULL, NULL};

  return resolve(&r, out, err);
}

int cfg_resolve_host(const struct config *c, const struct cfg_node *map,
                     const struct ch_config_key *table, const char *where,
                     const char *prefix, struct config_options *out,
                     struct ch_err *err) {
  const struct resolve r = {c, NULL, map, table, NULL, where, prefix};

  return resolve(&r, out, err);
}
