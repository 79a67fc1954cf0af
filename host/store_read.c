/* SPDX-License-Identifier: MIT */
/* The store's read side: choosing the run(s) a read answers from and the
   named queries over that selection (docs/store.md). */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "store_int.h"

/* SQL reads better as written than re-wrapped. */
/* clang-format off */

#define RFC3339(col) "@ts:" col "@"

/* Grants that differ between the two selections (sel_a = from, sel = to),
   scanning only rows whose run range starts or ends between them. A grant
   taken away and given back is a new row with the same content: the same
   on both sides, not "changed". */
#define DIFF_GRANTS \
  "WITH cb AS MATERIALIZED (SELECT g.ent_id, g.principal_id, g.direct," \
  " g.via, s.data_run AS dr FROM sel s JOIN grants g ON g.inst_id =" \
  " s.inst_id AND " VIS("g", "s") \
  " LEFT JOIN sel_a a ON a.inst_id = s.inst_id WHERE (g.first_run > :lo" \
  " OR g.last_run < :hi) AND (a.inst_id IS NULL OR NOT (" VIS("g", "a") \
  "))), ca AS MATERIALIZED (SELECT g.ent_id, g.principal_id, g.direct," \
  " g.via, a.data_run AS dr FROM sel_a a JOIN grants g ON g.inst_id =" \
  " a.inst_id AND " VIS("g", "a") \
  " LEFT JOIN sel s ON s.inst_id = a.inst_id WHERE (g.first_run > :lo" \
  " OR g.last_run < :hi) AND (s.inst_id IS NULL OR NOT (" VIS("g", "s") \
  "))), ch AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM ca WHERE" \
  " ca.ent_id = cb.ent_id AND ca.principal_id = cb.principal_id) THEN" \
  " 'changed' ELSE 'added' END AS change, cb.* FROM cb WHERE NOT EXISTS" \
  " (SELECT 1 FROM ca WHERE ca.ent_id = cb.ent_id AND ca.principal_id =" \
  " cb.principal_id AND ca.direct = cb.direct AND ca.via IS NOT DISTINCT" \
  " FROM cb.via) UNION ALL SELECT" \
  " 'removed', ca.* FROM ca WHERE NOT EXISTS (SELECT 1 FROM cb WHERE" \
  " cb.ent_id = ca.ent_id AND cb.principal_id = ca.principal_id))" \
  " SELECT ch.change AS change, e.key AS entitlement, pn.key AS" \
  " principal, (SELECT r.display_name FROM resources r WHERE r.node_id" \
  " = ch.principal_id AND r.first_run <= ch.dr AND (r.last_run IS NULL" \
  " OR r.last_run >= ch.dr)) AS principal_name, ch.direct AS direct," \
  " (SELECT @agg:ve.key@ FROM @each:ch.via@ j JOIN entitlements ve ON" \
  " ve.id = CAST(j.value AS @int@)) AS via FROM ch JOIN" \
  " entitlements e ON e.id = ch.ent_id JOIN nodes pn ON pn.id =" \
  " ch.principal_id WHERE ch.direct = "

/* The grant of the chain row c's principal on entitlement id `ent`, as
   of the selection (g, or no row). */
#define CHAIN_GRANT(ent) \
  " LEFT JOIN grants g ON g.ent_id = " ent " AND g.principal_id =" \
  " c.principal_id AND EXISTS (SELECT 1 FROM sel s WHERE s.inst_id =" \
  " g.inst_id AND " VIS("g", "s") ")"
/* The display name (else the key) of the resource of entitlement id v. */
#define ENT_NAME(v) \
  "(SELECT COALESCE((SELECT vr.display_name FROM sel s JOIN resources vr" \
  " ON vr.inst_id = s.inst_id AND " VIS("vr", "s") " WHERE vr.node_id =" \
  " ve.node_id), vn.key) FROM entitlements ve JOIN nodes vn ON vn.id =" \
  " ve.node_id WHERE ve.id = " v ")"
/*
 * explain: a derived grant's via names only the first group it comes
 * through (the one holding WHAT). How the principal holds that group's
 * entitlement is its own grant: direct, or derived with a via of its
 * own. The chain follows those back to a direct one (as deep as the
 * expansion goes, GRAPH_MAX_DEPTH; an entitlement never twice in one
 * chain), one row per chain. A row is a chain's end when its grant is
 * direct, missing, or leads only where the chain has been.
 */
