/* SPDX-License-Identifier: MIT */
/* flatfile: serve one tenant's users, groups and roles from a JSON export. */

/*
 * This is the example plugin, written to be copied. Read it top to bottom:
 *
 *   1. the declarations the host reads before anything runs: options,
 *      resource types, the descriptor and the one exported symbol (at the
 *      end of the file);
 *   2. loading: the whole file is read, parsed and checked in open(), into
 *      plain C arrays that are never written again;
 *   3. the ops: list() and grants() serve one page per call, and the only
 *      position they know is the one in the page token they are given.
 *
 * Because the instance is read-only after open(), the host may call list()
 * and grants() from several worker threads at once without any locking.
 *
 * The file format is documented in docs/plugins/flatfile.md; in short:
 *
 *   {"users":  [{"id", "name", "email" | "emails", "status",
 *                "account_type", "match": {...}, "profile": {...}}],
 *    "groups": [{"id", "name", "members": [user ids],
 *                "member_groups": [group ids], "profile": {...}}],
 *    "roles":  [{"id", "name", "assigned_users": [user ids],
 *                "assigned_groups": [group ids], "profile": {...}}]}
 *
 * The source is read-only, so the plugin has no grant/revoke ops; a plugin
 * that can write sets them in the descriptor and adds CH_CAP_GRANT /
 * CH_CAP_REVOKE to the types they support (see docs/plugin-abi.md).
 */

/* -std=c11 hides POSIX: ask for open(), fstat() and the XSI strerror_r(). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include <connhost/plugin.h>

#include <connhost/sdk.h> /* the installed plugin SDK: copy this file out of tree */

#define FF_VERSION "1.0.0"
#define FF_PAGE_DEFAULT 100
#define FF_PAGE_MAX 10000
/* json-c needs several times the file size in memory; beyond this an
   export is better served by a plugin that streams. */
#define FF_FILE_MAX (256L * 1024 * 1024)

/* ---- what the host reads before open() ---------------------------------- */

/* The host validates the config against this table before open(): unknown
   keys, wrong types and a missing `path` never reach the plugin. It also
   applies the defaults and resolves `path` against the config file's
   directory. values[i] in struct ch_cfg belongs to ff_options[i]. */
static const struct ch_option ff_options[] = {
    {"path", CH_OPT_PATH, CH_OPT_REQUIRED, NULL,
     "the JSON export to serve (relative to the config file)"},
    {"page_size", CH_OPT_INT, 0, "100",
     "records per list/grants page, 1..10000"},
    {NULL, 0, 0, NULL, NULL}};

/* Groups and roles can be held by users directly and by groups; a group
   principal is expandable: its members inherit what it holds. */
static const char *const ff_user_or_group[] = {"user", "group", NULL};

static const struct ch_entitlement_def ff_user_ents[] = {{NULL, NULL, NULL}};
static const struct ch_entitlement_def ff_group_ents[] = {
    {"member", "Member", ff_user_or_group}, {NULL, NULL, NULL}};
static const struct ch_entitlement_def ff_role_ents[] = {
    {"assigned", "Assigned", ff_user_or_group}, {NULL, NULL, NULL}};

static const struct ch_resource_type ff_types[] = {
    /* Users carry no entitlements, so the host need not ask for their
       grants: one call per user saved. */
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = ff_user_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = "group",
     .display_name = "Group",
     .traits = CH_TRAIT_GROUP,
     .entitlements = ff_group_ents,
     .caps = CH_CAP_SYNC},
    {.id = "role",
     .display_name = "Role",
     .traits = CH_TRAIT_ROLE,
     .entitlements = ff_role_ents,
     .caps = CH_CAP_SYNC},
    {.id = NULL}};

/* ---- the data, as loaded ------------------------------------------------ */

/* The three record kinds; also the index into ff_kinds and ff_data.tab. */
enum ff_kind { FF_USER = 0, FF_GROUP, FF_ROLE, FF_NKINDS };

/* How each kind appears in the file and in the graph. */
struct ff_kind_info {
  const char *type;          /* resource type id */
  const char *key;           /* its top-level array in the file */
  const char *slug;          /* the entitlement it carries, or NULL */
  const char *users_key;     /* field naming the users holding it */
  const char *groups_key;    /* field naming the groups holding it */
  const char *const *fields; /* every field a record may have */
};

static const char *const ff_user_fields[] = {
    "id",           "name",  "email",   "emails", "status",
    "account_type", "match", "profile", NULL};
static const char *const ff_group_fields[] = {
    "id", "name", "members", "member_groups", "profile", NULL};
