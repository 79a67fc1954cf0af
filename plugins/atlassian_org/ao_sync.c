/* SPDX-License-Identifier: MIT */
/* atlassian_org plugin: sync (users, groups, workspaces, role grants). */
#include "autoconfig.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "ao.h"

/* One list or grants page: the decoded token and the parsed answer. */
struct ao_page {
  json_object *tok;    /* {"c": cursor} */
  struct pj_doc *body; /* the server's answer */
  const char *cur;     /* cursor sent, or NULL for the first page */
};

static int ao_page_start(struct ao_page *pg, const char *page_token,
                         struct ch_err *err) {
  memset(pg, 0, sizeof(*pg));
  pg->tok = pj_token_decode(page_token, err);
  if (!pg->tok)
    return err->code;
  pg->cur = pj_str(pg->tok, "c");
  if (pg->cur && !*pg->cur)
    pg->cur = NULL;
  return CH_OK;
}

static void ao_page_end(struct ao_page *pg) {
  pj_doc_free(pg->body);
  json_object_put(pg->tok);
}

/* Empty pages in a row that end a list although they link a next one. */
#define AO_EMPTY_PAGES_END 2

/* Hand the host the token for the page after `pg`, if there is one. */
static int ao_page_next(struct ao_inst *ai, struct ao_page *pg,
                        struct ch_sink *sink, const char *what,
                        struct ch_err *err) {
  struct pj_val data = pj_get_arr(pj_doc_root(pg->body), "data");
  long long empties = pj_int(pg->tok, "e", 0);
  json_object *tok = NULL;
  char *next = NULL;
  int rc;

  /* Some servers page past the end with empty pages and fresh cursors,
     which no repeat check catches, so empty pages in a row end the list.
     One alone does not: a list that goes on after it would lose the rest
     without a word. */
  if (pj_val_len(data)) {
    if (empties)
      ai->host->log(ai->hc, CH_LOG_WARN,
                    "%s: an empty page was followed by one with data: read "
                    "on past it",
                    what);
    empties = 0;
  } else if (++empties >= AO_EMPTY_PAGES_END) {
    return CH_OK;
  }
  rc = ao_next_cursor(ai, pj_doc_root(pg->body), pg->cur, what, &next, err);
  if (rc || !next)
    return rc;
  tok = json_object_new_object();
  if (!tok || json_object_object_add(tok, "c", json_object_new_string(next)) ||
      (empties &&
       json_object_object_add(tok, "e", json_object_new_int64(empties)))) {
    rc = pj_nomem(err);
    goto out;
  }
  if (sink->next_page(sink, pj_json_text(tok)))
    rc = ch_err_set(err, CH_E_STOPPED, "stopped");
out:
  json_object_put(tok);
  free(next);
  return rc;
}

/* The `data` array of a page; a page without one is malformed. */
static int ao_data(struct pj_doc *body, const char *what, struct pj_val *data,
                   struct ch_err *err) {
  *data = pj_get_arr(pj_doc_root(body), "data");
  if (pj_val_type(*data) == PJ_NONE)
    return ch_err_set(err, CH_E_PROTOCOL, "%s: answer has no data array", what);
  return CH_OK;
}

static int ao_add_str(json_object *o, const char *key, const char *val) {
  json_object *v;

  if (!val)
    return CH_OK;
  v = json_object_new_string(val);
  if (!v || json_object_object_add(o, key, v)) {
    json_object_put(v);
    return CH_E_NOMEM;
  }
  return CH_OK;
}

/* The profile `dst`: a JSON object of the listed members of `src` that
   are present and not null. */
#define AO_MAX_PROFILE_KEYS 32 /* the lists below are shorter */

