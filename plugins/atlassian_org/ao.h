/* SPDX-License-Identifier: MIT */
/* atlassian_org plugin internals shared by its source files. */
#ifndef CONNHOST_AO_H
#define CONNHOST_AO_H

#include <pthread.h>

#include <json-c/json.h>

#include <connhost/plugin.h>

#include "atlassian.h"
#include "plugjson.h"

/* The Org API caps v2 pages at 100 and workspace pages at 1000. */
#define AO_PAGE_MAX 100
#define AO_WS_PAGE_MAX 1000

/* One configured organization. Read-only after open(), so the worker
   threads share it without locks. */
/* The options, as the host fills them (ao_options, CH_OPT_AT). */
struct ao_conf {
  const char *org_id;
  const char *api_token;
  const char *api_base; /* no trailing slash */
  const char *directory_id;
  const char *scim_base_url; /* no trailing slash */
  const char *scim_token;
  long long page_size;
  int sync_user_roles;
};

/* Strings are the host's (struct ao_conf), valid until close(). */
struct ao_inst {
  const struct ch_host *host;
  struct ch_hctx *hc;
  struct pj_client org;  /* Bearer org API key */
  struct pj_client scim; /* Bearer SCIM directory key */
  const char *org_id;
  const char *api_token;
  const char *api_base;  /* no trailing slash */
  const char *dir_id;    /* "-" for every directory */
  const char *scim_base; /* no trailing slash; NULL when SCIM is not set up */
  const char *scim_token;
  long page_size;
  long ws_page_size;
  int user_roles; /* read each user's direct role assignments */

  /* Workspace ids, sorted, read once on demand: role assignments name
     resources (projects, goals, ...) that are not workspaces, and a
     grant on a resource the sync never lists would fail the instance. */
  pthread_mutex_t ws_lock;
  int ws_built;
  char **ws_ids;
  size_t nws;
  int ws_unknown_told;     /* a role on an unlisted workspace was warned of */
  int role_unknown_told;   /* a role the type does not declare was warned of */
  int groups_missing_told; /* a searched user without groups was warned of */
};

/* Start `b` with "<api_base>/<vN>/orgs/<org_id>" (org id encoded). */
int ao_org_url(struct ao_inst *ai, struct pj_buf *b, const char *version);

/* Turn `links.next` of `page` into the cursor for the next request: a
   URL, absolute or relative (with a '?'), gives its `cursor` parameter,
   decoded once; a bare token is used as is. Every list that follows
   links.next goes through here. Copies it
   to *next (NULL when the list is done; caller frees). A cursor equal to
   `cur` is CH_E_PROTOCOL so a server that repeats itself cannot loop. */
int ao_next_cursor(struct ao_inst *ai, struct pj_val page, const char *cur,
                   const char *what, char **next, struct ch_err *err);

/* Whether resource type `type` declares entitlement `slug`. */
int ao_slug_declared(const char *type, const char *slug);

/* The first `errors[].code` of an Admin error body, or NULL. */
const char *ao_err_code(json_object *body);

/* Id forms (ao_ids.c): the kinds of id the Org API returns in more than
   one form. */
enum ao_id_kind { AO_ID_ACCOUNT, AO_ID_GROUP, AO_ID_WORKSPACE };

/* The org's own ARI is this prefix and the org id. */
#define AO_PLATFORM_ARI "ari:cloud:platform::org/"

/* The graph-key form of an id of `kind` in whatever form an endpoint gave
   it (an ARI or the bare id): a pointer into `id`, or `id` itself. */
const char *ao_canon_id(enum ao_id_kind kind, const char *id);

/* Where a role assignment's resource lives in the graph: the org's ARI
   (or owner "platform") is the organization, anything else a workspace
   keyed by the id the workspace listing gave it (a Jira product's ARI is
   its site's Jira workspace), or by `resource_id` itself when no listed
   workspace matches. Reads the listed ids, so after ao_ws_build. `ref`
   points into `resource_id` or `ai`. */
void ao_canon_resource(struct ao_inst *ai, const char *resource_id,
                       const char *owner, struct ch_ref *ref);

/* The listed workspace id equal to `id` (a pointer into `ai`), or NULL;
   NULL before ao_ws_build has read the listing. */
const char *ao_ws_listed(struct ao_inst *ai, const char *id);

/* Sync ops (ao_sync.c). */
int ao_list(void *inst, const char *type, const struct ch_ref *parent,
            const char *page_token, struct ch_sink *sink, struct ch_err *err);
int ao_grants(void *inst, const struct ch_ref *resource, const char *page_token,
              struct ch_sink *sink, struct ch_err *err);

/* Provisioning ops (ao_prov.c). */
int ao_grant(void *inst, const struct ch_change *change,
             struct ch_result *result, struct ch_err *err);
int ao_revoke(void *inst, const struct ch_change *change,
              struct ch_result *result, struct ch_err *err);
int ao_provision(void *inst, const struct ch_account *account,
                 struct ch_result *result, struct ch_err *err);
int ao_action(void *inst, const char *name, const struct ch_kv *args,
              size_t nargs, struct ch_result *result, struct ch_err *err);

/* Role entitlements are "role:<canonical role>", as Baton names them. */
#define AO_ROLE_PREFIX "role:"

#endif
