/* SPDX-License-Identifier: MIT */
/* graph_finish: print and rank keys, fold and check direct grants, build
   the entitlements, then the identity join (graph_ident.c) and the
   expansion (graph_expand.c). */
#include "autoconfig.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph_int.h"

/* Position of def index `d` among the resource's carried slugs, or -1. */
static long res_slug_pos(const struct res *r, uint16_t d) {
  size_t lo = 0, hi = r ? r->nslugs : 0;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->slugs[mid] == d)
      return (long)mid;
    if (r->slugs[mid] < d)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static int cmp_node_key(const void *a, const void *b) {
  return strcmp((*(struct node *const *)a)->key,
                (*(struct node *const *)b)->key);
}

/* Print the key of every node and rank them by it. Failed instances are
   included so their stats count duplicates the same way; every writer
   skips them. */
static int finish_keys(struct graph *g) {
  struct gr_arena ka = GR_ARENA_INIT; /* the keys until they are ranked */
  size_t total = 0, i, j, pos;
  int result = CH_E_NOMEM;
  void *v;

  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    for (j = 0; j < in->ntypes; j++)
      total += in->tinfos[j].nodes.count;
  }
  if (total >= NONE)
    return CH_E_LIMIT;
  g->order = malloc((total ? total : 1) * sizeof(*g->order));
  if (!g->order)
    return CH_E_NOMEM;
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    for (j = 0; j < in->ntypes; j++) {
      struct tinfo *ti = &in->tinfos[j];
      /* "tenant/instance/type/", encoded once per type */
      char *pre = key_resource(in->tenant, in->name, ti->t->id, "");
      size_t plen;
      if (!pre)
        goto out;
      plen = strlen(pre);
      pos = 0;
      while (hmap_next(&ti->nodes, &pos, NULL, NULL, &v)) {
        struct node *n = v;
        size_t ilen = key_encode_to(n->id, NULL);
        /* into the arena at once: 200k keys as separate mallocs cost
           their headers, and the holes they leave once freed */
        char *k = gr_arena_alloc(&ka, plen + ilen + 1);
        if (!k) {
          free(pre);
          goto out;
        }
        memcpy(k, pre, plen);
        key_encode_to(n->id, k + plen);
        k[plen + ilen] = '\0';
        n->kplain = (uint8_t)gr_key_plain(k, &n->klen);
        n->key = k;
        g->order[g->norder++] = n;
      }
      free(pre);
    }
  }
  /* Every node is in g->order now, and nothing looks one up by id any
     more: the maps go (10 MB for 200k nodes). */
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    for (j = 0; j < in->ntypes; j++)
      hmap_release(&in->tinfos[j].nodes);
  }
  /* Keys are unique (the encoding is injective and (tenant, instance) is
     unique), so this order does not depend on the hash maps. */
  gr_sort(g->order, g->norder, sizeof(*g->order), cmp_node_key);
  /* Grants name their principal by rank, and the writer walks principals
     in rank order: keys packed in that order, found through a table of
     offsets, are read sequentially instead of through scattered nodes. */
  for (i = 0, total = 0; i < g->norder; i++)
    total += g->order[i]->klen + 1;
  result = CH_E_LIMIT;
  if (total >= KOFF_ESC)
    goto out;
  result = CH_E_NOMEM;
  g->keys = malloc(total ? total : 1);
  g->koff = malloc((g->norder + 1) * sizeof(*g->koff));
  if (!g->keys || !g->koff)
    goto out;
  for (i = 0, pos = 0; i < g->norder; i++) {
    struct node *n = g->order[i];
    memcpy(g->keys + pos, n->key, n->klen + 1);
    n->key = g->keys + pos;
    n->rank = (uint32_t)i;
    g->koff[i] = (uint32_t)pos | (n->kplain ? 0 : KOFF_ESC);
    pos += n->klen + 1;
  }
  g->koff[g->norder] = (uint32_t)pos;
  result = CH_OK;
out:
  gr_arena_release(&ka);
  return result;
}

/* Before entitlements exist: `ent` holds the resource's rank. */
static int cmp_grant_raw(const void *a, const void *b) {
  const struct rgrant *x = a, *y = b;

  if (x->ent != y->ent)
    return x->ent < y->ent ? -1 : 1;
  if (x->slug != y->slug)
    return x->slug < y->slug ? -1 : 1;
  if (x->prank != y->prank)
    return x->prank < y->prank ? -1 : 1;
  return 0;
}

static int cmp_grant(const void *a, const void *b) {
  const struct rgrant *x = a, *y = b;

  if (x->ent != y->ent)
    return x->ent < y->ent ? -1 : 1;
  if (x->prank != y->prank)
    return x->prank < y->prank ? -1 : 1;
  return 0;
}

