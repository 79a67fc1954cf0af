/* SPDX-License-Identifier: MIT */
/* Per tenant/instance run figures for `serve`, rendered as Prometheus text:
   names and types per the Prometheus naming conventions, label values
   escaped, process figures read from /proc. */
#include "autoconfig.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <connhost/plugin.h>

#include "buf.h"
#include "graph.h"
#include "metrics.h"

struct series {
  char *tenant, *instance;
  double last_attempt, last_success, last_finish;
  double duration;
  int have_run, last_ok, running;
  uint64_t last_resources, last_grants; /* of the last success */
  uint64_t runs_ok, runs_failed;
  uint64_t requests, retries, throttled, bytes; /* summed over runs */
};

struct metrics {
  pthread_mutex_t lock;
  struct series *s;
  size_t n;
  double start;
  int config_ok;
  double config_when;
};

struct metrics *metrics_new(void) {
  struct metrics *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  pthread_mutex_init(&m->lock, NULL);
  m->start = (double)time(NULL);
  return m;
}

void metrics_free(struct metrics *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n; i++) {
    free(m->s[i].tenant);
    free(m->s[i].instance);
  }
  free(m->s);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

/* The series of tenant/instance, created on first use; lock held. */
static struct series *find(struct metrics *m, const char *tenant,
                           const char *instance) {
  struct series *grown;

  for (size_t i = 0; i < m->n; i++) {
    if (strcmp(m->s[i].tenant, tenant) == 0 &&
        strcmp(m->s[i].instance, instance) == 0)
      return &m->s[i];
  }
  grown = realloc(m->s, (m->n + 1) * sizeof(*m->s));
  if (!grown)
    return NULL;
  m->s = grown;
  memset(&m->s[m->n], 0, sizeof(m->s[m->n]));
  m->s[m->n].tenant = strdup(tenant);
  m->s[m->n].instance = strdup(instance);
  if (!m->s[m->n].tenant || !m->s[m->n].instance) {
    free(m->s[m->n].tenant);
    free(m->s[m->n].instance);
    return NULL;
  }
  return &m->s[m->n++];
}

void metrics_attempt(struct metrics *m, const char *tenant,
                     const char *instance, double when) {
  struct series *s;

  pthread_mutex_lock(&m->lock);
  s = find(m, tenant, instance);
  if (s) {
    s->last_attempt = when;
    s->running = 1;
  }
  pthread_mutex_unlock(&m->lock);
}

void metrics_record(struct metrics *m, const struct metrics_run *r) {
  struct series *s;

  pthread_mutex_lock(&m->lock);
  s = find(m, r->tenant, r->instance);
  if (s) {
    s->have_run = 1;
    s->running = 0;
    s->last_attempt = r->started;
    s->last_finish = r->finished;
    s->last_ok = r->ok;
    s->duration = r->duration;
    if (r->ok) {
      s->last_success = r->finished;
      s->last_resources = r->nresources;
      s->last_grants = r->ngrants;
      s->runs_ok++;
    } else {
      s->runs_failed++;
    }
    s->requests += r->requests;
    s->retries += r->retries;
    s->throttled += r->throttled;
    s->bytes += r->bytes;
  }
  pthread_mutex_unlock(&m->lock);
}

void metrics_retain(struct metrics *m,
                    int (*keep)(void *arg, const char *tenant,
                                const char *instance),
                    void *arg) {
  size_t out = 0;

  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < m->n; i++) {
    if (keep(arg, m->s[i].tenant, m->s[i].instance)) {
      m->s[out++] = m->s[i];
      continue;
    }
    free(m->s[i].tenant);
    free(m->s[i].instance);
  }
  m->n = out;
  pthread_mutex_unlock(&m->lock);
}

void metrics_config_loaded(struct metrics *m, int ok, double when) {
  pthread_mutex_lock(&m->lock);
  m->config_ok = ok;
  if (ok) /* a failed reload leaves the running config, loaded back then */
    m->config_when = when;
  pthread_mutex_unlock(&m->lock);
}

