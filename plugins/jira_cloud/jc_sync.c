/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: list users, groups, projects, roles and their grants. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "jc.h"

/* All position lives in the page token: {"s":startAt} plus, for projects
   filtered by project_keys, {"k":chunk} (which 50-key slice is being
   paged). */
static int jc_next(struct ch_sink *sink, json_object *tok, long long start,
                   long long chunk, struct ch_err *err) {
  json_object_object_add(tok, "s", json_object_new_int64(start));
  if (chunk >= 0)
    json_object_object_add(tok, "k", json_object_new_int64(chunk));
  if (sink->next_page(sink, pj_json_text(tok)))
    return ch_err_set(err, CH_E_STOPPED, "stopped");
  return CH_OK;
}

static int jc_stopped(struct ch_err *err) {
  return ch_err_set(err, CH_E_STOPPED, "stopped");
}

/* Append member `key` of `src` to the profile `b` when it is a non-empty
   string. */
static int jc_copy_str(struct pj_buf *b, struct pj_val src, const char *key) {
  const char *v = pj_get_str(src, key);
  if (!v || !*v)
    return CH_OK;
  return pj_buf_add_key(b, key) || pj_buf_add_jstr(b, v, strlen(v)) ? CH_E_NOMEM
                                                                    : CH_OK;
}

/* A 401 on a project's roles, after the same credentials read the
   listings, is the permission the spec names there ("or if the user lacks
   administrative permissions for the project"), not a wrong token. */
static int jc_role_auth(int rc, const char *project, struct ch_err *err) {
  if (rc == CH_E_AUTH)
    rc = ch_err_set(err, CH_E_PERM,
                    "project roles of %s: HTTP 401 with credentials that "
                    "read the listings: the account lacks the Administer "
                    "Projects permission on it (Jira answers 401 or 404)",
                    project);
  return rc;
}

/* ---- users -------------------------------------------------------------- */

/* `u`'s accountId, NULL when it names nobody: absent, empty, or "unknown",
   what Jira returns for a deleted user whose record is corrupted
   (UserDetails, ProjectRoleUser): every such user shares it, so as a key it
   would merge them into one phantom principal. */
static const char *jc_account_id(struct pj_val u) {
  const char *id = pj_get_str(u, "accountId");
  return id && *id && strcmp(id, "unknown") != 0 ? id : NULL;
}

static int jc_emit_user(struct jc_inst *in, struct pj_val u,
                        struct ch_sink *sink, struct ch_err *err) {
  struct ch_resource r = {0};
  struct pj_buf mk = {0}, prof = {0};
  const char *emails[2] = {NULL, NULL};
  const char *keys[2] = {NULL, NULL};
  const char *id = jc_account_id(u);
  const char *type = pj_get_str(u, "accountType");
  const char *email = pj_get_str(u, "emailAddress");
  const char *name = pj_get_str(u, "displayName");
  struct pj_val known = pj_get(u, "active");
  int active = pj_val_bool(known, 1);
  int rc = CH_OK;

  if (!id) {
    in->host->log(in->hc, CH_LOG_WARN,
                  "list users: a user without an accountId (or with Jira's "
                  "'unknown' of a corrupted record) was skipped");
    goto out;
  }
  if (jc_user_skipped(in, type, active))
    goto out;
  if (pj_buf_add(&mk, "atlassian_account_id=") || pj_buf_add(&mk, id) ||
      pj_buf_add(&prof, "{") || jc_copy_str(&prof, u, "accountType") ||
      jc_copy_str(&prof, u, "timeZone") || jc_copy_str(&prof, u, "locale") ||
      pj_buf_add(&prof, "}")) {
    rc = pj_nomem(err);
    goto out;
  }
  /* Jira hides the address when the profile's visibility says so; the
     atlassian_org plugin supplies it through the shared match key. */
  if (email && *email)
    emails[0] = email;
  keys[0] = mk.s;
  r.type = "user";
  r.id = id;
  r.display_name = name ? name : id;
  /* `active` is optional: without it the status is not known */
  r.status = pj_val_type(known) != PJ_BOOL ? CH_RES_UNSPECIFIED
             : active                      ? CH_RES_ENABLED
                                           : CH_RES_DISABLED;
  r.account_type = pj_atlassian_account_type(type);
  r.emails = emails[0] ? emails : NULL;
  r.match_keys = keys;
  r.profile_json = prof.s;
  if (sink->resource(sink, &r))
    rc = jc_stopped(err);
out:
  pj_buf_free(&prof);
  pj_buf_free(&mk);
  return rc;
}

