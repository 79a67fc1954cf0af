/* SPDX-License-Identifier: MIT */
/* The graph's internals, shared by its modules (graph.c: lifecycle and
   views; graph_json.c: the JSON writer and profiles; graph_add.c: records;
   graph_finish.c: keys, grants, entitlements; graph_ident.c: identities;
   graph_expand.c: inheritance; graph_write.c: output). Not for other
   host modules: they use graph.h. */
#ifndef CONNHOST_GRAPH_INT_H
#define CONNHOST_GRAPH_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "hmap.h"
#include "log.h"
#include "util.h"

/*
 * Memory layout, chosen so a tenant with 100k users, a million grants and
 * ten million derived grants fits in a few hundred MB:
 * - each (instance, type, id) is one `struct node`, found through its
 *   type's hash map; the node is the interned copy of the id, and grants
 *   point at nodes instead of copying ids;
 * - a listed resource is one packed record (`struct res` + its strings);
 * - nodes and records come from an arena (never freed one by one);
 *   grants are flat arrays of 16-byte records naming nodes, and later
 *   entitlements and ranks, by 32-bit index, sorted in place by
 *   graph_finish;
 * - identities borrow their members' emails and match keys unless
 *   normalizing changes them;
 * - resources' profiles are coded against a dictionary of shapes and
 *   values (graph_prof.c): an org user's 400 bytes of JSON take about 50.
 * Hash maps only ever find things; every order that reaches the output comes
 * from sorting printed keys with strcmp.
 */

#define NONE UINT32_MAX
#define SRC_LIST 0x80000000u /* `src` indexes g->srcpool */
#define KOFF_ESC 0x80000000u /* g->koff: the key needs JSON escaping */
#define MAX_SLUGS 65535
#define PROFILE_MAX (1 << 20) /* "a small JSON object" (plugin.h) */

struct inst;
struct tinfo { /* one declared resource type of an instance */
  struct inst *inst;
  const struct ch_resource_type *t;
  struct tinfo *parent;
  size_t ndefs;
  struct hmap slugs; /* slug -> def index + 1; read-only after setup */
  struct hmap nodes; /* id -> struct node; under g->lock */
};

struct inst {
  char *tenant, *name, *plugin, *version;
  uint32_t tenant_idx;
  const struct ch_resource_type *types;
  struct tinfo *tinfos;
  size_t ntypes;
  struct hmap type_map; /* type id -> tinfo; read-only after setup */
  int ok;               /* 0 once the report or graph_finish failed it */
  char *error;
  /* from the report */
  uint64_t pages, requests, retries, warnings;
  /* counted by the graph: distinct resources and direct grants received,
     grants dropped (principal never listed), warnings the graph raised */
  uint64_t nres, ngrants, dropped, gwarnings;
  /* graph_finish diagnostics: the key each log line or error names */
  char *bad_key;               /* lowest unknown entitlement key */
  const struct node *bad_node; /* its resource, for the likely cause */
  uint64_t nbad;
  char *exp_key; /* first expand entitlement the principal does not carry */
  uint64_t nexp;
  const char *cut_key; /* first entitlement whose expansion was cut */
  uint64_t ncut;
};

struct res {
  const char *display_name;      /* NULL when none */
  const char *const *emails;     /* NULL-terminated; an email that is
                                    also an "email=" match key points
                                    into it */
  const char *const *match_keys; /* NULL-terminated */
  const unsigned char *profile;  /* its code in g->pdict (graph_prof.c), or
                                    NULL */
  struct node *parent;
  const uint16_t *slugs; /* carried entitlement def indices, ascending */
  uint16_t nslugs;
  uint8_t status;       /* enum ch_res_status */
  uint8_t account_type; /* enum ch_account_type */
};

struct node { /* its instance: type->inst */
  struct tinfo *type;
  struct res *res; /* NULL while never listed */
  char *key;       /* printed key, built by graph_finish (in g->keys) */
  uint32_t *ents;  /* finish: entitlement index per res->slugs entry */
  uint32_t klen;   /* strlen(key) */
  uint32_t rank;   /* fetch: index in g->nodes; finish: index in g->order */
  uint32_t identity;
  uint8_t kplain; /* key needs no JSON escaping */
  char id[];      /* in g->narena, from offsetof(struct node, id) */
};

