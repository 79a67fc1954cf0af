/* SPDX-License-Identifier: MIT */
/* The unified entitlement graph: records from every instance, identity
   merge, grant expansion, sorted JSON / JSONL output. */
#ifndef CONNHOST_GRAPH_H
#define CONNHOST_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <connhost/plugin.h>

struct graph;

struct graph *graph_new(void);
void graph_free(struct graph *g);

/*
 * Register an instance before its records arrive. `types` (the plugin's
 * table) must outlive the graph. Returns the instance index (>= 0) or a
 * negative status. Not thread-safe: call before workers start.
 */
int graph_add_instance(struct graph *g, const char *tenant,
                       const char *instance, const char *plugin,
                       const char *plugin_version,
                       const struct ch_resource_type *types);

/*
 * Copy one record into the graph. Thread-safe. Returns CH_E_INVALID with a
 * clear message in `err` for a malformed record: no id, unknown type, a
 * parent of the wrong type, a slug the type does not declare, a grant with
 * no principal. The caller fails the instance on error.
 */
int graph_add_resource(struct graph *g, int inst, const struct ch_resource *r,
                       struct ch_err *err);
/* graph_add_resource's first check, for a process that has no graph (an
   isolated plugin's child): CH_E_INVALID with its message when `r` has no
   type or no id. */
int graph_resource_named(const struct ch_resource *r, struct ch_err *err);
int graph_add_grant(struct graph *g, int inst, const struct ch_grant *gr,
                    struct ch_err *err);

/*
 * The match keys of one account the graph does not hold: an account of a
 * failed instance's last good data, which the store still answers from.
 * It joins the identities of `inst`'s tenant as that account did, so an
 * identity keeps its key (and the store its members) while one of its
 * instances is down; nothing else of the graph shows it. Before
 * graph_finish; thread-safe.
 */
int graph_add_join_keys(struct graph *g, int inst, const char *const *keys);

/* How one instance's run went; written into the output. */
struct graph_report {
  int ok;            /* 1 = complete */
  const char *error; /* first error when !ok (copied) */
  uint64_t pages;
  uint64_t requests;
  uint64_t retries;
  uint64_t warnings;
};
void graph_set_report(struct graph *g, int inst, const struct graph_report *r);

/*
 * After all workers stopped: drop failed instances' records, check grants
 * (a grant on an entitlement no resource carries fails its instance with a
 * clear message; a grant to a principal that was never listed is dropped
 * and counted as a warning), merge identities (union-find over match keys
 * within a tenant), expand expandable grants (direct: false, sources
 * recorded, cycle-safe), sort everything by key.
 */
int graph_finish(struct graph *g);

/* Before graph_finish, after all workers stopped: what instance `inst`
   sent, counted as the graph will keep it (a resource or a direct grant
   sent twice counts once), for the shrink check, which has to fail an
   instance before graph_finish drops its records. CH_OK, CH_E_INVALID
   once finished or for an unknown instance, CH_E_NOMEM. From the first
   call on, the graph takes no more records (its keys are ranked: the
   first half of graph_finish). */
int graph_received(struct graph *g, int inst, uint64_t *resources,
                   uint64_t *grants);

/* Status of instance `inst` after graph_finish (it may have failed there). */
int graph_instance_ok(const struct graph *g, int inst, const char **error);

/* Expansion follows nested expandable grants this many hops deep (the
   first group is hop 1); deeper chains are cut and counted as a warning. */
#define GRAPH_MAX_DEPTH 20

/* What the output holds. `grants` counts all of them, direct and derived;
   `derived_grants` those with "direct": false. */
struct graph_counts {
  size_t resources, entitlements, grants, derived_grants, identities;
  size_t merged_identities; /* identities with more than one resource */
};
void graph_counts(const struct graph *g, struct graph_counts *out);

enum graph_format { GRAPH_JSON = 0, GRAPH_JSONL };

/* Write the finished graph. `generated_at` is an RFC 3339 UTC time. */
int graph_write(const struct graph *g, FILE *f, enum graph_format fmt,
                const char *generated_at, struct ch_err *err);

/* The output name of one CH_TRAIT_* bit ("user", "group", ...), or NULL. */
const char *graph_trait_name(unsigned bit);

/* ---- keys (printed forms, DESIGN §3) ---- */

/* Percent-encode one key component ('%', '/', '#', control bytes, and
   0x7f; also any byte that is not part of well-formed UTF-8, so keys are
   always valid UTF-8). Uppercase hex. malloc'd. */
char *key_encode(const char *component);
/* The same into `out` (room for what a NULL `out` measured, no NUL
   added); returns the encoded length. */
size_t key_encode_to(const char *component, char *out);
/* "tenant/instance/type/id", each encoded. malloc'd. */
char *key_resource(const char *tenant, const char *instance, const char *type,
                   const char *id);
/* "resource-key#slug" with the slug encoded. malloc'd. */
char *key_entitlement(const char *resource_key, const char *slug);
/* Length (1-4) of the well-formed UTF-8 sequence at `s` (at most `avail`
   bytes), or 0 when `s` starts an ill-formed one. */