static int ao_copy_keys(struct pj_buf *dst, struct pj_val src,
                        const char *const *keys) {
  struct pj_val found[AO_MAX_PROFILE_KEYS];
  size_t klen[AO_MAX_PROFILE_KEYS], nkeys = 0;

  for (; keys[nkeys]; nkeys++) {
    if (nkeys == AO_MAX_PROFILE_KEYS)
      return CH_E_INVALID; /* a longer list wants a bigger limit */
    found[nkeys].doc = NULL;
    found[nkeys].i = -1;
    klen[nkeys] = strlen(keys[nkeys]);
  }
  /* One walk over the members instead of a pj_get per key (the last of
     repeated members wins, as there). */
  if (pj_val_type(src) == PJ_OBJ) {
    for (struct pj_val k = pj_val_first(src); k.i >= 0; k = pj_val_next(k)) {
      size_t n;
      const char *name = pj_val_str(k, &n);
      for (size_t i = 0; i < nkeys; i++) {
        if (klen[i] == n && !memcmp(keys[i], name, n)) {
          found[i] = pj_member_value(k);
          break;
        }
      }
    }
  }
  dst->len = 0;
  if (pj_buf_add(dst, "{"))
    return CH_E_NOMEM;
  for (size_t i = 0; i < nkeys; i++) {
    struct pj_val v = found[i];
    enum pj_type t = pj_val_type(v);
    if (t == PJ_NONE || t == PJ_NULL)
      continue;
    if (pj_buf_add_key(dst, keys[i]) || pj_buf_add_val(dst, v))
      return CH_E_NOMEM;
  }
  return pj_buf_add(dst, "}");
}

/* ---- users --------------------------------------------------------------- */

static enum ch_res_status ao_user_status(struct pj_val u) {
  const char *st = pj_get_str(u, "status");
  const char *acct = pj_get_str(u, "accountStatus");
  const char *mem = pj_get_str(u, "membershipStatus");

  /* The composite status already folds account and membership state;
     only "active" lets the person in. */
  if (st)
    return strcmp(st, "active") == 0 ? CH_RES_ENABLED : CH_RES_DISABLED;
  if (acct && strcmp(acct, "active") != 0)
    return CH_RES_DISABLED;
  if (mem && strcmp(mem, "active") != 0)
    return CH_RES_DISABLED;
  return acct ? CH_RES_ENABLED : CH_RES_UNSPECIFIED;
}

static const char *const ao_user_profile_keys[] = {
    "status",        "accountStatus", "membershipStatus", "accountType",
    "claimStatus",   "nickname",      "jobTitle",         "department",
    "organization",  "location",      "timeZone",         "managementSource",
    "emailVerified", "mfaEnabled",    "addedToOrg",       NULL};

