/* SPDX-License-Identifier: MIT */
/* A hostile test plugin: its user list misbehaves the way a buggy plugin
   can take an in-process host down (issue 10, item 8). */

/*
 * One type, `user`. Option `mode`:
 *   hang      list() sleeps for ever, ignoring the host's stop flag
 *   segv      list() dereferences a bad pointer (SIGSEGV)
 *   abort     list() calls abort() (SIGABRT)
 *   overflow  list() recurses until the stack runs out (SIGSEGV)
 * It sends no record first (t_crash does); the misbehaviours are
 * misbehave.c's.
 */
#include <stddef.h>

#include <connhost/plugin.h>

#include "misbehave.h"

static const struct tm_mode th_modes[] = {{"hang", TM_HANG},
                                          {"segv", TM_SEGV},
                                          {"abort", TM_ABORT},
                                          {"overflow", TM_OVERFLOW},
                                          {NULL, TM_HANG}};

static const struct ch_option th_options[] = {
    {"mode", CH_OPT_STRING, 0, "hang", "which misbehaviour (see t_hostile.c)"},
    {NULL, 0, 0, NULL, NULL}};

static int th_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  (void)host;
  (void)hc;
  return tm_open(cfg, th_modes, "hang", instp, err);
}

static void th_close(void *inst) { (void)inst; }

static int th_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *token, struct ch_sink *sink,
                   struct ch_err *err) {
  const struct tm_mode *mode = inst;
  (void)type;
  (void)parent;
  (void)token;
  (void)sink;
  (void)err;
  tm_misbehave(mode->how);
  return CH_OK;
}

static const struct ch_plugin th_plugin = {
    .abi = CH_PLUGIN_ABI,
    .size = sizeof(struct ch_plugin),
    .name = "t_hostile",
    .version = "0.0.1",
    .description = "test plugin that hangs or crashes in list()",
    .options = th_options,
    .types = tm_types,
    .open = th_open,
    .close = th_close,
    .list = th_list,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &th_plugin : NULL;
}