static const char *const ff_role_fields[] = {
    "id", "name", "assigned_users", "assigned_groups", "profile", NULL};

static const struct ff_kind_info ff_kinds[FF_NKINDS] = {
    {"user", "users", NULL, NULL, NULL, ff_user_fields},
    {"group", "groups", "member", "members", "member_groups", ff_group_fields},
    {"role", "roles", "assigned", "assigned_users", "assigned_groups",
     ff_role_fields}};

/*
 * One record. Strings marked "borrowed" point into the parsed JSON tree
 * that ff_data keeps alive: copying every string would double the memory
 * for nothing, since nobody touches the tree after open().
 */
struct ff_rec {
  const char *id;           /* borrowed */
  const char *name;         /* borrowed; NULL when the file has none */
  const char *profile_json; /* borrowed; NULL when the record has none */
  /* users only */
  enum ch_res_status status;
  enum ch_account_type account_type;
  const char **emails; /* NULL-terminated array; strings borrowed */
  char **match_keys;   /* NULL-terminated array; strings owned */
  /* groups and roles: who holds the entitlement (ids, borrowed) */
  const char **users;
  size_t nusers;
  const char **groups;
  size_t ngroups;
};

struct ff_table {
  struct ff_rec *recs; /* in file order, the order pages are served in */
  size_t n;
  struct ff_rec **byid; /* sorted by id: lookups and duplicate checks */
};

struct ff_data {
  json_object *root; /* owns every borrowed string */
  struct ff_table tab[FF_NKINDS];
};

/* One configured instance. Nothing in it changes after open(). */
struct ff_inst {
  const struct ch_host *host;
  struct ch_hctx *hc;
  char *path;
  size_t page_size;
  struct ff_data *data;
};

static void ff_data_free(struct ff_data *d) {
  if (!d)
    return;
  for (int k = 0; k < FF_NKINDS; k++) {
    struct ff_table *t = &d->tab[k];
    for (size_t i = 0; i < t->n; i++) {
      struct ff_rec *r = &t->recs[i];
      for (size_t j = 0; r->match_keys && r->match_keys[j]; j++)
        free(r->match_keys[j]);
      free(r->match_keys);
      free(r->emails);
      free(r->users);
      free(r->groups);
    }
    free(t->recs);
    free(t->byid);
  }
  json_object_put(d->root);
  free(d);
}

/* ---- loading: errors ----------------------------------------------------- */

/* Where a load error points: the file, and the record being read. */
struct ff_load {
  const char *file; /* the file's basename: the host prefix names the
                       instance, whose config names the full path */
  enum ff_kind kind;
  size_t idx;
  const char *id; /* NULL until the record's id is known */
  struct ch_err *err;
};

static const char *ff_basename(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Fail the load naming the record: "x.json: groups[2] 'eng': <what>".
   Every data error is CH_E_CONFIG: the file is configuration. */
static int ff_bad(struct ff_load *ld, const char *fmt, ...) CH_PRINTF(2, 3);
static int ff_bad(struct ff_load *ld, const char *fmt, ...) {
  char what[CH_ERR_MSG_SIZE];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  if (ld->id)
    return ch_err_set(ld->err, CH_E_CONFIG, "%s: %s[%zu] '%s': %s", ld->file,
                      ff_kinds[ld->kind].key, ld->idx, ld->id, what);
  return ch_err_set(ld->err, CH_E_CONFIG, "%s: %s[%zu]: %s", ld->file,
                    ff_kinds[ld->kind].key, ld->idx, what);
}

/* "cannot open 'x': No such file or directory". strerror() may use a
   shared buffer, and check() can run while other threads log. */
static int ff_syserr(struct ch_err *err, const char *what, const char *path,
                     int errnum) {
  char why[128];

  if (strerror_r(errnum, why, sizeof(why)))
    snprintf(why, sizeof(why), "error %d", errnum);
  return ch_err_set(err, CH_E_CONFIG, "%s '%s': %s", what, path, why);
}

/* ---- loading: the file --------------------------------------------------- */

static int ff_too_big(struct ch_err *err, const char *path) {
  return ch_err_set(err, CH_E_LIMIT, "'%s' is larger than %ld MiB", path,
                    FF_FILE_MAX / (1024 * 1024));
}

/* Read all of `path` into a NUL-terminated buffer. */
static int ff_read_file(const char *path, char **textp, size_t *lenp,
                        struct ch_err *err) {
  struct stat st;
  char *text = NULL;
  size_t len = 0;
  size_t cap;
  int fd;
  int rc = CH_E_CONFIG;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ff_syserr(err, "cannot open", path, errno);
    goto out;
  }
  if (fstat(fd, &st)) {
    ff_syserr(err, "cannot stat", path, errno);
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    ch_err_set(err, CH_E_CONFIG, "'%s' is not a regular file", path);
    goto out;
  }
  if (st.st_size > FF_FILE_MAX) {
    rc = ff_too_big(err, path);
    goto out;
  }
  /* st_size is a hint only: the export may still be being written. */
  cap = (size_t)st.st_size + 1;
  text = malloc(cap);
  if (!text) {
    rc = pj_nomem(err);
    goto out;
  }
  for (;;) {
    ssize_t got;

    if (len + 1 == cap) {
      char *grown;
      if (len >= (size_t)FF_FILE_MAX) {
        rc = ff_too_big(err, path);
        goto out;
      }
      cap *= 2;
      grown = realloc(text, cap);
      if (!grown) {
        rc = pj_nomem(err);
        goto out;
      }
      text = grown;
    }
    got = read(fd, text + len, cap - 1 - len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      ff_syserr(err, "cannot read", path, errno);
      goto out;
    }
    if (got == 0)
      break;
    len += (size_t)got;
  }
  text[len] = '\0';
  *textp = text;
  *lenp = len;
  text = NULL;
  rc = CH_OK;
out:
  if (fd >= 0)
    close(fd);
  free(text);
  return rc;
}

