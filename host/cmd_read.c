/* SPDX-License-Identifier: MIT */
/* The read commands over the snapshot store: runs, resources, grants,
   access, who-has, explain, diff, stats, export, report. They know no SQL:
   each one names store queries and prints their rows as table, JSON or
   CSV. */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <json-c/json.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "store.h"
#include "utf8.h"
#include "util.h"

enum fmt { FMT_TABLE = 0, FMT_JSON, FMT_CSV };

/* Which rows of each section: skip `offset`, then at most `limit` (-1: all). */
struct read_page {
  long offset, limit;
};

/* One part of a command's answer: the JSON field and the store query. */
struct section {
  const char *field, *query;
  const char *brief; /* the columns a table shows (NULL: all) */
};

/* The long options' getopt values. --db, --tenant and --format (and -c,
   -q, -h) apply to every command; the others only to the commands whose
   `opts` name them: any other use is a usage error. RO_WHO and RO_WHAT
   are no options: the HTTP API's who= and what=, the commands' WHO and
   WHAT. */
enum {
  RO_DB = 300,
  RO_RUN,
  RO_TENANT,
  RO_FORMAT,
  RO_TYPE,
  RO_SEARCH,
  RO_ENT,
  RO_PRINCIPAL,
  RO_FROM,
  RO_TO,
  RO_EXIT_CODE,
  RO_WHO,
  RO_WHAT
};
#define O(x) (1u << ((x)-RO_DB))

struct read_cmd {
  const char *name;
  int nargs; /* positional arguments after the name */
  const char *args_help;
  int csv_default; /* CSV unless --format says otherwise */
  unsigned opts;   /* O(RO_...) of the options it takes beyond the common */
  struct section sections[6];
};

#define S(field, query, brief)                                                 \
  { field, query, brief }

static const struct read_cmd commands[] = {
    {.name = "runs", .sections = {S("runs", "runs", NULL)}},
    {.name = "resources",
     .opts = O(RO_RUN) | O(RO_TYPE) | O(RO_SEARCH),
     .args_help = "[--type T] [--search TEXT]",
     .sections = {S("resources", "resources",
                    "key display_name status account_type emails")}},
    {.name = "grants",
     .opts = O(RO_RUN) | O(RO_ENT) | O(RO_PRINCIPAL),
     .args_help = "[--entitlement KEY] [--principal KEY]",
     .sections = {S("grants", "grants",
                    "entitlement principal principal_name direct via")}},
    {.name = "access",
     .opts = O(RO_RUN) | O(RO_WHO),
     .nargs = 1,
     .args_help = "WHO",
     .sections =
         {S("accounts", "identity",
            "resource display_name emails status account_type stale"),
          S("access", "access",
            "instance principal_name resource_type resource_parent_name "
            "resource_name slug direct via_names stale")}},
    {.name = "who-has",
     .opts = O(RO_RUN) | O(RO_WHAT),
     .nargs = 1,
     .args_help = "WHAT",
     .sections = {S("holders", "who_has",
                    "slug principal principal_name identity_emails status "
                    "account_type direct via_names stale")}},
    {.name = "explain",
     .opts = O(RO_RUN) | O(RO_WHO) | O(RO_WHAT),
     .nargs = 2,
     .args_help = "WHO WHAT",
     .sections = {S("paths", "explain", "kind path stale")}},
    {.name = "diff", /* --run is --to here (not both) */
     .opts = O(RO_RUN) | O(RO_FROM) | O(RO_TO) | O(RO_EXIT_CODE),
     .args_help = "[--from RUN] [--to RUN] [--exit-code]",
     .sections = {S("resources", "diff_resources", NULL),
                  S("direct_grants", "diff_direct",
                    "change entitlement principal principal_name"),
                  S("derived_grants", "diff_derived",
                    "change entitlement principal principal_name via"),
                  S("status_changes", "diff_status", NULL),
                  S("identity_changes", "diff_identities", NULL)}},
    {.name = "stats",
     .opts = O(RO_RUN),
     .sections = {S("tenants", "stats_tenants", NULL),
                  S("instances", "stats_instances", NULL),
                  S("types", "stats_types", NULL),
                  S("entitlements", "stats_entitlements", NULL),
                  S("top_entitlements", "stats_top", NULL)}},
    {.name = "export",
     .opts = O(RO_RUN),
     .nargs = 1,
     .args_help = "access-review",
     .csv_default = 1,
     .sections = {S("access_review", "access_review", NULL)}},
    {.name = "report",
     .opts = O(RO_RUN),
     .sections = {S("inactive_with_grants", "report_inactive", NULL),
                  S("jira_without_org_account", "report_unmanaged", NULL),
                  S("nonhuman_with_grants", "report_nonhuman", NULL)}},
};

