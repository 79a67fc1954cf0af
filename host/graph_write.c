/* SPDX-License-Identifier: MIT */
/* The graph's output: one JSON document or JSONL records, in key order. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "graph_int.h"

/* ---- output -------------------------------------------------------------- */

static void jw_open(struct jw *w, const char *kind) {
  if (!kind) {
    jw_lit(w, "{");
    return;
  }
  jw_lit(w, "{\"kind\":\"");
  jw_put(w, kind, strlen(kind));
  jw_lit(w, "\",");
}

static int cmp_inst(const void *a, const void *b) {
  const struct inst *x = *(struct inst *const *)a;
  const struct inst *y = *(struct inst *const *)b;
  int c = strcmp(x->tenant, y->tenant);

  return c ? c : strcmp(x->name, y->name);
}

static void write_inst(struct jw *w, const struct inst *in) {
  jw_lit(w, "{");
  jw_key(w, "tenant", 1);
  jw_str(w, in->tenant);
  jw_field_str(w, "instance", in->name);
  jw_field_str(w, "plugin", in->plugin);
  jw_field_str(w, "plugin_version", in->version);
  jw_field_str(w, "status", in->ok ? "ok" : "failed");
  if (!in->ok)
    jw_field_str(w, "error", in->error ? in->error : "failed");
  jw_key(w, "stats", 0);
  jw_lit(w, "{\"resources\":");
  jw_u64(w, in->nres);
  jw_lit(w, ",\"grants\":");
  jw_u64(w, in->ngrants);
  jw_lit(w, ",\"pages\":");
  jw_u64(w, in->pages);
  jw_lit(w, ",\"requests\":");
  jw_u64(w, in->requests);
  jw_lit(w, ",\"retries\":");
  jw_u64(w, in->retries);
  jw_lit(w, ",\"warnings\":");
  jw_u64(w, in->warnings + in->gwarnings);
  jw_lit(w, ",\"dropped_grants\":");
  jw_u64(w, in->dropped);
  jw_lit(w, "}}");
}

static const struct {
  unsigned bit;
  const char *name;
} trait_names[] = {{CH_TRAIT_USER, "user"},
                   {CH_TRAIT_GROUP, "group"},
                   {CH_TRAIT_ROLE, "role"},
                   {CH_TRAIT_APP, "app"},
                   {CH_TRAIT_WORKSPACE, "workspace"}};

const char *graph_trait_name(unsigned bit) {
  for (size_t i = 0; i < sizeof(trait_names) / sizeof(trait_names[0]); i++) {
    if (trait_names[i].bit == bit)
      return trait_names[i].name;
  }
  return NULL;
}

static void write_resource(const struct graph *g, struct jw *w,
                           const struct node *n, const char *kind) {
  static const char *const status[] = {NULL, "enabled", "disabled", "deleted"};
  static const char *const acct[] = {NULL, "human", "service", "customer"};
  const struct res *r = n->res;
  size_t i, ne = 0, nm = 0;
  int first = 1;

  jw_open(w, kind);
  jw_lit(w, "\"key\":");
  jw_node(w, n);
  jw_field_str(w, "tenant", n->type->inst->tenant);
  jw_field_str(w, "instance", n->type->inst->name);
  jw_field_str(w, "type", n->type->t->id);
  jw_field_str(w, "id", n->id);
  jw_field_str(w, "display_name", r->display_name);
  jw_key(w, "traits", 0);
  jw_lit(w, "[");
  for (i = 0; i < sizeof(trait_names) / sizeof(trait_names[0]); i++) {
    if (!(n->type->t->traits & trait_names[i].bit))
      continue;
    if (!first)
      jw_lit(w, ",");
    jw_str(w, trait_names[i].name);
    first = 0;
  }
  jw_lit(w, "]");
  if (status[r->status])
    jw_field_str(w, "status", status[r->status]);
  if (acct[r->account_type])
    jw_field_str(w, "account_type", acct[r->account_type]);
  while (r->emails[ne])
    ne++;
  while (r->match_keys[nm])
    nm++;
  jw_strlist(w, "emails", r->emails, ne);
  jw_strlist(w, "match_keys", r->match_keys, nm);
  if (r->parent) {
    jw_lit(w, ",\"parent\":");
    jw_node(w, r->parent);
  }
  if (r->profile) {
    jw_key(w, "profile", 0);
    gr_pdict_write(&g->pdict, r->profile, w);
  }
  if (n->identity != NONE)
    jw_field_str(w, "identity", g->idents[n->identity].key);
  jw_lit(w, "}");
}

