/* SPDX-License-Identifier: MIT */
/* Tickets for manual work: open one for a change, read its status back,
   and after a sync confirm the change against the graph (tickets.h). The
   ticketing plugin is driven through its ticket actions (create_ticket,
   get_ticket, update_ticket), so any plugin that has them can serve. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "store.h"
#include "tickets.h"
#include "util.h"

const char *tickets_requester(const char *given) {
  const char *user = getenv("USER");

  if (given && *given)
    return given;
  return user && *user ? user : "unknown";
}

/* Now as ISO-8601 UTC ("2026-12-01T12:00:00Z"), the store's time form. */
static void iso_now(char *buf, size_t n) {
  time_t t = (time_t)(util_wall_ms() / 1000);
  struct tm tm;

  gmtime_r(&t, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "deprovision acme/jira/user/5b10..." or "grant E to P". */
static void change_text(const char *kind, const char *entitlement,
                        const char *principal, char *buf, size_t n) {
  if (!entitlement)
    snprintf(buf, n, "%s %s", kind, principal);
  else
    snprintf(buf, n, "%s %s %s %s", kind, entitlement,
             strcmp(kind, "grant") == 0 ? "to" : "from", principal);
}

/* The ticket's text: the exact change, who asked and when, and what the
   next syncs will do with it. malloc'd. */
static char *description(const struct ticket_change *ch, const char *at) {
  char *text = NULL;
  int n = asprintf(
      &text,
      "connhost asks for a change that must be made by hand.\n"
      "Change: %s\nTenant: %s\nInstance: %s\n%s%s%sPrincipal: %s\n"
      "Requested by: %s\nRequested at: %s\n%s%s%s"
      "When it is done, move this ticket to a done status: the next connhost "
      "sync checks that the change shows and comments here.",
      ch->kind, ch->tenant, ch->instance,
      ch->entitlement ? "Entitlement: " : "",
      ch->entitlement ? ch->entitlement : "", ch->entitlement ? "\n" : "",
      ch->principal, ch->requested_by, at, ch->steps ? "What to do: " : "",
      ch->steps ? ch->steps : "", ch->steps ? "\n" : "");
  return n < 0 ? NULL : text;
}

static int same_text(const char *a, const char *b) {
  return a && b ? strcmp(a, b) == 0 : a == b;
}

/* The key of an open ticket of the store for the same change, malloc'd, or
   NULL: asking twice (a retried script) must not open a second one. A
   store that cannot be read has none to tell of. */
static char *open_ticket_for(const char *store, const struct ticket_change *ch,
                             const char *instance) {
  struct store *s = NULL;
  struct store_ticket *t = NULL;
  struct ch_err err = {0};
  size_t n = 0;
  char *key = NULL;

  if (!store || store_open(store, 0, &s, &err) != CH_OK ||
      store_tickets(s, TICKETS_OPEN, ch->tenant, &t, &n, &err) != CH_OK)
    n = 0;
  for (size_t i = 0; i < n && !key; i++)
    if (strcmp(t[i].ticket_instance, instance) == 0 &&
        strcmp(t[i].change_kind, ch->kind) == 0 &&
        strcmp(t[i].change_instance, ch->instance) == 0 &&
        same_text(t[i].entitlement, ch->entitlement) &&
        strcmp(t[i].principal, ch->principal) == 0)
      key = strdup(t[i].ticket_key);
  store_tickets_free(t, n);
  store_close(s);
  return key;
}

int tickets_open(struct instance *tin, const struct config_tickets *tc,
                 const char *store, const struct ticket_change *ch) {
  struct ch_result res = {0};
  struct ch_err err = {0};
  struct ch_kv args[4];
  size_t nargs = 0;
  char at[32], what[1024], summary[300];
  char *desc;
  int rc, dry = tin->hctx.dry_run;

  iso_now(at, sizeof(at));
  change_text(ch->kind, ch->entitlement, ch->principal, what, sizeof(what));
  {
    char *open = open_ticket_for(store, ch, tc->instance);
    if (open) {
      printf("already: ticket for %s [%s] is open in %s/%s; no second one "
             "%s\n",
             what, open, ch->tenant, tc->instance,
             dry ? "would be opened (dry run)" : "was opened");
      free(open);
      return EXIT_OK;
    }
  }
  /* Jira caps a summary at 255 characters; the description has it all. */
  snprintf(summary, sizeof(summary), "connhost: %.240s", what);
  if (!(desc = description(ch, at))) {
    log_error("out of memory");
    return EXIT_FAIL;
  }
  args[nargs++] = (struct ch_kv){"summary", summary};
  args[nargs++] = (struct ch_kv){"description", desc};
  if (tc->project)
    args[nargs++] = (struct ch_kv){"project_key", tc->project};
  if (tc->issue_type)
    args[nargs++] = (struct ch_kv){"issue_type", tc->issue_type};
  rc = instance_action(tin, "create_ticket", args, nargs, &res, &err);
  free(desc);
  if (rc != CH_OK) {
    log_msg(tin->hctx.label, CH_LOG_ERROR, "ticket for %s: %s", what, err.msg);
    return EXIT_FAIL;
  }
  if (dry || res.outcome == CH_DRY_RUN) {
    printf("dry run: ticket for %s in %s/%s (nothing was sent, nothing "
           "recorded)\n",
           what, ch->tenant, tc->instance);
    return EXIT_OK;
  }
  if (!res.key[0]) {
    log_error("ticket for %s: %s/%s opened no issue key", what, ch->tenant,
              tc->instance);
    return EXIT_FAIL;
  }
  {
    struct store_ticket t = {.tenant = (char *)ch->tenant,
                             .ticket_instance = (char *)tc->instance,
                             .ticket_key = res.key,
                             .change_kind = (char *)ch->kind,
                             .change_instance = (char *)ch->instance,
                             .entitlement = (char *)ch->entitlement,
                             .principal = (char *)ch->principal,
                             .requested_by = (char *)ch->requested_by,
                             .requested_at = at};
    struct store *s = NULL;
    rc = store_open(store, 1, &s, &err);
    if (!rc)
      rc = store_ticket_add(s, &t, &err);
    store_close(s);
    if (rc) {
      log_error("ticket %s for %s was opened but not recorded: %s; record "
                "it by hand or close it",
                res.key, what, err.msg);
      return EXIT_FAIL;
    }
  }
  log_msg(tin->hctx.label, CH_LOG_INFO, "audit: ticket %s for %s (asked by %s)",
          res.key, what, ch->requested_by);
  printf("ticket: %s [%s]: opened in %s/%s; the next sync confirms it once the "
         "ticket is done\n",
         what, res.key, ch->tenant, tc->instance);
  return EXIT_OK;
}

/* ---- reading back and confirming ----------------------------------------- */

/* A result that keeps the action's JSON answer (ch_result.output). `res`
   first: the callback's pointer is the box. */
struct answer {
  struct ch_result res;
  char *text;
};

static int keep_output(struct ch_result *res, const char *text) {
  struct answer *a = (struct answer *)res;
  size_t have = a->text ? strlen(a->text) : 0, n = strlen(text);
  char *p = realloc(a->text, have + n + 1);

  if (!p)
    return CH_E_NOMEM;
  memcpy(p + have, text, n + 1);
  a->text = p;
  return CH_OK;
}

int tickets_refresh_one(struct instance *tin, struct store *s,
                        struct store_ticket *t, struct ch_err *err) {
  struct answer a = {.res = {.output = keep_output}};
  struct ch_kv arg = {"ticket", t->ticket_key};
  json_object *doc = NULL, *v;
  const char *status = NULL, *category = NULL;
  char at[32];
  int rc = instance_action(tin, "get_ticket", &arg, 1, &a.res, err);

  if (rc == CH_OK) {
    doc = a.text ? json_tokener_parse(a.text) : NULL;
    if (json_object_object_get_ex(doc, "status", &v))
      status = json_object_get_string(v);
    if (json_object_object_get_ex(doc, "status_category", &v))
      category = json_object_get_string(v);
    if (!status || !category)
      rc = ch_err_set(err, CH_E_PROTOCOL,
                      "get_ticket %s: no status in the plugin's answer",
                      t->ticket_key);
  }
  if (rc == CH_OK) {
    iso_now(at, sizeof(at));
    rc = store_ticket_status(s, t, status, category, at, err);
  }
  if (rc == CH_OK) {
    char *ns = strdup(status), *nc = strdup(category);
    if (!ns || !nc) {
      free(ns);
      free(nc);
      rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
    } else {
      free(t->status);
      free(t->status_category);
      t->status = ns;
      t->status_category = nc;
    }
  }
  json_object_put(doc);
  free(a.text);
  return rc;
}

/* The instance of `insts` named tenant/name, or NULL. */
static struct instance *find_inst(struct instance **insts, size_t n,
                                  const char *tenant, const char *name) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(insts[i]->ci->tenant, tenant) == 0 &&
        strcmp(insts[i]->ci->name, name) == 0)
      return insts[i];
  }
  return NULL;
}

