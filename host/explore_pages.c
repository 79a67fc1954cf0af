/* SPDX-License-Identifier: MIT */
/* The explorer's pages, rendered here as plain HTML from the read
   commands' own answers: each page asks cmd_read_render for the JSON the
   API serves and writes it as tables, so a page shows what `connhost
   access` (who-has, diff, report, ...) prints, from the same queries.
   Every value goes through html_text; the pages work without script. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "explore.h"
#include "html.h"
#include "store.h"

/* Rows per table when the link gives no limit. */
#define PAGE_ROWS 100
/* The accounts an identity's page shows, past its first page. */
#define ACCOUNTS_MAX 200
/* Everything of a table for its CSV (the API's most). */
#define CSV_ALL "format=csv&amp;limit=100000"

/* How a cell links: to a person's page or to a resource's holders. */
enum link { L_NONE = 0, L_PERSON, L_RESOURCE, L_BY_TYPE };

struct col {
  const char *field, *label;
  enum link link;
  const char *target; /* the field the link names (NULL: `field`) */
};

/* A page being written: its request, its arguments, its body. */
struct page {
  const char *db;
  const struct httpd_request *rq;
  struct store_params p;
  long offset, limit;
  int more;    /* a table has rows after this page */
  size_t most; /* the most rows a table of this page shows */
  int status;  /* non-zero: a page that rendered but answers this status */
  FILE *f;
};

/* ---- values --------------------------------------------------------------
 */

static struct json_object *field(struct json_object *o, const char *name) {
  struct json_object *v = NULL;
  return o && json_object_object_get_ex(o, name, &v) ? v : NULL;
}

static const char *str(struct json_object *o, const char *name) {
  struct json_object *v = field(o, name);
  return v && !json_object_is_type(v, json_type_null)
             ? json_object_get_string(v)
             : NULL;
}

/* A value as the CLI's tables and CSV write it: arrays "a; b", booleans
   yes/no, null empty. */
static void value_text(FILE *f, struct json_object *v) {
  if (!v || json_object_is_type(v, json_type_null))
    return;
  if (json_object_is_type(v, json_type_boolean)) {
    fputs(json_object_get_boolean(v) ? "yes" : "no", f);
  } else if (json_object_is_type(v, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(v); i++) {
      if (i)
        fputs("; ", f);
      html_text(f, json_object_get_string(json_object_array_get_idx(v, i)));
    }
  } else {
    html_text(f, json_object_get_string(v));
  }
}

static int is_person(const char *type) {
  return type && (strcmp(type, "user") == 0 || strcmp(type, "account") == 0);
}

/* ---- the answer ---------------------------------------------------------- */

/* The read command's JSON answer, the API's, parsed; NULL with `*rc` and
   `err` set on error. */
static struct json_object *fetch(struct page *pg, const char *cmd,
                                 const struct store_params *p, long offset,
                                 long limit, int *rc, struct ch_err *err) {
  struct json_object *o = NULL;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);

  if (!f) {
    *rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    return NULL;
  }
  *rc = cmd_read_render(pg->db, cmd, p, "json", offset, limit, NULL, f, err);
  if (fclose(f) != 0 && *rc == CH_OK)
    *rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
  if (*rc == CH_OK && !(o = json_tokener_parse(text)))
    *rc = ch_err_set(err, CH_E_IO, "the %s answer is not JSON", cmd);
  free(text);
  return o;
}

/* ---- page parts ---------------------------------------------------------- */

static const struct {
  const char *path, *label;
} nav[] = {{"/", "Search"},
           {"/runs", "Runs"},
           {"/diff", "Changes"},
           {"/report", "Hygiene report"},
           {"/review", "Access review"}};