static void write_ent(struct jw *w, const struct ent *e, const char *kind) {
  const struct ch_entitlement_def *d = &e->node->type->t->entitlements[e->slug];
  size_t n = 0;

  jw_open(w, kind);
  jw_lit(w, "\"key\":");
  jw_ent(w, e);
  jw_lit(w, ",\"resource\":");
  jw_node(w, e->node);
  jw_field_str(w, "slug", d->slug);
  jw_field_str(w, "display_name", d->display_name);
  while (d->grantable_to && d->grantable_to[n])
    n++;
  jw_strlist(w, "grantable_to", d->grantable_to, n);
  jw_lit(w, "}");
}

static void write_sources(const struct graph *g, struct jw *w, uint32_t src) {
  const uint32_t *v = &src;
  size_t n = 1, i;

  if (src == NONE)
    return;
  if (src & SRC_LIST) {
    v = g->srcpool + (src & ~SRC_LIST);
    n = *v++;
  }
  jw_lit(w, ",\"sources\":[");
  for (i = 0; i < n; i++) {
    if (i)
      jw_lit(w, ",");
    jw_ent(w, &g->ents[v[i]]);
  }
  jw_lit(w, "]");
}

/* Direct grant `i` (r) or a derived one (d). */
static void write_grant(const struct graph *g, struct jw *w, size_t i,
                        const struct rgrant *r, const struct dgrant *d,
                        const char *kind) {
  uint32_t ent = r ? r->ent : d->ent;
  uint32_t principal = r ? r->prank : d->principal;
  const struct gside *src = r ? gside_find(g->gsrc, g->ngsrc, i) : NULL;
  const struct gside *prof = r ? gside_find(g->gprof, g->ngprof, i) : NULL;

  jw_open(w, kind);
  jw_lit(w, "\"entitlement\":");
  jw_ent(w, &g->ents[ent]);
  jw_lit(w, ",\"principal\":");
  {
    uint32_t off = g->koff[principal] & ~KOFF_ESC;
    jw_k(w, g->keys + off, (g->koff[principal + 1] & ~KOFF_ESC) - off - 1,
         !(g->koff[principal] & KOFF_ESC));
  }
  if (r)
    jw_lit(w, ",\"direct\":true");
  else
    jw_lit(w, ",\"direct\":false");
  if (r && r->expand) {
    if (r->aux != NONE) {
      jw_lit(w, ",\"expandable\":");
      jw_ent(w, &g->ents[r->aux]);
    } else {
      const struct node *pn = g->order[r->prank];
      char *k = key_entitlement(pn->key, def_slug(pn, r->expand - 1));
      if (!k)
        w->failed = -1;
      else
        jw_field_str(w, "expandable", k);
      free(k);
    }
  }
  write_sources(g, w, r ? (src ? src->v : NONE) : d->src);
  if (prof) {
    const char *text = g->gprofiles[prof->v];
    jw_key(w, "profile", 0);
    jw_put(w, text, strlen(text));
  }
  jw_lit(w, "}");
}

static void write_ident(const struct graph *g, struct jw *w,
                        const struct ident *id, const char *kind) {
  size_t i;

  jw_open(w, kind);
  jw_key(w, "key", 1);
  jw_str(w, id->key);
  jw_field_str(w, "tenant", id->tenant);
  jw_field_str(w, "display_name", id->display_name);
  jw_strlist(w, "emails", (const char *const *)id->emails, id->nemails);
  jw_strlist(w, "match_keys", (const char *const *)id->mks, id->nmks);
  jw_key(w, "resources", 0);
  jw_lit(w, "[");
  for (i = 0; i < id->nmembers; i++) {
    if (i)
      jw_lit(w, ",");
    jw_node(w, g->order[id->members[i]]);
  }
  jw_lit(w, "]}");
}

/*
 * Layout: JSON puts each array element on its own line (one valid JSON
 * document that diffs line by line); JSONL writes a header line and then
 * one record per line with a "kind" field. Both come from the same record
 * writers, in the same order.
 */
struct wstate {
  struct jw *w;
  int jsonl;
  size_t count; /* elements written in the current JSON array */
};

static void ws_array(struct wstate *s, const char *name) {
  if (s->jsonl)
    return;
  jw_lit(s->w, ",");
  jw_str(s->w, name);
  jw_lit(s->w, ":[");
  s->count = 0;
}

static void ws_elem(struct wstate *s) {
  if (!s->jsonl && s->count++)
    jw_lit(s->w, ",");
  if (!s->jsonl)
    jw_lit(s->w, "\n");
}

