/* SPDX-License-Identifier: MIT */
/* atlassian_org plugin: descriptor, options, open/close/check, helpers. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "ao.h"

#define AO_VERSION "1.0.0"

#define AO_DEFAULT_BASE "https://api.atlassian.com/admin"

#define AO_AT(f) CH_OPT_AT(struct ao_conf, f)

/* Everything declared here is checked and filled in by the host. */
static const struct ch_config_key ao_options[] = {
    {CH_OPTION("org_id", CH_OPT_STRING, CH_OPT_REQUIRED | CH_OPT_PUBLIC, NULL,
               "organization id (admin.atlassian.com/o/<org_id>/...)"),
     AO_AT(org_id)},
    {CH_OPTION("api_token", CH_OPT_STRING, CH_OPT_REQUIRED | CH_OPT_SECRET,
               NULL,
               "organization API key, sent as Bearer (unscoped for writes)"),
     AO_AT(api_token)},
    {CH_OPTION("api_base", CH_OPT_URL, 0, AO_DEFAULT_BASE,
               "Organizations API base URL"),
     AO_AT(api_base)},
    {CH_OPTION("directory_id", CH_OPT_STRING, CH_OPT_PUBLIC, "-",
               "directory to read and change; '-' means every directory"),
     AO_AT(directory_id)},
    {CH_OPTION("scim_base_url", CH_OPT_URL, 0, NULL,
               "SCIM directory base URL, for provision and check"),
     AO_AT(scim_base_url)},
    {CH_OPTION("scim_token", CH_OPT_STRING, CH_OPT_SECRET, NULL,
               "SCIM directory API key, sent as Bearer"),
     AO_AT(scim_token)},
    {CH_OPTION("page_size", CH_OPT_INT, 0, "100",
               "items per page (v2 lists cap it at 100, workspaces at 1000)"),
     CH_OPT_RANGE("1", NULL), AO_AT(page_size)},
    {CH_OPTION("sync_user_roles", CH_OPT_BOOL, 0, "true",
               "read each user's direct role assignments (one request per "
               "user)"),
     AO_AT(sync_user_roles)},
    {CH_OPTION_END}};

static const char *const ao_to_user[] = {"user", NULL};
static const char *const ao_to_principal[] = {"user", "group", NULL};

static const struct ch_entitlement_def ao_no_ents[] = {{NULL, NULL, NULL}};

static const struct ch_entitlement_def ao_group_ents[] = {
    {"member", "Member", ao_to_user}, {NULL, NULL, NULL}};

/* The canonical roles a workspace can hand out (the spec's role enum
   without org-admin, which belongs to the organization, plus viewer,
   which the group role API's roleId lists: "Valid values: ...,
   atlassian/stakeholder, atlassian/viewer"). */
static const struct ch_entitlement_def ao_ws_ents[] = {
    {"role:atlassian/user", "User", ao_to_principal},
    {"role:atlassian/admin", "Admin", ao_to_principal},
    {"role:atlassian/user-access-admin", "User access admin", ao_to_principal},
    {"role:atlassian/guest", "Guest", ao_to_principal},
    {"role:atlassian/contributor", "Contributor", ao_to_principal},
    {"role:atlassian/customer", "Customer", ao_to_principal},
    {"role:atlassian/basic", "Basic", ao_to_principal},
    {"role:atlassian/stakeholder", "Stakeholder", ao_to_principal},
    {"role:atlassian/site-admin", "Site admin", ao_to_principal},
    {"role:atlassian/ai-access", "AI access", ao_to_principal},
    {"role:atlassian/viewer", "Viewer", ao_to_principal},
    {NULL, NULL, NULL}};

/* Roles held on the organization itself (the platform resource). */
static const struct ch_entitlement_def ao_org_ents[] = {
    {"role:atlassian/org-admin", "Organization admin", ao_to_principal},
    {"role:atlassian/site-admin", "Site admin", ao_to_principal},
    {"role:atlassian/user-access-admin", "User access admin", ao_to_principal},
    {"role:atlassian/ai-access", "AI access", ao_to_principal},
    {NULL, NULL, NULL}};

/* Users carry no entitlements, but their grants() call reads the roles
   given to them directly; so no CH_TYPE_NO_GRANTS_CALL. */
