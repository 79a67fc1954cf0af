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
/* An account ARI (e.g. a workspace's createdBy) wraps the accountId. */
#define AO_USER_ARI "ari:cloud:identity::user/"

static const char *ao_strip(const char *id, const char *prefix) {
  size_t n = strlen(prefix);

  /* The ARI's resource part must be there: "ari:...::group/" alone is no
     id, and keeping it whole makes the failure name it. */
  if (id && strncmp(id, prefix, n) == 0 && id[n])
    return id + n;
  return id;
}

const char *ao_canon_id(enum ao_id_kind kind, const char *id) {
  switch (kind) {
  case AO_ID_ACCOUNT:
    return ao_strip(id, AO_USER_ARI);
  case AO_ID_GROUP:
    return ao_strip(id, AO_GROUP_ARI);
  case AO_ID_WORKSPACE:
    /* The workspace listing's id and a role assignment's resourceId are
       both the workspace ARI: it is the key as given. */
    return id;
  }
  return id;
}

void ao_canon_resource(struct ao_inst *ai, const char *resource_id,
                       const char *owner, struct ch_ref *ref) {
  const char *org = ao_strip(resource_id, AO_PLATFORM_ARI);

  if (org != resource_id) {
    /* The org ARI of this org is the organization; another org's ARI is
       no resource of ours and stays as given (the sync skips it). */
    ref->type = strcmp(org, ai->org_id) == 0 ? "organization" : "workspace";
    ref->id = strcmp(org, ai->org_id) == 0 ? ai->org_id : resource_id;
    return;
  }
  if (owner && strcmp(owner, "platform") == 0) {
    ref->type = "organization";
    ref->id = ai->org_id;
    return;
  }
  ref->type = "workspace";
  ref->id = ao_canon_id(AO_ID_WORKSPACE, resource_id);
}
