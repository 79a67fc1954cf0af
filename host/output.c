/* SPDX-License-Identifier: MIT */
/* Atomic output files: temp file in the target's directory, fsync, rename.
   Targets that are not regular files (a device, a FIFO) are written
   straight into. */
#include "autoconfig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
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

/* Run `write_fn` on `f` and check every step a full disk or a closed pipe
   can fail at; `name` is the target in messages. Closes `f`. */
static int write_checked(FILE *f, const char *name,
                         int (*write_fn)(FILE *f, void *arg,
                                         struct ch_err *err),
                         void *arg, struct ch_err *err) {
  int rc;

  if (err) {
    err->code = 0;
    err->msg[0] = '\0';
  }
  rc = write_fn(f, arg, err);
  if (rc) {
    if (err && !err->msg[0])
      ch_err_set(err, rc, "writing '%s' failed", name);
    fclose(f);
    return rc;
  }
  if (fflush(f) || ferror(f)) {
    rc = ch_err_set(err, CH_E_IO, "cannot write '%s': %s", name,
                    errno ? strerror(errno) : "write error");
    fclose(f);
    return rc;
  }
  if (fclose(f))
    return ch_err_set(err, CH_E_IO, "cannot close '%s': %s", name,
                      strerror(errno));
  return CH_OK;
}

int output_write_stream(FILE *f, const char *name,
                        int (*write_fn)(FILE *f, void *arg, struct ch_err *err),
                        void *arg, struct ch_err *err) {
  errno = 0;
  return write_checked(f, name, write_fn, arg, err);
}

/* The descriptor `path` names (/dev/stdout, /dev/fd/N, /proc/self/fd/N),
   or -1 for a real file name. Such a path is written through the process's
   own descriptor: there is no directory to put a temporary file in, a
   rename would replace the link, and reopening would not share the
   descriptor's offset. */
static int fd_alias(const char *path) {
  char target[PATH_MAX], *dir = util_dirname(path), *real = NULL;
  const char *num = NULL;
  struct stat st;
  ssize_t n;
  int fd = -1;

  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
    real = dir ? realpath(dir, NULL) : NULL;
    n = readlink(path, target, sizeof(target) - 1);
    if (real && (!strcmp(real, "/proc/self/fd") || !strcmp(real, "/dev/fd") ||
                 !strncmp(real, "/proc/", 6)))
      num = strrchr(path, '/') + 1;
    else if (n > 0 &&
             (target[n] = '\0', !strncmp(target, "/proc/self/fd/", 14)))
      num = target + 14;
    else if (n > 0 && !strncmp(target, "/dev/fd/", 8))
      num = target + 8;
  }
  if (num && *num && strspn(num, "0123456789") == strlen(num) &&
      strlen(num) < 9)
    fd = atoi(num);
  free(real);
  free(dir);
  return fd;
}

/*
 * A target that exists and is not a regular file: a character device or a
 * FIFO (also behind a symlink, like /dev/stdout) is written straight into,
 * since renaming over it would replace the device node with a file (as
 * root, a real /dev/full). Anything else is refused. Returns 1 when `path`
 * is a regular file or does not exist (the atomic path applies).
 */
static int write_special(const char *path,
                         int (*write_fn)(FILE *f, void *arg,
                                         struct ch_err *err),
                         void *arg, struct ch_err *err, int *result) {
  struct stat st;
  FILE *f;
  int fd = fd_alias(path);

  if (fd >= 0) {
    fd = dup(fd);
    if (fd < 0) {
      *result = ch_err_set(err, CH_E_IO, "cannot write to '%s': %s", path,
                           strerror(errno));
      return 0;
    }
    goto write;
  }
  if (stat(path, &st) || S_ISREG(st.st_mode))
    return 1;
  if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    *result =
        ch_err_set(err, CH_E_INVALID,
                   "output path '%s' is a %s, not a file: give a file "
                   "name (or '-' for stdout)",
                   path, S_ISDIR(st.st_mode) ? "directory" : "special file");
    return 0;
  }
  fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
write:
  f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    *result =
        ch_err_set(err, CH_E_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return 0;
  }
  errno = 0;
  *result = write_checked(f, path, write_fn, arg, err);
  return 0;
}

/* ".<base>." + six mkstemp characters: the fallback's temp names. */
static int our_temp_name(const char *name, const char *base) {
  size_t bl = strlen(base), nl = strlen(name);

  return nl == bl + 8 && name[0] == '.' && !strncmp(name + 1, base, bl) &&
         name[bl + 1] == '.';
}

/*
 * Remove temp files a killed run left behind (only with the mkstemp
 * fallback; O_TMPFILE leaves none). A writer holds an exclusive flock on
 * its temp file for its whole life, so a file whose lock we can take has
 * no live writer.
 */