/* Where `word` is one of the space-separated words of `list`, or NULL. */
static const char *word_at(const char *list, const char *word) {
  size_t n = strlen(word);

  for (const char *p = list; (p = strstr(p, word)); p += n) {
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
      return p;
  }
  return NULL;
}

static int word_in(const char *list, const char *word) {
  return word_at(list, word) != NULL;
}

/* Sort col[0..n) (column indices of `c`, all named in `brief`) into the
   order `brief` names them. */
static void brief_order(const char *brief, struct store_cursor *c, size_t *col,
                        size_t n) {
  for (size_t k = 1; k < n; k++) {
    size_t x = col[k], j = k;
    const char *px = word_at(brief, store_col_name(c, x));
    while (j > 0 && word_at(brief, store_col_name(c, col[j - 1])) > px) {
      col[j] = col[j - 1];
      j--;
    }
    col[j] = x;
  }
}

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct read_cmd *find_cmd(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  }
  return NULL;
}

/* Options of the main parser and of these commands that take a value
   (so that value is not mistaken for the command). */
static const char value_opts[] =
    "-c --config -o --output -w --workers --format --tenant --instance "
    "--plugin-dir --max-pages --entitlement --principal --email "
    "--display-name --given-name --family-name --attr --arg --name "
    "--log-level --log-format --db --run --type --search --from --to";

const char *cmd_word(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      return i + 1 < argc ? argv[i + 1] : NULL;
    if (argv[i][0] == '-') {
      i += word_in(value_opts, argv[i]);
      continue;
    }
    return argv[i];
  }
  return NULL;
}

int cmd_read_wanted(int argc, char **argv) {
  const char *word = cmd_word(argc, argv);
  return word && find_cmd(word);
}

/* ---- output -------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  struct buf b = {0};

  if (buf_json_str(&b, s, strlen(s)) == 0)
    fwrite(b.p, 1, b.len, f);
  else
    fputs("null", f); /* out of memory: still valid JSON */
  buf_free(&b);
}

/* A JSON array cell as plain text for tables and CSV: "a; b". malloc'd. */
static char *json_flat(const char *text) {
  struct json_object *o = json_tokener_parse(text);
  size_t n, len = 0;
  char *out;

  if (!o || !json_object_is_type(o, json_type_array)) {
    json_object_put(o);
    return strdup(text);
  }
  n = json_object_array_length(o);
  for (size_t i = 0; i < n; i++) {
    const char *s = json_object_get_string(json_object_array_get_idx(o, i));
    len += (s ? strlen(s) : 0) + 2;
  }
  out = malloc(len + 1);
  if (out) {
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
      const char *s = json_object_get_string(json_object_array_get_idx(o, i));
      if (i)
        strcat(out, "; ");
      strcat(out, s ? s : "");
    }
  }
  json_object_put(o);
  return out;
}

/* One cell as text (tables, CSV). malloc'd; "" for null. */
static char *cell_text(struct store_cursor *c, size_t i) {
  const char *v = store_col_text(c, i);

  if (!v)
    return strdup("");
  switch (store_col_kind(c, i)) {
  case STORE_JSON:
    return json_flat(v);
  case STORE_BOOL:
    return strdup(strcmp(v, "0") ? "yes" : "no");
  default:
    return strdup(v);
  }
}

/*
 * RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes
 * doubled. Spreadsheets run a cell that starts with '=', '+', '-' or '@'
 * (or a tab or CR) as a formula, so such a cell is quoted and prefixed with
 * a single quote (OWASP "CSV injection").
 */
