/* SPDX-License-Identifier: MIT */
/* flatfile's data: the export as loaded. ff_data.c reads, parses and
   checks it once in open(); flatfile.c serves it, read-only, from any
   thread. */
#ifndef FLATFILE_FF_DATA_H
#define FLATFILE_FF_DATA_H

#include <stddef.h>

#include <json-c/json.h>

#include <connhost/plugin.h>

/* json-c needs several times the file size in memory; beyond this an
   export is better served by a plugin that streams. */
#define FF_FILE_MAX (256L * 1024 * 1024)

/* ---- the data, as loaded ------------------------------------------------ */

/* The three record kinds; also the index into ff_kinds and ff_data.tab. */
enum ff_kind { FF_USER = 0, FF_GROUP, FF_ROLE, FF_NKINDS };

/* How each kind appears in the file and in the graph. */
struct ff_kind_info {
  const char *type;          /* resource type id */
  const char *key;           /* its top-level array in the file */
  const char *slug;          /* the entitlement it carries, or NULL */
  const char *users_key;     /* field naming the users holding it */
  const char *groups_key;    /* field naming the groups holding it */
  const char *const *fields; /* every field a record may have */
};

/* Each kind's names (ff_data.c). */
extern const struct ff_kind_info ff_kinds[FF_NKINDS];

/*
 * One record. Strings marked "borrowed" point into the parsed JSON tree
 * that ff_data keeps alive: copying every string would double the memory
 * for nothing, since nobody touches the tree after open().
 */
struct ff_rec {
  const char *id;           /* borrowed */
  const char *name;         /* borrowed; NULL when the file has none */
  const char *profile_json; /* borrowed; NULL when the record has none */
  /* users only */
  enum ch_res_status status;
  enum ch_account_type account_type;
  const char **emails; /* NULL-terminated array; strings borrowed */
  char **match_keys;   /* NULL-terminated array; strings owned */
  /* groups and roles: who holds the entitlement (ids, borrowed) */
  const char **users;
  size_t nusers;
  const char **groups;
  size_t ngroups;
};

struct ff_table {
  struct ff_rec *recs; /* in file order, the order pages are served in */
  size_t n;
  struct ff_rec **byid; /* sorted by id: lookups and duplicate checks */
};

struct ff_data {
  json_object *root; /* owns every borrowed string */
  struct ff_table tab[FF_NKINDS];
};

/* Read, parse and check `path`. On success *out is read-only data. */
int ff_data_load(const char *path, struct ff_data **out, struct ch_err *err);
void ff_data_free(struct ff_data *d);
/* The record of table `t` with id `id`, or NULL. */
struct ff_rec *ff_find(const struct ff_table *t, const char *id);

#endif