/* A direct grant: 16 bytes, and a big tenant has millions of them, so
   nodes and profiles are referred to by 32-bit index, and what few grants
   carry (a profile, sources) is kept beside them (struct gside). */
struct rgrant {
  uint32_t ent;    /* fetch: resource's g->nodes index; finish: first its
                      rank, then the entitlement index */
  uint32_t prank;  /* fetch: principal's g->nodes index; finish: its rank */
  uint32_t aux;    /* until finish_grants' sort: index in g->gprofiles or
                      NONE; then the entitlement its holders inherit
                      through (expandable ones), or NONE */
  uint16_t slug;   /* def index in the resource's type */
  uint16_t expand; /* expandable: def index + 1 in the principal's type;
                      0: not expandable */
};

/* Something a few direct grants carry, by grant index; arrays of these
   are ascending by grant. */
struct gside {
  uint32_t grant, v;
};

/* The first entry in side array `v` for direct grant `i` or a later one
   (n when there is none). */
static inline size_t gside_lower(const struct gside *v, size_t n, size_t i) {
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v[mid].grant < i)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The entry for direct grant `i` in side array `v`, or NULL. */
static inline const struct gside *gside_find(const struct gside *v, size_t n,
                                             size_t i) {
  size_t k = gside_lower(v, n, i);

  return k < n && v[k].grant == i ? &v[k] : NULL;
}

struct ent {
  char *key;
  struct node *node;
  uint16_t slug;  /* def index */
  uint16_t pos;   /* index in node->res->slugs */
  uint8_t kplain; /* key needs no JSON escaping */
  uint32_t klen;
  uint32_t gfirst, gcount; /* direct grants, in g->grants */
};

struct dgrant { /* a derived grant (direct false), as read */
  uint32_t ent, principal, src;
};

/* Derived grants come in runs that share the entitlement and the sources
   (every member of a group inherits the group's grants through it): each
   is kept as its principal alone, and each run once. */
struct drun {
  uint32_t first; /* index of the run's first derived grant */
  uint32_t ent, src;
};

/* Strings allocated back to back in big chunks and freed all at once:
   graph_finish makes hundreds of thousands of small ones, which as
   separate mallocs cost their headers and the allocator's time. */
struct gr_chunk;
struct gr_arena {
  struct gr_chunk *head;
  char *p;
  size_t left;
};
#define GR_ARENA_INIT                                                          \
  { NULL, NULL, 0 }
/* n bytes, or NULL: aligned as malloc's only as long as every size taken
   from the arena is a multiple of that alignment. */
void *gr_arena_alloc(struct gr_arena *a, size_t n);
/* A copy of s[0..n) plus a NUL, or NULL when out of memory. */
char *gr_arena_dup(struct gr_arena *a, const char *s, size_t n);
void gr_arena_release(struct gr_arena *a);

/* The profiles' dictionary (graph_prof.c): shapes (a canonical text with
   its string and number values cut out) and, per value position of a
   shape, up to 255 values. Thread-safe while the graph fills; lock-free
   reads once it is finished. */
struct pd_shape;
struct gr_pdict {
  pthread_mutex_t lock;
  struct hmap shapes; /* shape text -> id (index + 1) */
  struct hmap values; /* (shape id, position, value text) -> code */
  struct pd_shape **v;
  size_t nshapes, cshapes;
  struct gr_arena strs; /* shapes' and values' texts */
};
void gr_pdict_init(struct gr_pdict *d);
void gr_pdict_release(struct gr_pdict *d);
/* The code of canonical profile `text` (malloc'd, *outlen bytes), or
   CH_E_NOMEM. */
int gr_pdict_encode(struct gr_pdict *d, const char *text, unsigned char **out,
                    size_t *outlen);