static void remove_stale_temps(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  struct dirent *e;

  if (!d)
    return;
  while ((e = readdir(d))) {
    int fd;
    if (!our_temp_name(e->d_name, base))
      continue;
    fd = openat(dirfd(d), e->d_name,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
      continue;
    if (!flock(fd, LOCK_EX | LOCK_NB)) {
      struct stat st;
      if (!fstat(fd, &st) && S_ISREG(st.st_mode))
        unlinkat(dirfd(d), e->d_name, 0);
    }
    close(fd);
  }
  closedir(d);
}

/* An unnamed file in `dir` (O_TMPFILE, Linux >= 3.11 on most local file
   systems), or -1 with errno; ENOTSUP when the fallback should be used.
   linkat() gives it a name through /proc/self/fd, so /proc must be there. */
static int open_unnamed(const char *dir) {
#ifdef O_TMPFILE
  int fd;

  if (access("/proc/self/fd", X_OK)) {
    errno = ENOTSUP;
    return -1;
  }
  fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
    errno = ENOTSUP;
  return fd;
#else
  (void)dir;
  errno = ENOTSUP;
  return -1;
#endif
}

/* Give the unnamed file `fd` the name `tmpl` (ending in XXXXXX, filled
   in like mkstemp does). */
static int link_unnamed(int fd, char *tmpl) {
  static const char chars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  char proc[64], *x = tmpl + strlen(tmpl) - 6;
  struct timespec ts;
  unsigned long long v;

  clock_gettime(CLOCK_REALTIME, &ts);
  v = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 20);
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
  for (int tries = 0; tries < 100; tries++) {
    for (int i = 0; i < 6; i++) {
      v = v * 6364136223846793005ULL + 1442695040888963407ULL;
      x[i] = chars[(v >> 33) % (sizeof(chars) - 1)];
    }
    if (!linkat(AT_FDCWD, proc, AT_FDCWD, tmpl, AT_SYMLINK_FOLLOW))
      return 0;
    if (errno != EEXIST)
      return -1;
  }
  return -1;
}

/* The absolute target of `path` when it is a symlink to a regular file,
   else NULL. */
static char *resolve_link(const char *path) {
  struct stat st;

  if (lstat(path, &st) || !S_ISLNK(st.st_mode) || stat(path, &st) ||
      !S_ISREG(st.st_mode))
    return NULL;
  return realpath(path, NULL);
}

int output_write_atomic(const char *path,
                        int (*write_fn)(FILE *f, void *arg, struct ch_err *err),
                        void *arg, struct ch_err *err) {
  const char *slash, *base;
  char *dir = NULL, *tmp = NULL, *real = NULL;
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
  if (!write_special(path, write_fn, arg, err, &result))
    goto out;
  /* A symlink to a file: replace the file it points to and keep the link
     (renaming over the link would turn it into a copy). */
  real = resolve_link(path);
  if (real) {
    path = real;
    base = strrchr(path, '/') + 1;
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
  remove_stale_temps(dir, base);
  fd = open_unnamed(dir);
  if (fd < 0 && errno == ENOTSUP) {
    fd = mkstemp(tmp);
    tmp_made = fd >= 0;
  }
  if (fd < 0) {
    ch_err_set(err, CH_E_IO, "cannot create a temporary file in '%s': %s", dir,
               strerror(errno));
    goto out;
  }
  /* Held while the fd is open, also once the file has a name: tells
     remove_stale_temps a writer is alive. */
  flock(fd, LOCK_EX | LOCK_NB);
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
  /* The fd stays open past fclose for fsync and linkat (and the lock). */
  fd = dup(fd);
  if (fd < 0) {
    ch_err_set(err, CH_E_IO, "cannot write '%s': %s", path, strerror(errno));
    goto out;
  }
  /* Buffered data may only meet a full disk at the flush, or at fsync on
     NFS: every step is checked, or a truncated file would replace a good
     one. */
  errno = 0;
  rc = write_checked(f, tmp_made ? tmp : path, write_fn, arg, err);
  f = NULL;
  if (rc) {
    result = rc;
    goto out;
  }
  if (fsync(fd)) {
    ch_err_set(err, CH_E_IO, "cannot sync '%s': %s", path, strerror(errno));
    goto out;
  }
  if (!tmp_made) {
    /* Name the unnamed file only now that it is complete; rename(2) then
       replaces the target atomically, as in the fallback. */
    if (link_unnamed(fd, tmp)) {
      ch_err_set(err, CH_E_IO, "cannot name the temporary file in '%s': %s",
                 dir, strerror(errno));
      goto out;
    }
    tmp_made = 1;
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
  free(real);
  return result;
}
