/* SPDX-License-Identifier: MIT */
/* Plugin loader: validated names, the plugin directory only, ABI checks,
   each .so loaded once. */
#ifndef CONNHOST_LOADER_H
#define CONNHOST_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include <connhost/plugin.h>

/* The size of each structure a plugin hands the host, as the plugin was
   built (its ABI 1.1 layout fields, or the 1.0 sizes). */
struct plugin_layout {
  uint32_t option, type, entitlement, action;
  uint32_t resource, grant;
  uint32_t http_req, http_resp, http_conf;
  uint32_t config_key;
};

/*
 * A loaded plugin. `desc` is the host's copy of the plugin's descriptor in
 * the host's layout: fields past the plugin's `size` are zero, its tables
 * are copied element by element with the plugin's strides, and its `size`
 * is still the plugin's (so CH_PLUGIN_HAS(desc, op) tells what it built
 * with). Strings and functions stay the plugin's, valid while it is loaded.
 */
struct plugin {
  char *name;
  char *path;
  void *dl;
  const struct ch_plugin *desc;
  struct plugin_layout layout;
  struct ch_plugin copy;      /* what `desc` points at */
  struct ch_option *options;  /* host-layout tables, owned */
  struct ch_config_key *keys; /* the options as config keys: the plugin's
                                 `nkeys` first, then the deprecated HTTP
                                 aliases it does not declare (options.h) */
  size_t nkeys;
  struct ch_resource_type *types;
  struct ch_entitlement_def **ents; /* one per type */
  size_t ntypes;
  struct ch_action_def *actions;
};

/* Plugins loaded from one directory; a name is loaded at most once. */
struct registry {
  char *dir;
  int dirfd;          /* `dir`, opened and checked at the first load; -1 */
  int allow_insecure; /* allow_insecure_plugin_dir: skip the mode checks */
  struct plugin **items;
  size_t n;
};

/* [a-z0-9_]+, at most 64 bytes. */
int loader_valid_name(const char *name);

int registry_init(struct registry *r, const char *dir, struct ch_err *err);
void registry_release(struct registry *r);

/*
 * Load `<dir>/<name>.so` (or return the copy loaded before). The directory
 * is opened and checked at the first load (unless allow_insecure: its
 * parents, owner and mode, docs/config.md "Plugin directory rules"), the
 * file opened in it and checked by descriptor, and that descriptor's
 * /proc/self/fd path given to dlopen. Errors name
 * the file: invalid name, not a regular file, dlopen failure (dlerror and
 * an ldd hint), no connhost_plugin symbol, wrong ABI, short descriptor,
 * name mismatch, missing mandatory op, layout sizes below ABI 1's,
 * inconsistent type or option tables.
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
