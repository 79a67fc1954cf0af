/* SPDX-License-Identifier: MIT */
/* The access explorer: the read commands' answers as JSON under /api/v1/
   and as HTML pages, on `serve`'s listener or `explore`'s. */
#ifndef CONNHOST_EXPLORE_H
#define CONNHOST_EXPLORE_H

#include "httpd.h"

#define EXPLORE_DEFAULT_LISTEN "127.0.0.1:9465"

/*
 * Answer a GET for the explorer over the store at `db`: 1 when `rq` was
 * the explorer's (a page, an asset or /api/v1/<read command>) and `rp` is
 * set, 0 when the path is not the explorer's.
 */
int explore_handle(const char *db, const struct httpd_request *rq,
                   struct httpd_reply *rp);

/* `connhost [-c FILE] explore [--db PATH] [--listen ADDR:PORT]`: the
   whole argv (the word "explore" among the options). */
int cmd_explore_main(int argc, char **argv);

/* ---- shared by the API (explore.c) and the pages (explore_pages.c) ---- */

struct store_params;

/* The most rows per section a client may ask for. */
#define EXPLORE_MAX_PAGE 100000
#define EXPLORE_BAD_PARAMS                                                     \
  "limit (at most 100000), offset and run, from, to are non-negative "         \
  "numbers (runs: positive)"

/* The read arguments of a request (run, from, to, tenant, who, what, type,
   search, entitlement, principal; `limit`, default `dflt_limit`, and
   `offset`): 0, or -1 when one is malformed. Strings are borrowed from
   `rq`. */
int explore_params(const struct httpd_request *rq, long dflt_limit,
                   struct store_params *p, long *offset, long *limit);
/* `msg`, an error about the store `db` (NULL: none), as an answer to `rq`
   says it, in `out` (`n` bytes): the store unnamed, so that a client
   learns no server path (store_msg_unnamed); the log line names it. */
void explore_answer_msg(const char *db, const struct httpd_request *rq,
                        const char *msg, char *out, size_t n);
/* The HTTP status of a cmd_read_render error code. */
int explore_status(int rc);

/* A page (HTML): 1 when `rq` names one and `rp` is set, else 0. */
int explore_page(const char *db, const struct httpd_request *rq,
                 struct httpd_reply *rp);

#endif
