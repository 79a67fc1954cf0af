/* SPDX-License-Identifier: MIT */
/* Between the store's modules (store.c: schema and migrations;
   store_record.c: recording a run; store_read.c: the read queries). */
#ifndef CONNHOST_STORE_INT_H
#define CONNHOST_STORE_INT_H

#include <stdint.h>

#include "db.h"
#include "store.h"

/*
 * History without copies: every row carries the range of runs in which it
 * was seen, first_run .. last_run, where last_run NULL means "still there
 * in its instance's latest good run". A run touches only what changed: new
 * rows are inserted, rows that went away or changed get their last_run
 * set to the instance's previous good run. The data of instance I as of
 * run R is every row of I with first_run <= D <= last_run (or last_run
 * NULL), where D = run_instances.data_run: R itself when I succeeded in R,
 * else I's last good run (so a failed instance answers from its last good
 * data). Keys are interned once (nodes, entitlements, identities) and rows
 * refer to them by integer id.
 */
struct store {
  struct db *db;
  const char *path;  /* as messages name it (a URL's password redacted) */
  int64_t run, from; /* store_select */
  int64_t lo, hi;    /* diff: rows whose range starts or ends in (lo, hi] */
  const struct store_params *p; /* borrowed from store_select */
  const char *replica;          /* store_set_replica (borrowed) */
};

/* Row visibility in a selection `s` (inst_id, data_run): see above. */
#define VIS(t, s)                                                              \
  t ".first_run <= " s ".data_run AND (" t ".last_run IS NULL OR " t           \
    ".last_run >= " s ".data_run)"

/*
 * The emails of identity `id` over the selection table `sel`: every
 * distinct email of its accounts there. The read (store_read.c) and the
 * recording (store_record.c, which saves it in identities.emails) use
 * this one text, so they agree byte for byte (the same plan: the same
 * order of emails on SQLite).
 */
/* clang-format off */
#define STORE_IDENTITY_EMAILS(sel, id)                                         \
  "(SELECT @agg:DISTINCT je.value@ FROM resources ir JOIN " sel " s2 ON"       \
  " s2.inst_id = ir.inst_id AND " VIS("ir", "s2") ", @each:ir.emails@ je"      \
  " WHERE ir.identity_id = " id ")"
/* clang-format on */

/* A grant g's via (the groups it comes through) as a JSON array of
   entitlement keys, and of their display names as of selection s. Most
   grants have no via: no subquery for them. */
#define STORE_VIA                                                              \
  "CASE WHEN g.via IS NULL THEN '[]' ELSE (SELECT @agg:ve.key@ FROM"           \
  " @each:g.via@ j JOIN entitlements ve ON ve.id = CAST(j.value AS @int@))"    \
  " END"
#define STORE_VIA_NAMES                                                        \
  "CASE WHEN g.via IS NULL THEN '[]' ELSE (SELECT"                             \
  " @agg:COALESCE(vr.display_name, vn.key)@ FROM @each:g.via@ j JOIN"          \
  " entitlements ve ON ve.id = CAST(j.value AS @int@) JOIN nodes vn ON"        \
  " vn.id = ve.node_id LEFT JOIN resources vr ON vr.node_id = ve.node_id"      \
  " AND " VIS("vr", "s") ") END"

/* The view bodies over a selection table @S@ (inst_id, data_run, stale). */
extern const char store_view_resources[], store_view_grants[];

/* CREATE [TEMP] VIEW name AS `tmpl` over the selection `sel`. */
int store_make_view(struct store *s, int temp, const char *name,
                    const char *tmpl, const char *sel, struct ch_err *err);

/* Run `sql` (no parameters), or fill `err` naming `what`. */
int store_exec(struct store *s, const char *sql, const char *what,
               struct ch_err *err);
/* Prepare `sql`, or fill `err`. */
int store_prep(struct store *s, const char *sql, struct db_stmt **st,
               struct ch_err *err);

#endif
