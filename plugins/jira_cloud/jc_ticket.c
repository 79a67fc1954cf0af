/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: tickets (issue schemas, create, get, update). */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "jc.h"

/*
 * Every ticket action is built from the same steps: read what Jira says
 * about the project (createmeta, editmeta, transitions), check the
 * operator's arguments against it, and only then send the one write. A
 * mistake is refused with the field named before the write goes out.
 *
 * In a dry run the host sends nothing, reads included, so there is no
 * schema to check against: the requests are printed with the names the
 * operator gave, and the result says they were not resolved.
 */

/* ---- small helpers --------------------------------------------------- */

static const char *jt_arg(const struct ch_kv *args, size_t nargs,
                          const char *key) {
  for (size_t i = 0; i < nargs; i++)
    if (strcmp(args[i].key, key) == 0)
      return args[i].value;
  return NULL;
}

/* Whether tickets may go to project `key`: ticket_projects when set, else
   the project_keys filter. */
static int jt_project_allowed(const struct jc_inst *in, const char *key) {
  if (in->nticket_keys)
    return jc_in_list(in->ticket_keys, in->nticket_keys, key);
  return jc_key_allowed(in, key);
}

/* The project part of an issue key ("OPS" of "OPS-12"), checked against the
   allowed projects; CH_E_INVALID with err set otherwise. */
static int jt_check_key(const struct jc_inst *in, const char *what,
                        const char *key, struct ch_err *err) {
  const char *dash = key ? strrchr(key, '-') : NULL;
  char proj[128];

  if (!dash || dash == key || !dash[1] || (size_t)(dash - key) >= sizeof(proj))
    return ch_err_set(err, CH_E_INVALID,
                      "%s: ticket '%s' is not an issue key like OPS-12", what,
                      key ? key : "");
  for (const char *p = dash + 1; *p; p++)
    if (*p < '0' || *p > '9')
      return ch_err_set(err, CH_E_INVALID,
                        "%s: ticket '%s' is not an issue key like OPS-12", what,
                        key);
  memcpy(proj, key, (size_t)(dash - key));
  proj[dash - key] = '\0';
  if (!jt_project_allowed(in, proj))
    return ch_err_set(err, CH_E_INVALID,
                      "%s: project %s is not one of the ticket projects "
                      "(ticket_projects / project_keys)",
                      what, proj);
  return CH_OK;
}

/* Start err's message with the action's name (once), so the operator sees
   which step of which action failed. */
static void jt_prefix(struct ch_err *err, int rc, const char *action) {
  size_t n = strlen(action);
  char msg[sizeof(err->msg)];

  if (!rc || rc == CH_E_NOMEM ||
      (strncmp(err->msg, action, n) == 0 && err->msg[n] == ':'))
    return;
  snprintf(msg, sizeof(msg), "%s", err->msg);
  ch_err_set(err, rc, "%s: %s", action, msg);
}

/* Hand `doc` to the host as the action's answer (ABI 1.2); an older host
   has only `message`. */
static int jt_output(struct jc_inst *in, struct ch_result *res,
                     json_object *doc, struct ch_err *err) {
  if (!CH_RESULT_HAS(in->host, output) || !res->output)
    return CH_OK;
  if (res->output(res,
                  json_object_to_json_string_ext(
                      doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                               JSON_C_TO_STRING_NOSLASHESCAPE)) != CH_OK)
    return pj_nomem(err);
  return CH_OK;
}

/* "/rest/api/3/issue/<key><tail>" with the key encoded. */
static int jt_issue_url(struct jc_inst *in, struct pj_buf *b, const char *key,
                        const char *tail) {
  if (jc_url(in, b, "/rest/api/3/issue/") || pj_buf_add_enc(b, in->host, key) ||
      pj_buf_add(b, tail))
    return CH_E_NOMEM;
  return CH_OK;
}

/* ---- ticket_schema ------------------------------------------------------- */