/* Append the canonical text of code `c` to `w`. Without the lock: only
   once no more codes are made (graph_finish), or under d->lock. */
struct jw;
void gr_pdict_write(const struct gr_pdict *d, const unsigned char *c,
                    struct jw *w);
/* The text of code `c`, malloc'd (NULL when out of memory); takes the
   lock, for use while the graph fills. */
char *gr_pdict_text(struct gr_pdict *d, const unsigned char *c);

struct ident {
  char *key; /* in g->istrs */
  const char *tenant;
  const char *display_name; /* borrowed from a member, or NULL */
  uint32_t *members;        /* node ranks, ascending; in g->imembers */
  /* sorted, unique: a member's array when it holds just these (one
     member, or one that carries all the others' too), else in g->iarr;
     each string borrowed from a record when already normalized, else in
     g->istrs */
  const char *const *emails, *const *mks;
  /* the smallest match key of join hints in it (graph_add_join_keys), or
     NULL: a candidate for the identity's key, not one of its mks */
  const char *hint_key;
  uint32_t nmembers, nemails, nmks; /* 100k identities: 32 bits each */
};

struct graph {
  pthread_mutex_t lock;
  struct inst **insts;
  size_t ninsts, cinsts;
  struct hmap tenants; /* name -> index + 1 */
  char **tenant_names;
  size_t ntenants, ctenants;
  struct rgrant *grants;
  size_t ngrants, cgrants;
  /* fetch: every node by creation order, what grants refer to until
     graph_finish ranks them (then freed) */
  struct node **nodes;
  size_t nnodes, cnodes;
  struct gr_arena narena; /* the nodes and records, never freed one by one */
  char **gprofiles;       /* grants' canonical profiles, each text once */
  size_t ngprofiles, cgprofiles;
  struct hmap gpmap; /* their texts -> index + 1 */
  int finished;
  int settled;   /* keys ranked, grants sorted (graph_received) */
  int settle_rc; /* and how that went */
  /* built by graph_finish */
  struct node **order; /* every node, by key */
  size_t norder;
  char *keys;     /* their keys, back to back in rank order */
  uint32_t *koff; /* by rank (and one past the last): offset in `keys`,
                     KOFF_ESC when the key needs escaping */
  struct ent *ents;
  size_t nents;
  uint32_t *derived; /* principals (ranks), in output order */
  size_t nderived, cderived;
  struct drun *druns; /* ascending by first */
  size_t ndruns, cdruns;
  uint32_t *srcpool;
  size_t nsrc, csrc;
  /* direct grants' profiles (index in g->gprofiles) from finish_grants
     on, and extra sources (an ent, or SRC_LIST|i) */
  struct gside *gprof, *gsrc;
  size_t ngprof, ngsrc, cgsrc;
  struct ident *idents;
  size_t nidents;
  uint32_t *imembers;    /* every identity's members, back to back */
  struct gr_arena istrs; /* identities' keys, normalized emails and match
                            keys */
  struct gr_arena iarr;  /* identities' email and match key arrays */
  /* graph_add_join_keys: accounts known only by their match keys (each a
     NULL-terminated array, malloc'd with its texts), with their tenant */
  struct jhint {
    uint32_t tenant;
    const char **keys;
  } * hints;
  size_t nhints, chints;
  struct gr_pdict pdict; /* resources' profiles */
  struct jw *vbuf;       /* graph_resource_view's decoded profile */
  struct graph_counts counts;
};

/* ---- shared helpers (graph.c) -------------------------------------------- */

/* qsort, but fine with an empty (NULL) array. */
void gr_sort(void *base, size_t n, size_t size,
             int (*cmp)(const void *, const void *));
/* Hand the heap's free memory back to the system: the fetch leaves every
   worker's malloc arena with freed pages and JSON trees, which the peak
   of graph_finish and the write would otherwise add to. */
void gr_trim(void);
char *gr_strf(const char *fmt, ...) CH_PRINTF(1, 2);
void gr_inst_log(const struct inst *in, enum ch_log_level level,
                 const char *fmt, ...) CH_PRINTF(3, 4);