int metrics_escape_label(const char *s, char *out, size_t outsz) {
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0, avail = strlen(s);

#define PUT(str, len)                                                          \
  do {                                                                         \
    if (o + (len) >= outsz)                                                    \
      goto full;                                                               \
    memcpy(out + o, (str), (len));                                             \
    o += (len);                                                                \
  } while (0)
  while (avail) {
    size_t seq = key_utf8_seq(p, avail);
    if (*p == '\\')
      PUT("\\\\", 2);
    else if (*p == '"')
      PUT("\\\"", 2);
    else if (*p == '\n')
      PUT("\\n", 2);
    else if (!seq)
      PUT("\xef\xbf\xbd", 3); /* U+FFFD for a stray byte */
    else
      PUT(p, seq);
    seq = seq ? seq : 1;
    p += seq;
    avail -= seq;
  }
#undef PUT
  out[o] = '\0';
  return 0;
full:
  out[o] = '\0';
  return -1;
}

static void family(struct buf *t, const char *name, const char *type,
                   const char *help) {
  buf_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Process figures from /proc/self (Linux); -1 when unknown. */
static long long rss_bytes(void) {
  long pages_total = 0, pages_rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  int got;

  if (!f)
    return -1;
  got = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
  fclose(f);
  return got == 2 ? (long long)pages_rss * sysconf(_SC_PAGESIZE) : -1;
}

static long long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  long long n = 0;

  if (!d)
    return -1;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory stream's own descriptor */
}

/* One per-series family: `value` picks the figure. */
typedef double (*series_value)(const struct series *s, int *skip);

static double v_attempt(const struct series *s, int *skip) {
  *skip = s->last_attempt == 0;
  return s->last_attempt;
}
static double v_success(const struct series *s, int *skip) {
  *skip = s->last_success == 0;
  return s->last_success;
}
static double v_duration(const struct series *s, int *skip) {
  *skip = !s->have_run;
  return s->duration;
}
static double v_ok(const struct series *s, int *skip) {
  *skip = !s->have_run;
  return s->last_ok;
}
static double v_running(const struct series *s, int *skip) {
  *skip = 0;
  return s->running;
}
static double v_resources(const struct series *s, int *skip) {
  *skip = s->last_success == 0;
  return (double)s->last_resources;
}
static double v_grants(const struct series *s, int *skip) {
  *skip = s->last_success == 0;
  return (double)s->last_grants;
}
static double v_requests(const struct series *s, int *skip) {
  *skip = 0;
  return (double)s->requests;
}
static double v_retries(const struct series *s, int *skip) {
  *skip = 0;
  return (double)s->retries;
}
static double v_throttled(const struct series *s, int *skip) {
  *skip = 0;
  return (double)s->throttled;
}
static double v_bytes(const struct series *s, int *skip) {
  *skip = 0;
  return (double)s->bytes;
}

/* `decimals`: 3 for seconds (to the millisecond: a difference of two
   wall-clock doubles is 1.2300000190734863, not 1.23), 0 for counts and
   0/1 gauges. */
static const struct {
  const char *name, *type, *help;
  series_value value;
  int decimals;
} per_series[] = {
    {"connhost_sync_last_attempt_timestamp_seconds", "gauge",
     "When the last run of the instance started (Unix time).", v_attempt, 3},
    {"connhost_sync_last_success_timestamp_seconds", "gauge",
     "When the last successful run of the instance finished (Unix time).",
     v_success, 3},
    {"connhost_sync_last_duration_seconds", "gauge",
     "How long the last finished run of the instance took.", v_duration, 3},
    {"connhost_sync_last_success", "gauge",
     "1 when the last finished run of the instance succeeded, 0 when it "
     "failed.",
     v_ok, 0},
    {"connhost_sync_running", "gauge",
     "1 while a run of the instance is in progress.", v_running, 0},
    {"connhost_sync_resources", "gauge",
     "Resources the last successful run of the instance synced.", v_resources,
     0},
    {"connhost_sync_grants", "gauge",
     "Grants the last successful run of the instance synced.", v_grants, 0},
    {"connhost_http_requests_total", "counter",
     "HTTP requests the instance sent, retries included.", v_requests, 0},
    {"connhost_http_retries_total", "counter",
     "HTTP requests the instance repeated after a retryable answer.", v_retries,
     0},
    {"connhost_http_throttled_total", "counter",
     "HTTP answers with status 429 (rate limited) the instance got.",
     v_throttled, 0},
    {"connhost_http_bytes_total", "counter",
     "HTTP bytes the instance sent and received, headers included.", v_bytes,
     0},
};

