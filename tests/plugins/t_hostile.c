/* SPDX-License-Identifier: MIT */
/* A hostile test plugin: its user list misbehaves the way a buggy plugin
   can take an in-process host down (issue 10, item 8). */

/*
 * One type, `user`. Option `mode`:
 *   hang      list() sleeps for ever, ignoring the host's stop flag
 *   segv      list() dereferences a bad pointer (SIGSEGV)
 *   abort     list() calls abort() (SIGABRT)
 *   overflow  list() recurses until the stack runs out (SIGSEGV)
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <connhost/plugin.h>

static const char *const th_modes[] = {"hang", "segv", "abort", "overflow",
                                       NULL};

static const struct ch_option th_options[] = {
    {"mode", CH_OPT_STRING, 0, "hang", "which misbehaviour (see t_hostile.c)"},
    {NULL, 0, 0, NULL, NULL}};

static const struct ch_entitlement_def th_user_ents[] = {{NULL, NULL, NULL}};

static const struct ch_resource_type th_types[] = {
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = th_user_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = NULL}};

static int th_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  const char *mode = cfg->nvalues && cfg->values[0].set && cfg->values[0].str
                         ? cfg->values[0].str
                         : "hang";
  (void)host;
  (void)hc;
  for (size_t i = 0; th_modes[i]; i++) {
    if (strcmp(th_modes[i], mode) == 0) {
      *instp = (void *)th_modes[i];
      return CH_OK;
    }
  }
  return ch_err_set(err, CH_E_CONFIG, "unknown mode '%s'", mode);
}

static void th_close(void *inst) { (void)inst; }

/* volatile so the compiler keeps every frame (and the fault). */
static volatile int th_sink;

/* Stops only on a depth no stack reaches, so the compiler cannot prove
   the recursion infinite, but the stack runs out first. */
static int th_recurse(long depth) {
  volatile char pad[4096];
  pad[0] = (char)depth;
  th_sink = pad[0];
  if (depth > (1L << 40))
    return 0;
  return th_recurse(depth + 1) + pad[0];
}

static int th_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *token, struct ch_sink *sink,
                   struct ch_err *err) {
  const char *mode = inst;
  (void)type;
  (void)parent;
  (void)token;
  (void)sink;
  (void)err;
  if (!strcmp(mode, "segv")) {
    int *volatile bad = (int *)8;
    th_sink = *bad;
  } else if (!strcmp(mode, "abort")) {
    abort();
  } else if (!strcmp(mode, "overflow")) {
    th_sink = th_recurse(0);
  }
  for (;;) {
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
  }
  return CH_OK;
}

static const struct ch_plugin th_plugin = {
    .abi = CH_PLUGIN_ABI,
    .size = sizeof(struct ch_plugin),
    .name = "t_hostile",
    .version = "0.0.1",
    .description = "test plugin that hangs or crashes in list()",
    .options = th_options,
    .types = th_types,
    .open = th_open,
    .close = th_close,
    .list = th_list,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &th_plugin : NULL;
}
