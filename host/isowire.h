/* SPDX-License-Identifier: MIT */
/* The record stream from an isolated plugin's child process to the host:
   length-prefixed, versioned, bounded frames. */
#ifndef CONNHOST_ISOWIRE_H
#define CONNHOST_ISOWIRE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <connhost/plugin.h>

/*
 * A stream is a HELLO frame, any number of RESOURCE and GRANT frames, and
 * one STATUS frame, then end of file. A frame is a little-endian u32
 * length (of what follows), a kind byte, and the payload. Strings are a
 * u32 length, the bytes and a NUL (length ISOWIRE_NULL for a NULL
 * pointer); string lists are a u32 count (ISOWIRE_NULL for NULL) and the
 * strings. The reader trusts nothing: every length is checked against
 * the frame and ISOWIRE_MAX_FRAME before anything is read or allocated.
 */
#define ISOWIRE_VERSION 2
#define ISOWIRE_MAX_FRAME (8u << 20)
#define ISOWIRE_NULL 0xffffffffu

enum isowire_kind {
  ISOWIRE_HELLO = 'H',
  ISOWIRE_RESOURCE = 'R',
  ISOWIRE_GRANT = 'G',
  ISOWIRE_STATUS = 'S'
};

/* How the child's run ended (the last frame). */
struct isowire_status {
  int failed;
  int stopped;
  uint64_t pages, warnings, requests, retries, wait_us;
  uint64_t throttled, bytes_in, bytes_out, errors;
  char error[CH_ERR_MSG_SIZE + 128];
};

/* The child side: one buffer the engine's workers share. */
struct isowire_writer {
  pthread_mutex_t lock;
  int fd;
  unsigned char *buf;
  size_t len, cap;
  int broken; /* a write failed: the host is gone */
};

int isowire_writer_init(struct isowire_writer *w, int fd);
/* Each returns CH_OK, or CH_E_IO / CH_E_NOMEM with `err` set. */
int isowire_put_hello(struct isowire_writer *w, struct ch_err *err);
int isowire_put_resource(struct isowire_writer *w, const struct ch_resource *r,
                         struct ch_err *err);
int isowire_put_grant(struct isowire_writer *w, const struct ch_grant *g,
                      struct ch_err *err);
int isowire_put_status(struct isowire_writer *w,
                       const struct isowire_status *st, struct ch_err *err);
int isowire_flush(struct isowire_writer *w, struct ch_err *err);
void isowire_writer_release(struct isowire_writer *w);

/* One decoded frame; its strings point into the reader's buffer and live
   until the next call. */
struct isowire_frame {
  enum isowire_kind kind;
  struct ch_resource res;
  struct ch_grant grant;
  struct isowire_status status;
};

/* The host side. */
struct isowire_reader {
  int fd;
  unsigned char *buf;
  size_t len, off, cap;
  const char **ptrs; /* the lists of the current frame */
  size_t nptrs;
  int hello, ended; /* HELLO seen; STATUS seen */
};

void isowire_reader_init(struct isowire_reader *r, int fd);
/*
 * The next frame (HELLO is checked here, not returned): 1 with `f` set,
 * 0 at end of file on a frame boundary, -1 on a malformed, oversized or
 * truncated stream or a read error (`err` says which).
 */
int isowire_next(struct isowire_reader *r, struct isowire_frame *f,
                 struct ch_err *err);
void isowire_reader_release(struct isowire_reader *r);

#endif
