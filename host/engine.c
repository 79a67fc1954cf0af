/* SPDX-License-Identifier: MIT */
/* The sync engine: page actions in one queue, drained by worker threads;
   every emitted resource schedules its children's lists and its grants. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "stop.h"

enum action_kind { ACT_LIST, ACT_GRANTS };

struct action {
  struct action *next;
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
};

struct engine {
  const struct engine_opts *opts;
  struct graph *graph;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct action *head, *tail;
  size_t outstanding; /* queued + running */
  int nomem;
  atomic_ullong resources, grants;
  int done; /* progress thread exit flag */
};

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

static void push(struct engine *e, struct action *a) {
  pthread_mutex_lock(&e->lock);
  if (!a) {
    e->nomem = 1;
  } else {
    if (e->tail)
      e->tail->next = a;
    else
      e->head = a;
    e->tail = a;
    e->outstanding++;
  }
  pthread_cond_signal(&e->cond);
  pthread_mutex_unlock(&e->lock);
}

/* Take the next action, or NULL when nothing is queued or running. */
static struct action *pop(struct engine *e) {
  struct action *a = NULL;

  pthread_mutex_lock(&e->lock);
  while (!e->head && e->outstanding > 0)
    pthread_cond_wait(&e->cond, &e->lock);
  if (e->head) {
    a = e->head;
    e->head = a->next;
    if (!e->head)
      e->tail = NULL;
    a->next = NULL;
  }
  pthread_mutex_unlock(&e->lock);
  return a;
}

static void finish(struct engine *e) {
  pthread_mutex_lock(&e->lock);
  e->outstanding--;
  if (e->outstanding == 0)
    pthread_cond_broadcast(&e->cond);
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
  if (rt && d->grants && !(rt->flags & CH_TYPE_NO_GRANTS_CALL))
    push(e, action_new(ACT_GRANTS, in, NULL, r->type, r->id, NULL, 0));
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
  in->resources++;
  sc->eng->resources++;
  page_fp(sc, r->type, r->id, NULL);
  schedule_children(sc->eng, in, r);
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
   given would loop forever; a chain past max_pages is runaway. */
static void schedule_next(struct engine *e, struct action *a,
                          const struct sink_ctx *sc) {
  const char *token = sc->next_token;
  struct action *next;
  char what[256];

  if (!token)
    return;
  describe(a, what, sizeof(what));
  if (a->token && strcmp(a->token, token) == 0) {
    instance_fail(a->inst,
                  "%s: the plugin returned the page token it was given "
                  "(page %ld): stopping an endless loop",
                  what, a->page + 1);
    return;
  }
  if (a->page > 0 && sc->n && sc->n == a->prev_n && sc->fp == a->prev_fp) {
    instance_fail(a->inst,
                  "%s: page %ld holds the same %lu records as page %ld (the "
                  "server ignores the paging parameters?): stopping an "
                  "endless loop",
                  what, a->page + 1, sc->n, a->page);
    return;
  }
  if (a->page + 1 >= e->opts->max_pages) {
    instance_fail(a->inst,
                  "%s: more than %ld pages: stopping (raise max_pages in the "
                  "config if the data really is that large)",
                  what, e->opts->max_pages);
    return;
  }
  next = action_new(a->kind, a->inst, a->type, a->ref_type, a->ref_id, token,
                    a->page + 1);
  if (next) {
    next->prev_fp = sc->fp;
    next->prev_n = sc->n;
  }
  push(e, next);
}

static void run_action(struct engine *e, struct action *a) {
  struct instance *in = a->inst;
  struct sink_ctx sc = {
      .sink = {sink_resource, sink_grant, sink_next_page}, .eng = e, .act = a};
  struct ch_err err = {0};
  struct ch_ref ref = {a->ref_type, a->ref_id};
  char what[256];
  int rc;

  if (instance_failed(in) || stop_requested())
    return;
  if (a->kind == ACT_LIST)
    rc = instance_list(in, a->type, a->ref_type ? &ref : NULL, a->token,
                       &sc.sink, &err);
  else
    rc = instance_grants(in, &ref, a->token, &sc.sink, &err);

  if (rc == CH_OK && !sc.stop) {
    schedule_next(e, a, &sc);
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
  free(sc.next_token);
}

static void *worker(void *arg) {
  struct engine *e = arg;
  struct action *a;

  while ((a = pop(e))) {
    run_action(e, a);
    action_free(a);
    finish(e);
  }
  return NULL;
}

static uint64_t total_requests(struct instance **insts, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    struct http_stats st;
    if (!insts[i]->pinst)
      continue;
    http_client_stats(insts[i]->hctx.http, &st);
    sum += st.requests;
  }
  return sum;
}

struct progress_arg {
  struct engine *eng;
  struct instance **insts;
  size_t n;
};

/* A line rewritten in place on a terminal, 5 times a second. */
static void *progress(void *arg) {
  struct progress_arg *pa = arg;
  struct engine *e = pa->eng;
  int shown = 0;

  for (;;) {
    struct timespec ts = {0, 200 * 1000000L};
    int done;
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&e->lock);
    done = e->done;
    pthread_mutex_unlock(&e->lock);
    if (done)
      break;
    fprintf(stderr,
            "\r\033[Ksyncing: %llu resources, %llu grants, %llu "
            "requests",
            (unsigned long long)e->resources, (unsigned long long)e->grants,
            (unsigned long long)total_requests(pa->insts, pa->n));
    shown = 1;
  }
  if (shown)
    fputs("\r\033[K", stderr);
  return NULL;
}

/* Drop whatever is still queued (after a stop request). */
static void drain(struct engine *e) {
  struct action *a;
  while ((a = e->head)) {
    e->head = a->next;
    action_free(a);
  }
  e->tail = NULL;
}

int engine_sync(struct instance **insts, size_t n, struct graph *g,
                const struct engine_opts *opts) {
  struct engine e = {.opts = opts, .graph = g};
  struct progress_arg pa = {&e, insts, n};
  pthread_t *threads = NULL;
  pthread_t prog;
  int nthreads = opts->workers > 0 ? opts->workers : 1;
  int started = 0, prog_started = 0;
  int rc = CH_E_NOMEM;

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
    e.done = 1;
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
  free(threads);
  pthread_cond_destroy(&e.cond);
  pthread_mutex_destroy(&e.lock);
  return rc;
}
