/* SPDX-License-Identifier: MIT */
/* Adding records to the graph: checking each resource and grant, and
   interning their ids as nodes. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "graph_int.h"

static int cmp_str(const char *a, const char *b) {
  if (!a || !b)
    return (a != NULL) - (b != NULL); /* absent sorts first */
  return strcmp(a, b);
}

/* "name=value" with a name of [A-Za-z0-9_.:-] and a non-empty value. */
static int match_key_ok(const char *mk) {
  const char *eq = strchr(mk, '=');
  const char *p;

  if (!eq || eq == mk || !eq[1])
    return 0;
  for (p = mk; p < eq; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
          c == '-'))
      return 0;
  }
  return 1;
}

/* Report a malformed record: "<what> '<type>/<id>[#slug]': <message>".
   The type, id and slug are printed key-encoded so the message stays on
   one line whatever bytes they hold. */
static int rec_err(struct ch_err *err, const char *what, const char *type,
                   const char *id, const char *slug, const char *fmt, ...)
    CH_PRINTF(6, 7);
static int rec_err(struct ch_err *err, const char *what, const char *type,
                   const char *id, const char *slug, const char *fmt, ...) {
  char msg[CH_ERR_MSG_SIZE];
  char *et = key_encode(type ? type : "");
  char *ei = key_encode(id ? id : "");
  char *es = slug ? key_encode(slug) : NULL;
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (!et || !ei || (slug && !es))
    ch_err_set(err, CH_E_INVALID, "%s: %s", what, msg);
  else
    ch_err_set(err, CH_E_INVALID, "%s '%.60s/%.80s%s%.60s': %s", what, et, ei,
               slug ? "#" : "", slug ? es : "", msg);
  free(et);
  free(ei);
  free(es);
  return CH_E_INVALID;
}

int graph_resource_named(const struct ch_resource *r, struct ch_err *err) {
  char *e;

  if (!r->type || !*r->type) {
    e = key_encode(r->id ? r->id : "");
    ch_err_set(err, CH_E_INVALID, "resource%s%.100s%s has no type",
               e && *e ? " with id '" : "", e && *e ? e : "",
               e && *e ? "'" : "");
    free(e);
    return CH_E_INVALID;
  }
  if (!r->id || !*r->id) {
    e = key_encode(r->type);
    ch_err_set(err, CH_E_INVALID, "resource of type '%.100s' has no id",
               e ? e : "?");
    free(e);
    return CH_E_INVALID;
  }
  return CH_OK;
}

/* ---- adding records ------------------------------------------------------ */

/* The node for (type, id) of an instance, created on first sight. Under
   g->lock. */
static struct node *node_get(struct graph *g, struct inst *in, struct tinfo *ti,
                             const char *id) {
  size_t len = strlen(id);
  struct node *n = hmap_get(&ti->nodes, id, len);

  if (n)
    return n;
  if (g->nnodes >= NONE ||
      util_grow(&g->nodes, &g->cnodes, g->nnodes + 1, sizeof(*g->nodes)))
    return NULL;
  /* sizes kept multiples of 8, so every node in the arena stays aligned */
  n = gr_arena_alloc(&g->narena,
                     (offsetof(struct node, id) + len + 1 + 7) & ~(size_t)7);
  if (!n)
    return NULL;
  memset(n, 0, offsetof(struct node, id));
  n->type = ti;
  n->identity = NONE;
  n->rank = (uint32_t)g->nnodes; /* its index in g->nodes until ranked */
  memcpy(n->id, id, len + 1);
  if (hmap_put(&ti->nodes, n->id, len, n))
    return NULL; /* n stays in the arena, unused */
  g->nodes[g->nnodes++] = n;
  return n;
}

static char *pack_str(char **sp, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = *sp;

  memcpy(d, s, n);
  *sp += n;
  return d;
}

/* The index of the "email=" match key of `r` that spells email `e`, or
   -1: the record keeps the text once (an organization's user carries
   both). */
static long email_mk(const struct ch_resource *r, const char *e) {
  for (long i = 0; r->match_keys && r->match_keys[i]; i++) {
    if (!strncmp(r->match_keys[i], "email=", 6) &&
        !strcmp(r->match_keys[i] + 6, e))
      return i;
  }
  return -1;
}

/* The size of one packed record: the record and everything it points to
   back to back, a multiple of 8 so records in the arena stay aligned. */
