/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: descriptor, options, open/close/check, shared helpers. */
#include "autoconfig.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "jc.h"

#define JC_AT(f) CH_OPT_AT(struct jc_conf, f)

/* Everything declared here is checked and filled in by the host. */
const struct ch_config_key jc_options[] = {
    {CH_OPTION("url", CH_OPT_URL, CH_OPT_REQUIRED, NULL,
               "site URL https://<site>.atlassian.net, or the scoped-token "
               "gateway URL https://api.atlassian.com/ex/jira/<cloud-id>"),
     JC_AT(url)},
    {CH_OPTION("email", CH_OPT_STRING, CH_OPT_REQUIRED, NULL,
               "the account the API token belongs to (Basic auth user)"),
     JC_AT(email)},
    {CH_OPTION("api_token", CH_OPT_STRING, CH_OPT_REQUIRED | CH_OPT_SECRET,
               NULL, "API token (classic or scoped)"),
     JC_AT(api_token)},
    {CH_OPTION("gateway_url", CH_OPT_URL, 0, "https://api.atlassian.com",
               "Atlassian API gateway; on a 401 it names the URL a scoped "
               "token needs"),
     JC_AT(gateway_url)},
    {CH_OPTION("skip_customer_users", CH_OPT_BOOL, 0, "false",
               "drop Jira Service Management customer accounts"),
     JC_AT(skip_customer)},
    {CH_OPTION("skip_inactive_users", CH_OPT_BOOL, 0, "false",
               "drop inactive accounts (and their grants)"),
     JC_AT(skip_inactive)},
    {CH_OPTION("skip_project_participants", CH_OPT_BOOL, 0, "false",
               "do not compute the project 'participate' entitlement"),
     JC_AT(skip_participants)},
    {CH_OPTION("project_keys", CH_OPT_LIST, 0, NULL,
               "only these projects are synced and may receive tickets"),
     JC_AT(project_keys)},
    {CH_OPTION("ticket_project_key", CH_OPT_STRING, 0, NULL,
               "default project for the create_ticket action"),
     JC_AT(ticket_project_key)},
    {CH_OPTION("ticket_projects", CH_OPT_LIST, 0, NULL,
               "the projects tickets may be opened, read and updated in (and "
               "whose schemas ticket_schema lists); default: project_keys"),
     JC_AT(ticket_projects)},
    {CH_OPTION("page_size", CH_OPT_INT, 0, NULL,
               "page size; clamped per endpoint (users 1000, group members "
               "50, groups 50, projects 100); default: each endpoint's "
               "maximum"),
     CH_OPT_RANGE("1", NULL), JC_AT(page_size)},
    {CH_OPTION_END}};

static const char *const jc_to_user[] = {"user", NULL};
static const char *const jc_to_user_group[] = {"user", "group", NULL};

static const struct ch_entitlement_def jc_user_ents[] = {{NULL, NULL, NULL}};
static const struct ch_entitlement_def jc_group_ents[] = {
    {"member", "Member", jc_to_user}, {NULL, NULL, NULL}};
static const struct ch_entitlement_def jc_project_ents[] = {
    {"lead", "Lead", jc_to_user},
    {"participate", "Participate", jc_to_user_group},
    {NULL, NULL, NULL}};
static const struct ch_entitlement_def jc_role_ents[] = {
    {"assigned", "Assigned", jc_to_user_group}, {NULL, NULL, NULL}};

/* Users and projects get their grants from other ops (group members,
   project listing, role actors), so the host never asks for them. */
static const struct ch_resource_type jc_types[] = {
    {"user", "User", CH_TRAIT_USER, NULL, jc_user_ents,
     CH_CAP_SYNC | CH_CAP_PROVISION, CH_TYPE_NO_GRANTS_CALL},
    {"group", "Group", CH_TRAIT_GROUP, NULL, jc_group_ents,
     CH_CAP_SYNC | CH_CAP_GRANT | CH_CAP_REVOKE, 0},
    {"project", "Project", CH_TRAIT_APP, NULL, jc_project_ents, CH_CAP_SYNC,
     CH_TYPE_NO_GRANTS_CALL},
    {"project_role", "Project role", CH_TRAIT_ROLE, "project", jc_role_ents,
     CH_CAP_SYNC | CH_CAP_GRANT | CH_CAP_REVOKE, 0},
    {NULL, NULL, 0, NULL, NULL, 0, 0}};

