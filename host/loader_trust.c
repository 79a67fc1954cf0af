/* SPDX-License-Identifier: MIT */
/* The plugin directory and files opened and checked by descriptor (sshd
   StrictModes), and dlopen of the very file that was checked. */
#include "autoconfig.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader_int.h"

#define INSECURE_HINT " (or set allow_insecure_plugin_dir: true on a test rig)"

/* Symlinks followed while resolving the directory, as the kernel allows. */
#define MAX_LINKS 40

/* The one who may own what connhost trusts: root or connhost itself. */
static int check_owner(const char *path, const struct stat *st,
                       const char *what, struct ch_err *err) {
  uid_t me = geteuid();

  if (st->st_uid == 0 || st->st_uid == me)
    return CH_OK;
  return ch_err_set(
      err, CH_E_CONFIG,
      "%s '%s' is owned by uid %u, neither root nor the user "
      "running connhost (uid %u): run 'chown %u %s'" INSECURE_HINT,
      what, path, (unsigned)st->st_uid, (unsigned)me, (unsigned)me, path);
}

/*
 * Whoever can write a directory on the way to a plugin, the plugin
 * directory or the .so runs code as connhost (often root). `sticky_ok`:
 * a sticky directory (like /tmp) lets others add entries but not rename
 * ours, which is enough above the plugin directory.
 */
static int check_trusted(const char *path, const struct stat *st,
                         const char *what, int sticky_ok, struct ch_err *err) {
  mode_t w = st->st_mode & (S_IWGRP | S_IWOTH);

  if (sticky_ok && (st->st_mode & S_ISVTX))
    w = 0;
  if (w & S_IWOTH)
    return ch_err_set(
        err, CH_E_CONFIG,
        "%s '%s' is writable by everyone, so anyone could make "
        "connhost run their code: run 'chmod %s %s'" INSECURE_HINT,
        what, path, (w & S_IWGRP) ? "go-w" : "o-w", path);
  if (w)
    return ch_err_set(err, CH_E_CONFIG,
                      "%s '%s' is writable by group %u, so its members could "
                      "make connhost run their code: run 'chmod g-w "
                      "%s'" INSECURE_HINT,
                      what, path, (unsigned)st->st_gid, path);
  return check_owner(path, st, what, err);
}

/* `at` is an absolute path without a trailing slash (but "/"). */
static void at_pop(char *at) {
  char *slash = strrchr(at, '/');
  if (slash)
    slash[slash == at ? 1 : 0] = '\0';
}

static int at_push(char *at, size_t size, const char *name) {
  size_t len = strlen(at);
  int n = snprintf(at + len, size - len, "%s%s", len > 1 ? "/" : "", name);
  return n >= 0 && (size_t)n < size - len;
}

/* One directory walk: `cur` is an O_PATH descriptor of resolved path `at`,
   `rest` what is still to resolve. */
struct walk {
  int cur;
  int links;
  char at[PATH_MAX];
  char rest[2 * PATH_MAX];
};

static int walk_error(const char *dir, const char *at, int e,
                      struct ch_err *err) {
  return ch_err_set(err, CH_E_CONFIG, "plugin directory '%s': %s: %s", dir, at,
                    strerror(e));
}

/* Replace the symlink `link` just looked up: its target, then what was left
   after it (`tail`), is what remains to resolve. */
static int walk_follow(struct walk *w, int link, const struct stat *st,
                       const char *dir, const char *tail, struct ch_err *err) {
  char target[PATH_MAX], joined[sizeof(w->rest)];
  ssize_t n;
  int len;

  if (check_owner(w->at, st, "symbolic link", err) != CH_OK)
    return err->code;
  if (++w->links > MAX_LINKS)
    return walk_error(dir, w->at, ELOOP, err);
  n = readlinkat(link, "", target, sizeof(target) - 1);
  if (n < 0)
    return walk_error(dir, w->at, errno, err);
  target[n] = '\0';
  len = snprintf(joined, sizeof(joined), "%s/%s", target, tail);
  if (len < 0 || (size_t)len >= sizeof(joined))
    return walk_error(dir, w->at, ENAMETOOLONG, err);
  memcpy(w->rest, joined, (size_t)len + 1);
  at_pop(w->at);
  if (target[0] == '/') {
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
      return walk_error(dir, "/", errno, err);
    close(w->cur);
    w->cur = root;
    snprintf(w->at, sizeof(w->at), "/");
  }
  return CH_OK;
}

