/* SPDX-License-Identifier: MIT */
/* The snapshot store: every sync's finished graph, kept as ranges of runs,
   and the read queries the CLI answers from. On SQLite (a path) or
   PostgreSQL (a postgresql:// URL) through db.h; everything
   backend-specific (SQL included) stays behind this interface. */
#ifndef CONNHOST_STORE_H
#define CONNHOST_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <connhost/plugin.h>

struct graph;
struct store;

/* The schema version this connhost writes; older stores migrate on open. */
#define STORE_SCHEMA_VERSION 6

/*
 * Open the store at `path` (a file, or a postgresql:// URL: one connection
 * per store, for one thread at a time) and migrate it to
 * STORE_SCHEMA_VERSION. With `create` a missing file is created; without it
 * a missing file, or one with no schema yet (empty), is an error and left
 * as it was (the read commands never create a store). A
 * locked, corrupt, foreign, unreachable or newer store is an error that
 * names it (a URL's password as "***") and what to do.
 */
int store_open(const char *path, int create, struct store **out,
               struct ch_err *err);
void store_close(struct store *s);

/*
 * Record one run from the finished graph in one transaction: the run,
 * each instance's status (a failed instance keeps answering from its last
 * good data), and the rows that changed since each instance's last good
 * run. Then drop runs beyond the newest `keep_runs`. `started_ms` is the
 * run's wall-clock start. On error nothing of the run is recorded.
 * `*run_id` (may be NULL) gets the new run's id.
 */
int store_record(struct store *s, const struct graph *g, int64_t started_ms,
                 long keep_runs, int64_t *run_id, struct ch_err *err);

/* Open (creating it if needed), record, close: what `sync` calls. Saves
   are serialized (a mutex in the process, the store's write lock across
   processes); readers are not held up. */
int store_save(const char *path, const struct graph *g, int64_t started_ms,
               long keep_runs, int64_t *run_id, struct ch_err *err);
/* store_save, the run marked as done by `replica` (serve's replica id, in
   runs.replica; NULL: none). */
int store_save_as(const char *path, const char *replica, const struct graph *g,
                  int64_t started_ms, long keep_runs, int64_t *run_id,
                  struct ch_err *err);
/* The replica store_record marks the runs it records with (borrowed). */
void store_set_replica(struct store *s, const char *replica);

/* No store at `path` yet: no file, or an empty (0-byte) one, which a sync
   fills (a URL is never missing: its database is asked). */
int store_missing(const char *path);

/* `msg`, an error about the store at `path`, for a client that must not
   learn the server's paths: each mention of the store as its messages
   name it ("store 'NAME'" or "'NAME'") said as "the store", in `out` (`n`
   bytes). 1 when `msg` named it. */
int store_msg_unnamed(const char *path, const char *msg, char *out, size_t n);

/*
 * Each instance's resource and grant counts in its last good run (the
 * newest run it succeeded in), for the safety thresholds: `fn` is called
 * once per instance that has one. A store that does not exist has none
 * (CH_OK, no call). Stops at and returns a non-zero result of `fn`.
 */
int store_last_good(const char *path,
                    int (*fn)(void *arg, const char *tenant,
                              const char *instance, int64_t resources,
                              int64_t grants),
                    void *arg, struct ch_err *err);

/*
 * The type and match keys (a JSON array's text) of each resource of
 * instance `tenant`/`instance` in its last recorded data (the data a run
 * that fails it answers from), for the identity join (graph_add_join_keys):
 * `fn` once per resource that has match keys. No store yet, or no data
 * for the instance: CH_OK, no call. Stops at a non-zero result of `fn`.
 */
int store_last_match_keys(const char *path, const char *tenant,
                          const char *instance,
                          int (*fn)(void *arg, const char *type,
                                    const char *match_keys),
                          void *arg, struct ch_err *err);

/* ---- reading ----------------------------------------------------------- */

/* What a read answers from: `run` 0 = the latest; `tenant` NULL = all. */
struct store_params {
  int64_t run, from, to; /* from/to: diff (0 = the run before `to` / latest) */
  const char *tenant;
  const char *who, *what;              /* access / who-has / explain */
  const char *type, *search;           /* resources */
  const char *entitlement, *principal; /* grants */
};