/* Name a byte offset the way editors do: "x.json:12:5". Columns count
   bytes, which is what the offset in the message counts too. */
static int ff_json_err(struct ch_err *err, const char *file, const char *text,
                       size_t off, const char *why) {
  size_t line = 1;
  size_t col = 1;

  for (size_t i = 0; i < off; i++) {
    if (text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return ch_err_set(err, CH_E_CONFIG,
                    "%s:%zu:%zu: malformed JSON: %s (byte %zu)", file, line,
                    col, why, off);
}

/* Parse `text` (NUL-terminated, `len` bytes) into its top-level object. */
static int ff_parse(const char *file, const char *text, size_t len,
                    json_object **rootp, struct ch_err *err) {
  struct json_tokener *tok = NULL;
  json_object *root = NULL;
  const char *nul;
  size_t skip = 0;
  size_t end;
  int rc = CH_E_CONFIG;

  /* Exports saved by Windows tools often start with a UTF-8 BOM, which
     JSON forbids but which means nothing: skip it. */
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
    skip = 3;
  /* json-c stops at a NUL byte as if the document ended there, which would
     be reported as a confusing truncation. */
  nul = memchr(text, '\0', len);
  if (nul) {
    ff_json_err(err, file, text, (size_t)(nul - text), "NUL byte in the file");
    goto out;
  }
  tok = json_tokener_new();
  if (!tok) {
    rc = pj_nomem(err);
    goto out;
  }
#ifdef JSON_TOKENER_VALIDATE_UTF8
  /* The ABI says every string is UTF-8: reject anything else here, with a
     position, rather than pass it on. */
  json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
#endif
  /* Passing the terminating NUL tells the tokener the input ends there, so
     a cut-off document is "unexpected end of data", not "continue". */
  root = json_tokener_parse_ex(tok, text + skip, (int)(len - skip + 1));
  end = skip + json_tokener_get_parse_end(tok);
  if (json_tokener_get_error(tok) != json_tokener_success) {
    ff_json_err(err, file, text, end,
                json_tokener_error_desc(json_tokener_get_error(tok)));
    goto out;
  }
  while (end < len && strchr(" \t\r\n", text[end]))
    end++;
  if (end < len) {
    ff_json_err(err, file, text, end, "data after the top-level object");
    goto out;
  }
  if (!json_object_is_type(root, json_type_object)) {
    ch_err_set(err, CH_E_CONFIG, "%s: the top level must be a JSON object",
               file);
    goto out;
  }
  *rootp = root;
  root = NULL;
  rc = CH_OK;
out:
  json_object_put(root);
  if (tok)
    json_tokener_free(tok);
  return rc;
}

/* ---- loading: records ---------------------------------------------------- */

/* A string field: CH_OK with *out NULL when absent. Present means a
   non-empty string without NUL bytes (C strings cannot carry them). */
static int ff_get_str(struct ff_load *ld, json_object *obj, const char *key,
                      const char **out) {
  json_object *v;
  const char *s;

  *out = NULL;
  if (!json_object_object_get_ex(obj, key, &v))
    return CH_OK;
  if (!json_object_is_type(v, json_type_string))
    return ff_bad(ld, "\"%s\" must be a string", key);
  s = json_object_get_string(v);
  if (!*s)
    return ff_bad(ld, "\"%s\" must not be empty", key);
  if (strlen(s) != (size_t)json_object_get_string_len(v))
    return ff_bad(ld, "\"%s\" contains a NUL character", key);
  *out = s;
  return CH_OK;
}

/* A list of strings: a NULL-terminated array (borrowed strings) and its
   length; absent means empty. A repeated entry is an error: it is almost
   always a bug in whatever wrote the export. */
static int ff_get_list(struct ff_load *ld, json_object *obj, const char *key,
                       const char ***out, size_t *nout) {
  json_object *arr;
  const char **list = NULL;
  const char **sorted = NULL;
  size_t n;
  int rc = CH_E_CONFIG;

  *out = NULL;
  *nout = 0;
  if (!json_object_object_get_ex(obj, key, &arr))
    return CH_OK;
  if (!json_object_is_type(arr, json_type_array))
    return ff_bad(ld, "\"%s\" must be an array of strings", key);
  n = json_object_array_length(arr);
  list = calloc(n + 1, sizeof(*list));
  sorted = calloc(n + 1, sizeof(*sorted));
  if (!list || !sorted) {
    rc = pj_nomem(ld->err);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(arr, i);
    if (!json_object_is_type(v, json_type_string) ||
        !*json_object_get_string(v) ||
        strlen(json_object_get_string(v)) !=
            (size_t)json_object_get_string_len(v)) {
      ff_bad(ld, "\"%s\"[%zu] must be a non-empty string", key, i);
      goto out;
    }
    list[i] = sorted[i] = json_object_get_string(v);
  }
  qsort(sorted, n, sizeof(*sorted), pj_cmp_str);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(sorted[i - 1], sorted[i]) == 0) {
      ff_bad(ld, "\"%s\" lists '%s' twice", key, sorted[i]);
      goto out;
    }
  }
  *out = list;
  *nout = n;
  list = NULL;
  rc = CH_OK;
out:
  free(list);
  free(sorted);
  return rc;
}