#define EXPLAIN_DEPTH "20" /* graph.h's GRAPH_MAX_DEPTH */
#define EXPLAIN \
  "WITH RECURSIVE x AS MATERIALIZED (SELECT x.principal_id AS" \
  " principal_id, x.principal AS principal, x.principal_name AS" \
  " principal_name, x.entitlement AS entitlement, x.direct AS direct," \
  " j.value AS through, @at:x.via_names,j.key@ AS through_name, x.stale" \
  " AS stale FROM gn_b x LEFT JOIN @each:x.via@ j ON 1 = 1 WHERE" \
  " x.principal_id IN (SELECT node_id FROM who_nodes) AND x.ent_id IN" \
  " (SELECT ent_id FROM what_ents)), c AS (SELECT c.*, 1 AS depth," \
  " ',' || e.id || ',' AS seen, COALESCE(" ENT_NAME("e.id") "," \
  " c.through_name, c.through) AS chain, g.direct AS gdirect, g.via AS" \
  " gvia FROM x c LEFT JOIN entitlements e ON e.key = c.through" \
  CHAIN_GRANT("e.id") \
  " UNION ALL SELECT c.principal_id, c.principal, c.principal_name," \
  " c.entitlement, c.direct, c.through, c.through_name, c.stale," \
  " c.depth + 1, c.seen || v.value || ',', COALESCE(" \
  ENT_NAME("CAST(v.value AS @int@)") ", v.value) || ' -> ' || c.chain," \
  " g.direct, g.via FROM c JOIN @each:c.gvia@ v ON 1 = 1" \
  CHAIN_GRANT("CAST(v.value AS @int@)") \
  " WHERE c.gdirect = 0 AND c.depth < " EXPLAIN_DEPTH " AND" \
  " @instr:c.seen,',' || v.value || ','@ = 0) SELECT c.principal AS" \
  " principal, c.principal_name AS principal_name, c.entitlement AS" \
  " entitlement, CASE WHEN c.direct <> 0 THEN 'direct' ELSE 'inherited'" \
  " END AS kind, c.through AS through, c.through_name AS through_name," \
  " COALESCE(c.principal_name, c.principal) || ' -> ' || CASE WHEN" \
  " c.through IS NULL THEN '' ELSE c.chain || ' -> ' END ||" \
  " c.entitlement AS path, c.stale AS stale FROM c WHERE c.gdirect IS" \
  " NULL OR c.gdirect <> 0 OR c.gvia IS NULL OR c.depth >= " EXPLAIN_DEPTH \
  " OR NOT EXISTS (SELECT 1 FROM @each:c.gvia@ v WHERE" \
  " @instr:c.seen,',' || v.value || ','@ = 0) ORDER BY c.principal," \
  " c.entitlement, c.through, c.depth, c.chain"

/* Of the identity of row x: its first non-empty name, all its emails. */
#define IDENTITY_NAME \
  "(SELECT ir.display_name FROM res_b ir WHERE ir.identity_id =" \
  " x.identity_id AND ir.display_name <> '' ORDER BY ir.key LIMIT 1)"
/* Of identity `id` (its identities row `d`): its emails, saved with the
   run when they hold for the selected run (store.c's schema_v5), else
   gathered from the selection. */
#define IDENTITY_EMAILS(d, id) \
  "CASE WHEN " d ".emails_run <= :to THEN " d ".emails ELSE " \
  STORE_IDENTITY_EMAILS("sel", id) " END"

