/* SPDX-License-Identifier: MIT */
/* atlassian_org plugin: grants, revokes, SCIM provisioning and actions. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ao.h"

#define AO_SCIM_EXT "urn:scim:schemas:extension:atlassian-external:1.0"

/* Say where the role APIs come from when they are refused: Atlassian
   turns them on per organization, and nothing else explains a 403/404
   on an otherwise working key. */
#define AO_ROLE_API_HINT                                                       \
  "Atlassian enables the user role APIs per organization on request: "         \
  "if this org has not asked, ask Atlassian Support"

/* Whether an Admin error body says "that is already so". */
static int ao_is_already(json_object *body) {
  const char *code = ao_err_code(body);

  return code && strcmp(code, "ADMIN-UAM-409-2") == 0;
}

/* Whether a 409 is a licence limit (-409-3 in both code families). */
static int ao_is_licence(json_object *body) {
  const char *code = ao_err_code(body);

  return code && strstr(code, "-409-3") != NULL;
}

/* Whether an Admin error body's text says the relation is absent ("User
   is not a member of the group"): the same 404 code also means "no such
   user", which must stay an error. */
static int ao_is_absent(json_object *body) {
  static const char *const absent[] = {"not a member", "not assigned",
                                       "no such membership", NULL};
  json_object *errs = pj_arr(body, "errors");
  size_t n = errs ? json_object_array_length(errs) : 0;

  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(errs, i);
    const char *texts[2] = {pj_str(e, "detail"), pj_str(e, "title")};
    for (size_t t = 0; t < 2; t++)
      for (size_t a = 0; texts[t] && absent[a]; a++)
        if (strcasestr(texts[t], absent[a]))
          return 1;
  }
  return 0;
}

static int ao_set_result(struct ch_result *result, enum ch_outcome oc,
                         const char *msg) {
  result->outcome = oc;
  snprintf(result->message, sizeof(result->message), "%s", msg);
  return CH_OK;
}

/* The role name behind a "role:<name>" slug, or NULL. */
static const char *ao_role_of(const char *slug) {
  size_t n = strlen(AO_ROLE_PREFIX);

  if (!slug || strncmp(slug, AO_ROLE_PREFIX, n) != 0 || !slug[n])
    return NULL;
  return slug + n;
}

/* The roles each write API takes, as the spec lists them: the user role
   API's RoleApiRequest.role enum, and the group role API's roleId ("Valid
   values: atlassian/user, ..., atlassian/stakeholder, atlassian/viewer"). */
static const char *const ao_user_role_api[] = {"atlassian/user",
                                               "atlassian/user-access-admin",
                                               "atlassian/admin",
                                               "atlassian/guest",
                                               "atlassian/contributor",
                                               "atlassian/customer",
                                               "atlassian/basic",
                                               "atlassian/stakeholder",
                                               "atlassian/site-admin",
                                               "atlassian/org-admin",
                                               NULL};
static const char *const ao_group_role_api[] = {
    "atlassian/user",        "atlassian/user-access-admin",
    "atlassian/admin",       "atlassian/guest",
    "atlassian/contributor", "atlassian/customer",
    "atlassian/basic",       "atlassian/stakeholder",
    "atlassian/viewer",      NULL};

static int ao_role_api_takes(const char *const *api, const char *role) {
  for (; *api; api++)
    if (strcmp(*api, role) == 0)
      return 1;
  return 0;
}

static json_object *ao_obj2(const char *k1, const char *v1, const char *k2,
                            const char *v2) {
  json_object *o = json_object_new_object();

  if (!o)
    return NULL;
  if (json_object_object_add(o, k1, json_object_new_string(v1)) ||
      (k2 && json_object_object_add(o, k2, json_object_new_string(v2)))) {
    json_object_put(o);
    return NULL;
  }
  return o;
}

/* Start `b` with ".../v2/orgs/<org>/directories/<dir>/". */
static int ao_dir_url(struct ao_inst *ai, struct pj_buf *b) {
  if (ao_org_url(ai, b, "v2") || pj_buf_add(b, "/directories/") ||
      pj_buf_add_enc(b, ai->host, ai->dir_id) || pj_buf_add(b, "/"))
    return CH_E_NOMEM;
  return CH_OK;
}