/* The rank of the node keyed `key` that the output holds, or -1. */
static long node_of(const struct graph *g, const char *key,
                    struct graph_res_view *rv) {
  for (size_t i = 0; i < graph_nnodes(g); i++) {
    if (graph_resource_view(g, i, rv) && strcmp(rv->key, key) == 0)
      return (long)i;
  }
  return -1;
}

/* Whether node `p` holds entitlement `ent` (directly or through a group). */
static int holds(const struct graph *g, const char *ent, long p) {
  struct graph_ent_view ev;
  size_t ne = graph_nentitlements(g), e;

  for (e = 0; e < ne; e++) {
    graph_entitlement_view(g, e, &ev);
    if (strcmp(ev.key, ent) == 0)
      break;
  }
  if (e == ne || p < 0)
    return 0;
  for (size_t i = 0; i < graph_ngrants(g, NULL); i++) {
    struct graph_grant_view gv;
    graph_grant_view(g, i, &gv);
    if (gv.ent == e && gv.principal == (uint32_t)p)
      return 1;
  }
  return 0;
}

/* A user of instance `inst` with email `email` (provision). */
static int has_account(const struct graph *g, size_t inst, const char *email) {
  struct graph_res_view rv;

  for (size_t i = 0; i < graph_nnodes(g); i++) {
    if (!graph_resource_view(g, i, &rv) || rv.inst != inst ||
        !(rv.traits & CH_TRAIT_USER))
      continue;
    for (const char *const *e = rv.emails; e && *e; e++) {
      if (strcasecmp(*e, email) == 0)
        return 1;
    }
  }
  return 0;
}