static const struct query {
  const char *name, *sql;
} queries[] = {
  {"runs",
    "SELECT r.id AS run, " RFC3339("r.started_at") " AS started, "
    RFC3339("r.finished_at")
    " AS finished, r.status AS run_status, r.replica AS replica,"
    " i.tenant AS tenant, i.name AS"
    " instance, ri.status AS status, ri.data_run AS data_run,"
    " ri.resources AS resources, ri.grants AS grants, ri.error AS error"
    " FROM runs r JOIN run_instances ri ON ri.run_id = r.id JOIN"
    " instances i ON i.id = ri.inst_id WHERE (:tenant IS NULL OR i.tenant"
    " = :tenant) ORDER BY r.id DESC, i.tenant, i.name"},
  {"instances",
    "SELECT i.tenant AS tenant, i.name AS instance, i.plugin AS plugin,"
    " ri.status AS status, ri.error AS error, ri.data_run AS data_run, "
    RFC3339("ri.data_at")
    " AS data_at, @now@ - ri.data_at AS age_seconds, CASE WHEN ri.status"
    " <> 'ok' THEN 1 ELSE 0 END AS stale FROM run_instances ri JOIN"
    " instances i ON i.id = ri.inst_id WHERE ri.run_id = :to AND (:tenant"
    " IS NULL OR i.tenant = :tenant) ORDER BY i.tenant, i.name"},
  {"resources",
    "SELECT key, tenant, instance, type, id, display_name, traits,"
    " status, account_type, emails, parent, identity, stale FROM res_b"
    " WHERE (:type IS NULL OR type = :type) AND (:search IS NULL OR"
    " @contains:COALESCE(display_name, ''),:search@ > 0 OR"
    " @contains:key,:search@ > 0 OR EXISTS (SELECT 1 FROM"
    " @each:emails@ je WHERE @contains:je.value,:search@ > 0))"
    " ORDER BY key"},
  {"grants",
    "SELECT entitlement, principal, principal_name, principal_type,"
    " direct, via, stale FROM gn_b WHERE (:ent IS NULL OR entitlement ="
    " :ent) AND (:principal IS NULL OR principal = :principal) ORDER BY"
    " entitlement, principal"},
  {"identity",
    "SELECT r.identity AS identity, r.tenant AS tenant, r.key AS"
    " resource, r.instance AS instance, r.type AS type, r.display_name AS"
    " display_name, r.emails AS emails, r.status AS status,"
    " r.account_type AS account_type, r.stale AS stale FROM res_b r WHERE"
    " r.node_id IN (SELECT node_id FROM who_nodes) ORDER BY r.key"},
  {"access",
    "SELECT tenant, instance, identity, principal, principal_name,"
    " entitlement, resource, resource_name, resource_type, slug, direct, via,"
    " via_names, stale, resource_parent, resource_parent_name FROM gn_b"
    " WHERE principal_id IN (SELECT node_id"
    " FROM who_nodes) ORDER BY entitlement, principal"},
  /* Not over gn_b: a holder list can be the whole tenant, and this
     reads only what it shows (no instance, no resource names). */
  {"who_has",
    "SELECT e.key AS entitlement, pn.key AS principal, pr.display_name AS"
    " principal_name, pn.type AS principal_type, pr.emails AS"
    " principal_emails, d.key AS identity, "
    IDENTITY_EMAILS("d", "pr.identity_id") " AS identity_emails,"
    " pr.status AS status, pr.account_type AS account_type, g.direct AS"
    " direct, " STORE_VIA " AS via, " STORE_VIA_NAMES " AS via_names,"
    " s.stale AS stale, e.slug AS slug FROM sel s JOIN grants g ON"
    " g.inst_id = s.inst_id AND " VIS("g", "s")
    " JOIN entitlements e ON e.id = g.ent_id JOIN"
    " nodes pn ON pn.id = g.principal_id LEFT JOIN resources pr ON"
    " pr.node_id = g.principal_id AND " VIS("pr", "s")
    " LEFT JOIN identities d ON d.id = pr.identity_id WHERE g.ent_id IN"
    " (SELECT ent_id FROM what_ents) ORDER BY e.key, pn.key"},
  {"explain", EXPLAIN},
  {"diff_resources",
    "SELECT 'added' AS change, b.key AS key, b.type AS type,"
    " b.display_name AS display_name, b.status AS status FROM res_b b"
    " WHERE NOT EXISTS (SELECT 1 FROM res_a a WHERE a.node_id ="
    " b.node_id) UNION ALL SELECT 'removed', a.key, a.type,"
    " a.display_name, a.status FROM res_a a WHERE NOT EXISTS (SELECT 1"
    " FROM res_b b WHERE b.node_id = a.node_id) ORDER BY 2, 1"},
  {"diff_direct", DIFF_GRANTS "1 ORDER BY 2, 3, 1"},
  {"diff_derived", DIFF_GRANTS "0 ORDER BY 2, 3, 1"},
  {"diff_status",
    "SELECT b.key AS key, b.display_name AS display_name, a.status AS"
    " from_status, b.status AS to_status FROM res_b b JOIN res_a a ON"
    " a.node_id = b.node_id WHERE a.status IS DISTINCT FROM b.status"
    " ORDER BY b.key"},
  {"diff_identities",
    "SELECT b.key AS resource, b.display_name AS display_name, a.identity"
    " AS from_identity, b.identity AS to_identity, CASE WHEN EXISTS"
    " (SELECT 1 FROM res_a a2 WHERE a2.identity_id = b.identity_id) THEN"
    " 'joined' WHEN EXISTS (SELECT 1 FROM res_b b2 WHERE b2.identity_id ="
    " a.identity_id AND b2.node_id <> b.node_id) THEN 'split' ELSE"
    " 'rekeyed' END AS change FROM res_b b LEFT JOIN res_a a ON a.node_id"
    " = b.node_id WHERE b.identity_id IS NOT NULL AND a.identity_id IS"
    " DISTINCT FROM b.identity_id AND (a.node_id IS NOT NULL OR EXISTS (SELECT 1"
    " FROM res_a a3 WHERE a3.identity_id = b.identity_id)) ORDER BY b.key"},
  {"stats_instances",
    "SELECT i.tenant AS tenant, i.name AS instance, ri.status AS status,"
    " (SELECT count(*) FROM resources r WHERE r.inst_id = s.inst_id AND "
    VIS("r", "s")
    ") AS resources, (SELECT count(*) FROM ent_ranges r WHERE r.inst_id ="
    " s.inst_id AND " VIS("r", "s")
    ") AS entitlements, (SELECT count(*) FROM grants r WHERE r.inst_id ="
    " s.inst_id AND r.direct <> 0 AND " VIS("r", "s")
    ") AS direct_grants, (SELECT count(*) FROM grants r WHERE r.inst_id ="
    " s.inst_id AND r.direct = 0 AND " VIS("r", "s")
    ") AS derived_grants, s.stale AS stale FROM sel s JOIN instances i ON"
    " i.id = s.inst_id JOIN run_instances ri ON ri.run_id = :to AND"
    " ri.inst_id = s.inst_id ORDER BY 1, 2"},
  {"stats_tenants",
    "SELECT tenant, count(*) AS resources, count(DISTINCT identity_id) AS"
    " identities FROM res_b GROUP BY tenant ORDER BY tenant"},
  {"stats_types",
    "SELECT tenant, instance, type, count(*) AS resources FROM res_b"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"},
  /* Every entitlement of the run, held or not: an auditor listing what
     can be granted must see the slugs nobody holds (with 0 grants). */
  {"stats_entitlements",
    "SELECT i.tenant AS tenant, i.name AS instance, n.type AS"
    " resource_type, e.slug AS slug, count(DISTINCT er.ent_id) AS"
    " entitlements, COALESCE(sum(g.direct), 0) AS direct_grants,"
    " COALESCE(sum(1 - g.direct), 0) AS derived_grants FROM sel s JOIN"
    " ent_ranges er ON er.inst_id = s.inst_id AND " VIS("er", "s")
    " JOIN entitlements e ON e.id = er.ent_id JOIN nodes n ON n.id ="
    " e.node_id JOIN instances i ON i.id = s.inst_id LEFT JOIN grants g ON"
    " g.ent_id = er.ent_id AND g.inst_id = s.inst_id AND " VIS("g", "s")
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"},
  {"stats_top",
    "SELECT e.key AS entitlement, (SELECT r.display_name FROM resources r"
    " JOIN sel s ON s.inst_id = r.inst_id WHERE r.node_id = e.node_id AND" " "
    VIS("r", "s") ") AS resource_name, t.holders AS holders, t.direct AS"
    " direct_holders, t.derived AS derived_holders FROM (SELECT g.ent_id"
    " AS ent_id, count(*) AS holders, sum(g.direct) AS direct, sum(1 -"
    " g.direct) AS derived FROM sel s JOIN grants g ON g.inst_id ="
    " s.inst_id AND " VIS("g", "s")
    " GROUP BY g.ent_id ORDER BY holders DESC, g.ent_id LIMIT 10) t JOIN"
    " entitlements e ON e.id = t.ent_id ORDER BY t.holders DESC, e.key"},
  {"access_review",
    "SELECT x.tenant AS tenant, x.identity AS identity, " IDENTITY_NAME
    " AS identity_name, " IDENTITY_EMAILS("xi", "x.identity_id")
    " AS identity_emails, x.principal AS principal, x.principal_name AS"
    " principal_name, x.principal_emails AS principal_emails,"
    " x.principal_status AS status, x.principal_account_type AS"
    " account_type, x.entitlement AS entitlement, x.resource AS resource,"
    " x.resource_name AS resource_name, x.resource_type AS resource_type,"
    " x.slug AS slug, x.direct AS direct, x.via_names AS via_names,"
    " x.stale AS stale, x.resource_parent AS resource_parent,"
    " x.resource_parent_name AS resource_parent_name FROM gn_b x LEFT JOIN identities xi ON xi.id ="
    " x.identity_id WHERE x.identity IS NOT NULL ORDER BY"
    " x.identity, x.entitlement, x.principal"},
  {"report_inactive",
    "SELECT tenant, principal, principal_name, principal_emails,"
    " principal_status AS status, principal_account_type AS account_type,"
    " count(*) AS grants, sum(direct) AS direct_grants, sum(1 - direct)"
    " AS inherited_grants FROM gn_b WHERE principal_status IN ('disabled',"
    " 'deleted') GROUP BY principal_id, tenant, principal, principal_name,"
    " principal_emails, principal_status, principal_account_type"
    " ORDER BY principal"},
  {"report_unmanaged",
    "SELECT r.tenant AS tenant, r.key AS principal, r.display_name AS"
    " principal_name, r.emails AS principal_emails, r.status AS status,"
    " (SELECT count(*) FROM grants g JOIN sel s ON s.inst_id = g.inst_id"
    " WHERE g.principal_id = r.node_id AND " VIS("g", "s")
    ") AS grants FROM res_b r WHERE r.plugin = 'jira_cloud' AND r.type ="
    " 'user' AND COALESCE(r.account_type, 'human') = 'human' AND NOT"
    " EXISTS (SELECT 1 FROM res_b o WHERE o.plugin = 'atlassian_org' AND"
    " o.tenant = r.tenant AND o.identity_id = r.identity_id) ORDER BY"
    " r.key"},
  {"report_nonhuman",
    "SELECT tenant, principal, principal_name, principal_account_type AS"
    " account_type, principal_status AS status, count(*) AS grants,"
    " sum(direct) AS direct_grants, sum(1 - direct) AS inherited_grants"
    " FROM gn_b WHERE principal_account_type IN ('service', 'customer')"
    " GROUP BY principal_id, tenant, principal, principal_name,"
    " principal_account_type, principal_status ORDER BY principal"},
};

/* clang-format on */

/* The named parameters the queries use, each bound as ?N (N its place
   here + 1) so that both backends see the same numbered SQL. */
static const char *const param_names[] = {"tenant", "who", "what",      "type",
                                          "search", "ent", "principal", "to",
                                          "from",   "lo",  "hi",        NULL};

/* `sql` with each :name as ?N (outside quotes). malloc'd or NULL. */
static char *numbered(const char *sql) {
  size_t n = strlen(sql);
  char *out = malloc(n + 1), *o = out, q = 0;

  if (!out)
    return NULL;
  for (const char *p = sql; *p; p++) {
    size_t len = 0;
    if (q) {
      if (*p == q)
        q = 0;
    } else if (*p == '\'' || *p == '"') {
      q = *p;
    } else if (*p == ':' && p[1] >= 'a' && p[1] <= 'z') {
      for (len = 1; p[len] == '_' || (p[len] >= 'a' && p[len] <= 'z'); len++)
        ;
      for (size_t k = 0; param_names[k]; k++) {
        if (strlen(param_names[k]) == len - 1 &&
            strncmp(p + 1, param_names[k], len - 1) == 0) {
          /* "?N" is never longer than ":name" */
          o += snprintf(o, len + 1, "?%zu", k + 1);
          p += len - 1;
          len = 0;
          break;
        }
      }
      if (!len)
        continue;
    }
    *o++ = *p;
  }
  *o = 0;
  return out;
}

static void bind_params(struct store *s, struct db_stmt *st) {
  const struct store_params *p = s->p;
  const char *texts[] = {p ? p->tenant : NULL,   p ? p->who : NULL,
                         p ? p->what : NULL,     p ? p->type : NULL,
                         p ? p->search : NULL,   p ? p->entitlement : NULL,
                         p ? p->principal : NULL};
  const int64_t ints[] = {s->run, s->from, s->lo, s->hi};
  int i = 1;

  for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++)
    db_bind_text(st, i++, texts[k]);
  for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++)
    db_bind_int64(st, i++, ints[k]);
}