/* Resolve one component `name` in `w->cur`. */
static int walk_step(struct walk *w, const char *name, const char *tail,
                     const char *dir, struct ch_err *err) {
  struct stat st;
  int next;

  if (strcmp(name, "..") == 0) {
    next = openat(w->cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (next < 0)
      return walk_error(dir, w->at, errno, err);
    close(w->cur);
    w->cur = next;
    at_pop(w->at);
    return CH_OK;
  }
  /* The directory we look `name` up in decides what `name` is. */
  if (fstat(w->cur, &st) != 0)
    return walk_error(dir, w->at, errno, err);
  if (check_trusted(w->at, &st, "parent directory", 1, err) != CH_OK)
    return err->code;
  next = openat(w->cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (!at_push(w->at, sizeof(w->at), name)) {
    if (next >= 0)
      close(next);
    return walk_error(dir, w->at, ENAMETOOLONG, err);
  }
  if (next < 0 || fstat(next, &st) != 0) {
    int e = errno;
    if (next >= 0)
      close(next);
    return walk_error(dir, w->at, e, err);
  }
  if (S_ISLNK(st.st_mode)) {
    int rc = walk_follow(w, next, &st, dir, tail, err);
    close(next);
    return rc;
  }
  close(w->cur);
  w->cur = next;
  return S_ISDIR(st.st_mode) ? CH_OK : walk_error(dir, w->at, ENOTDIR, err);
}

/* Resolve `dir` into `w->cur`, checking as trust_open_dir says. */
static int walk_dir(struct walk *w, const char *dir, struct ch_err *err) {
  char name[NAME_MAX + 1];
  const char *p;
  int len = 0, links;

  if (dir[0] != '/') {
    if (!getcwd(w->at, sizeof(w->at)))
      return walk_error(dir, ".", errno, err);
    len = snprintf(w->rest, sizeof(w->rest), "%s/%s", w->at, dir);
  } else {
    len = snprintf(w->rest, sizeof(w->rest), "%s", dir);
  }
  if (len < 0 || (size_t)len >= sizeof(w->rest))
    return walk_error(dir, dir, ENAMETOOLONG, err);
  snprintf(w->at, sizeof(w->at), "/");
  w->cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (w->cur < 0)
    return walk_error(dir, "/", errno, err);
  for (p = w->rest;;) {
    size_t n;
    int rc;

    while (*p == '/')
      p++;
    if (!*p)
      return CH_OK;
    n = strcspn(p, "/");
    if (n > NAME_MAX)
      return walk_error(dir, w->at, ENAMETOOLONG, err);
    memcpy(name, p, n);
    name[n] = '\0';
    p += n;
    if (strcmp(name, ".") == 0)
      continue;
    links = w->links;
    rc = walk_step(w, name, p, dir, err);
    if (rc != CH_OK)
      return rc;
    if (w->links != links)
      p = w->rest; /* a symlink rewrote rest: resolve its target */
  }
}

int trust_open_dir(const char *dir, int strict, int *dirfd,
                   struct ch_err *err) {
  struct walk w = {.cur = -1};
  struct stat st;
  int fd = -1, rc;

  *dirfd = -1;
  if (!strict) {
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      return walk_error(dir, dir, errno, err);
    *dirfd = fd;
    return CH_OK;
  }
  rc = walk_dir(&w, dir, err);
  if (rc == CH_OK) {
    fd = openat(w.cur, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0)
      rc = walk_error(dir, w.at, errno, err);
  }
  /* Named as configured: that is the path the user knows. */
  if (rc == CH_OK)
    rc = check_trusted(dir, &st, "plugin directory", 0, err);
  if (w.cur >= 0)
    close(w.cur);
  if (rc != CH_OK) {
    if (fd >= 0)
      close(fd);
    return rc;
  }
  *dirfd = fd;
  return CH_OK;
}

int trust_open_file(int dirfd, const char *name, const char *path,
                    const char *plugin, int strict, int *fd, struct stat *st,
                    struct ch_err *err) {
  /* O_NONBLOCK: a FIFO named like a plugin must not hang the open. */
  int f = openat(dirfd, name,
                 O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  int rc = CH_OK;

  *fd = -1;
  if (f < 0 && errno == ELOOP)
    return ch_err_set(err, CH_E_CONFIG,
                      "plugin '%s': %s is a symbolic link, not a regular file",
                      plugin, path);
  if (f < 0 || fstat(f, st) != 0) {
    rc = ch_err_set(err, CH_E_CONFIG, "plugin '%s': %s: %s", plugin, path,
                    strerror(errno));
  } else if (!S_ISREG(st->st_mode)) {
    rc = ch_err_set(err, CH_E_CONFIG, "plugin '%s': %s is not a regular file",
                    plugin, path);
  } else if (strict) {
    rc = check_trusted(path, st, "plugin file", 0, err);
  }
  if (rc != CH_OK) {
    if (f >= 0)
      close(f);
    return rc;
  }
  *fd = f;
  return CH_OK;
}

static int name_in_use(struct dl_phdr_info *info, size_t size, void *name) {
  (void)size;
  return info->dlpi_name && strcmp(info->dlpi_name, name) == 0;
}

/* Copy dlerror text `msg` into `out`, each "/proc/self/fd/N" (`fdpath`,
   not followed by a digit) replaced by `path`. */
static void name_the_file(const char *msg, const char *fdpath, const char *path,
                          char *out, size_t size) {
  size_t flen = strlen(fdpath), len = 0;

  out[0] = '\0';
  while (*msg && len + 1 < size) {
    const char *hit = strstr(msg, fdpath);
    size_t n;

    while (hit && hit[flen] >= '0' && hit[flen] <= '9')
      hit = strstr(hit + 1, fdpath);
    n = hit ? (size_t)(hit - msg) : strlen(msg);
    len += (size_t)snprintf(out + len, size - len, "%.*s%s", (int)n, msg,
                            hit ? path : "");
    if (len >= size)
      break;
    msg += n + (hit ? flen : 0);
  }
}

void *trust_dlopen(int fd, const struct stat *st, const char *path,
                   struct ch_err *err) {
  char fdpath[64], why[CH_ERR_MSG_SIZE];
  struct link_map *lm = NULL;
  struct stat pst;
  void *dl = NULL;
  int use = fd;

  /* glibc takes a name it has loaded before for that object, without
     opening anything: a /proc/self/fd/N left by another plugin (this
     descriptor number, closed since) would give back that plugin. */
  for (int tries = 0;; tries++) {
    snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", use);
    if (!dl_iterate_phdr(name_in_use, fdpath))
      break;
    int next = -1, e = EMFILE;
    if (tries < 64) {
      next = fcntl(fd, F_DUPFD_CLOEXEC, use + 1);
      e = errno;
    }
    if (use != fd)
      close(use);
    if (next < 0) {
      ch_err_set(err, CH_E_CONFIG, "cannot load %s: no free descriptor: %s",
                 path, strerror(e));
      return NULL;
    }
    use = next;
  }
  /* The path dlopen opens must be this very file, or there is no /proc. */
  if (stat(fdpath, &pst) != 0 || pst.st_dev != st->st_dev ||
      pst.st_ino != st->st_ino) {
    ch_err_set(err, CH_E_CONFIG,
               "cannot load %s: %s does not show the checked file (is /proc "
               "mounted? connhost loads plugins through it)",
               path, fdpath);
    goto out;
  }
  dlerror();
  dl = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char *msg = dlerror();
    name_the_file(msg ? msg : "unknown error", fdpath, path, why, sizeof(why));
    ch_err_set(err, CH_E_CONFIG,
               "cannot load %s: %s (a missing library is the usual cause: run "
               "'ldd %s')",
               path, why, path);
    goto out;
  }
  /* An object loaded before from the same inode under another name is
     handed back as it is: not this load, so not this plugin. */
  if (dlinfo(dl, RTLD_DI_LINKMAP, &lm) != 0 || !lm || !lm->l_name ||
      strcmp(lm->l_name, fdpath) != 0) {
    ch_err_set(err, CH_E_CONFIG,
               "cannot load %s: it is the same file as an object already "
               "loaded",
               path);
    dlclose(dl);
    dl = NULL;
  }
out:
  if (use != fd)
    close(use);
  return dl;
}