static size_t res_size(const struct ch_resource *r, size_t plen,
                       size_t nslugs) {
  size_t n = sizeof(struct res) + plen + nslugs * sizeof(uint16_t) +
             2 * sizeof(char *);
  const char *const *v;

  if (r->display_name)
    n += strlen(r->display_name) + 1;
  for (v = r->emails; v && *v; v++)
    n += sizeof(char *) + (email_mk(r, *v) >= 0 ? 0 : strlen(*v) + 1);
  for (v = r->match_keys; v && *v; v++)
    n += sizeof(char *) + strlen(*v) + 1;
  return (n + 7) & ~(size_t)7;
}

/* Pack the record into `mem` (res_size bytes). A big tenant has 100k of
   these: they live in the graph's arena, without a malloc header each or
   the holes the workers' freed pages leave around them. */
static struct res *res_pack(void *mem, const struct ch_resource *r,
                            const unsigned char *profile, size_t plen,
                            const uint16_t *slugs, size_t nslugs) {
  size_t nem = 0, nmk = 0, i;
  struct res *res = mem;
  const char **em, **mk;
  uint16_t *sl;
  char *sp;

  while (r->emails && r->emails[nem])
    nem++;
  while (r->match_keys && r->match_keys[nmk])
    nmk++;
  memset(res, 0, sizeof(*res));
  em = (const char **)(res + 1);
  mk = em + nem + 1;
  sl = (uint16_t *)(mk + nmk + 1);
  sp = (char *)(sl + nslugs);
  if (nslugs)
    memcpy(sl, slugs, nslugs * sizeof(*sl));
  res->slugs = sl;
  res->nslugs = nslugs;
  res->display_name = r->display_name ? pack_str(&sp, r->display_name) : NULL;
  for (i = 0; i < nmk; i++)
    mk[i] = pack_str(&sp, r->match_keys[i]);
  mk[nmk] = NULL;
  for (i = 0; i < nem; i++) {
    long m = email_mk(r, r->emails[i]);
    em[i] = m >= 0 ? mk[m] + 6 : pack_str(&sp, r->emails[i]);
  }
  em[nem] = NULL;
  res->emails = em;
  res->match_keys = mk;
  res->profile = profile ? memcpy(sp, profile, plen) : NULL;
  res->status = (uint8_t)r->status;
  res->account_type = (uint8_t)r->account_type;
  return res;
}

static int cmp_strv(const char *const *a, const char *const *b) {
  for (;; a++, b++) {
    int c;
    if (!*a || !*b)
      return (*a != NULL) - (*b != NULL);
    c = strcmp(*a, *b);
    if (c)
      return c;
  }
}

/* Two profiles' codes, ordered by their texts. */
static int cmp_profile(struct graph *g, const unsigned char *a,
                       const unsigned char *b) {
  char *ta, *tb;
  int c;

  if (!a || !b)
    return (a != NULL) - (b != NULL);
  ta = gr_pdict_text(&g->pdict, a);
  tb = gr_pdict_text(&g->pdict, b);
  /* out of memory: any fixed answer keeps the order total enough */
  c = ta && tb ? strcmp(ta, tb) : 0;
  free(ta);
  free(tb);
  return c;
}

/* A total order over everything a resource record carries: when a plugin
   emits one resource twice (two pages overlapping, two parents), the
   lowest record wins, so arrival order (and so the number of workers)
   cannot change the output. */
static int res_cmp(struct graph *g, const struct res *a, const struct res *b) {
  size_t i;
  int c;

  if ((c = cmp_str(a->display_name, b->display_name)))
    return c;
  if (a->status != b->status)
    return a->status < b->status ? -1 : 1;
  if (a->account_type != b->account_type)
    return a->account_type < b->account_type ? -1 : 1;
  if ((c = cmp_strv(a->emails, b->emails)))
    return c;
  if ((c = cmp_strv(a->match_keys, b->match_keys)))
    return c;
  if ((c = cmp_profile(g, a->profile, b->profile)))
    return c;
  if (a->parent != b->parent) {
    if (!a->parent || !b->parent)
      return (a->parent != NULL) - (b->parent != NULL);
    if ((c = strcmp(a->parent->id, b->parent->id)))
      return c;
  }
  for (i = 0; i < a->nslugs && i < b->nslugs; i++) {
    if (a->slugs[i] != b->slugs[i])
      return a->slugs[i] < b->slugs[i] ? -1 : 1;
  }
  return (a->nslugs > b->nslugs) - (a->nslugs < b->nslugs);
}

static int cmp_u16(const void *a, const void *b) {
  uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
  return (x > y) - (x < y);
}

static int utf8_ok(const char *s) { return key_utf8_valid(s, strlen(s)); }