/* /users/search is a bare array with no isLast: only an empty page ends
   it (a short page does not, the service returns those mid-listing). */
static int jc_list_users(struct jc_inst *in, json_object *tok,
                         struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf b = {0};
  struct pj_doc *doc = NULL;
  struct pj_val page;
  long long start = pj_int(tok, "s", 0);
  long status;
  size_t n = 0;
  int rc;

  if (jc_url(in, &b, "/rest/api/3/users/search") ||
      jc_param_ll(&b, "startAt", start) ||
      jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_USERS))) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_doc(in, "/rest/api/3/users/search", "GET", b.s, "list users",
                      &status, &doc, err);
  if (rc)
    goto out;
  page = pj_doc_root(doc);
  if (pj_val_type(page) != PJ_ARR) {
    rc = ch_err_set(err, CH_E_PROTOCOL,
                    "list users: startAt=%lld: not a JSON array", start);
    goto out;
  }
  for (struct pj_val u = pj_val_first(page); u.i >= 0 && !rc;
       u = pj_val_next(u), n++)
    rc = jc_emit_user(in, u, sink, err);
  if (!rc && n)
    rc = jc_next(sink, tok, start + (long long)n, -1, err);
out:
  pj_doc_free(doc);
  pj_buf_free(&b);
  return rc;
}

/* ---- PageBean ------------------------------------------------------------ */

/*
 * Check a PageBean and tell whether another page follows. A page that is
 * not last but holds nothing would make startAt stand still: that is a
 * server fault, reported rather than looped on.
 */
static int jc_pagebean(struct jc_inst *in, struct ch_sink *sink,
                       struct pj_doc *doc, const char *what, long long start,
                       struct pj_val *values, int *more, struct ch_err *err) {
  struct pj_val page = pj_doc_root(doc);
  struct pj_val last = pj_get(page, "isLast");
  long long total = pj_get_int(page, "total", -1);

  /* The first page's total tells the host's progress what to expect. */
  if (start == 0 && total >= 0 && CH_SINK_HAS(in->host, expect) &&
      sink->expect && sink->expect(sink, (uint64_t)total))
    return jc_stopped(err);

  *values = pj_get_arr(page, "values");
  if (pj_val_type(*values) == PJ_NONE)
    return ch_err_set(err, CH_E_PROTOCOL,
                      "%s: startAt=%lld: no values array in the page", what,
                      start);
  if (pj_val_type(last) != PJ_BOOL)
    /* isLast is optional in the spec; without it, an empty page ends. */
    *more = pj_val_len(*values) > 0;
  else
    *more = !pj_val_bool(last, 0);
  if (*more && pj_val_len(*values) == 0)
    return ch_err_set(err, CH_E_PROTOCOL,
                      "%s: startAt=%lld: empty page not marked last", what,
                      start);
  return CH_OK;
}

/* ---- groups ------------------------------------------------------------- */

static int jc_list_groups(struct jc_inst *in, json_object *tok,
                          struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf b = {0}, key = {0};
  struct pj_doc *page = NULL;
  struct pj_val values;
  long long start = pj_int(tok, "s", 0);
  long status;
  size_t n;
  int more, rc;

  if (jc_url(in, &b, "/rest/api/3/group/bulk") ||
      jc_param_ll(&b, "startAt", start) ||
      jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_GROUPS))) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_doc(in, "/rest/api/3/group/bulk", "GET", b.s, "list groups",
                      &status, &page, err);
  if (rc || (rc = jc_pagebean(in, sink, page, "list groups", start, &values,
                              &more, err)))
    goto out;
  n = pj_val_len(values);
  for (struct pj_val g = pj_val_first(values); g.i >= 0 && !rc;
       g = pj_val_next(g)) {
    struct ch_resource r = {0};
    const char *id = pj_get_str(g, "groupId");
    const char *name = pj_get_str(g, "name");
    if (!id || !*id) {
      /* groupId is nullable: such a group goes by its name. */
      if (!name || !*name) {
        in->host->log(in->hc, CH_LOG_WARN,
                      "list groups: a group with neither a groupId nor a "
                      "name was skipped");
        continue;
      }
      if (jc_group_key(&key, name)) {
        rc = pj_nomem(err);
        break;
      }
      id = key.s;
    }
    r.type = "group";
    r.id = id;
    r.display_name = name && *name ? name : id;
    if (sink->resource(sink, &r))
      rc = jc_stopped(err);
  }
  if (!rc && more)
    rc = jc_next(sink, tok, start + (long long)n, -1, err);