/* Look `s` up in a NULL-terminated table of names; -1 when absent. */
static int ff_lookup(const char *const *names, const char *s) {
  for (int i = 0; names[i]; i++) {
    if (strcmp(names[i], s) == 0)
      return i;
  }
  return -1;
}

/* "key=value", with the key optionally lowercased on the way. */
static char *ff_match_key(const char *key, const char *value, int lower) {
  size_t klen = strlen(key);
  size_t vlen = strlen(value);
  char *s = malloc(klen + vlen + 2);

  if (!s)
    return NULL;
  memcpy(s, key, klen);
  s[klen] = '=';
  for (size_t i = 0; i <= vlen; i++) {
    char c = value[i];
    s[klen + 1 + i] = lower && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
  }
  return s;
}

/* The user-only fields: emails, status, account type, match keys. */
static int ff_load_user(struct ff_load *ld, json_object *obj,
                        struct ff_rec *r) {
  static const char *const statuses[] = {"enabled", "disabled", NULL};
  static const char *const account_types[] = {"human", "service", "customer",
                                              NULL};
  const char *email;
  const char *s;
  json_object *match = NULL;
  size_t nemails = 0;
  size_t nmatch = 0;
  size_t k = 0;
  int idx;
  int rc;

  rc = ff_get_str(ld, obj, "email", &email);
  if (rc)
    return rc;
  if (email && json_object_object_get_ex(obj, "emails", NULL))
    return ff_bad(ld, "give \"email\" or \"emails\", not both");
  if (email) {
    r->emails = calloc(2, sizeof(*r->emails));
    if (!r->emails)
      return pj_nomem(ld->err);
    r->emails[0] = email;
    nemails = 1;
  } else {
    rc = ff_get_list(ld, obj, "emails", &r->emails, &nemails);
    if (rc)
      return rc;
  }
  for (size_t i = 0; i < nemails; i++) {
    if (!strchr(r->emails[i], '@'))
      return ff_bad(ld, "email '%s' has no '@'", r->emails[i]);
  }

  rc = ff_get_str(ld, obj, "status", &s);
  if (rc)
    return rc;
  idx = s ? ff_lookup(statuses, s) : 0;
  if (idx < 0)
    return ff_bad(
        ld, "\"status\" must be \"enabled\" or \"disabled\", not '%s'", s);
  r->status = idx == 0 ? CH_RES_ENABLED : CH_RES_DISABLED;

  rc = ff_get_str(ld, obj, "account_type", &s);
  if (rc)
    return rc;
  idx = s ? ff_lookup(account_types, s) : 0;
  if (idx < 0)
    return ff_bad(ld,
                  "\"account_type\" must be \"human\", \"service\" or "
                  "\"customer\", not '%s'",
                  s);
  r->account_type = idx == 0   ? CH_ACCOUNT_HUMAN
                    : idx == 1 ? CH_ACCOUNT_SERVICE
                               : CH_ACCOUNT_CUSTOMER;

  if (json_object_object_get_ex(obj, "match", &match) &&
      !json_object_is_type(match, json_type_object))
    return ff_bad(ld, "\"match\" must be an object of strings");
  if (match)
    nmatch = (size_t)json_object_object_length(match);

  /* Match keys are how the host merges this user with the same person in
     other instances of the tenant. Every email is one; addresses compare
     case-insensitively in practice, so the key is lowercased (the emails
     themselves are emitted as written). */
  r->match_keys = calloc(nemails + nmatch + 1, sizeof(*r->match_keys));
  if (!r->match_keys)
    return pj_nomem(ld->err);
  for (size_t i = 0; i < nemails; i++) {
    r->match_keys[k] = ff_match_key("email", r->emails[i], 1);
    if (!r->match_keys[k++])
      return pj_nomem(ld->err);
  }
  if (match) {
    json_object_object_foreach(match, name, val) {
      const char *v = json_object_get_string(val);
      if (!pj_valid_name(name))
        return ff_bad(ld, "match key '%s' must match [a-z0-9_]+", name);
      if (!json_object_is_type(val, json_type_string) || !*v ||
          strlen(v) != (size_t)json_object_get_string_len(val))
        return ff_bad(ld, "match key '%s' must be a non-empty string", name);
      r->match_keys[k] = ff_match_key(name, v, 0);
      if (!r->match_keys[k++])
        return pj_nomem(ld->err);
    }
  }
  return CH_OK;
}

