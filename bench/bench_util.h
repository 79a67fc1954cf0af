/* SPDX-License-Identifier: MIT */
/* What the benchmarks share: the synthetic tenant's resource types, the
   clocks they report with, their argument parsing and error exit. */
#ifndef CONNHOST_BENCH_UTIL_H
#define CONNHOST_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <connhost/plugin.h>

/* Users, groups (member), project roles (assigned), like Jira's. */
static const char *const to_user_group[] = {"user", "group", NULL};
static const struct ch_entitlement_def group_ents[] = {
    {"member", "Member", to_user_group}, {NULL, NULL, NULL}};
static const struct ch_entitlement_def role_ents[] = {
    {"assigned", "Assigned", to_user_group}, {NULL, NULL, NULL}};
static const struct ch_resource_type types[] = {
    {"user", "User", CH_TRAIT_USER, NULL, NULL, CH_CAP_SYNC, 0},
    {"group", "Group", CH_TRAIT_GROUP, NULL, group_ents, CH_CAP_SYNC, 0},
    {"project_role", "Project role", CH_TRAIT_ROLE, NULL, role_ents,
     CH_CAP_SYNC, 0},
    {NULL, NULL, 0, NULL, NULL, 0, 0}};

static inline double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the process (all threads): less noisy than wall time on
   a busy machine. */
static inline double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static inline long peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

/* The leading numeric arguments: argv[1..n] into *vals[0..n-1] where
   given (the others keep their defaults). */
static inline void bench_args(int argc, char **argv, long *const *vals, int n) {
  for (int i = 0; i < n && i + 1 < argc; i++)
    *vals[i] = atol(argv[i + 1]);
}

/* A failed call: print `prog: message` and exit 1. */
static inline void bench_check(const char *prog, int rc,
                               const struct ch_err *err) {
  if (rc) {
    fprintf(stderr, "%s: %s\n", prog, err->msg);
    exit(1);
  }
}

/* User number `i` with id `id`: a name, an email and two match keys, in
   `u` (which `r` then points into). */
struct bench_user {
  char name[48], email[64], mk1[80], mk2[80];
  const char *emails[2], *mks[3];
};
static inline void bench_user(struct bench_user *u, const char *id, long i,
                              struct ch_resource *r) {
  snprintf(u->name, sizeof(u->name), "User Number %ld", i);
  snprintf(u->email, sizeof(u->email), "user%ld@example.com", i);
  snprintf(u->mk1, sizeof(u->mk1), "atlassian_account_id=%s", id);
  snprintf(u->mk2, sizeof(u->mk2), "email=%s", u->email);
  u->emails[0] = u->email;
  u->emails[1] = NULL;
  u->mks[0] = u->mk1;
  u->mks[1] = u->mk2;
  u->mks[2] = NULL;
  r->type = "user";
  r->id = id;
  r->display_name = u->name;
  r->status = CH_RES_ENABLED;
  r->account_type = CH_ACCOUNT_HUMAN;
  r->emails = u->emails;
  r->match_keys = u->mks;
}

/* Group "grp-i" for i < ngroups, else project role "10000:1-(i-ngroups)";
   the id goes into `id`. */
static inline void bench_group(char *id, size_t n, long i, long ngroups,
                               struct ch_resource *r) {
  int role = i >= ngroups;

  snprintf(id, n, "%s-%ld", role ? "10000:1" : "grp", role ? i - ngroups : i);
  r->type = role ? "project_role" : "group";
  r->id = id;
  r->display_name = id;
}

#endif
