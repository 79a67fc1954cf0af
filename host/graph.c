/* SPDX-License-Identifier: MIT */
/* The unified entitlement graph: copies of every instance's records,
   identity merge, grant expansion, deterministic JSON / JSONL output. */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "graph.h"
#include "hmap.h"
#include "log.h"

/*
 * Memory layout, chosen so a tenant with 100k users, a million grants and
 * ten million derived grants fits in a few hundred MB:
 * - each (instance, type, id) is one `struct node`, found through its
 *   type's hash map; the node is the interned copy of the id, and grants
 *   point at nodes instead of copying ids;
 * - a listed resource is one packed allocation (`struct res` + its strings);
 * - grants are flat arrays of fixed-size records that graph_finish sorts;
 *   after finish they refer to entitlements and principals by index.
 * Hash maps only ever find things; every order that reaches the output comes
 * from sorting printed keys with strcmp.
 */

#define NONE UINT32_MAX
#define SRC_LIST 0x80000000u /* `src` indexes g->srcpool */
#define MAX_SLUGS 65535
#define PROFILE_MAX (1 << 20) /* "a small JSON object" (plugin.h) */

struct tinfo { /* one declared resource type of an instance */
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
  const char *const *emails;     /* NULL-terminated */
  const char *const *match_keys; /* NULL-terminated */
  const char *profile;           /* canonical JSON object text or NULL */
  struct node *parent;
  const uint16_t *slugs; /* carried entitlement def indices, ascending */
  size_t nslugs;
  enum ch_res_status status;
  enum ch_account_type account_type;
};

struct node {
  struct inst *inst;
  struct tinfo *type;
  struct res *res; /* NULL while never listed */
  char *key;       /* printed key, built by graph_finish */
  uint32_t klen;   /* strlen(key) */
  uint8_t kplain;  /* key needs no JSON escaping */
  uint32_t *ents;  /* finish: entitlement index per res->slugs entry */
  uint32_t rank;   /* finish: index in g->order */
  uint32_t identity;
  char id[];
};

struct rgrant {
  struct node *res, *principal;
  char *profile;    /* canonical JSON object text or NULL */
  uint32_t ent;     /* finish: entitlement index (first the res rank) */
  uint32_t prank;   /* finish: principal rank */
  uint32_t src;     /* finish: extra sources (NONE, an ent, SRC_LIST|i) */
  uint32_t exp_ent; /* finish: entitlement its holders inherit through */
  uint16_t slug;    /* def index in the resource's type */
  uint16_t expand;  /* def index in the principal's type */
  uint8_t flags;    /* CH_GRANT_EXPANDABLE */
};

struct ent {
  char *key;
  struct node *node;
  uint16_t slug;  /* def index */
  uint16_t pos;   /* index in node->res->slugs */
  uint8_t kplain; /* key needs no JSON escaping */
  uint32_t klen;
  uint32_t gfirst, gcount; /* direct grants, in g->grants */
};

struct kref { /* a node's key, by rank: written for every grant */
  const char *s;
  uint32_t len;
  uint32_t plain;
};

struct dgrant { /* a derived grant: direct false */
  uint32_t ent, principal, src;
};

struct ident {
  char *key;
  const char *tenant;
  const char *display_name; /* borrowed from a member, or NULL */
  uint32_t *members;        /* node ranks, ascending */
  size_t nmembers;
  char **emails, **mks; /* owned, sorted, unique */
  size_t nemails, nmks;
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
  int finished;
  /* built by graph_finish */
  struct node **order; /* every node, by key */
  size_t norder;
  char *karena;       /* their keys, back to back in rank order */
  struct kref *krefs; /* by rank */
  struct ent *ents;
  size_t nents;
  struct dgrant *derived;
  size_t nderived, cderived;
  uint32_t *srcpool;
  size_t nsrc, csrc;
  struct ident *idents;
  size_t nidents;
  struct graph_counts counts;
};

/* ---- small helpers ------------------------------------------------------- */

/* Make room for `need` elements of `size` bytes in *p (capacity *cap). */
static int grow(void *pp, size_t *cap, size_t need, size_t size) {
  void **p = pp;
  size_t ncap = *cap ? *cap : 16;
  void *np;

  if (need <= *cap)
    return 0;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / size)
      return -1;
    ncap *= 2;
  }
  np = realloc(*p, ncap * size);
  if (!np)
    return -1;
  *p = np;
  *cap = ncap;
  return 0;
}

/* qsort, but fine with an empty (NULL) array. */
static void sort(void *base, size_t n, size_t size,
                 int (*cmp)(const void *, const void *)) {
  if (n > 1)
    qsort(base, n, size, cmp);
}

static int cmp_str(const char *a, const char *b) {
  if (!a || !b)
    return (a != NULL) - (b != NULL); /* absent sorts first */
  return strcmp(a, b);
}

static int cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and deduplicate an array of owned strings; returns the new count. */
static size_t sort_unique(char **v, size_t n) {
  size_t i, o = 0;

  if (!n)
    return 0;
  sort(v, n, sizeof(*v), cmp_strp);
  for (i = 1; i < n; i++) {
    if (!strcmp(v[i], v[o]))
      free(v[i]);
    else
      v[++o] = v[i];
  }
  return o + 1;
}

