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
 * Each first emits one user, so a crash loses records already sent.
 */
#define _GNU_SOURCE /* pthread_getattr_np */

#include <pthread.h>

#include <sys/stat.h>
#include <unistd.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <connhost/plugin.h>

static const char *const tk_modes[] = {"segv",     "abort", "overflow", "block",
                                       "scribble", "guard", NULL};

static const struct ch_option tk_options[] = {
    {"mode", CH_OPT_STRING, CH_OPT_REQUIRED, NULL,
     "segv, abort, overflow or block (see t_crash.c)"},
    {NULL, 0, 0, NULL, NULL}};

static const struct ch_entitlement_def tk_no_ents[] = {{NULL, NULL, NULL}};

static const struct ch_resource_type tk_types[] = {
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = tk_no_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = NULL}};

static int tk_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  const char *mode = cfg->nvalues ? cfg->values[0].str : NULL;

  (void)host;
  (void)hc;
  for (size_t i = 0; mode && tk_modes[i]; i++) {
    if (strcmp(tk_modes[i], mode) == 0) {
      *instp = (void *)tk_modes[i];
      return CH_OK;
    }
  }
  return ch_err_set(err, CH_E_CONFIG, "unknown mode '%s'", mode ? mode : "");
}

static void tk_close(void *inst) { (void)inst; }

/* A limit no stack reaches (read at run time, so the compiler keeps the
   recursion); the volatile frame keeps each call's stack. */
static volatile long tk_depth_limit = 1L << 40;

static int tk_recurse(long depth) {
  volatile char frame[4096];

  frame[0] = (char)depth;
  frame[sizeof(frame) - 1] = (char)depth;
  if (depth >= tk_depth_limit)
    return frame[0];
  return tk_recurse(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

/* An address nothing is mapped at (read at run time, like the limit). */
static volatile uintptr_t tk_bad_address = 16;

/* A frame header claiming 2 GiB, then junk. */
static void tk_scribble(void) {
  static const char junk[] = "\xff\xff\xff\x7fjunk";

  for (int fd = 3; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
        write(fd, junk, sizeof(junk) - 1) < 0)
      continue;
  }
}

static int tk_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *token, struct ch_sink *sink,
                   struct ch_err *err) {
  const char *mode = inst;
  struct ch_resource r = {.type = "user", .id = "u1", .display_name = "U1"};

  (void)type;
  (void)parent;
  (void)token;
  if (sink->resource(sink, &r))
    return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  if (strcmp(mode, "segv") == 0) {
    volatile int *bad = (volatile int *)tk_bad_address;
    *bad = 1;
  } else if (strcmp(mode, "abort") == 0) {
    abort();
  } else if (strcmp(mode, "overflow") == 0) {
    return tk_recurse(0);
  } else if (strcmp(mode, "guard") == 0) {
    pthread_attr_t a;
    size_t guard = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
      pthread_attr_getguardsize(&a, &guard);
      pthread_attr_destroy(&a);
    }
    return ch_err_set(err, CH_E_INVALID, "stack guard %zu bytes", guard);
  } else if (strcmp(mode, "scribble") == 0) {
    tk_scribble();
    return CH_OK;
  } else {
    for (;;) {
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL);
    }
  }
  return ch_err_set(err, CH_E_PROTOCOL, "survived mode %s", mode);
}

static const struct ch_plugin tk_plugin = {
    CH_PLUGIN_INIT,
    .name = "t_crash",
    .version = "0.0.1",
    .description = "isolation test plugin: crashes or hangs in list()",
    .options = tk_options,
    .types = tk_types,
    .open = tk_open,
    .close = tk_close,
    .list = tk_list,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &tk_plugin : NULL;
}