static int ao_emit_user(struct ao_inst *ai, struct pj_val u,
                        struct pj_buf *prof, struct ch_sink *sink,
                        struct ch_err *err) {
  const char *id = ao_canon_id(AO_ID_ACCOUNT, pj_get_str(u, "accountId"));
  const char *email = pj_get_str(u, "email");
  const char *name = pj_get_str(u, "name");
  struct pj_val groups = pj_get_arr(u, "groups");
  struct ch_resource r = {0};
  const char *emails[2] = {NULL, NULL};
  const char *keys[3] = {NULL, NULL, NULL};
  char *kid = NULL, *kmail = NULL;
  size_t n;
  int rc = CH_OK;

  if (!id || !*id) /* nothing to key it by: skip, the host cannot use it */
    return CH_OK;
  if (ao_copy_keys(prof, u, ao_user_profile_keys))
    goto nomem;
  n = strlen(id) + sizeof("atlassian_account_id=");
  kid = malloc(n);
  if (!kid)
    goto nomem;
  snprintf(kid, n, "atlassian_account_id=%s", id);
  keys[0] = kid;
  if (email && *email) {
    /* Emails compare case-insensitively; the key is lowercase so that
       Jira's spelling of the same address joins. */
    n = strlen(email) + sizeof("email=");
    kmail = malloc(n);
    if (!kmail)
      goto nomem;
    snprintf(kmail, n, "email=%s", email);
    for (char *p = kmail + 6; *p; p++)
      *p = (char)tolower((unsigned char)*p);
    keys[1] = kmail;
    emails[0] = email;
  }
  r.type = "user";
  r.id = id;
  r.display_name = name && *name ? name : email && *email ? email : id;
  r.status = ao_user_status(u);
  r.account_type = pj_atlassian_account_type(pj_get_str(u, "accountType"));
  r.emails = emails[0] ? emails : NULL;
  r.match_keys = keys;
  r.profile_json = prof->s;
  if (sink->resource(sink, &r)) {
    rc = ch_err_set(err, CH_E_STOPPED, "stopped");
    goto out;
  }
  /* Memberships come with the user (expand=groups): one request per
     100 users instead of one per group page. A user without the array
     the expand asked for would lose them all unseen: say so once. */
  if (pj_val_type(groups) != PJ_ARR &&
      !__atomic_exchange_n(&ai->groups_missing_told, 1, __ATOMIC_RELAXED))
    ai->host->log(ai->hc, CH_LOG_WARN,
                  "users search: user %s has no groups array although "
                  "expand [\"groups\"] asked for it: its memberships are "
                  "unknown (further such users at debug level)",
                  id);
  else if (pj_val_type(groups) != PJ_ARR)
    ai->host->log(ai->hc, CH_LOG_DEBUG, "users search: user %s has no groups",
                  id);
  for (struct pj_val gv = pj_val_first(groups); gv.i >= 0;
       gv = pj_val_next(gv)) {
    /* The ARI form here, the bare id in the group listing. */
    const char *gid = ao_canon_id(AO_ID_GROUP, pj_get_str(gv, "id"));
    struct ch_grant g = {{"group", gid}, "member", {"user", id}, 0, NULL, NULL};
    if (!gid || !*gid)
      continue;
    if (sink->grant(sink, &g)) {
      rc = ch_err_set(err, CH_E_STOPPED, "stopped");
      goto out;
    }
  }
  goto out;
nomem:
  rc = pj_nomem(err);
out:
  free(kid);
  free(kmail);
  return rc;
}

/* POST a v2 search-style list: `{cursor}` or `{limit, extras}`. */
static int ao_post_page(struct ao_inst *ai, struct ao_page *pg, const char *url,
                        long limit, const char *expand, const char *what,
                        struct ch_err *err) {
  json_object *req = json_object_new_object();
  json_object *arr = NULL;
  long status;
  int rc;

  if (!req)
    return pj_nomem(err);
  /* "If cursor is present, all other parameters are discarded" is said of
     the query's cursor; the body's only "sets the starting point". So a
     later page sends its expand again: discarded, it costs nothing, and a
     server that does not keep it in the cursor would otherwise drop every
     later user's groups without a word. The limit is the cursor's. */
  if (pg->cur)
    rc = ao_add_str(req, "cursor", pg->cur);
  else
    rc = json_object_object_add(req, "limit", json_object_new_int64(limit))
             ? CH_E_NOMEM
             : CH_OK;
  if (!rc && expand) {
    arr = json_object_new_array();
    if (!arr || json_object_array_add(arr, json_object_new_string(expand)) ||
        json_object_object_add(req, "expand", arr)) {
      json_object_put(arr);
      rc = CH_E_NOMEM;
    }
  }
  if (rc) {
    rc = pj_nomem(err);
    goto out;
  }
  /* A search changes nothing, so the host may retry it like a GET. */
  rc = pj_request_doc(&ai->org, NULL, "POST", url, req, CH_HTTP_RETRY_SAFE,
                      what, &status, &pg->body, err);
out:
  json_object_put(req);
  return rc;
}

/* On a listing's first page, tell the host how many records the chain
   yields (`users/count`, `groups/count`): only the progress line's
   percentage and ETA depend on it, so a count that fails is skipped. */
