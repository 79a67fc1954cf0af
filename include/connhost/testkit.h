/* SPDX-License-Identifier: MIT */
/* The plugin test kit: a fake host that answers HTTP from canned files and
   records each request, and a sink that records what a plugin emits. */
#ifndef CONNHOST_TESTKIT_H
#define CONNHOST_TESTKIT_H

/*
 * NAME
 *   libconnhost-testkit (pkg-config connhost-testkit)
 *
 * DESCRIPTION
 *   Test a plugin's .so (or its sources) without connhost:
 *
 *     struct ch_testkit *tk = ch_testkit_new("canned");
 *     struct ch_testkit_sink rec;
 *     ch_testkit_sink_init(&rec);
 *     rc = desc->open(ch_testkit_host(tk), ch_testkit_hctx(tk), &cfg,
 *                     &inst, &err);
 *     rc = desc->list(inst, "user", NULL, NULL, &rec.sink, &err);
 *     assert(strcmp(ch_testkit_request(tk, 0), "GET /users") == 0);
 *     assert(rec.nresources == 2);
 *
 *   Canned responses: `<dir>/routes` has one line per response,
 *   "METHOD PATH STATUS FILE" ("GET /users?page=2 200 users-2.json"); FILE
 *   is relative to <dir>, "-" for an empty body. PATH is matched against
 *   the request URL without scheme and host: with its query when the line
 *   has one, else against the path alone. An unmatched request gets 404.
 *   Lines starting with '#' are comments.
 *
 * OWNERSHIP
 *   Everything returned is the kit's, valid until ch_testkit_free(). Not
 *   thread-safe: drive one instance from one thread.
 */

#include <stddef.h>

#include <connhost/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ch_testkit;

/* NULL when out of memory or `canned_dir`/routes cannot be read. */
struct ch_testkit *ch_testkit_new(const char *canned_dir);
void ch_testkit_free(struct ch_testkit *tk);

const struct ch_host *ch_testkit_host(struct ch_testkit *tk);
struct ch_hctx *ch_testkit_hctx(struct ch_testkit *tk);

/* Requests seen so far, as "METHOD PATH?QUERY"; NULL past the last. */
size_t ch_testkit_nrequests(const struct ch_testkit *tk);
const char *ch_testkit_request(const struct ch_testkit *tk, size_t i);
/* The body of request `i`, or NULL when it had none. */
const char *ch_testkit_request_body(const struct ch_testkit *tk, size_t i);
/* Every log line so far, "LEVEL: message\n" each. */
const char *ch_testkit_log(const struct ch_testkit *tk);

/* A sink that records each record as a line:
     "resource TYPE ID NAME"  and  "grant TYPE ID#SLUG PTYPE PID"
   and keeps the last next_page token ("" when none). */
struct ch_testkit_sink {
  struct ch_sink sink; /* hand &rec.sink to list() and grants() */
  size_t nresources, ngrants;
  char **lines;
  size_t nlines;
  char next[1024];
};
void ch_testkit_sink_init(struct ch_testkit_sink *s);
/* Forget what was recorded (between pages) without freeing. */
void ch_testkit_sink_reset(struct ch_testkit_sink *s);
void ch_testkit_sink_free(struct ch_testkit_sink *s);

#ifdef __cplusplus
}
#endif

#endif /* CONNHOST_TESTKIT_H */
