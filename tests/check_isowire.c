/* SPDX-License-Identifier: MIT */
/* The isolation record stream: what the writer sends reads back the same,
   and every malformed, oversized or truncated stream is refused. */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isowire.h"

/* A whole stream as bytes: written through a pipe by the real writer. */
struct bytes {
  unsigned char *p;
  size_t n;
};

static const char *const emails[] = {"ada@example.test", "a@example.test",
                                     NULL};
static const char *const keys[] = {"email=ada@example.test", NULL};
static const char *const no_ents[] = {NULL};

static const struct ch_resource res = {.type = "user",
                                       .id = "ü/1#x",
                                       .display_name = "Ada \"L\"",
                                       .status = CH_RES_DISABLED,
                                       .account_type = CH_ACCOUNT_SERVICE,
                                       .emails = emails,
                                       .match_keys = keys,
                                       .profile_json = "{\"a\":1}",
                                       .parent_type = "group",
                                       .parent_id = "g1",
                                       .entitlements = no_ents};

static const struct ch_grant grant = {.resource = {"group", "g1"},
                                      .slug = "member",
                                      .principal = {"user", "u1"},
                                      .flags = CH_GRANT_EXPANDABLE,
                                      .expand_slug = "member"};

/* hello, a resource, a grant and a status, as one byte string. */
static struct bytes stream(void) {
  struct isowire_writer w;
  struct isowire_status st = {0};
  struct ch_err err = {0};
  struct bytes b = {NULL, 0};
  unsigned char buf[4096];
  int fds[2];
  ssize_t n;

  ck_assert_int_eq(pipe(fds), 0);
  ck_assert_int_eq(isowire_writer_init(&w, fds[1]), CH_OK);
  st.failed = 1;
  st.pages = 7;
  st.requests = 1ull << 40;
  st.wait_us = 1500000;
  st.throttled = 3;
  st.bytes_in = 1ull << 33;
  st.bytes_out = 512;
  st.errors = 2;
  snprintf(st.error, sizeof(st.error), "list user: refused");
  ck_assert_int_eq(isowire_put_hello(&w, &err), CH_OK);
  ck_assert_int_eq(isowire_put_resource(&w, &res, &err), CH_OK);
  ck_assert_int_eq(isowire_put_grant(&w, &grant, &err), CH_OK);
  ck_assert_int_eq(isowire_put_status(&w, &st, &err), CH_OK);
  ck_assert_int_eq(isowire_flush(&w, &err), CH_OK);
  isowire_writer_release(&w);
  close(fds[1]);
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
    b.p = realloc(b.p, b.n + (size_t)n);
    ck_assert_ptr_nonnull(b.p);
    memcpy(b.p + b.n, buf, (size_t)n);
    b.n += (size_t)n;
  }
  close(fds[0]);
  return b;
}

/* Read `n` bytes of `p` as a stream: the number of frames, and the
   result of the last isowire_next (0 = clean end, -1 = refused). */
static int read_back(const unsigned char *p, size_t n, int *frames,
                     struct ch_err *err) {
  struct isowire_reader r;
  struct isowire_frame f;
  int fds[2], rc;

  ck_assert_int_eq(pipe(fds), 0);
  ck_assert_int_lt(n, 60000); /* fits the pipe: no writer thread needed */
  ck_assert_int_eq(write(fds[1], p, n), (ssize_t)n);
  close(fds[1]);
  isowire_reader_init(&r, fds[0]);
  *frames = 0;
  while ((rc = isowire_next(&r, &f, err)) > 0)
    (*frames)++;
  isowire_reader_release(&r);
  close(fds[0]);
  return rc;
}