/* One field of the schema as connhost shows it. */
static json_object *jt_show_field(json_object *f) {
  json_object *o = json_object_new_object(), *schema = pj_obj(f, "schema");
  json_object *allowed = pj_arr(f, "allowedValues"), *names;
  const char *type = pj_str(schema, "type");

  if (!o)
    return NULL;
  json_object_object_add(o, "id", json_object_new_string(jc_field_id(f)));
  json_object_object_add(
      o, "name",
      json_object_new_string(pj_str(f, "name") ? pj_str(f, "name") : ""));
  json_object_object_add(o, "required",
                         json_object_new_boolean(pj_bool(f, "required", 0)));
  json_object_object_add(o, "type", json_object_new_string(type ? type : "?"));
  if (pj_str(schema, "items"))
    json_object_object_add(o, "items",
                           json_object_new_string(pj_str(schema, "items")));
  if (pj_str(schema, "custom"))
    json_object_object_add(o, "custom",
                           json_object_new_string(pj_str(schema, "custom")));
  if (pj_bool(f, "hasDefaultValue", 0))
    json_object_object_add(o, "has_default", json_object_new_boolean(1));
  if (allowed && (names = json_object_new_array())) {
    for (size_t i = 0; i < json_object_array_length(allowed); i++) {
      json_object *v = json_object_array_get_idx(allowed, i);
      const char *s =
          pj_str(v, "name") ? pj_str(v, "name") : pj_str(v, "value");
      if (s)
        json_object_array_add(names, json_object_new_string(s));
    }
    json_object_object_add(o, "allowed", names);
  }
  return o;
}

/* The issue types of `project` and their fields into `out`; an issue type
   whose fields cannot be read goes to "skipped" with the error. */
static int jt_schema_project(struct jc_inst *in, const char *project,
                             const char *only, json_object *out, size_t *ntypes,
                             size_t *nskipped, struct ch_err *err) {
  json_object *types = NULL, *p = NULL, *shown, *skipped;
  int rc;

  if ((rc = jc_issue_types(in, project, &types, err)) || !types)
    return rc; /* a dry run: the request was printed */
  if (!(p = json_object_new_object()) || !(shown = json_object_new_array()) ||
      !(skipped = json_object_new_array())) {
    json_object_put(p);
    json_object_put(types);
    return pj_nomem(err);
  }
  json_object_object_add(p, "key", json_object_new_string(project));
  json_object_object_add(p, "issue_types", shown);
  json_object_object_add(p, "skipped", skipped);
  json_object_array_add(out, p);
  for (size_t i = 0; i < json_object_array_length(types); i++) {
    json_object *t = json_object_array_get_idx(types, i), *fields = NULL;
    json_object *o, *list;
    const char *name = pj_str(t, "name") ? pj_str(t, "name") : "?";
    struct ch_err e2 = {0};

    if (only && jc_casecmp(only, name))
      continue;
    if (!(o = json_object_new_object())) {
      rc = pj_nomem(err);
      break;
    }
    json_object_object_add(
        o, "id",
        json_object_new_string(pj_str(t, "id") ? pj_str(t, "id") : ""));
    json_object_object_add(o, "name", json_object_new_string(name));
    rc = jc_type_fields(in, project, t, &fields, &e2);
    if (rc == CH_E_NOMEM || rc == CH_E_STOPPED || rc == CH_E_AUTH) {
      json_object_put(o);
      *err = e2;
      break;
    }
    if (rc) {
      /* One broken issue type (a field configuration Jira cannot render)
         must not hide the others. */
      in->host->log(in->hc, CH_LOG_WARN, "skipping issue type %s of %s: %s",
                    name, project, e2.msg);
      json_object_object_add(o, "error", json_object_new_string(e2.msg));
      json_object_array_add(skipped, o);
      (*nskipped)++;
      rc = CH_OK;
      continue;
    }
    json_object_object_add(o, "subtask",
                           json_object_new_boolean(pj_bool(t, "subtask", 0)));
    if (!(list = json_object_new_array())) {
      json_object_put(o);
      json_object_put(fields);
      rc = pj_nomem(err);
      break;
    }
    json_object_object_add(o, "fields", list);
    for (size_t j = 0; fields && j < json_object_array_length(fields); j++) {
      json_object *f = jt_show_field(json_object_array_get_idx(fields, j));
      if (f)
        json_object_array_add(list, f);
    }
    json_object_put(fields);
    json_object_array_add(shown, o);
    (*ntypes)++;
  }
  json_object_put(types);
  return rc;
}

