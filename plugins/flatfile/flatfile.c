/* SPDX-License-Identifier: MIT */
/* flatfile: serve one tenant's users, groups and roles from a JSON export. */

/*
 * This is the example plugin, written to be copied. Read it top to bottom:
 *
 *   1. the declarations the host reads before anything runs: options,
 *      resource types, the descriptor and the one exported symbol (at the
 *      end of the file);
 *   2. loading (ff_data.c, its types in ff_data.h): the whole file is
 *      read, parsed and checked in open(), into plain C arrays that are
 *      never written again;
 *   3. the ops: list() and grants() serve one page per call, and the only
 *      position they know is the one in the page token they are given.
 *
 * Because the instance is read-only after open(), the host may call list()
 * and grants() from several worker threads at once without any locking.
 *
 * The file format is documented in docs/plugins/flatfile.md; in short:
 *
 *   {"users":  [{"id", "name", "email" | "emails", "status",
 *                "account_type", "match": {...}, "profile": {...}}],
 *    "groups": [{"id", "name", "members": [user ids],
 *                "member_groups": [group ids], "profile": {...}}],
 *    "roles":  [{"id", "name", "assigned_users": [user ids],
 *                "assigned_groups": [group ids], "profile": {...}}]}
 *
 * The source is read-only, so the plugin has no grant/revoke ops; a plugin
 * that can write sets them in the descriptor and adds CH_CAP_GRANT /
 * CH_CAP_REVOKE to the types they support (see docs/plugin-abi.md).
 */

/* -std=c11 hides POSIX: ask for open(), fstat() and the XSI strerror_r(). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include <connhost/plugin.h>

#include <connhost/sdk.h> /* the installed plugin SDK: copy these files out of tree */

#include "ff_data.h"

#define FF_VERSION "1.0.0"
#define FF_PAGE_DEFAULT 100
#define FF_PAGE_MAX 10000

/* ---- what the host reads before open() ---------------------------------- */

/* The host validates the config against this table before open(): unknown
   keys, wrong types and a missing `path` never reach the plugin. It also
   applies the defaults and resolves `path` against the config file's
   directory. values[i] in struct ch_cfg belongs to ff_options[i]. */
static const struct ch_option ff_options[] = {
    {"path", CH_OPT_PATH, CH_OPT_REQUIRED, NULL,
     "the JSON export to serve (relative to the config file)"},
    {"page_size", CH_OPT_INT, 0, "100",
     "records per list/grants page, 1..10000"},
    {NULL, 0, 0, NULL, NULL}};

/* Groups and roles can be held by users directly and by groups; a group
   principal is expandable: its members inherit what it holds. */
static const char *const ff_user_or_group[] = {"user", "group", NULL};

static const struct ch_entitlement_def ff_user_ents[] = {{NULL, NULL, NULL}};
static const struct ch_entitlement_def ff_group_ents[] = {
    {"member", "Member", ff_user_or_group}, {NULL, NULL, NULL}};
static const struct ch_entitlement_def ff_role_ents[] = {
    {"assigned", "Assigned", ff_user_or_group}, {NULL, NULL, NULL}};

static const struct ch_resource_type ff_types[] = {
    /* Users carry no entitlements, so the host need not ask for their
       grants: one call per user saved. */
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = ff_user_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = "group",
     .display_name = "Group",
     .traits = CH_TRAIT_GROUP,
     .entitlements = ff_group_ents,
     .caps = CH_CAP_SYNC},
    {.id = "role",
     .display_name = "Role",
     .traits = CH_TRAIT_ROLE,
     .entitlements = ff_role_ents,
     .caps = CH_CAP_SYNC},
    {.id = NULL}};

/* One configured instance. Nothing in it changes after open(). */
struct ff_inst {
  const struct ch_host *host;
  struct ch_hctx *hc;
  char *path;
  size_t page_size;
  struct ff_data *data;
};

/* ---- page tokens --------------------------------------------------------- */

/*
 * A page token is the offset of the page's first item, {"o":300}. The host
 * treats it as opaque text, stores it with the next action and hands it
 * back, maybe to another thread: the instance itself never remembers where
 * a listing is. No token means the first page.
 */