START_TEST(test_round_trip) {
  struct bytes b = stream();
  struct isowire_reader r;
  struct isowire_frame f;
  struct ch_err err = {0};
  int fds[2];

  ck_assert_int_eq(pipe(fds), 0);
  ck_assert_int_eq(write(fds[1], b.p, b.n), (ssize_t)b.n);
  close(fds[1]);
  isowire_reader_init(&r, fds[0]);

  ck_assert_int_eq(isowire_next(&r, &f, &err), 1);
  ck_assert_int_eq(f.kind, ISOWIRE_RESOURCE);
  ck_assert_str_eq(f.res.type, "user");
  ck_assert_str_eq(f.res.id, "ü/1#x");
  ck_assert_str_eq(f.res.display_name, "Ada \"L\"");
  ck_assert_int_eq(f.res.status, CH_RES_DISABLED);
  ck_assert_int_eq(f.res.account_type, CH_ACCOUNT_SERVICE);
  ck_assert_str_eq(f.res.emails[0], emails[0]);
  ck_assert_str_eq(f.res.emails[1], emails[1]);
  ck_assert_ptr_null(f.res.emails[2]);
  ck_assert_str_eq(f.res.match_keys[0], keys[0]);
  ck_assert_ptr_null(f.res.match_keys[1]);
  ck_assert_str_eq(f.res.profile_json, "{\"a\":1}");
  ck_assert_str_eq(f.res.parent_id, "g1");
  /* an empty list is not NULL ("no slugs" versus "every slug") */
  ck_assert_ptr_nonnull(f.res.entitlements);
  ck_assert_ptr_null(f.res.entitlements[0]);

  ck_assert_int_eq(isowire_next(&r, &f, &err), 1);
  ck_assert_int_eq(f.kind, ISOWIRE_GRANT);
  ck_assert_str_eq(f.grant.resource.id, "g1");
  ck_assert_str_eq(f.grant.principal.id, "u1");
  ck_assert_uint_eq(f.grant.flags, CH_GRANT_EXPANDABLE);
  ck_assert_str_eq(f.grant.expand_slug, "member");
  ck_assert_ptr_null(f.grant.profile_json);

  ck_assert_int_eq(isowire_next(&r, &f, &err), 1);
  ck_assert_int_eq(f.kind, ISOWIRE_STATUS);
  ck_assert_int_eq(f.status.failed, 1);
  ck_assert_uint_eq(f.status.pages, 7);
  ck_assert_uint_eq(f.status.requests, 1ull << 40);
  ck_assert_uint_eq(f.status.wait_us, 1500000);
  ck_assert_uint_eq(f.status.throttled, 3);
  ck_assert_uint_eq(f.status.bytes_in, 1ull << 33);
  ck_assert_uint_eq(f.status.bytes_out, 512);
  ck_assert_uint_eq(f.status.errors, 2);
  ck_assert_str_eq(f.status.error, "list user: refused");

  ck_assert_int_eq(isowire_next(&r, &f, &err), 0);
  isowire_reader_release(&r);
  close(fds[0]);
  free(b.p);
}
END_TEST

/* Cut anywhere but at a frame boundary, the stream is refused; at a
   boundary it ends cleanly with the frames before the cut. */
START_TEST(test_every_truncation) {
  struct bytes b = stream();
  size_t bounds[8], nb = 0, off = 0;

  while (off < b.n) {
    bounds[nb++] = off;
    off += 4 + ((size_t)b.p[off] | (size_t)b.p[off + 1] << 8);
  }
  bounds[nb++] = b.n;
  for (size_t cut = 0; cut <= b.n; cut++) {
    struct ch_err err = {0};
    int frames, boundary = 0, rc;

    for (size_t i = 0; i < nb; i++)
      boundary |= bounds[i] == cut;
    rc = read_back(b.p, cut, &frames, &err);
    if (boundary) {
      ck_assert_msg(rc == 0, "cut at %zu: %s", cut, err.msg);
    } else {
      ck_assert_msg(rc == -1, "cut at %zu read as complete", cut);
      ck_assert_int_eq(err.code, CH_E_PROTOCOL);
    }
  }
  free(b.p);
}
END_TEST

/* Flip every byte to a few hostile values: the reader never crashes and
   either refuses the stream or reads frames that are well formed. */
START_TEST(test_every_corruption_is_survived) {
  static const unsigned char evil[] = {0x00, 0xff, 0x7f, 0x01, 'R', 'S'};
  struct bytes b = stream();

  for (size_t i = 0; i < b.n; i++) {
    unsigned char keep = b.p[i];
    for (size_t k = 0; k < sizeof(evil); k++) {
      struct ch_err err = {0};
      int frames;
      b.p[i] = evil[k];
      if (read_back(b.p, b.n, &frames, &err) < 0)
        ck_assert_int_ne(err.code, 0);
    }
    b.p[i] = keep;
  }
  free(b.p);
}
END_TEST

static void expect_refused(const unsigned char *p, size_t n, const char *why) {
  struct ch_err err = {0};
  int frames;

  ck_assert_int_eq(read_back(p, n, &frames, &err), -1);
  ck_assert_msg(strstr(err.msg, why), "'%s' has no '%s'", err.msg, why);
}

/* Hand-made streams. */
struct buf {
  unsigned char p[256];
  size_t n;
};