static int jt_schema(struct jc_inst *in, const struct ch_kv *args, size_t nargs,
                     struct ch_result *res, struct ch_err *err) {
  const char *one = jt_arg(args, nargs, "project_key");
  const char *only = jt_arg(args, nargs, "issue_type");
  const char *const *keys = in->ticket_keys;
  size_t nkeys = in->nticket_keys, ntypes = 0, nskipped = 0, nproj = 0;
  json_object *doc = NULL, *projects;
  int rc = CH_OK;

  if (one && *one) {
    if (!jt_project_allowed(in, one))
      return ch_err_set(err, CH_E_INVALID,
                        "ticket_schema: project %s is not one of the ticket "
                        "projects (ticket_projects / project_keys)",
                        one);
  } else if (!nkeys && in->nkeys) {
    keys = in->keys;
    nkeys = in->nkeys;
  } else if (!nkeys && in->ticket_key) {
    one = in->ticket_key;
  } else if (!nkeys) {
    return ch_err_set(err, CH_E_INVALID,
                      "ticket_schema: which project? pass project_key or set "
                      "ticket_projects");
  }
  if (!(doc = json_object_new_object()) ||
      !(projects = json_object_new_array())) {
    json_object_put(doc);
    return pj_nomem(err);
  }
  json_object_object_add(doc, "projects", projects);
  for (size_t i = 0; i < (one && *one ? 1 : nkeys) && rc == CH_OK; i++, nproj++)
    rc = jt_schema_project(in, one && *one ? one : keys[i], only, projects,
                           &ntypes, &nskipped, err);
  if (rc)
    goto out;
  if (in->host->dry_run(in->hc)) {
    res->outcome = CH_DRY_RUN;
    snprintf(res->message, sizeof(res->message),
             "would read the issue types of %zu project(s)", nproj);
    goto out;
  }
  if (only && *only && !ntypes && !nskipped) {
    rc = ch_err_set(err, CH_E_INVALID, "no issue type '%s' in %s", only,
                    one && *one ? one : "the ticket projects");
    goto out;
  }
  res->outcome = CH_DONE;
  snprintf(res->message, sizeof(res->message),
           "%zu project(s), %zu issue type(s), %zu skipped", nproj, ntypes,
           nskipped);
  rc = jt_output(in, res, doc, err);
out:
  json_object_put(doc);
  return rc;
}

/* ---- create_ticket ------------------------------------------------------- */

/* The fields a required-field error can point at: required, no default,
   not set. project and issuetype are always set by connhost. */
static int jt_check_required(json_object *meta, json_object *fields,
                             const char *where, struct ch_err *err) {
  for (size_t i = 0; i < json_object_array_length(meta); i++) {
    json_object *m = json_object_array_get_idx(meta, i);
    const char *id = jc_field_id(m);
    if (!id || !pj_bool(m, "required", 0) || pj_bool(m, "hasDefaultValue", 0) ||
        json_object_object_get_ex(fields, id, NULL))
      continue;
    return ch_err_set(err, CH_E_INVALID,
                      "field '%s' (%s) is required for %s: pass --arg "
                      "'field=%s=VALUE'",
                      pj_str(m, "name"), id, where, pj_str(m, "name"));
  }
  return CH_OK;
}