static int ff_token_offset(const char *token, size_t n, size_t *off,
                           struct ch_err *err) {
  json_object *o;
  long long v;

  *off = 0;
  if (!token || !*token)
    return CH_OK;
  o = pj_token_decode(token, err);
  if (!o)
    return CH_E_INVALID;
  v = pj_int(o, "o", -1);
  json_object_put(o);
  /* We never hand out a token for an empty page or past the end. */
  if (v <= 0 || (unsigned long long)v >= n)
    return ch_err_set(err, CH_E_INVALID, "page token is not valid");
  *off = (size_t)v;
  return CH_OK;
}

static int ff_token_next(struct ch_sink *sink, size_t off, struct ch_err *err) {
  json_object *o = json_object_new_object();
  json_object *v = json_object_new_int64((int64_t)off);
  const char *text;
  int rc = CH_E_NOMEM;

  if (!o || !v || json_object_object_add(o, "o", v))
    goto out;
  v = NULL; /* `o` owns it now */
  text = pj_json_text(o);
  if (!text)
    goto out;
  rc = sink->next_page(sink, text) ? CH_E_STOPPED : CH_OK;
out:
  json_object_put(v);
  json_object_put(o);
  if (rc == CH_E_NOMEM)
    return pj_nomem(err);
  if (rc == CH_E_STOPPED)
    return ch_err_set(err, rc, "stopped by the host");
  return rc;
}

/* ---- ops ----------------------------------------------------------------- */

static void ff_close(void *vinst) {
  struct ff_inst *fi = vinst;

  if (!fi)
    return;
  ff_data_free(fi->data);
  free(fi->path);
  free(fi);
}

static int ff_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  struct ff_inst *fi = NULL;
  const char *path = pj_opt_str(cfg, ff_options, "path", NULL);
  long long page_size =
      pj_opt_num(cfg, ff_options, "page_size", FF_PAGE_DEFAULT);
  const struct ff_data *d;
  int rc;

  *instp = NULL;
  /* The host enforces CH_OPT_REQUIRED; checking again keeps the plugin
     safe under any host, including the unit tests' fake one. */
  if (!path || !*path) {
    rc = ch_err_set(err, CH_E_CONFIG, "option 'path' is required");
    goto out;
  }
  if (page_size < 1 || page_size > FF_PAGE_MAX) {
    rc = ch_err_set(err, CH_E_CONFIG,
                    "option 'page_size' must be 1..%d, not %lld", FF_PAGE_MAX,
                    page_size);
    goto out;
  }
  fi = calloc(1, sizeof(*fi));
  if (!fi) {
    rc = pj_nomem(err);
    goto out;
  }
  fi->host = host;
  fi->hc = hc;
  fi->page_size = (size_t)page_size;
  /* `cfg` is borrowed for this call only: keep a copy of the path for
     check(). */
  fi->path = strdup(path);
  if (!fi->path) {
    rc = pj_nomem(err);
    goto out;
  }
  rc = ff_data_load(fi->path, &fi->data, err);
  if (rc)
    goto out;
  d = fi->data;
  host->log(hc, CH_LOG_INFO,
            "loaded %zu users, %zu groups, %zu roles from '%s'",
            d->tab[FF_USER].n, d->tab[FF_GROUP].n, d->tab[FF_ROLE].n, fi->path);
  *instp = fi;
  fi = NULL;
out:
  ff_close(fi);
  return rc;
}

/* Re-read the file: it is what "the credentials still work" means for a
   file. The served data stays the snapshot open() took, so a sync in
   progress never sees two versions of the file. */
static int ff_check(void *vinst, struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  struct ff_data *fresh = NULL;
  int rc;

  rc = ff_data_load(fi->path, &fresh, err);
  if (rc == CH_OK)
    fi->host->log(fi->hc, CH_LOG_DEBUG,
                  "'%s' is valid: %zu users, %zu groups, %zu roles", fi->path,
                  fresh->tab[FF_USER].n, fresh->tab[FF_GROUP].n,
                  fresh->tab[FF_ROLE].n);
  ff_data_free(fresh);
  return rc;
}

static int ff_kind_of(const char *type) {
  for (int k = 0; k < FF_NKINDS; k++) {
    if (strcmp(ff_kinds[k].type, type) == 0)
      return k;
  }
  return -1;
}

