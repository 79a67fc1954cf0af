/* SPDX-License-Identifier: MIT */
/* atlassian_org plugin: the one place that maps the id forms the Org API
   returns to the form the graph keys use (docs/plugins/atlassian_org.md,
   "Id forms"). Every call site that reads or writes an id goes through
   here, so a new form is one edit. */
#include "autoconfig.h"

#include <string.h>

#include "ao.h"

/* users/search (expand=groups) names a group by its identity ARI; the
   group listing, groups/search and every {groupId} path use the bare id. */
#define AO_GROUP_ARI "ari:cloud:identity::group/"

const char *ao_canon_id(enum ao_id_kind kind, const char *id) {
  size_t n = strlen(AO_GROUP_ARI);

  switch (kind) {
  case AO_ID_GROUP:
    /* "ari:...::group/" alone is no id: kept whole, the failure names it. */
    if (id && strncmp(id, AO_GROUP_ARI, n) == 0 && id[n])
      return id + n;
    return id;
  case AO_ID_ACCOUNT:
    /* Bare in every answer read (24 hex digits or "<n>:<uuid>"): the ':'
       stays in keys and is encoded in paths. */
  case AO_ID_WORKSPACE:
    /* The workspace listing's id is the workspace ARI: the key as given
       (a role assignment's product ARI: ao_canon_resource). */
    return id;
  }
  return id;
}

/* ARIs are ari:cloud:<resource owner>:<cloud id>:<type>/<id>. A role
   assignment on one Jira product of a site names that product as the
   owner, ari:cloud:jira-software::site/<cloudId> (the spec's ResourceId
   example is ari:cloud:jira-core::site/1, owner jira-core), while the
   workspace listing names the site's Jira once, by the family:
   ari:cloud:jira::site/<cloudId>. Every jira-<product> belongs to it. */
#define AO_ARI_CLOUD "ari:cloud:"
#define AO_JIRA_PRODUCT "jira-"
#define AO_ARI_MAX 512 /* far longer than any ARI */

static const char *ao_workspace_of(struct ao_inst *ai, const char *id) {
  const char *listed = ao_ws_listed(ai, id), *owner, *rest;
  size_t pre = strlen(AO_ARI_CLOUD AO_JIRA_PRODUCT);
  char family[AO_ARI_MAX];
  int n;

  if (listed)
    return listed;
  if (!id || strncmp(id, AO_ARI_CLOUD AO_JIRA_PRODUCT, pre) != 0)
    return id;
  owner = id + strlen(AO_ARI_CLOUD);
  rest = strchr(owner, ':');
  if (!rest || rest == id + pre) /* no owner end, or "jira-" alone */
    return id;
  n = snprintf(family, sizeof(family), AO_ARI_CLOUD "jira%s", rest);
  if (n < 0 || (size_t)n >= sizeof(family))
    return id;
  listed = ao_ws_listed(ai, family);
  return listed ? listed : id;
}

void ao_canon_resource(struct ao_inst *ai, const char *resource_id,
                       const char *owner, struct ch_ref *ref) {
  /* The platform ARI (ari:cloud:platform::org/<orgId>, owner "platform")
     is the org itself. */
  if ((owner && strcmp(owner, "platform") == 0) ||
      (resource_id &&
       strncmp(resource_id, AO_PLATFORM_ARI, strlen(AO_PLATFORM_ARI)) == 0)) {
    ref->type = "organization";
    ref->id = ai->org_id;
    return;
  }
  ref->type = "workspace";
  ref->id = ao_workspace_of(ai, ao_canon_id(AO_ID_WORKSPACE, resource_id));
}