static int jt_create(struct jc_inst *in, const struct ch_kv *args, size_t nargs,
                     struct ch_result *res, struct ch_err *err) {
  static const char *const direct[] = {"summary", "description", "labels",
                                       "components", NULL};
  const char *key = jt_arg(args, nargs, "project_key");
  const char *itype = jt_arg(args, nargs, "issue_type");
  json_object *body = NULL, *fields, *o, *types = NULL, *meta = NULL;
  json_object *type = NULL, *issue = NULL;
  struct jc_set sets[JC_MAX_SETS];
  char *copies[JC_MAX_SETS] = {0};
  struct pj_buf b = {0}, where = {0};
  size_t nsets;
  long status;
  int rc;

  if (nargs > JC_MAX_SETS)
    return ch_err_set(err, CH_E_INVALID,
                      "create_ticket: more than %d arguments", JC_MAX_SETS);
  if (!key || !*key)
    key = in->ticket_key;
  if (!key)
    return ch_err_set(err, CH_E_INVALID,
                      "create_ticket: no project: pass project_key or set "
                      "the ticket_project_key option");
  if (!jt_project_allowed(in, key))
    return ch_err_set(err, CH_E_INVALID,
                      "create_ticket: project %s is not in project_keys "
                      "(or ticket_projects)",
                      key);
  if (!itype || !*itype)
    itype = "Task";
  if ((rc = jc_field_sets(args, nargs, direct, sets, &nsets, copies, err)))
    goto out;
  if (pj_buf_addf(&where, "%s %s", key, itype)) {
    rc = pj_nomem(err);
    goto out;
  }

  /* The schema first: the issue type's id and its fields. */
  if ((rc = jc_issue_types(in, key, &types, err)))
    goto out;
  if (types && ((rc = jc_find_type(types, key, itype, &type, err)) ||
                (rc = jc_type_fields(in, key, type, &meta, err))))
    goto out;

  if (!(body = json_object_new_object()) ||
      !(fields = json_object_new_object())) {
    rc = pj_nomem(err);
    goto out;
  }
  json_object_object_add(body, "fields", fields);
  if (!(o = json_object_new_object())) {
    rc = pj_nomem(err);
    goto out;
  }
  json_object_object_add(o, "key", json_object_new_string(key));
  json_object_object_add(fields, "project", o);
  if (!(o = json_object_new_object())) {
    rc = pj_nomem(err);
    goto out;
  }
  if (type)
    json_object_object_add(o, "id", json_object_new_string(pj_str(type, "id")));
  else
    json_object_object_add(o, "name", json_object_new_string(itype));
  json_object_object_add(fields, "issuetype", o);
  if ((rc = jc_fill_fields(fields, meta, where.s, sets, nsets, 0, err)) ||
      (meta && (rc = jt_check_required(meta, fields, where.s, err))))
    goto out;

  if (jc_url(in, &b, "/rest/api/3/issue")) {
    rc = pj_nomem(err);
    goto out;
  }
  /* Not retry-safe: a second POST would open a second issue. The host
     still retries a 429, which the service did not act on. */
  rc = jc_request(in, "POST", b.s, body, 0, "create issue", &status, &issue,
                  err);
  if (rc)
    goto out;
  if (status == 0) {
    res->outcome = CH_DRY_RUN;
    snprintf(res->message, sizeof(res->message),
             "would create a %s in %s (a dry run reads no schema: field "
             "names were not resolved or checked)",
             itype, key);
    goto out;
  }
  if (!pj_str(issue, "key")) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "create issue: no key in the answer");
    goto out;
  }
  res->outcome = CH_DONE;
  snprintf(res->key, sizeof(res->key), "%s", pj_str(issue, "key"));
  snprintf(res->message, sizeof(res->message), "created %s %s",
           type && pj_str(type, "name") ? pj_str(type, "name") : itype,
           pj_str(issue, "key"));
out:
  jc_free_sets(copies);
  json_object_put(body);
  json_object_put(issue);
  json_object_put(types);
  json_object_put(meta);
  pj_buf_free(&b);
  pj_buf_free(&where);
  return rc;
}

/* ---- get_ticket ---------------------------------------------------------- */

/* The parts of an issue connhost reports. */
static json_object *jt_show_issue(json_object *issue) {
  json_object *f = pj_obj(issue, "fields"), *o = json_object_new_object();
  json_object *status = pj_obj(f, "status"), *assignee = pj_obj(f, "assignee");
  json_object *cat = pj_obj(status, "statusCategory");
  json_object *resolution = pj_obj(f, "resolution"), *a;
  json_object *labels = pj_arr(f, "labels");

  if (!o)
    return NULL;
#define JT_STR(k, v)                                                           \
  json_object_object_add(o, k, (v) ? json_object_new_string(v) : NULL)
  JT_STR("key", pj_str(issue, "key"));
  JT_STR("id", pj_str(issue, "id"));
  JT_STR("summary", pj_str(f, "summary"));
  JT_STR("status", pj_str(status, "name"));
  JT_STR("status_category", pj_str(cat, "key"));
  JT_STR("resolution", pj_str(resolution, "name"));
  JT_STR("updated", pj_str(f, "updated"));
#undef JT_STR
  if (assignee && (a = json_object_new_object())) {
    json_object_object_add(
        a, "account_id",
        json_object_new_string(pj_str(assignee, "accountId")
                                   ? pj_str(assignee, "accountId")
                                   : ""));
    json_object_object_add(
        a, "display_name",
        json_object_new_string(pj_str(assignee, "displayName")
                                   ? pj_str(assignee, "displayName")
                                   : ""));
    json_object_object_add(o, "assignee", a);
  } else {
    json_object_object_add(o, "assignee", NULL);
  }
  json_object_object_add(
      o, "labels", labels ? json_object_get(labels) : json_object_new_array());
  return o;
}