/* Prepare `sql` with its named parameters bound from the selection. */
static int prep_named(struct store *s, const char *sql, struct db_stmt **st,
                      struct ch_err *err) {
  char *n = numbered(sql);
  int rc;

  if (!n)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  rc = store_prep(s, n, st, err);
  free(n);
  if (!rc)
    bind_params(s, *st);
  return rc;
}

/* Run each statement of the NULL-terminated `sql`. */
static int run_sql(struct store *s, const char *const *sql,
                   struct ch_err *err) {
  int rc = CH_OK;

  for (; !rc && *sql; sql++) {
    struct db_stmt *st = NULL;
    if ((rc = prep_named(s, *sql, &st, err)))
      break;
    if (db_step(st) < 0)
      rc = db_fail(s->db, err, "selecting the run");
    db_finalize(st);
  }
  return rc;
}

static int64_t count_of(struct store *s, const char *sql) {
  struct db_stmt *st = NULL;
  struct ch_err ignored = {0};
  int64_t v = -1;

  if (prep_named(s, sql, &st, &ignored))
    return -1;
  if (db_step(st) == 1)
    v = db_column_int64(st, 0);
  db_finalize(st);
  return v;
}

/* The selection tables: a run's instances and the run whose data answers
   for each. Temp views refer to them, so both go and come back together
   (PostgreSQL binds a view to the tables it was made over). */
