/* SPDX-License-Identifier: MIT */
/* Between store_record.c (the run, keys, resources, pruning) and
   store_grants.c (the per-entitlement grant merge). */
#ifndef CONNHOST_STORE_REC_H
#define CONNHOST_STORE_REC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store_int.h"

struct graph;

/* Statements used while recording, in one transaction. */
enum {
  ST_RES_CLOSE,
  ST_RANGE_CLOSE,
  ST_GRANT_CUR,
  ST_GRANT_CLOSE,
  ST_GRANT_CLOSE_ENT,
  ST_COUNT
};

/* The tables rows are inserted into in batches (store_batch.c). */
enum { B_NODE, B_IDENT, B_ENT, B_RES, B_RANGE, B_GRANT, B_COUNT };

/* Rows held for one multi-row INSERT, BATCH_ROWS at a time. */
enum { BATCH_ROWS = 64 };
struct bcell;
struct rec_batch {
  const char *head; /* "INSERT INTO t(a, b) VALUES" */
  const char *what; /* for errors */
  int ncols, ncells;
  int nomem;
  struct bcell *cells; /* BATCH_ROWS * ncols */
  char *text;          /* the text cells, copied */
  size_t tlen, tcap;
  struct db_stmt *full; /* prepared for BATCH_ROWS rows */
};

struct rinst { /* one graph instance in the store */
  int64_t id;
  int64_t last_good; /* its previous data_run; 0 = none */
  int ok;
};

/* What the store holds now for one interned id (node or entitlement). */
struct cur {
  int64_t first_run; /* 0 = no current row */
  int64_t h;
};

struct rec {
  struct store *s;
  const struct graph *g;
  struct db_stmt *st[ST_COUNT];
  struct rec_batch b[B_COUNT];
  int64_t run;
  struct rinst *insts;
  size_t ninsts;
  struct rinst **by_id; /* store instance id -> rinst (or NULL) */
  size_t nby_id;
  int64_t *node_id; /* by graph rank; 0 = not in the output */
  int64_t *ident_id;
  int64_t *ent_id;
  size_t *ent_inst;    /* graph instance index of each entitlement */
  struct cur *cur;     /* by store id (nodes, then reused for entitlements) */
  unsigned char *seen; /* by the same ids: in this run's graph */
  size_t ncur;
  struct buf text[2]; /* a resource's JSON arrays, reused row after row */
};

/* Step, then reset; `err` names `what` on failure. */
int rec_step(struct rec *r, struct db_stmt *st, const char *what,
             struct ch_err *err);
/* Bind `v`, or null when it is 0 (no such row). */
void rec_bind_id(struct db_stmt *st, int i, int64_t v);
/* The first column of the first row (0 when none, -1 on error); `arg`
   binds ?1 when the statement has one. */
int64_t rec_scalar(struct store *s, const char *sql, int64_t arg);
/* FNV-1a over `s` and a separator byte. */
uint64_t rec_fnv(uint64_t h, const char *s);
/* Load the current (last_run NULL) rows `sql` selects (id, first_run, h;
   largest id first) into r->cur by id. */
int rec_load_current(struct rec *r, const char *sql, struct ch_err *err);
/* The current row of `id`, or a zero record (no current row) for an id
   past them. */
const struct cur *rec_cur(const struct rec *r, int64_t id);
/* Mark the current row of `id` as still in the graph. */
void rec_mark_seen(struct rec *r, int64_t id);
/* Close the current rows of instances that succeeded and were not seen. */
int rec_close_unseen(struct rec *r, const char *sql_inst, int close_st,
                     int grants_too, struct ch_err *err);
void batch_init(struct rec_batch *b, const char *head, int ncols,
                const char *what);
/* The next cell of the current row: an integer, an id (0: null), a text
   (copied; NULL: null). */
void batch_int(struct rec_batch *b, int64_t v);
void batch_id(struct rec_batch *b, int64_t v);
void batch_text(struct rec_batch *b, const char *s);
/* The row is complete: sent with the others once BATCH_ROWS are held. */
int batch_row_end(struct rec *r, struct rec_batch *b, struct ch_err *err);
/* Send the rows held (before anything reads the table). */
int batch_flush(struct rec *r, struct rec_batch *b, struct ch_err *err);
void batch_free(struct rec_batch *b);

/* Merge every entitlement's grants into the store. */
int rec_grants(struct rec *r, struct ch_err *err);

#endif