static const char *const jc_schema_args[] = {"project_key", "issue_type", NULL};
static const char *const jc_create_args[] = {
    "summary", "description", "project_key", "issue_type",
    "labels",  "components",  "field",       NULL};
static const char *const jc_create_required[] = {"summary", NULL};
static const char *const jc_get_args[] = {"ticket", NULL};
static const char *const jc_update_args[] = {
    "ticket",        "comment", "field", "add_labels",
    "remove_labels", "status",  NULL};

static const struct ch_action_def jc_actions[] = {
    {"ticket_schema",
     "list the issue types of the ticket projects (or project_key) and "
     "their fields, required ones marked, as JSON",
     jc_schema_args, NULL},
    {"create_ticket",
     "create a Jira issue (default type Task, in ticket_project_key) to "
     "track a manual task, checked against the issue type's fields first; "
     "field=NAME=VALUE (repeatable) sets any field by name or id; prints "
     "the issue key",
     jc_create_args, jc_create_required},
    {"get_ticket",
     "read a ticket: status, status category, assignee, resolution, "
     "updated time (JSON)",
     jc_get_args, jc_get_args},
    {"update_ticket",
     "comment on a ticket, change its labels or fields (field=NAME=VALUE), "
     "or move it to status NAME through its transitions",
     jc_update_args, jc_get_args},
    {NULL, NULL, NULL, NULL}};

/* ---- shared helpers ----------------------------------------------------- */

long jc_page(const struct jc_inst *in, long cap) {
  return in->page_size > 0 && in->page_size < cap ? in->page_size : cap;
}

int jc_url(const struct jc_inst *in, struct pj_buf *b, const char *path) {
  b->len = 0;
  if (pj_buf_add(b, in->base) || pj_buf_add(b, path))
    return CH_E_NOMEM;
  return CH_OK;
}

int jc_param(const struct jc_inst *in, struct pj_buf *b, const char *name,
             const char *value) {
  const char *sep = b->s && strchr(b->s, '?') ? "&" : "?";
  if (pj_buf_add(b, sep) || pj_buf_add(b, name) || pj_buf_add(b, "=") ||
      pj_buf_add_enc(b, in->host, value))
    return CH_E_NOMEM;
  return CH_OK;
}

int jc_csv_array(const char *list, json_object *arr, struct ch_err *err) {
  const char *p = list;

  while (p && *p) {
    size_t n = strcspn(p, ",");
    const char *s = p, *e = p + n;
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if (e > s &&
        json_object_array_add(arr, json_object_new_string_len(s, (int)(e - s))))
      return pj_nomem(err);
    p += n;
    if (*p == ',')
      p++;
  }
  return CH_OK;
}

int jc_param_ll(struct pj_buf *b, const char *name, long long value) {
  const char *sep = b->s && strchr(b->s, '?') ? "&" : "?";
  return pj_buf_addf(b, "%s%s=%lld", sep, name, value);
}

static int jc_is_gateway(const char *url) {
  return strstr(url, "/ex/jira/") != NULL;
}

/*
 * A scoped API token sent to a site URL gets a plain 401, which reads
 * like a wrong token. Ask the site for its cloud id (unauthenticated) and
 * try the same credentials through the gateway: when that works the fix is
 * a different url, and the error says which one. Both probes are one-shot
 * (no retries): they only decide the wording of an error.
 */
