/* SPDX-License-Identifier: MIT */
/* The tickets table of the snapshot store: tickets opened for manual work,
   their last known status and what the syncs found (docs/store.md). The
   SQL is plain (TEXT and INTEGER columns, ISO-8601 text times, `?`
   parameters, no SQLite-only syntax) so another backend can take it as
   is. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

/* Schema step 3: run once by store.c's migration, in its transaction. A
   ticket is named by the instance that opened it and its key there. */
const char store_schema_v3_tickets[] =
    "CREATE TABLE tickets(tenant TEXT NOT NULL, ticket_instance TEXT NOT NULL,"
    " ticket_key TEXT NOT NULL, change_kind TEXT NOT NULL,"
    " change_instance TEXT NOT NULL, entitlement TEXT,"
    " principal TEXT NOT NULL, requested_by TEXT NOT NULL,"
    " requested_at TEXT NOT NULL, status TEXT, status_category TEXT,"
    " status_at TEXT, confirmation TEXT NOT NULL, checked_run INTEGER,"
    " checked_at TEXT, PRIMARY KEY(tenant, ticket_instance, ticket_key));"
    "CREATE INDEX tickets_category ON tickets(status_category);";

/* The columns in struct store_ticket order, for every SELECT. */
#define TICKET_COLS                                                            \
  "tenant, ticket_instance, ticket_key, change_kind, change_instance,"         \
  " entitlement, principal, requested_by, requested_at, status,"               \
  " status_category, status_at, confirmation, checked_run, checked_at"

static const char *const filter_sql[] = {
    [TICKETS_ALL] = "1 = 1",
    [TICKETS_OPEN] = "(status_category IS NULL OR status_category <> 'done')",
    [TICKETS_UNCONFIRMED] = "confirmation <> 'confirmed'"};

#define prepare store_prep
#define bind db_bind_text

/* Bind the ticket's name at `i`, `i+1`, `i+2`. */
static void bind_name(struct db_stmt *st, int i, const struct store_ticket *t) {
  bind(st, i, t->tenant);
  bind(st, i + 1, t->ticket_instance);
  bind(st, i + 2, t->ticket_key);
}

/* Run a write statement to its end; finalizes it. */
static int run_write(struct store *s, struct db_stmt *st, const char *what,
                     struct ch_err *err) {
  int rc = db_step(st) == 0 ? CH_OK : db_fail(s->db, err, what);
  db_finalize(st);
  return rc;
}

int store_ticket_add(struct store *s, const struct store_ticket *t,
                     struct ch_err *err) {
  struct db_stmt *st = NULL;
  int rc = prepare(s,
                   "INSERT INTO tickets(" TICKET_COLS
                   ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,'unchecked',NULL,NULL)",
                   &st, err);
  if (rc)
    return rc;
  bind_name(st, 1, t);
  bind(st, 4, t->change_kind);
  bind(st, 5, t->change_instance);
  bind(st, 6, t->entitlement);
  bind(st, 7, t->principal);
  bind(st, 8, t->requested_by);
  bind(st, 9, t->requested_at);
  bind(st, 10, t->status);
  bind(st, 11, t->status_category);
  bind(st, 12, t->status_at);
  return run_write(s, st, "recording a ticket", err);
}

static char *col(struct db_stmt *st, int i, int *oom) {
  const char *v = db_column_text(st, i);
  char *copy;

  if (!v)
    return NULL;
  if (!(copy = strdup(v)))
    *oom = 1;
  return copy;
}

static void ticket_release(struct store_ticket *t) {
  char **fields[] = {&t->tenant,       &t->ticket_instance, &t->ticket_key,
                     &t->change_kind,  &t->change_instance, &t->entitlement,
                     &t->principal,    &t->requested_by,    &t->requested_at,
                     &t->status,       &t->status_category, &t->status_at,
                     &t->confirmation, &t->checked_at};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    free(*fields[i]);
}

static int ticket_read(struct db_stmt *st, struct store_ticket *t) {
  int oom = 0;
  char **text[] = {&t->tenant,      &t->ticket_instance, &t->ticket_key,
                   &t->change_kind, &t->change_instance, &t->entitlement,
                   &t->principal,   &t->requested_by,    &t->requested_at,
                   &t->status,      &t->status_category, &t->status_at,
                   &t->confirmation};
  for (int i = 0; i < (int)(sizeof(text) / sizeof(text[0])); i++)
    *text[i] = col(st, i, &oom);
  t->checked_run = db_column_int64(st, 13);
  t->checked_at = col(st, 14, &oom);
  return oom ? CH_E_NOMEM : CH_OK;
}

int store_tickets(struct store *s, enum store_ticket_filter f,
                  const char *tenant, struct store_ticket **out, size_t *n,
                  struct ch_err *err) {
  char sql[512];
  struct db_stmt *st = NULL;
  struct store_ticket *list = NULL;
  size_t len = 0, cap = 0;
  int rc, step;

  *out = NULL;
  *n = 0;
  snprintf(sql, sizeof(sql),
           "SELECT " TICKET_COLS " FROM tickets WHERE %s%s ORDER BY"
           " requested_at, tenant, ticket_instance, ticket_key",
           filter_sql[f], tenant ? " AND tenant = ?" : "");
  if ((rc = prepare(s, sql, &st, err)))
    return rc;
  if (tenant)
    bind(st, 1, tenant);
  while ((step = db_step(st)) == 1) {
    if (util_grow(&list, &cap, len + 1, sizeof(*list))) {
      rc = ch_err_set(err, CH_E_NOMEM, "out of memory");
      goto out;
    }
    memset(&list[len], 0, sizeof(list[len]));
    rc = ticket_read(st, &list[len++]);
    if (rc) {
      ch_err_set(err, rc, "out of memory");
      goto out;
    }
  }
  if (step != 0)
    rc = db_fail(s->db, err, "reading the tickets");
out:
  db_finalize(st);
  if (rc) {
    store_tickets_free(list, len);
    return rc;
  }
  *out = list;
  *n = len;
  return CH_OK;
}

void store_tickets_free(struct store_ticket *t, size_t n) {
  for (size_t i = 0; t && i < n; i++)
    ticket_release(&t[i]);
  free(t);
}

int store_ticket_status(struct store *s, const struct store_ticket *t,
                        const char *status, const char *category,
                        const char *at, struct ch_err *err) {
  struct db_stmt *st = NULL;
  int rc = prepare(s,
                   "UPDATE tickets SET status = ?, status_category = ?,"
                   " status_at = ? WHERE tenant = ? AND ticket_instance = ?"
                   " AND ticket_key = ?",
                   &st, err);
  if (rc)
    return rc;
  bind(st, 1, status);
  bind(st, 2, category);
  bind(st, 3, at);
  bind_name(st, 4, t);
  return run_write(s, st, "recording a ticket's status", err);
}

int store_ticket_checked(struct store *s, const struct store_ticket *t,
                         const char *confirmation, int64_t run, const char *at,
                         struct ch_err *err) {
  struct db_stmt *st = NULL;
  int rc = prepare(s,
                   "UPDATE tickets SET confirmation = ?, checked_run = ?,"
                   " checked_at = ? WHERE tenant = ? AND ticket_instance = ?"
                   " AND ticket_key = ?",
                   &st, err);
  if (rc)
    return rc;
  bind(st, 1, confirmation);
  db_bind_int64(st, 2, run);
  bind(st, 3, at);
  bind_name(st, 4, t);
  return run_write(s, st, "recording a ticket's confirmation", err);
}