#define SEL_INSERT(table, run)                                                 \
  "INSERT INTO " table " SELECT ri.inst_id, ri.data_run, CASE WHEN"            \
  " ri.status <> 'ok' THEN 1 ELSE 0 END FROM run_instances ri JOIN"            \
  " instances i ON i.id = ri.inst_id WHERE ri.run_id = " run " AND"            \
  " ri.data_run IS NOT NULL AND (:tenant IS NULL OR i.tenant = :tenant)"

static const char *const sel_sql[] = {
    "DROP VIEW IF EXISTS @temp@gn_b",
    "DROP VIEW IF EXISTS @temp@res_a",
    "DROP VIEW IF EXISTS @temp@res_b",
    "DROP TABLE IF EXISTS @temp@sel",
    "DROP TABLE IF EXISTS @temp@sel_a",
    "CREATE TEMP TABLE sel(inst_id @int@, data_run @int@, stale @int@)",
    "CREATE TEMP TABLE sel_a(inst_id @int@, data_run @int@, stale @int@)",
    SEL_INSERT("sel", ":to"),
    SEL_INSERT("sel_a", ":from"),
    NULL};

static const char *const who_sql[] = {
    "DROP TABLE IF EXISTS @temp@who_nodes",
    "CREATE TEMP TABLE who_nodes(node_id @int@)",
    /* WHO is a key, an id, an identity key or an email. The resources are
       scanned without their keys (looked up once, not for each row), and
       an email array is parsed only when its text can hold WHO: it has
       it (case aside) or an escape. */
    "WITH m AS (SELECT r.node_id, r.identity_id FROM sel s JOIN resources r"
    " ON r.inst_id = s.inst_id AND " VIS(
        "r",
        "s") " WHERE r.node_id IN"
             " (SELECT id FROM nodes WHERE key = :who OR rid = :who) OR"
             " r.identity_id IN (SELECT id FROM identities WHERE key = :who) OR"
             " ((@instr:lower(r.emails),lower(:who)@ > 0 OR"
             " @instr:r.emails,'\\'@ > 0) AND EXISTS (SELECT 1 FROM"
             " @each:r.emails@ je WHERE lower(je.value) = lower(:who))))"
             " INSERT INTO who_nodes SELECT node_id FROM m UNION SELECT "
             "r.node_id"
             " FROM sel s JOIN resources r ON r.inst_id = s.inst_id AND " VIS(
                 "r", "s") " WHERE r.identity_id IN (SELECT identity_id FROM m"
                           " WHERE identity_id IS NOT NULL)",
    NULL};

