/* SPDX-License-Identifier: MIT */
/* Plugin loader: dlopen from the plugin directory only, by a validated name,
   with every ABI check done before the descriptor is trusted. */
#include "autoconfig.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"
#include "loader_int.h"
#include "options.h"

#define NAME_MAX_LEN 64

static const char *const opt_type_names[] = {
    "", "string", "int", "bool", "list", "path", "url", "number", "duration"};

int loader_valid_name(const char *name) {
  size_t n = 0;
  if (!name || !*name)
    return 0;
  for (const char *p = name; *p; p++, n++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
      return 0;
  }
  return n <= NAME_MAX_LEN;
}

int registry_init(struct registry *r, const char *dir, struct ch_err *err) {
  struct stat st;

  memset(r, 0, sizeof(*r));
  r->dirfd = -1;
  if (stat(dir, &st) != 0)
    return ch_err_set(err, CH_E_CONFIG, "plugin directory '%s': %s", dir,
                      strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return ch_err_set(err, CH_E_CONFIG,
                      "plugin directory '%s' is not a directory", dir);
  r->dir = strdup(dir);
  return r->dir ? CH_OK : ch_err_set(err, CH_E_NOMEM, "out of memory");
}

static void plugin_free(struct plugin *p) {
  if (!p)
    return;
  for (size_t i = 0; p->ents && i < p->ntypes; i++)
    free(p->ents[i]);
  free(p->ents);
  free(p->types);
  free(p->options);
  free(p->keys);
  free(p->actions);
  if (p->dl)
    dlclose(p->dl);
  free(p->name);
  free(p->path);
  free(p);
}

void registry_release(struct registry *r) {
  for (size_t i = 0; i < r->n; i++)
    plugin_free(r->items[i]);
  free(r->items);
  free(r->dir);
  if (r->dirfd >= 0)
    close(r->dirfd);
  memset(r, 0, sizeof(*r));
  r->dirfd = -1;
}

/* The plugin directory, opened and checked at the first load (after
   allow_insecure is known) and kept: every plugin comes from it. */
static int registry_open_dir(struct registry *r, struct ch_err *err) {
  if (r->dirfd >= 0)
    return CH_OK;
  return trust_open_dir(r->dir, !r->allow_insecure, &r->dirfd, err);
}

const struct ch_resource_type *plugin_type(const struct ch_plugin *p,
                                           const char *id) {
  for (const struct ch_resource_type *t = p->types; t && t->id; t++) {
    if (strcmp(t->id, id) == 0)
      return t;
  }
  return NULL;
}

const struct ch_entitlement_def *
plugin_entitlement(const struct ch_resource_type *t, const char *slug) {
  for (const struct ch_entitlement_def *e = t->entitlements; e && e->slug;
       e++) {
    if (strcmp(e->slug, slug) == 0)
      return e;
  }
  return NULL;
}

const struct ch_action_def *plugin_action(const struct ch_plugin *p,
                                          const char *name) {
  for (const struct ch_action_def *a = p->actions; a && a->name; a++) {
    if (strcmp(a->name, name) == 0)
      return a;
  }
  return NULL;
}

int plugin_list_has(const char *const *list, const char *type) {
  for (; list && *list; list++) {
    if (strcmp(*list, type) == 0)
      return 1;
  }
  return 0;
}

/* A 1.0 element's stride: its fields padded to the structure's alignment,
   which is what sizeof gave before any field was appended (appended
   fields never need a stricter alignment: docs/plugin-abi.md). */
#define V10_SIZE(type, v1)                                                     \
  (((v1) + _Alignof(type) - 1) / _Alignof(type) * _Alignof(type))

/* Nothing sane is this big; a larger size is a corrupt descriptor. */
#define LAYOUT_MAX 4096u

/* Where each layout size lives in a descriptor and in struct
   plugin_layout, and its ABI 1 bounds. */
static const struct layout_field {
  size_t in_desc, in_layout, v1, v10;
  const char *what;
} layout_fields[] = {
#define LF(f, type, v1)                                                        \
  {                                                                            \
    offsetof(struct ch_plugin, f##_size), offsetof(struct plugin_layout, f),   \
        v1, V10_SIZE(type, v1), #f "_size"                                     \
  }
    LF(option, struct ch_option, CH_OPTION_SIZE_V1),
    LF(type, struct ch_resource_type, CH_TYPE_SIZE_V1),
    LF(entitlement, struct ch_entitlement_def, CH_ENTITLEMENT_SIZE_V1),
    LF(action, struct ch_action_def, CH_ACTION_SIZE_V1),
    LF(resource, struct ch_resource, CH_RESOURCE_SIZE_V1),
    LF(grant, struct ch_grant, CH_GRANT_SIZE_V1),
    LF(http_req, struct ch_http_req, CH_HTTP_REQ_SIZE_V1),
    LF(http_resp, struct ch_http_resp, CH_HTTP_RESP_SIZE_V1),
    LF(http_conf, struct ch_http_conf, CH_HTTP_CONF_SIZE_V1),
    LF(config_key, struct ch_config_key, CH_CONFIG_KEY_SIZE_V1),
#undef LF
};

/* Each table is walked by its first field, a string that is NULL in the
   terminator. */
_Static_assert(offsetof(struct ch_option, name) == 0, "option name first");
_Static_assert(offsetof(struct ch_resource_type, id) == 0, "type id first");
_Static_assert(offsetof(struct ch_entitlement_def, slug) == 0, "slug first");
_Static_assert(offsetof(struct ch_action_def, name) == 0, "action name first");

/* The plugin's layout sizes; a 1.0 descriptor (or a 0) means 1.0 sizes. */
static int read_layout(const struct ch_plugin *d, const char *path,
                       struct plugin_layout *out, struct ch_err *err) {
  for (size_t i = 0; i < sizeof(layout_fields) / sizeof(layout_fields[0]);
       i++) {
    const struct layout_field *f = &layout_fields[i];
    uint32_t n = 0;

    if (d->size >= f->in_desc + sizeof(n))
      memcpy(&n, (const char *)d + f->in_desc, sizeof(n));
    if (n == 0)
      n = (uint32_t)f->v10;
    if (n < f->v1 || n > LAYOUT_MAX)
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: descriptor %s %u is outside ABI %u's %zu..%u "
                        "bytes: the plugin is corrupt or built for another "
                        "host",
                        path, f->what, n, CH_PLUGIN_ABI, f->v1, LAYOUT_MAX);
    memcpy((char *)out + f->in_layout, &n, sizeof(n));
  }
  return CH_OK;
}

/* Copy a NULL-first-field-terminated plugin table of `stride`-byte
   elements into `size`-byte host elements (the part past `stride` zero),
   terminator included. A NULL table stays NULL. */
static int copy_table(const void *src, size_t stride, size_t size, void **out,
                      size_t *count) {
  const unsigned char *in = src;
  unsigned char *dst;
  const char *first;
  size_t n = 0;

  *out = NULL;
  if (count)
    *count = 0;
  if (!src)
    return CH_OK;
  for (;; n++) {
    memcpy(&first, in + n * stride, sizeof(first));
    if (!first)
      break;
  }
  dst = calloc(n + 1, size);
  if (!dst)
    return CH_E_NOMEM;
  for (size_t i = 0; i < n; i++)
    memcpy(dst + i * size, in + i * stride, stride < size ? stride : size);
  *out = dst;
  if (count)
    *count = n;
  return CH_OK;
}

/* The options both ways: as config keys (the host's engine) and as
   ch_option (the descriptor copy), from whichever table the plugin has. */
static int copy_options(struct plugin *p, const struct ch_plugin *d,
                        struct ch_err *err) {
  const struct ch_config_key *map =
      CH_PLUGIN_HAS(d, config_map) ? d->config_map : NULL;
  int rc;

  if (map && d->options)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s: descriptor sets both options and config_map: keep "
                      "config_map",
                      p->path);
  /* Each way copies only the fields the target has: a ch_option element
     of a later build may carry fields that are not a config key's. */
  if (map) {
    rc = copy_table(map, p->layout.config_key, sizeof(*p->keys),
                    (void **)&p->keys, &p->nkeys);
    if (rc == CH_OK && p->keys)
      rc = copy_table(p->keys, sizeof(*p->keys), sizeof(*p->options),
                      (void **)&p->options, NULL);
  } else {
    rc = copy_table(d->options, p->layout.option, sizeof(*p->options),
                    (void **)&p->options, NULL);
    if (rc == CH_OK && p->options)
      rc = copy_table(p->options, sizeof(*p->options), sizeof(*p->keys),
                      (void **)&p->keys, &p->nkeys);
  }
  return rc == CH_OK ? CH_OK : ch_err_set(err, rc, "out of memory");
}

