/* SPDX-License-Identifier: MIT */
/* Encoding and checked decoding of the isolation record stream. */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isowire.h"

static const unsigned char magic[5] = {'C', 'H', 'I', 'S', 'O'};

#define WRITER_CAP (64u * 1024)

/* ---- writer ----------------------------------------------------------- */

static size_t str_size(const char *s) { return 4 + (s ? strlen(s) + 1 : 0); }

static size_t list_size(const char *const *l) {
  size_t n = 4;
  for (; l && *l; l++)
    n += str_size(*l);
  return n;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
  return p + 4;
}

static unsigned char *put_u64(unsigned char *p, uint64_t v) {
  p = put_u32(p, (uint32_t)v);
  return put_u32(p, (uint32_t)(v >> 32));
}

static unsigned char *put_str(unsigned char *p, const char *s) {
  size_t n;

  if (!s)
    return put_u32(p, ISOWIRE_NULL);
  n = strlen(s);
  p = put_u32(p, (uint32_t)n);
  memcpy(p, s, n + 1);
  return p + n + 1;
}

static unsigned char *put_list(unsigned char *p, const char *const *l) {
  uint32_t n = 0;

  if (!l)
    return put_u32(p, ISOWIRE_NULL);
  while (l[n])
    n++;
  p = put_u32(p, n);
  for (; *l; l++)
    p = put_str(p, *l);
  return p;
}

int isowire_writer_init(struct isowire_writer *w, int fd) {
  memset(w, 0, sizeof(*w));
  w->fd = fd;
  w->cap = WRITER_CAP;
  w->buf = malloc(w->cap);
  if (!w->buf)
    return CH_E_NOMEM;
  pthread_mutex_init(&w->lock, NULL);
  return CH_OK;
}

void isowire_writer_release(struct isowire_writer *w) {
  if (!w->buf)
    return;
  pthread_mutex_destroy(&w->lock);
  free(w->buf);
  w->buf = NULL;
}