static const struct ch_resource_type ao_types[] = {
    {"user", "User", CH_TRAIT_USER, NULL, ao_no_ents,
     CH_CAP_SYNC | CH_CAP_PROVISION, 0},
    {"group", "Group", CH_TRAIT_GROUP, NULL, ao_group_ents,
     CH_CAP_SYNC | CH_CAP_GRANT | CH_CAP_REVOKE, 0},
    {"workspace", "Workspace", CH_TRAIT_APP, NULL, ao_ws_ents,
     CH_CAP_SYNC | CH_CAP_GRANT | CH_CAP_REVOKE, CH_TYPE_NO_GRANTS_CALL},
    {"organization", "Organization", CH_TRAIT_APP, NULL, ao_org_ents,
     CH_CAP_SYNC | CH_CAP_GRANT | CH_CAP_REVOKE, CH_TYPE_NO_GRANTS_CALL},
    {NULL, NULL, 0, NULL, NULL, 0, 0}};

static const char *const ao_user_arg[] = {"user_id", NULL};

static const struct ch_action_def ao_actions[] = {
    {"disable_user", "suspend a user's access in the directory", ao_user_arg,
     ao_user_arg},
    {"enable_user", "restore a suspended user's access", ao_user_arg,
     ao_user_arg},
    {NULL, NULL, NULL, NULL}};

/* ---- helpers shared by the source files ---------------------------------- */

int ao_org_url(struct ao_inst *ai, struct pj_buf *b, const char *version) {
  if (pj_buf_addf(b, "%s/%s/orgs/", ai->api_base, version) ||
      pj_buf_add_enc(b, ai->host, ai->org_id))
    return CH_E_NOMEM;
  return CH_OK;
}

int ao_next_cursor(struct ao_inst *ai, struct pj_val page, const char *cur,
                   const char *what, char **next, struct ch_err *err) {
  const char *link = pj_get_str(pj_get_obj(page, "links"), "next");
  char *val;

  *next = NULL;
  if (!link || !*link)
    return CH_OK;
  /* LinkPageModel.next is a "URL to fetch the Next Page": absolute in v1,
     possibly relative (a path with a query); only its cursor matters, the
     base stays ours. A bare cursor (LinkPageCursor) is base64-like and
     never holds '?', which every URL with a cursor parameter does. */
  if (strncmp(link, "http://", 7) == 0 || strncmp(link, "https://", 8) == 0 ||
      strchr(link, '?')) {
    size_t n = strlen(link) + 1;
    val = malloc(n);
    if (!val)
      return pj_nomem(err);
    if (!ai->host->url_query_get(link, "cursor", val, n) || !*val) {
      free(val);
      return ch_err_set(err, CH_E_PROTOCOL,
                        "%s: links.next has no cursor parameter", what);
    }
  } else {
    val = strdup(link);
    if (!val)
      return pj_nomem(err);
  }
  if (cur && strcmp(val, cur) == 0) {
    free(val);
    return ch_err_set(err, CH_E_PROTOCOL,
                      "%s: the server returned the same cursor again", what);
  }
  *next = val;
  return CH_OK;
}

int ao_slug_declared(const char *type, const char *slug) {
  for (size_t i = 0; ao_types[i].id; i++) {
    const struct ch_entitlement_def *e = ao_types[i].entitlements;
    if (strcmp(ao_types[i].id, type) != 0)
      continue;
    for (size_t j = 0; e && e[j].slug; j++)
      if (strcmp(e[j].slug, slug) == 0)
        return 1;
    return 0;
  }
  return 0;
}

const char *ao_err_code(json_object *body) {
  json_object *errs = pj_arr(body, "errors");

  if (errs) {
    size_t n = json_object_array_length(errs);
    for (size_t i = 0; i < n; i++) {
      const char *code = pj_str(json_object_array_get_idx(errs, i), "code");
      if (code)
        return code;
    }
  }
  /* Workspaces answer a single unwrapped ApplicationError. */
  return pj_str(body, "code");
}

/* ---- open / close -------------------------------------------------------- */

static void ao_close(void *inst) {
  struct ao_inst *ai = inst;

  if (!ai)
    return;
  for (size_t i = 0; i < ai->nws; i++)
    free(ai->ws_ids[i]);
  free(ai->ws_ids);
  pthread_mutex_destroy(&ai->ws_lock);
  free(ai);
}

static long ao_clamp(long long v, long max) { return v < max ? (long)v : max; }

/* The host has checked and filled every option (ao_options): what is left
   are the rules that span two options. */