static void page_begin(struct page *pg, const char *title, const char *here) {
  FILE *f = pg->f;
  const char *q = pg->p.search;

  fputs(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">\n<title>",
      f);
  html_text(f, title);
  fputs(" · connhost explorer</title>\n"
        "<link rel=\"stylesheet\" href=\"/explore.css\">\n"
        "<script src=\"/explore.js\" defer></script>\n</head>\n<body>\n"
        "<header>\n<a class=\"brand\" href=\"/\">connhost explorer</a>\n<nav>",
        f);
  for (size_t i = 0; i < sizeof(nav) / sizeof(nav[0]); i++)
    fprintf(f, "<a href=\"%s\"%s>%s</a>", nav[i].path,
            strcmp(nav[i].path, here) == 0 ? " aria-current=\"page\"" : "",
            nav[i].label);
  fputs("</nav>\n<form class=\"search\" action=\"/\" method=\"get\" "
        "role=\"search\"><input name=\"q\" aria-label=\"search\" "
        "placeholder=\"name, email, accountId, group or project\" value=\"",
        f);
  html_text(f, q);
  fputs("\"> <button>Search</button></form>\n</header>\n<main>\n", f);
}

static void page_end(struct page *pg) {
  fputs("</main>\n</body>\n</html>\n", pg->f);
}

static void heading(FILE *f, const char *tag, const char *id,
                    const char *text) {
  fprintf(f, "<%s%s%s%s>", tag, id ? " id=\"" : "", id ? id : "",
          id ? "\"" : "");
  html_text(f, text);
  fprintf(f, "</%s>\n", tag);
}

/* The instances answering from older data, when the rows shown use it
   (`rows` NULL: say it whenever there are any). */
static void stale_note(FILE *f, struct json_object *ans,
                       struct json_object *rows) {
  struct json_object *st = field(ans, "stale");
  size_t n = st ? json_object_array_length(st) : 0;
  int used = !rows;

  for (size_t i = 0; rows && i < json_object_array_length(rows); i++)
    used |= json_object_get_boolean(
        field(json_object_array_get_idx(rows, i), "stale"));
  if (!n || !used)
    return;
  fputs("<p class=\"stale-note\"><span class=\"stale\">stale</span> answering "
        "from older data for ",
        f);
  for (size_t i = 0; i < n; i++) {
    struct json_object *s = json_object_array_get_idx(st, i);
    fputs(i ? ", <bdi>" : "<bdi>", f);
    html_text(f, str(s, "tenant"));
    fputc('/', f);
    html_text(f, str(s, "instance"));
    fputs("</bdi> (", f);
    html_text(f, str(s, "status"));
    fputs(" in this run; data of run ", f);
    html_text(f, str(s, "data_run") ? str(s, "data_run") : "none");
    fputs(", taken ", f);
    html_text(f, str(s, "data_at") ? str(s, "data_at") : "never");
    fputc(')', f);
  }
  fputs("</p>\n", f);
}

/* A link to `path` with `name`=`value` (value encoded). */
static void href(FILE *f, const char *path, const char *name,
                 const char *value) {
  fprintf(f, "%s?%s=", path, name);
  html_url_arg(f, value);
}

/* The request's arguments among `names` (space-separated; "q=search":
   the argument q, named search), as "&name=value" for a link. */
static void args(struct page *pg, const char *names) {
  char name[32];

  for (const char *p = names; *p;) {
    size_t n = strcspn(p, " "), k = strcspn(p, " =");
    const char *v;
    if (n < sizeof(name)) {
      memcpy(name, p, k);
      name[k] = 0;
      if ((v = httpd_query(pg->rq, name)) && *v) {
        fprintf(pg->f, "&amp;%.*s=", (int)(k < n ? n - k - 1 : k),
                k < n ? p + k + 1 : p);
        html_url_arg(pg->f, v);
      }
    }
    p += n + (p[n] == ' ');
  }
}

/* "Download CSV": the whole table as the API (and the CLI) writes it. */
static void csv_link(struct page *pg, const char *cmd, const char *names,
                     const char *file) {
  fprintf(pg->f, "<p class=\"csv\"><a href=\"/api/v1/%s?" CSV_ALL, cmd);
  args(pg, names);
  fprintf(pg->f, "\" download=\"%s.csv\">Download CSV</a></p>\n", file);
}

