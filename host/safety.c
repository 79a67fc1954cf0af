/* SPDX-License-Identifier: MIT */
/* Safety thresholds against the previous run's per-instance counts. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "safety.h"
#include "store.h"

/* A graph with more instances than this is not one of ours. */
#define PREV_MAX_INSTANCES 100000

struct prev_entry {
  char *tenant, *instance;
  struct safety_counts counts;
};

struct safety_prev {
  struct prev_entry *v;
  size_t n, cap;
};

/* 1 when `to` is more than `pct` percent below `from` (or zero). */
static int shrank(unsigned long long from, unsigned long long to, int pct) {
  if (!from || to >= from || pct >= 100)
    return 0;
  if (!to)
    return 1;
  /* (from - to) / from > pct / 100, in integers */
  return (from - to) * 100 > (unsigned long long)pct * from;
}

int safety_check(const struct safety_counts *prev,
                 const struct safety_counts *now, int max_shrink, char *why,
                 size_t whysz) {
  const char *what = NULL;
  unsigned long long a = 0, b = 0;

  if (!prev)
    return 0;
  if (shrank(prev->resources, now->resources, max_shrink)) {
    what = "resources";
    a = prev->resources;
    b = now->resources;
  } else if (shrank(prev->grants, now->grants, max_shrink)) {
    what = "grants";
    a = prev->grants;
    b = now->grants;
  }
  if (!what)
    return 0;
  snprintf(why, whysz,
           "refusing to replace the last good data: %llu -> %llu %s (more "
           "than max_shrink %d%%; --accept-shrink if this is real)",
           a, b, what, max_shrink);
  return 1;
}

static unsigned long long stat_of(struct json_object *stats, const char *k) {
  struct json_object *v;
  int64_t n;

  if (!json_object_object_get_ex(stats, k, &v))
    return 0;
  n = json_object_get_int64(v);
  return n > 0 ? (unsigned long long)n : 0;
}

static struct prev_entry *find(const struct safety_prev *p, const char *tenant,
                               const char *instance) {
  for (size_t i = 0; p && i < p->n; i++) {
    if (!strcmp(p->v[i].tenant, tenant) && !strcmp(p->v[i].instance, instance))
      return &p->v[i];
  }
  return NULL;
}

/* Set tenant/instance's counts, adding it when new. */
static int set_entry(struct safety_prev *p, const char *tenant,
                     const char *instance, const struct safety_counts *c) {
  struct prev_entry *e = find(p, tenant, instance);

  if (e) {
    e->counts = *c;
    return 0;
  }
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    struct prev_entry *v = realloc(p->v, cap * sizeof(*v));
    if (!v)
      return -1;
    p->v = v;
    p->cap = cap;
  }
  e = &p->v[p->n];
  e->tenant = strdup(tenant);
  e->instance = strdup(instance);
  if (!e->tenant || !e->instance) {
    free(e->tenant);
    free(e->instance);
    return -1;
  }
  e->counts = *c;
  p->n++;
  return 0;
}

/* Add one instances[] element; failed ones carry no last good counts. */
static int add_entry(struct safety_prev *p, struct json_object *o) {
  struct json_object *t, *i, *st, *stats;
  struct safety_counts c;

  if (!json_object_object_get_ex(o, "tenant", &t) ||
      !json_object_object_get_ex(o, "instance", &i) ||
      !json_object_object_get_ex(o, "status", &st) ||
      !json_object_object_get_ex(o, "stats", &stats) ||
      strcmp(json_object_get_string(st), "ok") != 0)
    return 0;
  c.resources = stat_of(stats, "resources");
  c.grants = stat_of(stats, "grants");
  return set_entry(p, json_object_get_string(t), json_object_get_string(i), &c);
}

