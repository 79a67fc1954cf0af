/* SPDX-License-Identifier: MIT */
/* The unified entitlement graph: its lifecycle, the instances, shared
   helpers and the read-only views the snapshot store records. The work is
   split by job: graph_add.c, graph_finish.c, graph_ident.c,
   graph_expand.c, graph_json.c and graph_write.c (see graph_int.h). */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__ /* defined once a libc header is in */
#include <malloc.h>
#endif

#include "graph_int.h"

/* ---- small helpers ------------------------------------------------------- */

struct gr_chunk {
  struct gr_chunk *next;
  char data[];
};

#define GR_CHUNK (64 * 1024 - 64)

void *gr_arena_alloc(struct gr_arena *a, size_t n) {
  char *d;

  if (n > a->left) {
    size_t sz = n > GR_CHUNK / 4 ? n : GR_CHUNK;
    struct gr_chunk *c = malloc(sizeof(*c) + sz);
    if (!c)
      return NULL;
    c->next = a->head;
    a->head = c;
    if (sz != GR_CHUNK) /* a big one gets a chunk of its own */
      return c->data;
    a->p = c->data;
    a->left = sz;
  }
  d = a->p;
  a->p += n;
  a->left -= n;
  return d;
}

char *gr_arena_dup(struct gr_arena *a, const char *s, size_t n) {
  char *d = gr_arena_alloc(a, n + 1);

  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void gr_arena_release(struct gr_arena *a) {
  while (a->head) {
    struct gr_chunk *c = a->head;
    a->head = c->next;
    free(c);
  }
  a->p = NULL;
  a->left = 0;
}

/* qsort, but fine with an empty (NULL) array. */
void gr_sort(void *base, size_t n, size_t size,
             int (*cmp)(const void *, const void *)) {
  if (n > 1)
    qsort(base, n, size, cmp);
}

void gr_trim(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

char *gr_strf(const char *fmt, ...) {
  va_list ap;
  char *s;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  s = malloc((size_t)n + 1);
  if (!s)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

void gr_inst_log(const struct inst *in, enum ch_log_level level,
                 const char *fmt, ...) {
  char prefix[256];
  va_list ap;

  snprintf(prefix, sizeof(prefix), "%s:%s/%s", in->plugin, in->tenant,
           in->name);
  va_start(ap, fmt);
  log_vmsg(prefix, level, fmt, ap);
  va_end(ap);
}

/* ---- lifecycle ----------------------------------------------------------- */

struct graph *graph_new(void) {
  struct graph *g = calloc(1, sizeof(*g));

  if (!g)
    return NULL;
  g->vbuf = calloc(1, sizeof(*g->vbuf));
  if (!g->vbuf || pthread_mutex_init(&g->lock, NULL)) {
    free(g->vbuf);
    free(g);
    return NULL;
  }
  hmap_init(&g->tenants);
  hmap_init(&g->gpmap);
  gr_pdict_init(&g->pdict);
  return g;
}

static void inst_free(struct inst *in) {
  size_t i;

  if (!in)
    return;
  /* the nodes and their records are in g->narena, their keys and
     entitlement indices freed by graph_free */
  for (i = 0; in->tinfos && i < in->ntypes; i++) {
    hmap_release(&in->tinfos[i].nodes);
    hmap_release(&in->tinfos[i].slugs);
  }
  free(in->tinfos);
  hmap_release(&in->type_map);
  free(in->tenant);
  free(in->name);
  free(in->plugin);
  free(in->version);
  free(in->error);
  free(in->bad_key);
  free(in->exp_key);
  free(in);
}

void graph_free(struct graph *g) {
  size_t i;

  if (!g)
    return;
  for (i = 0; i < g->ngprofiles; i++)
    free(g->gprofiles[i]);
  free(g->gprofiles);
  hmap_release(&g->gpmap);
  free(g->grants);
  free(g->nodes);
  for (i = 0; i < g->nents; i++)
    free(g->ents[i].key);
  free(g->ents);
  free(g->idents);
  gr_arena_release(&g->iarr);
  free(g->imembers);
  gr_arena_release(&g->istrs);
  for (i = 0; i < g->nhints; i++)
    free(g->hints[i].keys);
  free(g->hints);
  free(g->derived);
  free(g->druns);
  free(g->srcpool);
  free(g->gprof);
  free(g->gsrc);
  for (i = 0; i < g->norder; i++)
    free(g->order[i]->ents);
  free(g->keys);
  free(g->koff);
  free(g->order);
  for (i = 0; i < g->ninsts; i++)
    inst_free(g->insts[i]);
  free(g->insts);
  gr_arena_release(&g->narena); /* the nodes, once nothing reads them */
  for (i = 0; i < g->ntenants; i++)
    free(g->tenant_names[i]);
  free(g->tenant_names);
  hmap_release(&g->tenants);
  gr_pdict_release(&g->pdict);
  free(g->vbuf->buf);
  free(g->vbuf);
  pthread_mutex_destroy(&g->lock);
  free(g);
}

int graph_add_instance(struct graph *g, const char *tenant,
                       const char *instance, const char *plugin,
                       const char *plugin_version,
                       const struct ch_resource_type *types) {
  struct inst *in = NULL;
  uintptr_t tidx;
  size_t i, j;
  int result = CH_E_INVALID;

  if (!g || !tenant || !*tenant || !instance || !*instance || !types ||
      g->finished || g->settled || g->ninsts >= (size_t)INT32_MAX)
    goto out;
  for (i = 0; i < g->ninsts; i++) {
    if (!strcmp(g->insts[i]->tenant, tenant) &&
        !strcmp(g->insts[i]->name, instance))
      goto out; /* the same key space twice would merge two instances */
  }
  result = CH_E_NOMEM;
  in = calloc(1, sizeof(*in));
  if (!in)
    goto out;
  in->ok = 1;
  in->types = types;
  in->tenant = strdup(tenant);
  in->name = strdup(instance);
  in->plugin = strdup(plugin ? plugin : "");
  in->version = strdup(plugin_version ? plugin_version : "");
  if (!in->tenant || !in->name || !in->plugin || !in->version)
    goto out;
  while (types[in->ntypes].id)
    in->ntypes++;
  in->tinfos = calloc(in->ntypes ? in->ntypes : 1, sizeof(*in->tinfos));
  if (!in->tinfos)
    goto out;
  for (i = 0; i < in->ntypes; i++) {
    struct tinfo *ti = &in->tinfos[i];
    const struct ch_entitlement_def *d = types[i].entitlements;
    ti->t = &types[i];
    ti->inst = in;
    result = CH_E_INVALID;
    if (!*types[i].id || hmap_gets(&in->type_map, types[i].id))
      goto out;
    result = CH_E_NOMEM;
    if (hmap_puts(&in->type_map, types[i].id, ti))
      goto out;
    for (j = 0; d && d[j].slug; j++) {
      result = CH_E_INVALID;
      if (j >= MAX_SLUGS || !*d[j].slug || type_slug(ti, d[j].slug))
        goto out;
      result = CH_E_NOMEM;
      if (hmap_puts(&ti->slugs, d[j].slug, (void *)(uintptr_t)(j + 1)))
        goto out;
    }
    ti->ndefs = j;
  }
  result = CH_E_INVALID;
  for (i = 0; i < in->ntypes; i++) {
    if (!types[i].parent)
      continue;
    in->tinfos[i].parent = inst_type(in, types[i].parent);
    if (!in->tinfos[i].parent)
      goto out;
  }
  result = CH_E_NOMEM;
  tidx = (uintptr_t)hmap_gets(&g->tenants, tenant);
  if (!tidx) {
    char *name = strdup(tenant);
    if (!name || util_grow(&g->tenant_names, &g->ctenants, g->ntenants + 1,
                           sizeof(char *))) {
      free(name);
      goto out;
    }
    g->tenant_names[g->ntenants] = name;
    if (hmap_puts(&g->tenants, name, (void *)(uintptr_t)(g->ntenants + 1))) {
      free(name);
      goto out;
    }
    tidx = ++g->ntenants;
  }
  in->tenant_idx = (uint32_t)(tidx - 1);
  if (util_grow(&g->insts, &g->cinsts, g->ninsts + 1, sizeof(*g->insts)))
    goto out;
  g->insts[g->ninsts] = in;
  in = NULL;
  result = (int)g->ninsts++;
out:
  inst_free(in);
  return result;
}

int graph_instance_ok(const struct graph *g, int inst, const char **error) {
  const struct inst *in = graph_inst(g, inst);

  if (error)
    *error = in && !in->ok ? (in->error ? in->error : "failed") : NULL;
  return in ? in->ok : 0;
}

void graph_counts(const struct graph *g, struct graph_counts *out) {
  memset(out, 0, sizeof(*out));
  if (g && g->finished)
    *out = g->counts;
}

/* ---- views for the snapshot store ---------------------------------------- */

size_t graph_ninstances(const struct graph *g) { return g->ninsts; }

void graph_instance_view(const struct graph *g, size_t i,
                         struct graph_inst_view *out) {
  const struct inst *in = g->insts[i];

  out->tenant = in->tenant;
  out->instance = in->name;
  out->plugin = in->plugin;
  out->plugin_version = in->version;
  out->ok = in->ok;
  out->error = in->ok ? NULL : (in->error ? in->error : "failed");
  out->resources = in->nres;
  out->grants = in->ngrants;
  out->pages = in->pages;
  out->requests = in->requests;
  out->retries = in->retries;
  out->warnings = in->warnings + in->gwarnings;
}

size_t graph_nnodes(const struct graph *g) {
  return g->finished ? g->norder : 0;
}

static size_t inst_index(const struct graph *g, const struct node *n) {
  size_t i = 0;

  while (g->insts[i] != n->type->inst)
    i++;
  return i;
}

const char *graph_resource_key(const struct graph *g, size_t i, size_t *inst) {
  const struct node *n = g->order[i];

  if (!kept(n))
    return NULL;
  if (inst)
    *inst = inst_index(g, n);
  return n->key;
}

const char *const *graph_resource_emails(const struct graph *g, size_t i) {
  const struct node *n = g->order[i];
  static const char *const none[] = {NULL};

  if (!kept(n))
    return NULL;
  return n->res->emails ? (const char *const *)n->res->emails : none;
}

int graph_resource_view(const struct graph *g, size_t i,
                        struct graph_res_view *out) {
  const struct node *n = g->order[i];
  const struct res *r = n->res;

  if (!kept(n))
    return 0;
  out->key = n->key;
  out->type = n->type->t->id;
  out->id = n->id;
  out->display_name = r->display_name;
  out->inst = inst_index(g, n);
  out->traits = n->type->t->traits;
  out->status = r->status;
  out->account_type = r->account_type;
  out->emails = r->emails;
  out->match_keys = r->match_keys;
  out->profile = NULL;
  if (r->profile) { /* decoded into the graph's one view buffer */
    g->vbuf->len = 0;
    gr_pdict_write(&g->pdict, r->profile, g->vbuf);
    jw_put(g->vbuf, "", 1);
    if (!g->vbuf->failed)
      out->profile = g->vbuf->buf;
    g->vbuf->failed = 0;
  }
  out->parent = r->parent ? r->parent->rank : GRAPH_NONE;
  out->identity = n->identity;
  return 1;
}

size_t graph_nentitlements(const struct graph *g) { return g->nents; }

void graph_entitlement_view(const struct graph *g, size_t i,
                            struct graph_ent_view *out) {
  const struct ent *e = &g->ents[i];
  const struct ch_entitlement_def *d = &e->node->type->t->entitlements[e->slug];

  out->key = e->key;
  out->slug = d->slug;
  out->display_name = d->display_name;
  out->resource = e->node->rank;
}

size_t graph_ngrants(const struct graph *g, size_t *ndirect) {
  if (ndirect)
    *ndirect = g->ngrants;
  return g->ngrants + g->nderived;
}

static const struct drun *drun_of(const struct graph *g, size_t i) {
  size_t lo = 0, hi = g->ndruns; /* the last run with first <= i */

  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (g->druns[mid].first <= i)
      lo = mid;
    else
      hi = mid;
  }
  return &g->druns[lo];
}

/* A direct grant's aux is the first side entry at or after it (its own
   when it has one); a derived grant's, its run. */
void graph_grant_locate(const struct graph *g, size_t i,
                        struct graph_grant_pos *p) {
  p->index = (uint32_t)i;
  if (i < g->ngrants)
    p->aux = (uint32_t)gside_lower(g->gsrc, g->ngsrc, i);
  else
    p->aux = g->ndruns ? (uint32_t)(drun_of(g, i - g->ngrants) - g->druns) : 0;
}

void graph_grant_step(const struct graph *g, struct graph_grant_pos *p) {
  size_t i = ++p->index;

  if (i < g->ngrants) {
    if (p->aux < g->ngsrc && g->gsrc[p->aux].grant < i)
      p->aux++;
  } else if (i == g->ngrants) {
    graph_grant_locate(g, i, p);
  } else {
    while (p->aux + 1 < g->ndruns &&
           g->druns[p->aux + 1].first <= i - g->ngrants)
      p->aux++;
  }
}

void graph_grant_view_at(const struct graph *g, const struct graph_grant_pos *p,
                         struct graph_grant_view *out) {
  size_t i = p->index;
  const struct rgrant *r = i < g->ngrants ? &g->grants[i] : NULL;
  const struct drun *run = r ? NULL : &g->druns[p->aux];
  const struct gside *gs = r && p->aux < g->ngsrc && g->gsrc[p->aux].grant == i
                               ? &g->gsrc[p->aux]
                               : NULL;
  const uint32_t *srcp = r ? (gs ? &gs->v : NULL) : &run->src;
  uint32_t src = srcp ? *srcp : NONE;

  out->ent = r ? r->ent : run->ent;
  out->principal = r ? r->prank : g->derived[i - g->ngrants];
  out->direct = r != NULL;
  out->expandable = r && r->expand ? r->aux : NONE;
  out->sources = NULL;
  out->nsources = 0;
  if (src == NONE)
    return;
  if (src & SRC_LIST) {
    out->sources = g->srcpool + (src & ~SRC_LIST) + 1;
    out->nsources = g->srcpool[src & ~SRC_LIST];
  } else {
    out->sources = srcp;
    out->nsources = 1;
  }
}

void graph_grant_view(const struct graph *g, size_t i,
                      struct graph_grant_view *out) {
  struct graph_grant_pos p;

  graph_grant_locate(g, i, &p);
  graph_grant_view_at(g, &p, out);
}

size_t graph_nidentities(const struct graph *g) { return g->nidents; }

void graph_identity_view(const struct graph *g, size_t i,
                         struct graph_ident_view *out) {
  const struct ident *id = &g->idents[i];

  out->key = id->key;
  out->tenant = id->tenant;
  out->display_name = id->display_name;
  out->emails = (const char *const *)id->emails;
  out->nemails = id->nemails;
  out->members = id->members;
  out->nmembers = id->nmembers;
}
