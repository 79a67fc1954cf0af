/* SPDX-License-Identifier: MIT */
/* What the hostile test plugins (t_hostile, t_crash) do in list(user):
   crash, hang or scribble, in ways a buggy plugin can. */
#ifndef CONNHOST_TESTS_MISBEHAVE_H
#define CONNHOST_TESTS_MISBEHAVE_H

#include <connhost/plugin.h>

enum tm_how {
  TM_SEGV,     /* write through a bad pointer (SIGSEGV) */
  TM_ABORT,    /* abort() (SIGABRT) */
  TM_OVERFLOW, /* recurse until the stack runs out (SIGSEGV) */
  TM_HANG,     /* sleep for ever, ignoring the host's stop flag */
  TM_SCRIBBLE, /* write junk into every pipe past stderr, then return */
  TM_EXIT,     /* exit(0), as if the run were over */
  TM_GUARD     /* not a misbehaviour: t_crash reports its stack guard */
};

/* A plugin's `mode` values (NULL-name terminated). */
struct tm_mode {
  const char *name;
  enum tm_how how;
};

/* One type, `user`, without entitlements or a grants call. */
extern const struct ch_resource_type tm_types[];

/* open(): the instance is the row of `modes` named by the first option
   (`def` when it is not set); "unknown mode" otherwise. */
int tm_open(const struct ch_cfg *cfg, const struct tm_mode *modes,
            const char *def, void **instp, struct ch_err *err);

/* Misbehave; returns only after TM_SCRIBBLE. */
void tm_misbehave(enum tm_how how);

#endif