static void csv_cell(FILE *f, const char *s) {
  int formula = strchr("=+-@\t\r", s[0]) && s[0];
  int quote = formula || strpbrk(s, ",\"\r\n") != NULL;

  if (!quote) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  if (formula)
    fputc('\'', f);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

/*
 * The columns UTF-8 text takes on a terminal: wcwidth(3) of each code
 * point (2 for CJK and other wide characters, 0 for combining marks) in a
 * UTF-8 locale, so that such names line up. Without a UTF-8 locale, and
 * for a byte that is not UTF-8 or a code point wcwidth does not know,
 * one column each. (Table cells hold no control characters: table_add.)
 */
static size_t text_width(const char *s) {
  size_t w = 0, n = strlen(s);
  mbstate_t st;
  locale_t old, l = utf8_locale();

  if (!l) {
    for (; *s; s++)
      w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
  }
  old = uselocale(l);
  memset(&st, 0, sizeof(st));
  while (n) {
    wchar_t wc;
    size_t len = mbrtowc(&wc, s, n, &st);
    int cw;
    if (len == (size_t)-1 || len == (size_t)-2) {
      memset(&st, 0, sizeof(st));
      len = 1;
      cw = 1;
    } else {
      cw = wcwidth(wc);
      cw = cw < 0 ? 1 : cw;
    }
    w += (size_t)cw;
    s += len;
    n -= len;
  }
  uselocale(old);
  return w;
}

struct table {
  char **cells; /* header first, then rows; ncols per row */
  size_t ncols, n, cap;
};

/* Add `cell` (handed over), its control characters made visible: a
   terminal must not run a name's escape sequences, nor a name break its
   row. */
static int table_add(struct table *t, char *cell) {
  char *shown = cell ? util_visible(cell) : NULL;

  free(cell);
  cell = shown;
  if (!cell)
    return -1;
  if (t->n == t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 256;
    char **g = realloc(t->cells, nc * sizeof(*g));
    if (!g) {
      free(cell);
      return -1;
    }
    t->cells = g;
    t->cap = nc;
  }
  t->cells[t->n++] = cell;
  return 0;
}

static void table_print(FILE *f, const struct table *t) {
  size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof(*w));

  if (!w)
    return;
  for (size_t i = 0; i < t->n; i++) {
    size_t tw = text_width(t->cells[i]);
    if (tw > w[i % t->ncols])
      w[i % t->ncols] = tw;
  }
  for (size_t i = 0; i < t->n; i++) {
    size_t col = i % t->ncols;
    fputs(t->cells[i], f);
    if (col + 1 == t->ncols) {
      fputc('\n', f);
      continue;
    }
    for (size_t k = text_width(t->cells[i]); k < w[col] + 2; k++)
      fputc(' ', f);
  }
  free(w);
}

static void table_release(struct table *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->cells[i]);
  free(t->cells);
}

/* Print one query's rows (those `pg` picks); JSON as the value of `field` (the
   caller wrote the separator). Returns the row count, or -1 on error
   (reported). */