/* Start `b` with ".../directories/<dir>/groups/<group>" for a write. The
   writes, unlike the reads, take no "-" for "every directory" (the spec's
   write paths: "Use the Get directories endpoint to find the directory
   ID"), so with the default directory_id "-" the group's own directory is
   read first (GET .../directories/-/groups/<id>, data.directoryId). In a
   dry run that read is printed, not sent, and the write shows
   {directoryId}. */
static int ao_group_write_url(struct ao_inst *ai, const char *group,
                              struct pj_buf *b, struct ch_err *err) {
  const char *id = ao_canon_id(AO_ID_GROUP, group), *dir = ai->dir_id;
  json_object *resp = NULL;
  long status = 0;
  int rc = CH_OK;

  if (strcmp(dir, "-") == 0) {
    if (ao_dir_url(ai, b) || pj_buf_add(b, "groups/") ||
        pj_buf_add_enc(b, ai->host, id))
      return pj_nomem(err);
    rc = pj_request(&ai->org, "GET", b->s, NULL, 0,
                    "find the group's directory", &status, &resp, err);
    if (rc)
      goto out;
    dir =
        status ? pj_str(pj_obj(resp, "data"), "directoryId") : "{directoryId}";
    if (!dir || !*dir) {
      rc = ch_err_set(err, CH_E_PROTOCOL,
                      "find the group's directory: no data.directoryId for "
                      "group '%s'",
                      id);
      goto out;
    }
  }
  b->len = 0;
  if (ao_org_url(ai, b, "v2") || pj_buf_add(b, "/directories/") ||
      (status ? pj_buf_add_enc(b, ai->host, dir) : pj_buf_add(b, dir)) ||
      pj_buf_add(b, "/groups/") || pj_buf_add_enc(b, ai->host, id))
    rc = pj_nomem(err);
out:
  json_object_put(resp);
  return rc;
}

/* ---- group membership ---------------------------------------------------- */

static int ao_membership(struct ao_inst *ai, const struct ch_change *ch,
                         int add, struct ch_result *result,
                         struct ch_err *err) {
  struct pj_buf url = {0};
  json_object *body = NULL, *resp = NULL;
  long status;
  int rc;

  if (strcmp(ch->slug, "member") != 0)
    return ch_err_set(err, CH_E_INVALID, "group entitlement '%s' is unknown",
                      ch->slug);
  if (strcmp(ch->principal.type, "user") != 0)
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "only users can be members of an organization group");
  /* A group key copied from a users/search answer is the ARI: the path
     wants the bare id (ao_group_write_url). */
  if ((rc = ao_group_write_url(ai, ch->resource.id, &url, err)))
    goto out;
  if (pj_buf_add(&url, "/memberships")) {
    rc = pj_nomem(err);
    goto out;
  }
  if (add) {
    body = ao_obj2("accountId", ch->principal.id, NULL, NULL);
    if (!body) {
      rc = pj_nomem(err);
      goto out;
    }
  } else if (pj_buf_add(&url, "/") ||
             pj_buf_add_enc(&url, ai->host, ch->principal.id)) {
    rc = pj_nomem(err);
    goto out;
  }
  /* Repeating either write only turns into an "already" answer. */
  rc = pj_request(
      &ai->org, add ? "POST" : "DELETE", url.s, body, CH_HTTP_RETRY_SAFE,
      add ? "add group member" : "remove group member", &status, &resp, err);
  if (rc == CH_OK) {
    ao_set_result(
        result, status ? CH_DONE : CH_DRY_RUN,
        status ? (add ? "added to group" : "removed from group")
               : (add ? "would add to group" : "would remove from group"));
  } else if (add && rc == CH_E_CONFLICT && ao_is_already(resp)) {
    rc = ao_set_result(result, CH_ALREADY, "already a member");
  } else if (add && rc == CH_E_CONFLICT && ao_is_licence(resp)) {
    rc = ch_err_set(err, CH_E_CONFLICT,
                    "licence limit reached: the group grants an app whose "
                    "user limit is used up (%s)",
                    err->msg);
  } else if (!add && rc == CH_E_NOTFOUND && ao_is_absent(resp)) {
    rc = ao_set_result(result, CH_ALREADY, "not a member");
  }