static const char *const what_sql[] = {
    "DROP TABLE IF EXISTS @temp@what_ents",
    "CREATE TEMP TABLE what_ents(ent_id @int@)",
    "INSERT INTO what_ents SELECT id FROM entitlements WHERE key = :what"
    " UNION SELECT e.id FROM entitlements e JOIN nodes n ON n.id ="
    " e.node_id WHERE n.key = :what",
    NULL};

/* A filter naming what the store never held is a typo, not an empty
   answer (a `diff --exit-code --tenant` on it would report "no change"
   for ever). Each is checked against every run the store keeps. */
static const struct filter {
  size_t field; /* the value, in struct store_params */
  const char *what;
  const char *count; /* how many rows the store has with it */
  const char *known; /* the values it does have, to list; NULL: too many */
} filters[] = {
    {offsetof(struct store_params, tenant), "tenant",
     "SELECT count(*) FROM (SELECT 1 FROM instances WHERE tenant = :tenant "
     "LIMIT 1) x",
     "SELECT DISTINCT tenant FROM instances ORDER BY tenant"},
    {offsetof(struct store_params, type), "resource type",
     "SELECT count(*) FROM (SELECT 1 FROM nodes WHERE type = :type LIMIT 1) x",
     "SELECT DISTINCT type FROM nodes ORDER BY type"},
    {offsetof(struct store_params, entitlement), "entitlement",
     "SELECT count(*) FROM (SELECT 1 FROM entitlements WHERE key = :ent LIMIT "
     "1) x",
     NULL},
    {offsetof(struct store_params, principal), "principal",
     "SELECT count(*) FROM (SELECT 1 FROM nodes WHERE key = :principal LIMIT "
     "1) x",
     NULL},
};

/* "a, b, c" (cut with "..." to fit) of the first column of `sql`. */
static void known_values(struct store *s, const char *sql, char *list,
                         size_t size) {
  struct db_stmt *st = NULL;
  struct ch_err ignored = {0};
  size_t used = 0;

  *list = 0;
  if (prep_named(s, sql, &st, &ignored))
    return;
  while (db_step(st) == 1) {
    const char *t = db_column_text(st, 0);
    size_t n = strlen(t ? t : "") + (used ? 2 : 0);
    if (used + n + sizeof(", ...") > size) {
      snprintf(list + used, size - used, "%s...", used ? ", " : "");
      break;
    }
    used += (size_t)snprintf(list + used, size - used, "%s%s", used ? ", " : "",
                             t ? t : "");
  }
  db_finalize(st);
}

static int check_filters(struct store *s, const struct store_params *p,
                         struct ch_err *err) {
  for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
    const struct filter *f = &filters[i];
    const char *v = *(const char *const *)((const char *)p + f->field);
    char list[256] = "";
    if (!v || count_of(s, f->count) != 0)
      continue;
    if (f->known)
      known_values(s, f->known, list, sizeof(list));
    return ch_err_set(err, CH_E_NOTFOUND, "no %s '%s' in '%s'%s%s%s", f->what,
                      v, s->path, *list ? " (it has: " : "", list,
                      *list ? ")" : "");
  }
  return CH_OK;
}

/* Every key begins with its tenant: a key of another tenant under
   --tenant would only ever answer "nothing", which reads as "nobody holds
   it" (who-has, explain, grants --entitlement/--principal). */
static int check_tenant_keys(const struct store *s,
                             const struct store_params *p, struct ch_err *err) {
  const char *keys[] = {p->what, p->entitlement, p->principal};
  size_t n = p->tenant ? strlen(p->tenant) : 0;

  for (size_t i = 0; n && i < sizeof(keys) / sizeof(keys[0]); i++)
    if (keys[i] && (strncmp(keys[i], p->tenant, n) != 0 || keys[i][n] != '/'))
      return ch_err_set(err, CH_E_NOTFOUND,
                        "'%s' is not in tenant '%s' of '%s' (a key begins "
                        "with its tenant)",
                        keys[i], p->tenant, s->path);
  return CH_OK;
}