static int jt_read_issue(struct jc_inst *in, const char *key,
                         json_object **issue, struct ch_err *err) {
  struct pj_buf b = {0};
  long status;
  int rc;

  if (jt_issue_url(in, &b, key, "") ||
      jc_param(in, &b, "fields",
               "summary,status,assignee,resolution,updated,labels")) {
    pj_buf_free(&b);
    return pj_nomem(err);
  }
  rc = jc_request(in, "GET", b.s, NULL, 0, "get issue", &status, issue, err);
  pj_buf_free(&b);
  return rc;
}

static int jt_get(struct jc_inst *in, const struct ch_kv *args, size_t nargs,
                  struct ch_result *res, struct ch_err *err) {
  const char *key = jt_arg(args, nargs, "ticket");
  json_object *issue = NULL, *shown = NULL;
  const char *s;
  int rc;

  if ((rc = jt_check_key(in, "get_ticket", key, err)) ||
      (rc = jt_read_issue(in, key, &issue, err)))
    goto out;
  snprintf(res->key, sizeof(res->key), "%s", key);
  if (!issue) {
    res->outcome = CH_DRY_RUN;
    snprintf(res->message, sizeof(res->message), "would read %s", key);
    goto out;
  }
  if (!(shown = jt_show_issue(issue))) {
    rc = pj_nomem(err);
    goto out;
  }
  res->outcome = CH_DONE;
  s = pj_str(pj_obj(shown, "assignee"), "display_name");
  snprintf(
      res->message, sizeof(res->message), "%s (%s), %s, %s, updated %s",
      pj_str(shown, "status") ? pj_str(shown, "status") : "?",
      pj_str(shown, "status_category") ? pj_str(shown, "status_category") : "?",
      s ? s : "unassigned",
      pj_str(shown, "resolution") ? pj_str(shown, "resolution") : "unresolved",
      pj_str(shown, "updated") ? pj_str(shown, "updated") : "?");
  rc = jt_output(in, res, shown, err);
out:
  json_object_put(issue);
  json_object_put(shown);
  return rc;
}

/* ---- update_ticket ------------------------------------------------------- */

/* The editable fields of an issue (editmeta's map) as an array of field
   metadata, each with its id as fieldId. NULL in a dry run. */
static int jt_edit_fields(struct jc_inst *in, const char *key,
                          json_object **out, struct ch_err *err) {
  struct pj_buf b = {0};
  json_object *meta = NULL, *map, *arr = NULL;
  long status;
  int rc;

  *out = NULL;
  if (jt_issue_url(in, &b, key, "/editmeta")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc =
      jc_request(in, "GET", b.s, NULL, 0, "edit metadata", &status, &meta, err);
  if (rc || status == 0)
    goto out;
  if (!(map = pj_obj(meta, "fields"))) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "edit metadata: no 'fields' object");
    goto out;
  }
  if (!(arr = json_object_new_array())) {
    rc = pj_nomem(err);
    goto out;
  }
  json_object_object_foreach(map, id, f) {
    if (!json_object_is_type(f, json_type_object))
      continue;
    if (!pj_str(f, "fieldId"))
      json_object_object_add(f, "fieldId", json_object_new_string(id));
    json_object_array_add(arr, json_object_get(f));
  }
  *out = arr;
out:
  json_object_put(meta);
  pj_buf_free(&b);
  return rc;
}

/* The transition of `key` that leads to status `want` (or is named so):
   its id into `id`. CH_E_INVALID listing the reachable statuses when none
   does; *already set when the issue is in that status. */