out:
  json_object_put(body);
  json_object_put(resp);
  pj_buf_free(&url);
  return rc;
}

/* ---- role assignments ---------------------------------------------------- */

static int ao_role_change(struct ao_inst *ai, const struct ch_change *ch,
                          int add, int org_level, struct ch_result *result,
                          struct ch_err *err) {
  const char *role = ao_role_of(ch->slug);
  int is_group = strcmp(ch->principal.type, "group") == 0;
  struct pj_buf url = {0};
  json_object *body = NULL, *resp = NULL;
  long status;
  int rc;

  if (!role)
    return ch_err_set(err, CH_E_INVALID, "entitlement '%s' is not a role",
                      ch->slug);
  if (!is_group && strcmp(ch->principal.type, "user") != 0)
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "roles go to users and groups, not to '%s'",
                      ch->principal.type);
  if (org_level) {
    /* Only org-admin has a write API on the organization itself. */
    if (strcmp(role, "atlassian/org-admin") != 0 || is_group)
      return ch_err_set(err, CH_E_UNSUPPORTED,
                        "only role:atlassian/org-admin for a user can be "
                        "changed on the organization");
  } else if (strcmp(role, "atlassian/org-admin") == 0 ||
             (!ao_role_api_takes(ao_user_role_api, role) &&
              !ao_role_api_takes(ao_group_role_api, role))) {
    /* org-admin belongs to the organization; ai-access neither API takes */
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "the role API cannot change %s on a workspace", role);
  } else if (!ao_role_api_takes(is_group ? ao_group_role_api : ao_user_role_api,
                                role)) {
    /* viewer (groups only) or site-admin (users only): the other API
       would answer 400 */
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "%s can be given to %s only: the %s role API has no "
                      "such role",
                      role, is_group ? "users" : "groups",
                      is_group ? "group" : "user");
  }
  if (is_group) {
    if ((rc = ao_group_write_url(ai, ch->principal.id, &url, err)))
      goto out;
    if (pj_buf_add(&url, add ? "/role-assignments/assign"
                             : "/role-assignments/revoke")) {
      rc = pj_nomem(err);
      goto out;
    }
    body = ao_obj2("resourceId", ch->resource.id, "roleId", role);
  } else {
    if (ao_org_url(ai, &url, "v1") || pj_buf_add(&url, "/users/") ||
        pj_buf_add_enc(&url, ai->host, ch->principal.id) ||
        pj_buf_add(&url, add ? "/roles/assign" : "/roles/revoke")) {
      rc = pj_nomem(err);
      goto out;
    }
    body = org_level ? ao_obj2("role", role, NULL, NULL)
                     : ao_obj2("role", role, "resource", ch->resource.id);
  }
  if (!body) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = pj_request(&ai->org, "POST", url.s, body, CH_HTTP_RETRY_SAFE,
                  add ? "assign role" : "revoke role", &status, &resp, err);
  if (rc == CH_OK) {
    ao_set_result(result, status ? CH_DONE : CH_DRY_RUN,
                  status ? (add ? "role assigned" : "role revoked")
                         : (add ? "would assign role" : "would revoke role"));
  } else if (rc == CH_E_CONFLICT && ao_is_already(resp)) {
    rc = ao_set_result(result, CH_ALREADY,
                       add ? "role already assigned" : "role not assigned");
  } else if (add && rc == CH_E_CONFLICT && ao_is_licence(resp)) {
    rc = ch_err_set(err, CH_E_CONFLICT,
                    "licence limit reached for this workspace (%s)", err->msg);
  } else if (!add && rc == CH_E_NOTFOUND && ao_is_absent(resp)) {
    rc = ao_set_result(result, CH_ALREADY, "role not assigned");
  } else if (!is_group && (rc == CH_E_PERM || rc == CH_E_NOTFOUND)) {
    char why[CH_ERR_MSG_SIZE];
    memcpy(why, err->msg, sizeof(why));
    /* The server's reason first: a 404 is also an unknown user. */
    rc = ch_err_set(err, rc, "%.150s (%s)", why, AO_ROLE_API_HINT);
  }
out:
  json_object_put(body);
  json_object_put(resp);
  pj_buf_free(&url);
  return rc;
}