/* Everything about a resource record that can be checked without the lock.
   Fills the carried slug indices and the canonical profile. */
static int res_check(const struct inst *in, const struct ch_resource *r,
                     struct tinfo **tip, uint16_t **slugsp, size_t *nslugsp,
                     char **profilep, struct ch_err *err) {
  const char *const *v;
  struct tinfo *ti;
  uint16_t *slugs = NULL;
  size_t n = 0, i;
  char why[200];
  int result = CH_E_INVALID;

  if (graph_resource_named(r, err))
    goto out;
  ti = inst_type(in, r->type);
  if (!ti) {
    rec_err(err, "resource", r->type, r->id, NULL,
            "type '%.60s' is not declared by plugin '%.60s'", r->type,
            in->plugin);
    goto out;
  }
  if (!utf8_ok(r->id)) {
    rec_err(err, "resource", r->type, r->id, NULL, "id is not valid UTF-8");
    goto out;
  }
  if (ti->parent) {
    const char *want = ti->parent->t->id;
    if (!r->parent_type || !*r->parent_type) {
      rec_err(err, "resource", r->type, r->id, NULL,
              "type '%.60s' needs a parent of type '%.60s'", r->type, want);
      goto out;
    }
    if (strcmp(r->parent_type, want)) {
      rec_err(err, "resource", r->type, r->id, NULL,
              "parent type '%.60s' is not the declared parent type '%.60s'",
              r->parent_type, want);
      goto out;
    }
    if (!r->parent_id || !*r->parent_id) {
      rec_err(err, "resource", r->type, r->id, NULL,
              "parent of type '%.60s' has no id", want);
      goto out;
    }
  } else if ((r->parent_type && *r->parent_type) ||
             (r->parent_id && *r->parent_id)) {
    rec_err(err, "resource", r->type, r->id, NULL,
            "type '%.60s' declares no parent type, but a parent was given",
            r->type);
    goto out;
  }
  if ((unsigned)r->status > CH_RES_DELETED ||
      (unsigned)r->account_type > CH_ACCOUNT_CUSTOMER) {
    rec_err(err, "resource", r->type, r->id, NULL,
            "status %d or account type %d is out of range", (int)r->status,
            (int)r->account_type);
    goto out;
  }
  if (r->display_name && !utf8_ok(r->display_name)) {
    rec_err(err, "resource", r->type, r->id, NULL,
            "display name is not valid UTF-8");
    goto out;
  }
  for (v = r->emails; v && *v; v++) {
    if (!**v || !utf8_ok(*v)) {
      rec_err(err, "resource", r->type, r->id, NULL,
              "email '%.80s' is empty or not valid UTF-8", *v);
      goto out;
    }
  }
  for (v = r->match_keys; v && *v; v++) {
    if (!match_key_ok(*v) || !utf8_ok(*v)) {
      rec_err(err, "resource", r->type, r->id, NULL,
              "match key '%.80s' is not name=value (name of "
              "[A-Za-z0-9_.:-], value not empty, UTF-8)",
              *v);
      goto out;
    }
  }
  if (r->entitlements) {
    while (r->entitlements[n])
      n++;
  } else {
    n = ti->ndefs;
  }
  result = CH_E_NOMEM;
  slugs = malloc((n ? n : 1) * sizeof(*slugs));
  if (!slugs) {
    ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  result = CH_E_INVALID;
  for (i = 0; i < n; i++) {
    size_t d = i + 1;
    if (r->entitlements) {
      d = type_slug(ti, r->entitlements[i]);
      if (!d) {
        rec_err(err, "resource", r->type, r->id, NULL,
                "entitlement '%.80s' is not declared by type '%.60s'",
                r->entitlements[i], r->type);
        goto out;
      }
    }
    slugs[i] = (uint16_t)(d - 1);
  }
  if (r->entitlements && n > 1) {
    size_t o = 0;
    gr_sort(slugs, n, sizeof(*slugs), cmp_u16);
    for (i = 1; i < n; i++) {
      if (slugs[i] != slugs[o])
        slugs[++o] = slugs[i];
    }
    n = o + 1;
  }
  if (r->profile_json) {
    result = gr_profile_canon(r->profile_json, profilep, why, sizeof(why));
    if (result) {
      rec_err(err, "resource", r->type, r->id, NULL, "%s", why);
      if (err)
        err->code = result;
      goto out;
    }
  }
  *tip = ti;
  *slugsp = slugs;
  *nslugsp = n;
  slugs = NULL;
  result = CH_OK;
out:
  free(slugs);
  return result;
}

int graph_add_resource(struct graph *g, int inst, const struct ch_resource *r,
                       struct ch_err *err) {
  struct inst *in = graph_inst(g, inst);
  struct tinfo *ti = NULL;
  struct res *tmp = NULL;
  struct node *node, *pnode = NULL;
  uint16_t *slugs = NULL;
  size_t nslugs = 0, plen = 0, size;
  char *profile = NULL;
  unsigned char *pcode = NULL;
  void *mem;
  int result;

  if (!in || !r) {
    result = ch_err_set(err, CH_E_INVALID, "no resource or no such instance");
    goto out;
  }
  /* Validation, profile parsing and coding run outside the lock, so
     workers only serialize on the hash map updates and one copy. */
  result = res_check(in, r, &ti, &slugs, &nslugs, &profile, err);
  if (result)
    goto out;
  if (profile && gr_pdict_encode(&g->pdict, profile, &pcode, &plen)) {
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  size = res_size(r, plen, nslugs);

  result = CH_E_NOMEM;
  pthread_mutex_lock(&g->lock);
  if (g->finished || g->settled) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_INVALID, "the graph is already finished");
    goto out;
  }
  node = node_get(g, in, ti, r->id);
  if (node && ti->parent)
    pnode = node_get(g, in, ti->parent, r->parent_id);
  if (!node || (ti->parent && !pnode))
    goto unlock;
  if (node->res) {
    /* listed twice: the lower record wins (the loser's copy, if it was
       the first, stays in the arena unused; duplicates are rare) */
    tmp = malloc(size);
    if (!tmp)
      goto unlock;
    res_pack(tmp, r, pcode, plen, slugs, nslugs)->parent = pnode;
    if (res_cmp(g, tmp, node->res) >= 0) {
      result = CH_OK;
      goto unlock;
    }
  }
  mem = gr_arena_alloc(&g->narena, size);
  if (!mem)
    goto unlock;
  if (!node->res)
    in->nres++;
  node->res = res_pack(mem, r, pcode, plen, slugs, nslugs);
  node->res->parent = pnode;
  result = CH_OK;
unlock:
  pthread_mutex_unlock(&g->lock);
  if (result == CH_E_NOMEM)
    ch_err_set(err, CH_E_NOMEM, "out of memory");
out:
  free(tmp);
  free(slugs);
  free(profile);
  free(pcode);
  return result;
}

