/* SPDX-License-Identifier: MIT */
/* Plugin loader: validated names, the plugin directory only, ABI checks,
   each .so loaded once. */
#ifndef CONNHOST_LOADER_H
#define CONNHOST_LOADER_H

#include <stddef.h>

#include <connhost/plugin.h>

struct plugin {
  char *name;
  char *path;
  void *dl;
  const struct ch_plugin *desc;
};

/* Plugins loaded from one directory; a name is loaded at most once. */
struct registry {
  char *dir;
  int allow_insecure; /* allow_insecure_plugin_dir: skip the mode checks */
  struct plugin **items;
  size_t n;
};

/* [a-z0-9_]+, at most 64 bytes. */
int loader_valid_name(const char *name);

int registry_init(struct registry *r, const char *dir, struct ch_err *err);
void registry_release(struct registry *r);

/*
 * Load `<dir>/<name>.so` (or return the copy loaded before). Errors name
 * the file: invalid name, not a regular file, dlopen failure (dlerror and
 * an ldd hint), no connhost_plugin symbol, wrong ABI, short descriptor,
 * name mismatch, missing mandatory op, inconsistent type or option tables.
 */
int registry_load(struct registry *r, const char *name,
                  const struct plugin **out, struct ch_err *err);

/* One entry of a directory scan: a plugin or the reason it failed. */
struct scan_entry {
  char *file;                  /* basename, "x.so" */
  const struct plugin *plugin; /* NULL when loading failed */
  char error[CH_ERR_MSG_SIZE + 256];
};

/* Try every "*.so" in the directory, sorted by name. */
int registry_scan(struct registry *r, struct scan_entry **out, size_t *n,
                  struct ch_err *err);
void scan_entries_free(struct scan_entry *e, size_t n);

/* Look up a type / entitlement / action in a descriptor. */
const struct ch_resource_type *plugin_type(const struct ch_plugin *p,
                                           const char *id);
const struct ch_entitlement_def *
plugin_entitlement(const struct ch_resource_type *t, const char *slug);
const struct ch_action_def *plugin_action(const struct ch_plugin *p,
                                          const char *name);
/* "string", "int", ... for an option type. */
const char *loader_opt_type_name(enum ch_opt_type t);

/* Whether `type` is listed in a NULL-terminated list. */
int plugin_list_has(const char *const *list, const char *type);

#endif
