/* SPDX-License-Identifier: MIT */
/* The YAML config: a located node tree, the tenant/instance model, option
   resolution against a plugin's declared table. */
#ifndef CONNHOST_CONFIG_H
#define CONNHOST_CONFIG_H

#include <stddef.h>

#include <connhost/plugin.h>

enum cfg_kind { CFG_SCALAR = 0, CFG_SEQ, CFG_MAP };

/* One YAML node with its location (1-based line and column). */
struct cfg_node {
  enum cfg_kind kind;
  char *value; /* CFG_SCALAR: raw text, ${...} not yet expanded */
  int plain;   /* CFG_SCALAR: written without quotes (may be int/bool) */
  size_t n;    /* CFG_SEQ/CFG_MAP: number of children */
  char **keys; /* CFG_MAP: child keys; NULL for a sequence */
  struct cfg_node **kids;   /* children (map values or sequence items) */
  struct cfg_node **knodes; /* CFG_MAP: key nodes (for key locations) */
  const char *file;         /* borrowed from struct config */
  unsigned line, col;
};

/* Find `key` in a map node; NULL when absent or `map` is not a map. */
const struct cfg_node *cfg_get(const struct cfg_node *map, const char *key);

/* Where an instance's plugin runs (see docs/config.md, "Isolation"). */
enum config_isolation {
  CFG_ISOLATION_UNSET = 0, /* not written: the host-wide or command default */
  CFG_ISOLATION_NONE,      /* in the host process */
  CFG_ISOLATION_PROCESS    /* in a child process of its own */
};

struct config_instance {
  char *tenant;
  char *name;
  char *plugin;                   /* defaults to the instance name */
  int enabled;                    /* default 1 */
  int provisioning;               /* default 0 */
  int max_shrink;                 /* percent, -1 when not set (safety.h) */
  long timeout_ms;                /* `timeout:` of one run; 0 = none */
  const struct cfg_node *node;    /* the instance map, for locations */
  const struct cfg_node *options; /* the options map, or NULL */
  const struct cfg_node *http;    /* the http map, or NULL */

  /* UNSET when not written */
  enum config_isolation isolation;
};

/* `schedule:` (serve): how often a tenant syncs. */
struct config_schedule {
  long interval_ms; /* 0 when not set */
  int jitter_pct;   /* -1 when not set; else 0..100 */
};

/* `tickets:` in a tenant: where tickets for manual work go (tickets.h). */
struct config_tickets {
  char *instance;   /* the tenant's instance that opens them; NULL: none */
  char *project;    /* project key; NULL: the plugin's default project */
  char *issue_type; /* NULL: the plugin's default issue type */
  const struct cfg_node *node;
};

struct config_tenant {
  char *name;
  struct config_schedule schedule; /* the tenant's own, or unset */
  struct config_tickets tickets;   /* unset: no tickets in this tenant */
  struct config_instance *instances;
  size_t ninstances;
  const struct cfg_node *node;
};

struct config {
  char *path;           /* as given */
  char *dir;            /* absolute directory of the file */
  char *plugin_dir;     /* absolute, or NULL when not set */
  char *output;         /* absolute, or NULL when not set */
  char *format;         /* "json" / "jsonl", or NULL */
  int workers;          /* 0 when not set */
  long max_pages;       /* 0 when not set: page limit per list/grants chain */
  long http_timeout_ms; /* 0 when not set */
  long http_connect_timeout_ms; /* 0 when not set */
  int http_max_attempts;        /* 0 when not set */
  long http_max_body_bytes;     /* 0 when not set */
  /* max_shrink in percent (safety.h), -1 when not set; and whether the
     loader's ownership and mode checks are off (test rigs) */
  int max_shrink;
  int allow_insecure_plugin_dir;
  struct config_schedule schedule; /* host-wide `schedule:` */
  /* `serve:` */
  char *serve_listen;     /* "ADDR:PORT", or NULL */
  char *serve_auth_token; /* expanded secret, or NULL */
  long serve_grace_ms;    /* `shutdown_grace:`; 0 when not set */
  char *serve_replica_id; /* `replica_id:`, or NULL */
  long serve_lease_ms;    /* `lease_expiry:`; 0 when not set */
  char *store;    /* absolute path of the snapshot store; NULL = `store: none`
                     (default: connhost.db beside the config) */
  long keep_runs; /* runs the store keeps (default 30) */
  struct config_tenant *tenants;
  size_t ntenants;
  struct cfg_node *root;

  /* the host-wide default; UNSET when not written */
  enum config_isolation isolation;
};

/*
 * Load and check `path`. Every error message starts with "FILE:LINE:COL: "
 * (malformed YAML, unknown keys, wrong types, bad names, duplicate keys,
 * YAML aliases, which are rejected); only a file that cannot be read at all
 * gives "FILE: ...". Host-level ${env:NAME} / ${file:PATH} values are
 * expanded here (and not registered as secrets); instance options are
 * expanded by config_resolve_options(). Returns CH_OK, CH_E_CONFIG or
 * CH_E_NOMEM; on failure *out is NULL.
 */
int config_load(const char *path, struct config **out, struct ch_err *err);
void config_free(struct config *c);

/* Resolved options of one instance: what ch_cfg.values points at. */
struct config_options {
  size_t n;
  struct ch_opt_value *values; /* values[i] belongs to table[i] */
  void *storage;               /* owned strings and lists */
};

/*
 * Validate `ci`'s options against `table` (the plugin's declared options):
 * unknown key, wrong type, missing required option: each an error with
 * FILE:LINE:COL naming the key and plugin. Expands ${env:NAME} and
 * ${file:PATH} (a missing variable or unreadable file is an error naming
 * the key, never showing a value), applies defaults, resolves relative
 * CH_OPT_PATH values against the config file's directory, and registers
 * every expanded value and every CH_OPT_SECRET value with log_add_secret().
 * A CH_OPT_SECRET value written inline is accepted with a warning. An
 * option written as `key:` (YAML null) counts as not given. Every table
 * entry gets a value (`set` 0 when neither given nor defaulted). On failure
 * `out` is already released; otherwise release it with
 * config_options_release() (which accepts NULL and a released object).
 */
int config_resolve_options(const struct config *c,
                           const struct config_instance *ci,
                           const struct ch_option *table,
                           const char *plugin_name, struct config_options *out,
                           struct ch_err *err);
void config_options_release(struct config_options *o);

/* The same for any map of the instance checked against a host-declared
   `table` (the `http:` block): `owner` names the table in errors
   ("plugin 'x'", "the 'http' block"). */
int config_resolve_block(const struct config *c,
                         const struct config_instance *ci,
                         const struct cfg_node *opts,
                         const struct ch_config_key *table, const char *owner,
                         struct config_options *out, struct ch_err *err);

/* Expand "${env:NAME}" / "${file:PATH}" in one scalar (the whole value or
   embedded parts; "$${" is a literal "${"). Sets *secret when anything was
   expanded. `what` names the key in errors, as a phrase ("option
   'api_token'", "key 'workers'"); errors never show an expanded value or a
   file's content. Returns a malloc'd string or NULL with err set. */
char *config_expand(const struct config *c, const struct cfg_node *n,
                    const char *what, int *secret, struct ch_err *err);

/* "1h", "30s", "1.5m", "250ms", "2d", or a bare number of seconds, to
   milliseconds (> 0). Returns 0, or -1 when it is not a duration. */
int config_parse_duration(const char *s, long *out_ms);

/* Resolve `p` against the config's directory (absolute stays). malloc'd. */
char *config_path(const struct config *c, const char *p);

#endif