/* Previous / next page links that keep the page's `names` arguments. */
static void pager(struct page *pg, const char *path, const char *names) {
  FILE *f = pg->f;

  if (!pg->offset && !pg->more)
    return;
  fputs("<nav class=\"pager\">", f);
  if (pg->offset) {
    long prev = pg->offset > pg->limit ? pg->offset - pg->limit : 0;
    fprintf(f, "<a rel=\"prev\" href=\"%s?offset=%ld&amp;limit=%ld", path, prev,
            pg->limit);
    args(pg, names);
    fputs("\">Previous</a> ", f);
  }
  if (pg->most)
    fprintf(f, "rows %ld–%ld", pg->offset + 1, pg->offset + (long)pg->most);
  else
    fprintf(f, "no rows past %ld", pg->offset);
  if (pg->more) {
    fprintf(f, " <a rel=\"next\" href=\"%s?offset=%ld&amp;limit=%ld", path,
            pg->offset + pg->limit, pg->limit);
    args(pg, names);
    fputs("\">Next</a>", f);
  }
  fputs("</nav>\n", f);
}

/* person -> group -> entitlement: one line per path of an access row, an
   inline SVG (names cut to fit; the full name in each box's title). */
static void path_graph(FILE *f, struct json_object *row) {
  enum { W = 124, GAP = 22, H = 20, STEP = 26, CUT = 17 };
  struct json_object *via = field(row, "via_names");
  size_t nvia = via ? json_object_array_length(via) : 0;
  int direct = json_object_get_boolean(field(row, "direct"));
  size_t lines = nvia + (direct || !nvia);
  const char *who = str(row, "principal_name"),
             *what = str(row, "resource_name");
  const char *slug = str(row, "slug");

  fprintf(f,
          "<svg class=\"graph\" width=\"%d\" height=\"%zu\" viewBox=\"0 0 %d "
          "%zu\" role=\"img\" aria-label=\"",
          3 * W + 2 * GAP, lines * STEP, 3 * W + 2 * GAP, lines * STEP);
  html_text(f, direct ? "held directly" : "inherited");
  fputs("\">", f);
  for (size_t i = 0; i < lines; i++) {
    const char *names[3] = {
        who,
        i < nvia ? json_object_get_string(json_object_array_get_idx(via, i))
                 : NULL,
        what};
    int y = (int)i * STEP + 3;
    for (int j = 0; j < 3; j++) {
      int x = j * (W + GAP);
      if (j == 1 && !names[1]) {
        /* held directly: the line goes straight across */
        fprintf(f,
                "<line class=\"edge\" x1=\"%d\" y1=\"%d\" x2=\"%d\" "
                "y2=\"%d\"/>",
                W, y + H / 2, 2 * (W + GAP), y + H / 2);
        fprintf(f, "<text class=\"direct\" x=\"%d\" y=\"%d\">direct</text>",
                W + GAP + 4, y + H / 2 - 3);
        continue;
      }
      fprintf(f,
              "<g class=\"node n%d\"><rect x=\"%d\" y=\"%d\" width=\"%d\" "
              "height=\"%d\" rx=\"4\"/><text x=\"%d\" y=\"%d\"><title>",
              j, x, y, W, H, x + 5, y + 14);
      html_text(f, names[j]);
      if (j == 2) {
        fputs(" · ", f);
        html_text(f, slug);
      }
      fputs("</title>", f);
      html_text_cut(f, names[j], CUT);
      fputs("</text></g>", f);
      if (j < 2 && names[1])
        fprintf(f,
                "<line class=\"edge\" x1=\"%d\" y1=\"%d\" x2=\"%d\" "
                "y2=\"%d\"/>",
                x + W, y + H / 2, x + W + GAP, y + H / 2);
    }
  }
  fputs("</svg>", f);
}

static void cell(FILE *f, struct json_object *row, const struct col *c) {
  struct json_object *v = field(row, c->field);
  const char *target = str(row, c->target ? c->target : c->field);
  enum link link = c->link;

  fputs("<td>", f);
  if (strcmp(c->field, "stale") == 0) {
    if (json_object_get_boolean(v))
      fputs("<span class=\"stale\">stale</span>", f);
    fputs("</td>", f);
    return;
  }
  if (strcmp(c->field, "path") == 0) {
    path_graph(f, row);
    fputs("</td>", f);
    return;
  }
  if (link == L_BY_TYPE)
    link = is_person(str(row, "type")) ? L_PERSON : L_RESOURCE;
  if (link != L_NONE && target) {
    fputs("<a href=\"", f);
    href(f, link == L_PERSON ? "/person" : "/resource",
         link == L_PERSON ? "who" : "what", target);
    fputs("\">", f);
  }
  fputs("<bdi>", f);
  value_text(f, v);
  fputs("</bdi>", f);
  if (link != L_NONE && target)
    fputs("</a>", f);
  fputs("</td>", f);
}