static int ao_change(void *inst, const struct ch_change *ch, int add,
                     struct ch_result *result, struct ch_err *err) {
  struct ao_inst *ai = inst;
  const char *t = ch->resource.type;

  if (strcmp(t, "group") == 0)
    return ao_membership(ai, ch, add, result, err);
  if (strcmp(t, "workspace") == 0)
    return ao_role_change(ai, ch, add, 0, result, err);
  if (strcmp(t, "organization") == 0) {
    if (strcmp(ch->resource.id, ai->org_id) != 0)
      return ch_err_set(err, CH_E_NOTFOUND, "organization '%s' is not %s",
                        ch->resource.id, ai->org_id);
    return ao_role_change(ai, ch, add, 1, result, err);
  }
  return ch_err_set(err, CH_E_UNSUPPORTED, "%s resources have no grants", t);
}

int ao_grant(void *inst, const struct ch_change *change,
             struct ch_result *result, struct ch_err *err) {
  return ao_change(inst, change, 1, result, err);
}

int ao_revoke(void *inst, const struct ch_change *change,
              struct ch_result *result, struct ch_err *err) {
  return ao_change(inst, change, 0, result, err);
}

/* ---- SCIM provisioning --------------------------------------------------- */

static json_object *ao_scim_user(const struct ch_account *a) {
  json_object *u = json_object_new_object();
  json_object *schemas = json_object_new_array();
  json_object *emails = json_object_new_array();
  json_object *mail = json_object_new_object();
  json_object *name = json_object_new_object();
  int bad = !u || !schemas || !emails || !mail || !name;

  bad =
      bad || json_object_array_add(
                 schemas, json_object_new_string("urn:ietf:params:scim:schemas:"
                                                 "core:2.0:User"));
  bad = bad || json_object_object_add(u, "schemas", schemas);
  if (!bad)
    schemas = NULL;
  bad = bad ||
        json_object_object_add(u, "userName", json_object_new_string(a->email));
  bad = bad ||
        json_object_object_add(mail, "value", json_object_new_string(a->email));
  bad = bad ||
        json_object_object_add(mail, "type", json_object_new_string("work"));
  bad = bad ||
        json_object_object_add(mail, "primary", json_object_new_boolean(1));
  bad = bad || json_object_array_add(emails, mail);
  if (!bad)
    mail = NULL;
  bad = bad || json_object_object_add(u, "emails", emails);
  if (!bad)
    emails = NULL;
  if (!bad && a->given_name && *a->given_name)
    bad = json_object_object_add(name, "givenName",
                                 json_object_new_string(a->given_name));
  if (!bad && a->family_name && *a->family_name)
    bad = json_object_object_add(name, "familyName",
                                 json_object_new_string(a->family_name));
  if (!bad && json_object_object_length(name)) {
    bad = json_object_object_add(u, "name", name);
    if (!bad)
      name = NULL;
  }
  if (!bad && a->display_name && *a->display_name)
    bad = json_object_object_add(u, "displayName",
                                 json_object_new_string(a->display_name));
  bad = bad || json_object_object_add(u, "active", json_object_new_boolean(1));
  json_object_put(schemas);
  json_object_put(emails);
  json_object_put(mail);
  json_object_put(name);
  if (bad) {
    json_object_put(u);
    return NULL;
  }
  return u;
}

/* The account id the SCIM user is linked to (the id Jira and the Org API
   use), else its SCIM id. */
static void ao_scim_key(json_object *user, struct ch_result *result) {
  const char *aid = pj_str(pj_obj(user, AO_SCIM_EXT), "atlassianAccountId");

  if (!aid || !*aid)
    aid = pj_str(user, "id");
  aid = ao_canon_id(AO_ID_ACCOUNT, aid);
  snprintf(result->key, sizeof(result->key), "%s", aid ? aid : "");
}

/* Seconds since the epoch of an ISO-8601 UTC time, or -1. */
static long long ao_iso_time(const char *s) {
  struct tm tm = {0};
  const char *end;

  if (!s)
    return -1;
  end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end)
    return -1;
  return (long long)timegm(&tm);
}