static int ao_expect(struct ao_inst *ai, const struct ao_page *pg,
                     const char *what, struct ch_sink *sink,
                     struct ch_err *err) {
  struct pj_buf url = {0};
  struct ch_err cerr = {0};
  json_object *body = NULL;
  int user = strcmp(what, "users") == 0;
  long status = 0;
  long long n;
  int rc = CH_OK;

  if (pg->cur || !CH_SINK_HAS(ai->host, expect) || !sink->expect)
    return CH_OK;
  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/directories/") ||
      pj_buf_add_enc(&url, ai->host, ai->dir_id) ||
      pj_buf_add(&url, user ? "/users/count" : "/groups/count")) {
    rc = pj_nomem(err);
    goto out;
  }
  if (pj_request_route(
          &ai->org,
          user ? "/v2/orgs/{orgId}/directories/{directoryId}/users/count"
               : "/v2/orgs/{orgId}/directories/{directoryId}/groups/count",
          "GET", url.s, NULL, 0, user ? "users count" : "groups count", &status,
          &body, &cerr) != CH_OK) {
    ai->host->log(ai->hc, CH_LOG_DEBUG, "no %s count for the progress: %s",
                  what, cerr.msg);
    goto out;
  }
  n = pj_int(body, "count", -1);
  if (n >= 0 && sink->expect(sink, (uint64_t)n))
    rc = ch_err_set(err, CH_E_STOPPED, "stopped");
out:
  json_object_put(body);
  pj_buf_free(&url);
  return rc;
}

static int ao_list_users(struct ao_inst *ai, struct ao_page *pg,
                         struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf url = {0}, prof = {0};
  struct pj_val data;
  int rc;

  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/directories/") ||
      pj_buf_add_enc(&url, ai->host, ai->dir_id) ||
      pj_buf_add(&url, "/users/search")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ao_expect(ai, pg, "users", sink, err);
  if (!rc)
    rc = ao_post_page(ai, pg, url.s, ai->page_size, "groups", "users search",
                      err);
  if (rc)
    goto out;
  rc = ao_data(pg->body, "users search", &data, err);
  if (rc)
    goto out;
  for (struct pj_val u = pj_val_first(data); u.i >= 0; u = pj_val_next(u)) {
    rc = ao_emit_user(ai, u, &prof, sink, err);
    if (rc)
      goto out;
  }
  rc = ao_page_next(ai, pg, sink, "users search", err);
out:
  pj_buf_free(&prof);
  pj_buf_free(&url);
  return rc;
}

/* ---- groups -------------------------------------------------------------- */

static const char *const ao_group_profile_keys[] = {
    "description", "directoryId", "managedBy", "externalSynced", NULL};

static int ao_list_groups(struct ao_inst *ai, struct ao_page *pg,
                          struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf url = {0}, prof = {0};
  struct pj_val data;
  int rc;

  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/directories/") ||
      pj_buf_add_enc(&url, ai->host, ai->dir_id) ||
      pj_buf_add(&url, "/groups/search")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ao_expect(ai, pg, "groups", sink, err);
  if (!rc)
    rc = ao_post_page(ai, pg, url.s, ai->page_size, NULL, "groups search", err);
  if (rc)
    goto out;
  rc = ao_data(pg->body, "groups search", &data, err);
  if (rc)
    goto out;
  for (struct pj_val g = pj_val_first(data); g.i >= 0; g = pj_val_next(g)) {
    struct ch_resource r = {0};
    const char *id = ao_canon_id(AO_ID_GROUP, pj_get_str(g, "id"));
    const char *name = pj_get_str(g, "name");

    if (!id || !*id)
      continue;
    if (ao_copy_keys(&prof, g, ao_group_profile_keys)) {
      rc = pj_nomem(err);
      goto out;
    }
    r.type = "group";
    r.id = id;
    r.display_name = name && *name ? name : id;
    r.profile_json = prof.s;
    if (sink->resource(sink, &r)) {
      rc = ch_err_set(err, CH_E_STOPPED, "stopped");
      goto out;
    }
  }
  rc = ao_page_next(ai, pg, sink, "groups search", err);
out:
  pj_buf_free(&prof);
  pj_buf_free(&url);
  return rc;
}