static void ws_elem_end(struct wstate *s) {
  if (s->jsonl)
    jw_lit(s->w, "\n");
}

static void ws_array_end(struct wstate *s) {
  if (s->jsonl)
    return;
  if (s->count)
    jw_lit(s->w, "\n");
  jw_lit(s->w, "]");
}

int graph_write(const struct graph *g, FILE *f, enum graph_format fmt,
                const char *generated_at, struct ch_err *err) {
  struct inst **insts = NULL;
  struct jw w = {0};
  struct wstate s = {&w, fmt == GRAPH_JSONL, 0};
  const char *k;
  size_t i, j, run;
  int result = CH_E_INVALID;

  if (!g || !f || !g->finished) {
    ch_err_set(err, CH_E_INVALID, "the graph is not finished");
    goto out;
  }
  result = CH_E_NOMEM;
  w.f = f;
  w.cap = 1 << 16;
  w.buf = malloc(w.cap);
  insts = malloc((g->ninsts ? g->ninsts : 1) * sizeof(*insts));
  if (!w.buf || !insts) {
    ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  if (g->ninsts)
    memcpy(insts, g->insts, g->ninsts * sizeof(*insts));
  gr_sort(insts, g->ninsts, sizeof(*insts), cmp_inst);

  jw_lit(&w, "{\"connhost_graph\":1,\"generated_at\":");
  if (generated_at)
    jw_str(&w, generated_at);
  else
    jw_lit(&w, "null");
  jw_lit(&w, ",\"instances\":[");
  for (i = 0; i < g->ninsts; i++) {
    if (i)
      jw_lit(&w, ",");
    if (!s.jsonl)
      jw_lit(&w, "\n");
    write_inst(&w, insts[i]);
  }
  if (g->ninsts && !s.jsonl)
    jw_lit(&w, "\n");
  jw_lit(&w, "]");
  if (s.jsonl)
    jw_lit(&w, "}\n");

  k = s.jsonl ? "resource" : NULL;
  ws_array(&s, "resources");
  for (i = 0; i < g->norder; i++) {
    if (!kept(g->order[i]))
      continue;
    ws_elem(&s);
    write_resource(g, &w, g->order[i], k);
    ws_elem_end(&s);
  }
  ws_array_end(&s);

  k = s.jsonl ? "entitlement" : NULL;
  ws_array(&s, "entitlements");
  for (i = 0; i < g->nents; i++) {
    ws_elem(&s);
    write_ent(&w, &g->ents[i], k);
    ws_elem_end(&s);
  }
  ws_array_end(&s);

  /* Direct and derived grants are each sorted by (entitlement, principal)
     and never share a pair: merge them. */
  k = s.jsonl ? "grant" : NULL;
  ws_array(&s, "grants");
  for (i = 0, j = 0, run = 0; i < g->ngrants || j < g->nderived;) {
    const struct rgrant *r = i < g->ngrants ? &g->grants[i] : NULL;
    const struct dgrant *d = NULL;
    struct dgrant dg;
    if (j < g->nderived) { /* walking the runs, not searching them */
      while (run + 1 < g->ndruns && g->druns[run + 1].first <= j)
        run++;
      dg.ent = g->druns[run].ent;
      dg.src = g->druns[run].src;
      dg.principal = g->derived[j];
      d = &dg;
    }
    if (r && d &&
        (d->ent < r->ent || (d->ent == r->ent && d->principal < r->prank)))
      r = NULL;
    ws_elem(&s);
    if (r) {
      write_grant(g, &w, i, r, NULL, k);
      i++;
    } else {
      write_grant(g, &w, 0, NULL, d, k);
      j++;
    }
    ws_elem_end(&s);
    if (w.failed)
      break;
  }
  ws_array_end(&s);

  k = s.jsonl ? "identity" : NULL;
  ws_array(&s, "identities");
  for (i = 0; i < g->nidents; i++) {
    ws_elem(&s);
    write_ident(g, &w, &g->idents[i], k);
    ws_elem_end(&s);
  }
  ws_array_end(&s);
  if (!s.jsonl)
    jw_lit(&w, "}\n");
  jw_flush(&w);

  if (w.failed == -1) {
    ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  if (w.failed) {
    result = ch_err_set(err, CH_E_IO, "cannot write the graph: %s",
                        strerror(w.failed));
    goto out;
  }
  result = CH_OK;
out:
  free(insts);
  free(w.buf);
  return result;
}