static int grant_check(const struct inst *in, const struct ch_grant *gr,
                       struct tinfo **rtip, struct tinfo **ptip, size_t *slugp,
                       size_t *expandp, char **profilep, struct ch_err *err) {
  const struct ch_entitlement_def *def;
  const char *rtype = gr->resource.type, *rid = gr->resource.id;
  const char *ptype = gr->principal.type, *pid = gr->principal.id;
  struct tinfo *rti, *pti;
  const char *const *gt;
  size_t slug, i;
  char why[200];
  int result;

  if (!rtype || !*rtype)
    return ch_err_set(err, CH_E_INVALID, "grant with no resource type");
  if (!rid || !*rid) {
    char *e = key_encode(rtype);
    ch_err_set(err, CH_E_INVALID,
               "grant on a resource of type '%.100s' with no id", e ? e : "?");
    free(e);
    return CH_E_INVALID;
  }
  rti = inst_type(in, rtype);
  if (!rti)
    return rec_err(err, "grant on", rtype, rid, gr->slug,
                   "type '%.60s' is not declared by plugin '%.60s'", rtype,
                   in->plugin);
  if (!gr->slug || !*gr->slug)
    return rec_err(err, "grant on", rtype, rid, NULL, "no slug");
  slug = type_slug(rti, gr->slug);
  if (!slug)
    return rec_err(err, "grant on", rtype, rid, gr->slug,
                   "slug '%.80s' is not declared by type '%.60s'", gr->slug,
                   rtype);
  def = &rti->t->entitlements[slug - 1];
  if (!ptype || !*ptype || !pid || !*pid)
    return rec_err(err, "grant on", rtype, rid, gr->slug,
                   "no principal (type and id are required)");
  pti = inst_type(in, ptype);
  if (!pti)
    return rec_err(err, "grant on", rtype, rid, gr->slug,
                   "principal type '%.60s' is not declared by plugin "
                   "'%.60s'",
                   ptype, in->plugin);
  gt = def->grantable_to;
  for (i = 0; gt && gt[i]; i++) {
    if (!strcmp(gt[i], ptype))
      break;
  }
  if (!gt || !gt[i]) {
    char allowed[160] = "none";
    size_t o = 0;
    for (i = 0; gt && gt[i] && o < sizeof(allowed); i++)
      o += (size_t)snprintf(allowed + o, sizeof(allowed) - o, "%s%s",
                            i ? ", " : "", gt[i]);
    return rec_err(err, "grant on", rtype, rid, gr->slug,
                   "principal type '%.60s' is not grantable (allowed: %s)",
                   ptype, allowed);
  }
  *expandp = 0;
  if (gr->flags & CH_GRANT_EXPANDABLE) {
    if (!gr->expand_slug || !*gr->expand_slug)
      return rec_err(err, "grant on", rtype, rid, gr->slug,
                     "expandable grant has no expand_slug");
    *expandp = type_slug(pti, gr->expand_slug);
    if (!*expandp)
      return rec_err(err, "grant on", rtype, rid, gr->slug,
                     "expand slug '%.80s' is not declared by principal type "
                     "'%.60s'",
                     gr->expand_slug, ptype);
  }
  if (gr->profile_json) {
    result = gr_profile_canon(gr->profile_json, profilep, why, sizeof(why));
    if (result) {
      rec_err(err, "grant on", rtype, rid, gr->slug, "%s", why);
      if (err)
        err->code = result;
      return result;
    }
  }
  *rtip = rti;
  *ptip = pti;
  *slugp = slug;
  return CH_OK;
}

