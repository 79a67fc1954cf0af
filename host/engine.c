/* SPDX-License-Identifier: MIT */
/* The sync engine: page actions queued per class, drained by worker
   threads; every emitted resource schedules its children's lists and its
   grants.

   Pacing (docs/pacing.md): `workers` threads may run at once, but a
   thread asleep in the HTTP service (a pacing budget, the rate cap, a
   retry wait) gives its run slot back meanwhile, and the pool has spare
   threads to use it. A class of actions (one kind on one type of one
   instance, e.g. the Organizations users' role assignments) whose
   requests had to wait in the last second is "paced": it may hold at most
   `workers` threads, and its further actions are deferred while others
   are picked, so a paced endpoint never starves the rest. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engine.h"
#include "hmap.h"
#include "log.h"
#include "stop.h"
#include "util.h"

enum action_kind { ACT_LIST, ACT_GRANTS };

struct aclass;

struct action {
  struct action *next;
  struct aclass *cls;
  enum action_kind kind;
  struct instance *inst;
  const char *type; /* LIST: type to list (from the plugin's table) */
  char *ref_type;   /* LIST: parent; GRANTS: the resource */
  char *ref_id;
  char *token; /* NULL for the first page */
  long page;   /* pages done in this chain */
  /* What the previous page of this chain emitted (page_fp). */
  uint64_t prev_fp;
  unsigned long prev_n;
  /* Progress of the chain (carried from page to page): records emitted,
     and what the API said to expect (0: unknown). */
  uint64_t emitted, expected;
};

/* The actions of one kind on one type of one instance. */
struct aclass {
  struct aclass *next; /* every class, in creation order */
  struct instance *inst;
  enum action_kind kind;
  char *type; /* LIST: the type listed; GRANTS: the resource's type */
  struct action *head, *tail;
  int threads;            /* running or waiting on its actions */
  int64_t paced_until_us; /* a request of it waited for a budget lately */
};

#define PACED_US 1000000 /* a class counts as paced this long after a wait */
#define SPARE_THREADS 2  /* extra threads per worker, to use lent slots */
#define MAX_THREADS 256

struct engine {
  const struct engine_opts *opts;
  struct graph *graph;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct aclass *classes, *rr; /* rr: where the next pop starts looking */
  size_t outstanding;          /* queued + running */
  int running;                 /* threads running, not lending their slot */
  int nomem;
  atomic_ullong resources, grants;
  atomic_ullong expected, done; /* over chains with an API total */
  /* Grants chains (one per resource that has grants): scheduled, ended.
     No API counts these for us, and a tenant's per-user calls can be
     most of its sync after every listing is done. */
  atomic_ullong chains, chains_done;
  int finished; /* progress thread exit flag */
  /* (instance, type, id) of every resource met, under `lock` (keys are
     malloc'd here): see first_sight(). */
  struct hmap seen;
};

/* The class of the action the calling worker runs (for the wait hooks). */
static _Thread_local struct aclass *cur_class;

/* What the sink needs while one action runs. */
struct sink_ctx {
  struct ch_sink sink;
  struct engine *eng;
  struct action *act;
  char *next_token;
  int stop;
  uint64_t fp;     /* fingerprint of the ids this page emitted */
  unsigned long n; /* how many records it emitted */
};

/* FNV-1a over the ids a page emits, in order: a page whose records are
   the previous page's again is an endless loop even with a new token
   (an API that ignores startAt). */
static void page_fp(struct sink_ctx *sc, const char *a, const char *b,
                    const char *c) {
  const char *parts[3] = {a, b, c};
  uint64_t h = sc->n ? sc->fp : 1469598103934665603ULL;

  for (int i = 0; i < 3; i++) {
    for (const unsigned char *p =
             (const unsigned char *)(parts[i] ? parts[i] : "");
         ; p++) {
      h = (h ^ *p) * 1099511628211ULL;
      if (!*p)
        break;
    }
  }
  sc->fp = h;
  sc->n++;
}

int engine_default_workers(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1)
    cores = 1;
  return cores * ENGINE_WORKERS_PER_CORE > ENGINE_WORKERS_MAX
             ? ENGINE_WORKERS_MAX
             : (int)cores * ENGINE_WORKERS_PER_CORE;
}

