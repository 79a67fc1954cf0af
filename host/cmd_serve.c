/* SPDX-License-Identifier: MIT */
/* `connhost serve`: every tenant syncs on its own thread and schedule
   (serve_sched.c) through the same sync_run() as `connhost sync`
   (serve_run.c); this file is the lifecycle: start, SIGHUP reloads the
   config, SIGTERM/SIGINT drain. The HTTP routes are serve_http.c. */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "db.h"
#include "httpd.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "serve.h"
#include "stop.h"
#include "util.h"

/* What serve needs of a config beyond config_load's checks; logs why not. */
static int serve_config_ok(struct serve *sv, const struct config *c) {
  char *pattern = serve_output_pattern(sv, c);
  int ok = 1;

  if (!pattern)
    return 0;
  if (strcmp(pattern, "-") == 0) {
    log_error("%s: serve writes files: 'output' cannot be '-'", c->path);
    ok = 0;
  } else if (c->ntenants > 1 && !strstr(pattern, "{tenant}")) {
    log_error("%s: serve syncs each tenant on its own: 'output' must name a "
              "file per tenant with '{tenant}' (e.g. out/{tenant}.json), "
              "not '%s'",
              c->path, pattern);
    ok = 0;
  }
  free(pattern);
  return ok;
}

/* Every enabled, selected instance binds (plugin loads, options and
   secrets resolve): the check a config passes before it runs. */
static int config_binds(struct serve *sv, const struct config *c) {
  int ok = 1;

  for (size_t t = 0; t < c->ntenants; t++) {
    const struct config_tenant *ct = &c->tenants[t];
    if (!cli_tenant_selected(sv->s->cli, ct->name))
      continue;
    for (size_t i = 0; i < ct->ninstances; i++) {
      struct instance *in = NULL;
      struct ch_err err = {0};
      if (!ct->instances[i].enabled)
        continue;
      if (serve_bind_instance(sv, c, &ct->instances[i], &in, &err) != CH_OK) {
        log_error("%s", err.msg);
        ok = 0;
        continue;
      }
      instance_release(in);
      free(in);
    }
  }
  return ok;
}

/* Whether `c` still runs tenant/instance (for metrics_retain). */
static int still_served(void *arg, const char *tenant, const char *instance) {
  const struct config *c = arg;
  const struct config_tenant *ct = serve_find_tenant(c, tenant);

  for (size_t i = 0; ct && i < ct->ninstances; i++) {
    if (strcmp(ct->instances[i].name, instance) == 0)
      return ct->instances[i].enabled;
  }
  return 0;
}

static void reload(struct serve *sv) {
  struct config *c = NULL;
  struct ch_err err = {0};
  struct gen *g, *old;
  const char *path = sv->cur->config->path;

  log_info("SIGHUP: reloading %s", path);
  if (config_load(path, &c, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto bad;
  }
  if (!serve_config_ok(sv, c) || !config_binds(sv, c))
    goto bad;
  if ((c->serve_listen == NULL) != (sv->cur->config->serve_listen == NULL) ||
      (c->serve_listen &&
       strcmp(c->serve_listen, sv->cur->config->serve_listen) != 0) ||
      (c->serve_auth_token == NULL) !=
          (sv->cur->config->serve_auth_token == NULL) ||
      (c->serve_auth_token &&
       !httpd_secret_equal(c->serve_auth_token,
                           sv->cur->config->serve_auth_token)))
    log_warn("%s: serve.listen and serve.auth_token take effect at the next "
             "start, not on reload",
             path);
  if ((c->plugin_dir == NULL) != (sv->cur->config->plugin_dir == NULL) ||
      (c->plugin_dir &&
       strcmp(c->plugin_dir, sv->cur->config->plugin_dir) != 0))
    log_warn("%s: plugin_dir takes effect at the next start; plugins still "
             "load from '%s'",
             path, session_plugin_dir(sv->s));
  g = calloc(1, sizeof(*g));
  if (!g) {
    log_error("out of memory");
    goto bad;
  }
  g->config = c;
  g->refs = 1;
  pthread_mutex_lock(&sv->lock);
  old = sv->cur;
  sv->cur = g;
  serve_sync_tenants(sv);
  metrics_retain(sv->metrics, still_served, c);
  pthread_cond_broadcast(&sv->cond);
  pthread_mutex_unlock(&sv->lock);
  serve_gen_put(sv, old); /* `path` was the old config's: use the new one's */
  metrics_config_loaded(sv->metrics, 1, serve_wall_s());
  log_info("%s reloaded: %zu tenant%s", c->path, c->ntenants,
           c->ntenants == 1 ? "" : "s");
  return;
bad:
  config_free(c);
  metrics_config_loaded(sv->metrics, 0, serve_wall_s());
  log_error("%s: reload failed; the running config stays in effect", path);
}

/* Stop: no new runs; in-flight ones get the grace period, then the stop
   flag aborts them (their outputs stay as they were). */
static void drain(struct serve *sv, int sig) {
  long grace = sv->cur->config->serve_grace_ms ? sv->cur->config->serve_grace_ms
                                               : SERVE_GRACE_MS;
  int64_t until = serve_deadline_of(grace);
  int busy = 1;

  log_info("%s: stopping; in-flight syncs get %.1f s to finish",
           sig == SIGINT ? "SIGINT" : "SIGTERM", (double)grace / 1000.0);
  pthread_mutex_lock(&sv->lock);
  sv->stopping = 1;
  pthread_cond_broadcast(&sv->cond);
  while (busy) {
    busy = 0;
    for (size_t i = 0; i < sv->ntenants; i++)
      busy |= sv->tenants[i]->running;
    if (!busy)
      break;
    if (util_mono_us() >= until) {
      log_warn("shutdown grace of %.1f s passed: aborting the running "
               "syncs (their outputs stay as they were)",
               (double)grace / 1000.0);
      stop_request(sig);
      break;
    }
    serve_wait_until(sv, until);
  }
  pthread_mutex_unlock(&sv->lock);
  for (size_t i = 0; i < sv->ntenants; i++) {
    if (sv->tenants[i]->started)
      pthread_join(sv->tenants[i]->thread, NULL);
  }
}

static int serve_loop(struct serve *sv, const sigset_t *sigs) {
  for (;;) {
    siginfo_t info;
    struct timespec ts = {1, 0};
    int sig = sigtimedwait(sigs, &info, &ts);
    if (sig == SIGHUP) {
      reload(sv);
    } else if (sig == SIGTERM || sig == SIGINT) {
      drain(sv, sig);
      return EXIT_OK;
    } else if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      log_error("waiting for signals: %s", strerror(errno));
      drain(sv, SIGTERM);
      return EXIT_FAIL;
    }
  }
}