static long print_query(struct store *st, const struct section *sec,
                        enum fmt fmt, int many, const struct read_page *pg,
                        int *more, FILE *f) {
  struct store_cursor *c = NULL;
  struct ch_err err = {0};
  struct table t = {0};
  size_t col[32]; /* the columns printed, in order */
  /* JSON: one row, written at once; column i's `"name": ` is
     names.p[head[i] .. head[i + 1]) */
  struct buf row = {0}, names = {0};
  size_t head[33] = {0};
  size_t ncols;
  long rows = 0, seen = 0;
  int step;

  if (store_query(st, sec->query, &c, &err) != CH_OK) {
    log_error("%s", err.msg);
    return -1;
  }
  ncols = store_ncols(c);
  if (ncols > sizeof(col) / sizeof(col[0]))
    ncols = sizeof(col) / sizeof(col[0]);
  /* a table shows the brief's columns in the brief's order */
  for (size_t i = 0; i < ncols; i++)
    if (fmt != FMT_TABLE || !sec->brief ||
        word_in(sec->brief, store_col_name(c, i)))
      col[t.ncols++] = i;
  if (fmt == FMT_TABLE && sec->brief)
    brief_order(sec->brief, c, col, t.ncols);
  if (fmt == FMT_JSON) {
    json_str(f, sec->field);
    fputs(": [", f);
    /* the names once, not once a row (a who-has can be 20,000 rows) */
    for (size_t i = 0; i < ncols; i++) {
      head[i] = names.len;
      buf_puts(&names, i ? ", " : "");
      buf_json_str(&names, store_col_name(c, i), strlen(store_col_name(c, i)));
      buf_puts(&names, ": ");
    }
    head[ncols] = names.len;
    if (names.failed)
      goto nomem;
  } else if (fmt == FMT_TABLE && many) {
    fprintf(f, "%s== %s ==\n", rows ? "\n" : "", sec->field);
  }
  for (size_t k = 0; fmt != FMT_JSON && k < t.ncols; k++) {
    if (fmt == FMT_CSV)
      fprintf(f, "%s%s", k ? "," : "", store_col_name(c, col[k]));
    else if (table_add(&t, strdup(store_col_name(c, col[k]))))
      goto nomem;
  }
  if (fmt == FMT_CSV)
    fputs("\r\n", f);
  while ((step = store_next(c, &err)) == 1) {
    if (seen++ < pg->offset)
      continue;
    if (pg->limit >= 0 && rows >= pg->limit) {
      *more = 1; /* a row past the page: no need to count the rest */
      break;
    }
    if (fmt == FMT_JSON) {
      row.len = 0;
      buf_puts(&row, rows ? ",\n  {" : "\n  {");
      for (size_t i = 0; i < ncols; i++) {
        const char *v = store_col_text(c, i);
        enum store_kind k = store_col_kind(c, i);
        buf_add(&row, names.p + head[i], head[i + 1] - head[i]);
        if (!v)
          buf_puts(&row, "null");
        else if (k == STORE_JSON || k == STORE_INT)
          buf_puts(&row, v);
        else if (k == STORE_BOOL)
          buf_puts(&row, strcmp(v, "0") ? "true" : "false");
        else
          buf_json_str(&row, v, strlen(v));
      }
      buf_puts(&row, "}");
      if (row.failed)
        goto nomem;
      fwrite(row.p, 1, row.len, f);
    } else {
      for (size_t k = 0; k < t.ncols; k++) {
        char *v = cell_text(c, col[k]);
        if (fmt == FMT_CSV) {
          if (!v)
            goto nomem;
          if (k)
            fputc(',', f);
          csv_cell(f, v);
          free(v);
        } else if (table_add(&t, v)) {
          goto nomem;
        }
      }
      if (fmt == FMT_CSV)
        fputs("\r\n", f);
    }
    rows++;
  }
  if (step < 0) {
    log_error("%s", err.msg);
    rows = -1;
  }
  if (fmt == FMT_JSON)
    fputs(rows > 0 ? "\n]" : "]", f);
  else if (fmt == FMT_TABLE && rows >= 0)
    table_print(f, &t);
  store_cursor_free(c);
  table_release(&t);
  buf_free(&row);
  buf_free(&names);
  return rows;
nomem:
  log_error("out of memory");
  store_cursor_free(c);
  table_release(&t);
  buf_free(&row);
  buf_free(&names);
  return -1;
}

/* Instances answering from older data: a warning line each (and, in JSON,
   the "stale" field). */
static int print_stale(struct store *st, enum fmt fmt, FILE *f) {
  struct store_cursor *c = NULL;
  struct ch_err err = {0};
  int step, n = 0;

  if (store_query(st, "instances", &c, &err) != CH_OK) {
    log_error("%s", err.msg);
    return -1;
  }
  if (fmt == FMT_JSON)
    fputs("\"stale\": [", f);
  while ((step = store_next(c, &err)) == 1) {
    /* tenant, instance, plugin, status, error, data_run, data_at, age, stale */
    const char *tenant = store_col_text(c, 0), *inst = store_col_text(c, 1);
    const char *status = store_col_text(c, 3), *error = store_col_text(c, 4);
    const char *data_run = store_col_text(c, 5), *at = store_col_text(c, 6);
    const char *age = store_col_text(c, 7);
    if (strcmp(store_col_text(c, 8), "0") == 0)
      continue;
    if (fmt == FMT_JSON) {
      fputs(n ? ",\n  {\"tenant\": " : "\n  {\"tenant\": ", f);
      json_str(f, tenant);
      fputs(", \"instance\": ", f);
      json_str(f, inst);
      fputs(", \"status\": ", f);
      json_str(f, status);
      fputs(", \"error\": ", f);
      if (error)
        json_str(f, error);
      else
        fputs("null", f);
      fprintf(
          f, ", \"data_run\": %s, \"data_at\": ", data_run ? data_run : "null");
      if (at)
        json_str(f, at);
      else
        fputs("null", f);
      fprintf(f, ", \"age_seconds\": %s}", age ? age : "null");
    }
    if (!data_run)
      log_warn("%s/%s: %s (%s) and has no good data yet: it is missing from "
               "these answers",
               tenant, inst, status, error ? error : "no error recorded");
    else
      log_warn("%s/%s: %s in this run (%s): answering from its data of run "
               "%s, taken %s (%s s ago), marked stale",
               tenant, inst, status, error ? error : "not synced", data_run,
               at ? at : "?", age ? age : "?");
    n++;
  }
  if (fmt == FMT_JSON)
    fputs(n ? "\n]" : "]", f);
  store_cursor_free(c);
  if (step < 0) {
    log_error("%s", err.msg);
    return -1;
  }
  return n;
}