/* ---- workspaces ---------------------------------------------------------- */

static const char *const ao_ws_profile_keys[] = {
    "type", "typeKey", "hostUrl", "status", "realm", "owner", NULL};

static int ao_list_workspaces(struct ao_inst *ai, struct ao_page *pg,
                              struct ch_sink *sink, struct ch_err *err) {
  struct pj_buf url = {0}, prof = {0};
  struct pj_val data;
  int rc;

  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/workspaces")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ao_post_page(ai, pg, url.s, ai->ws_page_size, NULL, "workspaces", err);
  if (rc || (rc = ao_data(pg->body, "workspaces", &data, err)))
    goto out;
  for (struct pj_val w = pj_val_first(data); w.i >= 0; w = pj_val_next(w)) {
    struct pj_val attrs = pj_get_obj(w, "attributes");
    struct ch_resource r = {0};
    const char *id = ao_canon_id(AO_ID_WORKSPACE, pj_get_str(w, "id"));
    const char *name = pj_get_str(attrs, "name");
    const char *st = pj_get_str(attrs, "status");

    if (!id || !*id)
      continue;
    if (ao_copy_keys(&prof, attrs, ao_ws_profile_keys)) {
      rc = pj_nomem(err);
      goto out;
    }
    r.type = "workspace";
    r.id = id;
    r.display_name = name && *name ? name : id;
    if (st)
      r.status = strcmp(st, "online") == 0 ? CH_RES_ENABLED : CH_RES_DISABLED;
    r.profile_json = prof.s;
    if (sink->resource(sink, &r)) {
      rc = ch_err_set(err, CH_E_STOPPED, "stopped");
      goto out;
    }
  }
  rc = ao_page_next(ai, pg, sink, "workspaces", err);
out:
  pj_buf_free(&prof);
  pj_buf_free(&url);
  return rc;
}

/* ---- the organization ---------------------------------------------------- */

static int ao_list_org(struct ao_inst *ai, struct ch_sink *sink,
                       struct ch_err *err) {
  struct pj_buf url = {0};
  json_object *body = NULL, *prof = NULL;
  struct ch_resource r = {0};
  const char *name;
  long status;
  int rc;

  if (ao_org_url(ai, &url, "v1")) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = pj_request(&ai->org, "GET", url.s, NULL, 0, "organization", &status,
                  &body, err);
  if (rc)
    goto out;
  name = pj_str(pj_obj(pj_obj(body, "data"), "attributes"), "name");
  /* The profile names the org's ARI: role assignments use it. */
  url.len = 0;
  prof = json_object_new_object();
  if (!prof || pj_buf_addf(&url, "%s%s", AO_PLATFORM_ARI, ai->org_id) ||
      ao_add_str(prof, "ari", url.s) || ao_add_str(prof, "name", name)) {
    rc = pj_nomem(err);
    goto out;
  }
  r.type = "organization";
  r.id = ai->org_id;
  r.display_name = name && *name ? name : ai->org_id;
  r.profile_json = pj_json_text(prof);
  if (sink->resource(sink, &r))
    rc = ch_err_set(err, CH_E_STOPPED, "stopped");
out:
  json_object_put(prof);
  json_object_put(body);
  pj_buf_free(&url);
  return rc;
}

