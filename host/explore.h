/* SPDX-License-Identifier: MIT */
/* The access explorer: the read commands' answers as JSON under /api/v1/
   and the pages that show them, on `serve`'s listener or `explore`'s. */
#ifndef CONNHOST_EXPLORE_H
#define CONNHOST_EXPLORE_H

#include "httpd.h"

#define EXPLORE_DEFAULT_LISTEN "127.0.0.1:9465"

/* The pages and their assets: they hold no data (the API does), so they
   are served without the token; NULL-terminated. */
extern const char *const explore_open_paths[];

/*
 * Answer a GET for the explorer over the store at `db`: 1 when `rq` was
 * the explorer's (a page, an asset or /api/v1/<read command>) and `rp` is
 * set, 0 when the path is not the explorer's.
 */
int explore_handle(const char *db, const struct httpd_request *rq,
                   struct httpd_reply *rp);

/* `connhost explore --db PATH [--listen ADDR:PORT]`. */
int cmd_explore_main(int argc, char **argv);

#endif