/* ---- the answer ---------------------------------------------------------- */

/* One command's answer from a selected store, in `fmt`. Returns the rows
   printed (for diff: the changes), or -1 (logged). A paged answer (limit
   not -1) sets `*next` to the offset of the first row left out of a
   section, -1 when none was; in JSON it says so per section. */
static long answer(struct store *st, const struct read_cmd *cmd, enum fmt fmt,
                   const struct read_page *pg, long *next, FILE *f) {
  const size_t nsec = sizeof(cmd->sections) / sizeof(cmd->sections[0]);
  int more[sizeof(cmd->sections) / sizeof(cmd->sections[0])] = {0};
  long changed = 0;

  if (fmt == FMT_JSON) {
    int64_t from, run = store_selected_run(st, &from);
    fprintf(f, "{\"command\": ");
    json_str(f, cmd->name);
    fprintf(f, ", \"run\": %" PRId64, run);
    if (strcmp(cmd->name, "diff") == 0)
      fprintf(f, ", \"from\": %" PRId64, from);
    fputs(",\n", f);
  }
  if (strcmp(cmd->name, "runs") != 0 && print_stale(st, fmt, f) < 0)
    return -1;
  *next = -1;
  for (size_t i = 0; i < nsec && cmd->sections[i].field; i++) {
    long n;
    int many = cmd->sections[1].field != NULL;
    if (fmt == FMT_JSON && (i || strcmp(cmd->name, "runs") != 0))
      fputs(",\n", f);
    if (fmt == FMT_TABLE && many && i)
      fputc('\n', f);
    if (fmt == FMT_CSV && many)
      fprintf(f, "%s# %s\r\n", i ? "\r\n" : "", cmd->sections[i].field);
    n = print_query(st, &cmd->sections[i], fmt, many, pg, &more[i], f);
    if (n < 0)
      return -1;
    changed += n;
    if (more[i])
      *next = pg->offset + pg->limit;
  }
  if (fmt == FMT_JSON && pg->limit >= 0) {
    fputs(",\n\"next_offset\": {", f);
    for (size_t i = 0; i < nsec && cmd->sections[i].field; i++) {
      fputs(i ? ", " : "", f);
      json_str(f, cmd->sections[i].field);
      if (more[i])
        fprintf(f, ": %ld", pg->offset + pg->limit);
      else
        fputs(": null", f);
    }
    fputc('}', f);
  }
  if (fmt == FMT_JSON)
    fputs("}\n", f);
  return changed;
}

int cmd_read_render(const char *db, const char *name,
                    const struct store_params *p, const char *format,
                    long offset, long limit, long *next, FILE *f,
                    struct ch_err *err) {
  const struct read_cmd *cmd = find_cmd(name);
  const struct read_page pg = {offset < 0 ? 0 : offset, limit};
  struct store *st = NULL;
  enum fmt fmt = FMT_JSON;
  long ignored;
  int rc;

  if (next)
    *next = -1;
  if (!cmd)
    return ch_err_set(err, CH_E_NOTFOUND, "no read command '%s'", name);
  if (format && strcmp(format, "csv") == 0)
    fmt = FMT_CSV;
  else if (format && strcmp(format, "json") != 0)
    return ch_err_set(err, CH_E_INVALID, "format must be json or csv, not '%s'",
                      format);
  rc = store_open(db, 0, &st, err);
  if (rc == CH_OK)
    rc = store_select(st, p, err);
  if (rc == CH_OK && answer(st, cmd, fmt, &pg, next ? next : &ignored, f) < 0)
    rc = ch_err_set(err, CH_E_IO, "reading the store failed (see the log)");
  store_close(st);
  return rc;
}