int ao_list(void *inst, const char *type, const struct ch_ref *parent,
            const char *page_token, struct ch_sink *sink, struct ch_err *err) {
  struct ao_inst *ai = inst;
  struct ao_page pg;
  char why[CH_ERR_MSG_SIZE];
  int rc;

  (void)parent;
  if (strcmp(type, "organization") == 0) {
    rc = ao_list_org(ai, sink, err);
    goto out;
  }
  rc = ao_page_start(&pg, page_token, err);
  if (rc)
    return rc;
  if (strcmp(type, "user") == 0)
    rc = ao_list_users(ai, &pg, sink, err);
  else if (strcmp(type, "group") == 0)
    rc = ao_list_groups(ai, &pg, sink, err);
  else if (strcmp(type, "workspace") == 0)
    rc = ao_list_workspaces(ai, &pg, sink, err);
  else
    rc = ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'", type);
  ao_page_end(&pg);
out:
  memcpy(why, err->msg, sizeof(why));
  /* These lists hang off the org and the directory alone: a 404 means
     org_id or directory_id is wrong, not that an object went away. */
  if (rc == CH_E_NOTFOUND)
    rc = ch_err_set(err, CH_E_CONFIG, "check org_id and directory_id: %s", why);
  else if (rc == CH_E_AUTH)
    rc = ch_err_set(err, rc, "api_token refused: %s", why);
  else if (rc == CH_E_PERM)
    rc = ch_err_set(err, rc,
                    "api_token may not read this org (a scoped key needs "
                    "the read scopes): %s",
                    why);
  return rc;
}

/* ---- role assignments ---------------------------------------------------- */

static int ao_has_direct(struct pj_val methods) {
  for (struct pj_val m = pj_val_first(methods); m.i >= 0; m = pj_val_next(m)) {
    const char *s = pj_val_str(m, NULL);
    if (s && strcmp(s, "direct") == 0)
      return 1;
  }
  return 0;
}

/* Read every workspace id once (under the lock; other workers wait). */
static int ao_ws_build(struct ao_inst *ai, struct ch_err *err) {
  struct pj_buf url = {0};
  struct ao_page pg;
  char **ids = NULL, *cur = NULL, *next = NULL;
  size_t n = 0, cap = 0;
  int rc = CH_OK, empties = 0;

  pthread_mutex_lock(&ai->ws_lock);
  if (ai->ws_built)
    goto out;
  memset(&pg, 0, sizeof(pg));
  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/workspaces")) {
    rc = pj_nomem(err);
    goto out;
  }
  for (;;) {
    struct pj_val data;
    rc =
        ao_post_page(ai, &pg, url.s, ai->ws_page_size, NULL, "workspaces", err);
    if (rc || (rc = ao_data(pg.body, "workspaces", &data, err)))
      break;
    for (struct pj_val w = pj_val_first(data); w.i >= 0; w = pj_val_next(w)) {
      const char *id = ao_canon_id(AO_ID_WORKSPACE, pj_get_str(w, "id"));
      char **grown;
      if (!id)
        continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 64;
        grown = realloc(ids, cap * sizeof(*ids));
        if (!grown) {
          rc = pj_nomem(err);
          break;
        }
        ids = grown;
      }
      if (!(ids[n] = strdup(id))) {
        rc = pj_nomem(err);
        break;
      }
      n++;
    }
    /* as the listing reads (ao_page_next): past one empty page, not two
       in a row, or the roles on the workspaces after it are lost */
    empties = pj_val_len(data) > 0 ? 0 : empties + 1;
    if (!rc && empties < AO_EMPTY_PAGES_END)
      rc = ao_next_cursor(ai, pj_doc_root(pg.body), pg.cur, "workspaces", &next,
                          err);
    pj_doc_free(pg.body);
    pg.body = NULL;
    free(cur);
    pg.cur = cur = next;
    next = NULL;
    if (!rc && cur && ai->host->stopping(ai->hc))
      rc = ch_err_set(err, CH_E_STOPPED, "stopped");
    if (rc || !cur)
      break;
  }
  free(cur);
  pj_doc_free(pg.body);
  if (rc)
    goto out;
  if (n)
    qsort(ids, n, sizeof(*ids), pj_cmp_str);
  ai->ws_ids = ids;
  ai->nws = n;
  ai->ws_built = 1;
  ids = NULL;
  n = 0;