static void jc_scoped_hint(struct jc_inst *in, const char *what,
                           struct ch_err *err) {
  struct pj_client anon = {in->host, in->hc, NULL, NULL, NULL};
  struct pj_buf b = {0}, gw = {0};
  struct ch_err e2 = {0};
  json_object *info = NULL;
  const char *cloud;
  long status;

  ch_err_set(err, CH_E_AUTH,
             "%s: credentials refused (HTTP 401): check email and api_token",
             what);
  if (jc_is_gateway(in->base))
    goto out;
  if (jc_url(in, &b, "/_edge/tenant_info") ||
      pj_request(&anon, "GET", b.s, NULL, CH_HTTP_NO_RETRY, "tenant info",
                 &status, &info, &e2) != CH_OK)
    goto out;
  cloud = pj_str(info, "cloudId");
  if (!cloud || !*cloud)
    goto out;
  if (pj_buf_add(&gw, in->gateway) || pj_buf_add(&gw, "/ex/jira/") ||
      pj_buf_add_enc(&gw, in->host, cloud))
    goto out;
  b.len = 0;
  if (pj_buf_add(&b, gw.s) || pj_buf_add(&b, "/rest/api/3/myself"))
    goto out;
  if (pj_request(&in->cl, "GET", b.s, NULL, CH_HTTP_NO_RETRY, "gateway probe",
                 &status, NULL, &e2) == CH_OK &&
      status >= 200 && status < 300)
    ch_err_set(err, CH_E_CONFIG,
               "the api_token is a scoped token, which works only through "
               "the API gateway: set url to %s",
               gw.s);
out:
  json_object_put(info);
  pj_buf_free(&b);
  pj_buf_free(&gw);
}

int jc_request(struct jc_inst *in, const char *method, const char *url,
               json_object *body, unsigned flags, const char *what,
               long *status, json_object **out, struct ch_err *err) {
  return jc_request_route(in, NULL, method, url, body, flags, what, status, out,
                          err);
}

/* A 401 on a site URL, before any answer took the credentials: the error
   names the URL to configure. After one did, the 401 stays as the API
   said it (Jira uses it for missing project permissions too). */
static int jc_auth_hint(struct jc_inst *in, int rc, long status,
                        const char *what, struct ch_err *err) {
  if (rc == CH_OK && status >= 200 && status < 300)
    __atomic_store_n(&in->creds_worked, 1, __ATOMIC_RELAXED);
  if (rc == CH_E_AUTH && status == 401 &&
      !__atomic_load_n(&in->creds_worked, __ATOMIC_RELAXED)) {
    jc_scoped_hint(in, what, err);
    rc = err->code;
  }
  return rc;
}

int jc_request_route(struct jc_inst *in, const char *route, const char *method,
                     const char *url, json_object *body, unsigned flags,
                     const char *what, long *status, json_object **out,
                     struct ch_err *err) {
  int rc = pj_request_route(&in->cl, route, method, url, body, flags, what,
                            status, out, err);
  return jc_auth_hint(in, rc, *status, what, err);
}

int jc_request_doc(struct jc_inst *in, const char *route, const char *method,
                   const char *url, const char *what, long *status,
                   struct pj_doc **out, struct ch_err *err) {
  int rc = pj_request_doc(&in->cl, route, method, url, NULL, 0, what, status,
                          out, err);
  return jc_auth_hint(in, rc, *status, what, err);
}

const char *jc_group_name(const char *key) {
  size_t n = strlen(JC_GROUP_BY_NAME);
  return key && strncmp(key, JC_GROUP_BY_NAME, n) == 0 ? key + n : NULL;
}

int jc_group_key(struct pj_buf *b, const char *name) {
  b->len = 0;
  return pj_buf_add(b, JC_GROUP_BY_NAME) || pj_buf_add(b, name);
}

int jc_user_skipped(const struct jc_inst *in, const char *account_type,
                    int active) {
  if (in->skip_inactive && !active)
    return 1;
  if (in->skip_customer && account_type &&
      strcmp(account_type, "customer") == 0)
    return 1;
  return 0;
}

/* List every user once (under the lock, so concurrent role workers wait
   for one listing instead of each doing their own). */
