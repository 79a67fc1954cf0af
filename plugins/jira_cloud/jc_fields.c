/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: issue metadata (createmeta, field names, values). */
#include "autoconfig.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "jc.h"

/*
 * Tickets name fields the way people do ("Access Level", "Components"),
 * Jira takes them by id with values shaped by each field's schema. This
 * file reads the metadata (createmeta pages) and turns the operator's
 * NAME=VALUE text into the JSON a create or an edit sends, with an error
 * naming the field when the text does not fit.
 */

#define JF_CAP_META 200 /* createmeta maxResults limit (spec: maximum 200) */
/* More pages than a site has issue types or fields (40,000 at the cap)
   means a server that does not stop: fail instead of looping. */
#define JF_MAX_PAGES 200

/*
 * GET every page of a createmeta listing (`url` without paging) and
 * collect the `member` arrays into *items (new array); `alt` (or NULL) is
 * the member's other name in the spec (PageOfCreateMetaIssueTypeWithField
 * declares both `fields` and `results`). A dry run gives *items NULL and
 * CH_OK.
 */
static int jf_get_pages(struct jc_inst *in, const char *url, const char *member,
                        const char *alt, const char *what, json_object **items,
                        struct ch_err *err) {
  struct pj_buf b = {0};
  json_object *page = NULL, *all = NULL;
  long long start = 0, max = jc_page(in, JF_CAP_META);
  long status;
  int rc = CH_OK;

  *items = NULL;
  if (!(all = json_object_new_array()))
    return pj_nomem(err);
  for (int pages = 0;; pages++) {
    json_object *arr;
    size_t n;
    if (pages == JF_MAX_PAGES || in->host->stopping(in->hc)) {
      rc = pages == JF_MAX_PAGES
               ? ch_err_set(err, CH_E_LIMIT, "%s: more than %d pages", what,
                            JF_MAX_PAGES)
               : ch_err_set(err, CH_E_STOPPED, "stopping");
      goto out;
    }
    b.len = 0;
    if (pj_buf_add(&b, url) || jc_param_ll(&b, "startAt", start) ||
        jc_param_ll(&b, "maxResults", max)) {
      rc = pj_nomem(err);
      goto out;
    }
    json_object_put(page);
    page = NULL;
    rc = jc_request(in, "GET", b.s, NULL, 0, what, &status, &page, err);
    if (rc)
      goto out;
    if (status == 0) { /* dry run */
      json_object_put(all);
      all = NULL;
      goto out;
    }
    if (!(arr = pj_arr(page, member)) && !(alt && (arr = pj_arr(page, alt)))) {
      rc = ch_err_set(err, CH_E_PROTOCOL, "%s: no '%s' array in the answer",
                      what, member);
      goto out;
    }
    n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++)
      json_object_array_add(all,
                            json_object_get(json_object_array_get_idx(arr, i)));
    start += (long long)n;
    /* `total` is optional (PageOfCreateMetaIssueTypes): without it only an
       empty page ends the listing */
    if (n == 0 || start >= pj_int(page, "total", LLONG_MAX))
      break;
  }
out:
  if (rc == CH_OK)
    *items = all;
  else
    json_object_put(all);
  json_object_put(page);
  pj_buf_free(&b);
  return rc;
}

int jc_issue_types(struct jc_inst *in, const char *project, json_object **types,
                   struct ch_err *err) {
  struct pj_buf b = {0}, what = {0};
  int rc;

  if (jc_url(in, &b, "/rest/api/3/issue/createmeta/") ||
      pj_buf_add_enc(&b, in->host, project) || pj_buf_add(&b, "/issuetypes") ||
      pj_buf_addf(&what, "issue types of %s", project))
    rc = pj_nomem(err);
  else
    rc = jf_get_pages(in, b.s, "issueTypes", NULL, what.s, types, err);
  pj_buf_free(&b);
  pj_buf_free(&what);
  return rc;
}

int jc_type_fields(struct jc_inst *in, const char *project, json_object *type,
                   json_object **fields, struct ch_err *err) {
  struct pj_buf b = {0}, what = {0};
  const char *id = pj_str(type, "id");
  int rc;

  if (!id)
    return ch_err_set(err, CH_E_PROTOCOL,
                      "issue types of %s: an issue type has no id", project);
  if (jc_url(in, &b, "/rest/api/3/issue/createmeta/") ||
      pj_buf_add_enc(&b, in->host, project) || pj_buf_add(&b, "/issuetypes/") ||
      pj_buf_add_enc(&b, in->host, id) ||
      pj_buf_addf(&what, "fields of %s %s", project,
                  pj_str(type, "name") ? pj_str(type, "name") : id))
    rc = pj_nomem(err);
  else
    rc = jf_get_pages(in, b.s, "fields", "results", what.s, fields, err);
  pj_buf_free(&b);
  pj_buf_free(&what);
  return rc;
}