/* ---- the command --------------------------------------------------------- */

static const char read_usage[] =
    "usage: connhost COMMAND [--db PATH | -c FILE] [--run ID] [--tenant T]\n"
    "                [--format table|json|csv] [ARGS]\n"
    "\n"
    "Read the snapshot store (docs/store.md):\n"
    "  runs                       runs with per-instance status and counts\n"
    "  resources [--type T] [--search TEXT]\n"
    "  grants [--entitlement KEY] [--principal KEY]\n"
    "  access WHO                 everything an identity holds (WHO: a "
    "resource\n"
    "                             key, an email or an account id)\n"
    "  who-has WHAT               every holder of an entitlement key, or of\n"
    "                             every entitlement of a resource key\n"
    "  explain WHO WHAT           each path from WHO to WHAT\n"
    "  diff [--from RUN] [--to RUN] [--exit-code]\n"
    "                             what changed (default: the last two "
    "runs);\n"
    "                             --exit-code exits 1 when anything did\n"
    "  stats                      counts; the entitlements with most holders\n"
    "  export access-review       identity x entitlement rows (CSV default)\n"
    "  report                     disabled accounts holding grants, Jira\n"
    "                             accounts with no org account, customer "
    "and\n"
    "                             service accounts holding grants\n"
    "\n"
    "--db PATH reads that store; without it the store of the config (-c, "
    "else\n"
    "./connhost.yaml). --run picks a run (default: the latest; every "
    "command\n"
    "but runs; for diff it is --to). The format is table on a terminal, "
    "else\n"
    "json. An option that does not apply to the command is a usage error.\n";