out:
  pj_doc_free(page);
  pj_buf_free(&key);
  pj_buf_free(&b);
  return rc;
}

static int jc_group_members(struct jc_inst *in, const char *gid,
                            json_object *tok, struct ch_sink *sink,
                            struct ch_err *err) {
  struct pj_buf b = {0};
  struct pj_doc *page = NULL;
  struct pj_val values;
  long long start = pj_int(tok, "s", 0);
  long status;
  size_t n;
  int more, rc;

  /* A "name:" key is a group without a groupId: the spec's groupname. */
  if (jc_url(in, &b, "/rest/api/3/group/member") ||
      (jc_group_name(gid) ? jc_param(in, &b, "groupname", jc_group_name(gid))
                          : jc_param(in, &b, "groupId", gid)) ||
      jc_param(in, &b, "includeInactiveUsers", "true") ||
      jc_param_ll(&b, "startAt", start) ||
      jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_MEMBERS))) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_doc(in, "/rest/api/3/group/member", "GET", b.s,
                      "group members", &status, &page, err);
  if (rc == CH_E_NOTFOUND) {
    /* Deleted while we synced: the group's listing is stale, not wrong. */
    in->host->log(in->hc, CH_LOG_WARN,
                  "group %s is gone (HTTP 404); its members are skipped", gid);
    rc = CH_OK;
    goto out;
  }
  if (rc || (rc = jc_pagebean(in, sink, page, "group members", start, &values,
                              &more, err)))
    goto out;
  n = pj_val_len(values);
  for (struct pj_val u = pj_val_first(values); u.i >= 0 && !rc;
       u = pj_val_next(u)) {
    struct ch_grant g = {0};
    const char *aid = jc_account_id(u);
    int active = pj_get_bool(u, "active", 1);
    if (!aid || jc_user_skipped(in, pj_get_str(u, "accountType"), active))
      continue;
    g.resource.type = "group";
    g.resource.id = gid;
    g.slug = "member";
    g.principal.type = "user";
    g.principal.id = aid;
    g.profile_json = active ? NULL : "{\"active\":false}";
    if (sink->grant(sink, &g))
      rc = jc_stopped(err);
  }
  if (!rc && more)
    rc = jc_next(sink, tok, start + (long long)n, -1, err);
out:
  pj_doc_free(page);
  pj_buf_free(&b);
  return rc;
}

/* ---- projects ----------------------------------------------------------- */

static int jc_emit_lead(struct jc_inst *in, const char *pid, struct pj_val lead,
                        struct ch_sink *sink, struct ch_err *err) {
  struct ch_grant g = {0};
  const char *aid = jc_account_id(lead);
  const char *type = pj_get_str(lead, "accountType");
  struct pj_val active = pj_get(lead, "active");
  int skipped = 0, rc;

  if (!aid)
    return CH_OK;
  if (pj_val_type(active) == PJ_BOOL && type)
    skipped = jc_user_skipped(in, type, pj_val_bool(active, 1));
  else if ((rc = jc_account_skipped(in, aid, &skipped, err)))
    return rc;
  if (skipped)
    return CH_OK;
  g.resource.type = "project";
  g.resource.id = pid;
  g.slug = "lead";
  g.principal.type = "user";
  g.principal.id = aid;
  return sink->grant(sink, &g) ? jc_stopped(err) : CH_OK;
}

static const char *const jc_lead_only[] = {"lead", NULL};

/* Projects come from /project/search with expand=lead, so the lead grant
   needs no per-project call; with project_keys the keys go 50 per
   request (the endpoint's limit) and "k" in the token says which slice. */
