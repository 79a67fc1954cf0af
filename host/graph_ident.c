/* SPDX-License-Identifier: MIT */
/* The identity join: user resources of a tenant that share a match key
   are one identity (union-find), keyed by its smallest match key. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "graph_int.h"

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort and deduplicate an array of strings; returns the new count. */
static size_t sort_unique(const char **v, size_t n) {
  size_t i, o = 0;

  if (!n)
    return 0;
  gr_sort(v, n, sizeof(*v), cmp_strp);
  for (i = 1; i < n; i++) {
    if (strcmp(v[i], v[o]))
      v[++o] = v[i];
  }
  return o + 1;
}

/* `s` with ASCII lowercased from byte `from` on: `s` itself when that
   changes nothing (the common case), else a copy in `a`; NULL when out
   of memory. */
static const char *lower_from(struct gr_arena *a, const char *s, size_t from) {
  const char *p;
  char *d, *q;

  for (p = s + from; *p && !(*p >= 'A' && *p <= 'Z'); p++)
    ;
  if (!*p)
    return s;
  d = gr_arena_dup(a, s, strlen(s));
  if (!d)
    return NULL;
  for (q = d + (p - s); *q; q++) {
    if (*q >= 'A' && *q <= 'Z')
      *q = (char)(*q - 'A' + 'a');
  }
  return d;
}

/* a, b and c back to back in `ar`, or NULL when out of memory. */
static char *arena_cat(struct gr_arena *ar, const char *a, const char *b,
                       const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *d = gr_arena_alloc(ar, la + lb + lc + 1);

  if (d) {
    memcpy(d, a, la);
    memcpy(d + la, b, lb);
    memcpy(d + la + lb, c, lc + 1);
  }
  return d;
}

/* The match key as identity merge compares it: email values ignore ASCII
   case (mail systems do), everything else is compared exactly. */
static const char *match_key_norm(struct gr_arena *a, const char *mk) {
  return strncmp(mk, "email=", 6) ? mk : lower_from(a, mk, 6);
}

static uint32_t uf_find(uint32_t *uf, uint32_t x) {
  while (uf[x] != x) {
    uf[x] = uf[uf[x]];
    x = uf[x];
  }
  return x;
}

static int is_user(const struct node *n) {
  return kept(n) && (n->type->t->traits & CH_TRAIT_USER);
}

static int cmp_ident(const void *a, const void *b) {
  return strcmp(((const struct ident *)a)->key, ((const struct ident *)b)->key);
}

struct strv { /* ident_fill's scratch, reused for every identity */
  const char **v;
  size_t cap;
};

/* The sorted, unique v[0..n) to keep: the emails (or match keys, `mks`) of
   a member that holds just these, or else a copy in g->iarr. Most
   identities are one account, or a Jira user and the organization's
   account that carries its keys: no copy. */
static const char *const *keep_strv(struct graph *g, const struct ident *id,
                                    int mks, const char **v, size_t n) {
  const char **c;
  size_t i, k;

  for (i = 0; i < id->nmembers; i++) {
    const struct res *r = g->order[id->members[i]]->res;
    const char *const *a = mks ? r->match_keys : r->emails;
    for (k = 0; k < n && a[k] && !strcmp(a[k], v[k]); k++)
      ;
    if (k == n && !a[k])
      return a;
  }
  c = gr_arena_alloc(&g->iarr, (n ? n : 1) * sizeof(*c));
  if (c && n)
    memcpy(c, v, n * sizeof(*c));
  return c;
}