/* Take the host's copy of descriptor `d` and its tables (see loader.h). */
static int adopt_descriptor(struct plugin *p, const struct ch_plugin *d,
                            const char *path, struct ch_err *err) {
  const struct plugin_layout *l = &p->layout;
  int rc = read_layout(d, path, &p->layout, err);

  if (rc != CH_OK)
    return rc;
  memcpy(&p->copy, d, d->size < sizeof(p->copy) ? d->size : sizeof(p->copy));
  if (copy_options(p, d, err) != CH_OK)
    return err->code;
  if (copy_table(d->types, l->type, sizeof(*p->types), (void **)&p->types,
                 &p->ntypes) != CH_OK ||
      copy_table(d->actions, l->action, sizeof(*p->actions),
                 (void **)&p->actions, NULL) != CH_OK)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  p->ents = calloc(p->ntypes ? p->ntypes : 1, sizeof(*p->ents));
  if (!p->ents)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  for (size_t i = 0; i < p->ntypes; i++) {
    if (copy_table(p->types[i].entitlements, l->entitlement, sizeof(**p->ents),
                   (void **)&p->ents[i], NULL) != CH_OK)
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
    p->types[i].entitlements = p->ents[i];
  }
  p->copy.options = p->options;
  p->copy.types = p->types;
  p->copy.actions = p->actions;
  p->copy.option_size = sizeof(struct ch_option);
  p->copy.type_size = sizeof(struct ch_resource_type);
  p->copy.entitlement_size = sizeof(struct ch_entitlement_def);
  p->copy.action_size = sizeof(struct ch_action_def);
  p->copy.config_map = NULL; /* the host reads p->keys */
  p->copy.config_key_size = sizeof(struct ch_config_key);
  p->desc = &p->copy;
  return CH_OK;
}