static int jc_list_projects(struct jc_inst *in, json_object *tok,
                            struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf b = {0}, prof = {0};
  struct pj_doc *page = NULL;
  struct pj_val values;
  long long start = pj_int(tok, "s", 0);
  long long chunk = pj_int(tok, "k", 0);
  long status;
  size_t n = 0;
  int more = 0, rc;

  if (chunk < 0 ||
      (in->nkeys && (size_t)chunk * JC_MAX_KEYS_PER_REQ >= in->nkeys))
    return ch_err_set(err, CH_E_INVALID, "page token is not valid");
  if (jc_url(in, &b, "/rest/api/3/project/search") ||
      jc_param_ll(&b, "startAt", start) ||
      jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_PROJECTS)) ||
      jc_param(in, &b, "expand", "lead")) {
    rc = pj_nomem(err);
    goto out;
  }
  for (size_t i = (size_t)chunk * JC_MAX_KEYS_PER_REQ;
       i < in->nkeys && i < ((size_t)chunk + 1) * JC_MAX_KEYS_PER_REQ; i++)
    if (jc_param(in, &b, "keys", in->keys[i])) {
      rc = pj_nomem(err);
      goto out;
    }
  rc = jc_request_doc(in, "/rest/api/3/project/search", "GET", b.s,
                      "list projects", &status, &page, err);
  if (rc == CH_E_NOTFOUND) {
    /* The documented answer for "no projects match": an empty result. */
    rc = CH_OK;
    goto next;
  }
  if (rc || (rc = jc_pagebean(in, sink, page, "list projects", start, &values,
                              &more, err)))
    goto out;
  n = pj_val_len(values);
  for (struct pj_val p = pj_val_first(values); p.i >= 0 && !rc;
       p = pj_val_next(p)) {
    struct ch_resource r = {0};
    const char *pid = pj_get_str(p, "id");
    const char *key = pj_get_str(p, "key");
    const char *name = pj_get_str(p, "name");
    if (!pid || !*pid) {
      in->host->log(in->hc, CH_LOG_WARN,
                    "list projects: a project without an id was skipped");
      continue;
    }
    /* The server filters by keys already; this also guards a server that
       ignores the parameter. */
    if (key && !jc_key_allowed(in, key))
      continue;
    prof.len = 0;
    if (pj_buf_add(&prof, "{") || jc_copy_str(&prof, p, "key") ||
        jc_copy_str(&prof, p, "projectTypeKey") || pj_buf_add(&prof, "}")) {
      rc = pj_nomem(err);
      break;
    }
    r.type = "project";
    r.id = pid;
    r.display_name = name ? name : key ? key : pid;
    r.profile_json = prof.s;
    r.entitlements = in->skip_participants ? jc_lead_only : NULL;
    if (sink->resource(sink, &r))
      rc = jc_stopped(err);
    if (!rc)
      rc = jc_emit_lead(in, pid, pj_get_obj(p, "lead"), sink, err);
  }
next:
  if (rc)
    goto out;
  if (more)
    rc = jc_next(sink, tok, start + (long long)n, in->nkeys ? chunk : -1, err);
  else if (in->nkeys && ((size_t)chunk + 1) * JC_MAX_KEYS_PER_REQ < in->nkeys)
    rc = jc_next(sink, tok, 0, chunk + 1, err);
out:
  pj_doc_free(page);
  pj_buf_free(&prof);
  pj_buf_free(&b);
  return rc;
}

/* ---- project roles ------------------------------------------------------- */

/* The role map gives URLs ".../project/MKY/role/10002": the id is the
   last path segment. Copies it into `out` (digits only). */
static int jc_role_id_from_url(const char *url, char *out, size_t outsz) {
  const char *end = url + strcspn(url, "?#");
  const char *p;
  size_t n;

  while (end > url && end[-1] == '/')
    end--;
  p = end;
  while (p > url && p[-1] != '/')
    p--;
  n = (size_t)(end - p);
  if (n == 0 || n >= outsz)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (p[i] < '0' || p[i] > '9')
      return -1;
  memcpy(out, p, n);
  out[n] = '\0';
  return 0;
}

