dnl SPDX-License-Identifier: MIT
dnl CH_CHECK_PTHREAD: find the flag that gives POSIX threads (gcc/clang: -pthread)
dnl and set PTHREAD_CFLAGS / PTHREAD_LIBS.
AC_DEFUN([CH_CHECK_PTHREAD], [
  AC_MSG_CHECKING([for the POSIX threads flag])
  ch_save_CFLAGS=$CFLAGS
  ch_save_LIBS=$LIBS
  CFLAGS="$CFLAGS -pthread"
  LIBS="$LIBS -pthread"
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>
static void *f(void *a) { return a; }]],
                   [[pthread_t t; pthread_create(&t, 0, f, 0); pthread_join(t, 0);]])],
    [PTHREAD_CFLAGS=-pthread; PTHREAD_LIBS=-pthread; AC_MSG_RESULT([-pthread])],
    [AC_MSG_RESULT([none])
     AC_MSG_ERROR([POSIX threads are required])])
  CFLAGS=$ch_save_CFLAGS
  LIBS=$ch_save_LIBS
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])