static int ao_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **inst, struct ch_err *err) {
  const struct ao_conf *c = ch_cfg_config(host, cfg);
  const char *scim = c && c->scim_base_url ? c->scim_base_url : "";
  const char *stok = c && c->scim_token ? c->scim_token : "";
  struct ao_inst *ai;

  *inst = NULL;
  if (!c)
    return ch_err_set(err, CH_E_CONFIG,
                      "this connhost is too old for "
                      "atlassian_org: it needs ABI 1.2");
  /* One without the other cannot work; say so now, not at provision. */
  if (!*scim != !*stok)
    return ch_err_set(err, CH_E_CONFIG,
                      "options scim_base_url and scim_token go together");
  ai = calloc(1, sizeof(*ai));
  if (!ai)
    return pj_nomem(err);
  pthread_mutex_init(&ai->ws_lock, NULL);
  ai->host = host;
  ai->hc = hc;
  ai->org_id = c->org_id;
  ai->api_token = c->api_token;
  ai->api_base = c->api_base;
  ai->dir_id = *c->directory_id ? c->directory_id : "-";
  ai->scim_base = *scim ? scim : NULL;
  ai->scim_token = *stok ? stok : NULL;
  ai->page_size = ao_clamp(c->page_size, AO_PAGE_MAX);
  ai->ws_page_size = ao_clamp(c->page_size, AO_WS_PAGE_MAX);
  ai->user_roles = c->sync_user_roles;
  ai->org = (struct pj_client){host, hc, NULL, NULL, ai->api_token};
  ai->scim = (struct pj_client){host, hc, NULL, NULL, ai->scim_token};
  *inst = ai;
  return CH_OK;
}

/* ---- check --------------------------------------------------------------- */

/* Reword a failed check call so the operator knows which option to fix. */
static int ao_check_fail(int rc, const char *opt_key, const char *opt_where,
                         struct ch_err *err) {
  char why[CH_ERR_MSG_SIZE];

  memcpy(why, err->msg, sizeof(why));
  switch (rc) {
  case CH_E_AUTH:
    return ch_err_set(err, rc, "%s refused (401): check %s; %s", opt_key,
                      opt_key, why);
  case CH_E_PERM:
    return ch_err_set(err, rc, "%s lacks the rights (403); %s", opt_key, why);
  case CH_E_NOTFOUND:
    return ch_err_set(err, rc, "not found (404): check %s; %s", opt_where, why);
  default:
    return rc;
  }
}

static int ao_check(void *inst, struct ch_err *err) {
  struct ao_inst *ai = inst;
  struct pj_buf url = {0};
  json_object *body = NULL;
  long status;
  int rc;

  /* The org detail is one cheap call that needs both the key and the
     right org id. */
  rc = ao_org_url(ai, &url, "v1");
  if (rc) {
    ch_err_set(err, rc, "out of memory");
    goto out;
  }
  rc = pj_request(&ai->org, "GET", url.s, NULL, 0, "organization", &status,
                  &body, err);
  if (rc) {
    rc = ao_check_fail(rc, "api_token", "org_id", err);
    goto out;
  }
  if (!status) /* dry run */
    goto out;
  if (!pj_obj(body, "data")) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "organization: no data in answer");
    goto out;
  }
  if (!ai->scim_base)
    goto out;
  json_object_put(body);
  body = NULL;
  url.len = 0;
  rc = pj_buf_addf(&url, "%s/Users?startIndex=1&count=1", ai->scim_base);
  if (rc) {
    ch_err_set(err, rc, "out of memory");
    goto out;
  }
  rc = pj_request(&ai->scim, "GET", url.s, NULL, 0, "scim users", &status,
                  &body, err);
  if (rc)
    rc = ao_check_fail(rc, "scim_token", "scim_base_url", err);
out:
  json_object_put(body);
  pj_buf_free(&url);
  return rc;
}

static const struct ch_plugin ao_plugin = {
    CH_PLUGIN_ABI,
    sizeof(struct ch_plugin),
    "atlassian_org",
    AO_VERSION,
    "Atlassian organization: managed accounts, groups, workspaces, SCIM",
    NULL, /* options: see config_map */
    ao_types,
    ao_actions,
    ao_open,
    ao_close,
    ao_check,
    ao_list,
    ao_grants,
    ao_grant,
    ao_revoke,
    ao_provision,
    ao_action,
    CH_PLUGIN_LAYOUT,
    .config_map = ao_options,
    .config_size = sizeof(struct ao_conf)};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &ao_plugin : NULL;
}