/* One section's rows as a table (at most pg->limit of them; a row more
   sets pg->more). `cols` NULL: every field, in the answer's order. */
static void table(struct page *pg, const char *id, struct json_object *rows,
                  const struct col *cols) {
  FILE *f = pg->f;
  size_t n = rows ? json_object_array_length(rows) : 0;
  struct col all[32];

  if (n > (size_t)pg->limit) {
    n = (size_t)pg->limit;
    pg->more = 1;
  }
  if (n > pg->most)
    pg->most = n;
  if (!n) {
    fprintf(f, "<p class=\"none\" data-empty=\"%s\">(none)</p>\n", id);
    return;
  }
  if (!cols) {
    size_t k = 0;
    json_object_object_foreach(json_object_array_get_idx(rows, 0), key, val) {
      (void)val;
      if (k + 1 < sizeof(all) / sizeof(all[0]))
        all[k++] = (struct col){key, key, L_NONE, NULL};
    }
    all[k] = (struct col){0};
    cols = all;
  }
  fprintf(f, "<div class=\"scroll\"><table data-table=\"%s\">\n<thead><tr>",
          id);
  for (const struct col *c = cols; c->field; c++) {
    fputs("<th>", f);
    html_text(f, c->label);
    fputs("</th>", f);
  }
  fputs("</tr></thead>\n<tbody>\n", f);
  for (size_t i = 0; i < n; i++) {
    struct json_object *row = json_object_array_get_idx(rows, i);
    const char *key = str(row, "key"), *ent = str(row, "entitlement");
    if (!key)
      key =
          str(row, "principal") ? str(row, "principal") : str(row, "resource");
    fputs("<tr", f);
    if (json_object_get_boolean(field(row, "stale")))
      fputs(" class=\"is-stale\"", f);
    if (ent) {
      fputs(" data-entitlement=\"", f);
      html_text(f, ent);
      fputc('"', f);
    }
    if (key) {
      fputs(" data-key=\"", f);
      html_text(f, key);
      fputc('"', f);
    }
    fputc('>', f);
    for (const struct col *c = cols; c->field; c++)
      cell(f, row, c);
    fputs("</tr>\n", f);
  }
  fputs("</tbody></table></div>\n", f);
}

/* ---- the pages ----------------------------------------------------------- */

static const struct col resource_cols[] = {
    {"display_name", "name", L_BY_TYPE, "key"},
    {"type", "type", L_NONE, NULL},
    {"tenant", "tenant", L_NONE, NULL},
    {"instance", "instance", L_NONE, NULL},
    {"status", "status", L_NONE, NULL},
    {"account_type", "account type", L_NONE, NULL},
    {"emails", "emails", L_NONE, NULL},
    {"key", "key", L_NONE, NULL},
    {"stale", "stale", L_NONE, NULL},
    {NULL, NULL, 0, NULL}};

static const struct col instance_cols[] = {
    {"tenant", "tenant", L_NONE, NULL},
    {"instance", "instance", L_NONE, NULL},
    {"status", "status", L_NONE, NULL},
    {"resources", "resources", L_NONE, NULL},
    {"entitlements", "entitlements", L_NONE, NULL},
    {"direct_grants", "direct grants", L_NONE, NULL},
    {"derived_grants", "inherited grants", L_NONE, NULL},
    {"stale", "stale", L_NONE, NULL},
    {NULL, NULL, 0, NULL}};

/* Each page fills `pg->f` from its answers; CH_OK, or an error for the
   error page. */
typedef int (*page_fn)(struct page *pg, struct ch_err *err);