static const struct option read_opts[] = {
    {"db", required_argument, NULL, RO_DB},
    {"config", required_argument, NULL, 'c'},
    {"run", required_argument, NULL, RO_RUN},
    {"tenant", required_argument, NULL, RO_TENANT},
    {"format", required_argument, NULL, RO_FORMAT},
    {"type", required_argument, NULL, RO_TYPE},
    {"search", required_argument, NULL, RO_SEARCH},
    {"entitlement", required_argument, NULL, RO_ENT},
    {"principal", required_argument, NULL, RO_PRINCIPAL},
    {"from", required_argument, NULL, RO_FROM},
    {"to", required_argument, NULL, RO_TO},
    {"exit-code", no_argument, NULL, RO_EXIT_CODE},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* "connhost CMD --help" for the read command being parsed: a usage error
   points to the help of the command the user typed. */
static char read_help[48] = "connhost runs --help";

#define read_usage_error(...) cli_usage_error(read_help, __VA_ARGS__)

/* The commands whose `opts` have `bit`, each after `prefix`, as "a, b". */
static void takers(unsigned bit, const char *prefix, char *list, size_t n) {
  size_t used = 0;

  list[0] = '\0';
  for (size_t i = 0; i < NCOMMANDS && used < n; i++) {
    if (commands[i].opts & bit)
      used += (size_t)snprintf(list + used, n - used, "%s%s%s",
                               used ? ", " : "", prefix, commands[i].name);
  }
}

/* The first option of `seen` (O(RO_...) bits) that does not apply to
   `cmd`, or NULL: --db, --tenant and --format apply to every command. */
static const struct option *not_applying(const struct read_cmd *cmd,
                                         unsigned seen,
                                         const struct option *opts) {
  const unsigned common = O(RO_DB) | O(RO_TENANT) | O(RO_FORMAT);

  for (const struct option *o = opts; o->name; o++) {
    if (o->val >= RO_DB && (seen & O(o->val)) &&
        !((cmd->opts | common) & O(o->val)))
      return o;
  }
  return NULL;
}

/* Every option given (`seen`, O(RO_...) bits) must apply to `cmd`, as in
   cli.c: none is silently ignored. Returns -1 to go on, or EXIT_USAGE. */
static int check_applies(const struct read_cmd *cmd, unsigned seen) {
  const struct option *bad = not_applying(cmd, seen, read_opts);
  char list[256];

  if (bad) {
    takers(O(bad->val), "", list, sizeof(list));
    return read_usage_error("--%s does not apply to '%s': it applies to %s",
                            bad->name, cmd->name, list);
  }
  if ((seen & O(RO_RUN)) && (seen & O(RO_TO)))
    return read_usage_error("give --to RUN or --run RUN, not both: for "
                            "'diff' they are the same");
  return -1;
}

/* The HTTP API's query arguments: the options of read_opts but those
   only the CLI has (--db, --exit-code; -c, -q, -h), and these: who and
   what (WHO and WHAT), limit and offset (paging, for every command). */
static const struct option api_extra[] = {
    {"who", required_argument, NULL, RO_WHO},
    {"what", required_argument, NULL, RO_WHAT},
    {"limit", required_argument, NULL, 0},
    {"offset", required_argument, NULL, 0},
    {NULL, 0, NULL, 0}};

static const struct option *api_arg(const char *name) {
  for (const struct option *o = read_opts; o->name; o++) {
    if (o->val > RO_DB && o->val != RO_EXIT_CODE && strcmp(o->name, name) == 0)
      return o;
  }
  for (const struct option *o = api_extra; o->name; o++) {
    if (strcmp(o->name, name) == 0)
      return o;
  }
  return NULL;
}

int cmd_read_check_args(const char *name, const char *const *args, size_t n,
                        const char *prefix, struct ch_err *err) {
  const struct read_cmd *cmd = find_cmd(name);
  unsigned seen = 0;
  const struct option *bad;
  char list[256];

  if (!cmd)
    return ch_err_set(err, CH_E_NOTFOUND, "no read command '%s'", name);
  for (size_t i = 0; i < n; i++) {
    const struct option *o = api_arg(args[i]);
    if (!o)
      return ch_err_set(err, CH_E_INVALID, "unknown query argument '%s'",
                        args[i]);
    if (o->val)
      seen |= O(o->val);
  }
  bad = not_applying(cmd, seen, read_opts);
  if (bad || (bad = not_applying(cmd, seen, api_extra))) {
    takers(O(bad->val), prefix, list, sizeof(list));
    return ch_err_set(err, CH_E_INVALID,
                      "'%s' does not apply to %s%s: it applies to %s",
                      bad->name, prefix, cmd->name, list);
  }
  if ((seen & O(RO_RUN)) && (seen & O(RO_TO)))
    return ch_err_set(err, CH_E_INVALID,
                      "give 'to' or 'run', not both: for %sdiff they are "
                      "the same",
                      prefix);
  return CH_OK;
}

static int parse_run(const char *s, int64_t *out) {
  char *end;
  long long v;

  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v <= 0)
    return -1;
  *out = v;
  return 0;
}

/* The store path (cli.h): --db, else the config's `store:`, in *out.
   Returns -1 to go on, else an exit code (logged): a config that does not
   load is a config error, as for every command; `store: none` is no
   store. */
int cmd_read_db_path(const char *db, const char *config_path, char **out) {
  struct config *cfg = NULL;
  struct ch_err err = {0};
  int rc = -1;

  *out = NULL;
  if (!db) {
    if (!config_path)
      config_path = "connhost.yaml";
    if (access(config_path, F_OK) != 0 &&
        strcmp(config_path, "connhost.yaml") == 0) {
      log_error("no --db PATH and no ./connhost.yaml: give the store with "
                "--db or the config with -c");
      return EXIT_USAGE;
    }
    if (config_load(config_path, &cfg, &err) != CH_OK) {
      log_error("%s", err.msg);
      return EXIT_USAGE;
    }
    db = cfg->store;
    if (!db) {
      log_error("%s: 'store: none': this config keeps no store (give --db)",
                cfg->path);
      rc = EXIT_FAIL;
    }
  }
  if (db && !(*out = strdup(db))) {
    log_error("out of memory");
    rc = EXIT_FAIL;
  }
  config_free(cfg);
  return rc;
}