/* Read one record of `ld->kind` from `obj`. On error the caller frees what
   was already attached to `r` (ff_data_free). */
static int ff_load_rec(struct ff_load *ld, json_object *obj, struct ff_rec *r) {
  const struct ff_kind_info *ki = &ff_kinds[ld->kind];
  json_object *profile;
  int rc;

  if (!json_object_is_type(obj, json_type_object))
    return ff_bad(ld, "must be an object");
  rc = ff_get_str(ld, obj, "id", &r->id);
  if (rc)
    return rc;
  if (!r->id)
    return ff_bad(ld, "missing \"id\"");
  ld->id = r->id;
  /* Unknown fields are errors: a typo such as "member" for "members" would
     otherwise silently drop every grant of the record. */
  {
    json_object_object_foreach(obj, key, val) {
      (void)val;
      if (ff_lookup(ki->fields, key) < 0)
        return ff_bad(ld,
                      "unknown field '%s' (put extra attributes in "
                      "\"profile\")",
                      key);
    }
  }
  rc = ff_get_str(ld, obj, "name", &r->name);
  if (rc)
    return rc;
  if (json_object_object_get_ex(obj, "profile", &profile)) {
    if (!json_object_is_type(profile, json_type_object))
      return ff_bad(ld, "\"profile\" must be an object");
    /* The text is cached inside `profile`, which the tree keeps alive. */
    r->profile_json = json_object_to_json_string_ext(
        profile, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!r->profile_json)
      return pj_nomem(ld->err);
  }
  if (ld->kind == FF_USER)
    return ff_load_user(ld, obj, r);
  rc = ff_get_list(ld, obj, ki->users_key, &r->users, &r->nusers);
  if (rc)
    return rc;
  return ff_get_list(ld, obj, ki->groups_key, &r->groups, &r->ngroups);
}

static int ff_cmp_rec(const void *a, const void *b) {
  const struct ff_rec *ra = *(const struct ff_rec *const *)a;
  const struct ff_rec *rb = *(const struct ff_rec *const *)b;
  return strcmp(ra->id, rb->id);
}

static struct ff_rec *ff_find(const struct ff_table *t, const char *id) {
  struct ff_rec key = {.id = id};
  const struct ff_rec *kp = &key;
  struct ff_rec **hit;

  if (!t->n)
    return NULL; /* an absent table has no index to search */
  hit = bsearch(&kp, t->byid, t->n, sizeof(*t->byid), ff_cmp_rec);
  return hit ? *hit : NULL;
}

