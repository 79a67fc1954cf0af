/* SPDX-License-Identifier: MIT */
/* What the config modules share and nothing else sees: errors that point
   at a node, the scalar forms, and the YAML loader.
   config.c builds the model, cfg_options.c resolves declared keys. */
#ifndef CONNHOST_CFG_INT_H
#define CONNHOST_CFG_INT_H

#include <stddef.h>

#include "config.h"

/* A config is small; the caps only stop a wrong path (a log file, a disk
   image) from being slurped into memory. */
#define CFG_MAX_FILE (16L * 1024 * 1024)
#define CFG_MAX_SECRET_FILE (1024L * 1024)
/* The node tree is built recursively; a config needs 5 levels. */
#define CFG_MAX_DEPTH 64

/* ---- errors (cfg_check.c): each returns CH_E_CONFIG or CH_E_NOMEM ---- */

/* "FILE:LINE:COL: <message>" */
int cfg_fail_at(struct ch_err *err, const char *file, unsigned line,
                unsigned col, const char *fmt, ...) CH_PRINTF(5, 6);
/* Every config error points at the node it is about. */
int cfg_fail(struct ch_err *err, const struct cfg_node *n, const char *fmt, ...)
    CH_PRINTF(3, 4);
int cfg_nomem(struct ch_err *err);

/* "<what>; did you mean 'y'? (<label>: a, b)". The list is never cut: when
   the message outgrows a ch_err, the list is logged on a line of its own
   ("<listed>: a, b") and the error points at it. `names` is a table whose
   rows start with a name, `stride` bytes apart. */
int cfg_fail_unknown(struct ch_err *err, const struct cfg_node *key,
                     const char *what, const char *label, const char *listed,
                     const void *names, size_t n, size_t stride);

/* ---- host keys through the option engine (cfg_options.c) ------------ */

/* A host-only flag on a host key: a map with keys of its own (listed for
   unknown-key checks, resolved by the caller). */
#define CFG_KEY_BLOCK (1u << 30)

/*
 * The host's own keys of `map` (the top level, `http:`, `serve:`,
 * `schedule:`, an instance) resolved by the option engine against `table`,
 * as a plugin's options are: unknown keys with a did-you-mean ("unknown
 * key 'x' in <where>"), one value per key, ${env:}/${file:} (registered as
 * secrets by the caller only), types and declared ranges; errors name the
 * key "key '<prefix><name>'" and give ranges in words, a key's `help`
 * being their noun. A CFG_KEY_BLOCK key or one written as YAML null gets
 * `set` 0. Release `out` with config_options_release().
 */
int cfg_resolve_host(const struct config *c, const struct cfg_node *map,
                     const struct ch_config_key *table, const char *where,
                     const char *prefix, struct config_options *out,
                     struct ch_err *err);

/* "a map", "a list" or "a value", for errors. */
const char *cfg_kind_name(enum cfg_kind k);

/* ---- scalar forms (cfg_check.c): 0 when `s` is one, else -1 ---------- */

/* YAML's null: an empty plain value (`key:`), `~` or `null`. */
int cfg_is_null(const struct cfg_node *n);
/* Decimal only: "010" is ten, not eight, and no "0x" surprises. */
int cfg_parse_ll(const char *s, long long *out);
/* true/yes/on, false/no/off, any case. */
int cfg_parse_bool(const char *s, int *out);
/* These return 1 when `s` is one, else 0. */
/* http:// or https:// followed by a host; no spaces or control bytes. */
int cfg_valid_url(const char *s);
/* Tenant and instance names: letters, digits, '_', '.' and '-'. */
int cfg_valid_name(const char *s);

/* ---- YAML (cfg_yaml.c) ------------------------------------------------ */

/* Read a whole file of at most `cap` bytes; `*len` excludes the NUL added
   at the end. Sets errno on failure (EFBIG when over the cap). */
int cfg_read_file(const char *path, long cap, char **out, size_t *len);
/* Parse `buf` into the node tree: exactly one document, not empty. */
int cfg_parse_yaml(const char *file, const char *buf, size_t len,
                   struct cfg_node **root, struct ch_err *err);
void cfg_node_free(struct cfg_node *n);

#endif
