/* SPDX-License-Identifier: MIT */
/* A hostile test plugin for process isolation: its user list takes the
   process down, or never returns. */

/*
 * One type, `user`. Option `mode` picks how list(user) misbehaves:
 *   segv      writes through a bad pointer (SIGSEGV)
 *   abort     calls abort() (SIGABRT)
 *   overflow  recurses until the stack runs out (SIGSEGV)
 *   block     sleeps for ever, ignoring the host's stop flag
 *   scribble  writes junk into every pipe it has (past stderr), as a
 *             plugin with a stray fd bug would, then returns normally
 *   guard     fails with the size of its thread's stack guard ("stack
 *             guard N bytes"), which decides whether `overflow` faults
 * Each first emits one user, so a crash loses records already sent. The
 * misbehaviours are misbehave.c's (t_hostile's too).
 */
#define _GNU_SOURCE /* pthread_getattr_np */

#include <pthread.h>
#include <stddef.h>

#include <connhost/plugin.h>

#include "misbehave.h"

static const struct tm_mode tk_modes[] = {
    {"segv", TM_SEGV},         {"abort", TM_ABORT},
    {"overflow", TM_OVERFLOW}, {"block", TM_HANG},
    {"scribble", TM_SCRIBBLE}, {"guard", TM_GUARD},
    {"exit", TM_EXIT},         {NULL, TM_HANG}};

static const struct ch_option tk_options[] = {
    {"mode", CH_OPT_STRING, CH_OPT_REQUIRED, NULL,
     "segv, abort, overflow, block, scribble, guard or exit (see t_crash.c)"},
    {NULL, 0, 0, NULL, NULL}};

static int tk_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  (void)host;
  (void)hc;
  return tm_open(cfg, tk_modes, NULL, instp, err);
}

static void tk_close(void *inst) { (void)inst; }

static int tk_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *token, struct ch_sink *sink,
                   struct ch_err *err) {
  const struct tm_mode *mode = inst;
  struct ch_resource r = {.type = "user", .id = "u1", .display_name = "U1"};

  (void)type;
  (void)parent;
  (void)token;
  if (sink->resource(sink, &r))
    return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  if (mode->how == TM_GUARD) {
    pthread_attr_t a;
    size_t guard = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      pthread_attr_getguardsize(&a, &guard);
      pthread_attr_destroy(&a);
    }
    return ch_err_set(err, CH_E_INVALID, "stack guard %zu bytes", guard);
  }
  tm_misbehave(mode->how); /* returns only after scribbling */
  return CH_OK;
}

static const struct ch_plugin tk_plugin = {
    CH_PLUGIN_INIT,
    .name = "t_crash",
    .version = "0.0.1",
    .description = "isolation test plugin: crashes or hangs in list()",
    .options = tk_options,
    .types = tm_types,
    .open = tk_open,
    .close = tk_close,
    .list = tk_list,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &tk_plugin : NULL;
}
