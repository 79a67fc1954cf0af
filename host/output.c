/* SPDX-License-Identifier: MIT */
/* Atomic output files: temp file in the target's directory, fsync, rename. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "graph.h"
#include "util.h"

/*
 * The process umask. umask(2) can only be read by setting it, which races
 * with other threads creating files, so prefer /proc (Linux >= 4.7) and only
 * fall back to the set-and-restore dance.
 */
static mode_t current_umask(void) {
  FILE *f = fopen("/proc/self/status", "re");
  char line[256];
  mode_t mask;

  if (f) {
    while (fgets(line, sizeof(line), f)) {
      unsigned int m;
      if (sscanf(line, "Umask: %o", &m) == 1) {
        fclose(f);
        return (mode_t)m & 0777;
      }
    }
    fclose(f);
  }
  mask = umask(022);
  umask(mask);
  return mask;
}

int output_write_atomic(const char *path,
                        int (*write_fn)(FILE *f, void *arg, struct ch_err *err),
                        void *arg, struct ch_err *err) {
  const char *slash, *base;
  char *dir = NULL, *tmp = NULL;
  int fd = -1, dfd = -1, tmp_made = 0, rc;
  int result = CH_E_IO;
  FILE *f = NULL;
  size_t n;

  if (!path || !*path) {
    result = ch_err_set(err, CH_E_INVALID, "empty output path");
    goto out;
  }
  slash = strrchr(path, '/');
  base = slash ? slash + 1 : path;
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
    result = ch_err_set(err, CH_E_INVALID,
                        "output path '%s' names a directory, not a file", path);
    goto out;
  }
  dir = util_dirname(path);
  n = dir ? strlen(dir) : 0;
  n += strlen(base) + 10;
  tmp = malloc(n);
  if (!dir || !tmp) {
    result = ch_err_set(err, CH_E_NOMEM, "out of memory");
    goto out;
  }
  /* Same directory as the target: rename(2) is only atomic within one
     file system. The leading dot keeps the temp file out of globs. */
  snprintf(tmp, n, "%s/.%s.XXXXXX", dir, base);
  fd = mkstemp(tmp);
  if (fd < 0) {
    ch_err_set(err, CH_E_IO, "cannot create a temporary file in '%s': %s", dir,
               strerror(errno));
    goto out;
  }
  tmp_made = 1;
  /* mkstemp creates 0600; an output file is meant to be read by others
     the way any file this user creates would be. */
  if (fchmod(fd, 0644 & ~current_umask())) {
    ch_err_set(err, CH_E_IO, "cannot set the mode of '%s': %s", tmp,
               strerror(errno));
    goto out;
  }
  f = fdopen(fd, "w");
  if (!f) {
    ch_err_set(err, CH_E_IO, "cannot open '%s': %s", tmp, strerror(errno));
    goto out;
  }
  fd = -1; /* owned by f now */

  if (err) {
    err->code = 0;
    err->msg[0] = '\0';
  }
  rc = write_fn(f, arg, err);
  if (rc) {
    result = rc;
    if (err && !err->msg[0])
      ch_err_set(err, rc, "writing '%s' failed", path);
    goto out;
  }
  /* Buffered data may only meet a full disk here, or at fsync/close on
     NFS: every step is checked, or a truncated file would replace a good
     one. */
  if (fflush(f) || ferror(f)) {
    ch_err_set(err, CH_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
    goto out;
  }
  if (fsync(fileno(f))) {
    ch_err_set(err, CH_E_IO, "cannot sync '%s': %s", tmp, strerror(errno));
    goto out;
  }
  rc = fclose(f);
  f = NULL;
  if (rc) {
    ch_err_set(err, CH_E_IO, "cannot close '%s': %s", tmp, strerror(errno));
    goto out;
  }
  if (rename(tmp, path)) {
    ch_err_set(err, CH_E_IO, "cannot rename '%s' to '%s': %s", tmp, path,
               strerror(errno));
    goto out;
  }
  tmp_made = 0;

  /* Make the rename itself durable. Some file systems cannot sync a
     directory (EINVAL): nothing more can be done there. */
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || (fsync(dfd) && errno != EINVAL && errno != ENOTSUP)) {
    ch_err_set(err, CH_E_IO,
               "wrote '%s' but cannot sync its directory '%s': %s", path, dir,
               strerror(errno));
    goto out;
  }
  result = CH_OK;
out:
  if (f)
    fclose(f);
  if (fd >= 0)
    close(fd);
  if (dfd >= 0)
    close(dfd);
  if (tmp_made)
    unlink(tmp);
  free(tmp);
  free(dir);
  return result;
}