static void lower_ascii(char *s) {
  for (; *s; s++) {
    if (*s >= 'A' && *s <= 'Z')
      *s = (char)(*s - 'A' + 'a');
  }
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

/* The match key as identity merge compares it: email values ignore ASCII
   case (mail systems do), everything else is compared exactly. malloc'd. */
static char *match_key_norm(const char *mk) {
  char *s = strdup(mk);

  if (s && !strncmp(s, "email=", 6))
    lower_ascii(s + 6);
  return s;
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

static void jw_flush(struct jw *w) {
  if (w->f && w->len && !w->failed) {
    errno = 0;
    if (fwrite(w->buf, 1, w->len, w->f) != w->len)
      w->failed = errno ? errno : EIO;
  }
  w->len = 0;
}

static void jw_put_slow(struct jw *w, const char *s, size_t n) {
  if (w->failed || !n)
    return;
  if (w->len + n > w->cap) {
    if (w->f) {
      jw_flush(w);
      if (n > w->cap) {
        errno = 0;
        if (!w->failed && fwrite(s, 1, n, w->f) != n)
          w->failed = errno ? errno : EIO;
        return;
      }
    } else if (grow(&w->buf, &w->cap, w->len + n, 1)) {
      w->failed = -1;
      return;
    }
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
}

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

static void jw_strn(struct jw *w, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i, run = 0;

  jw_lit(w, "\"");
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t elen = 2;
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
      continue;
    jw_put(w, s + run, i - run);
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 0xf];
      elen = 6;
    }
    jw_put(w, esc, elen);
  }
  jw_put(w, s + run, n - run);
  jw_lit(w, "\"");
}

static void jw_str(struct jw *w, const char *s) { jw_strn(w, s, strlen(s)); }

/* A printed key. Keys never hold control bytes (they are percent-encoded),
   so most need no escaping at all: `plain` was worked out once. */
static void jw_k(struct jw *w, const char *key, uint32_t len, int plain) {
  if (!plain) {
    jw_strn(w, key, len);
    return;
  }
  jw_lit(w, "\"");
  jw_put(w, key, len);
  jw_lit(w, "\"");
}

#define jw_node(w, n) jw_k((w), (n)->key, (n)->klen, (n)->kplain)
#define jw_ent(w, e) jw_k((w), (e)->key, (e)->klen, (e)->kplain)

static int key_plain(const char *k, uint32_t *len) {
  size_t n = strlen(k);

  *len = (uint32_t)n;
  return !memchr(k, '"', n) && !memchr(k, '\\', n);
}

static void jw_u64(struct jw *w, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof(b), "%" PRIu64, v);
  jw_put(w, b, (size_t)n);
}

/* `,"name":` (or without the comma for the first field) */
static void jw_key(struct jw *w, const char *name, int first) {
  if (!first)
    jw_lit(w, ",");
  jw_str(w, name);
  jw_lit(w, ":");
}

static void jw_field_str(struct jw *w, const char *name, const char *v) {
  jw_key(w, name, 0);
  jw_str(w, v ? v : "");
}

static void jw_strlist(struct jw *w, const char *name, const char *const *v,
                       size_t n) {
  size_t i;

  jw_key(w, name, 0);
  jw_lit(w, "[");
  for (i = 0; i < n; i++) {
    if (i)
      jw_lit(w, ",");
    jw_str(w, v[i]);
  }
  jw_lit(w, "]");
}

/* ---- profiles: parse, check, emit canonically ---------------------------- */

struct kv {
  const char *k;
  struct json_object *v;
};

