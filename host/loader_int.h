/* SPDX-License-Identifier: MIT */
/* Loader internals: the plugin directory and files opened and checked by
   descriptor, and dlopen of exactly the file that was checked. */
#ifndef CONNHOST_LOADER_INT_H
#define CONNHOST_LOADER_INT_H

#include <sys/stat.h>

#include <connhost/plugin.h>

/*
 * Open plugin directory `dir` (O_RDONLY|O_DIRECTORY) into `*dirfd`. With
 * `strict`, the path is resolved one component at a time from "/" (a
 * relative `dir` from the working directory), and every directory a name
 * is looked up in must be owned by root or the effective user and not
 * writable by group or others unless it has the sticky bit; every symlink
 * followed must be owned by root or the effective user; the directory
 * itself must be owned by root or the effective user and not writable by
 * group or others, sticky or not. Errors name the path and the fix.
 */
int trust_open_dir(const char *dir, int strict, int *dirfd, struct ch_err *err);

/*
 * Open `name` (a basename) in `dirfd` without following a symlink into
 * `*fd`, with its fstat in `*st`: a regular file, and with `strict` owned
 * by root or the effective user and not writable by group or others.
 * `path` (the file's real path) and `plugin` (its plugin name) are for
 * messages.
 */
int trust_open_file(int dirfd, const char *name, const char *path,
                    const char *plugin, int strict, int *fd, struct stat *st,
                    struct ch_err *err);

/*
 * dlopen(RTLD_NOW|RTLD_LOCAL) the file open on `fd` (fstat `st`) through
 * /proc/self/fd, so the object loaded is the one checked; `fd` stays the
 * caller's. Fails closed when /proc/self/fd does not show that file (no
 * /proc). dlerror text names `path`, not the descriptor.
 */
void *trust_dlopen(int fd, const struct stat *st, const char *path,
                   struct ch_err *err);

#endif
