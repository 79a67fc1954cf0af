/* SPDX-License-Identifier: MIT */
/* Store benchmark: a synthetic tenant recorded run after run with a fixed
   churn, then the read queries timed on the result. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "graph.h"
#include "store.h"

/*
 * usage: bench_store [users [groups [memberships [expandable [runs
 *                    [churn_per_mille [db]]]]]]]
 * defaults: 20000 1000 250000 2500 10 10 /tmp/bench-store.db
 *
 * The shape of the fake's `large` tenant: users with an email and two
 * match keys, random memberships, roles given to groups (expandable
 * through their members). Run k redraws the memberships whose index is
 * k-2 modulo 1000/churn, so each run changes `churn` per mille of them.
 */

static long nusers = 20000, ngroups = 1000, nmembers = 250000, nexp = 2500;
static long nruns = 10, churn = 10;

static uint64_t mix(uint64_t x) { /* splitmix64: same data every time */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static void check(int rc, const struct ch_err *err) {
  bench_check("bench_store", rc, err);
}

static void user_id(char *buf, size_t n, long i) {
  snprintf(buf, n, "712020:bench-%06ld", i);
}

/* Membership i as of run `run` (1-based): redrawn once, in run
   2 + i % period (so runs beyond period + 1 change nothing more). */
static void membership(long i, long run, long *group, long *user) {
  long period = 1000 / churn;
  uint64_t v = i % period < run - 1 ? 1 : 0;
  uint64_t h = mix((uint64_t)i * 2 + v);

  *group = (long)(h % (uint64_t)ngroups);
  *user = (long)((h >> 32) % (uint64_t)nusers);
}

static struct graph *build(long run, long *top_group) {
  struct graph *g = graph_new();
  int inst = graph_add_instance(g, "acme", "jira", "bench", "1", types);
  struct ch_err err = {0};
  struct bench_user u;
  char id[48], pid[48];
  long *count = calloc((size_t)ngroups, sizeof(*count)), i, gr, us;

  for (i = 0; i < nusers; i++) {
    struct ch_resource r = {0};
    user_id(id, sizeof(id), i);
    bench_user(&u, id, i, &r);
    r.status = i % 10 ? CH_RES_ENABLED : CH_RES_DISABLED;
    check(graph_add_resource(g, inst, &r, &err), &err);
  }
  for (i = 0; i < ngroups + nexp / 5; i++) {
    struct ch_resource r = {0};
    bench_group(id, sizeof(id), i, ngroups, &r);
    check(graph_add_resource(g, inst, &r, &err), &err);
  }
  for (i = 0; i < nmembers + nexp; i++) {
    struct ch_grant x = {{NULL, id}, NULL, {NULL, pid}, 0, NULL, NULL};
    if (i < nmembers) {
      membership(i, run, &gr, &us);
      count[gr]++;
      snprintf(id, sizeof(id), "grp-%ld", gr);
      user_id(pid, sizeof(pid), us);
      x.resource.type = "group";
      x.slug = "member";
      x.principal.type = "user";
    } else {
      snprintf(id, sizeof(id), "10000:1-%ld", (i - nmembers) / 5);
      snprintf(pid, sizeof(pid), "grp-%ld",
               (long)(mix((uint64_t)i) % (uint64_t)ngroups));
      x.resource.type = "project_role";
      x.slug = "assigned";
      x.principal.type = "group";
      x.flags = CH_GRANT_EXPANDABLE;
      x.expand_slug = "member";
    }
    check(graph_add_grant(g, inst, &x, &err), &err);
  }
  if (graph_finish(g)) {
    fprintf(stderr, "bench_store: graph_finish failed\n");
    exit(1);
  }
  *top_group = 0;
  for (i = 1; i < ngroups; i++)
    if (count[i] > count[*top_group])
      *top_group = i;
  free(count);
  return g;
}

static long long file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static int write_jsonl(FILE *f, void *arg, struct ch_err *err) {
  return graph_write(arg, f, GRAPH_JSONL, "2024-01-01T00:00:00Z", err);
}

/* One read: select, then drain every named query; wall milliseconds. */
static double timed_read(const char *db, const struct store_params *p,
                         const char *const *queries, long *rows) {
  struct store *s = NULL;
  struct ch_err err = {0};
  double t0 = now();

  *rows = 0;
  check(store_open(db, 0, &s, &err), &err);
  check(store_select(s, p, &err), &err);
  for (; *queries; queries++) {
    struct store_cursor *c = NULL;
    int rc;
    check(store_query(s, *queries, &c, &err), &err);
    while ((rc = store_next(c, &err)) == 1) {
      for (size_t i = 0; i < store_ncols(c); i++)
        (void)store_col_text(c, i);
      (*rows)++;
    }
    check(rc, &err);
    store_cursor_free(c);
  }
  store_close(s);
  return (now() - t0) * 1000;
}

int main(int argc, char **argv) {
  const char *db = argc > 7 ? argv[7] : "/tmp/bench-store.db";
  char jsonl[4096], who[64], what[64];
  struct ch_err err = {0};
  double build_cpu = 0, rec_cpu = 0, first_rec = 0;
  long long one_run = 0, jsonl_size;
  long top = 0, rows;
  static const char *const q_access[] = {"identity", "access", NULL};
  static const char *const q_who[] = {"who_has", NULL};
  static const char *const q_diff[] = {"diff_resources",  "diff_direct",
                                       "diff_derived",    "diff_status",
                                       "diff_identities", NULL};

  bench_args(
      argc, argv,
      (long *const[]){&nusers, &ngroups, &nmembers, &nexp, &nruns, &churn}, 6);
  if (nusers < 1 || ngroups < 1 || nruns < 2 || churn < 1 || churn > 1000) {
    fprintf(stderr, "usage: bench_store [users [groups [memberships "
                    "[expandable [runs [churn_per_mille [db]]]]]]]\n");
    return 2;
  }
  snprintf(jsonl, sizeof(jsonl), "%s.jsonl", db);
  unlink(db);
  printf("%ld users, %ld groups, %ld memberships, %ld expandable grants; "
         "%ld runs, %.1f%% of memberships redrawn per run\n",
         nusers, ngroups, nmembers, nexp, nruns, churn / 10.0);
  for (long run = 1; run <= nruns; run++) {
    double c0 = cpu(), c1, c2;
    struct graph *g = build(run, &top);
    struct graph_counts gc;

    c1 = cpu();
    check(store_save(db, g, 0, 100, NULL, &err), &err);
    c2 = cpu();
    build_cpu += c1 - c0;
    rec_cpu += c2 - c1;
    if (run == 1) {
      graph_counts(g, &gc);
      printf("  one run: %zu resources, %zu grants (%zu derived)\n",
             gc.resources, gc.grants, gc.derived_grants);
      check(output_write_atomic(jsonl, write_jsonl, g, &err), &err);
      first_rec = c2 - c1;
      one_run = file_size(db);
      printf("  run 1: graph built in %.2f s CPU, recorded in %.2f s CPU "
             "(%.0f%%)\n",
             c1 - c0, c2 - c1, 100 * (c2 - c1) / (c1 - c0));
    }
    graph_free(g);
  }
  jsonl_size = file_size(jsonl);
  unlink(jsonl);
  printf("  runs 2-%ld: recorded in %.2f s CPU each on average\n", nruns,
         (rec_cpu - first_rec) / (double)(nruns - 1));
  printf("\n%-44s %12s %12s\n", "size", "bytes", "ratio");
  printf("%-44s %12lld %12s\n", "JSONL graph of one run", jsonl_size, "1.00");
  printf("%-44s %12lld %12.2f\n", "store after run 1", one_run,
         (double)one_run / (double)jsonl_size);
  printf("%-44s %12lld %12.2f  (x%.2f the one-run store)\n",
         "store after all runs", file_size(db),
         (double)file_size(db) / (double)jsonl_size,
         (double)file_size(db) / (double)one_run);

  printf("\n%-44s %12s %12s\n", "read (latest run)", "ms", "rows");
  {
    struct store_params p = {0};
    double ms;
    snprintf(who, sizeof(who), "user%ld@example.com", nusers / 2);
    p.who = who;
    ms = timed_read(db, &p, q_access, &rows);
    printf("%-44s %12.1f %12ld\n", "access user (by email)", ms, rows);
    memset(&p, 0, sizeof(p));
    snprintf(what, sizeof(what), "acme/jira/group/grp-%ld#member", top);
    p.what = what;
    ms = timed_read(db, &p, q_who, &rows);
    printf("%-44s %12.1f %12ld\n", "who-has on the largest group's membership",
           ms, rows);
    memset(&p, 0, sizeof(p));
    ms = timed_read(db, &p, q_diff, &rows);
    printf("%-44s %12.1f %12ld\n", "diff between the last two runs", ms, rows);
  }
  unlink(db);
  return 0;
}
