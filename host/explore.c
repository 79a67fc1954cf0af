/* SPDX-License-Identifier: MIT */
/* The access explorer: /api/v1/<read command> answers exactly what the
   read command's --format json (or csv) prints, through cmd_read_render;
   the pages are static files embedded in the binary that render those
   answers in the browser (text nodes only: a name is never markup). */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "explore.h"
#include "explore_assets.h"
#include "html.h"
#include "log.h"
#include "store.h"

/* Rows per section when the client gives no limit, and the most it may
   ask for: an answer stays bounded in memory. */
#define EXPLORE_PAGE 1000

struct asset {
  const char *path, *asset, *type;
};

static const struct asset assets[] = {
    {"/explore.js", "explore.js", "text/javascript; charset=utf-8"},
    {"/explore.css", "explore.css", "text/css; charset=utf-8"},
};

/* The read commands the API answers (export: the access review). */
static const char *const api_names[] = {
    "runs", "resources", "grants", "access", "who-has", "explain",
    "diff", "stats",     "report", "export", NULL};

static int serve_asset(const struct asset *pg, struct httpd_reply *rp) {
  for (const struct explore_asset *a = explore_assets; a->name; a++) {
    if (strcmp(a->name, pg->asset) != 0)
      continue;
    rp->body = malloc(a->len + 1);
    if (!rp->body) {
      rp->status = 500;
      return 1;
    }
    memcpy(rp->body, a->data, a->len);
    rp->body[a->len] = 0;
    rp->status = 200;
    rp->content_type = pg->type;
    return 1;
  }
  return 0;
}

/* A non-negative count from the query, else `dflt`; -2 when malformed. */
static long query_count(const struct httpd_request *rq, const char *name,
                        long dflt, long max) {
  const char *s = httpd_query(rq, name);
  char *end;
  long v;

  if (!s)
    return dflt;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > max)
    return -2;
  return v;
}

/* A run id from the query (0: absent); -1 when malformed. */
static int64_t query_run(const struct httpd_request *rq, const char *name) {
  long v = query_count(rq, name, 0, 0x7fffffffL);
  return v == -2 || (v == 0 && httpd_query(rq, name)) ? -1 : v;
}

/* A filter argument; an empty one (a form field left blank) filters
   nothing, as the pages' own links mean by leaving it out. */
static const char *query_filter(const struct httpd_request *rq,
                                const char *name) {
  const char *v = httpd_query(rq, name);
  return v && *v ? v : NULL;
}

int explore_params(const struct httpd_request *rq, long dflt_limit,
                   struct store_params *p, long *offset, long *limit) {
  memset(p, 0, sizeof(*p));
  *limit = query_count(rq, "limit", dflt_limit, EXPLORE_MAX_PAGE);
  *offset = query_count(rq, "offset", 0, 0x7fffffffL);
  p->run = query_run(rq, "run");
  p->from = query_run(rq, "from");
  p->to = query_run(rq, "to");
  p->tenant = query_filter(rq, "tenant");
  p->who = httpd_query(rq, "who");
  p->what = httpd_query(rq, "what");
  p->type = query_filter(rq, "type");
  p->search = httpd_query(rq, "search");
  p->entitlement = query_filter(rq, "entitlement");
  p->principal = query_filter(rq, "principal");
  return *limit == -2 || *offset == -2 || p->run < 0 || p->from < 0 || p->to < 0
             ? -1
             : 0;
}

void explore_answer_msg(const char *db, const struct httpd_request *rq,
                        const char *msg, char *out, size_t n) {
  if (db && store_msg_unnamed(db, msg, out, n))
    log_warn("%s %s: %s", httpd_method(rq), httpd_path(rq), msg);
  else
    snprintf(out, n, "%s", msg);
}

int explore_status(int rc) {
  return rc == CH_E_NOTFOUND ? 404 : rc == CH_E_INVALID ? 400 : 500;
}

/* Writes a query argument again, but offset (next_link adds its own). */
static void link_arg(void *arg, const char *name, const char *value) {
  FILE *f = arg;

  if (strcmp(name, "offset") == 0)
    return;
  html_url_arg(f, name);
  if (value) {
    fputc('=', f);
    html_url_arg(f, value);
  }
  fputc('&', f);
}