static int page_home(struct page *pg, struct ch_err *err) {
  struct json_object *ans;
  int rc;

  if (!pg->p.search) {
    struct store_params p = {.run = pg->p.run, .tenant = pg->p.tenant};
    ans = fetch(pg, "stats", &p, 0, EXPLORE_MAX_PAGE, &rc, err);
    if (!ans)
      return rc;
    page_begin(pg, "Search", "/");
    heading(pg->f, "h1", NULL, "Search");
    fputs("<p>Find a person, a group, a project or any other resource by "
          "name, email, accountId or key, in the header's search box.</p>\n",
          pg->f);
    stale_note(pg->f, ans, NULL);
    heading(pg->f, "h2", NULL, "Instances");
    table(pg, "instances", field(ans, "instances"), instance_cols);
    csv_link(pg, "stats", "run tenant", "stats");
    json_object_put(ans);
    return CH_OK;
  }
  ans = fetch(pg, "resources", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  page_begin(pg, pg->p.search, "/");
  fputs("<h1>Search: <bdi>", pg->f);
  html_text(pg->f, pg->p.search);
  fputs("</bdi></h1>\n", pg->f);
  stale_note(pg->f, ans, field(ans, "resources"));
  table(pg, "results", field(ans, "resources"), resource_cols);
  pager(pg, "/", "q type tenant run");
  csv_link(pg, "resources", "q=search type tenant run", "search");
  json_object_put(ans);
  return CH_OK;
}

static int page_person(struct page *pg, struct ch_err *err) {
  static const struct col account_cols[] = {
      {"display_name", "name", L_NONE, NULL},
      {"instance", "instance", L_NONE, NULL},
      {"type", "type", L_NONE, NULL},
      {"status", "status", L_NONE, NULL},
      {"account_type", "account type", L_NONE, NULL},
      {"emails", "emails", L_NONE, NULL},
      {"resource", "key", L_NONE, NULL},
      {"stale", "stale", L_NONE, NULL},
      {NULL, NULL, 0, NULL}};
  static const struct col access_cols[] = {
      {"resource_parent_name", "in", L_NONE, NULL},
      {"resource_name", "resource", L_RESOURCE, "entitlement"},
      {"slug", "entitlement", L_NONE, NULL},
      {"resource_type", "type", L_NONE, NULL},
      {"instance", "instance", L_NONE, NULL},
      {"direct", "direct", L_NONE, NULL},
      {"via_names", "through", L_NONE, NULL},
      {"path", "path", L_NONE, NULL},
      {"stale", "stale", L_NONE, NULL},
      {NULL, NULL, 0, NULL}};
  struct json_object *ans, *who = NULL, *accounts;
  const char *name;
  int rc;

  if (!pg->p.who)
    return ch_err_set(err, CH_E_INVALID,
                      "missing ?who= (a resource key, email or account id)");
  ans = fetch(pg, "access", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  /* Past the first page the identity's accounts are still shown. */
  if (pg->offset &&
      !(who = fetch(pg, "access", &pg->p, 0, ACCOUNTS_MAX, &rc, err))) {
    json_object_put(ans);
    return rc;
  }
  accounts = field(who ? who : ans, "accounts");
  name = json_object_array_length(accounts)
             ? str(json_object_array_get_idx(accounts, 0), "display_name")
             : NULL;
  page_begin(pg, name ? name : pg->p.who, "");
  fputs("<h1 id=\"person-name\"><bdi>", pg->f);
  html_text(pg->f, name ? name : pg->p.who);
  fputs("</bdi></h1>\n", pg->f);
  stale_note(pg->f, ans, NULL);
  heading(pg->f, "h2", NULL, "Identity");
  {
    /* every account, on every page; the pager counts entitlements */
    long limit = pg->limit;
    pg->limit = EXPLORE_MAX_PAGE;
    table(pg, "accounts", accounts, account_cols);
    pg->limit = limit;
    pg->most = 0;
  }
  heading(pg->f, "h2", NULL, "Entitlements");
  table(pg, "access", field(ans, "access"), access_cols);
  pager(pg, "/person", "who run tenant");
  csv_link(pg, "access", "who run tenant", "access");
  json_object_put(who);
  json_object_put(ans);
  return CH_OK;
}

/* The display name of resource `key` (an entitlement key: its resource),
   or NULL; malloc'd. */
static char *resource_name(struct page *pg, const char *key) {
  struct store_params p = {.run = pg->p.run, .tenant = pg->p.tenant};
  struct ch_err err = {0};
  struct json_object *ans, *rows;
  char *base = strdup(key), *name = NULL;
  int rc;

  if (!base)
    return NULL;
  base[strcspn(base, "#")] = 0;
  p.search = base;
  ans = fetch(pg, "resources", &p, 0, EXPLORE_MAX_PAGE, &rc, &err);
  rows = field(ans, "resources");
  for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
    struct json_object *r = json_object_array_get_idx(rows, i);
    if (str(r, "key") && strcmp(str(r, "key"), base) == 0 &&
        str(r, "display_name")) {
      name = strdup(str(r, "display_name"));
      break;
    }
  }
  json_object_put(ans);
  free(base);
  return name;
}

static int page_resource(struct page *pg, struct ch_err *err) {
  static const struct col holder_cols[] = {
      {"principal_name", "holder", L_PERSON, "principal"},
      {"principal_type", "type", L_NONE, NULL},
      {"identity_emails", "emails", L_NONE, NULL},
      {"status", "status", L_NONE, NULL},
      {"account_type", "account type", L_NONE, NULL},
      {"entitlement", "entitlement", L_NONE, NULL},
      {"direct", "direct", L_NONE, NULL},
      {"via_names", "through", L_NONE, NULL},
      {"stale", "stale", L_NONE, NULL},
      {NULL, NULL, 0, NULL}};
  struct json_object *ans;
  char *name;
  int rc;

  if (!pg->p.what)
    return ch_err_set(err, CH_E_INVALID,
                      "missing ?what= (an entitlement or resource key)");
  ans = fetch(pg, "who-has", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  name = resource_name(pg, pg->p.what);
  page_begin(pg, name ? name : pg->p.what, "");
  fputs("<h1><bdi>", pg->f);
  html_text(pg->f, name ? name : pg->p.what);
  fputs("</bdi></h1>\n<p class=\"key\">", pg->f);
  html_text(pg->f, pg->p.what);
  fputs("</p>\n", pg->f);
  stale_note(pg->f, ans, field(ans, "holders"));
  heading(pg->f, "h2", NULL, "Who holds it");
  table(pg, "holders", field(ans, "holders"), holder_cols);
  pager(pg, "/resource", "what run tenant");
  csv_link(pg, "who-has", "what run tenant", "holders");
  free(name);
  json_object_put(ans);
  return CH_OK;
}

static int page_runs(struct page *pg, struct ch_err *err) {
  struct json_object *ans;
  int rc;

  ans = fetch(pg, "runs", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  page_begin(pg, "Runs", "/runs");
  heading(pg->f, "h1", NULL, "Runs");
  table(pg, "runs", field(ans, "runs"), NULL);
  pager(pg, "/runs", "tenant");
  csv_link(pg, "runs", "tenant", "runs");
  json_object_put(ans);
  return CH_OK;
}

/* A <select> of the runs in `runs` (each run once), `sel` chosen. */
static void run_picker(FILE *f, const char *name, const char *label,
                       struct json_object *runs, long sel) {
  long last = -1;

  fprintf(f, "<label>%s <select name=\"%s\">", label, name);
  for (size_t i = 0; runs && i < json_object_array_length(runs); i++) {
    struct json_object *r = json_object_array_get_idx(runs, i);
    long id = (long)json_object_get_int64(field(r, "run"));
    if (id == last)
      continue;
    last = id;
    fprintf(f, "<option value=\"%ld\"%s>run %ld, ", id,
            id == sel ? " selected" : "", id);
    html_text(f, str(r, "started"));
    fputs(" (", f);
    html_text(f, str(r, "run_status"));
    fputs(")</option>", f);
  }
  fputs("</select></label> ", f);
}

static int page_diff(struct page *pg, struct ch_err *err) {
  static const char *const sections[][2] = {
      {"resources", "Resources"},
      {"direct_grants", "Direct grants"},
      {"derived_grants", "Inherited grants"},
      {"status_changes", "Status changes"},
      {"identity_changes", "Identity changes"}};
  struct store_params rp = {.tenant = pg->p.tenant};
  struct json_object *runs, *ans;
  struct ch_err derr = {0};
  int rc, drc;

  runs = fetch(pg, "runs", &rp, 0, EXPLORE_MAX_PAGE, &rc, err);
  if (!runs)
    return rc;
  ans = fetch(pg, "diff", &pg->p, pg->offset, pg->limit + 1, &drc, &derr);
  page_begin(pg, "Changes", "/diff");
  heading(pg->f, "h1", NULL, "Changes between two runs");
  fputs("<form class=\"runs\" action=\"/diff\" method=\"get\">", pg->f);
  run_picker(pg->f, "from", "from", field(runs, "runs"),
             ans ? (long)json_object_get_int64(field(ans, "from")) : 0);
  run_picker(pg->f, "to", "to", field(runs, "runs"),
             ans ? (long)json_object_get_int64(field(ans, "run")) : 0);
  fputs("<button>Compare</button></form>\n", pg->f);
  if (!ans) {
    /* Still a page (the pickers choose other runs), but not a 200: an
       unknown run is a 404 to scripts and monitors as it is on the API. */
    char msg[sizeof(derr.msg)];
    pg->status = explore_status(drc);
    explore_answer_msg(pg->db, pg->rq, derr.msg, msg, sizeof(msg));
    fputs("<p class=\"error\">", pg->f);
    html_text(pg->f, msg);
    fputs("</p>\n", pg->f);
  } else {
    char title[96];
    snprintf(title, sizeof(title), "From run %lld to run %lld",
             (long long)json_object_get_int64(field(ans, "from")),
             (long long)json_object_get_int64(field(ans, "run")));
    heading(pg->f, "h2", NULL, title);
    stale_note(pg->f, ans, NULL);
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
      heading(pg->f, "h3", NULL, sections[i][1]);
      table(pg, sections[i][0], field(ans, sections[i][0]), NULL);
    }
    pager(pg, "/diff", "from to tenant");
    csv_link(pg, "diff", "from to tenant", "changes");
  }
  json_object_put(ans);
  json_object_put(runs);
  return CH_OK;
}

static int page_report(struct page *pg, struct ch_err *err) {
  static const struct col cols[] = {
      {"principal_name", "account", L_PERSON, "principal"},
      {"tenant", "tenant", L_NONE, NULL},
      {"principal_emails", "emails", L_NONE, NULL},
      {"status", "status", L_NONE, NULL},
      {"account_type", "account type", L_NONE, NULL},
      {"grants", "grants", L_NONE, NULL},
      {"direct_grants", "direct", L_NONE, NULL},
      {"inherited_grants", "inherited", L_NONE, NULL},
      {NULL, NULL, 0, NULL}};
  static const char *const sections[][3] = {
      {"inactive_with_grants", "Disabled accounts that still hold grants",
       NULL},
      {"jira_without_org_account", "Jira accounts with no org account", NULL},
      {"nonhuman_with_grants", "Customer and service accounts holding grants",
       NULL}};
  struct json_object *ans;
  int rc;

  ans = fetch(pg, "report", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  page_begin(pg, "Hygiene report", "/report");
  heading(pg->f, "h1", NULL, "Hygiene report");
  stale_note(pg->f, ans, NULL);
  for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
    heading(pg->f, "h2", NULL, sections[i][1]);
    table(pg, sections[i][0], field(ans, sections[i][0]), cols);
  }
  pager(pg, "/report", "run tenant");
  csv_link(pg, "report", "run tenant", "report");
  json_object_put(ans);
  return CH_OK;
}

static int page_review(struct page *pg, struct ch_err *err) {
  static const struct col cols[] = {
      {"identity_name", "person", L_PERSON, "principal"},
      {"identity_emails", "emails", L_NONE, NULL},
      {"status", "status", L_NONE, NULL},
      {"account_type", "account type", L_NONE, NULL},
      {"resource_parent_name", "in", L_NONE, NULL},
      {"resource_name", "resource", L_RESOURCE, "entitlement"},
      {"slug", "entitlement", L_NONE, NULL},
      {"direct", "direct", L_NONE, NULL},
      {"via_names", "through", L_NONE, NULL},
      {"stale", "stale", L_NONE, NULL},
      {NULL, NULL, 0, NULL}};
  struct json_object *ans;
  int rc;

  ans = fetch(pg, "export", &pg->p, pg->offset, pg->limit + 1, &rc, err);
  if (!ans)
    return rc;
  page_begin(pg, "Access review", "/review");
  heading(pg->f, "h1", NULL, "Access review");
  stale_note(pg->f, ans, field(ans, "access_review"));
  table(pg, "access_review", field(ans, "access_review"), cols);
  pager(pg, "/review", "run tenant");
  csv_link(pg, "export", "run tenant", "access_review");
  json_object_put(ans);
  return CH_OK;
}

/* The sign-in form of a listener with a token (the listener checks it
   and sets the session cookie). */
static int page_login(struct page *pg, struct ch_err *err) {
  (void)err;
  page_begin(pg, "Sign in", "");
  heading(pg->f, "h1", NULL, "Sign in");
  if (httpd_query(pg->rq, "failed"))
    fputs("<p class=\"error\">That is not this listener's token.</p>\n", pg->f);
  fputs("<form class=\"login\" action=\"/login\" method=\"post\">"
        "<label>The listener's token (<code>serve.auth_token</code>) "
        "<input type=\"password\" name=\"token\" autocomplete=\"off\" "
        "required></label> <button>Sign in</button></form>\n"
        "<p>The browser keeps a session cookie for 12 hours (or until the "
        "listener restarts), never the token.</p>\n",
        pg->f);
  return CH_OK;
}

static const struct {
  const char *path;
  page_fn fn;
} pages[] = {{"/login", page_login},   {"/", page_home},
             {"/person", page_person}, {"/resource", page_resource},
             {"/runs", page_runs},     {"/diff", page_diff},
             {"/report", page_report}, {"/review", page_review}};

/* The error page: the message, as text, with the navigation. */
static void page_error(struct page *pg, const char *msg) {
  page_begin(pg, "Error", "");
  fputs("<h1>Not shown</h1>\n<p class=\"error\">", pg->f);
  html_text(pg->f, msg);
  fputs("</p>\n", pg->f);
  page_end(pg);
}

int explore_page(const char *db, const struct httpd_request *rq,
                 struct httpd_reply *rp) {
  struct page pg = {.db = db, .rq = rq};
  struct ch_err err = {0};
  page_fn fn = NULL;
  char *body = NULL;
  size_t len = 0;
  int rc = CH_OK;

  for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
    if (strcmp(httpd_path(rq), pages[i].path) == 0)
      fn = pages[i].fn;
  }
  if (!fn)
    return 0;
  pg.f = open_memstream(&body, &len);
  if (!pg.f) {
    rp->status = 500;
    return 1;
  }
  if (explore_params(rq, PAGE_ROWS, &pg.p, &pg.offset, &pg.limit) < 0)
    rc = ch_err_set(&err, CH_E_INVALID, EXPLORE_BAD_PARAMS);
  pg.p.search = httpd_query(rq, "q");
  if (pg.p.search && !*pg.p.search)
    pg.p.search = NULL;
  if (!db && fn != page_login)
    rc = ch_err_set(&err, CH_E_CONFIG,
                    "this config keeps no store ('store: none'): the "
                    "explorer has nothing to show");
  if (!pg.limit)
    pg.limit = PAGE_ROWS;
  if (rc == CH_OK)
    rc = fn(&pg, &err);
  /* A page fetches its answers before it writes, so a failed one has
     written nothing yet. */
  if (rc == CH_OK) {
    page_end(&pg);
  } else {
    char msg[sizeof(err.msg)];
    explore_answer_msg(db, rq, err.msg, msg, sizeof(msg));
    page_error(&pg, msg);
  }
  if (fclose(pg.f) != 0) {
    free(body);
    rp->status = 500;
    return 1;
  }
  if (rc != CH_OK)
    rp->status = rc == CH_E_CONFIG ? 503 : explore_status(rc);
  else
    rp->status = pg.status ? pg.status : 200;
  rp->content_type = "text/html; charset=utf-8";
  rp->body = body;
  return 1;
}