/* A comma-separated list of the `key` strings of `arr`'s objects. */
static int jf_names(json_object *arr, const char *key, const char *key2,
                    struct pj_buf *out) {
  size_t n = arr ? json_object_array_length(arr) : 0;

  if (pj_buf_add(out, ""))
    return CH_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    json_object *o = json_object_array_get_idx(arr, i);
    const char *s = pj_str(o, key);
    if (!s && key2)
      s = pj_str(o, key2);
    if (s && pj_buf_addf(out, "%s%s", out->len ? ", " : "", s))
      return CH_E_NOMEM;
  }
  return CH_OK;
}

int jc_find_type(json_object *types, const char *project, const char *want,
                 json_object **type, struct ch_err *err) {
  struct pj_buf names = {0};
  size_t n = json_object_array_length(types);

  for (size_t i = 0; i < n; i++) {
    json_object *t = json_object_array_get_idx(types, i);
    const char *name = pj_str(t, "name"), *id = pj_str(t, "id");
    if ((name && jc_casecmp(name, want) == 0) ||
        (id && strcmp(id, want) == 0)) {
      *type = t;
      return CH_OK;
    }
  }
  if (jf_names(types, "name", NULL, &names))
    return pj_nomem(err);
  ch_err_set(err, CH_E_INVALID,
             "project %s has no issue type '%s' (it has: %s)", project, want,
             names.s);
  pj_buf_free(&names);
  return CH_E_INVALID;
}

const char *jc_field_id(json_object *meta) {
  const char *id = pj_str(meta, "fieldId");
  return id ? id : pj_str(meta, "key");
}

/*
 * The field of `fields` (an array of field metadata) that `want` names:
 * its id or key exactly, else its display name ignoring case. Two fields
 * with that name are ambiguous (custom fields may share a name).
 */
static int jf_find_field(json_object *fields, const char *want,
                         const char *where, json_object **meta,
                         struct ch_err *err) {
  size_t n = json_object_array_length(fields);
  json_object *hit = NULL;

  for (size_t i = 0; i < n; i++) {
    json_object *f = json_object_array_get_idx(fields, i);
    const char *id = jc_field_id(f), *key = pj_str(f, "key");
    if ((id && strcmp(id, want) == 0) || (key && strcmp(key, want) == 0)) {
      *meta = f;
      return CH_OK;
    }
  }
  for (size_t i = 0; i < n; i++) {
    json_object *f = json_object_array_get_idx(fields, i);
    const char *name = pj_str(f, "name");
    if (!name || jc_casecmp(name, want))
      continue;
    if (hit)
      return ch_err_set(err, CH_E_INVALID,
                        "field name '%s' is ambiguous in %s: give its id (%s "
                        "or %s)",
                        want, where, jc_field_id(hit), jc_field_id(f));
    hit = f;
  }
  if (!hit)
    return ch_err_set(err, CH_E_INVALID,
                      "%s has no field '%s' (the ticket_schema action lists "
                      "its fields)",
                      where, want);
  *meta = hit;
  return CH_OK;
}

/* ---- values ------------------------------------------------------------ */

json_object *jc_adf(const char *text) {
  json_object *doc = json_object_new_object();
  json_object *content = json_object_new_array();
  const char *p = text;

  if (!doc || !content) {
    json_object_put(doc);
    json_object_put(content);
    return NULL;
  }
  json_object_object_add(doc, "type", json_object_new_string("doc"));
  json_object_object_add(doc, "version", json_object_new_int(1));
  json_object_object_add(doc, "content", content);
  while (*p) {
    size_t n = strcspn(p, "\n");
    size_t len = n;
    if (len && p[len - 1] == '\r')
      len--;
    if (len) {
      json_object *para = json_object_new_object();
      json_object *inl = json_object_new_array();
      json_object *t = json_object_new_object();
      if (!para || !inl || !t) {
        json_object_put(para);
        json_object_put(inl);
        json_object_put(t);
        json_object_put(doc);
        return NULL;
      }
      json_object_object_add(t, "type", json_object_new_string("text"));
      json_object_object_add(t, "text",
                             json_object_new_string_len(p, (int)len));
      json_object_array_add(inl, t);
      json_object_object_add(para, "type", json_object_new_string("paragraph"));
      json_object_object_add(para, "content", inl);
      json_object_array_add(content, para);
    }
    p += n;
    if (*p == '\n')
      p++;
  }
  return doc;
}