static int jt_transition(struct jc_inst *in, const char *key, const char *want,
                         char *id, size_t idsz, int *already,
                         struct ch_err *err) {
  struct pj_buf b = {0}, names = {0};
  json_object *reply = NULL, *list, *issue = NULL;
  long status;
  int rc;

  *already = 0;
  id[0] = '\0';
  if (jt_issue_url(in, &b, key, "/transitions")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request(in, "GET", b.s, NULL, 0, "list transitions", &status, &reply,
                  err);
  if (rc || status == 0)
    goto out;
  if (!(list = pj_arr(reply, "transitions"))) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "list transitions: no 'transitions'");
    goto out;
  }
  for (size_t i = 0; i < json_object_array_length(list); i++) {
    json_object *t = json_object_array_get_idx(list, i);
    const char *to = pj_str(pj_obj(t, "to"), "name");
    if (pj_bool(t, "isAvailable", 1) && pj_str(t, "id") &&
        ((to && jc_casecmp(to, want) == 0) ||
         (pj_str(t, "name") && jc_casecmp(pj_str(t, "name"), want) == 0))) {
      snprintf(id, idsz, "%s", pj_str(t, "id"));
      goto out;
    }
    if (to && pj_buf_addf(&names, "%s%s", names.len ? ", " : "", to)) {
      rc = pj_nomem(err);
      goto out;
    }
  }
  /* No way there: maybe it is there already. */
  if ((rc = jt_read_issue(in, key, &issue, err)))
    goto out;
  if (pj_str(pj_obj(pj_obj(issue, "fields"), "status"), "name") &&
      jc_casecmp(pj_str(pj_obj(pj_obj(issue, "fields"), "status"), "name"),
                 want) == 0) {
    *already = 1;
    goto out;
  }
  rc = ch_err_set(err, CH_E_INVALID,
                  "%s cannot move to status '%s' from here: the statuses it "
                  "can move to are %s",
                  key, want, names.len ? names.s : "none");
out:
  json_object_put(reply);
  json_object_put(issue);
  pj_buf_free(&b);
  pj_buf_free(&names);
  return rc;
}

/* {"update": {"labels": [{"add": l}, ..., {"remove": l}]}} entries. */
static int jt_label_ops(json_object *update, const char *op, const char *list,
                        struct ch_err *err) {
  json_object *parts = json_object_new_array(), *ops;
  int rc;

  if (!list || !*list) {
    json_object_put(parts);
    return CH_OK;
  }
  if (!parts || (rc = jc_csv_array(list, parts, err))) {
    json_object_put(parts);
    return parts ? rc : pj_nomem(err);
  }
  if (!json_object_object_get_ex(update, "labels", &ops)) {
    ops = json_object_new_array();
    json_object_object_add(update, "labels", ops);
  }
  for (size_t i = 0; ops && i < json_object_array_length(parts); i++) {
    json_object *p = json_object_array_get_idx(parts, i), *o;
    if (strpbrk(json_object_get_string(p), " \t")) {
      json_object_put(parts);
      return ch_err_set(err, CH_E_INVALID, "label '%s' has a space in it",
                        json_object_get_string(p));
    }
    if (!(o = json_object_new_object()))
      break;
    json_object_object_add(o, op, json_object_get(p));
    json_object_array_add(ops, o);
  }
  json_object_put(parts);
  return ops ? CH_OK : pj_nomem(err);
}

/* Send one update write; a dry run counts as done-in-print. */
static int jt_write(struct jc_inst *in, const char *method, const char *url,
                    json_object *body, const char *what, struct ch_err *err) {
  long status;
  return jc_request(in, method, url, body, 0, what, &status, NULL, err);
}