/*
 * Sort direct grants in place: qsort (a merge sort in glibc) allocates a
 * copy of the whole array, 35 MB for a million grants, at graph_finish's
 * peak. Introsort: median-of-three quicksort, heapsort past a depth limit,
 * insertion sort for short runs. Not stable; every caller's order is total
 * or folds equal grants in an order-independent way.
 */
typedef int (*grant_cmp)(const void *, const void *);

static void grant_swap(struct rgrant *a, struct rgrant *b) {
  struct rgrant t = *a;
  *a = *b;
  *b = t;
}

static void grant_sift(struct rgrant *a, size_t i, size_t n, grant_cmp cmp) {
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      return;
    if (c + 1 < n && cmp(&a[c], &a[c + 1]) < 0)
      c++;
    if (cmp(&a[i], &a[c]) >= 0)
      return;
    grant_swap(&a[i], &a[c]);
    i = c;
  }
}

static void grants_sort(struct rgrant *a, size_t n, grant_cmp cmp,
                        unsigned depth) {
  while (n > 16) {
    size_t m = n / 2, i, j;
    struct rgrant pv;
    if (!depth--) {
      for (i = n / 2; i-- > 0;)
        grant_sift(a, i, n, cmp);
      for (i = n - 1; i > 0; i--) {
        grant_swap(&a[0], &a[i]);
        grant_sift(a, 0, i, cmp);
      }
      return;
    }
    /* a[0] <= a[m] <= a[n-1], then the median to the front as pivot */
    if (cmp(&a[m], &a[0]) < 0)
      grant_swap(&a[m], &a[0]);
    if (cmp(&a[n - 1], &a[m]) < 0) {
      grant_swap(&a[n - 1], &a[m]);
      if (cmp(&a[m], &a[0]) < 0)
        grant_swap(&a[m], &a[0]);
    }
    grant_swap(&a[0], &a[m]);
    pv = a[0];
    /* Hoare: a[0..j] <= pv <= a[j+1..n), both parts non-empty */
    i = 0;
    j = n;
    for (;;) {
      while (cmp(&a[i], &pv) < 0)
        i++;
      do
        j--;
      while (cmp(&a[j], &pv) > 0);
      if (i >= j)
        break;
      grant_swap(&a[i], &a[j]);
      i++;
    }
    /* recurse into the smaller part, loop on the larger */
    if (j + 1 < n - j - 1) {
      grants_sort(a, j + 1, cmp, depth);
      a += j + 1;
      n -= j + 1;
    } else {
      grants_sort(a + j + 1, n - j - 1, cmp, depth);
      n = j + 1;
    }
  }
  for (size_t i = 1; i < n; i++) {
    struct rgrant t = a[i];
    size_t k = i;
    for (; k > 0 && cmp(&a[k - 1], &t) > 0; k--)
      a[k] = a[k - 1];
    a[k] = t;
  }
}

static void grants_sort_all(struct graph *g, grant_cmp cmp) {
  unsigned depth = 0;

  for (size_t n = g->ngrants; n; n >>= 1)
    depth += 2;
  grants_sort(g->grants, g->ngrants, cmp, depth);
}

/* Fold duplicate `b` into `a`. Each choice is independent of which came
   first: flags are united, the lowest expand slug and the lowest profile
   (by bytes) are kept. */
static void grant_fold(struct graph *g, struct rgrant *a, struct rgrant *b) {
  const char *ap = grant_profile(g, a), *bp = grant_profile(g, b);

  if (b->expand) {
    const struct node *p = g->order[a->prank]; /* the same principal */
    if (!a->expand ||
        strcmp(def_slug(p, b->expand - 1), def_slug(p, a->expand - 1)) < 0)
      a->expand = b->expand;
  }
  if (bp && (!ap || strcmp(bp, ap) < 0)) {
    uint32_t t = a->aux;
    a->aux = b->aux;
    b->aux = t;
  }
  b->aux = NONE; /* profiles are shared: nothing to free */
}

/* What an id looks like, to name the likely cause of a grant that does
   not resolve: most often the grant and the listing spell one object in
   two forms (an ARI against a bare id, an encoded id against a raw one). */
static const char *id_form(const char *id) {
  if (strncmp(id, "ari:", 4) == 0)
    return "it looks like an ARI";
  if (strstr(id, "://"))
    return "it looks like a URL";
  for (const char *p = strchr(id, '%'); p; p = strchr(p + 1, '%'))
    if (isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))
      return "it looks percent-encoded";
  return "a plain id";
}

/* The instance error for its unresolved grants: the lowest key, how many
   more, and what is wrong with the first one. */