static int cmp_kv(const void *a, const void *b) {
  return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* Emit `o` with object keys sorted by byte order. Returns NULL or a
   description of what is wrong. */
static const char *jw_canon(struct jw *w, struct json_object *o) {
  const char *why = NULL;
  struct kv *kvs = NULL;
  const char *s;
  size_t i, n;

  switch (json_object_get_type(o)) {
  case json_type_null:
    jw_lit(w, "null");
    break;
  case json_type_boolean:
    if (json_object_get_boolean(o))
      jw_lit(w, "true");
    else
      jw_lit(w, "false");
    break;
  case json_type_double:
    if (!isfinite(json_object_get_double(o)))
      return "a number is not finite";
    /* fall through */
  case json_type_int:
    /* json-c keeps the number's original spelling: same text in, same
       bytes out. */
    s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    jw_put(w, s, strlen(s));
    break;
  case json_type_string:
    s = json_object_get_string(o);
    n = (size_t)json_object_get_string_len(o);
    if (!key_utf8_valid(s, n))
      return "a string is not valid UTF-8";
    jw_strn(w, s, n);
    break;
  case json_type_array:
    n = json_object_array_length(o);
    jw_lit(w, "[");
    for (i = 0; i < n && !why; i++) {
      if (i)
        jw_lit(w, ",");
      why = jw_canon(w, json_object_array_get_idx(o, i));
    }
    jw_lit(w, "]");
    break;
  case json_type_object:
    n = (size_t)json_object_object_length(o);
    if (n) {
      kvs = calloc(n, sizeof(*kvs));
      if (!kvs)
        return "out of memory";
    }
    i = 0;
    {
      json_object_object_foreach(o, k, v) {
        kvs[i].k = k;
        kvs[i].v = v;
        i++;
      }
    }
    sort(kvs, n, sizeof(*kvs), cmp_kv);
    jw_lit(w, "{");
    for (i = 0; i < n && !why; i++) {
      if (!key_utf8_valid(kvs[i].k, strlen(kvs[i].k))) {
        why = "an object key is not valid UTF-8";
        break;
      }
      jw_key(w, kvs[i].k, i == 0);
      why = jw_canon(w, kvs[i].v);
    }
    jw_lit(w, "}");
    free(kvs);
    break;
  }
  return why;
}

/* Parse a plugin's profile text and return its canonical form (malloc'd)
   in *out, or CH_E_INVALID with the reason in `why`. */
static int profile_canon(const char *text, char **out, char *why,
                         size_t whysz) {
  struct json_tokener *tok = NULL;
  struct json_object *o = NULL;
  struct jw w = {0};
  const char *bad;
  size_t len = strlen(text), end;
  int result = CH_E_INVALID;

  *out = NULL;
  if (len > PROFILE_MAX) {
    snprintf(why, whysz, "profile is larger than %d bytes", PROFILE_MAX);
    goto out;
  }
  if (!key_utf8_valid(text, len)) {
    snprintf(why, whysz, "profile is not valid UTF-8");
    goto out;
  }
  tok = json_tokener_new();
  if (!tok) {
    result = CH_E_NOMEM;
    snprintf(why, whysz, "out of memory");
    goto out;
  }
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  o = json_tokener_parse_ex(tok, text, (int)len);
  if (!o || json_tokener_get_error(tok) != json_tokener_success) {
    enum json_tokener_error e = json_tokener_get_error(tok);
    snprintf(why, whysz, "profile is not valid JSON: %s",
             e == json_tokener_continue ? "unexpected end of text"
                                        : json_tokener_error_desc(e));
    goto out;
  }
#if JSON_C_VERSION_NUM >= ((0 << 16) | (15 << 8))
  end = json_tokener_get_parse_end(tok);
#else
  end = (size_t)tok->char_offset;
#endif
  for (; end < len; end++) {
    if (!strchr(" \t\r\n", text[end])) {
      snprintf(why, whysz, "profile has text after the JSON value");
      goto out;
    }
  }
  if (!json_object_is_type(o, json_type_object)) {
    snprintf(why, whysz, "profile is not a JSON object");
    goto out;
  }
  bad = jw_canon(&w, o);
  jw_put(&w, "", 1);
  if (bad || w.failed) {
    snprintf(why, whysz, "profile: %s", bad ? bad : "out of memory");
    result = bad ? CH_E_INVALID : CH_E_NOMEM;
    goto out;
  }
  *out = w.buf;
  w.buf = NULL;
  result = CH_OK;
out:
  free(w.buf);
  json_object_put(o);
  if (tok)
    json_tokener_free(tok);
  return result;
}

/* ---- lifecycle ----------------------------------------------------------- */

struct graph *graph_new(void) {
  struct graph *g = calloc(1, sizeof(*g));

  if (!g)
    return NULL;
  if (pthread_mutex_init(&g->lock, NULL)) {
    free(g);
    return NULL;
  }
  hmap_init(&g->tenants);
  return g;
}

static void inst_free(struct inst *in) {
  size_t i, pos;
  void *v;

  if (!in)
    return;
  for (i = 0; in->tinfos && i < in->ntypes; i++) {
    struct tinfo *ti = &in->tinfos[i];
    pos = 0;
    while (hmap_next(&ti->nodes, &pos, NULL, NULL, &v)) {
      struct node *n = v;
      free(n->res); /* n->key is freed by graph_free */
      free(n->ents);
      free(n);
    }
    hmap_release(&ti->nodes);
    hmap_release(&ti->slugs);
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

static void ident_release(struct ident *id) {
  size_t i;

  free(id->key);
  free(id->members);
  for (i = 0; i < id->nemails; i++)
    free(id->emails[i]);
  for (i = 0; i < id->nmks; i++)
    free(id->mks[i]);
  free(id->emails);
  free(id->mks);
}

void graph_free(struct graph *g) {
  size_t i;

  if (!g)
    return;
  for (i = 0; i < g->ngrants; i++)
    free(g->grants[i].profile);
  free(g->grants);
  for (i = 0; i < g->nents; i++)
    free(g->ents[i].key);
  free(g->ents);
  for (i = 0; i < g->nidents; i++)
    ident_release(&g->idents[i]);
  free(g->idents);
  free(g->derived);
  free(g->srcpool);
  if (!g->karena) {
    for (i = 0; i < g->norder; i++)
      free(g->order[i]->key);
  }
  free(g->karena);
  free(g->krefs);
  free(g->order);
  for (i = 0; i < g->ninsts; i++)
    inst_free(g->insts[i]);
  free(g->insts);
  for (i = 0; i < g->ntenants; i++)
    free(g->tenant_names[i]);
  free(g->tenant_names);
  hmap_release(&g->tenants);
  pthread_mutex_destroy(&g->lock);
  free(g);
}

static struct tinfo *inst_type(const struct inst *in, const char *id) {
  return id ? hmap_gets(&in->type_map, id) : NULL;
}

/* Def index + 1 of `slug` in `ti`, or 0. */
static size_t type_slug(const struct tinfo *ti, const char *slug) {
  return (size_t)(uintptr_t)hmap_gets(&ti->slugs, slug);
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
      g->finished || g->ninsts >= (size_t)INT32_MAX)
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
    if (!name ||
        grow(&g->tenant_names, &g->ctenants, g->ntenants + 1, sizeof(char *))) {
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
  if (grow(&g->insts, &g->cinsts, g->ninsts + 1, sizeof(*g->insts)))
    goto out;
  g->insts[g->ninsts] = in;
  in = NULL;
  result = (int)g->ninsts++;
out:
  inst_free(in);
  return result;
}

/* ---- adding records ------------------------------------------------------ */

/* The node for (type, id) of an instance, created on first sight. Under
   g->lock. */
static struct node *node_get(struct inst *in, struct tinfo *ti,
                             const char *id) {
  size_t len = strlen(id);
  struct node *n = hmap_get(&ti->nodes, id, len);

  if (n)
    return n;
  n = malloc(sizeof(*n) + len + 1);
  if (!n)
    return NULL;
  memset(n, 0, sizeof(*n));
  n->inst = in;
  n->type = ti;
  n->rank = NONE;
  n->identity = NONE;
  memcpy(n->id, id, len + 1);
  if (hmap_put(&ti->nodes, n->id, len, n)) {
    free(n);
    return NULL;
  }
  return n;
}

static char *pack_str(char **sp, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = *sp;

  memcpy(d, s, n);
  *sp += n;
  return d;
}

/* One allocation holding the record and everything it points to: a big
   tenant has 100k of these, and one free() releases each. */
static struct res *res_pack(const struct ch_resource *r, const char *profile,
                            const uint16_t *slugs, size_t nslugs) {
  size_t nem = 0, nmk = 0, strbytes = 0, i;
  const char **em, **mk;
  struct res *res;
  uint16_t *sl;
  char *sp;

  if (r->display_name)
    strbytes += strlen(r->display_name) + 1;
  for (; r->emails && r->emails[nem]; nem++)
    strbytes += strlen(r->emails[nem]) + 1;
  for (; r->match_keys && r->match_keys[nmk]; nmk++)
    strbytes += strlen(r->match_keys[nmk]) + 1;
  if (profile)
    strbytes += strlen(profile) + 1;
  res = malloc(sizeof(*res) + (nem + nmk + 2) * sizeof(char *) +
               nslugs * sizeof(uint16_t) + strbytes);
  if (!res)
    return NULL;
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
  for (i = 0; i < nem; i++)
    em[i] = pack_str(&sp, r->emails[i]);
  em[nem] = NULL;
  for (i = 0; i < nmk; i++)
    mk[i] = pack_str(&sp, r->match_keys[i]);
  mk[nmk] = NULL;
  res->emails = em;
  res->match_keys = mk;
  res->profile = profile ? pack_str(&sp, profile) : NULL;
  res->status = r->status;
  res->account_type = r->account_type;
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

/* A total order over everything a resource record carries: when a plugin
   emits one resource twice (two pages overlapping, two parents), the
   lowest record wins, so arrival order (and so the number of workers)
   cannot change the output. */
static int res_cmp(const struct res *a, const struct res *b) {
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
  if ((c = cmp_str(a->profile, b->profile)))
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

  if (!r->type || !*r->type) {
    char *e = key_encode(r->id ? r->id : "");
    ch_err_set(err, CH_E_INVALID, "resource%s%.100s%s has no type",
               e && *e ? " with id '" : "", e && *e ? e : "",
               e && *e ? "'" : "");
    free(e);
    goto out;
  }
  if (!r->id || !*r->id) {
    char *e = key_encode(r->type);
    ch_err_set(err, CH_E_INVALID, "resource of type '%.100s' has no id",
               e ? e : "?");
    free(e);
    goto out;
  }
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
    sort(slugs, n, sizeof(*slugs), cmp_u16);
    for (i = 1; i < n; i++) {
      if (slugs[i] != slugs[o])
        slugs[++o] = slugs[i];
    }
    n = o + 1;
  }
  if (r->profile_json) {
    result = profile_canon(r->profile_json, profilep, why, sizeof(why));
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

static struct inst *graph_inst(const struct graph *g, int inst) {
  if (!g || inst < 0 || (size_t)inst >= g->ninsts)
    return NULL;
  return g->insts[inst];
}

int graph_add_resource(struct graph *g, int inst, const struct ch_resource *r,
                       struct ch_err *err) {
  struct inst *in = graph_inst(g, inst);
  struct tinfo *ti = NULL;
  struct res *nr = NULL, *old = NULL;
  struct node *node, *pnode = NULL;
  uint16_t *slugs = NULL;
  size_t nslugs = 0;
  char *profile = NULL;
  int result;

  if (!in || !r) {
    result = ch_err_set(err, CH_E_INVALID, "no resource or no such instance");
    goto out;
  }
  /* Validation, profile parsing and copying run outside the lock, so
     workers only serialize on the hash map updates. */
  result = res_check(in, r, &ti, &slugs, &nslugs, &profile, err);
  if (result)
    goto out;
  nr = res_pack(r, profile, slugs, nslugs);
  if (!nr) {
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }

  pthread_mutex_lock(&g->lock);
  if (g->finished) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_INVALID, "the graph is already finished");
    goto out;
  }
  node = node_get(in, ti, r->id);
  if (node && ti->parent)
    pnode = node_get(in, ti->parent, r->parent_id);
  if (!node || (ti->parent && !pnode)) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  nr->parent = pnode;
  if (!node->res) {
    node->res = nr;
    nr = NULL;
    in->nres++;
  } else if (res_cmp(nr, node->res) < 0) {
    old = node->res;
    node->res = nr;
    nr = NULL;
  }
  pthread_mutex_unlock(&g->lock);
  result = CH_OK;
out:
  free(old);
  free(nr);
  free(slugs);
  free(profile);
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
    result = profile_canon(gr->profile_json, profilep, why, sizeof(why));
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
  if (g->finished) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_INVALID, "the graph is already finished");
    goto out;
  }
  rn = node_get(in, rti, gr->resource.id);
  pn = rn ? node_get(in, pti, gr->principal.id) : NULL;
  if (!pn ||
      grow(&g->grants, &g->cgrants, g->ngrants + 1, sizeof(*g->grants))) {
    pthread_mutex_unlock(&g->lock);
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  /* Duplicates are kept here and folded by graph_finish after sorting: a
     hash set over a million grants would cost more memory than the
     duplicates do. */
  rg = &g->grants[g->ngrants++];
  memset(rg, 0, sizeof(*rg));
  rg->res = rn;
  rg->principal = pn;
  rg->profile = profile;
  profile = NULL;
  rg->slug = (uint16_t)(slug - 1);
  rg->flags = (gr->flags & CH_GRANT_EXPANDABLE) ? CH_GRANT_EXPANDABLE : 0;
  rg->expand = expand ? (uint16_t)(expand - 1) : 0;
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

/* ---- graph_finish -------------------------------------------------------- */

static char *strf(const char *fmt, ...) CH_PRINTF(1, 2);
static char *strf(const char *fmt, ...) {
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

static void inst_log(const struct inst *in, enum ch_log_level level,
                     const char *fmt, ...) CH_PRINTF(3, 4);
static void inst_log(const struct inst *in, enum ch_log_level level,
                     const char *fmt, ...) {
  char prefix[256];
  va_list ap;

  snprintf(prefix, sizeof(prefix), "%s:%s/%s", in->plugin, in->tenant,
           in->name);
  va_start(ap, fmt);
  log_vmsg(prefix, level, fmt, ap);
  va_end(ap);
}

static const char *def_slug(const struct node *n, uint16_t d) {
  return n->type->t->entitlements[d].slug;
}

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
  size_t total = 0, i, j, pos;
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
      pos = 0;
      while (hmap_next(&ti->nodes, &pos, NULL, NULL, &v)) {
        struct node *n = v;
        n->key = key_resource(in->tenant, in->name, ti->t->id, n->id);
        if (!n->key)
          return CH_E_NOMEM;
        n->kplain = (uint8_t)key_plain(n->key, &n->klen);
        g->order[g->norder++] = n;
      }
    }
  }
  /* Keys are unique (the encoding is injective and (tenant, instance) is
     unique), so this order does not depend on the hash maps. */
  sort(g->order, g->norder, sizeof(*g->order), cmp_node_key);
  /* Grants name their principal by rank. Output walks principals in rank
     order, so keys packed in that order are read sequentially instead of
     from 100k scattered allocations. */
  for (i = 0, total = 0; i < g->norder; i++)
    total += g->order[i]->klen + 1;
  g->karena = malloc(total ? total : 1);
  g->krefs = malloc((g->norder ? g->norder : 1) * sizeof(*g->krefs));
  if (!g->karena || !g->krefs) {
    free(g->karena);
    g->karena = NULL;
    return CH_E_NOMEM;
  }
  for (i = 0, pos = 0; i < g->norder; i++) {
    struct node *n = g->order[i];
    char *k = g->karena + pos;
    memcpy(k, n->key, n->klen + 1);
    free(n->key);
    n->key = k;
    n->rank = (uint32_t)i;
    g->krefs[i].s = k;
    g->krefs[i].len = n->klen;
    g->krefs[i].plain = n->kplain;
    pos += n->klen + 1;
  }
  return CH_OK;
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

/* Fold duplicate `b` into `a`. Each choice is independent of which came
   first: flags are united, the lowest expand slug and the lowest profile
   (by bytes) are kept. */
static void grant_fold(struct rgrant *a, struct rgrant *b) {
  if (b->flags & CH_GRANT_EXPANDABLE) {
    if (!(a->flags & CH_GRANT_EXPANDABLE) ||
        strcmp(def_slug(b->principal, b->expand),
               def_slug(a->principal, a->expand)) < 0)
      a->expand = b->expand;
    a->flags |= CH_GRANT_EXPANDABLE;
  }
  if (b->profile && (!a->profile || strcmp(b->profile, a->profile) < 0)) {
    char *t = a->profile;
    a->profile = b->profile;
    b->profile = t;
  }
  free(b->profile);
  b->profile = NULL;
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
    return strf("grant on unknown entitlement '%s'%s: %s '%s' was listed "
                "without that entitlement",
                in->bad_key, more, n->type->t->id, n->id);
  return strf("grant on unknown entitlement '%s'%s: no %s with id '%s' (%s) "
              "was listed; the %s listing of %s/%s should have carried it, "
              "or the plugin names it in another id form there",
              in->bad_key, more, n->type->t->id, n->id, id_form(n->id),
              n->type->t->id, in->tenant, in->name);
}

/*
 * Fold duplicate grants, fail the instances that granted an entitlement no
 * listed resource carries, drop grants to principals never listed.
 */
static int finish_check_grants(struct graph *g) {
  size_t i, o = 0;

  for (i = 0; i < g->ngrants; i++) {
    g->grants[i].ent = g->grants[i].res->rank;
    g->grants[i].prank = g->grants[i].principal->rank;
  }
  sort(g->grants, g->ngrants, sizeof(*g->grants), cmp_grant_raw);
  o = 0;
  for (i = 0; i < g->ngrants; i++) {
    if (o && !cmp_grant_raw(&g->grants[o - 1], &g->grants[i])) {
      grant_fold(&g->grants[o - 1], &g->grants[i]);
      continue;
    }
    g->grants[o++] = g->grants[i];
  }
  g->ngrants = o;

  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    struct inst *in = r->res->inst;
    char *key;
    in->ngrants++;
    if (!in->ok || res_slug_pos(r->res->res, r->slug) >= 0)
      continue;
    in->nbad++;
    key = key_entitlement(r->res->key, def_slug(r->res, r->slug));
    if (!key)
      return CH_E_NOMEM;
    /* Report the lowest key, not the first seen: the message must not
       depend on the order the workers delivered the grants. */
    if (!in->bad_key || strcmp(key, in->bad_key) < 0) {
      free(in->bad_key);
      in->bad_key = key;
      in->bad_node = r->res;
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
    struct inst *in = r->res->inst;
    if (in->ok && !r->principal->res) {
      if (!in->dropped) {
        char *key = key_entitlement(r->res->key, def_slug(r->res, r->slug));
        inst_log(in, CH_LOG_WARN,
                 "grant of '%s' to '%s', which was never listed, dropped",
                 key ? key : r->res->key, r->principal->key);
        free(key);
      }
      in->dropped++;
      in->gwarnings++;
    }
    if (!in->ok || !r->principal->res) {
      free(r->profile);
      continue;
    }
    g->grants[o++] = *r;
  }
  g->ngrants = o;
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->dropped > 1)
      inst_log(in, CH_LOG_WARN,
               "%" PRIu64 " grants to principals never listed were dropped",
               in->dropped);
  }
  return CH_OK;
}