/* The directory user with account id `aid` (v2 search), or NULL. */
static json_object *ao_find_account(struct ao_inst *ai, const char *key,
                                    const char *value, json_object **page,
                                    struct ch_err *err) {
  struct pj_buf url = {0};
  json_object *req = NULL, *arr = NULL, *data;
  long status;
  int rc;

  *page = NULL;
  req = json_object_new_object();
  arr = json_object_new_array();
  if (!req || !arr ||
      json_object_array_add(arr, json_object_new_string(value)) ||
      json_object_object_add(req, key, arr)) {
    json_object_put(arr);
    goto out;
  }
  if (ao_dir_url(ai, &url) || pj_buf_add(&url, "users/search"))
    goto out;
  rc = pj_request(&ai->org, "POST", url.s, req, CH_HTTP_RETRY_SAFE,
                  "users search", &status, page, err);
  if (rc)
    goto out;
  data = pj_arr(*page, "data");
  if (data && json_object_array_length(data) > 0) {
    json_object_put(req);
    pj_buf_free(&url);
    return json_object_array_get_idx(data, 0);
  }
out:
  json_object_put(req);
  pj_buf_free(&url);
  return NULL;
}

/* Whether SCIM linked an existing managed account instead of creating
   one. The create answers 201 either way, so look at the account: a
   linked one joined the org before the SCIM user was made. */
static int ao_scim_linked(struct ao_inst *ai, json_object *user) {
  const char *aid = pj_str(pj_obj(user, AO_SCIM_EXT), "atlassianAccountId");
  long long created = ao_iso_time(pj_str(pj_obj(user, "meta"), "created"));
  json_object *page = NULL, *acct;
  struct ch_err err = {0};
  long long added;
  int linked = 0;

  if (!aid || created < 0)
    return 0;
  acct = ao_find_account(ai, "accountIds", aid, &page, &err);
  added = ao_iso_time(pj_str(acct, "addedToOrg"));
  /* A minute of slack for clock skew between Atlassian's services. */
  if (added >= 0 && added < created - 60)
    linked = 1;
  json_object_put(page);
  return linked;
}

/* After a 409: find the existing SCIM user by userName for its id. */
static int ao_scim_find(struct ao_inst *ai, const char *email,
                        struct ch_result *result, struct ch_err *err) {
  struct pj_buf url = {0}, filter = {0};
  json_object *body = NULL, *list;
  json_object *value = json_object_new_string(email);
  long status;
  int rc;

  /* RFC 7644 3.4.2.2: the compared value is a JSON string, so '"' and '\'
     are escaped; a raw quote would end the value and let the rest of
     the address add filter terms of its own. */
  if (!value ||
      pj_buf_addf(&filter, "userName eq %s",
                  json_object_to_json_string_ext(
                      value, JSON_C_TO_STRING_PLAIN |
                                 JSON_C_TO_STRING_NOSLASHESCAPE)) ||
      pj_buf_addf(&url, "%s/Users?filter=", ai->scim_base) ||
      pj_buf_add_enc(&url, ai->host, filter.s)) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = pj_request(&ai->scim, "GET", url.s, NULL, 0, "scim find user", &status,
                  &body, err);
  if (rc)
    goto out;
  list = pj_arr(body, "Resources");
  if (list && json_object_array_length(list) > 0) {
    ao_scim_key(json_object_array_get_idx(list, 0), result);
  } else {
    /* Provisioned under another userName: the org knows the email. */
    json_object *page = NULL;
    const char *aid = ao_canon_id(
        AO_ID_ACCOUNT,
        pj_str(ao_find_account(ai, "emails", email, &page, err), "accountId"));
    snprintf(result->key, sizeof(result->key), "%s", aid ? aid : "");
    json_object_put(page);
  }
  ao_set_result(result, CH_ALREADY,
                "a user with this email already exists in the SCIM directory");
out:
  json_object_put(value);
  json_object_put(body);
  pj_buf_free(&url);
  pj_buf_free(&filter);
  return rc;
}