static void action_free(struct action *a) {
  if (!a)
    return;
  free(a->ref_type);
  free(a->ref_id);
  free(a->token);
  free(a);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static struct action *action_new(enum action_kind kind, struct instance *inst,
                                 const char *type, const char *ref_type,
                                 const char *ref_id, const char *token,
                                 long page) {
  struct action *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->kind = kind;
  a->inst = inst;
  a->type = type;
  a->ref_type = dup_or_null(ref_type);
  a->ref_id = dup_or_null(ref_id);
  a->token = dup_or_null(token);
  a->page = page;
  if ((ref_type && !a->ref_type) || (ref_id && !a->ref_id) ||
      (token && !a->token)) {
    action_free(a);
    return NULL;
  }
  return a;
}

/* The class of `a`, created on first use; e->lock held. */
static struct aclass *class_of(struct engine *e, const struct action *a) {
  const char *type = a->kind == ACT_LIST ? a->type : a->ref_type;
  struct aclass **pp = &e->classes;

  for (; *pp; pp = &(*pp)->next) {
    struct aclass *c = *pp;
    if (c->inst == a->inst && c->kind == a->kind && strcmp(c->type, type) == 0)
      return c;
  }
  *pp = calloc(1, sizeof(**pp));
  if (!*pp)
    return NULL;
  (*pp)->type = strdup(type);
  if (!(*pp)->type) {
    free(*pp);
    *pp = NULL;
    return NULL;
  }
  (*pp)->inst = a->inst;
  (*pp)->kind = a->kind;
  return *pp;
}

static void push(struct engine *e, struct action *a) {
  struct aclass *c = NULL;

  pthread_mutex_lock(&e->lock);
  if (a)
    c = class_of(e, a);
  if (!c) {
    e->nomem = 1;
    action_free(a);
  } else {
    a->cls = c;
    if (c->tail)
      c->tail->next = a;
    else
      c->head = a;
    c->tail = a;
    e->outstanding++;
  }
  /* Only a free run slot makes the new action runnable now: with every
     slot busy, a signal would only wake a spare thread to wait again
     (finish and wait_begin signal when a slot frees). */
  if (e->running < e->opts->workers || e->nomem)
    pthread_cond_signal(&e->cond);
  pthread_mutex_unlock(&e->lock);
}

/* The next runnable action, round-robin over the classes, skipping paced
   classes that hold their share of threads; e->lock held. */
static struct action *take(struct engine *e) {
  int64_t now = util_mono_us();
  struct aclass *c = e->rr ? e->rr : e->classes;

  for (struct aclass *first = c; c;) {
    if (c->head &&
        (c->threads < e->opts->workers || now >= c->paced_until_us)) {
      struct action *a = c->head;
      c->head = a->next;
      if (!c->head)
        c->tail = NULL;
      a->next = NULL;
      c->threads++;
      e->rr = c->next;
      return a;
    }
    c = c->next ? c->next : e->classes;
    if (c == first)
      break;
  }
  return NULL;
}

/* Take the next action, or NULL when nothing is queued or running. A
   thread waits while all run slots are taken or only deferred work is
   queued. */
static struct action *pop(struct engine *e) {
  struct action *a = NULL;

  pthread_mutex_lock(&e->lock);
  while (e->outstanding > 0) {
    if (e->running < e->opts->workers && (a = take(e)) != NULL) {
      e->running++;
      break;
    }
    /* Deferred work becomes runnable with time, not only with events. */
    util_cond_wait_us(&e->cond, &e->lock, 100000);
  }
  pthread_mutex_unlock(&e->lock);
  return a;
}

/* An action of class `c` is done; returns the next one to run on this
   thread's slot, or NULL (then pop() waits). Keeping the slot instead of
   handing it to a woken thread saves a wakeup per action. */
static struct action *finish(struct engine *e, struct aclass *c) {
  struct action *next = NULL;

  pthread_mutex_lock(&e->lock);
  e->outstanding--;
  e->running--;
  c->threads--;
  if (e->outstanding > 0 && e->running < e->opts->workers &&
      (next = take(e)) != NULL)
    e->running++;
  /* One slot is free: one waiter will do, unless everyone may exit. */
  else if (e->outstanding == 0)
    pthread_cond_broadcast(&e->cond);
  else
    pthread_cond_signal(&e->cond);
  pthread_mutex_unlock(&e->lock);
  return next;
}

/* http_set_wait_hooks: a sleeping worker lends its run slot; a wait for
   a budget marks its class paced (a retry's wait does not: the endpoint
   is not the bottleneck). */
static void wait_begin(void *arg, int paced) {
  struct engine *e = arg;

  if (!cur_class)
    return;
  pthread_mutex_lock(&e->lock);
  e->running--;
  if (paced)
    cur_class->paced_until_us = util_mono_us() + PACED_US;
  pthread_cond_signal(&e->cond);
  pthread_mutex_unlock(&e->lock);
}

/* Back from the sleep: the slot is taken back at once (possibly one over
   `workers` for a moment) rather than queueing behind new work, so the
   request keeps the send token it waited for. */
static void wait_end(void *arg) {
  struct engine *e = arg;

  if (!cur_class)
    return;
  pthread_mutex_lock(&e->lock);
  e->running++;
  pthread_mutex_unlock(&e->lock);
}

/* A resource was emitted: schedule its child types' lists and its grants. */
static void schedule_children(struct engine *e, struct instance *in,
                              const struct ch_resource *r) {
  const struct ch_plugin *d = in->plugin->desc;
  const struct ch_resource_type *rt = plugin_type(d, r->type);

  for (const struct ch_resource_type *t = d->types; t->id; t++) {
    if (t->parent && strcmp(t->parent, r->type) == 0 && (t->caps & CH_CAP_SYNC))
      push(e, action_new(ACT_LIST, in, t->id, r->type, r->id, NULL, 0));
  }
  /* Grants may come from any type (a user's role assignments live on the
     user), so every type is asked unless it opts out. */
  if (rt && d->grants && !(rt->flags & CH_TYPE_NO_GRANTS_CALL)) {
    e->chains++;
    push(e, action_new(ACT_GRANTS, in, NULL, r->type, r->id, NULL, 0));
  }
}

static int add_resource(struct engine *e, struct instance *in,
                        const struct ch_resource *r, struct ch_err *err) {
  const struct engine_emit *em = e->opts->emit;
  return em ? em->on_resource(em->ctx, in, r, err)
            : graph_add_resource(e->graph, in->graph_index, r, err);
}

static int add_grant(struct engine *e, struct instance *in,
                     const struct ch_grant *g, struct ch_err *err) {
  const struct engine_emit *em = e->opts->emit;
  return em ? em->on_grant(em->ctx, in, g, err)
            : graph_add_grant(e->graph, in->graph_index, g, err);
}

/* One more record of the chain: progress counts it when the API gave a
   total and it is within it. */
static void count_emitted(struct sink_ctx *sc) {
  struct action *a = sc->act;

  a->emitted++;
  if (a->expected && a->emitted <= a->expected)
    sc->eng->done++;
}

/* The plugin's count of the chain's records (its first report wins). */
static int sink_expect(struct ch_sink *s, uint64_t total) {
  struct sink_ctx *sc = (struct sink_ctx *)s;
  struct action *a = sc->act;

  if (a->expected || !total)
    return 0;
  a->expected = total;
  sc->eng->expected += total;
  sc->eng->done += a->emitted < total ? a->emitted : total;
  return 0;
}

/* Whether the run meets this instance's resource for the first time. One
   listed again (a page that shifted, a server paging in circles) is
   merged by the graph, but neither counts again nor schedules its child
   listings and grants again: a listing that cycles would otherwise fetch
   every grants chain once per lap. Out of memory, it counts as new (a
   second fetch costs requests, not data). */
static int first_sight(struct engine *e, const struct instance *in,
                       const struct ch_resource *r) {
  size_t nt = strlen(r->type) + 1, ni = strlen(r->id);
  size_t len = sizeof(in) + nt + ni;
  char *key = malloc(len);
  int first = 1;

  if (!key)
    return 1;
  memcpy(key, &in, sizeof(in));
  memcpy(key + sizeof(in), r->type, nt);
  memcpy(key + sizeof(in) + nt, r->id, ni);
  pthread_mutex_lock(&e->lock);
  if (hmap_get(&e->seen, key, len))
    first = 0;
  else if (hmap_put(&e->seen, key, len, key) == 0)
    key = NULL; /* the map owns it */
  pthread_mutex_unlock(&e->lock);
  free(key);
  return first;
}

static void seen_free(struct engine *e) {
  size_t pos = 0;
  void *key;

  while (hmap_next(&e->seen, &pos, NULL, NULL, &key))
    free(key);
  hmap_release(&e->seen);
}

static int sink_resource(struct ch_sink *s, const struct ch_resource *r) {
  struct sink_ctx *sc = (struct sink_ctx *)s;
  struct instance *in = sc->act->inst;
  struct ch_err err = {0};

  if (sc->stop || stop_requested())
    return 1;
  if (add_resource(sc->eng, in, r, &err) != CH_OK) {
    instance_fail(in, "malformed resource: %s", err.msg);
    sc->stop = 1;
    return 1;
  }
  page_fp(sc, r->type, r->id, NULL);
  count_emitted(sc);
  if (first_sight(sc->eng, in, r)) {
    in->resources++;
    sc->eng->resources++;
    schedule_children(sc->eng, in, r);
  }
  return 0;
}

static int sink_grant(struct ch_sink *s, const struct ch_grant *g) {
  struct sink_ctx *sc = (struct sink_ctx *)s;
  struct instance *in = sc->act->inst;
  struct ch_err err = {0};

  if (sc->stop || stop_requested())
    return 1;
  if (add_grant(sc->eng, in, g, &err) != CH_OK) {
    instance_fail(in, "malformed grant: %s", err.msg);
    sc->stop = 1;
    return 1;
  }
  in->grants++;
  sc->eng->grants++;
  page_fp(sc, g->resource.id, g->slug, g->principal.id);
  count_emitted(sc);
  return 0;
}

static int sink_next_page(struct ch_sink *s, const char *token) {
  struct sink_ctx *sc = (struct sink_ctx *)s;

  free(sc->next_token);
  sc->next_token = NULL;
  if (token && *token) {
    sc->next_token = strdup(token);
    if (!sc->next_token) {
      sc->stop = 1;
      return 1;
    }
  }
  return 0;
}

static void describe(const struct action *a, char *buf, size_t n) {
  if (a->kind == ACT_LIST && a->ref_type)
    snprintf(buf, n, "list %s of %s '%s'", a->type, a->ref_type, a->ref_id);
  else if (a->kind == ACT_LIST)
    snprintf(buf, n, "list %s", a->type);
  else
    snprintf(buf, n, "grants of %s '%s'", a->ref_type, a->ref_id);
}

/* The next page of a chain, after the guards: a token equal to the one
   given would loop forever; a chain past max_pages is runaway. Returns 1
   when the chain goes on. */
static int schedule_next(struct engine *e, struct action *a,
                         const struct sink_ctx *sc) {
  const char *token = sc->next_token;
  struct action *next;
  char what[256];

  if (!token)
    return 0;
  describe(a, what, sizeof(what));
  if (a->token && strcmp(a->token, token) == 0) {
    instance_fail(a->inst,
                  "%s: the plugin returned the page token it was given "
                  "(page %ld): stopping an endless loop",
                  what, a->page + 1);
    return 0;
  }
  if (a->page > 0 && sc->n && sc->n == a->prev_n && sc->fp == a->prev_fp) {
    instance_fail(a->inst,
                  "%s: page %ld holds the same %lu records as page %ld (the "
                  "server ignores the paging parameters?): stopping an "
                  "endless loop",
                  what, a->page + 1, sc->n, a->page);
    return 0;
  }
  if (a->page + 1 >= e->opts->max_pages) {
    instance_fail(a->inst,
                  "%s: more than %ld pages: stopping (raise max_pages in the "
                  "config if the data really is that large)",
                  what, e->opts->max_pages);
    return 0;
  }
  next = action_new(a->kind, a->inst, a->type, a->ref_type, a->ref_id, token,
                    a->page + 1);
  if (next) {
    next->prev_fp = sc->fp;
    next->prev_n = sc->n;
    next->emitted = a->emitted;
    next->expected = a->expected;
  }
  push(e, next);
  return 1;
}

static void run_action(struct engine *e, struct action *a) {
  struct instance *in = a->inst;
  struct sink_ctx sc = {
      .sink = {sink_resource, sink_grant, sink_next_page, sink_expect},
      .eng = e,
      .act = a};
  struct ch_err err = {0};
  struct ch_ref ref = {a->ref_type, a->ref_id};
  char what[256];
  int rc, more = 0;

  if (instance_failed(in) || stop_requested()) {
    if (a->kind == ACT_GRANTS)
      e->chains_done++;
    return;
  }
  if (a->kind == ACT_LIST)
    rc = instance_list(in, a->type, a->ref_type ? &ref : NULL, a->token,
                       &sc.sink, &err);
  else
    rc = instance_grants(in, &ref, a->token, &sc.sink, &err);

  if (rc == CH_OK && !sc.stop) {
    more = schedule_next(e, a, &sc);
  } else if (rc == CH_E_NOTFOUND && a->ref_type && a->page == 0) {
    /* The first page under a resource just listed: it was deleted while
       we synced, a warning, the chain just ends. A root listing or a later
       page that 404s is a wrong URL or a broken API: it fails below, or an
       empty graph would replace a good one. */
    describe(a, what, sizeof(what));
    in->warnings++;
    log_msg(in->hctx.label, CH_LOG_WARN, "%s: %s (skipped)", what,
            err.msg[0] ? err.msg : "not found");
  } else if (!instance_failed(in) && !stop_requested()) {
    describe(a, what, sizeof(what));
    instance_fail(in, "%s: %s", what,
                  err.msg[0] ? err.msg : "failed without a message");
  }
  if (a->kind == ACT_GRANTS && !more)
    e->chains_done++;
  free(sc.next_token);
}

static void *worker(void *arg) {
  struct engine *e = arg;
  struct action *a;

  /* Per thread: serve runs one engine per tenant at the same time. */
  http_set_wait_hooks(wait_begin, wait_end, e);
  for (a = pop(e); a; a = a ? a : pop(e)) {
    struct aclass *c = a->cls;
    cur_class = c;
    run_action(e, a);
    cur_class = NULL;
    action_free(a);
    a = finish(e, c);
  }
  return NULL;
}

struct progress_arg {
  struct engine *eng;
  struct instance **insts;
  size_t n;
};

struct totals {
  uint64_t requests, throttled, pages;
};

static void sum_totals(const struct progress_arg *pa, struct totals *t) {
  memset(t, 0, sizeof(*t));
  for (size_t i = 0; i < pa->n; i++) {
    struct http_stats st;
    if (!pa->insts[i]->pinst)
      continue;
    http_client_stats(pa->insts[i]->hctx.http, &st);
    t->requests += st.requests;
    t->throttled += st.throttled;
    t->pages += pa->insts[i]->pages;
  }
}

/* One progress line: rates over the last interval; the percentage over
   what the APIs counted, the ETA over that and over the resources whose
   grants are still to read (docs/pacing.md). */
static void progress_text(struct engine *e, const struct totals *t,
                          const struct totals *last, double elapsed,
                          double interval, char *buf, size_t n) {
  uint64_t expected = e->expected, done = e->done;
  uint64_t chains = e->chains, chains_done = e->chains_done;
  double rps =
      interval > 0 ? (double)(t->requests - last->requests) / interval : 0;
  int len;

  /* "resources, grants, requests" first: the line before pacing had them
     in that order, and scripts may read it. */
  len = snprintf(buf, n,
                 "%.0f s: %llu resources, %llu grants, %llu requests, %.0f "
                 "requests/s, %llu 429s, %llu pages",
                 elapsed, (unsigned long long)e->resources,
                 (unsigned long long)e->grants, (unsigned long long)t->requests,
                 rps, (unsigned long long)t->throttled,
                 (unsigned long long)t->pages);
  if (expected && done && len > 0 && (size_t)len < n) {
    double p = (double)done / (double)expected;
    double eta = p >= 1 ? 0 : elapsed * (1 - p) / p;
    /* Every listing counted and done still leaves the grants of what they
       listed (an org's one call per user): at the rate so far. */
    if (chains_done && chains > chains_done) {
      double rest = elapsed * (double)(chains - chains_done) / chains_done;
      eta = rest > eta ? rest : eta;
    }
    if (eta > 0 && eta < 1) /* work left is never "0 s" away */
      eta = 1;
    len += snprintf(buf + len, n - (size_t)len,
                    ", %.0f%% of %llu counted, ETA %.0f s", p * 100,
                    (unsigned long long)expected, eta);
  }
  if (chains && len > 0 && (size_t)len < n)
    snprintf(buf + len, n - (size_t)len, ", grants of %llu of %llu resources",
             (unsigned long long)chains_done, (unsigned long long)chains);
}

/* On a terminal a line rewritten in place 5 times a second; elsewhere an
   info log line every 10 s. */
static void *progress(void *arg) {
  struct progress_arg *pa = arg;
  struct engine *e = pa->eng;
  /* A live line is for a person at a terminal, never inside JSON logs. */
  int tty = isatty(STDERR_FILENO) && log_format() == LOG_TEXT, shown = 0;
  int64_t t0 = util_mono_us(), tlast = t0;
  int64_t every = tty ? 200000 : 10000000;
  struct totals last = {0};

  for (;;) {
    struct timespec ts = {0, 200 * 1000000L};
    struct totals t;
    char line[320];
    int64_t now;
    int done;

    nanosleep(&ts, NULL);
    pthread_mutex_lock(&e->lock);
    done = e->finished;
    pthread_mutex_unlock(&e->lock);
    if (done)
      break;
    now = util_mono_us();
    if (now - tlast < every)
      continue;
    sum_totals(pa, &t);
    /* The terminal's rate is over the last second, not 200 ms. */
    progress_text(e, &t, &last, (double)(now - t0) / 1e6,
                  (double)(now - tlast) / 1e6, line, sizeof(line));
    if (tty) {
      fprintf(stderr, "\r\033[Ksyncing: %s", line);
      shown = 1;
    } else {
      log_info("progress: %s", line);
    }
    if (!tty || now - tlast >= 1000000 || !last.requests) {
      last = t;
      tlast = now;
    }
  }
  if (shown)
    fputs("\r\033[K", stderr);
  return NULL;
}

/* Drop whatever is still queued (after a stop request). */
static void drain(struct engine *e) {
  struct aclass *c;

  while ((c = e->classes)) {
    struct action *a;
    while ((a = c->head)) {
      c->head = a->next;
      action_free(a);
    }
    e->classes = c->next;
    free(c->type);
    free(c);
  }
  e->rr = NULL;
}

/* glibc gives threads up to 8 malloc arenas per core: the workers' JSON
   trees and the graph's records then fragment that many heaps, and the
   peak RSS of a big sync grows with the thread count. One arena per core
   keeps the locks uncontended enough. */
static void arenas_once(void) {
#ifdef __GLIBC__
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  mallopt(M_ARENA_MAX, ncpu > 2 ? (int)ncpu : 2);
#endif
}

int engine_sync(struct instance **insts, size_t n, struct graph *g,
                const struct engine_opts *opts) {
  struct engine e = {.graph = g};
  struct progress_arg pa = {&e, insts, n};
  pthread_t *threads = NULL;
  pthread_t prog;
  struct engine_opts o = *opts;
  int nthreads;
  int started = 0, prog_started = 0;
  static pthread_once_t arenas = PTHREAD_ONCE_INIT;
  int rc = CH_E_NOMEM;

  pthread_once(&arenas, arenas_once);
  if (o.workers < 1)
    o.workers = 1;
  e.opts = &o;
  /* Spare threads take the slots that sleeping ones lend. */
  nthreads = o.workers > MAX_THREADS / (1 + SPARE_THREADS)
                 ? MAX_THREADS
                 : o.workers * (1 + SPARE_THREADS);
  pthread_mutex_init(&e.lock, NULL);
  pthread_cond_init(&e.cond, NULL);

  /* Root types of every instance start the run. */
  for (size_t i = 0; i < n; i++) {
    const struct ch_plugin *d = insts[i]->plugin->desc;
    if (!insts[i]->pinst)
      continue;
    for (const struct ch_resource_type *t = d->types; t->id; t++) {
      if (!t->parent && (t->caps & CH_CAP_SYNC))
        push(&e, action_new(ACT_LIST, insts[i], t->id, NULL, NULL, NULL, 0));
    }
  }
  threads = calloc((size_t)nthreads, sizeof(*threads));
  if (!threads)
    goto out;
  for (; started < nthreads; started++) {
    if (pthread_create(&threads[started], NULL, worker, &e) != 0)
      break;
  }
  if (started == 0)
    goto out;
  if (opts->progress && pthread_create(&prog, NULL, progress, &pa) == 0)
    prog_started = 1;
  rc = CH_OK;
out:
  for (int i = 0; i < started; i++)
    pthread_join(threads[i], NULL);
  if (prog_started) {
    pthread_mutex_lock(&e.lock);
    e.finished = 1;
    pthread_mutex_unlock(&e.lock);
    pthread_join(prog, NULL);
  }
  if (started == 0 && rc == CH_OK)
    rc = CH_E_NOMEM;
  drain(&e);
  if (e.nomem)
    rc = CH_E_NOMEM;
  if (rc == CH_OK && stop_requested())
    rc = CH_E_STOPPED;
  seen_free(&e);
  free(threads);
  pthread_cond_destroy(&e.cond);
  pthread_mutex_destroy(&e.lock);
  return rc;
}