/*
 * Choose the data a read answers from: the run (or, for diff, both runs),
 * and for each instance of that run the run whose data answers for it (its
 * last good one when it failed). Resolves WHO / WHAT. Call once before
 * store_query. Errors: no such run, empty store, unknown WHO or WHAT.
 */
int store_select(struct store *s, const struct store_params *p,
                 struct ch_err *err);
/* The run store_select chose (for diff: the `to` run; `*from` the other). */
int64_t store_selected_run(const struct store *s, int64_t *from);

/* One query's answer, a row at a time. */
struct store_cursor;

/* Column kinds: text, integer (or boolean), a JSON value (arrays). */
enum store_kind { STORE_TEXT = 0, STORE_INT, STORE_BOOL, STORE_JSON };

/*
 * Run the named query over the selection. Names: "runs", "instances"
 * (the selected run's instances, stale ones marked), "resources",
 * "grants", "identity", "access", "who_has", "explain", "diff_resources",
 * "diff_grants", "diff_status", "diff_identities", "stats_instances",
 * "stats_types", "stats_entitlements", "stats_top", "access_review",
 * "report_inactive", "report_unmanaged", "report_nonhuman".
 */
int store_query(struct store *s, const char *name, struct store_cursor **out,
                struct ch_err *err);
/* 1 = a row is ready, 0 = done, negative = error (in `err`). */
int store_next(struct store_cursor *c, struct ch_err *err);
size_t store_ncols(const struct store_cursor *c);
const char *store_col_name(const struct store_cursor *c, size_t i);
enum store_kind store_col_kind(const struct store_cursor *c, size_t i);
/* The value as text (integers in decimal, JSON as its text), NULL when
   null. Borrowed until the next store_next. */
const char *store_col_text(struct store_cursor *c, size_t i);
void store_cursor_free(struct store_cursor *c);

/* ---- tickets (store_tickets.c) -------------------------------------------

   Tickets opened for manual work (host/tickets.c): one row per ticket,
   its change, its last known status and whether a sync confirmed it. */

/* Schema step 3 (the migration that adds the tickets table). */
extern const char store_schema_v3_tickets[];

struct store_ticket {
  char *tenant, *ticket_instance, *ticket_key;
  char *change_kind;     /* "grant", "revoke", "provision", "deprovision" */
  char *change_instance; /* the instance of the tenant the change is in */
  char *entitlement;     /* grant, revoke: the entitlement key; else NULL */
  char *principal;       /* a principal key; provision: the email */
  char *requested_by, *requested_at; /* ISO-8601 UTC, like every time here */
  char *status, *status_category, *status_at; /* last read; NULL: never */
  char *confirmation;  /* "unchecked", "missing", "confirmed" */
  int64_t checked_run; /* the sync run that set `confirmation`; 0: none */
  char *checked_at;
};

/* Record a newly opened ticket (confirmation "unchecked"). */
int store_ticket_add(struct store *s, const struct store_ticket *t,
                     struct ch_err *err);
/* The tickets, oldest first: all, or only open ones (status category not
   "done"), or only unconfirmed ones; `tenant` NULL for every tenant. */
enum store_ticket_filter { TICKETS_ALL = 0, TICKETS_OPEN, TICKETS_UNCONFIRMED };
int store_tickets(struct store *s, enum store_ticket_filter f,
                  const char *tenant, struct store_ticket **out, size_t *n,
                  struct ch_err *err);
void store_tickets_free(struct store_ticket *t, size_t n);
/* A ticket's status as just read back. */
int store_ticket_status(struct store *s, const struct store_ticket *t,
                        const char *status, const char *category,
                        const char *at, struct ch_err *err);
/* What a sync run found: "missing" or "confirmed". */
int store_ticket_checked(struct store *s, const struct store_ticket *t,
                         const char *confirmation, int64_t run, const char *at,
                         struct ch_err *err);

/* The process's one store writer at a time (store_save takes it too). */
void store_writer_lock(void);
void store_writer_unlock(void);

#endif