size_t key_utf8_seq(const unsigned char *s, size_t avail);
/* 1 when `s[0..len)` is well-formed UTF-8 (no overlongs or surrogates). */
int key_utf8_valid(const char *s, size_t len);
/* Parse a resource key ("t/i/type/id") or an entitlement key
   ("t/i/type/id#slug"; slug NULL for a resource key) into malloc'd decoded
   parts. Returns CH_OK or CH_E_INVALID. */
struct key_parts {
  char *tenant, *instance, *type, *id, *slug;
};
int key_parse(const char *key, int want_slug, struct key_parts *out,
              struct ch_err *err);
void key_parts_release(struct key_parts *p);

/* Write `path` atomically: temp file in the same directory, write, flush,
   fsync, rename. On failure the old file is untouched and the temp file is
   removed. */
int output_write_atomic(const char *path,
                        int (*write_fn)(FILE *f, void *arg, struct ch_err *err),
                        void *arg, struct ch_err *err);
/* Write to an open stream (stdout for "-o -"), checking every write, the
   flush and the close; closes `f`. `name` names it in errors. */
int output_write_stream(FILE *f, const char *name,
                        int (*write_fn)(FILE *f, void *arg, struct ch_err *err),
                        void *arg, struct ch_err *err);

/* ---- reading the finished graph (the snapshot store) ----
   Index-based views of what graph_write writes, in the same order. Every
   pointer is borrowed from the graph and valid until graph_free. */
#define GRAPH_NONE UINT32_MAX

struct graph_inst_view {
  const char *tenant, *instance, *plugin, *plugin_version;
  int ok;
  const char *error; /* NULL when ok */
  uint64_t resources, grants, pages, requests, retries, warnings;
};
size_t graph_ninstances(const struct graph *g);
/* `i` is the index graph_add_instance returned. */
void graph_instance_view(const struct graph *g, size_t i,
                         struct graph_inst_view *out);

/* Nodes in key order; rank i is what grants and identities refer to. */
struct graph_res_view {
  const char *key, *type, *id, *display_name; /* display_name may be NULL */
  size_t inst;                                /* instance index */
  unsigned traits;                            /* CH_TRAIT_* */
  enum ch_res_status status;
  enum ch_account_type account_type;
  const char *const *emails, *const *match_keys; /* NULL-terminated */
  /* JSON object or NULL. Decoded from the graph's dictionary into one
     buffer the graph keeps: valid until the next graph_resource_view on
     this graph (copy it to keep it; not for two threads at once). */
  const char *profile;
  uint32_t parent, identity; /* node rank / identity index, or GRAPH_NONE */
};
size_t graph_nnodes(const struct graph *g);
/* 0 when rank `i` is not in the output (never listed, failed instance). */
int graph_resource_view(const struct graph *g, size_t i,
                        struct graph_res_view *out);
/* Rank `i`'s emails (NULL-terminated) without decoding its profile: NULL
   when not in the output. */
const char *const *graph_resource_emails(const struct graph *g, size_t i);
/* Rank `i`'s key and instance index without decoding its profile (the
   store's walks over every key): NULL when not in the output. */
const char *graph_resource_key(const struct graph *g, size_t i, size_t *inst);

struct graph_ent_view {
  const char *key, *slug, *display_name;
  uint32_t resource; /* node rank */
};
size_t graph_nentitlements(const struct graph *g);
void graph_entitlement_view(const struct graph *g, size_t i,
                            struct graph_ent_view *out);

/* Grants: direct ones first (0 .. ndirect-1), then derived ones. */
struct graph_grant_view {
  uint32_t ent, principal; /* entitlement index, node rank */
  int direct;
  uint32_t expandable;     /* direct: entitlement its holders inherit through */
  const uint32_t *sources; /* entitlement indices */
  size_t nsources;
};
size_t graph_ngrants(const struct graph *g, size_t *ndirect);
void graph_grant_view(const struct graph *g, size_t i,
                      struct graph_grant_view *out);
/* A grant's place, for reading grants in order or again: graph_grant_view
   searches for a grant's details, graph_grant_view_at goes straight to
   them (the store reads every grant twice). */
struct graph_grant_pos {
  uint32_t index; /* in graph_grant_view */
  uint32_t aux;   /* where its details are */
};
void graph_grant_locate(const struct graph *g, size_t i,
                        struct graph_grant_pos *p);
void graph_grant_step(const struct graph *g, struct graph_grant_pos *p);
void graph_grant_view_at(const struct graph *g, const struct graph_grant_pos *p,
                         struct graph_grant_view *out);

struct graph_ident_view {
  const char *key, *tenant, *display_name;
  const char *const *emails;
  size_t nemails;
  const uint32_t *members; /* node ranks */
  size_t nmembers;
};
size_t graph_nidentities(const struct graph *g);
void graph_identity_view(const struct graph *g, size_t i,
                         struct graph_ident_view *out);

#endif