static char *bad_grant_error(const struct inst *in) {
  const struct node *n = in->bad_node;
  char more[48] = "";

  if (in->nbad > 1)
    snprintf(more, sizeof(more), " (and %" PRIu64 " more)", in->nbad - 1);
  if (n->res)
    return gr_strf("grant on unknown entitlement '%s'%s: %s '%s' was listed "
                   "without that entitlement",
                   in->bad_key, more, n->type->t->id, n->id);
  return gr_strf("grant on unknown entitlement '%s'%s: no %s with id '%s' (%s) "
                 "was listed; the %s listing of %s/%s should have carried it, "
                 "or the plugin names it in another id form there",
                 in->bad_key, more, n->type->t->id, n->id, id_form(n->id),
                 n->type->t->id, in->tenant, in->name);
}

/* Grants by rank, sorted, a grant sent twice folded into one, and each
   instance's count of them: what the graph keeps, whichever instances
   fail later. */
static void settle_grants(struct graph *g) {
  size_t i, o = 0;

  for (i = 0; i < g->ngrants; i++) {
    g->grants[i].ent = g->nodes[g->grants[i].ent]->rank;
    g->grants[i].prank = g->nodes[g->grants[i].prank]->rank;
  }
  free(g->nodes); /* from here on grants name nodes by rank */
  g->nodes = NULL;
  g->nnodes = g->cnodes = 0;
  grants_sort_all(g, cmp_grant_raw);
  for (i = 0; i < g->ngrants; i++) {
    if (o && !cmp_grant_raw(&g->grants[o - 1], &g->grants[i])) {
      grant_fold(g, &g->grants[o - 1], &g->grants[i]);
      continue;
    }
    g->order[g->grants[i].ent]->type->inst->ngrants++;
    g->grants[o++] = g->grants[i];
  }
  g->ngrants = o;
}

/* The keys ranked and the grants settled, once: by graph_received (the
   shrink check, which may still fail instances) or by graph_finish. */
static int settle(struct graph *g) {
  if (!g->settled) {
    g->settled = 1;
    g->settle_rc = finish_keys(g);
    if (!g->settle_rc)
      settle_grants(g);
  }
  return g->settle_rc;
}

int graph_received(struct graph *g, int inst, uint64_t *resources,
                   uint64_t *grants) {
  const struct inst *in;
  int rc = CH_E_INVALID;

  pthread_mutex_lock(&g->lock);
  in = inst >= 0 && (size_t)inst < g->ninsts ? g->insts[inst] : NULL;
  if (!g->finished && in && (rc = settle(g)) == CH_OK) {
    *resources = in->nres;
    *grants = in->ngrants;
  }
  pthread_mutex_unlock(&g->lock);
  return rc;
}

/* Fail the instances that granted an entitlement no listed resource
   carries, drop grants to principals never listed. */
static int finish_check_grants(struct graph *g) {
  size_t i, o = 0;

  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    struct node *rn = g->order[r->ent];
    struct inst *in = rn->type->inst;
    char *key;
    if (!in->ok || res_slug_pos(rn->res, r->slug) >= 0)
      continue;
    in->nbad++;
    key = key_entitlement(rn->key, def_slug(rn, r->slug));
    if (!key)
      return CH_E_NOMEM;
    /* Report the lowest key, not the first seen: the message must not
       depend on the order the workers delivered the grants. */
    if (!in->bad_key || strcmp(key, in->bad_key) < 0) {
      free(in->bad_key);
      in->bad_key = key;
      in->bad_node = rn;
    } else {
      free(key);
    }
  }
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (!in->ok || !in->nbad)
      continue;
    in->ok = 0;
    free(in->error);
    in->error = bad_grant_error(in);
    if (!in->error)
      return CH_E_NOMEM;
  }

  o = 0;
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    const struct node *rn = g->order[r->ent], *pn = g->order[r->prank];
    struct inst *in = rn->type->inst;
    if (in->ok && !pn->res) {
      if (!in->dropped) {
        char *key = key_entitlement(rn->key, def_slug(rn, r->slug));
        gr_inst_log(in, CH_LOG_WARN,
                    "grant of '%s' to '%s', which was never listed, dropped",
                    key ? key : rn->key, pn->key);
        free(key);
      }
      in->dropped++;
      in->gwarnings++;
    }
    if (!in->ok || !pn->res) {
      r->aux = NONE;
      continue;
    }
    g->grants[o++] = *r;
  }
  g->ngrants = o;
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->dropped > 1)
      gr_inst_log(in, CH_LOG_WARN,
                  "%" PRIu64 " grants to principals never listed were dropped",
                  in->dropped);
  }
  return CH_OK;
}

static int cmp_ent(const void *a, const void *b) {
  return strcmp(((const struct ent *)a)->key, ((const struct ent *)b)->key);
}

