/* SPDX-License-Identifier: MIT */
/* Tickets for manual work: a change a plugin cannot make itself (or any
   write given --ticket) opens a ticket through the tenant's ticketing
   instance, is recorded in the store, and is confirmed against the graph
   by the syncs that follow (docs/plugins/jira_cloud.md, "Tickets for
   manual work"). */
#ifndef CONNHOST_TICKETS_H
#define CONNHOST_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "graph.h"
#include "instance.h"

/* The change a ticket asks for. */
struct ticket_change {
  const char *kind; /* "grant", "revoke", "provision", "deprovision" */
  const char *tenant, *instance; /* where the change is to be made */
  const char *entitlement;       /* grant, revoke: its key; else NULL */
  const char *principal;         /* a principal key; provision: the email */
  const char *requested_by;
  const char *steps; /* what the plugin says a person must do, or NULL */
};

/* Who asks: --requester, else $USER, else "unknown". */
const char *tickets_requester(const char *given);

/*
 * Open a ticket for `ch` through `tin` (the tenant's ticketing instance,
 * opened, writable or in a dry run) in the project and issue type of
 * `tc`, and record it in the store at `store`. A dry run prints the
 * requests and sends nothing and records nothing. Prints the outcome line;
 * returns an exit code.
 */
int tickets_open(struct instance *tin, const struct config_tickets *tc,
                 const char *store, const struct ticket_change *ch);

/* Read ticket `t` back through `tin` (get_ticket) and record its status in
   `s` and in `t`. */
struct store;
struct store_ticket;
int tickets_refresh_one(struct instance *tin, struct store *s,
                        struct store_ticket *t, struct ch_err *err);

/*
 * After a sync run recorded as `run_id` in `store`: for each unconfirmed
 * ticket of an instance in `insts` that succeeded, read its status back
 * and, once it is done, check `g` for the change and comment on the
 * ticket: confirmed, or still missing (once per outcome). Problems are
 * warnings: they never fail the sync.
 */
void tickets_after_sync(const struct config *c, struct instance **insts,
                        size_t n, const struct graph *g, const char *store,
                        int64_t run_id);

#endif