int store_select(struct store *s, const struct store_params *p,
                 struct ch_err *err) {
  int64_t latest, run;
  int rc;

  s->p = p;
  s->run = s->from = s->lo = s->hi = 0;
  latest = count_of(s, "SELECT COALESCE(MAX(id), 0) FROM runs");
  if (latest < 0)
    return db_fail(s->db, err, "reading the runs");
  if (latest == 0)
    return ch_err_set(err, CH_E_NOTFOUND,
                      "store '%s' holds no runs yet: run 'connhost sync' "
                      "first",
                      s->path);
  run = p->to ? p->to : p->run ? p->run : latest;
  s->run = run;
  if (count_of(s, "SELECT count(*) FROM runs WHERE id = :to") != 1)
    return ch_err_set(err, CH_E_NOTFOUND,
                      "no run %" PRId64 " in '%s' (runs kept: see 'connhost "
                      "runs')",
                      run, s->path);
  s->from = p->from ? p->from
                    : count_of(s, "SELECT COALESCE(MAX(id), 0) FROM runs WHERE"
                                  " id < :to");
  if (p->from && count_of(s, "SELECT count(*) FROM runs WHERE id = :from") != 1)
    return ch_err_set(err, CH_E_NOTFOUND, "no run %" PRId64 " in '%s'", p->from,
                      s->path);
  if ((rc = check_filters(s, p, err)) || (rc = check_tenant_keys(s, p, err)))
    return rc;
  rc = run_sql(s, sel_sql, err);
  if (!rc && (db_analyze(s->db, "sel") || db_analyze(s->db, "sel_a")))
    rc = db_fail(s->db, err, "selecting the run");
  if (rc)
    return rc;
  /* Between two runs only rows whose range starts or ends between the
     oldest and newest data run can differ; an instance in one selection
     only makes every row of it differ (lo 0 then scans everything). */
  s->lo = count_of(s, "SELECT CASE WHEN EXISTS (SELECT 1 FROM sel WHERE"
                      " inst_id NOT IN (SELECT inst_id FROM sel_a)) OR EXISTS"
                      " (SELECT 1 FROM sel_a WHERE inst_id NOT IN (SELECT"
                      " inst_id FROM sel)) THEN 0 ELSE (SELECT MIN(d) FROM"
                      " (SELECT data_run AS d FROM sel UNION ALL SELECT"
                      " data_run FROM sel_a) u) END");
  s->hi = count_of(s, "SELECT MAX(d) FROM (SELECT data_run AS d FROM sel"
                      " UNION ALL SELECT data_run FROM sel_a) u");
  if (s->lo < 0)
    s->lo = 0;
  rc = store_make_view(s, 1, "res_b", store_view_resources, "sel", err);
  if (!rc)
    rc = store_make_view(s, 1, "res_a", store_view_resources, "sel_a", err);
  if (!rc)
    rc = store_make_view(s, 1, "gn_b", store_view_grants, "sel", err);
  if (rc)
    return rc;
  if (p->who) {
    if ((rc = run_sql(s, who_sql, err)))
      return rc;
    if (db_analyze(s->db, "who_nodes"))
      return db_fail(s->db, err, "selecting the run");
    if (count_of(s, "SELECT count(*) FROM who_nodes") <= 0)
      return ch_err_set(err, CH_E_NOTFOUND,
                        "no account or resource matches '%s' in run %" PRId64
                        " (give a resource key, an email or an account id)",
                        p->who, run);
  }
  if (p->what) {
    if ((rc = run_sql(s, what_sql, err)))
      return rc;
    if (db_analyze(s->db, "what_ents"))
      return db_fail(s->db, err, "selecting the run");
    /* A resource that carries no entitlement (a user) is held by
       nobody: an empty answer, not "no such resource". */
    if (count_of(s, "SELECT count(*) FROM what_ents") <= 0 &&
        count_of(s, "SELECT count(*) FROM nodes WHERE key = :what") <= 0)
      return ch_err_set(err, CH_E_NOTFOUND,
                        "no entitlement or resource '%s' in '%s' (give an "
                        "entitlement key tenant/instance/type/id#slug or a "
                        "resource key)",
                        p->what, s->path);
  }
  return CH_OK;
}

int64_t store_selected_run(const struct store *s, int64_t *from) {
  if (from)
    *from = s->from;
  return s->run;
}

struct store_cursor {
  struct store *s;
  struct db_stmt *st;
  size_t ncols;
  enum store_kind kinds[32];
};