static int jt_update(struct jc_inst *in, const struct ch_kv *args, size_t nargs,
                     struct ch_result *res, struct ch_err *err) {
  static const char *const direct[] = {NULL};
  const char *key = jt_arg(args, nargs, "ticket");
  const char *comment = jt_arg(args, nargs, "comment");
  const char *add = jt_arg(args, nargs, "add_labels");
  const char *del = jt_arg(args, nargs, "remove_labels");
  const char *target = jt_arg(args, nargs, "status");
  json_object *edit = NULL, *fields = NULL, *update = NULL, *put = NULL;
  json_object *cbody = NULL, *tbody = NULL, *o;
  struct jc_set sets[JC_MAX_SETS];
  char *copies[JC_MAX_SETS] = {0};
  struct pj_buf b = {0}, done = {0};
  char tid[64];
  size_t nsets = 0;
  int already = 0, dry = in->host->dry_run(in->hc), rc;

  if ((rc = jt_check_key(in, "update_ticket", key, err)))
    return rc;
  if (nargs > JC_MAX_SETS)
    return ch_err_set(err, CH_E_INVALID,
                      "update_ticket: more than %d arguments", JC_MAX_SETS);
  if ((rc = jc_field_sets(args, nargs, direct, sets, &nsets, copies, err)))
    goto out;
  if (!nsets && !(comment && *comment) && !add && !del &&
      !(target && *target)) {
    rc = ch_err_set(err, CH_E_INVALID,
                    "update_ticket: nothing to do: give comment, field, "
                    "add_labels, remove_labels or status");
    goto out;
  }
  if (!(fields = json_object_new_object()) ||
      !(update = json_object_new_object()) ||
      !(put = json_object_new_object())) {
    rc = pj_nomem(err);
    goto out;
  }

  /* Everything is read and checked before the first write. */
  if (nsets && (rc = jt_edit_fields(in, key, &edit, err)))
    goto out;
  if ((rc = jc_fill_fields(fields, edit, key, sets, nsets, 1, err)) ||
      (rc = jt_label_ops(update, "add", add, err)) ||
      (rc = jt_label_ops(update, "remove", del, err)))
    goto out;
  if (target && *target &&
      (rc = jt_transition(in, key, target, tid, sizeof(tid), &already, err)))
    goto out;

  if (nsets || add || del) {
    json_object_object_add(put, "fields", json_object_get(fields));
    json_object_object_add(put, "update", json_object_get(update));
    if ((rc = jt_issue_url(in, &b, key, "")) ||
        (rc = jt_write(in, "PUT", b.s, put, "edit issue", err)))
      goto out;
    if (pj_buf_addf(&done, "%sfields", done.len ? ", " : "")) {
      rc = pj_nomem(err);
      goto out;
    }
  }
  if (comment && *comment) {
    if (!(cbody = json_object_new_object()) || !(o = jc_adf(comment))) {
      rc = pj_nomem(err);
      goto out;
    }
    json_object_object_add(cbody, "body", o);
    b.len = 0;
    if ((rc = jt_issue_url(in, &b, key, "/comment")) ||
        (rc = jt_write(in, "POST", b.s, cbody, "add comment", err)))
      goto out;
    if (pj_buf_addf(&done, "%scomment", done.len ? ", " : "")) {
      rc = pj_nomem(err);
      goto out;
    }
  }
  if (target && *target && !already && tid[0]) {
    if (!(tbody = json_object_new_object()) ||
        !(o = json_object_new_object())) {
      rc = pj_nomem(err);
      goto out;
    }
    json_object_object_add(o, "id", json_object_new_string(tid));
    json_object_object_add(tbody, "transition", o);
    b.len = 0;
    if ((rc = jt_issue_url(in, &b, key, "/transitions")) ||
        (rc = jt_write(in, "POST", b.s, tbody, "transition issue", err)))
      goto out;
    if (pj_buf_addf(&done, "%sstatus %s", done.len ? ", " : "", target)) {
      rc = pj_nomem(err);
      goto out;
    }
  }
  snprintf(res->key, sizeof(res->key), "%s", key);
  if (dry) {
    res->outcome = CH_DRY_RUN;
    snprintf(res->message, sizeof(res->message),
             "would update %s%s (a dry run reads nothing: fields and the "
             "transition were not resolved)",
             key, target && *target ? " and move it" : "");
  } else if (!done.len) {
    res->outcome = CH_ALREADY;
    snprintf(res->message, sizeof(res->message), "%s is already %s", key,
             target ? target : "so");
  } else {
    res->outcome = CH_DONE;
    snprintf(res->message, sizeof(res->message), "updated %s: %s", key, done.s);
  }
out:
  jc_free_sets(copies);
  json_object_put(edit);
  json_object_put(fields);
  json_object_put(update);
  json_object_put(put);
  json_object_put(cbody);
  json_object_put(tbody);
  pj_buf_free(&b);
  pj_buf_free(&done);
  return rc;
}

int jc_ticket_action(struct jc_inst *in, const char *name,
                     const struct ch_kv *args, size_t nargs,
                     struct ch_result *res, struct ch_err *err) {
  int rc;

  if (strcmp(name, "ticket_schema") == 0)
    rc = jt_schema(in, args, nargs, res, err);
  else if (strcmp(name, "create_ticket") == 0)
    rc = jt_create(in, args, nargs, res, err);
  else if (strcmp(name, "get_ticket") == 0)
    rc = jt_get(in, args, nargs, res, err);
  else if (strcmp(name, "update_ticket") == 0)
    rc = jt_update(in, args, nargs, res, err);
  else
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "unknown action %s (jira_cloud has ticket_schema, "
                      "create_ticket, get_ticket and update_ticket)",
                      name);
  jt_prefix(err, rc, name);
  return rc;
}