/* Emails, match keys, display name and key of one identity. */
static int ident_fill(struct graph *g, struct ident *id, struct strv *sc) {
  const struct node *first = g->order[id->members[0]];
  size_t i, ne = 0, nm = 0;
  const char *const *v;
  const char **em, **mk;
  char *enc = NULL, *t = NULL;
  int result = CH_E_NOMEM;

  id->tenant = first->type->inst->tenant;
  for (i = 0; i < id->nmembers; i++) {
    const struct res *r = g->order[id->members[i]]->res;
    if (!id->display_name && r->display_name && *r->display_name)
      id->display_name = r->display_name;
    for (v = r->emails; *v; v++)
      ne++;
    for (v = r->match_keys; *v; v++)
      nm++;
  }
  /* one block: the match keys follow the emails */
  if (util_grow(&sc->v, &sc->cap, ne + nm + 1, sizeof(*sc->v)))
    goto out;
  em = sc->v;
  mk = sc->v + ne;
  for (i = 0; i < id->nmembers; i++) {
    const struct res *r = g->order[id->members[i]]->res;
    for (v = r->emails; *v; v++) {
      const char *e = lower_from(&g->istrs, *v, 0);
      if (!e)
        goto out;
      em[id->nemails++] = e;
    }
    for (v = r->match_keys; *v; v++) {
      const char *m = match_key_norm(&g->istrs, *v);
      if (!m)
        goto out;
      mk[id->nmks++] = m;
    }
  }
  id->nemails = (uint32_t)sort_unique(em, id->nemails);
  id->nmks = (uint32_t)sort_unique(mk, id->nmks);
  id->emails = keep_strv(g, id, 0, em, id->nemails);
  id->mks = keep_strv(g, id, 1, mk, id->nmks);
  if (!id->emails || !id->mks)
    goto out;
  t = key_encode(id->tenant);
  /* Keyed by its smallest match key: stable while that key lives,
     whichever accounts join or leave. An identity without match keys has
     one member; '~' cannot start a match key, so the two forms never
     collide. */
  enc = key_encode(id->hint_key &&
                           (!id->nmks || strcmp(id->hint_key, id->mks[0]) < 0)
                       ? id->hint_key
                   : id->nmks ? id->mks[0]
                              : first->key);
  if (!t || !enc)
    goto out;
  id->key =
      arena_cat(&g->istrs, t, id->nmks ? "/~identity/" : "/~identity/~", enc);
  if (!id->key)
    goto out;
  result = CH_OK;
out:
  free(t);
  free(enc);
  return result;
}

struct mkref { /* one user's match key, as the join compares it */
  const char *mk;
  uint32_t tenant, node;
};

static int cmp_mkref(const void *a, const void *b) {
  const struct mkref *x = a, *y = b;

  if (x->tenant != y->tenant)
    return x->tenant < y->tenant ? -1 : 1;
  return strcmp(x->mk, y->mk);
}

/* Union-find over the user resources of each tenant sharing a match key:
   the match keys are sorted (by tenant, then text) and each run of equal
   ones joined. A hash map over them would need a copy of every key with
   its tenant and 24-byte slots, at graph_finish's peak. */
int graph_add_join_keys(struct graph *g, int inst, const char *const *keys) {
  const struct inst *in = graph_inst(g, inst);
  struct jhint h = {0, NULL};
  size_t n = 0, size;
  char *text;
  int rc = CH_E_NOMEM;

  while (keys && keys[n])
    n++;
  if (!in || !n)
    return CH_OK;
  /* one block: the pointer array (malloc's alignment), then the texts */
  size = (n + 1) * sizeof(*h.keys);
  for (size_t i = 0; i < n; i++)
    size += strlen(keys[i]) + 1;
  if (!(h.keys = malloc(size)))
    return CH_E_NOMEM;
  text = (char *)(h.keys + n + 1);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(keys[i]) + 1;
    h.keys[i] = memcpy(text, keys[i], len);
    text += len;
  }
  h.keys[n] = NULL;
  h.tenant = in->tenant_idx;
  pthread_mutex_lock(&g->lock);
  if (g->finished)
    rc = CH_E_INVALID;
  else if (!util_grow(&g->hints, &g->chints, g->nhints + 1, sizeof(*g->hints)))
    rc = CH_OK;
  if (rc == CH_OK)
    g->hints[g->nhints++] = h;
  pthread_mutex_unlock(&g->lock);
  if (rc)
    free(h.keys);
  return rc;
}

