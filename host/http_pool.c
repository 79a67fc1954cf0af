/* SPDX-License-Identifier: MIT */
/* The HTTP service's process-wide state: libcurl, the connection pool
   (a CURLSH) and each thread's easy handle. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "http_int.h"
#include "log.h"
#include "pace.h"

/* Written by http_global_init() before any worker starts, then only read. */
static struct http_global_conf gconf;
static int ginit;
static CURLSH *gshare;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
/* Each thread keeps one easy handle so its connections stay warm; the key's
   destructor frees it when a worker thread exits. */
static pthread_key_t easy_key;

void http_global_defaults(struct http_global_conf *conf) {
  conf->timeout_ms = 30000;
  conf->connect_timeout_ms = 10000;
  conf->max_body = (size_t)64 * 1024 * 1024;
  conf->max_attempts = 6;
  conf->backoff_base_ms = 500;
  conf->backoff_max_ms = 30000;
  conf->max_wait_ms = 120000;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access,
                       void *userp) {
  (void)h;
  (void)access;
  (void)userp;
  if ((unsigned)data < CURL_LOCK_DATA_LAST)
    pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp) {
  (void)h;
  (void)userp;
  if ((unsigned)data < CURL_LOCK_DATA_LAST)
    pthread_mutex_unlock(&share_locks[data]);
}

static void easy_destroy(void *p) { curl_easy_cleanup(p); }

/* A pool of connections, DNS answers and TLS sessions under share_locks. */
static CURLSH *share_new(void) {
  CURLSH *s = curl_share_init();

  if (s &&
      (curl_share_setopt(s, CURLSHOPT_LOCKFUNC, share_lock) ||
       curl_share_setopt(s, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
       curl_share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) ||
       curl_share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
       curl_share_setopt(s, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION))) {
    curl_share_cleanup(s);
    s = NULL;
  }
  return s;
}

int http_global_init(const struct http_global_conf *conf, struct ch_err *err) {
  int result = CH_E_CONFIG;
  int curl_done = 0, key_done = 0;
  size_t nlocks = 0;

  if (ginit)
    return ch_err_set(err, CH_E_CONFIG, "http service initialised twice");

  /* Zero or negative means "not set": keep the default. */
  http_global_defaults(&gconf);
  if (conf) {
    if (conf->timeout_ms > 0)
      gconf.timeout_ms = conf->timeout_ms;
    if (conf->connect_timeout_ms > 0)
      gconf.connect_timeout_ms = conf->connect_timeout_ms;
    if (conf->max_body > 0)
      gconf.max_body = conf->max_body;
    if (conf->max_attempts > 0)
      gconf.max_attempts = conf->max_attempts;
    if (conf->backoff_base_ms > 0)
      gconf.backoff_base_ms = conf->backoff_base_ms;
    if (conf->backoff_max_ms > 0)
      gconf.backoff_max_ms = conf->backoff_max_ms;
    if (conf->max_wait_ms > 0)
      gconf.max_wait_ms = conf->max_wait_ms;
  }

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    ch_err_set(err, CH_E_IO, "cannot initialise libcurl");
    goto out;
  }
  curl_done = 1;
  for (; nlocks < CURL_LOCK_DATA_LAST; nlocks++) {
    if (pthread_mutex_init(&share_locks[nlocks], NULL)) {
      ch_err_set(err, CH_E_NOMEM, "cannot create the http pool locks");
      goto out;
    }
  }
  if (pthread_key_create(&easy_key, easy_destroy)) {
    ch_err_set(err, CH_E_NOMEM, "cannot create the http thread key");
    goto out;
  }
  key_done = 1;
  gshare = share_new();
  if (!gshare) {
    ch_err_set(err, CH_E_NOMEM, "cannot create the http connection pool");
    goto out;
  }
  ginit = 1;
  result = CH_OK;
out:
  if (result != CH_OK) {
    if (gshare)
      curl_share_cleanup(gshare);
    gshare = NULL;
    if (key_done)
      pthread_key_delete(easy_key);
    while (nlocks > 0)
      pthread_mutex_destroy(&share_locks[--nlocks]);
    if (curl_done)
      curl_global_cleanup();
  }
  return result;
}

void http_global_cleanup(void) {
  CURL *h;

  if (!ginit)
    return;
  /* Worker threads freed their handles on exit; the caller's is ours. */
  h = pthread_getspecific(easy_key);
  if (h) {
    pthread_setspecific(easy_key, NULL);
    curl_easy_cleanup(h);
  }
  if (curl_share_cleanup(gshare) != CURLSHE_OK) {
    /* A thread that is still running holds a handle on the pool: leaking it
       is better than freeing memory that thread may still use. */
    log_warn("http: connection pool still in use at exit");
  } else {
    for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
      pthread_mutex_destroy(&share_locks[i]);
  }
  gshare = NULL;
  pthread_key_delete(easy_key);
  curl_global_cleanup();
  pace_global_cleanup();
  ginit = 0;
}

/* The parent's pool and this thread's handle on it, after a fork: kept
   (reachable, never used) rather than cleaned up. */
static CURLSH *parent_share;
static CURL *parent_easy;

int http_fork_child(void) {
  if (!ginit)
    return 0;
  /* Other threads of the parent may have held them mid-transfer. */
  for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init(&share_locks[i], NULL);
  parent_share = gshare;
  parent_easy = pthread_getspecific(easy_key);
  pthread_setspecific(easy_key, NULL);
  gshare = share_new();
  return gshare ? 0 : -1;
}

/* The calling thread's easy handle, reset to defaults; NULL on failure. */
CURL *http_thread_easy(void) {
  CURL *h = pthread_getspecific(easy_key);

  /* http_request() resets the handle after use: reset keeps the live
     connections and the share and drops every option. */
  if (h)
    return h;
  h = curl_easy_init();
  if (!h)
    return NULL;
  if (curl_easy_setopt(h, CURLOPT_SHARE, gshare) != CURLE_OK ||
      pthread_setspecific(easy_key, h)) {
    curl_easy_cleanup(h);
    return NULL;
  }
  return h;
}

const struct http_global_conf *http_conf(void) { return &gconf; }

int http_ready(void) { return ginit; }