static int jc_build_skipped(struct jc_inst *in, struct ch_err *err) {
  struct pj_buf b = {0};
  json_object *page = NULL;
  long long start = 0;
  long status;
  size_t cap = 0;
  int rc = CH_OK;

  for (;;) {
    size_t n;
    if (in->host->stopping(in->hc)) {
      rc = ch_err_set(err, CH_E_STOPPED, "stopping");
      goto out;
    }
    if ((rc = jc_url(in, &b, "/rest/api/3/users/search")) ||
        (rc = jc_param_ll(&b, "startAt", start)) ||
        (rc = jc_param_ll(&b, "maxResults", jc_page(in, JC_CAP_USERS))))
      goto out;
    json_object_put(page);
    rc = jc_request(in, "GET", b.s, NULL, 0, "list users", &status, &page, err);
    if (rc)
      goto out;
    if (!json_object_is_type(page, json_type_array)) {
      rc = ch_err_set(err, CH_E_PROTOCOL, "list users: not a JSON array");
      goto out;
    }
    n = json_object_array_length(page);
    if (n == 0)
      break;
    for (size_t i = 0; i < n; i++) {
      json_object *u = json_object_array_get_idx(page, i);
      const char *id = pj_str(u, "accountId");
      if (!id || !jc_user_skipped(in, pj_str(u, "accountType"),
                                  pj_bool(u, "active", 1)))
        continue;
      if (in->nskipped == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        char **v = realloc(in->skipped, ncap * sizeof(*v));
        if (!v) {
          rc = CH_E_NOMEM;
          goto out;
        }
        in->skipped = v;
        cap = ncap;
      }
      if (!(in->skipped[in->nskipped] = strdup(id))) {
        rc = CH_E_NOMEM;
        goto out;
      }
      in->nskipped++;
    }
    start += (long long)n;
  }
  if (in->nskipped)
    qsort(in->skipped, in->nskipped, sizeof(char *), pj_cmp_str);
  in->skip_built = 1;
out:
  if (rc == CH_E_NOMEM)
    ch_err_set(err, rc, "out of memory");
  if (rc) {
    for (size_t i = 0; i < in->nskipped; i++)
      free(in->skipped[i]);
    in->nskipped = 0;
  }
  json_object_put(page);
  pj_buf_free(&b);
  return rc;
}

int jc_account_skipped(struct jc_inst *in, const char *id, int *skipped,
                       struct ch_err *err) {
  int rc = CH_OK;

  *skipped = 0;
  if (!in->skip_customer && !in->skip_inactive)
    return CH_OK;
  pthread_mutex_lock(&in->lock);
  if (!in->skip_built)
    rc = jc_build_skipped(in, err);
  if (rc == CH_OK && in->nskipped)
    *skipped = bsearch(&id, in->skipped, in->nskipped, sizeof(char *),
                       pj_cmp_str) != NULL;
  pthread_mutex_unlock(&in->lock);
  return rc;
}

int jc_casecmp(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    int d = tolower((unsigned char)*a) - tolower((unsigned char)*b);
    if (d)
      return d;
  }
  return tolower((unsigned char)*a) - tolower((unsigned char)*b);
}

int jc_in_list(const char *const *list, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (jc_casecmp(list[i], key) == 0)
      return 1;
  return 0;
}

int jc_key_allowed(const struct jc_inst *in, const char *key) {
  return !in->nkeys || jc_in_list(in->keys, in->nkeys, key);
}