static int cmp_ent(const void *a, const void *b) {
  return strcmp(((const struct ent *)a)->key, ((const struct ent *)b)->key);
}

static int kept(const struct node *n) { return n->inst->ok && n->res; }

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
      e->kplain = (uint8_t)key_plain(e->key, &e->klen);
      e->node = n;
      e->slug = n->res->slugs[p];
      e->pos = (uint16_t)p;
      g->nents++;
    }
  }
  /* Not the resource order: "a!#x" sorts before "a#x" while resource "a"
     sorts before "a!". Output promises byte order of the printed keys. */
  sort(g->ents, g->nents, sizeof(*g->ents), cmp_ent);
  for (i = 0; i < g->nents; i++)
    g->ents[i].node->ents[g->ents[i].pos] = (uint32_t)i;
  return CH_OK;
}

/* Point grants at entitlements, sort them, resolve what expandable grants
   expand through. */
static int finish_grants(struct graph *g) {
  size_t i;

  if (g->ngrants >= NONE)
    return CH_E_LIMIT; /* entitlements index their grants with 32 bits */
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    r->ent = r->res->ents[res_slug_pos(r->res->res, r->slug)];
    r->src = NONE;
    r->exp_ent = NONE;
  }
  sort(g->grants, g->ngrants, sizeof(*g->grants), cmp_grant);
  for (i = 0; i < g->ngrants; i++) {
    struct rgrant *r = &g->grants[i];
    struct ent *e = &g->ents[r->ent];
    long p;
    if (!e->gcount)
      e->gfirst = (uint32_t)i;
    e->gcount++;
    if (!(r->flags & CH_GRANT_EXPANDABLE))
      continue;
    p = res_slug_pos(r->principal->res, r->expand);
    if (p >= 0) {
      r->exp_ent = r->principal->ents[p];
      continue;
    }
    /* The principal's type declares the slug but this resource does not
       carry it: nobody can hold it, so nothing is inherited. */
    if (!r->principal->inst->nexp++) {
      r->principal->inst->exp_key =
          key_entitlement(r->principal->key, def_slug(r->principal, r->expand));
      if (!r->principal->inst->exp_key)
        return CH_E_NOMEM;
    }
    r->principal->inst->gwarnings++;
  }
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->nexp)
      inst_log(in, CH_LOG_WARN,
               "%" PRIu64 " expandable grant(s) expand through an entitlement "
               "the principal does not carry (first: '%s'); not expanded",
               in->nexp, in->exp_key);
  }
  return CH_OK;
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