/* Load one top-level array and index it by id. */
static int ff_load_table(const char *file, json_object *root, enum ff_kind k,
                         struct ff_table *t, struct ch_err *err) {
  struct ff_load ld = {.file = file, .kind = k, .err = err};
  json_object *arr;
  size_t n;
  int rc;

  if (!json_object_object_get_ex(root, ff_kinds[k].key, &arr))
    return CH_OK;
  if (!json_object_is_type(arr, json_type_array))
    return ch_err_set(err, CH_E_CONFIG, "%s: \"%s\" must be an array", file,
                      ff_kinds[k].key);
  n = json_object_array_length(arr);
  t->recs = calloc(n ? n : 1, sizeof(*t->recs));
  t->byid = calloc(n ? n : 1, sizeof(*t->byid));
  if (!t->recs || !t->byid)
    return pj_nomem(err);
  for (size_t i = 0; i < n; i++) {
    ld.idx = i;
    ld.id = NULL;
    t->n = i + 1; /* so ff_data_free sees what this record attached */
    rc = ff_load_rec(&ld, json_object_array_get_idx(arr, i), &t->recs[i]);
    if (rc)
      return rc;
    t->byid[i] = &t->recs[i];
  }
  qsort(t->byid, n, sizeof(*t->byid), ff_cmp_rec);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(t->byid[i - 1]->id, t->byid[i]->id) == 0) {
      size_t a = (size_t)(t->byid[i - 1] - t->recs);
      size_t b = (size_t)(t->byid[i] - t->recs);
      ld.idx = a > b ? a : b;
      ld.id = t->byid[i]->id;
      return ff_bad(&ld, "duplicate id (also %s[%zu])", ff_kinds[k].key,
                    a < b ? a : b);
    }
  }
  return CH_OK;
}

/* Every member and assignment must name a user or group of the file: a
   dangling reference would be a grant to nobody. */
static int ff_check_refs(const char *file, struct ff_data *d, enum ff_kind k,
                         struct ch_err *err) {
  const struct ff_table *t = &d->tab[k];
  const struct ff_kind_info *ki = &ff_kinds[k];
  struct ff_load ld = {.file = file, .kind = k, .err = err};

  for (size_t i = 0; i < t->n; i++) {
    const struct ff_rec *r = &t->recs[i];
    ld.idx = i;
    ld.id = r->id;
    for (size_t j = 0; j < r->nusers; j++) {
      if (!ff_find(&d->tab[FF_USER], r->users[j]))
        return ff_bad(&ld,
                      "\"%s\" names '%s', which is not a user in the "
                      "file",
                      ki->users_key, r->users[j]);
    }
    for (size_t j = 0; j < r->ngroups; j++) {
      if (!ff_find(&d->tab[FF_GROUP], r->groups[j]))
        return ff_bad(&ld,
                      "\"%s\" names '%s', which is not a group in the "
                      "file",
                      ki->groups_key, r->groups[j]);
    }
  }
  return CH_OK;
}

/* Read, parse and check `path`. On success *out is read-only data. */
static int ff_data_load(const char *path, struct ff_data **out,
                        struct ch_err *err) {
  static const char *const top_keys[] = {"flatfile", "users", "groups", "roles",
                                         NULL};
  const char *file = ff_basename(path);
  struct ff_data *d = NULL;
  char *text = NULL;
  size_t len = 0;
  json_object *version;
  int rc;

  *out = NULL;
  rc = ff_read_file(path, &text, &len, err);
  if (rc)
    goto out;
  d = calloc(1, sizeof(*d));
  if (!d) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ff_parse(file, text, len, &d->root, err);
  if (rc)
    goto out;
  rc = CH_E_CONFIG;
  {
    json_object_object_foreach(d->root, key, val) {
      (void)val;
      if (ff_lookup(top_keys, key) < 0) {
        ch_err_set(err, CH_E_CONFIG,
                   "%s: unknown top-level key '%s' (expected \"users\", "
                   "\"groups\", \"roles\")",
                   file, key);
        goto out;
      }
    }
  }
  /* An optional format version, so a later format can be told apart. */
  if (json_object_object_get_ex(d->root, "flatfile", &version) &&
      (!json_object_is_type(version, json_type_int) ||
       json_object_get_int64(version) != 1)) {
    ch_err_set(err, CH_E_CONFIG,
               "%s: unsupported \"flatfile\" format version (this plugin "
               "reads version 1)",
               file);
    goto out;
  }
  for (int k = 0; k < FF_NKINDS; k++) {
    rc = ff_load_table(file, d->root, (enum ff_kind)k, &d->tab[k], err);
    if (rc)
      goto out;
  }
  rc = ff_check_refs(file, d, FF_GROUP, err);
  if (rc)
    goto out;
  rc = ff_check_refs(file, d, FF_ROLE, err);
  if (rc)
    goto out;
  *out = d;
  d = NULL;
out:
  ff_data_free(d);
  free(text);
  return rc;
}