/* Write out the buffer; the caller holds the lock. */
static int drain_locked(struct isowire_writer *w, struct ch_err *err) {
  size_t done = 0;

  while (!w->broken && done < w->len) {
    ssize_t n = write(w->fd, w->buf + done, w->len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      w->broken = 1;
    else
      done += (size_t)n;
  }
  w->len = 0;
  if (w->broken)
    return ch_err_set(err, CH_E_IO, "the host stopped reading the records");
  return CH_OK;
}

/* Room for a frame of `size` payload bytes (kind included) at the end of
   the buffer, header written; NULL with `err` set. The lock is held. */
static unsigned char *frame_begin(struct isowire_writer *w, size_t size,
                                  enum isowire_kind kind, struct ch_err *err) {
  unsigned char *p;

  if (size > ISOWIRE_MAX_FRAME) {
    ch_err_set(err, CH_E_LIMIT,
               "a record of %zu bytes is over the isolation stream's %u", size,
               ISOWIRE_MAX_FRAME);
    return NULL;
  }
  if (w->len + 4 + size > w->cap && drain_locked(w, err) != CH_OK)
    return NULL;
  if (4 + size > w->cap) {
    unsigned char *nb = realloc(w->buf, 4 + size);
    if (!nb) {
      ch_err_set(err, CH_E_NOMEM, "out of memory");
      return NULL;
    }
    w->buf = nb;
    w->cap = 4 + size;
  }
  p = put_u32(w->buf + w->len, (uint32_t)size);
  *p++ = (unsigned char)kind;
  w->len += 4 + size;
  return p;
}

int isowire_put_hello(struct isowire_writer *w, struct ch_err *err) {
  unsigned char *p;
  int rc = CH_OK;

  pthread_mutex_lock(&w->lock);
  p = frame_begin(w, 1 + sizeof(magic) + 1, ISOWIRE_HELLO, err);
  if (p) {
    memcpy(p, magic, sizeof(magic));
    p[sizeof(magic)] = ISOWIRE_VERSION;
  } else {
    rc = err->code;
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

int isowire_put_resource(struct isowire_writer *w, const struct ch_resource *r,
                         struct ch_err *err) {
  size_t size = 1 + str_size(r->type) + str_size(r->id) +
                str_size(r->display_name) + 8 + list_size(r->emails) +
                list_size(r->match_keys) + str_size(r->profile_json) +
                str_size(r->parent_type) + str_size(r->parent_id) +
                list_size(r->entitlements);
  unsigned char *p;
  int rc = CH_OK;

  pthread_mutex_lock(&w->lock);
  p = frame_begin(w, size, ISOWIRE_RESOURCE, err);
  if (p) {
    p = put_str(p, r->type);
    p = put_str(p, r->id);
    p = put_str(p, r->display_name);
    p = put_u32(p, (uint32_t)r->status);
    p = put_u32(p, (uint32_t)r->account_type);
    p = put_list(p, r->emails);
    p = put_list(p, r->match_keys);
    p = put_str(p, r->profile_json);
    p = put_str(p, r->parent_type);
    p = put_str(p, r->parent_id);
    put_list(p, r->entitlements);
  } else {
    rc = err->code;
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

int isowire_put_grant(struct isowire_writer *w, const struct ch_grant *g,
                      struct ch_err *err) {
  size_t size = 1 + str_size(g->resource.type) + str_size(g->resource.id) +
                str_size(g->slug) + str_size(g->principal.type) +
                str_size(g->principal.id) + 4 + str_size(g->expand_slug) +
                str_size(g->profile_json);
  unsigned char *p;
  int rc = CH_OK;

  pthread_mutex_lock(&w->lock);
  p = frame_begin(w, size, ISOWIRE_GRANT, err);
  if (p) {
    p = put_str(p, g->resource.type);
    p = put_str(p, g->resource.id);
    p = put_str(p, g->slug);
    p = put_str(p, g->principal.type);
    p = put_str(p, g->principal.id);
    p = put_u32(p, g->flags);
    p = put_str(p, g->expand_slug);
    put_str(p, g->profile_json);
  } else {
    rc = err->code;
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

int isowire_put_status(struct isowire_writer *w,
                       const struct isowire_status *st, struct ch_err *err) {
  unsigned char *p;
  int rc = CH_OK;

  pthread_mutex_lock(&w->lock);
  p = frame_begin(w, 1 + 2 + 9 * 8 + str_size(st->error), ISOWIRE_STATUS, err);
  if (p) {
    *p++ = (unsigned char)(st->failed != 0);
    *p++ = (unsigned char)(st->stopped != 0);
    p = put_u64(p, st->pages);
    p = put_u64(p, st->warnings);
    p = put_u64(p, st->requests);
    p = put_u64(p, st->retries);
    p = put_u64(p, st->wait_us);
    p = put_u64(p, st->throttled);
    p = put_u64(p, st->bytes_in);
    p = put_u64(p, st->bytes_out);
    p = put_u64(p, st->errors);
    put_str(p, st->error);
  } else {
    rc = err->code;
  }
  pthread_mutex_unlock(&w->lock);
  return rc;
}

int isowire_flush(struct isowire_writer *w, struct ch_err *err) {
  int rc;
  pthread_mutex_lock(&w->lock);
  rc = drain_locked(w, err);
  pthread_mutex_unlock(&w->lock);
  return rc;
}

/* ---- reader ----------------------------------------------------------- */

void isowire_reader_init(struct isowire_reader *r, int fd) {
  memset(r, 0, sizeof(*r));
  r->fd = fd;
}

void isowire_reader_release(struct isowire_reader *r) {
  free(r->buf);
  free(r->ptrs);
  memset(r, 0, sizeof(*r));
}

/* A payload being decoded: every read is checked against its end. */
struct cursor {
  const unsigned char *p, *end;
  struct isowire_reader *r;
  const char *bad; /* the first problem, or NULL */
};

static uint32_t get_u32(struct cursor *c) {
  uint32_t v;
  if (c->bad || c->end - c->p < 4) {
    c->bad = c->bad ? c->bad : "a field runs past the end of its frame";
    return 0;
  }
  v = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 |
      (uint32_t)c->p[3] << 24;
  c->p += 4;
  return v;
}

static uint64_t get_u64(struct cursor *c) {
  uint64_t lo = get_u32(c);
  return lo | (uint64_t)get_u32(c) << 32;
}

static int get_u8(struct cursor *c) {
  if (c->bad || c->p >= c->end) {
    c->bad = c->bad ? c->bad : "a field runs past the end of its frame";
    return 0;
  }
  return *c->p++;
}

static const char *get_str(struct cursor *c) {
  uint32_t n = get_u32(c);
  const char *s;

  if (c->bad || n == ISOWIRE_NULL)
    return NULL;
  if ((size_t)(c->end - c->p) < (size_t)n + 1) {
    c->bad = "a string runs past the end of its frame";
    return NULL;
  }
  s = (const char *)c->p;
  if (s[n] != '\0' || memchr(s, '\0', n)) {
    c->bad = "a string is not NUL-terminated where its length says";
    return NULL;
  }
  c->p += n + 1;
  return s;
}

/* A list's pointers go in r->ptrs from *used on (sized for the frame
   before decoding starts, so they never move). */
static const char *const *get_list(struct cursor *c, size_t *used) {
  uint32_t n = get_u32(c);
  const char **l;

  if (c->bad || n == ISOWIRE_NULL)
    return NULL;
  /* each string takes at least 5 bytes */
  if (n > (size_t)(c->end - c->p) / 5 || *used + n + 1 > c->r->nptrs) {
    c->bad = "a list is longer than its frame can hold";
    return NULL;
  }
  l = c->r->ptrs + *used;
  for (uint32_t i = 0; i < n; i++)
    l[i] = get_str(c);
  l[n] = NULL;
  *used += n + 1;
  return c->bad ? NULL : l;
}

static int decode(struct isowire_reader *r, const unsigned char *p, size_t n,
                  struct isowire_frame *f, struct ch_err *err) {
  struct cursor c = {p + 1, p + n, r, NULL};
  size_t used = 0;
  const char *s;

  memset(f, 0, sizeof(*f));
  f->kind = (enum isowire_kind)p[0];
  if (!r->hello) {
    if (f->kind != ISOWIRE_HELLO || n != 1 + sizeof(magic) + 1 ||
        memcmp(p + 1, magic, sizeof(magic)) != 0)
      return ch_err_set(err, CH_E_PROTOCOL, "the stream has no valid header");
    if (p[n - 1] != ISOWIRE_VERSION)
      return ch_err_set(err, CH_E_PROTOCOL,
                        "stream version %u, this host reads %u", p[n - 1],
                        ISOWIRE_VERSION);
    r->hello = 1;
    return 0;
  }
  if (r->ended)
    return ch_err_set(err, CH_E_PROTOCOL, "a frame after the final status");
  switch (f->kind) {
  case ISOWIRE_RESOURCE:
    f->res.type = get_str(&c);
    f->res.id = get_str(&c);
    f->res.display_name = get_str(&c);
    f->res.status = (enum ch_res_status)get_u32(&c);
    f->res.account_type = (enum ch_account_type)get_u32(&c);
    f->res.emails = get_list(&c, &used);
    f->res.match_keys = get_list(&c, &used);
    f->res.profile_json = get_str(&c);
    f->res.parent_type = get_str(&c);
    f->res.parent_id = get_str(&c);
    f->res.entitlements = get_list(&c, &used);
    break;
  case ISOWIRE_GRANT:
    f->grant.resource.type = get_str(&c);
    f->grant.resource.id = get_str(&c);
    f->grant.slug = get_str(&c);
    f->grant.principal.type = get_str(&c);
    f->grant.principal.id = get_str(&c);
    f->grant.flags = get_u32(&c);
    f->grant.expand_slug = get_str(&c);
    f->grant.profile_json = get_str(&c);
    break;
  case ISOWIRE_STATUS:
    f->status.failed = get_u8(&c);
    f->status.stopped = get_u8(&c);
    f->status.pages = get_u64(&c);
    f->status.warnings = get_u64(&c);
    f->status.requests = get_u64(&c);
    f->status.retries = get_u64(&c);
    f->status.wait_us = get_u64(&c);
    f->status.throttled = get_u64(&c);
    f->status.bytes_in = get_u64(&c);
    f->status.bytes_out = get_u64(&c);
    f->status.errors = get_u64(&c);
    s = get_str(&c);
    snprintf(f->status.error, sizeof(f->status.error), "%s", s ? s : "");
    r->ended = 1;
    break;
  default:
    return ch_err_set(err, CH_E_PROTOCOL, "unknown frame kind 0x%02x",
                      (unsigned)p[0]);
  }
  if (!c.bad && c.p != c.end)
    c.bad = "a frame has bytes after its last field";
  if (c.bad)
    return ch_err_set(err, CH_E_PROTOCOL, "%s", c.bad);
  return 1;
}

/* Make sure `need` bytes are buffered from r->off; 0 when they are, 1 at
   end of file, -1 on a read error. */
static int fill(struct isowire_reader *r, size_t need, struct ch_err *err) {
  if (r->off > 0 && r->len - r->off < need) {
    memmove(r->buf, r->buf + r->off, r->len - r->off);
    r->len -= r->off;
    r->off = 0;
  }
  if (need > r->cap) {
    size_t cap = need < WRITER_CAP ? WRITER_CAP : need;
    unsigned char *nb = realloc(r->buf, cap);
    if (!nb)
      return ch_err_set(err, CH_E_NOMEM, "out of memory"), -1;
    r->buf = nb;
    r->cap = cap;
  }
  while (r->len - r->off < need) {
    ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return ch_err_set(err, CH_E_IO, "reading the records: %s",
                        strerror(errno)),
             -1;
    if (n == 0)
      return 1;
    r->len += (size_t)n;
  }
  return 0;
}

int isowire_next(struct isowire_reader *r, struct isowire_frame *f,
                 struct ch_err *err) {
  for (;;) {
    const unsigned char *h;
    uint32_t n;
    int rc = fill(r, 4, err);

    if (rc < 0)
      return -1;
    if (rc > 0) {
      if (r->len != r->off)
        return ch_err_set(err, CH_E_PROTOCOL,
                          "the stream ends inside a frame header"),
               -1;
      return 0;
    }
    h = r->buf + r->off;
    n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
        (uint32_t)h[3] << 24;
    if (n == 0 || n > ISOWIRE_MAX_FRAME)
      return ch_err_set(err, CH_E_PROTOCOL,
                        "a frame length of %lu bytes is out of bounds",
                        (unsigned long)n),
             -1;
    rc = fill(r, 4 + (size_t)n, err);
    if (rc < 0)
      return -1;
    if (rc > 0)
      return ch_err_set(err, CH_E_PROTOCOL,
                        "the stream ends inside a %lu-byte frame",
                        (unsigned long)n),
             -1;
    /* list pointers: at most one per 5 payload bytes, plus terminators */
    if (r->nptrs < n / 5 + 4) {
      const char **np = realloc(r->ptrs, (n / 5 + 4) * sizeof(*np));
      if (!np)
        return ch_err_set(err, CH_E_NOMEM, "out of memory"), -1;
      r->ptrs = np;
      r->nptrs = n / 5 + 4;
    }
    rc = decode(r, r->buf + r->off + 4, n, f, err);
    r->off += 4 + (size_t)n;
    if (rc != 0)
      return rc < 0 ? -1 : 1;
  }
}
