/* SPDX-License-Identifier: MIT */
/* Safety thresholds: refuse to replace an instance's last good data with
   much less of it (a wrong URL, a revoked scope, an API that answers
   empty pages), as identity-management systems do before deleting. */
#ifndef CONNHOST_SAFETY_H
#define CONNHOST_SAFETY_H

#include <stddef.h>

#include <connhost/plugin.h>

/* Share an instance may shrink by when neither the config nor the
   instance sets max_shrink. */
#define SAFETY_DEFAULT_MAX_SHRINK 50

struct safety_counts {
  unsigned long long resources, grants;
};

/*
 * Compare `now` with the last good run `prev`. Refused (returns non-zero,
 * `why` says "refusing to replace the last good data: 479 -> 0 resources")
 * when resources or grants shrank by more than `max_shrink` percent, or
 * to zero from a non-zero count (unless max_shrink is 100). Returns 0 when
 * `prev` is NULL (no last good run).
 */
int safety_check(const struct safety_counts *prev,
                 const struct safety_counts *now, int max_shrink, char *why,
                 size_t whysz);

/* The last good counts of every instance: from the snapshot store's last
   good run of each instance when the store has one, else from the
   previous output graph's per-instance stats. */
struct safety_prev;

/* Read the instances header of the graph file `path` (JSON or JSONL).
   A missing file gives an empty set; an unreadable or foreign one too,
   with a warning, so a first run is never blocked. NULL on no memory. */
struct safety_prev *safety_prev_load(const char *path);
/* Take each instance's counts from its last good run in the store at
   `path` where it has one (they replace the output's: the output may be
   gone, or older than the store's last good run). A store that cannot be
   read is warned about and skipped, so it never blocks a run. -1 on no
   memory. */
int safety_prev_add_store(struct safety_prev *p, const char *path);
/* The counts of tenant/instance if its last run was ok, else NULL. */
const struct safety_counts *safety_prev_get(const struct safety_prev *p,
                                            const char *tenant,
                                            const char *instance);
void safety_prev_free(struct safety_prev *p);

#endif