/* The Link header of an answer cut before `next`: the same request from
   offset `next` (malloc'd; NULL when out of memory). */
static char *next_link(const char *name, const struct httpd_request *rq,
                       long next) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);

  if (!f)
    return NULL;
  fprintf(f, "<" HTTPD_API_PREFIX "%s?", name);
  httpd_query_each(rq, link_arg, f);
  fprintf(f, "offset=%ld>; rel=\"next\"", next);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

/* The names of a request's query arguments (at most HTTPD_MAX_ARGS: the
   listener refuses more). */
struct arg_list {
  const char *name[HTTPD_MAX_ARGS];
  size_t n;
};

static void arg_add(void *arg, const char *name, const char *value) {
  struct arg_list *a = arg;

  (void)value;
  if (a->n < HTTPD_MAX_ARGS)
    a->name[a->n++] = name;
}

static void api(const char *db, const char *name,
                const struct httpd_request *rq, struct httpd_reply *rp) {
  struct arg_list args = {0};
  struct store_params p;
  struct ch_err err = {0};
  const char *format = httpd_query(rq, "format");
  long limit, offset, next = -1;
  char *body = NULL;
  size_t len = 0;
  FILE *f;
  int rc;

  /* an argument that does not apply is refused, as the CLI's option */
  httpd_query_each(rq, arg_add, &args);
  if (cmd_read_check_args(name, args.name, args.n, HTTPD_API_PREFIX, &err) !=
      CH_OK) {
    httpd_reply_error(rp, 400, "%s", err.msg);
    return;
  }
  if (explore_params(rq, EXPLORE_PAGE, &p, &offset, &limit) < 0) {
    httpd_reply_error(rp, 400, EXPLORE_BAD_PARAMS);
    return;
  }
  if ((strcmp(name, "access") == 0 || strcmp(name, "explain") == 0) && !p.who) {
    httpd_reply_error(rp, 400,
                      "missing ?who= (a resource key, email or "
                      "account id)");
    return;
  }
  if ((strcmp(name, "who-has") == 0 || strcmp(name, "explain") == 0) &&
      !p.what) {
    httpd_reply_error(rp, 400,
                      "missing ?what= (an entitlement or resource "
                      "key)");
    return;
  }
  f = open_memstream(&body, &len);
  if (!f) {
    httpd_reply_error(rp, 500, "out of memory");
    return;
  }
  rc = cmd_read_render(db, name, &p, format, offset, limit, &next, f, &err);
  if (fclose(f) != 0 && rc == CH_OK)
    rc = ch_err_set(&err, CH_E_NOMEM, "out of memory");
  if (rc != CH_OK) {
    char msg[sizeof(err.msg)];
    free(body);
    explore_answer_msg(db, rq, err.msg, msg, sizeof(msg));
    httpd_reply_error(rp, explore_status(rc), "%s", msg);
    return;
  }
  /* The page is cut: say so, in CSV too (the JSON says it in next_offset);
     a client that cannot have the header has no answer. */
  if (next >= 0 && !(rp->link = next_link(name, rq, next))) {
    free(body);
    httpd_reply_error(rp, 500, "out of memory");
    return;
  }
  rp->status = 200;
  rp->content_type = format && strcmp(format, "csv") == 0
                         ? "text/csv; charset=utf-8"
                         : "application/json";
  rp->body = body;
}

int explore_handle(const char *db, const struct httpd_request *rq,
                   struct httpd_reply *rp) {
  const char *path = httpd_path(rq);

  for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
    if (strcmp(path, assets[i].path) == 0)
      return serve_asset(&assets[i], rp);
  }
  if (explore_page(db, rq, rp))
    return 1;
  if (!httpd_is_api(path))
    return 0;
  path += strlen(HTTPD_API_PREFIX);
  for (size_t i = 0; api_names[i]; i++) {
    if (strcmp(path, api_names[i]) != 0)
      continue;
    if (!db)
      httpd_reply_error(rp, 503,
                        "this config keeps no store ('store: none'): the "
                        "explorer has nothing to show");
    else
      api(db, api_names[i], rq, rp);
    return 1;
  }
  return 0;
}

/* ---- connhost explore ---------------------------------------------------- */

