/* SPDX-License-Identifier: MIT */
/* Inheritance: grants derived through expandable grants (group in
   group), with their sources. */
#include "autoconfig.h"

#include <inttypes.h>
#include <stdlib.h>

#include "graph_int.h"

struct pair {
  uint32_t principal, src;
};

static int cmp_pair(const void *a, const void *b) {
  const struct pair *x = a, *y = b;

  if (x->principal != y->principal)
    return x->principal < y->principal ? -1 : 1;
  return (x->src > y->src) - (x->src < y->src);
}

/* Store a sorted, duplicate-free source list; returns its `src` value. */
static int src_store(struct graph *g, const struct pair *p, size_t n,
                     uint32_t *out) {
  size_t i;

  if (n == 1) {
    *out = p[0].src;
    return CH_OK;
  }
  if (g->nsrc + n + 1 >= SRC_LIST)
    return CH_E_LIMIT;
  if (util_grow(&g->srcpool, &g->csrc, g->nsrc + n + 1, sizeof(*g->srcpool)))
    return CH_E_NOMEM;
  *out = SRC_LIST | (uint32_t)g->nsrc;
  g->srcpool[g->nsrc++] = (uint32_t)n;
  for (i = 0; i < n; i++)
    g->srcpool[g->nsrc++] = p[i].src;
  return CH_OK;
}

/*
 * Expansion. For an expandable grant (E, P via P#s), every holder of P#s
 * holds E too, with source P#s; holders of P#s include, recursively, the
 * holders of every entitlement reached through expandable grants on it
 * (group in group), breadth first up to GRAPH_MAX_DEPTH hops, each
 * entitlement visited once per walk (cycles end there). The walk never
 * re-enters E, and a resource never inherits through its own entitlement:
 * in a cycle G1 -> G2 -> G1, G1 does not become a holder of what G1 holds.
 *
 * Entitlements are processed in key order and derived grants come out per
 * entitlement sorted by principal, so g->derived ends up in output order
 * with no global sort of (possibly) tens of millions of records.
 */
int gr_finish_expand(struct graph *g) {
  uint32_t *visit = NULL, *queue = NULL, stamp = 0;
  struct pair *pairs = NULL;
  size_t np = 0, cp = 0, e, i, j;
  int result = CH_E_NOMEM;

  visit = calloc(g->nents ? g->nents : 1, sizeof(*visit));
  queue = malloc((g->nents ? g->nents : 1) * sizeof(*queue));
  if (!visit || !queue)
    goto out;
  for (e = 0; e < g->nents; e++) {
    struct ent *E = &g->ents[e];
    size_t gend = (size_t)E->gfirst + E->gcount;
    int cut = 0;

    np = 0;
    for (i = E->gfirst; i < gend; i++) {
      uint32_t s1 = g->grants[i].expand ? g->grants[i].aux : NONE;
      size_t qhead = 0, qlen = 0, level_end;
      int depth = 1;
      if (s1 == NONE)
        continue;
      visit[e] = ++stamp;
      if (visit[s1] == stamp)
        continue; /* E expands through itself: nothing new */
      visit[s1] = stamp;
      queue[qlen++] = s1;
      level_end = qlen;
      while (qhead < qlen) {
        const struct ent *S = &g->ents[queue[qhead++]];
        for (j = S->gfirst; j < (size_t)S->gfirst + S->gcount; j++) {
          const struct rgrant *h = &g->grants[j];
          const struct node *x = g->order[h->prank];
          if (x != E->node && x != g->ents[s1].node) {
            if (util_grow(&pairs, &cp, np + 1, sizeof(*pairs)))
              goto out;
            pairs[np].principal = h->prank;
            pairs[np].src = s1;
            np++;
          }
          if (!h->expand || h->aux == NONE || visit[h->aux] == stamp)
            continue;
          if (depth >= GRAPH_MAX_DEPTH) {
            cut = 1;
            continue;
          }
          visit[h->aux] = stamp;
          queue[qlen++] = h->aux;
        }
        if (qhead == level_end) {
          depth++;
          level_end = qlen;
        }
      }
    }
    if (cut) {
      struct inst *in = E->node->type->inst;
      if (!in->ncut++)
        in->cut_key = E->key;
      in->gwarnings++;
    }
    if (!np)
      continue;
    gr_sort(pairs, np, sizeof(*pairs), cmp_pair);
    j = E->gfirst;
    for (i = 0; i < np;) {
      size_t k = i, u = i;
      uint32_t src;
      /* pairs[i..k) share a principal; make their sources unique */
      while (k < np && pairs[k].principal == pairs[i].principal) {
        if (pairs[k].src != pairs[u].src)
          pairs[++u] = pairs[k];
        k++;
      }
      result = src_store(g, pairs + i, u - i + 1, &src);
      if (result)
        goto out;
      result = CH_E_NOMEM;
      while (j < gend && g->grants[j].prank < pairs[i].principal)
        j++;
      if (j < gend && g->grants[j].prank == pairs[i].principal) {
        /* also held directly: stays direct; j only grows, so the side
           array stays ascending */
        if (util_grow(&g->gsrc, &g->cgsrc, g->ngsrc + 1, sizeof(*g->gsrc)))
          goto out;
        g->gsrc[g->ngsrc].grant = (uint32_t)j;
        g->gsrc[g->ngsrc++].v = src;
      } else {
        struct drun *run = g->ndruns ? &g->druns[g->ndruns - 1] : NULL;
        if (g->nderived >= NONE ||
            util_grow(&g->derived, &g->cderived, g->nderived + 1,
                      sizeof(*g->derived)))
          goto out;
        if (!run || run->ent != e || run->src != src) {
          if (util_grow(&g->druns, &g->cdruns, g->ndruns + 1,
                        sizeof(*g->druns)))
            goto out;
          run = &g->druns[g->ndruns++];
          run->first = (uint32_t)g->nderived;
          run->ent = (uint32_t)e;
          run->src = src;
        }
        g->derived[g->nderived++] = pairs[i].principal;
      }
      i = k;
    }
  }
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->ncut)
      gr_inst_log(in, CH_LOG_WARN,
                  "expansion stopped at depth %d for %" PRIu64
                  " entitlement(s) "
                  "(first: '%s'); deeper nested grants are not expanded",
                  GRAPH_MAX_DEPTH, in->ncut, in->cut_key);
  }
  result = CH_OK;
out:
  free(visit);
  free(queue);
  free(pairs);
  return result;
}