/* Whether a string field takes a document: the description, the
   environment and multi-line text custom fields. */
static int jf_is_doc(json_object *schema) {
  const char *sys = pj_str(schema, "system"),
             *custom = pj_str(schema, "custom");
  size_t n = custom ? strlen(custom) : 0;

  if (sys &&
      (strcmp(sys, "description") == 0 || strcmp(sys, "environment") == 0))
    return 1;
  return n >= 9 && strcmp(custom + n - 9, ":textarea") == 0;
}

/* The allowed value of `meta` that `want` names (its name, value, key or
   id) as {"id": ...}; CH_E_INVALID listing the allowed ones otherwise. */
static int jf_pick(json_object *meta, const char *want, json_object **out,
                   struct ch_err *err) {
  static const char *const props[] = {"name", "value", "key", "id", NULL};
  json_object *allowed = pj_arr(meta, "allowedValues");
  size_t n = allowed ? json_object_array_length(allowed) : 0;
  struct pj_buf names = {0};

  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(allowed, i);
    for (const char *const *p = props; *p; p++) {
      const char *s = pj_str(v, *p);
      if (!s || jc_casecmp(s, want))
        continue;
      *out = json_object_new_object();
      if (!*out)
        return pj_nomem(err);
      if (pj_str(v, "id"))
        json_object_object_add(*out, "id",
                               json_object_new_string(pj_str(v, "id")));
      else
        json_object_object_add(*out, *p, json_object_new_string(s));
      return CH_OK;
    }
  }
  if (jf_names(allowed, "name", "value", &names))
    return pj_nomem(err);
  ch_err_set(err, CH_E_INVALID, "field '%s' has no value '%s' (allowed: %s)",
             pj_str(meta, "name"), want, names.len ? names.s : "none listed");
  pj_buf_free(&names);
  return CH_E_INVALID;
}

/* One item of a field of schema type `type` (a scalar, or the items of an
   array) from the operator's text. */
static int jf_item(json_object *meta, const char *type, const char *text,
                   json_object **out, struct ch_err *err) {
  const char *name = pj_str(meta, "name");
  char *end = NULL;

  *out = NULL;
  if (strcmp(type, "string") == 0) {
    *out = jf_is_doc(pj_obj(meta, "schema")) ? jc_adf(text)
                                             : json_object_new_string(text);
  } else if (strcmp(type, "number") == 0) {
    double d = strtod(text, &end);
    /* JSON has no NaN or infinity (`d == d` is false for NaN). */
    if (end == text || *end || !(d == d) || d > 1e308 || d < -1e308)
      return ch_err_set(err, CH_E_INVALID,
                        "field '%s' takes a number, not '%s'", name, text);
    *out = json_object_new_double(d);
  } else if (strcmp(type, "date") == 0) {
    int y, m, dd;
    char tail;
    if (sscanf(text, "%4d-%2d-%2d%c", &y, &m, &dd, &tail) != 3 || m < 1 ||
        m > 12 || dd < 1 || dd > 31)
      return ch_err_set(err, CH_E_INVALID,
                        "field '%s' takes a date YYYY-MM-DD, not '%s'", name,
                        text);
    *out = json_object_new_string(text);
  } else if (strcmp(type, "user") == 0) {
    if ((*out = json_object_new_object()))
      json_object_object_add(*out, "accountId", json_object_new_string(text));
  } else if (strcmp(type, "issuelink") == 0) {
    if ((*out = json_object_new_object()))
      json_object_object_add(*out, "key", json_object_new_string(text));
  } else if (pj_arr(meta, "allowedValues")) {
    return jf_pick(meta, text, out, err);
  } else if (strcmp(type, "any") == 0 || strcmp(type, "datetime") == 0) {
    *out = json_object_new_string(text);
  } else {
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "field '%s' has type '%s', which connhost cannot set "
                      "from text",
                      name, type);
  }
  return *out ? CH_OK : pj_nomem(err);
}

/* The value to send for field `meta` from `text`: arrays take a
   comma-separated list; an empty text clears the field (JSON null). */