int ao_provision(void *inst, const struct ch_account *account,
                 struct ch_result *result, struct ch_err *err) {
  struct ao_inst *ai = inst;
  struct pj_buf url = {0};
  json_object *body = NULL, *resp = NULL;
  long status;
  int rc;

  if (!ai->scim_base)
    return ch_err_set(err, CH_E_CONFIG,
                      "provision needs options scim_base_url and scim_token");
  if (!account->email || !strchr(account->email, '@'))
    return ch_err_set(err, CH_E_INVALID, "provision needs an email");
  body = ao_scim_user(account);
  if (!body || pj_buf_addf(&url, "%s/Users", ai->scim_base)) {
    rc = pj_nomem(err);
    goto out;
  }
  /* No retry: a repeated create answers 409, which reads as "already". */
  rc = pj_request(&ai->scim, "POST", url.s, body, 0, "scim create user",
                  &status, &resp, err);
  if (rc == CH_E_CONFLICT) {
    /* The spec's 409 is "User already exists"; one whose user neither
       SCIM nor the org can find is another conflict (a licence limit):
       the server's own error, not "already". */
    struct ch_err conflict = *err;
    rc = ao_scim_find(ai, account->email, result, err);
    if (rc == CH_OK && !result->key[0]) {
      *err = conflict;
      rc = CH_E_CONFLICT;
    }
    goto out;
  }
  if (rc)
    goto out;
  if (!status) {
    ao_set_result(result, CH_DRY_RUN, "would create (or link) the account");
    goto out;
  }
  ao_scim_key(resp, result);
  ao_set_result(result, CH_DONE,
                ao_scim_linked(ai, resp)
                    ? "linked to the existing managed account"
                    : "account created");
out:
  json_object_put(body);
  json_object_put(resp);
  pj_buf_free(&url);
  return rc;
}

/* ---- actions ------------------------------------------------------------- */

static const char *ao_arg(const struct ch_kv *args, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(args[i].key, key) == 0)
      return args[i].value;
  return NULL;
}

/* The one directoryId in a directories page (`resp`) for account `aid`,
   or NULL with *rc and err set: none, or more than one. */
static const char *ao_only_directory(json_object *resp, const char *aid,
                                     int *rc, struct ch_err *err) {
  json_object *data = pj_arr(resp, "data");
  size_t n = data ? json_object_array_length(data) : 0;
  const char *first =
      n ? pj_str(json_object_array_get_idx(data, 0), "directoryId") : NULL;

  if (!data) {
    *rc = ch_err_set(err, CH_E_PROTOCOL,
                     "find the user's directory: the answer has no data");
  } else if (n == 0) {
    *rc = ch_err_set(err, CH_E_NOTFOUND,
                     "user '%s' is in no directory this API key administers",
                     aid);
  } else if (n > 1 || pj_str(pj_obj(resp, "links"), "next")) {
    const char *second =
        n > 1 ? pj_str(json_object_array_get_idx(data, 1), "directoryId")
              : NULL;
    int more = n > 2 || pj_str(pj_obj(resp, "links"), "next");
    *rc = ch_err_set(err, CH_E_INVALID,
                     "user '%s' is in more than one directory (%s, %s%s): "
                     "set the instance's directory_id to the one to change",
                     aid, first ? first : "?", second ? second : "...",
                     more && second ? ", ..." : "");
  } else if (!first || !*first) {
    *rc = ch_err_set(err, CH_E_PROTOCOL,
                     "find the user's directory: no directoryId for user '%s'",
                     aid);
  } else {
    return first;
  }
  return NULL;
}

/* Start `b` with ".../directories/<dir>/users/<account>" for a write.
   As with the group writes (ao_group_write_url) the path takes no "-": with
   the default directory_id the directories holding the account are read
   (GET .../v2/orgs/<org>/directories?accountId=<id>). One is the one to
   change; an account in several needs directory_id set, since which
   directory loses the user is the operator's choice. *v2_absent is set
   when that route itself is missing (a 404 without an Admin error code):
   an org still on the v1 surface. In a dry run the read is printed, not
   sent, and the write shows {directoryId}. */