int gr_finish_identities(struct graph *g) {
  struct gr_arena keys = GR_ARENA_INIT; /* match keys lowercased */
  struct mkref *refs = NULL;
  struct strv sc = {NULL, 0};
  size_t i, j, nid = 0, nusers = 0, nrefs = 0;
  uint32_t *uf = NULL, *idof = NULL;
  int result = CH_E_NOMEM;

  for (i = 0; i < g->norder; i++) {
    const char *const *v;
    if (is_user(g->order[i])) {
      for (v = g->order[i]->res->match_keys; *v; v++)
        nrefs++;
    }
  }
  for (i = 0; i < g->nhints; i++)
    for (const char **v = g->hints[i].keys; *v; v++)
      nrefs++;
  /* the join hints are nodes norder.. of the union-find */
  uf = malloc((g->norder + g->nhints + 1) * sizeof(*uf));
  idof = malloc((g->norder + g->nhints + 1) * sizeof(*idof));
  refs = malloc((nrefs ? nrefs : 1) * sizeof(*refs));
  if (!uf || !idof || !refs)
    goto out;
  for (i = 0; i < g->norder + g->nhints; i++) {
    uf[i] = (uint32_t)i;
    idof[i] = NONE;
  }
  for (i = 0, nrefs = 0; i < g->norder; i++) {
    const struct node *n = g->order[i];
    const char *const *v;
    if (!is_user(n))
      continue;
    for (v = n->res->match_keys; *v; v++) {
      const char *m = match_key_norm(&keys, *v);
      if (!m)
        goto out;
      /* The tenant is part of the key: identities never span tenants
         even when their users share an account id. */
      refs[nrefs].mk = m;
      refs[nrefs].tenant = n->type->inst->tenant_idx;
      refs[nrefs].node = (uint32_t)i;
      nrefs++;
    }
  }
  for (i = 0; i < g->nhints; i++) {
    for (const char **v = g->hints[i].keys; *v; v++) {
      const char *m = match_key_norm(&keys, *v);
      if (!m)
        goto out;
      refs[nrefs].mk = m;
      refs[nrefs].tenant = g->hints[i].tenant;
      refs[nrefs].node = (uint32_t)(g->norder + i);
      nrefs++;
    }
  }
  gr_sort(refs, nrefs, sizeof(*refs), cmp_mkref);
  for (i = 0; i < nrefs; i = j) {
    for (j = i + 1; j < nrefs && !cmp_mkref(&refs[i], &refs[j]); j++) {
      uint32_t a = uf_find(uf, refs[i].node);
      uint32_t b = uf_find(uf, refs[j].node);
      if (a < b)
        uf[b] = a;
      else
        uf[a] = b;
    }
  }
  free(refs);
  refs = NULL;
  gr_arena_release(&keys);
  /* Number identities by their lowest member, count members. */
  for (i = 0; i < g->norder; i++) {
    uint32_t root;
    if (!is_user(g->order[i]))
      continue;
    root = uf_find(uf, (uint32_t)i);
    if (idof[root] == NONE)
      idof[root] = (uint32_t)nid++;
    g->order[i]->identity = idof[root];
  }
  g->idents = calloc(nid ? nid : 1, sizeof(*g->idents));
  if (!g->idents)
    goto out;
  g->nidents = nid;
  /* A hint joined to accounts of the graph offers its smallest key for
     the identity's (the key the identity had while its account was
     there); one joined to none is nobody's. */
  for (i = 0; i < g->nhints; i++) {
    uint32_t root = uf_find(uf, (uint32_t)(g->norder + i));
    struct ident *id = idof[root] == NONE ? NULL : &g->idents[idof[root]];
    for (const char **v = g->hints[i].keys; id && *v; v++) {
      const char *m = match_key_norm(&g->istrs, *v);
      if (!m)
        goto out;
      if (!id->hint_key || strcmp(m, id->hint_key) < 0)
        id->hint_key = m;
    }
  }
  for (i = 0; i < g->norder; i++) {
    if (is_user(g->order[i])) {
      g->idents[g->order[i]->identity].nmembers++;
      nusers++;
    }
  }
  g->imembers = malloc((nusers ? nusers : 1) * sizeof(*g->imembers));
  if (!g->imembers)
    goto out;
  for (i = 0, nusers = 0; i < nid; i++) {
    g->idents[i].members = g->imembers + nusers;
    nusers += g->idents[i].nmembers;
    g->idents[i].nmembers = 0;
  }
  for (i = 0; i < g->norder; i++) {
    struct ident *id;
    if (!is_user(g->order[i]))
      continue;
    id = &g->idents[g->order[i]->identity];
    id->members[id->nmembers++] = (uint32_t)i;
  }
  for (i = 0; i < nid; i++) {
    if (ident_fill(g, &g->idents[i], &sc))
      goto out;
  }
  gr_sort(g->idents, nid, sizeof(*g->idents), cmp_ident);
  for (i = 0; i < nid; i++) {
    size_t m;
    for (m = 0; m < g->idents[i].nmembers; m++)
      g->order[g->idents[i].members[m]]->identity = (uint32_t)i;
  }
  result = CH_OK;
out:
  free(sc.v);
  free(refs);
  gr_arena_release(&keys);
  free(uf);
  free(idof);
  return result;
}