static const char explore_usage[] =
    "usage: connhost [-c FILE] explore [--db PATH] [--listen ADDR:PORT]\n"
    "\n"
    "Serve the access explorer over the store at PATH (read-only) until\n"
    "SIGINT or SIGTERM: the pages at /, the JSON API at /api/v1/\n"
    "(docs/explorer.md). Without --db, the store of the config (-c FILE,\n"
    "else ./connhost.yaml). Listens on " EXPLORE_DEFAULT_LISTEN
    " (a loopback address\nonly; port 0 picks one) and prints its URL.\n";

static void on_http(void *arg, const struct httpd_request *rq,
                    struct httpd_reply *rp) {
  const char *method = httpd_method(rq);

  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    rp->allow = "GET, HEAD";
    httpd_reply_error(rp, 405, "read-only: use GET");
    return;
  }
  if (!explore_handle(arg, rq, rp))
    httpd_reply_error(rp, 404, "not found: try / or /api/v1/runs");
}

#define EXPLORE_HELP "connhost explore --help"
#define explore_usage_error(...) cli_usage_error(EXPLORE_HELP, __VA_ARGS__)

int cmd_explore_main(int argc, char **argv) {
  static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"listen", required_argument, NULL, 'l'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *db_arg = NULL, *config_path = NULL;
  const char *listen = EXPLORE_DEFAULT_LISTEN;
  char *db = NULL;
  struct httpd_conf hc = {0};
  struct httpd *h = NULL;
  struct store *st = NULL;
  struct ch_err err = {0};
  sigset_t sigs;
  int c, sig, loopback = 0, rc = EXIT_FAIL;

  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      db_arg = optarg;
      break;
    case 'c':
      config_path = optarg;
      break;
    case 'l':
      listen = optarg;
      break;
    case 'h':
      fputs(explore_usage, stdout);
      return EXIT_OK;
    case ':':
      return explore_usage_error("option needs a value: '%s'",
                                 argv[optind - 1]);
    default:
      return cli_unknown_option(EXPLORE_HELP, argv[optind - 1], opts,
                                sizeof(opts) / sizeof(opts[0]),
                                sizeof(opts[0]));
    }
  }
  optind++; /* the word "explore" (getopt put the other words after it) */
  if (optind < argc)
    return explore_usage_error("unexpected argument '%s'", argv[optind]);
  if (!db_arg && !config_path && access("connhost.yaml", F_OK) != 0)
    return explore_usage_error("explore needs --db PATH (the store) or -c "
                               "FILE (the config naming it)");
  if (httpd_listen_is_loopback(listen, &loopback, &err) != CH_OK)
    return explore_usage_error("%s", err.msg);
  if (!loopback) {
    fprintf(stderr,
            "connhost: explore: '%s' is not a loopback address: explore has "
            "no token, so it listens on loopback only (127.0.0.1, [::1], "
            "localhost); for an explorer others can reach, run 'connhost "
            "serve' with 'serve.auth_token' (docs/explorer.md)\n",
            listen);
    return EXIT_FAIL;
  }
  log_setup(CH_LOG_INFO, LOG_TEXT, 0);
  if ((rc = cmd_read_db_path(db_arg, config_path, &db)) >= 0)
    goto out;
  rc = EXIT_FAIL;
  /* A missing or foreign store is said now, not on the first request. */
  if (store_open(db, 0, &st, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  store_close(st);

  /* The listener's thread inherits the mask: signals reach sigwait only. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  hc.listen = listen;
  hc.handler = on_http;
  hc.arg = (void *)db;
  if (httpd_start(&hc, &h, &err) != CH_OK) {
    log_error("explore: %s", err.msg);
    goto out;
  }
  /* The host part of ADDR:PORT as given, and the port bound. */
  printf("http://%.*s:%u/\n", (int)(strrchr(listen, ':') - listen), listen,
         httpd_port(h));
  fflush(stdout);
  log_info("explore: serving %s on port %u (read-only)", db, httpd_port(h));
  while (sigwait(&sigs, &sig) != 0)
    ;
  log_info("explore: stopped");
  rc = EXIT_OK;
out:
  httpd_stop(h);
  free(db);
  log_cleanup();
  return rc;
}