/* Whether the graph shows the ticket's change made. */
static int change_shows(const struct graph *g, size_t inst,
                        const struct store_ticket *t) {
  struct graph_res_view rv;
  long p = node_of(g, t->principal, &rv);

  if (strcmp(t->change_kind, "grant") == 0)
    return t->entitlement && holds(g, t->entitlement, p);
  if (strcmp(t->change_kind, "revoke") == 0)
    return t->entitlement && !holds(g, t->entitlement, p);
  if (strcmp(t->change_kind, "provision") == 0)
    return has_account(g, inst, t->principal);
  /* deprovision: gone, or no longer able to sign in */
  return p < 0 || rv.status == CH_RES_DISABLED || rv.status == CH_RES_DELETED;
}

/* Comment the outcome on the ticket, then record it. */
static int confirm(struct instance *tin, struct store *s,
                   const struct store_ticket *t, const char *outcome,
                   int64_t run, struct ch_err *err) {
  struct ch_result res = {0};
  struct ch_kv args[2];
  char text[512], what[1024], at[32];
  int rc;

  change_text(t->change_kind, t->entitlement, t->principal, what, sizeof(what));
  if (strcmp(outcome, "confirmed") == 0)
    snprintf(text, sizeof(text),
             "connhost: the change is confirmed by sync run %lld: %.400s",
             (long long)run, what);
  else
    snprintf(text, sizeof(text),
             "connhost: the change is still missing after sync run %lld, "
             "though this ticket is done: %.400s",
             (long long)run, what);
  args[0] = (struct ch_kv){"ticket", t->ticket_key};
  args[1] = (struct ch_kv){"comment", text};
  rc = instance_action(tin, "update_ticket", args, 2, &res, err);
  if (rc)
    return rc;
  iso_now(at, sizeof(at));
  rc = store_ticket_checked(s, t, outcome, run, at, err);
  if (!rc)
    log_msg(tin->hctx.label, CH_LOG_INFO, "ticket %s: %s by sync run %lld",
            t->ticket_key,
            strcmp(outcome, "confirmed") == 0 ? "confirmed" : "still missing",
            (long long)run);
  return rc;
}