int cmd_read_main(int argc, char **argv) {
  struct store_params p = {0};
  const char *db = NULL, *config_path = NULL, *pos[3] = {0};
  const struct read_cmd *cmd = NULL;
  struct store *st = NULL;
  struct ch_err err = {0};
  char *path = NULL;
  int fmt = -1, exit_code = 0, quiet = 0, npos = 0, c, rc = EXIT_FAIL;
  unsigned seen = 0; /* O(RO_...) of the options given */
  long changed = 0, next;
  FILE *f = stdout;
  const struct read_page all = {0, -1};
  const char *word = cmd_word(argc, argv);

  if (word && (cmd = find_cmd(word)))
    snprintf(read_help, sizeof(read_help), "connhost %s --help", cmd->name);
  cmd = NULL; /* found again below, with the arguments */
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":c:qh", read_opts, NULL)) != -1) {
    if (c >= RO_DB)
      seen |= O(c);
    switch (c) {
    case RO_DB:
      db = optarg;
      break;
    case 'c':
      config_path = optarg;
      break;
    case RO_RUN:
    case RO_FROM:
    case RO_TO:
      if (parse_run(optarg, c == RO_RUN    ? &p.run
                            : c == RO_FROM ? &p.from
                                           : &p.to))
        return read_usage_error("a run is a positive number, not '%s'", optarg);
      break;
    case RO_TENANT:
      p.tenant = optarg;
      break;
    case RO_FORMAT:
      if (strcmp(optarg, "table") == 0)
        fmt = FMT_TABLE;
      else if (strcmp(optarg, "json") == 0)
        fmt = FMT_JSON;
      else if (strcmp(optarg, "csv") == 0)
        fmt = FMT_CSV;
      else
        return read_usage_error("--format must be table, json or csv, not '%s'",
                                optarg);
      break;
    case RO_TYPE:
      p.type = optarg;
      break;
    case RO_SEARCH:
      p.search = optarg;
      break;
    case RO_ENT:
      p.entitlement = optarg;
      break;
    case RO_PRINCIPAL:
      p.principal = optarg;
      break;
    case RO_EXIT_CODE:
      exit_code = 1;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      fputs(read_usage, stdout);
      return EXIT_OK;
    case ':':
      return read_usage_error("option needs a value: '%s'", argv[optind - 1]);
    default:
      return cli_unknown_option(read_help, argv[optind - 1], read_opts,
                                sizeof(read_opts) / sizeof(read_opts[0]),
                                sizeof(read_opts[0]));
    }
  }
  for (; optind < argc; optind++) {
    if (!cmd) {
      cmd = find_cmd(argv[optind]);
      continue;
    }
    if (npos == (int)(sizeof(pos) / sizeof(pos[0])) || npos >= cmd->nargs)
      return read_usage_error("unexpected argument '%s'", argv[optind]);
    pos[npos++] = argv[optind];
  }
  if (!cmd)
    return read_usage_error("no command");
  if ((rc = check_applies(cmd, seen)) >= 0)
    return rc;
  rc = EXIT_FAIL;
  if (npos < cmd->nargs) {
    fprintf(stderr, "connhost: usage: connhost %s %s\n", cmd->name,
            cmd->args_help);
    return EXIT_USAGE;
  }
  if (strcmp(cmd->name, "export") == 0 && strcmp(pos[0], "access-review"))
    return read_usage_error("export knows 'access-review', not '%s'", pos[0]);
  if (strcmp(cmd->name, "access") == 0)
    p.who = pos[0];
  else if (strcmp(cmd->name, "who-has") == 0)
    p.what = pos[0];
  else if (strcmp(cmd->name, "explain") == 0) {
    p.who = pos[0];
    p.what = pos[1];
  }
  if (fmt < 0)
    fmt = cmd->csv_default        ? FMT_CSV
          : isatty(STDOUT_FILENO) ? FMT_TABLE
                                  : FMT_JSON;
  log_setup(CH_LOG_INFO, LOG_TEXT, quiet);

  if ((rc = cmd_read_db_path(db, config_path, &path)) >= 0)
    goto out;
  rc = EXIT_FAIL;
  if (store_open(path, 0, &st, &err) != CH_OK ||
      store_select(st, &p, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  changed = answer(st, cmd, (enum fmt)fmt, &all, &next, f);
  if (changed < 0)
    goto out;
  if (fflush(f) != 0 || ferror(f)) {
    log_error("writing the answer: %s", strerror(errno));
    goto out;
  }
  rc = exit_code && strcmp(cmd->name, "diff") == 0 && changed ? EXIT_FAIL
                                                              : EXIT_OK;
out:
  store_close(st);
  free(path);
  log_cleanup();
  return rc;
}