/* One entitlement per carried slug of every kept resource, sorted by key. */
static int finish_ents(struct graph *g) {
  size_t total = 0, i, p;

  for (i = 0; i < g->norder; i++) {
    if (kept(g->order[i]))
      total += g->order[i]->res->nslugs;
  }
  if (total >= SRC_LIST)
    return CH_E_LIMIT;
  g->ents = calloc(total ? total : 1, sizeof(*g->ents));
  if (!g->ents)
    return CH_E_NOMEM;
  for (i = 0; i < g->norder; i++) {
    struct node *n = g->order[i];
    if (!kept(n) || !n->res->nslugs)
      continue;
    n->ents = malloc(n->res->nslugs * sizeof(*n->ents));
    if (!n->ents)
      return CH_E_NOMEM;
    for (p = 0; p < n->res->nslugs; p++) {
      struct ent *e = &g->ents[g->nents];
      e->key = key_entitlement(n->key, def_slug(n, n->res->slugs[p]));
      if (!e->key)
        return CH_E_NOMEM;
      e->kplain = (uint8_t)gr_key_plain(e->key, &e->klen);
      e->node = n;
      e->slug = n->res->slugs[p];
      e->pos = (uint16_t)p;
      g->nents++;
    }
  }
  /* Not the resource order: "a!#x" sorts before "a#x" while resource "a"
     sorts before "a!". Output promises byte order of the printed keys. */
  gr_sort(g->ents, g->nents, sizeof(*g->ents), cmp_ent);
  for (i = 0; i < g->nents; i++)
    g->ents[i].node->ents[g->ents[i].pos] = (uint32_t)i;
  return CH_OK;
}

/* Point grants at entitlements, sort them, resolve what expandable grants
   expand through. */
static int finish_grants(struct graph *g) {
  size_t i, np = 0;

  if (g->ngrants >= NONE)
    return CH_E_LIMIT; /* entitlements index their grants with 32 bits */
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    const struct node *rn = g->order[r->ent];
    r->ent = rn->ents[res_slug_pos(rn->res, r->slug)];
    np += r->aux != NONE;
  }
  grants_sort_all(g, cmp_grant);
  /* The order is final: profiles move beside the grants, and `aux`
     becomes what expandable ones inherit through. */
  g->gprof = malloc((np ? np : 1) * sizeof(*g->gprof));
  if (!g->gprof)
    return CH_E_NOMEM;
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    if (r->aux != NONE) {
      g->gprof[g->ngprof].grant = (uint32_t)i;
      g->gprof[g->ngprof++].v = r->aux;
    }
    r->aux = NONE;
  }
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    struct ent *e = &g->ents[r->ent];
    const struct node *pn = g->order[r->prank];
    long p;
    if (!e->gcount)
      e->gfirst = (uint32_t)i;
    e->gcount++;
    if (!r->expand)
      continue;
    p = res_slug_pos(pn->res, r->expand - 1);
    if (p >= 0) {
      r->aux = pn->ents[p];
      continue;
    }
    /* The principal's type declares the slug but this resource does not
       carry it: nobody can hold it, so nothing is inherited. */
    if (!pn->type->inst->nexp++) {
      pn->type->inst->exp_key =
          key_entitlement(pn->key, def_slug(pn, r->expand - 1));
      if (!pn->type->inst->exp_key)
        return CH_E_NOMEM;
    }
    pn->type->inst->gwarnings++;
  }
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->nexp)
      gr_inst_log(in, CH_LOG_WARN,
                  "%" PRIu64
                  " expandable grant(s) expand through an entitlement "
                  "the principal does not carry (first: '%s'); not expanded",
                  in->nexp, in->exp_key);
  }
  return CH_OK;
}

int graph_finish(struct graph *g) {
  struct graph_counts *c;
  size_t i;
  int result = CH_E_INVALID;

  if (!g)
    return CH_E_INVALID;
  pthread_mutex_lock(&g->lock);
  if (g->finished)
    goto out;
  g->finished = 1;
  gr_trim();
  /* Step by step; each one's order comes from sorted keys, never from
     arrival order or hash order. */
  result = settle(g);
  if (!result)
    result = finish_check_grants(g);
  if (!result)
    result = finish_ents(g);
  if (!result)
    result = finish_grants(g);
  if (!result)
    result = gr_finish_identities(g);
  gr_trim(); /* the join's scratch, before the derived grants come */
  if (!result)
    result = gr_finish_expand(g);
  gr_trim(); /* the steps' scratch arrays */
  if (result)
    goto out;
  c = &g->counts;
  for (i = 0; i < g->norder; i++)
    c->resources += kept(g->order[i]);
  c->entitlements = g->nents;
  c->derived_grants = g->nderived;
  c->grants = g->ngrants + g->nderived;
  c->identities = g->nidents;
  for (i = 0; i < g->nidents; i++)
    c->merged_identities += g->idents[i].nmembers > 1;
out:
  pthread_mutex_unlock(&g->lock);
  return result;
}
