/* SPDX-License-Identifier: MIT */
/* Batched inserts while recording a run: rows are held, then sent
   BATCH_ROWS at a time in one multi-row INSERT. On a first recording a
   statement per row cost SQLite about as much again as the row itself. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "store_rec.h"

enum { CELL_NULL, CELL_NULL_TEXT, CELL_INT, CELL_TEXT };

struct bcell {
  int kind;
  int64_t v; /* CELL_INT: the value; CELL_TEXT: the offset in b->text */
};

void batch_init(struct rec_batch *b, const char *head, int ncols,
                const char *what) {
  memset(b, 0, sizeof(*b));
  b->head = head;
  b->ncols = ncols;
  b->what = what;
}

static struct bcell *cell(struct rec_batch *b) {
  if (!b->cells && !b->nomem &&
      !(b->cells =
            calloc((size_t)BATCH_ROWS * (size_t)b->ncols, sizeof(*b->cells))))
    b->nomem = 1;
  return b->nomem ? NULL : &b->cells[b->ncells++];
}

void batch_int(struct rec_batch *b, int64_t v) {
  struct bcell *c = cell(b);
  if (c) {
    c->kind = CELL_INT;
    c->v = v;
  }
}

void batch_id(struct rec_batch *b, int64_t v) {
  struct bcell *c;

  if (v) {
    batch_int(b, v);
  } else if ((c = cell(b))) {
    c->kind = CELL_NULL;
  }
}

void batch_text(struct rec_batch *b, const char *s) {
  struct bcell *c = cell(b);
  size_t n = s ? strlen(s) + 1 : 0;

  if (!c)
    return;
  c->kind = s ? CELL_TEXT : CELL_NULL_TEXT;
  if (!s)
    return;
  if (b->tlen + n > b->tcap) {
    size_t nc = (b->tlen + n) * 2;
    char *g = realloc(b->text, nc);
    if (!g) {
      b->nomem = 1;
      return;
    }
    b->text = g;
    b->tcap = nc;
  }
  memcpy(b->text + b->tlen, s, n);
  c->v = (int64_t)b->tlen;
  b->tlen += n;
}

/* "head (?,..,?),(?,..,?)..." for `rows` rows. malloc'd. */
static char *batch_sql(const struct rec_batch *b, int rows) {
  size_t hl = strlen(b->head), rl = (size_t)b->ncols * 2 + 2;
  char *sql = malloc(hl + (size_t)rows * rl + 1), *o;

  if (!sql)
    return NULL;
  memcpy(sql, b->head, hl);
  o = sql + hl;
  for (int i = 0; i < rows; i++) {
    *o++ = i ? ',' : ' ';
    *o++ = '(';
    for (int k = 0; k < b->ncols; k++) {
      *o++ = '?';
      *o++ = k + 1 < b->ncols ? ',' : ')';
    }
  }
  *o = 0;
  return sql;
}

int batch_flush(struct rec *r, struct rec_batch *b, struct ch_err *err) {
  int rows = b->ncells / b->ncols, rc;
  struct db_stmt *st = NULL;
  char *sql;

  if (b->nomem)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  if (!rows)
    return CH_OK;
  /* the full statement is kept; a last, shorter batch is prepared once */
  st = rows == BATCH_ROWS ? b->full : NULL;
  if (!st) {
    if (!(sql = batch_sql(b, rows)))
      return ch_err_set(err, CH_E_NOMEM, "out of memory");
    rc = store_prep(r->s, sql, &st, err);
    free(sql);
    if (rc)
      return rc;
    if (rows == BATCH_ROWS)
      b->full = st;
  }
  for (int i = 0; i < b->ncells; i++) {
    const struct bcell *c = &b->cells[i];
    if (c->kind == CELL_INT)
      db_bind_int64(st, i + 1, c->v);
    else if (c->kind == CELL_TEXT)
      db_bind_text(st, i + 1, b->text + c->v);
    else if (c->kind == CELL_NULL_TEXT)
      db_bind_text(st, i + 1, NULL);
    else
      db_bind_null(st, i + 1);
  }
  rc = rec_step(r, st, b->what, err);
  if (st != b->full)
    db_finalize(st);
  b->ncells = 0;
  b->tlen = 0;
  return rc;
}

int batch_row_end(struct rec *r, struct rec_batch *b, struct ch_err *err) {
  if (b->nomem)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  return b->ncells == BATCH_ROWS * b->ncols ? batch_flush(r, b, err) : CH_OK;
}

void batch_free(struct rec_batch *b) {
  db_finalize(b->full);
  free(b->cells);
  free(b->text);
  memset(b, 0, sizeof(*b));
}