static int jc_list_roles(struct jc_inst *in, const struct ch_ref *parent,
                         struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf b = {0}, id = {0};
  json_object *map = NULL;
  long status;
  int rc;

  if (!parent || !parent->id || strcmp(parent->type, "project"))
    return ch_err_set(err, CH_E_INVALID, "project_role needs a project parent");
  if (jc_url(in, &b, "/rest/api/3/project/") ||
      pj_buf_add_enc(&b, in->host, parent->id) || pj_buf_add(&b, "/role")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_route(in, "/rest/api/3/project/{projectIdOrKey}/role", "GET",
                        b.s, NULL, 0, "project roles", &status, &map, err);
  if (rc == CH_E_NOTFOUND) {
    in->host->log(in->hc, CH_LOG_WARN,
                  "project %s is gone (HTTP 404), or the account lacks the "
                  "Administer Projects permission there (Jira answers 404 "
                  "for both); its roles are skipped",
                  parent->id);
    rc = CH_OK;
    goto out;
  }
  rc = jc_role_auth(rc, parent->id, err);
  if (rc)
    goto out;
  if (!json_object_is_type(map, json_type_object)) {
    rc = ch_err_set(err, CH_E_PROTOCOL,
                    "project roles: project %s: not a JSON object", parent->id);
    goto out;
  }
  json_object_object_foreach(map, name, url) {
    struct ch_resource r = {0};
    json_object *prof;
    char rid[32];
    if (!json_object_is_type(url, json_type_string) ||
        jc_role_id_from_url(json_object_get_string(url), rid, sizeof(rid))) {
      in->host->log(in->hc, CH_LOG_WARN,
                    "project %s: role \"%s\" has no usable URL; skipped",
                    parent->id, name);
      continue;
    }
    id.len = 0;
    if (pj_buf_addf(&id, "%s:%s", parent->id, rid) ||
        !(prof = json_object_new_object())) {
      rc = pj_nomem(err);
      break;
    }
    json_object_object_add(prof, "project_id",
                           json_object_new_string(parent->id));
    json_object_object_add(prof, "role_id", json_object_new_string(rid));
    r.type = "project_role";
    r.id = id.s;
    r.display_name = name;
    r.profile_json = pj_json_text(prof);
    r.parent_type = "project";
    r.parent_id = parent->id;
    if (sink->resource(sink, &r))
      rc = jc_stopped(err);
    json_object_put(prof);
    if (rc)
      break;
  }
out:
  json_object_put(map);
  pj_buf_free(&b);
  pj_buf_free(&id);
  return rc;
}

/* The cached key of the group role actors call `name`, or NULL. */
static char *jc_named_find(struct jc_inst *in, const char *name) {
  char *key = NULL;

  pthread_mutex_lock(&in->lock);
  for (size_t i = 0; i < in->nnamed && !key; i++)
    if (strcmp(in->named[i].name, name) == 0)
      key = in->named[i].key;
  key = key ? strdup(key) : NULL;
  pthread_mutex_unlock(&in->lock);
  return key;
}

static int jc_named_add(struct jc_inst *in, const char *name, const char *key) {
  int rc = CH_OK;

  pthread_mutex_lock(&in->lock);
  for (size_t i = 0; i < in->nnamed; i++)
    if (strcmp(in->named[i].name, name) == 0)
      goto out; /* another worker was first */
  if (in->nnamed == in->capnamed) {
    size_t cap = in->capnamed ? 2 * in->capnamed : 16;
    struct jc_named_group *v = realloc(in->named, cap * sizeof(*v));
    if (!v) {
      rc = CH_E_NOMEM;
      goto out;
    }
    in->named = v;
    in->capnamed = cap;
  }
  in->named[in->nnamed].name = strdup(name);
  in->named[in->nnamed].key = strdup(key);
  if (!in->named[in->nnamed].name || !in->named[in->nnamed].key) {
    free(in->named[in->nnamed].name);
    free(in->named[in->nnamed].key);
    rc = CH_E_NOMEM;
    goto out;
  }
  in->nnamed++;
out:
  pthread_mutex_unlock(&in->lock);
  return rc;
}

/*
 * The key of the group a role actor names only by `name` (ProjectRoleGroup
 * has no required groupId): the one the group listing gave it, found with
 * GET /group/bulk?groupName=, so that the actor's grants reach that
 * group's members. Its groupId when it has one; else "name:" and the name
 * as listed; "name:" and `name` when no group has that name (deleted while
 * we synced). Cached per name. *out is malloc'd.
 */
static int jc_group_key_by_name(struct jc_inst *in, const char *name,
                                char **out, struct ch_err *err) {
  struct pj_buf b = {0}, key = {0};
  struct pj_doc *page = NULL;
  struct pj_val values, found = {0};
  long status;
  int rc;

  *out = jc_named_find(in, name);
  if (*out)
    return CH_OK;
  found.i = -1;
  if (jc_url(in, &b, "/rest/api/3/group/bulk") ||
      jc_param(in, &b, "groupName", name) ||
      jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_GROUPS))) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_doc(in, "/rest/api/3/group/bulk", "GET", b.s,
                      "find group by name", &status, &page, err);
  if (rc == CH_E_NOTFOUND)
    rc = CH_OK;
  else if (rc)
    goto out;
  values = pj_get_arr(pj_doc_root(page), "values");
  /* Group names are unique ignoring case; an exact match goes first. */
  for (struct pj_val g = pj_val_first(values); g.i >= 0; g = pj_val_next(g)) {
    const char *gname = pj_get_str(g, "name");
    if (gname && strcmp(gname, name) == 0) {
      found = g;
      break;
    }
    if (gname && found.i < 0 && jc_casecmp(gname, name) == 0)
      found = g;
  }
  if (found.i >= 0 && pj_get_str(found, "groupId") &&
      *pj_get_str(found, "groupId")) {
    if (pj_buf_add(&key, pj_get_str(found, "groupId")))
      goto nomem;
  } else if (jc_group_key(&key, found.i >= 0 && pj_get_str(found, "name")
                                    ? pj_get_str(found, "name")
                                    : name))
    goto nomem;
  if (jc_named_add(in, name, key.s) || !(*out = strdup(key.s)))
    goto nomem;
  goto out;