/* ---- page tokens --------------------------------------------------------- */

/*
 * A page token is the offset of the page's first item, {"o":300}. The host
 * treats it as opaque text, stores it with the next action and hands it
 * back, maybe to another thread: the instance itself never remembers where
 * a listing is. No token means the first page.
 */
static int ff_token_offset(const char *token, size_t n, size_t *off,
                           struct ch_err *err) {
  json_object *o;
  long long v;

  *off = 0;
  if (!token || !*token)
    return CH_OK;
  o = pj_token_decode(token, err);
  if (!o)
    return CH_E_INVALID;
  v = pj_int(o, "o", -1);
  json_object_put(o);
  /* We never hand out a token for an empty page or past the end. */
  if (v <= 0 || (unsigned long long)v >= n)
    return ch_err_set(err, CH_E_INVALID, "page token is not valid");
  *off = (size_t)v;
  return CH_OK;
}

static int ff_token_next(struct ch_sink *sink, size_t off, struct ch_err *err) {
  json_object *o = json_object_new_object();
  json_object *v = json_object_new_int64((int64_t)off);
  const char *text;
  int rc = CH_E_NOMEM;

  if (!o || !v || json_object_object_add(o, "o", v))
    goto out;
  v = NULL; /* `o` owns it now */
  text = pj_json_text(o);
  if (!text)
    goto out;
  rc = sink->next_page(sink, text) ? CH_E_STOPPED : CH_OK;
out:
  json_object_put(v);
  json_object_put(o);
  if (rc == CH_E_NOMEM)
    return pj_nomem(err);
  if (rc == CH_E_STOPPED)
    return ch_err_set(err, rc, "stopped by the host");
  return rc;
}

/* ---- ops ----------------------------------------------------------------- */

static void ff_close(void *vinst) {
  struct ff_inst *fi = vinst;

  if (!fi)
    return;
  ff_data_free(fi->data);
  free(fi->path);
  free(fi);
}

static int ff_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  struct ff_inst *fi = NULL;
  const char *path = pj_opt_str(cfg, ff_options, "path", NULL);
  long long page_size =
      pj_opt_num(cfg, ff_options, "page_size", FF_PAGE_DEFAULT);
  const struct ff_data *d;
  int rc;

  *instp = NULL;
  /* The host enforces CH_OPT_REQUIRED; checking again keeps the plugin
     safe under any host, including the unit tests' fake one. */
  if (!path || !*path) {
    rc = ch_err_set(err, CH_E_CONFIG, "option 'path' is required");
    goto out;
  }
  if (page_size < 1 || page_size > FF_PAGE_MAX) {
    rc = ch_err_set(err, CH_E_CONFIG,
                    "option 'page_size' must be 1..%d, not %lld", FF_PAGE_MAX,
                    page_size);
    goto out;
  }
  fi = calloc(1, sizeof(*fi));
  if (!fi) {
    rc = pj_nomem(err);
    goto out;
  }
  fi->host = host;
  fi->hc = hc;
  fi->page_size = (size_t)page_size;
  /* `cfg` is borrowed for this call only: keep a copy of the path for
     check(). */
  fi->path = strdup(path);
  if (!fi->path) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ff_data_load(fi->path, &fi->data, err);
  if (rc)
    goto out;
  d = fi->data;
  host->log(hc, CH_LOG_INFO,
            "loaded %zu users, %zu groups, %zu roles from '%s'",
            d->tab[FF_USER].n, d->tab[FF_GROUP].n, d->tab[FF_ROLE].n, fi->path);
  *instp = fi;
  fi = NULL;
out:
  ff_close(fi);
  return rc;
}

/* Re-read the file: it is what "the credentials still work" means for a
   file. The served data stays the snapshot open() took, so a sync in
   progress never sees two versions of the file. */