static void add(struct buf *b, const void *d, size_t n) {
  ck_assert_uint_le(b->n + n, sizeof(b->p));
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void add_u32(struct buf *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                        (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  add(b, x, 4);
}

static void add_hello(struct buf *b, unsigned char version) {
  add_u32(b, 7);
  add(b, "HCHISO", 6);
  add(b, &version, 1);
}

/* A frame header: `len` bytes follow, the first being `kind`. */
static void add_head(struct buf *b, uint32_t len, char kind) {
  add_u32(b, len);
  add(b, &kind, 1);
}

/* A status with no error text and `extra` bytes after it. */
static void add_status(struct buf *b, size_t extra) {
  static const unsigned char zeros[96];
  add_head(b, 1 + 2 + 72 + 4 + (uint32_t)extra, 'S');
  add(b, zeros, 74);
  add_u32(b, ISOWIRE_NULL);
  add(b, zeros, extra);
}

START_TEST(test_hostile_frames) {
  static const unsigned char zeros[16];
  struct buf b;

  b = (struct buf){.n = 0}; /* no header at all */
  add_status(&b, 0);
  expect_refused(b.p, b.n, "no valid header");

  b = (struct buf){.n = 0};
  add_hello(&b, 99);
  expect_refused(b.p, b.n, "stream version 99");

  b = (struct buf){.n = 0}; /* a length that would mean 4 GiB */
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 0xfffffff0u, 'R');
  expect_refused(b.p, b.n, "out of bounds");

  b = (struct buf){.n = 0};
  add_hello(&b, ISOWIRE_VERSION);
  add_u32(&b, 0);
  expect_refused(b.p, b.n, "out of bounds");

  b = (struct buf){.n = 0};
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 1, 'Z');
  expect_refused(b.p, b.n, "unknown frame kind");

  b = (struct buf){.n = 0}; /* a string longer than its frame */
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 5, 'G');
  add_u32(&b, 0xffff);
  expect_refused(b.p, b.n, "runs past the end");

  b = (struct buf){.n = 0}; /* no NUL where the length says */
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 7, 'G');
  add_u32(&b, 1);
  add(&b, "ab", 2);
  expect_refused(b.p, b.n, "not NUL-terminated");

  b = (struct buf){.n = 0}; /* a NUL inside a string */
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 8, 'G');
  add_u32(&b, 2);
  add(&b, "a\0\0", 3);
  expect_refused(b.p, b.n, "not NUL-terminated");

  b = (struct buf){.n = 0}; /* a list claiming more than fits */
  add_hello(&b, ISOWIRE_VERSION);
  add_head(&b, 1 + 12 + 8 + 4 + 2, 'R');
  for (int i = 0; i < 3; i++)
    add_u32(&b, ISOWIRE_NULL);
  add(&b, zeros, 8);
  add_u32(&b, 0xffff);
  add(&b, zeros, 2);
  expect_refused(b.p, b.n, "longer than its frame");

  b = (struct buf){.n = 0};
  add_hello(&b, ISOWIRE_VERSION);
  add_status(&b, 1);
  expect_refused(b.p, b.n, "bytes after its last field");

  b = (struct buf){.n = 0};
  add_hello(&b, ISOWIRE_VERSION);
  add_status(&b, 0);
  add_status(&b, 0);
  expect_refused(b.p, b.n, "after the final status");

  b = (struct buf){.n = 0}; /* and the well-formed one reads */
  add_hello(&b, ISOWIRE_VERSION);
  add_status(&b, 0);
  {
    struct ch_err err = {0};
    int frames;
    ck_assert_int_eq(read_back(b.p, b.n, &frames, &err), 0);
    ck_assert_int_eq(frames, 1);
  }
}
END_TEST

/* A record over the frame limit is refused by the writer, not sent. */
START_TEST(test_oversized_record_is_not_sent) {
  struct isowire_writer w;
  struct ch_err err = {0};
  struct ch_resource big = {.type = "user", .id = "u"};
  char *json = malloc(ISOWIRE_MAX_FRAME + 1);
  int fds[2];

  ck_assert_ptr_nonnull(json);
  memset(json, 'x', ISOWIRE_MAX_FRAME);
  json[ISOWIRE_MAX_FRAME] = '\0';
  big.profile_json = json;
  ck_assert_int_eq(pipe(fds), 0);
  ck_assert_int_eq(isowire_writer_init(&w, fds[1]), CH_OK);
  ck_assert_int_eq(isowire_put_resource(&w, &big, &err), CH_E_LIMIT);
  ck_assert_uint_eq(w.len, 0);
  isowire_writer_release(&w);
  close(fds[0]);
  close(fds[1]);
  free(json);
}
END_TEST

static Suite *isowire_suite(void) {
  Suite *s = suite_create("isowire");
  TCase *tc = tcase_create("stream");

  tcase_add_test(tc, test_round_trip);
  tcase_add_test(tc, test_every_truncation);
  tcase_add_test(tc, test_every_corruption_is_survived);
  tcase_add_test(tc, test_hostile_frames);
  tcase_add_test(tc, test_oversized_record_is_not_sent);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(isowire_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