static int ao_user_write_url(struct ao_inst *ai, const char *aid,
                             struct pj_buf *b, int *v2_absent,
                             struct ch_err *err) {
  const char *dir = ai->dir_id;
  json_object *resp = NULL;
  long status = 0;
  int rc = CH_OK;

  *v2_absent = 0;
  if (strcmp(dir, "-") == 0) {
    if (ao_org_url(ai, b, "v2") || pj_buf_add(b, "/directories?accountId=") ||
        pj_buf_add_enc(b, ai->host, aid))
      return pj_nomem(err);
    rc = pj_request(&ai->org, "GET", b->s, NULL, 0, "find the user's directory",
                    &status, &resp, err);
    *v2_absent = rc == CH_E_NOTFOUND && !ao_err_code(resp);
    if (rc)
      goto out;
    dir = status ? ao_only_directory(resp, aid, &rc, err) : "{directoryId}";
    if (rc)
      goto out;
  }
  b->len = 0;
  if (ao_org_url(ai, b, "v2") || pj_buf_add(b, "/directories/") ||
      (status || dir == ai->dir_id ? pj_buf_add_enc(b, ai->host, dir)
                                   : pj_buf_add(b, dir)) ||
      pj_buf_add(b, "/users/") || pj_buf_add_enc(b, ai->host, aid))
    rc = pj_nomem(err);
out:
  json_object_put(resp);
  return rc;
}

/* Suspend or restore one account's access to its directory. The v2 call
   is current; the legacy v1 suspend-access/restore-access is tried only
   when v2 answers 404 without an Admin error code (an org still on the
   old API surface). */
static int ao_suspend(struct ao_inst *ai, const char *aid, int suspend,
                      struct ch_result *result, struct ch_err *err) {
  struct pj_buf url = {0};
  json_object *resp = NULL;
  struct ch_err first;
  long status = 0;
  int rc, v2_absent;

  rc = ao_user_write_url(ai, aid, &url, &v2_absent, err);
  if (rc == CH_OK) {
    if (pj_buf_add(&url, suspend ? "/suspend" : "/restore")) {
      rc = pj_nomem(err);
      goto out;
    }
    rc = pj_request(&ai->org, "POST", url.s, NULL, CH_HTTP_RETRY_SAFE,
                    suspend ? "suspend user" : "restore user", &status, &resp,
                    err);
    v2_absent = rc == CH_E_NOTFOUND && !ao_err_code(resp);
  }
  if (v2_absent) {
    first = *err;
    json_object_put(resp);
    resp = NULL;
    url.len = 0;
    if (ao_org_url(ai, &url, "v1") || pj_buf_add(&url, "/directory/users/") ||
        pj_buf_add_enc(&url, ai->host, aid) ||
        pj_buf_add(&url, suspend ? "/suspend-access" : "/restore-access")) {
      rc = pj_nomem(err);
      goto out;
    }
    rc = pj_request(&ai->org, "POST", url.s, NULL, CH_HTTP_RETRY_SAFE,
                    suspend ? "suspend access (v1)" : "restore access (v1)",
                    &status, &resp, err);
    if (rc == CH_E_NOTFOUND)
      *err = first; /* the v2 answer explains more */
  }
  if (rc)
    goto out;
  if (!status)
    ao_set_result(result, CH_DRY_RUN,
                  suspend ? "would suspend access" : "would restore access");
  else
    ao_set_result(result, CH_DONE,
                  suspend ? "access suspended" : "access restored");
out:
  json_object_put(resp);
  pj_buf_free(&url);
  return rc;
}

int ao_action(void *inst, const char *name, const struct ch_kv *args,
              size_t nargs, struct ch_result *result, struct ch_err *err) {
  struct ao_inst *ai = inst;
  const char *uid = ao_arg(args, nargs, "user_id");
  int suspend;

  if (strcmp(name, "disable_user") == 0)
    suspend = 1;
  else if (strcmp(name, "enable_user") == 0)
    suspend = 0;
  else
    return ch_err_set(err, CH_E_UNSUPPORTED, "unknown action '%s'", name);
  if (!uid || !*uid)
    return ch_err_set(err, CH_E_INVALID, "%s needs user_id", name);
  /* A "." or ".." would be a path segment in the write, and is no account
     id; refuse it before the directory lookup, where it is only a query. */
  if (!uid[strspn(uid, ".")])
    return ch_err_set(err, CH_E_INVALID,
                      "invalid user_id '%s': no account id is only dots", uid);
  snprintf(result->key, sizeof(result->key), "%s", uid);
  return ao_suspend(ai, uid, suspend, result, err);
}
