/* SPDX-License-Identifier: MIT */
/* The HTTP floor of a sync (a benchmark, not a test): replays the GETs of
   the fake's request log with bare libcurl, one thread, one kept-alive
   handle per credential, options set once and only the URL per request,
   bodies discarded. Its CPU time is what those requests cost any libcurl
   client on this machine, the kernel's loopback work included, so a
   sync's CPU can be read against it.

   usage: http_floor REQUEST_LOG  (the DEMO_* variables of
   bench/fake-env.sh name the fake and its credentials)
   Prints one JSON object: requests, skipped (not GET), failed, bytes and
   cpu_s (user + system time of the replay alone). */
#include "autoconfig.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum cred { CRED_JIRA, CRED_ORG, CRED_SCIM, CRED_COUNT };

struct replay {
  char **urls;
  enum cred *creds;
  size_t n, cap, skipped;
  atomic_size_t next, bytes, failed;
};

/* This process's user and system CPU seconds so far. */
static void cpu_seconds(double *user, double *sys) {
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static const char *need_env(const char *name) {
  const char *v = getenv(name);

  if (!v || !*v) {
    fprintf(stderr, "http_floor: %s is not set (source bench/fake-env.sh)\n",
            name);
    exit(2);
  }
  return v;
}

static size_t discard(char *p, size_t size, size_t n, void *userp) {
  (void)p;
  atomic_fetch_add((atomic_size_t *)userp, size * n);
  return size * n;
}

/* The scheme, host and port of DEMO_JIRA_URL: the log's paths are from the
   root, whatever API they went to. */
static char *origin_of(const char *url) {
  const char *host = strstr(url, "://");
  const char *slash = host ? strchr(host + 3, '/') : NULL;
  size_t len = slash ? (size_t)(slash - url) : strlen(url);
  char *o = malloc(len + 1);

  if (o) {
    memcpy(o, url, len);
    o[len] = '\0';
  }
  return o;
}

static int add_request(struct replay *r, const char *origin, const char *path,
                       const char *query) {
  size_t len = strlen(origin) + strlen(path) + (query ? strlen(query) : 0) + 2;
  char *url = malloc(len);

  if (!url)
    return -1;
  snprintf(url, len, "%s%s%s%s", origin, path, query && *query ? "?" : "",
           query ? query : "");
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 1024;
    char **urls = realloc(r->urls, cap * sizeof(*urls));
    enum cred *creds = urls ? realloc(r->creds, cap * sizeof(*creds)) : NULL;

    if (urls)
      r->urls = urls;
    if (!creds) {
      free(url);
      return -1;
    }
    r->creds = creds;
    r->cap = cap;
  }
  r->creds[r->n] = strncmp(path, "/admin/", 7) == 0  ? CRED_ORG
                   : strncmp(path, "/scim/", 6) == 0 ? CRED_SCIM
                                                     : CRED_JIRA;
  r->urls[r->n++] = url;
  return 0;
}

static int load_log(const char *file, const char *origin, struct replay *r) {
  FILE *f = fopen(file, "r");
  char *line = NULL;
  size_t cap = 0;
  int result = 0;

  if (!f) {
    perror(file);
    return -1;
  }
  while (result == 0 && getline(&line, &cap, f) > 0) {
    json_object *o = json_tokener_parse(line), *m, *p, *q;

    if (!o || !json_object_object_get_ex(o, "method", &m) ||
        !json_object_object_get_ex(o, "path", &p)) {
      json_object_put(o);
      continue; /* a line cut by the fake's stop */
    }
    if (strcmp(json_object_get_string(m), "GET") != 0)
      r->skipped++;
    else if (add_request(r, origin, json_object_get_string(p),
                         json_object_object_get_ex(o, "query", &q)
                             ? json_object_get_string(q)
                             : NULL))
      result = -1;
    json_object_put(o);
  }
  free(line);
  fclose(f);
  return result;
}

static CURL *handle_for(enum cred c, atomic_size_t *bytes) {
  CURL *h = curl_easy_init();

  if (!h)
    return NULL;
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, bytes);
  if (c == CRED_JIRA) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERNAME, getenv("DEMO_JIRA_EMAIL"));
    curl_easy_setopt(h, CURLOPT_PASSWORD, getenv("DEMO_JIRA_TOKEN"));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
    curl_easy_setopt(
        h, CURLOPT_XOAUTH2_BEARER,
        getenv(c == CRED_ORG ? "DEMO_ORG_KEY" : "DEMO_SCIM_TOKEN"));
  }
  return h;
}

/* One replaying thread: its own handles, the next request in log order. */
static void *replayer(void *arg) {
  struct replay *r = arg;
  CURL *h[CRED_COUNT] = {0};
  size_t i;
  int c;

  for (c = 0; c < CRED_COUNT; c++) {
    h[c] = handle_for((enum cred)c, &r->bytes);
    if (!h[c]) {
      fprintf(stderr, "http_floor: cannot create a curl handle\n");
      exit(1);
    }
  }
  while ((i = atomic_fetch_add(&r->next, 1)) < r->n) {
    long status = 0;
    CURL *e = h[r->creds[i]];

    curl_easy_setopt(e, CURLOPT_URL, r->urls[i]);
    if (curl_easy_perform(e) != CURLE_OK ||
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
        status / 100 != 2)
      atomic_fetch_add(&r->failed, 1);
  }
  for (c = 0; c < CRED_COUNT; c++)
    curl_easy_cleanup(h[c]);
  return NULL;
}

int main(int argc, char **argv) {
  static struct replay r;
  pthread_t threads[64];
  const char *n_env = getenv("FLOOR_THREADS");
  int nthreads = n_env ? atoi(n_env) : 1;
  char *origin;
  double user0, sys0, user1, sys1;
  int t;

  if (argc != 2) {
    fprintf(stderr, "usage: http_floor REQUEST_LOG\n");
    return 2;
  }
  if (nthreads < 1 || nthreads > 64) {
    fprintf(stderr, "http_floor: FLOOR_THREADS must be 1 to 64\n");
    return 2;
  }
  need_env("DEMO_JIRA_EMAIL");
  need_env("DEMO_JIRA_TOKEN");
  need_env("DEMO_ORG_KEY");
  need_env("DEMO_SCIM_TOKEN");
  origin = origin_of(need_env("DEMO_JIRA_URL"));
  if (!origin || load_log(argv[1], origin, &r)) {
    fprintf(stderr, "http_floor: cannot load %s\n", argv[1]);
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  cpu_seconds(&user0, &sys0);
  for (t = 0; t < nthreads; t++) {
    if (pthread_create(&threads[t], NULL, replayer, &r)) {
      fprintf(stderr, "http_floor: cannot start a thread\n");
      return 1;
    }
  }
  for (t = 0; t < nthreads; t++)
    pthread_join(threads[t], NULL);
  cpu_seconds(&user1, &sys1);
  printf("{\"requests\": %zu, \"skipped\": %zu, \"failed\": %zu, "
         "\"bytes\": %zu, \"threads\": %d, \"cpu_s\": %.3f, "
         "\"user_s\": %.3f, \"sys_s\": %.3f}\n",
         r.n, r.skipped, (size_t)r.failed, (size_t)r.bytes, nthreads,
         user1 - user0 + sys1 - sys0, user1 - user0, sys1 - sys0);
  curl_global_cleanup();
  for (size_t i = 0; i < r.n; i++)
    free(r.urls[i]);
  free(r.urls);
  free(r.creds);
  free(origin);
  return 0;
}