nomem:
  rc = pj_nomem(err);
out:
  pj_doc_free(page);
  pj_buf_free(&key);
  pj_buf_free(&b);
  return rc;
}

/*
 * One role's actors give two kinds of grants: `assigned` on the role and
 * `participate` on its project. A user actor holds both directly; a group
 * actor holds both as expandable grants, so every member of the group
 * inherits them (the host expands through group#member). This is how
 * participate has no 1,000-user cap: it never uses the user-search family.
 */
static int jc_role_actors(struct jc_inst *in, const char *res_id,
                          struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf b = {0};
  struct pj_doc *role = NULL;
  struct pj_val actors;
  const char *colon = strchr(res_id, ':');
  char pid[64];
  const char *rid;
  char *gkey = NULL; /* a name-only group actor's key */
  long status;
  int rc;

  if (!colon || colon == res_id || !colon[1] ||
      (size_t)(colon - res_id) >= sizeof(pid))
    return ch_err_set(err, CH_E_INVALID,
                      "project role id \"%s\" is not <projectId>:<roleId>",
                      res_id);
  memcpy(pid, res_id, (size_t)(colon - res_id));
  pid[colon - res_id] = '\0';
  rid = colon + 1;
  if (jc_url(in, &b, "/rest/api/3/project/") ||
      pj_buf_add_enc(&b, in->host, pid) || pj_buf_add(&b, "/role/") ||
      pj_buf_add_enc(&b, in->host, rid)) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = jc_request_doc(in, "/rest/api/3/project/{projectIdOrKey}/role/{id}",
                      "GET", b.s, "role actors", &status, &role, err);
  if (rc == CH_E_NOTFOUND) {
    in->host->log(in->hc, CH_LOG_WARN,
                  "project role %s is gone (HTTP 404), or the account lacks "
                  "the Administer Projects permission on its project; its "
                  "actors are skipped",
                  res_id);
    rc = CH_OK;
    goto out;
  }
  rc = jc_role_auth(rc, pid, err);
  if (rc)
    goto out;
  actors = pj_get_arr(pj_doc_root(role), "actors");
  if (pj_val_type(actors) == PJ_NONE) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "role actors: %s: no actors array",
                    res_id);
    goto out;
  }
  for (struct pj_val a = pj_val_first(actors); a.i >= 0 && !rc;
       a = pj_val_next(a)) {
    struct pj_val user = pj_get_obj(a, "actorUser");
    struct pj_val group = pj_get_obj(a, "actorGroup");
    const char *type = pj_get_str(a, "type");
    int is_group = pj_val_type(group) == PJ_OBJ ||
                   (type && strcmp(type, "atlassian-group-role-actor") == 0);
    const char *uid = jc_account_id(user);
    const char *gid = pj_get_str(group, "groupId");
    const char *gname = pj_get_str(group, "name");
    struct ch_grant g = {0};
    int skipped = 0;

    free(gkey);
    gkey = NULL;
    if (!gid || !*gid)
      gid = NULL;
    /* ProjectRoleGroup.groupId is optional; the group's name is given
       (RoleActor.name too, for a group actor). */
    if (!gname || !*gname)
      gname = is_group ? pj_get_str(a, "name") : NULL;
    if (gname && !*gname)
      gname = NULL;
    if (!uid && pj_get_str(user, "accountId") && !is_group)
      continue; /* a deleted, corrupted user: nobody to grant */
    if (uid) {
      if ((rc = jc_account_skipped(in, uid, &skipped, err)))
        break;
      if (skipped)
        continue;
      g.principal.type = "user";
      g.principal.id = uid;
    } else if (is_group && (gid || gname)) {
      if (!gid && (rc = jc_group_key_by_name(in, gname, &gkey, err)))
        break;
      g.principal.type = "group";
      g.principal.id = gid ? gid : gkey;
      g.flags = CH_GRANT_EXPANDABLE;
      g.expand_slug = "member";
    } else {
      in->host->log(in->hc, CH_LOG_WARN,
                    "project role %s: actor \"%s\" is neither a user nor a "
                    "group with an id or a name; skipped",
                    res_id,
                    pj_get_str(a, "displayName") ? pj_get_str(a, "displayName")
                                                 : "?");
      continue;
    }
    g.resource.type = "project_role";
    g.resource.id = res_id;
    g.slug = "assigned";
    if (sink->grant(sink, &g)) {
      rc = jc_stopped(err);
      break;
    }
    if (in->skip_participants)
      continue;
    g.resource.type = "project";
    g.resource.id = pid;
    g.slug = "participate";
    if (sink->grant(sink, &g))
      rc = jc_stopped(err);
  }