static inline struct tinfo *inst_type(const struct inst *in, const char *id) {
  return id ? hmap_gets(&in->type_map, id) : NULL;
}

/* Def index + 1 of `slug` in `ti`, or 0. */
static inline size_t type_slug(const struct tinfo *ti, const char *slug) {
  return (size_t)(uintptr_t)hmap_gets(&ti->slugs, slug);
}

static inline struct inst *graph_inst(const struct graph *g, int inst) {
  if (!g || inst < 0 || (size_t)inst >= g->ninsts)
    return NULL;
  return g->insts[inst];
}

static inline const char *def_slug(const struct node *n, uint16_t d) {
  return n->type->t->entitlements[d].slug;
}

/* A direct grant's profile text while it is in `aux`, or NULL. */
static inline const char *grant_profile(const struct graph *g,
                                        const struct rgrant *r) {
  return r->aux == NONE ? NULL : g->gprofiles[r->aux];
}

/* A resource that reaches the output: listed, and its instance is ok. */
static inline int kept(const struct node *n) {
  return n->type->inst->ok && n->res;
}

/* ---- JSON writer --------------------------------------------------------- */

/*
 * A buffered writer: to a FILE (fixed buffer, flushed when full) or to
 * memory (grows). Errors are sticky; check `failed` at the end. We write
 * JSON ourselves instead of building json_object trees: output for a big
 * tenant is millions of records, and we need a fixed key order and a fixed
 * escaping anyway.
 */
struct jw {
  FILE *f;
  char *buf;
  size_t len, cap;
  int failed; /* errno-style, or -1 for out of memory */
};

void jw_put_slow(struct jw *w, const char *s, size_t n);

/* The output of a big tenant is gigabytes of small pieces: keep the common
   case (room in the buffer) inline. */
static inline void jw_put(struct jw *w, const char *s, size_t n) {
  if (n && n <= w->cap - w->len) {
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    return;
  }
  jw_put_slow(w, s, n);
}

/* String literals only: the "" forces a compile error for a pointer. */
#define jw_lit(w, s) jw_put((w), "" s "", sizeof(s) - 1)

void jw_flush(struct jw *w);
void jw_strn(struct jw *w, const char *s, size_t n);
void jw_str(struct jw *w, const char *s);
/* A printed key. Keys never hold control bytes (they are percent-encoded),
   so most need no escaping at all: `plain` was worked out once. */
void jw_k(struct jw *w, const char *key, uint32_t len, int plain);
#define jw_node(w, n) jw_k((w), (n)->key, (n)->klen, (n)->kplain)
#define jw_ent(w, e) jw_k((w), (e)->key, (e)->klen, (e)->kplain)
/* Whether key `k` needs no JSON escaping; its length in *len. */
int gr_key_plain(const char *k, uint32_t *len);
void jw_u64(struct jw *w, uint64_t v);
/* `,"name":` (or without the comma for the first field) */
void jw_key(struct jw *w, const char *name, int first);
void jw_field_str(struct jw *w, const char *name, const char *v);
void jw_strlist(struct jw *w, const char *name, const char *const *v, size_t n);

/* Parse a plugin's profile text and return its canonical form (malloc'd)
   in *out, or CH_E_INVALID with the reason in `why` (graph_json.c). */
int gr_profile_canon(const char *text, char **out, char *why, size_t whysz);
/* Its two paths, for the tests: the fast one writes the canonical form of
   the common profiles (NUL-terminated UTF-8 text of `len` bytes) to `w` and
   returns 1, or returns 0 and leaves the text to the tree path (json-c), which
   gives every error. */
int gr_profile_canon_fast(const char *text, size_t len, struct jw *w);
int gr_profile_canon_tree(const char *text, char **out, char *why,
                          size_t whysz);

/* graph_finish's steps kept in their own modules. */
int gr_finish_identities(struct graph *g); /* graph_ident.c */
int gr_finish_expand(struct graph *g);     /* graph_expand.c */

#endif
