/* SPDX-License-Identifier: MIT */
/* Small helpers shared by host modules. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

char *util_dirname(const char *path) {
  const char *slash = strrchr(path, '/');

  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}