out:
  free(gkey);
  pj_doc_free(role);
  pj_buf_free(&b);
  return rc;
}

/* ---- ops ---------------------------------------------------------------- */

int jc_list(void *inst, const char *type, const struct ch_ref *parent,
            const char *page_token, struct ch_sink *sink, struct ch_err *err) {
  struct jc_inst *in = inst;
  json_object *tok = pj_token_decode(page_token, err);
  int rc;

  if (!tok)
    return err->code;
  if (strcmp(type, "user") == 0)
    rc = jc_list_users(in, tok, sink, err);
  else if (strcmp(type, "group") == 0)
    rc = jc_list_groups(in, tok, sink, err);
  else if (strcmp(type, "project") == 0)
    rc = jc_list_projects(in, tok, sink, err);
  else if (strcmp(type, "project_role") == 0)
    rc = jc_list_roles(in, parent, sink, err);
  else
    rc = ch_err_set(err, CH_E_INVALID, "unknown resource type %s", type);
  json_object_put(tok);
  return rc;
}

int jc_grants(void *inst, const struct ch_ref *resource, const char *page_token,
              struct ch_sink *sink, struct ch_err *err) {
  struct jc_inst *in = inst;
  json_object *tok = pj_token_decode(page_token, err);
  int rc = CH_OK;

  if (!tok)
    return err->code;
  if (strcmp(resource->type, "group") == 0)
    rc = jc_group_members(in, resource->id, tok, sink, err);
  else if (strcmp(resource->type, "project_role") == 0)
    rc = jc_role_actors(in, resource->id, sink, err);
  /* user and project grants come from other ops (CH_TYPE_NO_GRANTS_CALL);
     nothing to do if asked anyway. */
  json_object_put(tok);
  return rc;
}