char *jc_error_text(json_object *body) {
  struct pj_buf b = {0};
  json_object *msgs = pj_arr(body, "errorMessages");
  json_object *fields = pj_obj(body, "errors");

  if (pj_buf_add(&b, ""))
    return NULL;
  for (size_t i = 0; msgs && i < json_object_array_length(msgs); i++) {
    json_object *m = json_object_array_get_idx(msgs, i);
    if (json_object_is_type(m, json_type_string) &&
        (pj_buf_add(&b, json_object_get_string(m)) || pj_buf_add(&b, "\n")))
      goto fail;
  }
  if (fields) {
    json_object_object_foreach(fields, k, v) {
      (void)k;
      if (json_object_is_type(v, json_type_string) &&
          (pj_buf_add(&b, json_object_get_string(v)) || pj_buf_add(&b, "\n")))
        goto fail;
    }
  }
  /* Some gateways answer {"message": ...} instead of an ErrorCollection. */
  if (pj_str(body, "message") &&
      (pj_buf_add(&b, pj_str(body, "message")) || pj_buf_add(&b, "\n")))
    goto fail;
  for (char *p = b.s; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return b.s;
fail:
  pj_buf_free(&b);
  return NULL;
}

/* ---- open / close / check ----------------------------------------------- */

static void jc_close(void *inst) {
  struct jc_inst *in = inst;
  if (!in)
    return;
  for (size_t i = 0; i < in->nskipped; i++)
    free(in->skipped[i]);
  free(in->skipped);
  for (size_t i = 0; i < in->nnamed; i++) {
    free(in->named[i].name);
    free(in->named[i].key);
  }
  free(in->named);
  pthread_mutex_destroy(&in->lock);
  free(in);
}

static size_t jc_count(const char *const *list) {
  size_t n = 0;
  while (list && list[n])
    n++;
  return n;
}

/* The default ticket project must be one tickets may go to. */
static int jc_check_ticket_key(const struct jc_inst *in, struct ch_err *err) {
  const char *k = in->ticket_key;

  if (k && !jc_key_allowed(in, k))
    return ch_err_set(err, CH_E_CONFIG,
                      "ticket_project_key %s is not in project_keys", k);
  if (k && in->nticket_keys &&
      !jc_in_list(in->ticket_keys, in->nticket_keys, k))
    return ch_err_set(err, CH_E_CONFIG,
                      "ticket_project_key %s is not in ticket_projects", k);
  return CH_OK;
}

/* The host has checked and filled every option (jc_options): what is left
   are the rules that span two options (project_keys and ticket_projects
   bound tickets: catch a contradiction now rather than at the first
   ticket). */
static int jc_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **inst, struct ch_err *err) {
  const struct jc_conf *c = ch_cfg_config(host, cfg);
  struct jc_inst *in;

  *inst = NULL;
  if (!c)
    return ch_err_set(err, CH_E_CONFIG,
                      "this connhost is too old for "
                      "jira_cloud: it needs ABI 1.2");
  in = calloc(1, sizeof(*in));
  if (!in)
    return pj_nomem(err);
  pthread_mutex_init(&in->lock, NULL);
  in->host = host;
  in->hc = hc;
  in->cl = (struct pj_client){host, hc, c->email, c->api_token, NULL};
  in->base = c->url;
  in->gateway = c->gateway_url;
  in->skip_customer = c->skip_customer;
  in->skip_inactive = c->skip_inactive;
  in->skip_participants = c->skip_participants;
  in->nkeys = jc_count(in->keys = c->project_keys);
  in->nticket_keys = jc_count(in->ticket_keys = c->ticket_projects);
  in->ticket_key = c->ticket_project_key && *c->ticket_project_key
                       ? c->ticket_project_key
                       : NULL;
  in->page_size = c->page_size < 100000 ? (long)c->page_size : 100000;
  in->provisioning = cfg->provisioning;
  if (jc_check_ticket_key(in, err) != CH_OK) {
    jc_close(in);
    return CH_E_CONFIG;
  }
  *inst = in;
  return CH_OK;
}

static int jc_check(void *inst, struct ch_err *err) {
  struct jc_inst *in = inst;
  struct pj_buf b = {0};
  json_object *me = NULL;
  long status;
  int rc;

  if ((rc = jc_url(in, &b, "/rest/api/3/myself"))) {
    ch_err_set(err, rc, "out of memory");
    goto out;
  }
  rc = jc_request(in, "GET", b.s, NULL, 0, "check", &status, &me, err);
  if (rc)
    goto out;
  if (status && !pj_str(me, "accountId")) {
    rc = ch_err_set(err, CH_E_PROTOCOL, "check: /myself has no accountId");
    goto out;
  }
  if (status)
    in->host->log(in->hc, CH_LOG_INFO, "authenticated as %s (%s)",
                  pj_str(me, "displayName") ? pj_str(me, "displayName") : "?",
                  pj_str(me, "accountId"));
out:
  json_object_put(me);
  pj_buf_free(&b);
  return rc;
}

static const struct ch_plugin jc_plugin = {
    CH_PLUGIN_ABI,
    sizeof(struct ch_plugin),
    "jira_cloud",
    "1.0.0",
    "Jira Cloud users, groups, projects and project roles; group and role "
    "provisioning, accounts, tickets",
    NULL, /* options: see config_map */
    jc_types,
    jc_actions,
    jc_open,
    jc_close,
    jc_check,
    jc_list,
    jc_grants,
    jc_grant,
    jc_revoke,
    jc_provision,
    jc_action,
    CH_PLUGIN_LAYOUT,
    .config_map = jc_options,
    .config_size = sizeof(struct jc_conf),
    .deprovision_account = jc_deprovision};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &jc_plugin : NULL;
}
