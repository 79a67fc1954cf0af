/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: the instance and the helpers its source files share. */
#ifndef CONNHOST_JC_H
#define CONNHOST_JC_H

#include <pthread.h>
#include <stddef.h>

#include "atlassian.h"
#include "plugjson.h"

/*
 * The plugin is split by job (jira_cloud.c: descriptor, options, open,
 * check; jc_sync.c: list and grants; jc_provision.c: writes;
 * jc_ticket.c: the ticket actions). The names
 * below are shared between those files, so they cannot be static; the
 * linker's export list (connhost_plugin only) keeps them private to the
 * .so all the same.
 */

/* Per-endpoint page-size caps of Jira Cloud (larger values are clamped
   by the server, so asking for more only hides the real page size). */
#define JC_CAP_USERS 1000      /* /users/search */
#define JC_CAP_MEMBERS 50      /* /group/member */
#define JC_CAP_PROJECTS 100    /* /project/search */
#define JC_CAP_GROUPS 50       /* /group/bulk */
#define JC_MAX_KEYS_PER_REQ 50 /* keys= values per /project/search */

/* The options, as the host fills them (jc_options, CH_OPT_AT). */
struct jc_conf {
  const char *url; /* no trailing '/' */
  const char *email;
  const char *api_token;
  const char *gateway_url; /* no trailing '/' */
  int skip_customer;
  int skip_inactive;
  int skip_participants;
  const char *const *project_keys;
  const char *ticket_project_key;
  const char *const *ticket_projects;
  long long page_size;
};

/* Strings are the host's (struct jc_conf), valid until close(). */
struct jc_inst {
  const struct ch_host *host;
  struct ch_hctx *hc;
  struct pj_client cl; /* authenticated (Basic email:api_token) */
  const char *base;    /* url without a trailing '/' */
  const char *gateway; /* gateway_url without a trailing '/' */
  int skip_customer;
  int skip_inactive;
  int skip_participants;
  const char *const *keys; /* project_keys, NULL-terminated, or NULL */
  size_t nkeys;
  const char *ticket_key;         /* ticket_project_key, or NULL */
  const char *const *ticket_keys; /* ticket_projects, NULL-terminated */
  size_t nticket_keys;
  long page_size; /* 0: the endpoint's cap */
  int provisioning;
  /* Set (atomically: every worker answers) once the site took these
     credentials: a later 401 is a permission, not a scoped token. */
  int creds_worked;

  /* Accounts the skip_* options drop, sorted; built once on demand
     because role actors carry only an account id. */
  pthread_mutex_t lock;
  int skip_built;
  char **skipped;
  size_t nskipped;

  /* Role actors naming a group only by name, resolved to the group's key
     (jc_group_key_by_name): one lookup per name, under `lock`. */
  struct jc_named_group *named;
  size_t nnamed, capnamed;
};

/*
 * A group Jira shows without a groupId (GroupDetails.groupId is nullable,
 * ProjectRoleGroup.groupId optional) is keyed "name:<group name>": a
 * groupId is a UUID, so it never has a ':' and the two forms cannot
 * collide. Such a group is read and written by name (groupname=, the
 * role actors' "group").
 */
#define JC_GROUP_BY_NAME "name:"

struct jc_named_group {
  char *name; /* as the actor gave it */
  char *key;  /* the groupId, or JC_GROUP_BY_NAME and the listed name */
};

/* The group name of a "name:" key, NULL for a groupId. */
const char *jc_group_name(const char *key);
/* `b` emptied and given the "name:" key of group `name`; nonzero when out
   of memory. */
int jc_group_key(struct pj_buf *b, const char *name);

/* Descriptor tables (jira_cloud.c). */
extern const struct ch_config_key jc_options[];

/* The page size to ask `cap`-limited endpoints for. */
long jc_page(const struct jc_inst *in, long cap);

/* Start `b` with the instance's base URL followed by `path`. */
int jc_url(const struct jc_inst *in, struct pj_buf *b, const char *path);

/* Append "?name=value" or "&name=value" with `value` URL-encoded. */
int jc_param(const struct jc_inst *in, struct pj_buf *b, const char *name,
             const char *value);
int jc_param_ll(struct pj_buf *b, const char *name, long long value);

/*
 * pj_request() with the instance's client. A 401 on a site URL runs the
 * scoped-token probe so that the error names the URL to configure.
 */
int jc_request(struct jc_inst *in, const char *method, const char *url,
               json_object *body, unsigned flags, const char *what,
               long *status, json_object **out, struct ch_err *err);
/* The same with the endpoint's route template (ch_http_req.route). */
int jc_request_route(struct jc_inst *in, const char *route, const char *method,
                     const char *url, json_object *body, unsigned flags,
                     const char *what, long *status, json_object **out,
                     struct ch_err *err);

