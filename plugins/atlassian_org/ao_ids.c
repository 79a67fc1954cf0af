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
    /* The workspace listing's id and a role assignment's resourceId are
       both the workspace ARI: the key as given. */
    return id;
  }
  return id;
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
  ref->id = ao_canon_id(AO_ID_WORKSPACE, resource_id);
}