int store_query(struct store *s, const char *name, struct store_cursor **out,
                struct ch_err *err) {
  static const char *const json_cols[] = {
      "emails",    "traits",           "match_keys",      "via",
      "via_names", "principal_emails", "identity_emails", NULL};
  static const char *const bool_cols[] = {"direct", "stale", NULL};
  const struct query *q = NULL;
  struct store_cursor *c;
  int rc;

  *out = NULL;
  for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
    if (strcmp(queries[i].name, name) == 0)
      q = &queries[i];
  }
  if (!q)
    return ch_err_set(err, CH_E_INVALID, "no query '%s'", name);
  c = calloc(1, sizeof(*c));
  if (!c)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  c->s = s;
  if ((rc = prep_named(s, q->sql, &c->st, err))) {
    free(c);
    return rc;
  }
  c->ncols = (size_t)db_column_count(c->st);
  if (c->ncols > sizeof(c->kinds) / sizeof(c->kinds[0]))
    c->ncols = sizeof(c->kinds) / sizeof(c->kinds[0]);
  for (size_t i = 0; i < c->ncols; i++) {
    const char *cn = db_column_name(c->st, (int)i);
    c->kinds[i] = STORE_TEXT;
    for (size_t k = 0; json_cols[k]; k++)
      if (strcmp(cn, json_cols[k]) == 0)
        c->kinds[i] = STORE_JSON;
    for (size_t k = 0; bool_cols[k]; k++)
      if (strcmp(cn, bool_cols[k]) == 0)
        c->kinds[i] = STORE_BOOL;
  }
  *out = c;
  return CH_OK;
}

int store_next(struct store_cursor *c, struct ch_err *err) {
  int rc = db_step(c->st);

  return rc < 0 ? db_fail(c->s->db, err, "reading") : rc;
}

size_t store_ncols(const struct store_cursor *c) { return c->ncols; }

const char *store_col_name(const struct store_cursor *c, size_t i) {
  return db_column_name(c->st, (int)i);
}

enum store_kind store_col_kind(const struct store_cursor *c, size_t i) {
  if (c->kinds[i] != STORE_TEXT)
    return c->kinds[i];
  return db_column_is_int(c->st, (int)i) ? STORE_INT : STORE_TEXT;
}

const char *store_col_text(struct store_cursor *c, size_t i) {
  return db_column_text(c->st, (int)i);
}

void store_cursor_free(struct store_cursor *c) {
  if (!c)
    return;
  db_finalize(c->st);
  free(c);
}

int store_missing(const char *path) {
  struct stat sb;
  /* a URL's database is always asked: the server says what it holds */
  if (db_is_url(path))
    return 0;
  if (stat(path, &sb) != 0)
    return errno == ENOENT;
  return S_ISREG(sb.st_mode) && sb.st_size == 0;
}

int store_last_match_keys(const char *path, const char *tenant,
                          const char *instance,
                          int (*fn)(void *arg, const char *type,
                                    const char *match_keys),
                          void *arg, struct ch_err *err) {
  struct store *s = NULL;
  struct db_stmt *q = NULL;
  int rc, step = 0;

  if (store_missing(path))
    return CH_OK;
  rc = store_open(path, 0, &s, err);
  if (!rc)
    rc = store_prep(
        s,
        "WITH d AS (SELECT ri.inst_id, ri.data_run FROM run_instances ri"
        " JOIN instances i ON i.id = ri.inst_id WHERE i.tenant = ?1 AND"
        " i.name = ?2 AND ri.data_run IS NOT NULL ORDER BY ri.run_id DESC"
        " LIMIT 1) SELECT n.type, r.match_keys FROM d JOIN resources r ON"
        " r.inst_id = d.inst_id AND r.first_run <= d.data_run AND"
        " (r.last_run IS NULL OR r.last_run >= d.data_run) JOIN nodes n ON"
        " n.id = r.node_id WHERE r.match_keys <> '[]'",
        &q, err);
  if (!rc) {
    db_bind_text(q, 1, tenant);
    db_bind_text(q, 2, instance);
  }
  while (!rc && (step = db_step(q)) == 1)
    rc = fn(arg, db_column_text(q, 0), db_column_text(q, 1));
  if (!rc && step < 0)
    rc = db_fail(s->db, err, "reading an instance's last data");
  db_finalize(q);
  store_close(s);
  return rc;
}

int store_last_good(const char *path,
                    int (*fn)(void *arg, const char *tenant,
                              const char *instance, int64_t resources,
                              int64_t grants),
                    void *arg, struct ch_err *err) {
  struct store *s = NULL;
  struct db_stmt *q = NULL;
  int rc, step = 0;

  if (store_missing(path)) /* no store file yet: no history */
    return CH_OK;
  rc = store_open(path, 0, &s, err);
  if (!rc)
    rc = store_prep(s,
                    "SELECT i.tenant, i.name, ri.resources, ri.grants FROM"
                    " (SELECT inst_id, MAX(run_id) AS run_id FROM run_instances"
                    " WHERE status = 'ok' GROUP BY inst_id) last"
                    " JOIN run_instances ri ON ri.run_id = last.run_id AND"
                    " ri.inst_id = last.inst_id JOIN instances i ON i.id ="
                    " last.inst_id",
                    &q, err);
  while (!rc && (step = db_step(q)) == 1)
    rc = fn(arg, db_column_text(q, 0), db_column_text(q, 1),
            db_column_int64(q, 2), db_column_int64(q, 3));
  if (!rc && step < 0)
    rc = db_fail(s->db, err, "reading the last good runs");
  db_finalize(q);
  store_close(s);
  return rc;
}