/* The same reading the answer into a pj_doc (pj_request_doc). */
int jc_request_doc(struct jc_inst *in, const char *route, const char *method,
                   const char *url, const char *what, long *status,
                   struct pj_doc **out, struct ch_err *err);

/* Whether a user of `account_type` and `active` is dropped by skip_*. */
int jc_user_skipped(const struct jc_inst *in, const char *account_type,
                    int active);
/* Whether account `id` is dropped by skip_* (may list all users once). */
int jc_account_skipped(struct jc_inst *in, const char *id, int *skipped,
                       struct ch_err *err);

/* strcasecmp for ASCII keys and names. */
int jc_casecmp(const char *a, const char *b);
/* Whether `key` is one of the `n` strings of `list`, ignoring case. */
int jc_in_list(const char *const *list, size_t n, const char *key);

/* Whether project `key` passes the project_keys filter. */
int jc_key_allowed(const struct jc_inst *in, const char *key);

/* The human text of a Jira error body (errorMessages and errors values),
   lowercased, for matching "already a member"-style answers. malloc'd. */
char *jc_error_text(json_object *body);

/* Append the items of a comma-separated `list` to `arr` as strings,
   blanks around each trimmed and empty items dropped. */
int jc_csv_array(const char *list, json_object *arr, struct ch_err *err);

/* Sync ops (jc_sync.c). */
int jc_list(void *inst, const char *type, const struct ch_ref *parent,
            const char *page_token, struct ch_sink *sink, struct ch_err *err);
int jc_grants(void *inst, const struct ch_ref *resource, const char *page_token,
              struct ch_sink *sink, struct ch_err *err);

/* Write ops (jc_provision.c). */
int jc_grant(void *inst, const struct ch_change *change,
             struct ch_result *result, struct ch_err *err);
int jc_revoke(void *inst, const struct ch_change *change,
              struct ch_result *result, struct ch_err *err);
int jc_provision(void *inst, const struct ch_account *account,
                 struct ch_result *result, struct ch_err *err);
int jc_deprovision(void *inst, const struct ch_change *change,
                   struct ch_result *result, struct ch_err *err);
int jc_action(void *inst, const char *name, const struct ch_kv *args,
              size_t nargs, struct ch_result *result, struct ch_err *err);

/* ---- issue metadata (jc_fields.c) ---- */

/* The issue types of `project` (IssueTypeIssueCreateMetadata, all pages)
   into *types (caller puts it), and the fields of one of them
   (FieldCreateMetadata). A dry run gives NULL and CH_OK. */
int jc_issue_types(struct jc_inst *in, const char *project, json_object **types,
                   struct ch_err *err);
int jc_type_fields(struct jc_inst *in, const char *project, json_object *type,
                   json_object **fields, struct ch_err *err);
/* The issue type named (or with the id) `want`, borrowed from `types`;
   CH_E_INVALID listing the valid names otherwise. */
int jc_find_type(json_object *types, const char *project, const char *want,
                 json_object **type, struct ch_err *err);
/* The id under which a field's value is sent (fieldId, else key). */
const char *jc_field_id(json_object *meta);
/* v3 takes long text as an Atlassian Document: one paragraph per line,
   empty lines dropped. NULL when out of memory. */
json_object *jc_adf(const char *text);

/* One field the operator sets: a direct argument ("summary", "labels") or
   a `field` argument "NAME=VALUE". */
struct jc_set {
  const char *name;
  const char *value;
};
#define JC_MAX_SETS 64 /* arguments per action */

/* The fields `args` set: those named in `direct` (NULL-terminated) and
   every `field` argument, split into `copies` (JC_MAX_SETS slots, NULL at
   first; free with jc_free_sets). nargs <= JC_MAX_SETS. */
int jc_field_sets(const struct ch_kv *args, size_t nargs,
                  const char *const *direct, struct jc_set *out, size_t *n,
                  char **copies, struct ch_err *err);
void jc_free_sets(char **copies);
/* Put each of `sets` into `fields` under its field id, converted by the
   field metadata `meta` (an array; NULL in a dry run: names and text kept
   as given). Unknown fields, values that do not fit and a field set twice
   are refused naming the field; `where` ("OPS Task") says whose fields.
   An empty value is JSON null (clears the field) when `clear_ok`. */
int jc_fill_fields(json_object *fields, json_object *meta, const char *where,
                   const struct jc_set *sets, size_t nsets, int clear_ok,
                   struct ch_err *err);

/* The ticket actions (jc_ticket.c): ticket_schema, create_ticket,
   get_ticket, update_ticket; CH_E_UNSUPPORTED (err set) for another name. */
int jc_ticket_action(struct jc_inst *in, const char *name,
                     const struct ch_kv *args, size_t nargs,
                     struct ch_result *res, struct ch_err *err);

#endif