int graph_add_grant(struct graph *g, int inst, const struct ch_grant *gr,
                    struct ch_err *err) {
  struct inst *in = graph_inst(g, inst);
  struct tinfo *rti = NULL, *pti = NULL;
  struct node *rn, *pn;
  struct rgrant *rg;
  size_t slug = 0, expand = 0;
  uintptr_t pidx = 0;
  char *profile = NULL;
  int result;

  if (!in || !gr) {
    result = ch_err_set(err, CH_E_INVALID, "no grant or no such instance");
    goto out;
  }
  result = grant_check(in, gr, &rti, &pti, &slug, &expand, &profile, err);
  if (result)
    goto out;

  pthread_mutex_lock(&g->lock);
  if (g->finished || g->settled) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_INVALID, "the graph is already finished");
    goto out;
  }
  rn = node_get(g, in, rti, gr->resource.id);
  pn = rn ? node_get(g, in, pti, gr->principal.id) : NULL;
  /* Grants' profiles repeat ({"active":false} on tens of thousands of
     memberships): each text is kept once. */
  if (profile)
    pidx = (uintptr_t)hmap_gets(&g->gpmap, profile);
  if (profile && !pidx && g->ngprofiles < NONE &&
      !util_grow(&g->gprofiles, &g->cgprofiles, g->ngprofiles + 1,
                 sizeof(*g->gprofiles)) &&
      !hmap_puts(&g->gpmap, profile, (void *)(g->ngprofiles + 1))) {
    g->gprofiles[g->ngprofiles++] = profile;
    profile = NULL;
    pidx = g->ngprofiles;
  }
  if (!pn || g->ngrants >= NONE || (gr->profile_json && !pidx) ||
      util_grow(&g->grants, &g->cgrants, g->ngrants + 1, sizeof(*g->grants))) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  /* Duplicates are kept here and folded by graph_finish after sorting: a
     hash set over a million grants would cost more memory than the
     duplicates do. */
  rg = &g->grants[g->ngrants++];
  memset(rg, 0, sizeof(*rg));
  rg->ent = rn->rank;
  rg->prank = pn->rank;
  rg->aux = pidx ? (uint32_t)(pidx - 1) : NONE;
  rg->slug = (uint16_t)(slug - 1);
  rg->expand = (gr->flags & CH_GRANT_EXPANDABLE) ? (uint16_t)expand : 0;
  pthread_mutex_unlock(&g->lock);
  result = CH_OK;
out:
  free(profile);
  return result;
}

void graph_set_report(struct graph *g, int inst, const struct graph_report *r) {
  struct inst *in = graph_inst(g, inst);

  if (!in || !r)
    return;
  pthread_mutex_lock(&g->lock);
  /* Reports arrive before graph_finish; after it the output is decided. */
  if (!g->finished) {
    in->ok = r->ok ? 1 : 0;
    free(in->error);
    in->error = NULL;
    if (!r->ok)
      in->error = strdup(r->error && *r->error ? r->error : "failed");
    in->pages = r->pages;
    in->requests = r->requests;
    in->retries = r->retries;
    in->warnings = r->warnings;
  }
  pthread_mutex_unlock(&g->lock);
}