out:
  pthread_mutex_unlock(&ai->ws_lock);
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
  free(ids);
  pj_buf_free(&url);
  return rc;
}

const char *ao_ws_listed(struct ao_inst *ai, const char *id) {
  char **hit;

  if (!id || !ai->nws)
    return NULL;
  hit = bsearch(&id, ai->ws_ids, ai->nws, sizeof(*ai->ws_ids), pj_cmp_str);
  return hit ? *hit : NULL;
}

static int ao_emit_role(struct ao_inst *ai, struct ch_sink *sink,
                        const struct ch_ref *res, const char *role,
                        const struct ch_ref *who, int expandable,
                        struct ch_err *err) {
  struct ch_grant g = {0};
  char slug[128];
  int n;

  n = snprintf(slug, sizeof(slug), AO_ROLE_PREFIX "%s", role);
  if (n < 0 || (size_t)n >= sizeof(slug))
    return CH_OK; /* no real role name is that long */
  /* Roles on resources the sync does not list (projects, goals) or that
     the type does not declare would fail the whole instance: skip them. */
  if (strcmp(res->type, "workspace") == 0 && !ao_ws_listed(ai, res->id)) {
    /* A workspace the listing did not return may be an id form the sync
       does not know: say so once, not per grant. */
    int first = !__atomic_exchange_n(&ai->ws_unknown_told, 1, __ATOMIC_RELAXED);
    ai->host->log(ai->hc, first ? CH_LOG_WARN : CH_LOG_DEBUG,
                  "skipping %s on %s for %s %s%s", slug, res->id, who->type,
                  who->id,
                  first ? ": the workspace listing did not return it (further "
                          "such roles are skipped at debug level)"
                        : "");
    return CH_OK;
  }
  if (!ao_slug_declared(res->type, slug)) {
    /* A role name this plugin does not know (a new canonical role): the
       grant is lost, so say so once, and not as an unlisted workspace. */
    int first =
        !__atomic_exchange_n(&ai->role_unknown_told, 1, __ATOMIC_RELAXED);
    ai->host->log(ai->hc, first ? CH_LOG_WARN : CH_LOG_DEBUG,
                  "skipping %s on %s %s for %s %s%s", slug, res->type, res->id,
                  who->type, who->id,
                  first ? ": the plugin does not know this role on a "
                          "resource of this type (further such roles are "
                          "skipped at debug level)"
                        : "");
    return CH_OK;
  }
  g.resource = *res;
  g.slug = slug;
  g.principal = *who;
  if (expandable) {
    g.flags = CH_GRANT_EXPANDABLE;
    g.expand_slug = "member";
  }
  if (sink->grant(sink, &g))
    return ch_err_set(err, CH_E_STOPPED, "stopped");
  return CH_OK;
}

/* One item of a user's role assignments: only the roles given to the
   user directly; group-held ones are emitted once on the group and the
   host expands them. */

/* Emit one grant per role name of a flat `roles` array (may be NULL). */
static int ao_emit_role_list(struct ao_inst *ai, struct ch_sink *sink,
                             const struct ch_ref *res, struct pj_val roles,
                             const struct ch_ref *who, int expandable,
                             struct ch_err *err) {
  for (struct pj_val r = pj_val_first(roles); r.i >= 0; r = pj_val_next(r)) {
    /* Only strings: json-c's text of anything else named no declared
       role either. */
    const char *role = pj_val_str(r, NULL);
    int rc;
    if (!role)
      continue;
    rc = ao_emit_role(ai, sink, res, role, who, expandable, err);
    if (rc)
      return rc;
  }
  return CH_OK;
}

