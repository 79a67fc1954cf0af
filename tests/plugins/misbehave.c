/* SPDX-License-Identifier: MIT */
/* The misbehaviours the hostile test plugins share (see misbehave.h). */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <sys/stat.h>
#include <unistd.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "misbehave.h"

static const struct ch_entitlement_def tm_no_ents[] = {{NULL, NULL, NULL}};

const struct ch_resource_type tm_types[] = {{.id = "user",
                                             .display_name = "User",
                                             .traits = CH_TRAIT_USER,
                                             .entitlements = tm_no_ents,
                                             .caps = CH_CAP_SYNC,
                                             .flags = CH_TYPE_NO_GRANTS_CALL},
                                            {.id = NULL}};

int tm_open(const struct ch_cfg *cfg, const struct tm_mode *modes,
            const char *def, void **instp, struct ch_err *err) {
  const char *mode = cfg->nvalues && cfg->values[0].set && cfg->values[0].str
                         ? cfg->values[0].str
                         : def;

  for (size_t i = 0; mode && modes[i].name; i++) {
    if (strcmp(modes[i].name, mode) == 0) {
      *instp = (void *)&modes[i];
      return CH_OK;
    }
  }
  return ch_err_set(err, CH_E_CONFIG, "unknown mode '%s'", mode ? mode : "");
}

/* A limit no stack reaches (read at run time, so the compiler keeps the
   recursion); the volatile frame keeps each call's stack. */
static volatile long tm_depth_limit = 1L << 40;

static int tm_recurse(long depth) {
  volatile char frame[4096];

  frame[0] = (char)depth;
  frame[sizeof(frame) - 1] = (char)depth;
  if (depth >= tm_depth_limit)
    return frame[0];
  return tm_recurse(depth + 1) + frame[0] + frame[sizeof(frame) - 1];
}

/* An address nothing is mapped at (read at run time, like the limit). */
static volatile uintptr_t tm_bad_address = 16;
static volatile int tm_sink;

/* A frame header claiming 2 GiB, then junk. */
static void tm_scribble(void) {
  static const char junk[] = "\xff\xff\xff\x7fjunk";

  for (int fd = 3; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
        write(fd, junk, sizeof(junk) - 1) < 0)
      continue;
  }
}

void tm_misbehave(enum tm_how how) {
  switch (how) {
  case TM_SEGV:
    *(volatile int *)tm_bad_address = 1;
    break;
  case TM_ABORT:
    abort();
  case TM_OVERFLOW:
    tm_sink = tm_recurse(0);
    break;
  case TM_SCRIBBLE:
    tm_scribble();
    return;
  case TM_EXIT:
    exit(0);
  case TM_HANG:
  case TM_GUARD: /* the caller's own; here it hangs */
    break;
  }
  for (;;) {
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
  }
}