/* The option and type tables must be self-consistent before the host
   trusts them for config validation and graph building. */
static int check_tables(const struct ch_plugin *d, const char *path,
                        struct ch_err *err) {
  if (!d->types || !d->types[0].id)
    return ch_err_set(err, CH_E_CONFIG, "%s: declares no resource types", path);
  for (const struct ch_resource_type *t = d->types; t->id; t++) {
    if (!loader_valid_name(t->id))
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: resource type id '%s' is not [a-z0-9_]+", path,
                        t->id);
    if (t->parent && !plugin_type(d, t->parent))
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: type '%s' names unknown parent type '%s'", path,
                        t->id, t->parent);
    for (const struct ch_entitlement_def *e = t->entitlements; e && e->slug;
         e++) {
      if (!e->grantable_to || !e->grantable_to[0])
        return ch_err_set(err, CH_E_CONFIG,
                          "%s: entitlement '%s#%s' is grantable to nothing",
                          path, t->id, e->slug);
      for (const char *const *g = e->grantable_to; *g; g++) {
        if (!plugin_type(d, *g))
          return ch_err_set(err, CH_E_CONFIG,
                            "%s: entitlement '%s#%s' names unknown type '%s'",
                            path, t->id, e->slug, *g);
      }
    }
  }
  return CH_OK;
}