/* Emails, match keys, display name and key of one identity. */
static int ident_fill(struct graph *g, struct ident *id) {
  const struct node *first = g->order[id->members[0]];
  size_t i, ne = 0, nm = 0;
  const char *const *v;
  char *enc = NULL, *t = NULL;
  int result = CH_E_NOMEM;

  id->tenant = first->inst->tenant;
  for (i = 0; i < id->nmembers; i++) {
    const struct res *r = g->order[id->members[i]]->res;
    if (!id->display_name && r->display_name && *r->display_name)
      id->display_name = r->display_name;
    for (v = r->emails; *v; v++)
      ne++;
    for (v = r->match_keys; *v; v++)
      nm++;
  }
  id->emails = calloc(ne ? ne : 1, sizeof(char *));
  id->mks = calloc(nm ? nm : 1, sizeof(char *));
  if (!id->emails || !id->mks)
    goto out;
  for (i = 0; i < id->nmembers; i++) {
    const struct res *r = g->order[id->members[i]]->res;
    for (v = r->emails; *v; v++) {
      char *e = strdup(*v);
      if (!e)
        goto out;
      lower_ascii(e);
      id->emails[id->nemails++] = e;
    }
    for (v = r->match_keys; *v; v++) {
      char *m = match_key_norm(*v);
      if (!m)
        goto out;
      id->mks[id->nmks++] = m;
    }
  }
  id->nemails = sort_unique(id->emails, id->nemails);
  id->nmks = sort_unique(id->mks, id->nmks);
  t = key_encode(id->tenant);
  /* Keyed by its smallest match key: stable while that key lives,
     whichever accounts join or leave. An identity without match keys has
     one member; '~' cannot start a match key, so the two forms never
     collide. */
  enc = key_encode(id->nmks ? id->mks[0] : first->key);
  if (!t || !enc)
    goto out;
  id->key = strf("%s/~identity/%s%s", t, id->nmks ? "" : "~", enc);
  if (!id->key)
    goto out;
  result = CH_OK;
out:
  free(t);
  free(enc);
  return result;
}