static int jf_value(json_object *meta, const char *text, json_object **out,
                    struct ch_err *err) {
  json_object *schema = pj_obj(meta, "schema"), *parts = NULL, *arr = NULL;
  const char *type = pj_str(schema, "type"), *items = pj_str(schema, "items");
  int rc = CH_OK;

  *out = NULL;
  if (!type)
    return ch_err_set(err, CH_E_PROTOCOL, "field '%s' has no schema type",
                      pj_str(meta, "name"));
  if (!*text)
    return CH_OK;
  if (strcmp(type, "array"))
    return jf_item(meta, type, text, out, err);
  if (!(parts = json_object_new_array()) || !(arr = json_object_new_array())) {
    rc = pj_nomem(err);
    goto out;
  }
  if ((rc = jc_csv_array(text, parts, err)))
    goto out;
  for (size_t i = 0; i < json_object_array_length(parts); i++) {
    const char *s = json_object_get_string(json_object_array_get_idx(parts, i));
    json_object *v;
    if (strcmp(pj_str(meta, "key") ? pj_str(meta, "key") : "", "labels") == 0 &&
        strpbrk(s, " \t")) {
      rc = ch_err_set(err, CH_E_INVALID, "label '%s' has a space in it", s);
      goto out;
    }
    if ((rc = jf_item(meta, items ? items : "string", s, &v, err)))
      goto out;
    json_object_array_add(arr, v);
  }
  *out = arr;
  arr = NULL;
out:
  json_object_put(parts);
  json_object_put(arr);
  return rc;
}

/* A value without a schema (dry runs): documents for the description,
   lists for labels and components (which Jira takes by name), text else. */
static json_object *jf_dry_value(const char *field, const char *text,
                                 struct ch_err *err) {
  json_object *v = NULL, *parts;

  if (strcmp(field, "description") == 0)
    return jc_adf(text);
  if (strcmp(field, "labels") && strcmp(field, "components"))
    return json_object_new_string(text);
  if (!(parts = json_object_new_array()) || jc_csv_array(text, parts, err)) {
    json_object_put(parts);
    return NULL;
  }
  if (strcmp(field, "labels") == 0)
    return parts;
  v = json_object_new_array();
  for (size_t i = 0; v && i < json_object_array_length(parts); i++) {
    json_object *c = json_object_new_object();
    if (!c)
      break;
    json_object_object_add(
        c, "name", json_object_get(json_object_array_get_idx(parts, i)));
    json_object_array_add(v, c);
  }
  json_object_put(parts);
  return v;
}

int jc_field_sets(const struct ch_kv *args, size_t nargs,
                  const char *const *direct, struct jc_set *out, size_t *n,
                  char **copies, struct ch_err *err) {
  *n = 0;
  for (size_t i = 0; i < nargs; i++) {
    const char *k = args[i].key, *v = args[i].value;
    for (const char *const *d = direct; *d; d++)
      if (strcmp(*d, k) == 0) {
        out[(*n)++] = (struct jc_set){*d, v};
        break;
      }
    if (strcmp(k, "field") == 0) {
      char *eq, *c;
      if (!(eq = strchr(v, '=')) || eq == v)
        return ch_err_set(err, CH_E_INVALID,
                          "field '%s' is not NAME=VALUE (a field name or id, "
                          "then its value)",
                          v);
      if (!(c = strdup(v)))
        return pj_nomem(err);
      copies[i] = c;
      c[eq - v] = '\0';
      out[(*n)++] = (struct jc_set){c, c + (eq - v) + 1};
    }
  }
  return CH_OK;
}

int jc_fill_fields(json_object *fields, json_object *meta, const char *where,
                   const struct jc_set *sets, size_t nsets, int clear_ok,
                   struct ch_err *err) {
  for (size_t i = 0; i < nsets; i++) {
    json_object *m = NULL, *v = NULL;
    const char *id = sets[i].name;
    int rc;
    if (meta) {
      if ((rc = jf_find_field(meta, sets[i].name, where, &m, err)))
        return rc;
      id = jc_field_id(m);
      if (!*sets[i].value && !clear_ok)
        return ch_err_set(err, CH_E_INVALID, "field '%s' needs a value",
                          pj_str(m, "name"));
      if ((rc = jf_value(m, sets[i].value, &v, err)))
        return rc;
    } else if (!(v = jf_dry_value(id, sets[i].value, err))) {
      return err->code ? err->code : pj_nomem(err);
    }
    if (json_object_object_get_ex(fields, id, NULL)) {
      json_object_put(v);
      return ch_err_set(err, CH_E_INVALID, "field '%s' is given twice",
                        m ? pj_str(m, "name") : id);
    }
    json_object_object_add(fields, id, v);
  }
  return CH_OK;
}

void jc_free_sets(char **copies) {
  for (size_t i = 0; i < JC_MAX_SETS; i++)
    free(copies[i]);
}