/* Append the deprecated per-plugin HTTP options the host now owns
   (options.h) that the plugin does not declare itself, so configs that
   still write them keep loading. The plugin's own entries stay first. */
static int add_http_aliases(struct plugin *p) {
  size_t n = p->nkeys, extra = 0;
  struct ch_config_key *grown;

  for (const struct ch_config_key *a = options_http_aliases; a->name; a++)
    extra++;
  grown = realloc(p->keys, (n + extra + 1) * sizeof(*grown));
  if (!grown)
    return CH_E_NOMEM;
  p->keys = grown;
  for (const struct ch_config_key *a = options_http_aliases; a->name; a++) {
    size_t i = 0;
    while (i < p->nkeys && strcmp(grown[i].name, a->name) != 0)
      i++;
    if (i == p->nkeys)
      grown[n++] = *a;
  }
  memset(&grown[n], 0, sizeof(grown[n]));
  return CH_OK;
}

/* The checks on a freshly resolved descriptor that read only first ABI 1
   fields, in the order an author would fix them. */
static int check_descriptor(const struct ch_plugin *d, const char *name,
                            const char *path, struct ch_err *err) {
  if (!d)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s: connhost_plugin() returned NULL for host ABI %u",
                      path, CH_PLUGIN_ABI);
  if (d->abi != CH_PLUGIN_ABI)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s: plugin ABI %u, this host speaks ABI %u: rebuild the "
                      "plugin against this connhost",
                      path, d->abi, CH_PLUGIN_ABI);
  if (d->size < CH_PLUGIN_SIZE_V1)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s: descriptor size %u is smaller than ABI %u's %zu "
                      "bytes: the plugin is corrupt or built for another host",
                      path, d->size, CH_PLUGIN_ABI, (size_t)CH_PLUGIN_SIZE_V1);
  if (!d->name || strcmp(d->name, name) != 0)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s: plugin calls itself '%s' but the file is '%s.so'",
                      path, d->name ? d->name : "(null)", name);
  if (!d->open)
    return ch_err_set(err, CH_E_CONFIG, "%s: missing mandatory op 'open'",
                      path);
  if (!d->close)
    return ch_err_set(err, CH_E_CONFIG, "%s: missing mandatory op 'close'",
                      path);
  if (!d->list)
    return ch_err_set(err, CH_E_CONFIG, "%s: missing mandatory op 'list'",
                      path);
  return CH_OK;
}

static int load_file(struct registry *r, const char *name, struct plugin **out,
                     struct ch_err *err) {
  struct plugin *p = NULL;
  struct stat st;
  ch_plugin_entry_fn entry;
  const struct ch_plugin *raw;
  int rc = CH_E_NOMEM, fd = -1;
  size_t len;

  *out = NULL;
  if (!loader_valid_name(name))
    return ch_err_set(err, CH_E_CONFIG,
                      "invalid plugin name '%s': use [a-z0-9_]+ (the file is "
                      "<name>.so in the plugin directory)",
                      name);
  p = calloc(1, sizeof(*p));
  if (!p)
    goto out;
  len = strlen(r->dir) + strlen(name) + 5;
  p->path = malloc(len);
  p->name = strdup(name);
  if (!p->path || !p->name)
    goto out;
  snprintf(p->path, len, "%s/%s.so", r->dir, name);

  /* Checked and loaded by descriptor: what dlopen maps is the file that
     was checked, whatever is renamed in the directory meanwhile. */
  rc = registry_open_dir(r, err);
  if (rc == CH_OK)
    rc = trust_open_file(r->dirfd, p->path + strlen(r->dir) + 1, p->path, name,
                         !r->allow_insecure, &fd, &st, err);
  if (rc != CH_OK)
    goto out;
  p->dl = trust_dlopen(fd, &st, p->path, err);
  close(fd);
  if (!p->dl) {
    rc = err->code;
    goto out;
  }
  *(void **)&entry = dlsym(p->dl, CH_PLUGIN_SYMBOL);
  if (!entry) {
    rc = ch_err_set(err, CH_E_CONFIG,
                    "%s: no '%s' symbol: not a connhost plugin", p->path,
                    CH_PLUGIN_SYMBOL);
    goto out;
  }
  raw = entry(CH_PLUGIN_ABI);
  rc = check_descriptor(raw, name, p->path, err);
  if (rc == CH_OK)
    rc = adopt_descriptor(p, raw, p->path, err);
  if (rc == CH_OK)
    rc = check_tables(p->desc, p->path, err);
  if (rc == CH_OK)
    rc = options_check_table(p->keys, p->desc->config_size, p->path, err);
  if (rc == CH_OK)
    rc = add_http_aliases(p);
  if (rc != CH_OK)
    goto out;
  *out = p;
  p = NULL;
out:
  if (rc == CH_E_NOMEM)
    ch_err_set(err, rc, "out of memory");
  plugin_free(p);
  return rc;
}