static int ao_user_item(struct ao_inst *ai, struct pj_val item,
                        const struct ch_ref *who, struct ch_sink *sink,
                        struct ch_err *err) {
  struct pj_val ras = pj_get_arr(item, "roleAssignments");
  struct pj_val roles = pj_get_arr(item, "roles");
  struct ch_ref res;
  int rc;

  ao_canon_resource(ai, pj_get_str(item, "resourceId"),
                    pj_get_str(item, "resourceOwner"), &res);
  if (!res.id || !*res.id)
    return CH_OK;
  if (pj_val_type(ras) != PJ_NONE) {
    for (struct pj_val ra = pj_val_first(ras); ra.i >= 0;
         ra = pj_val_next(ra)) {
      const char *role = pj_get_str(ra, "role");
      struct pj_val m = pj_get_arr(ra, "roleAssignmentMethods");
      if (!role || !ao_has_direct(m))
        continue;
      rc = ao_emit_role(ai, sink, &res, role, who, 0, err);
      if (rc)
        return rc;
    }
    return CH_OK;
  }
  /* Older answers carry only the deprecated flat list: take it as is. */
  return ao_emit_role_list(ai, sink, &res, roles, who, 0, err);
}

static int ao_group_item(struct ao_inst *ai, struct pj_val item,
                         const struct ch_ref *who, struct ch_sink *sink,
                         struct ch_err *err) {
  struct pj_val roles = pj_get_arr(item, "roles");
  struct ch_ref res;

  ao_canon_resource(ai, pj_get_str(item, "resourceId"),
                    pj_get_str(item, "resourceOwner"), &res);
  if (!res.id || !*res.id)
    return CH_OK;
  return ao_emit_role_list(ai, sink, &res, roles, who, 1, err);
}

int ao_grants(void *inst, const struct ch_ref *resource, const char *page_token,
              struct ch_sink *sink, struct ch_err *err) {
  struct ao_inst *ai = inst;
  struct pj_buf url = {0};
  struct ao_page pg;
  struct pj_val data;
  int is_user = strcmp(resource->type, "user") == 0;
  long status;
  int rc;

  if (!is_user && strcmp(resource->type, "group") != 0)
    return CH_OK; /* workspaces and the org get their grants from these */
  if (is_user && !ai->user_roles)
    return CH_OK;
  rc = ao_page_start(&pg, page_token, err);
  if (rc)
    return rc;
  if (ao_org_url(ai, &url, "v2") || pj_buf_add(&url, "/directories/") ||
      pj_buf_add_enc(&url, ai->host, ai->dir_id) ||
      pj_buf_add(&url, is_user ? "/users/" : "/groups/") ||
      pj_buf_add_enc(&url, ai->host, resource->id) ||
      pj_buf_add(&url, "/role-assignments")) {
    rc = pj_nomem(err);
    goto out;
  }
  if (pj_buf_addf(&url, "?limit=%ld", ai->page_size) ||
      (pg.cur && (pj_buf_add(&url, "&cursor=") ||
                  pj_buf_add_enc(&url, ai->host, pg.cur)))) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = pj_request_doc(
      &ai->org,
      is_user ? "/v2/orgs/{orgId}/directories/{directoryId}/users/{accountId}"
                "/role-assignments"
              : "/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}"
                "/role-assignments",
      "GET", url.s, NULL, 0,
      is_user ? "user role assignments" : "group role assignments", &status,
      &pg.body, err);
  if (rc || (rc = ao_data(pg.body, "role assignments", &data, err)))
    goto out;
  if (pj_val_len(data) > 0) {
    rc = ao_ws_build(ai, err);
    if (rc)
      goto out;
  }
  for (struct pj_val item = pj_val_first(data); item.i >= 0;
       item = pj_val_next(item)) {
    rc = is_user ? ao_user_item(ai, item, resource, sink, err)
                 : ao_group_item(ai, item, resource, sink, err);
    if (rc)
      goto out;
  }
  rc = ao_page_next(ai, &pg, sink, "role assignments", err);
out:
  pj_buf_free(&url);
  ao_page_end(&pg);
  return rc;
}