/* `{tenant="..",instance=".."}`, escaped. */
static void labels(struct buf *t, const struct series *s, const char *extra) {
  /* an escape is at most 3 bytes per byte (U+FFFD) */
  size_t tsz = 3 * strlen(s->tenant) + 1, isz = 3 * strlen(s->instance) + 1;
  char *tn = malloc(tsz), *in = malloc(isz);

  if (!tn || !in) {
    t->failed = 1;
  } else {
    metrics_escape_label(s->tenant, tn, tsz);
    metrics_escape_label(s->instance, in, isz);
    buf_printf(t, "{tenant=\"%s\",instance=\"%s\"%s}", tn, in,
               extra ? extra : "");
  }
  free(tn);
  free(in);
}

char *metrics_render(struct metrics *m) {
  struct buf t = {0};
  long long rss = rss_bytes(), fds = open_fds();

  family(&t, "connhost_build_info", "gauge",
         "Always 1; the labels say which build is running.");
  buf_printf(&t, "connhost_build_info{version=\"%s\",plugin_abi=\"%u\"} 1\n",
             PACKAGE_VERSION, (unsigned)CH_PLUGIN_ABI);
  family(&t, "process_start_time_seconds", "gauge",
         "When the process started (Unix time).");
  pthread_mutex_lock(&m->lock);
  buf_printf(&t, "process_start_time_seconds %.0f\n", m->start);
  if (rss >= 0) {
    family(&t, "process_resident_memory_bytes", "gauge",
           "Resident memory of the process.");
    buf_printf(&t, "process_resident_memory_bytes %lld\n", rss);
  }
  if (fds >= 0) {
    family(&t, "process_open_fds", "gauge", "Open file descriptors.");
    buf_printf(&t, "process_open_fds %lld\n", fds);
  }
  family(&t, "connhost_config_last_reload_successful", "gauge",
         "1 when the last config (re)load succeeded, 0 when it failed and "
         "the previous config kept running.");
  buf_printf(&t, "connhost_config_last_reload_successful %d\n", m->config_ok);
  family(&t, "connhost_config_last_reload_success_timestamp_seconds", "gauge",
         "When the running config was loaded (Unix time).");
  buf_printf(&t, "connhost_config_last_reload_success_timestamp_seconds %.3f\n",
             m->config_when);

  for (size_t f = 0; f < sizeof(per_series) / sizeof(per_series[0]); f++) {
    family(&t, per_series[f].name, per_series[f].type, per_series[f].help);
    for (size_t i = 0; i < m->n; i++) {
      int skip = 0;
      double v = per_series[f].value(&m->s[i], &skip);
      if (skip)
        continue;
      buf_printf(&t, "%s", per_series[f].name);
      labels(&t, &m->s[i], NULL);
      buf_printf(&t, " %.*f\n", per_series[f].decimals, v);
    }
  }
  family(&t, "connhost_sync_runs_total", "counter",
         "Finished runs of the instance, by outcome.");
  for (size_t i = 0; i < m->n; i++) {
    buf_printf(&t, "connhost_sync_runs_total");
    labels(&t, &m->s[i], ",status=\"ok\"");
    buf_printf(&t, " %llu\n", (unsigned long long)m->s[i].runs_ok);
    buf_printf(&t, "connhost_sync_runs_total");
    labels(&t, &m->s[i], ",status=\"failed\"");
    buf_printf(&t, " %llu\n", (unsigned long long)m->s[i].runs_failed);
  }
  pthread_mutex_unlock(&m->lock);
  return buf_take(&t);
}