/* This replica's id: --replica-id, serve.replica_id, else HOSTNAME-PID
   (a pod's hostname is its name, so ids differ across replicas and
   restarts). malloc'd; NULL when out of memory. */
static char *replica_id(const struct serve *sv) {
  char host[256] = "", buf[300];

  if (sv->s->cli->replica_id)
    return strdup(sv->s->cli->replica_id);
  if (sv->cur->config->serve_replica_id)
    return strdup(sv->cur->config->serve_replica_id);
  if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
    snprintf(host, sizeof(host), "connhost");
  snprintf(buf, sizeof(buf), "%s-%ld", host, (long)getpid());
  return strdup(buf);
}

/* A PostgreSQL store is shared by replicas: the tenant runs go by leases
   in it (lease.h). A SQLite store is one replica's: no leases. The store
   and the lease expiry take effect at the next start, not on reload. */
static int open_leases(struct serve *sv) {
  const struct config *c = sv->cur->config;
  struct ch_err err = {0};

  if (!(sv->replica = replica_id(sv))) {
    log_error("out of memory");
    return 0;
  }
  if (!c->store || !db_is_url(c->store))
    return 1;
  if (leases_open(c->store, sv->replica, c->serve_lease_ms, &sv->leases,
                  &err) != CH_OK) {
    log_error("%s: %s", c->path, err.msg);
    return 0;
  }
  log_info("serve: replica '%s' shares the tenants through the store's "
           "leases (expiry %.1f s)",
           sv->replica,
           (double)(c->serve_lease_ms ? c->serve_lease_ms : LEASE_EXPIRY_MS) /
               1000.0);
  return 1;
}

int cmd_serve(struct session *s) {
  struct serve sv = {0};
  struct httpd_conf hc = {0};
  struct httpd *h = NULL;
  struct ch_err err = {0};
  sigset_t sigs;
  const char *listen;
  int rc = EXIT_USAGE;

  pthread_mutex_init(&sv.lock, NULL);
  pthread_cond_init(&sv.cond, NULL);
  pthread_mutex_init(&sv.registry_lock, NULL);
  sv.s = s;
  sv.rand_state = (unsigned)util_mono_us() ^ (unsigned)util_wall_ms();
  /* session_setup checked that every instance binds; serve binds afresh
     for each run (a rotated ${file:} secret is read again). */
  serve_release_all(s->insts, s->ninsts);
  s->insts = NULL;
  s->ninsts = 0;
  sv.metrics = metrics_new();
  sv.cur = calloc(1, sizeof(*sv.cur));
  if (!sv.metrics || !sv.cur) {
    log_error("out of memory");
    rc = EXIT_FAIL;
    goto out;
  }
  sv.cur->config = s->config;
  sv.cur->refs = 1;
  s->config = NULL; /* the generation owns it now */
  if (!serve_config_ok(&sv, sv.cur->config) || !open_leases(&sv))
    goto out;
  metrics_config_loaded(sv.metrics, 1, serve_wall_s());

  /* Signals go to this thread's sigtimedwait only: block them before any
     thread (listener, tenants, workers) starts, so all inherit the mask. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  listen = s->cli->listen                 ? s->cli->listen
           : sv.cur->config->serve_listen ? sv.cur->config->serve_listen
                                          : HTTPD_DEFAULT_LISTEN;
  hc.listen = listen;
  hc.token = sv.cur->config->serve_auth_token;
  hc.open_paths = serve_open_paths;
  hc.login_path = "/login"; /* the explorer's sign-in form */
  hc.handler = serve_on_http;
  hc.arg = &sv;
  if (httpd_start(&hc, &h, &err) != CH_OK) {
    log_error("%s: %s", sv.cur->config->path, err.msg);
    goto out;
  }
  log_info("serve: listening on %s (port %u), %zu tenant%s", listen,
           httpd_port(h), sv.cur->config->ntenants,
           sv.cur->config->ntenants == 1 ? "" : "s");
  pthread_mutex_lock(&sv.lock);
  serve_sync_tenants(&sv);
  pthread_mutex_unlock(&sv.lock);
  rc = serve_loop(&sv, &sigs);
  log_info("serve: stopped");
out:
  httpd_stop(h);
  leases_close(sv.leases); /* after drain: no run holds a lease now */
  free(sv.replica);
  for (size_t i = 0; i < sv.ntenants; i++) {
    free(sv.tenants[i]->name);
    free(sv.tenants[i]);
  }
  free(sv.tenants);
  if (sv.cur)
    serve_gen_put(&sv, sv.cur);
  metrics_free(sv.metrics);
  pthread_mutex_destroy(&sv.registry_lock);
  pthread_cond_destroy(&sv.cond);
  pthread_mutex_destroy(&sv.lock);
  return rc;
}