/* Hand one record to the host. The struct and everything it points to
   only need to live until the callback returns: the host copies. */
static int ff_emit(struct ch_sink *sink, enum ff_kind k,
                   const struct ff_rec *r) {
  struct ch_resource res = {0};

  res.type = ff_kinds[k].type;
  res.id = r->id;
  res.display_name = r->name ? r->name : r->id;
  res.status = r->status;
  res.account_type = r->account_type;
  res.emails = r->emails;
  res.match_keys = (const char *const *)r->match_keys;
  res.profile_json = r->profile_json;
  return sink->resource(sink, &res);
}

static int ff_list(void *vinst, const char *type, const struct ch_ref *parent,
                   const char *page_token, struct ch_sink *sink,
                   struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  const struct ff_table *t;
  size_t off;
  size_t end;
  int k = ff_kind_of(type);
  int rc;

  if (k < 0)
    return ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'", type);
  if (parent)
    return ch_err_set(err, CH_E_INVALID, "type '%s' has no parent", type);
  t = &fi->data->tab[k];
  rc = ff_token_offset(page_token, t->n, &off, err);
  if (rc)
    return rc;
  end = t->n - off < fi->page_size ? t->n : off + fi->page_size;
  for (size_t i = off; i < end; i++) {
    if (ff_emit(sink, (enum ff_kind)k, &t->recs[i]))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  /* Only a page that is not the last one gets a token. */
  if (end < t->n)
    return ff_token_next(sink, end, err);
  return CH_OK;
}

/*
 * The grants on one group's "member" or one role's "assigned": first the
 * users, then the groups, paged as one list. A group holding an entitlement
 * is marked expandable through its own "member": the host then gives each
 * of that group's members (nested groups included) a derived grant.
 */
static int ff_grants(void *vinst, const struct ch_ref *resource,
                     const char *page_token, struct ch_sink *sink,
                     struct ch_err *err) {
  const struct ff_inst *fi = vinst;
  const struct ff_rec *r;
  size_t total;
  size_t off;
  size_t end;
  int k = ff_kind_of(resource->type);
  int rc;

  if (k < 0)
    return ch_err_set(err, CH_E_INVALID, "unknown resource type '%s'",
                      resource->type);
  if (k == FF_USER)
    return CH_OK; /* users carry no entitlements */
  r = ff_find(&fi->data->tab[k], resource->id);
  if (!r)
    return ch_err_set(err, CH_E_NOTFOUND, "%s '%s' is not in the file",
                      resource->type, resource->id);
  total = r->nusers + r->ngroups;
  rc = ff_token_offset(page_token, total, &off, err);
  if (rc)
    return rc;
  end = total - off < fi->page_size ? total : off + fi->page_size;
  for (size_t i = off; i < end; i++) {
    struct ch_grant g = {0};

    g.resource.type = ff_kinds[k].type;
    g.resource.id = r->id;
    g.slug = ff_kinds[k].slug;
    if (i < r->nusers) {
      g.principal.type = "user";
      g.principal.id = r->users[i];
    } else {
      g.principal.type = "group";
      g.principal.id = r->groups[i - r->nusers];
      g.flags = CH_GRANT_EXPANDABLE;
      g.expand_slug = "member";
    }
    if (sink->grant(sink, &g))
      return ch_err_set(err, CH_E_STOPPED, "stopped by the host");
  }
  if (end < total)
    return ff_token_next(sink, end, err);
  return CH_OK;
}

/* ---- the descriptor and the one exported symbol ------------------------- */

/* Ops left out (grant, revoke, provision_account, action) are NULL: the
   host reports them as unsupported for this plugin. */
static const struct ch_plugin ff_plugin = {
    CH_PLUGIN_INIT,
    .name = "flatfile",
    .version = FF_VERSION,
    .description = "users, groups and roles from a local JSON export",
    .options = ff_options,
    .types = ff_types,
    .actions = NULL,
    .open = ff_open,
    .close = ff_close,
    .check = ff_check,
    .list = ff_list,
    .grants = ff_grants,
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  /* A host speaking another ABI gets nothing rather than a descriptor it
     would misread. */
  return host_abi == CH_PLUGIN_ABI ? &ff_plugin : NULL;
}