int registry_load(struct registry *r, const char *name,
                  const struct plugin **out, struct ch_err *err) {
  struct plugin *p;
  struct plugin **grown;
  int rc;

  for (size_t i = 0; i < r->n; i++) {
    if (strcmp(r->items[i]->name, name) == 0) {
      *out = r->items[i];
      return CH_OK;
    }
  }
  rc = load_file(r, name, &p, err);
  if (rc != CH_OK)
    return rc;
  grown = realloc(r->items, (r->n + 1) * sizeof(*r->items));
  if (!grown) {
    plugin_free(p);
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  r->items = grown;
  r->items[r->n++] = p;
  *out = p;
  return CH_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int registry_scan(struct registry *r, struct scan_entry **out, size_t *n,
                  struct ch_err *err) {
  DIR *d = NULL;
  struct dirent *de;
  char **names = NULL;
  size_t count = 0;
  struct scan_entry *e = NULL;
  int rc = CH_E_NOMEM, fd;

  *out = NULL;
  *n = 0;
  rc = registry_open_dir(r, err);
  if (rc != CH_OK)
    return rc;
  /* Its own descriptor: readdir moves the offset, openat does not care. */
  fd = openat(r->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    int saved = errno;
    if (fd >= 0)
      close(fd);
    return ch_err_set(err, CH_E_CONFIG, "plugin directory '%s': %s", r->dir,
                      strerror(saved));
  }
  rc = CH_E_NOMEM;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name);
    char **grown;
    if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
      continue;
    grown = realloc(names, (count + 1) * sizeof(*names));
    if (!grown)
      goto out;
    names = grown;
    names[count] = strdup(de->d_name);
    if (!names[count])
      goto out;
    count++;
  }
  qsort(names, count, sizeof(*names), cmp_str);
  e = calloc(count ? count : 1, sizeof(*e));
  if (!e)
    goto out;
  for (size_t i = 0; i < count; i++) {
    struct ch_err lerr = {0};
    const struct plugin *p = NULL;
    size_t len = strlen(names[i]);

    e[i].file = names[i];
    names[i] = NULL;
    e[i].file[len - 3] = '\0'; /* the name is the basename minus ".so" */
    if (registry_load(r, e[i].file, &p, &lerr) == CH_OK)
      e[i].plugin = p;
    else
      snprintf(e[i].error, sizeof(e[i].error), "%s", lerr.msg);
    e[i].file[len - 3] = '.';
  }
  *out = e;
  *n = count;
  e = NULL;
  rc = CH_OK;
out:
  if (rc != CH_OK)
    ch_err_set(err, rc, "out of memory");
  for (size_t i = 0; i < count; i++)
    free(names ? names[i] : NULL);
  free(names);
  scan_entries_free(e, count);
  closedir(d);
  return rc;
}

void scan_entries_free(struct scan_entry *e, size_t n) {
  if (!e)
    return;
  for (size_t i = 0; i < n; i++)
    free(e[i].file);
  free(e);
}

const char *loader_opt_type_name(enum ch_opt_type t) {
  return t >= CH_OPT_STRING && t <= CH_OPT_DURATION ? opt_type_names[t] : "?";
}