static int ff_check(void *vinst, struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  struct ff_data *fresh = NULL;
  int rc;

  rc = ff_data_load(fi->path, &fresh, err);
  if (rc == CH_OK)
    fi->host->log(fi->hc, CH_LOG_DEBUG,
                  "'%s' is valid: %zu users, %zu groups, %zu roles", fi->path,
                  fresh->tab[FF_USER].n, fresh->tab[FF_GROUP].n,
                  fresh->tab[FF_ROLE].n);
  ff_data_free(fresh);
  return rc;
}

static int ff_kind_of(const char *type) {
  for (int k = 0; k < FF_NKINDS; k++) {
    if (strcmp(ff_kinds[k].type, type) == 0)
      return k;
  }
  return -1;
}

/* Hand one record to the host. The struct and everything it points to
   only need to live until the callback returns: the host copies. */
static int ff_emit(struct ch_sink *sink, enum ff_kind k,
                   const struct ff_rec *r) {
  struct ch_resource res = {0};

  res.type = ff_kinds[k].type;
  res.id = r->id;
  res.display_name = r->name ? r->name : r->id;
  res.status = r->status;
  res.account_type = r->account_type;
  res.emails = r->emails;
  res.match_keys = (const char *const *)r->match_keys;
  res.profile_json = r->profile_json;
  return sink->resource(sink, &res);
}

static int ff_list(void *vinst, const char *type, const struct ch_ref *parent,
                   const char *page_token, struct ch_sink *sink,
                   struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  const struct ff_table *t;
  size_t off;
  size_t end;
  int k = ff_kind_of(type);
  int rc;

  if (k < 0)
    return ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'", type);
  if (parent)
    return ch_err_set(err, CH_E_INVALID, "type '%s' has no parent", type);
  t = &fi->data->tab[k];
  rc = ff_token_offset(page_token, t->n, &off, err);
  if (rc)
    return rc;
  end = t->n - off < fi->page_size ? t->n : off + fi->page_size;
  for (size_t i = off; i < end; i++) {
    if (ff_emit(sink, (enum ff_kind)k, &t->recs[i]))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  /* Only a page that is not the last one gets a token. */
  if (end < t->n)
    return ff_token_next(sink, end, err);
  return CH_OK;
}

/*
 * The grants on one group's "member" or one role's "assigned": first the
 * users, then the groups, paged as one list. A group holding an entitlement
 * is marked expandable through its own "member": the host then gives each
 * of that group's members (nested groups included) a derived grant.
 */
static int ff_grants(void *vinst, const struct ch_ref *resource,
                     const char *page_token, struct ch_sink *sink,
                     struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  const struct ff_rec *r;
  size_t total;
  size_t off;
  size_t end;
  int k = ff_kind_of(resource->type);
  int rc;

  if (k < 0)
    return ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'",
                      resource->type);
  if (k == FF_USER)
    return CH_OK; /* users carry no entitlements */
  r = ff_find(&fi->data->tab[k], resource->id);
  if (!r)
    return ch_err_set(err, CH_E_NOTFOUND, "%s '%s' is not in the file",
                      resource->type, resource->id);
  total = r->nusers + r->ngroups;
  rc = ff_token_offset(page_token, total, &off, err);
  if (rc)
    return rc;
  end = total - off < fi->page_size ? total : off + fi->page_size;
  for (size_t i = off; i < end; i++) {
    struct ch_grant g = {0};

    g.resource.type = ff_kinds[k].type;
    g.resource.id = r->id;
    g.slug = ff_kinds[k].slug;
    if (i < r->nusers) {
      g.principal.type = "user";
      g.principal.id = r->users[i];
    } else {
      g.principal.type = "group";
      g.principal.id = r->groups[i - r->nusers];
      g.flags = CH_GRANT_EXPANDABLE;
      g.expand_slug = "member";
    }
    if (sink->grant(sink, &g))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  if (end < total)
    return ff_token_next(sink, end, err);
  return CH_OK;
}

/* ---- the descriptor and the one exported symbol ------------------------- */

/* Ops left out (grant, revoke, provision_account, action) are NULL: the
   host reports them as unsupported for this plugin. */
static const struct ch_plugin ff_plugin = {
    CH_PLUGIN_INIT,
    .name = "flatfile",
    .version = FF_VERSION,
    .description = "users, groups and roles from a local JSON export",
    .options = ff_options,
    .types = ff_types,
    .actions = NULL,
    .open = ff_open,
    .close = ff_close,
    .check = ff_check,
    .list = ff_list,
    .grants = ff_grants,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  /* A host speaking another ABI gets nothing rather than a descriptor it
     would misread. */
  return host_abi == CH_PLUGIN_ABI ? &ff_plugin : NULL;
}
