/* SPDX-License-Identifier: MIT */
/* Graph benchmark: a big synthetic tenant through add, finish and write. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "graph.h"

/*
 * usage: bench_graph [users [groups [memberships [expandable [threads
 *                    [output.json]]]]]]
 * defaults: 100000 1000 1000000 10000 2 /dev/null
 *
 * Users carry an email and two match keys; memberships are random
 * (group, user) pairs; each expandable grant gives one of
 * expandable/5 roles to a random group, expandable through its members,
 * so every role reaches about 5 groups' worth of users. Adds run on
 * `threads` threads like sync workers; JSON goes to /dev/null.
 */

static long nusers = 100000, ngroups = 1000, nmembers = 1000000, nexp = 10000;
static long nthreads = 2;
static struct graph *g;
static int inst;

static uint64_t rnd(uint64_t *s) { /* xorshift64*: same data every run */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ULL;
}

static void check(int rc, const struct ch_err *err) {
  bench_check("bench_graph", rc, err);
}

static void *add_resources(void *arg) {
  long t = (long)arg, i;
  struct ch_err err;
  struct bench_user u;
  char id[48];

  for (i = t; i < nusers; i += nthreads) {
    struct ch_resource r = {0};
    snprintf(id, sizeof(id), "5b10a2844c20165700ede%06ld", i);
    bench_user(&u, id, i, &r);
    check(graph_add_resource(g, inst, &r, &err), &err);
  }
  for (i = t; i < ngroups + nexp / 5; i += nthreads) {
    struct ch_resource r = {0};
    bench_group(id, sizeof(id), i, ngroups, &r);
    check(graph_add_resource(g, inst, &r, &err), &err);
  }
  return NULL;
}

static void *add_grants(void *arg) {
  long t = (long)arg, i;
  uint64_t s = 0x9e3779b97f4a7c15ULL;
  struct ch_err err;
  char rid[48], pid[48];

  for (i = 0; i < nmembers + nexp; i++) {
    struct ch_grant gr = {{NULL, rid}, NULL, {NULL, pid}, 0, NULL, NULL};
    uint64_t a = rnd(&s), b = rnd(&s);
    if (i % nthreads != t)
      continue;
    if (i < nmembers) {
      snprintf(rid, sizeof(rid), "grp-%ld", (long)(a % (uint64_t)ngroups));
      snprintf(pid, sizeof(pid), "5b10a2844c20165700ede%06ld",
               (long)(b % (uint64_t)nusers));
      gr.resource.type = "group";
      gr.slug = "member";
      gr.principal.type = "user";
    } else {
      snprintf(rid, sizeof(rid), "10000:1-%ld", (i - nmembers) / 5);
      snprintf(pid, sizeof(pid), "grp-%ld", (long)(a % (uint64_t)ngroups));
      gr.resource.type = "project_role";
      gr.slug = "assigned";
      gr.principal.type = "group";
      gr.flags = CH_GRANT_EXPANDABLE;
      gr.expand_slug = "member";
    }
    check(graph_add_grant(g, inst, &gr, &err), &err);
  }
  return NULL;
}

static void run_threads(void *(*fn)(void *)) {
  pthread_t th[64];
  long t;

  for (t = 0; t < nthreads; t++)
    pthread_create(&th[t], NULL, fn, (void *)t);
  for (t = 0; t < nthreads; t++)
    pthread_join(th[t], NULL);
}

static double cpu0;

static void phase(const char *name, double t0) {
  double c = cpu();
  printf("%-16s %7.2f s wall %7.2f s cpu   peak RSS %5ld MB\n", name,
         now() - t0, c - cpu0, peak_rss_mb());
  fflush(stdout);
  cpu0 = c;
}

int main(int argc, char **argv) {
  struct graph_counts c;
  struct ch_err err;
  double t0, start = now();
  const char *out = argc > 6 ? argv[6] : "/dev/null";
  FILE *f;

  bench_args(argc, argv,
             (long *const[]){&nusers, &ngroups, &nmembers, &nexp, &nthreads},
             5);
  if (nusers < 1 || ngroups < 1 || nthreads < 1 || nthreads > 64) {
    fprintf(stderr, "usage: bench_graph [users [groups [memberships "
                    "[expandable [threads [output.json]]]]]]\n");
    return 2;
  }
  printf("%ld users, %ld groups, %ld memberships, %ld expandable grants, "
         "%ld threads\n",
         nusers, ngroups, nmembers, nexp, nthreads);
  g = graph_new();
  inst = graph_add_instance(g, "acme", "jira", "bench", "1", types);

  t0 = now();
  run_threads(add_resources);
  phase("add resources", t0);
  t0 = now();
  run_threads(add_grants);
  phase("add grants", t0);
  t0 = now();
  if (graph_finish(g)) {
    fprintf(stderr, "bench_graph: graph_finish failed\n");
    return 1;
  }
  phase("finish", t0);
  graph_counts(g, &c);
  printf("  %zu resources, %zu entitlements, %zu grants (%zu derived), "
         "%zu identities\n",
         c.resources, c.entitlements, c.grants, c.derived_grants, c.identities);
  f = fopen(out, "w");
  if (!f) {
    perror(out);
    return 1;
  }
  t0 = now();
  check(graph_write(g, f, GRAPH_JSON, "2024-01-01T00:00:00Z", &err), &err);
  fflush(f);
  phase("write JSON", t0);
  t0 = now();
  if (argc > 6) { /* a real file: keep the JSON, time JSONL elsewhere */
    fclose(f);
    f = fopen("/dev/null", "w");
  }
  check(graph_write(g, f, GRAPH_JSONL, "2024-01-01T00:00:00Z", &err), &err);
  fclose(f);
  phase("write JSONL", t0);
  t0 = now();
  graph_free(g);
  phase("free", t0);
  cpu0 = 0;
  phase("total", start);
  return 0;
}