/* One unconfirmed ticket after run `run`. */
static void after_sync_one(const struct config *c, struct instance **insts,
                           size_t n, const struct graph *g, struct store *s,
                           struct store_ticket *t, int64_t run) {
  struct instance *ti = find_inst(insts, n, t->tenant, t->ticket_instance);
  struct instance *ci = find_inst(insts, n, t->tenant, t->change_instance);
  struct instance tin = {0};
  struct ch_err err = {0};
  const char *outcome;

  /* The change is checked only against data this run took. */
  if (!ci || !graph_instance_ok(g, ci->graph_index, NULL))
    return;
  if (!ti) {
    log_warn("ticket %s: its instance %s/%s is not in this run: enable it "
             "to have the ticket checked",
             t->ticket_key, t->tenant, t->ticket_instance);
    return;
  }
  if (!ti->ci->provisioning) {
    log_warn("ticket %s: instance %s/%s does not allow writes, so the ticket "
             "is neither read nor commented: set 'provisioning: true' on it",
             t->ticket_key, t->tenant, t->ticket_instance);
    return;
  }
  /* A fresh in-process instance: the run's may be a child process. */
  if (instance_prepare(&tin, c, ti->ci, ti->plugin, &err) != CH_OK ||
      instance_open(&tin, &err) != CH_OK ||
      tickets_refresh_one(&tin, s, t, &err) != CH_OK)
    goto fail;
  if (strcmp(t->status_category, "done") != 0)
    goto out;
  outcome = change_shows(g, ci->graph_index, t) ? "confirmed" : "missing";
  if (strcmp(outcome, t->confirmation) != 0 &&
      confirm(&tin, s, t, outcome, run, &err) != CH_OK)
    goto fail;
  goto out;
fail:
  log_warn("ticket %s of %s/%s not checked: %s", t->ticket_key, t->tenant,
           t->ticket_instance, err.msg);
out:
  instance_release(&tin);
}

void tickets_after_sync(const struct config *c, struct instance **insts,
                        size_t n, const struct graph *g, const char *store,
                        int64_t run_id) {
  struct store_ticket *list = NULL;
  struct store *s = NULL;
  struct ch_err err = {0};
  size_t nt = 0;

  if (!store || !run_id || !c)
    return;
  if (store_open(store, 0, &s, &err) != CH_OK ||
      store_tickets(s, TICKETS_UNCONFIRMED, NULL, &list, &nt, &err) != CH_OK) {
    log_warn("tickets not checked: %s", err.msg);
    store_close(s);
    return;
  }
  for (size_t i = 0; i < nt; i++)
    after_sync_one(c, insts, n, g, s, &list[i], run_id);
  store_tickets_free(list, nt);
  store_close(s);
}