static int add_stored(void *arg, const char *tenant, const char *instance,
                      int64_t resources, int64_t grants) {
  struct safety_counts c = {resources > 0 ? (unsigned long long)resources : 0,
                            grants > 0 ? (unsigned long long)grants : 0};
  /* CH_E_NOMEM stops the read; tenant and instance are NOT NULL columns */
  return set_entry(arg, tenant, instance, &c) ? CH_E_NOMEM : 0;
}

int safety_prev_add_store(struct safety_prev *p, const char *path) {
  struct ch_err err = {0};
  int rc;

  if (!p || !path)
    return 0;
  rc = store_last_good(path, add_stored, p, &err);
  if (rc == CH_E_NOMEM)
    return -1;
  if (rc != CH_OK)
    log_warn("%s: no last good counts from the store, the safety thresholds "
             "use the previous output's",
             err.msg);
  return 0;
}

static int add_array(struct safety_prev *p, struct json_object *arr) {
  size_t n = json_object_array_length(arr);
  for (size_t k = 0; k < n; k++) {
    if (add_entry(p, json_object_array_get_idx(arr, k)))
      return -1;
  }
  return 0;
}

/* Strip the newline and a trailing ',' of one line of the JSON layout. */
static void trim_line(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ','))
    s[--n] = '\0';
}

/*
 * Only the header is read, not the whole (possibly huge) graph: JSONL's
 * first line is the header object; the JSON writer puts
 * `..."instances":[` on the first line, one instance per line, then a line
 * starting with ']'.
 */
static int read_header(FILE *f, struct safety_prev *p, const char *path) {
  char *line = NULL;
  size_t cap = 0;
  struct json_object *o, *arr;
  int rc = 0, bad = 0;

  if (getline(&line, &cap, f) < 0)
    goto out;
  trim_line(line);
  o = json_tokener_parse(line);
  if (o) {
    if (json_object_object_get_ex(o, "instances", &arr) &&
        json_object_is_type(arr, json_type_array))
      rc = add_array(p, arr);
    else
      bad = 1;
    json_object_put(o);
    goto out;
  }
  if (strncmp(line, "{\"connhost_graph\":", 18) != 0 ||
      !strstr(line, "\"instances\":[")) {
    bad = 1;
    goto out;
  }
  for (size_t k = 0; k < PREV_MAX_INSTANCES && !rc; k++) {
    if (getline(&line, &cap, f) < 0 || line[0] == ']')
      break;
    trim_line(line);
    o = json_tokener_parse(line);
    if (!o) {
      bad = 1;
      break;
    }
    rc = add_entry(p, o);
    json_object_put(o);
  }
out:
  if (bad)
    log_warn("%s: not a connhost graph header: no last good counts, the "
             "safety thresholds are not applied this run",
             path);
  free(line);
  return rc;
}

struct safety_prev *safety_prev_load(const char *path) {
  struct safety_prev *p = calloc(1, sizeof(*p));
  struct stat st = {0};
  FILE *f = NULL;
  int fd;

  if (!p || !path)
    return p;
  /* Only a regular file holds a previous graph: a device or a FIFO as the
     output would block or never end. */
  fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) ||
      !(f = fdopen(fd, "r"))) {
    if (fd >= 0 && !S_ISREG(st.st_mode))
      errno = ENOENT;
    if (errno != ENOENT)
      log_warn("cannot read the previous output '%s' (%s): the safety "
               "thresholds are not applied this run",
               path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return p;
  }
  if (read_header(f, p, path)) {
    safety_prev_free(p);
    p = NULL;
  }
  fclose(f);
  return p;
}

const struct safety_counts *safety_prev_get(const struct safety_prev *p,
                                            const char *tenant,
                                            const char *instance) {
  const struct prev_entry *e = find(p, tenant, instance);
  return e ? &e->counts : NULL;
}

void safety_prev_free(struct safety_prev *p) {
  if (!p)
    return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->v[i].tenant);
    free(p->v[i].instance);
  }
  free(p->v);
  free(p);
}
