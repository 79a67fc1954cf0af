/* SPDX-License-Identifier: MIT */
/* `connhost tickets [--open] [--format text|json]` lists the tickets opened
   for manual work as the store last saw them; `connhost tickets refresh`
   reads each open one back through its ticketing instance. */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "store.h"
#include "tickets.h"

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static int is_open(const struct store_ticket *t) {
  return !t->status_category || strcmp(t->status_category, "done") != 0;
}

static json_object *jstr(const char *s) {
  return s ? json_object_new_string(s) : NULL;
}

static void print_json(const struct store_ticket *t, size_t n) {
  json_object *doc = json_object_new_object(), *arr = json_object_new_array();

  for (size_t i = 0; i < n; i++) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ticket", jstr(t[i].ticket_key));
    json_object_object_add(o, "tenant", jstr(t[i].tenant));
    json_object_object_add(o, "ticket_instance", jstr(t[i].ticket_instance));
    json_object_object_add(o, "change", jstr(t[i].change_kind));
    json_object_object_add(o, "instance", jstr(t[i].change_instance));
    json_object_object_add(o, "entitlement", jstr(t[i].entitlement));
    json_object_object_add(o, "principal", jstr(t[i].principal));
    json_object_object_add(o, "requested_by", jstr(t[i].requested_by));
    json_object_object_add(o, "requested_at", jstr(t[i].requested_at));
    json_object_object_add(o, "status", jstr(t[i].status));
    json_object_object_add(o, "status_category", jstr(t[i].status_category));
    json_object_object_add(o, "status_at", jstr(t[i].status_at));
    json_object_object_add(o, "open", json_object_new_boolean(is_open(&t[i])));
    json_object_object_add(o, "confirmation", jstr(t[i].confirmation));
    json_object_object_add(
        o, "checked_run",
        t[i].checked_run ? json_object_new_int64(t[i].checked_run) : NULL);
    json_object_object_add(o, "checked_at", jstr(t[i].checked_at));
    json_object_array_add(arr, o);
  }
  json_object_object_add(doc, "tickets", arr);
  puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(doc);
}

static void print_text(const struct store_ticket *t, size_t n) {
  printf("%-12s %-18s %-22s %-34s %s\n", "TICKET", "STATUS", "CONFIRMATION",
         "REQUESTED", "CHANGE");
  for (size_t i = 0; i < n; i++) {
    char status[128], conf[64], asked[160], change[1024];
    snprintf(status, sizeof(status), "%s (%s)", or_dash(t[i].status),
             or_dash(t[i].status_category));
    if (t[i].checked_run)
      snprintf(conf, sizeof(conf), "%s (run %lld)", t[i].confirmation,
               (long long)t[i].checked_run);
    else
      snprintf(conf, sizeof(conf), "%s", t[i].confirmation);
    snprintf(asked, sizeof(asked), "%s %s", t[i].requested_by,
             t[i].requested_at);
    if (t[i].entitlement)
      snprintf(change, sizeof(change), "%s %s %s %s", t[i].change_kind,
               t[i].entitlement,
               strcmp(t[i].change_kind, "grant") == 0 ? "to" : "from",
               t[i].principal);
    else
      snprintf(change, sizeof(change), "%s %s", t[i].change_kind,
               t[i].principal);
    printf("%-12s %-18s %-22s %-34s %s\n", t[i].ticket_key, status, conf, asked,
           change);
  }
}

static void print_list(const struct cli *cli, const struct store_ticket *t,
                       size_t n) {
  if (cli->format && strcmp(cli->format, "json") == 0)
    print_json(t, n);
  else
    print_text(t, n);
}

/* The session's instance tenant/name, bound and opened once. */
static int ticket_instance(struct session *s, const char *tenant,
                           const char *name, struct instance **out) {
  struct ch_err err = {0};
  int rc;

  for (size_t i = 0; i < s->ninsts; i++) {
    if (strcmp(s->insts[i]->ci->tenant, tenant) == 0 &&
        strcmp(s->insts[i]->ci->name, name) == 0) {
      *out = s->insts[i];
      return s->insts[i]->pinst ? -1 : EXIT_FAIL;
    }
  }
  if ((rc = session_bind(s, tenant, name, out)) >= 0)
    return rc;
  if (!(*out)->ci->provisioning) {
    log_error("%s:%u:%u: instance '%s/%s' does not allow writes, and its "
              "ticket actions are writes: set 'provisioning: true' on it to "
              "read its tickets back",
              (*out)->ci->node->file, (*out)->ci->node->line,
              (*out)->ci->node->col, tenant, name);
    return EXIT_USAGE;
  }
  if (instance_open(*out, &err) != CH_OK) {
    log_msg((*out)->hctx.label, CH_LOG_ERROR, "open: %s", err.msg);
    return EXIT_FAIL;
  }
  return -1;
}

static int refresh(struct session *s, struct store *st, struct store_ticket *t,
                   size_t n) {
  int rc = EXIT_OK;

  for (size_t i = 0; i < n; i++) {
    struct ch_err err = {0};
    struct instance *in = NULL;
    int r = ticket_instance(s, t[i].tenant, t[i].ticket_instance, &in);

    if (r >= 0) {
      rc = r > rc ? r : rc;
      continue;
    }
    if (tickets_refresh_one(in, st, &t[i], &err) != CH_OK) {
      log_msg(in->hctx.label, CH_LOG_ERROR, "ticket %s: %s", t[i].ticket_key,
              err.msg);
      rc = EXIT_FAIL;
      continue;
    }
    printf("%s: %s (%s)\n", t[i].ticket_key, t[i].status, t[i].status_category);
  }
  return rc;
}

int cmd_tickets(struct session *s) {
  struct cli *cli = s->cli;
  struct store_ticket *t = NULL;
  struct store *st = NULL;
  struct ch_err err = {0};
  size_t n = 0, keep = 0;
  int refreshing = cli->action && strcmp(cli->action, "refresh") == 0;
  int rc = EXIT_FAIL;

  if (!s->config->store) {
    log_error("%s: tickets are kept in the store, and this config has "
              "'store: none'",
              s->config->path);
    return EXIT_USAGE;
  }
  /* No store yet: no ticket was ever recorded. */
  if (store_missing(s->config->store)) {
    if (!refreshing)
      print_list(cli, NULL, 0);
    return EXIT_OK;
  }
  if (store_open(s->config->store, 0, &st, &err) != CH_OK ||
      store_tickets(st,
                    refreshing || cli->open_only ? TICKETS_OPEN : TICKETS_ALL,
                    NULL, &t, &n, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  /* --tenant filters (repeatable) */
  for (size_t i = 0; i < n; i++) {
    if (cli_tenant_selected(cli, t[i].tenant)) {
      struct store_ticket tmp = t[keep];
      t[keep++] = t[i];
      t[i] = tmp;
    }
  }
  if (refreshing)
    rc = refresh(s, st, t, keep);
  else {
    print_list(cli, t, keep);
    rc = EXIT_OK;
  }
out:
  store_tickets_free(t, n);
  store_close(st);
  return rc;
}
