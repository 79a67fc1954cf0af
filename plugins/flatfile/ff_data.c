/* SPDX-License-Identifier: MIT */
/* flatfile: loading the export (see ff_data.h and flatfile.c's top). */

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

#include <connhost/sdk.h>

#include "ff_data.h"

/* How each kind appears in the file and in the graph. */
static const char *const ff_user_fields[] = {
    "id",           "name",  "email",   "emails", "status",
    "account_type", "match", "profile", NULL};
static const char *const ff_group_fields[] = {
    "id", "name", "members", "member_groups", "profile", NULL};
static const char *const ff_role_fields[] = {
    "id", "name", "assigned_users", "assigned_groups", "profile", NULL};

const struct ff_kind_info ff_kinds[FF_NKINDS] = {
    {"user", "users", NULL, NULL, NULL, ff_user_fields},
    {"group", "groups", "member", "members", "member_groups", ff_group_fields},
    {"role", "roles", "assigned", "assigned_users", "assigned_groups",
     ff_role_fields}};

void ff_data_free(struct ff_data *d) {
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

struct ff_rec *ff_find(const struct ff_table *t, const char *id) {
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
int ff_data_load(const char *path, struct ff_data **out, struct ch_err *err) {
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