/* Union-find over the user resources of each tenant sharing a match key. */
static int finish_identities(struct graph *g) {
  struct hmap seen = HMAP_INIT;
  char **keys = NULL;
  size_t nkeys = 0, ckeys = 0, i, nid = 0;
  uint32_t *uf = NULL, *idof = NULL;
  int result = CH_E_NOMEM;

  uf = malloc((g->norder ? g->norder : 1) * sizeof(*uf));
  idof = malloc((g->norder ? g->norder : 1) * sizeof(*idof));
  if (!uf || !idof)
    goto out;
  for (i = 0; i < g->norder; i++) {
    uf[i] = (uint32_t)i;
    idof[i] = NONE;
  }
  for (i = 0; i < g->norder; i++) {
    const struct node *n = g->order[i];
    const char *const *v;
    if (!is_user(n))
      continue;
    for (v = n->res->match_keys; *v; v++) {
      char *m = match_key_norm(*v), *k;
      size_t len;
      void *found;
      if (!m)
        goto out;
      /* The tenant's index is part of the key: identities never span
         tenants even when their users share an account id. */
      len = sizeof(uint32_t) + strlen(m);
      k = malloc(len);
      if (!k || grow(&keys, &ckeys, nkeys + 1, sizeof(*keys))) {
        free(k);
        free(m);
        goto out;
      }
      memcpy(k, &n->inst->tenant_idx, sizeof(uint32_t));
      memcpy(k + sizeof(uint32_t), m, len - sizeof(uint32_t));
      free(m);
      keys[nkeys++] = k;
      found = hmap_get(&seen, k, len);
      if (found) {
        uint32_t a = uf_find(uf, (uint32_t)i);
        uint32_t b = uf_find(uf, (uint32_t)((uintptr_t)found - 1));
        if (a < b)
          uf[b] = a;
        else
          uf[a] = b;
      } else if (hmap_put(&seen, k, len, (void *)(uintptr_t)(i + 1))) {
        goto out;
      }
    }
  }
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
  for (i = 0; i < g->norder; i++) {
    if (is_user(g->order[i]))
      g->idents[g->order[i]->identity].nmembers++;
  }
  for (i = 0; i < nid; i++) {
    g->idents[i].members =
        malloc(g->idents[i].nmembers * sizeof(*g->idents[i].members));
    if (!g->idents[i].members)
      goto out;
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
    if (ident_fill(g, &g->idents[i]))
      goto out;
  }
  sort(g->idents, nid, sizeof(*g->idents), cmp_ident);
  for (i = 0; i < nid; i++) {
    size_t m;
    for (m = 0; m < g->idents[i].nmembers; m++)
      g->order[g->idents[i].members[m]]->identity = (uint32_t)i;
  }
  result = CH_OK;
out:
  for (i = 0; i < nkeys; i++)
    free(keys[i]);
  free(keys);
  hmap_release(&seen);
  free(uf);
  free(idof);
  return result;
}

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
  if (grow(&g->srcpool, &g->csrc, g->nsrc + n + 1, sizeof(*g->srcpool)))
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
static int finish_expand(struct graph *g) {
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
      uint32_t s1 = g->grants[i].exp_ent;
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
            if (grow(&pairs, &cp, np + 1, sizeof(*pairs)))
              goto out;
            pairs[np].principal = h->prank;
            pairs[np].src = s1;
            np++;
          }
          if (h->exp_ent == NONE || visit[h->exp_ent] == stamp)
            continue;
          if (depth >= GRAPH_MAX_DEPTH) {
            cut = 1;
            continue;
          }
          visit[h->exp_ent] = stamp;
          queue[qlen++] = h->exp_ent;
        }
        if (qhead == level_end) {
          depth++;
          level_end = qlen;
        }
      }
    }
    if (cut) {
      struct inst *in = E->node->inst;
      if (!in->ncut++)
        in->cut_key = E->key;
      in->gwarnings++;
    }
    if (!np)
      continue;
    sort(pairs, np, sizeof(*pairs), cmp_pair);
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
        g->grants[j].src = src; /* also held directly: stays direct */
      } else {
        struct dgrant *d;
        if (g->nderived >= NONE || grow(&g->derived, &g->cderived,
                                        g->nderived + 1, sizeof(*g->derived)))
          goto out;
        d = &g->derived[g->nderived++];
        d->ent = (uint32_t)e;
        d->principal = pairs[i].principal;
        d->src = src;
      }
      i = k;
    }
  }
  for (i = 0; i < g->ninsts; i++) {
    struct inst *in = g->insts[i];
    if (in->ncut)
      inst_log(in, CH_LOG_WARN,
               "expansion stopped at depth %d for %" PRIu64 " entitlement(s) "
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
  /* Step by step; each one's order comes from sorted keys, never from
     arrival order or hash order. */
  result = finish_keys(g);
  if (!result)
    result = finish_check_grants(g);
  if (!result)
    result = finish_ents(g);
  if (!result)
    result = finish_grants(g);
  if (!result)
    result = finish_identities(g);
  if (!result)
    result = finish_expand(g);
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
  jw_field_str(w, "tenant", n->inst->tenant);
  jw_field_str(w, "instance", n->inst->name);
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
    jw_put(w, r->profile, strlen(r->profile));
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

static void write_grant(const struct graph *g, struct jw *w,
                        const struct rgrant *r, const struct dgrant *d,
                        const char *kind) {
  uint32_t ent = r ? r->ent : d->ent;
  uint32_t principal = r ? r->prank : d->principal;

  jw_open(w, kind);
  jw_lit(w, "\"entitlement\":");
  jw_ent(w, &g->ents[ent]);
  jw_lit(w, ",\"principal\":");
  jw_k(w, g->krefs[principal].s, g->krefs[principal].len,
       (int)g->krefs[principal].plain);
  if (r)
    jw_lit(w, ",\"direct\":true");
  else
    jw_lit(w, ",\"direct\":false");
  if (r && (r->flags & CH_GRANT_EXPANDABLE)) {
    if (r->exp_ent != NONE) {
      jw_lit(w, ",\"expandable\":");
      jw_ent(w, &g->ents[r->exp_ent]);
    } else {
      char *k =
          key_entitlement(r->principal->key, def_slug(r->principal, r->expand));
      if (!k)
        w->failed = -1;
      else
        jw_field_str(w, "expandable", k);
      free(k);
    }
  }
  write_sources(g, w, r ? r->src : d->src);
  if (r && r->profile) {
    jw_key(w, "profile", 0);
    jw_put(w, r->profile, strlen(r->profile));
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
  size_t i, j;
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
  sort(insts, g->ninsts, sizeof(*insts), cmp_inst);

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
  for (i = 0, j = 0; i < g->ngrants || j < g->nderived;) {
    const struct rgrant *r = i < g->ngrants ? &g->grants[i] : NULL;
    const struct dgrant *d = j < g->nderived ? &g->derived[j] : NULL;
    if (r && d &&
        (d->ent < r->ent || (d->ent == r->ent && d->principal < r->prank)))
      r = NULL;
    ws_elem(&s);
    if (r) {
      write_grant(g, &w, r, NULL, k);
      i++;
    } else {
      write_grant(g, &w, NULL, d, k);
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
  for (out->inst = 0; g->insts[out->inst] != n->inst; out->inst++)
    ;
  out->traits = n->type->t->traits;
  out->status = r->status;
  out->account_type = r->account_type;
  out->emails = r->emails;
  out->match_keys = r->match_keys;
  out->profile = r->profile;
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

void graph_grant_view(const struct graph *g, size_t i,
                      struct graph_grant_view *out) {
  const struct rgrant *r = i < g->ngrants ? &g->grants[i] : NULL;
  const struct dgrant *d = r ? NULL : &g->derived[i - g->ngrants];
  uint32_t src = r ? r->src : d->src;

  out->ent = r ? r->ent : d->ent;
  out->principal = r ? r->prank : d->principal;
  out->direct = r != NULL;
  out->expandable = r && (r->flags & CH_GRANT_EXPANDABLE) ? r->exp_ent : NONE;
  out->sources = NULL;
  out->nsources = 0;
  if (src == NONE)
    return;
  if (src & SRC_LIST) {
    out->sources = g->srcpool + (src & ~SRC_LIST) + 1;
    out->nsources = g->srcpool[src & ~SRC_LIST];
  } else {
    out->sources = r ? &r->src : &d->src;
    out->nsources = 1;
  }
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
