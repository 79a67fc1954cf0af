/* SPDX-License-Identifier: MIT */
/* Tenant leases in PostgreSQL for `serve` replicas (lease.h). One libpq
   connection per replica, shared under a lock: every lease statement is a
   single short autocommit statement, so the tenant threads never wait long
   on each other, and a replica needs one connection however many tenants
   it serves. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* Asked again at least this often (a holder that finished early, a queued
   run), and not more often than the floor (a row another replica is taking
   right now looks due for a moment). */
#define LEASE_POLL_FLOOR_MS 100L

/* The table, created by the first replica that starts (under an advisory
   lock: two replicas creating it at once would race in the catalog), in a
   schema of its own: the store's schema holds the store's tables only.
   due_at: when the next run is due; holder/expires_at: who runs it now and
   until when, unless the heartbeat renews it; queued: a run was asked
   for (POST /api/v1/sync) while another replica held the tenant. */
static const char *const SCHEMA =
    "BEGIN;"
    "SET LOCAL client_min_messages = warning;"
    "SELECT pg_advisory_xact_lock(7061426275616331);"
    "CREATE SCHEMA IF NOT EXISTS connhost_serve;"
    "CREATE TABLE IF NOT EXISTS connhost_serve.leases ("
    " tenant text PRIMARY KEY,"
    " holder text,"
    " expires_at timestamptz,"
    " due_at timestamptz NOT NULL DEFAULT now(),"
    " queued boolean NOT NULL DEFAULT false,"
    " taken_at timestamptz,"
    " runs bigint NOT NULL DEFAULT 0);"
    "COMMIT;";

/* Take a due, free (or expired) tenant. SKIP LOCKED: a row another replica
   is taking this instant is skipped, not waited for. The old holder comes
   back so a take-over of an expired lease is counted. */
static const char *const SQL_TAKE =
    "WITH c AS (SELECT tenant, holder FROM connhost_serve.leases"
    " WHERE tenant = $2 AND (holder IS NULL OR expires_at < now())"
    " AND (due_at <= now() OR queued OR $4::boolean)"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE connhost_serve.leases l SET holder = $1,"
    " expires_at = now() + $3::bigint * interval '1 millisecond',"
    " queued = false, taken_at = now() FROM c WHERE l.tenant = c.tenant"
    " RETURNING coalesce(c.holder, '')";

/* Not taken: whether someone holds it, and when to look again (its
   expiry while held, else its due time). */
static const char *const SQL_PEEK =
    "SELECT holder IS NOT NULL AND expires_at >= now(),"
    " greatest(0, ceil(extract(epoch FROM (CASE WHEN holder IS NOT NULL"
    " AND expires_at >= now() THEN expires_at ELSE due_at END) - now())"
    " * 1000))::bigint FROM connhost_serve.leases WHERE tenant = $1";

static const char *const SQL_ADD = "INSERT INTO connhost_serve.leases (tenant) "
                                   "VALUES ($1) ON CONFLICT DO NOTHING";

static const char *const SQL_QUEUE =
    "UPDATE connhost_serve.leases SET queued = true WHERE tenant = $1";

static const char *const SQL_RELEASE =
    "UPDATE connhost_serve.leases SET holder = NULL, expires_at = NULL,"
    " due_at = now() + $3::bigint * interval '1 millisecond',"
    " runs = runs + 1 WHERE tenant = $2 AND holder = $1";

static const char *const SQL_RENEW =
    "UPDATE connhost_serve.leases"
    " SET expires_at = now() + $2::bigint * interval '1 millisecond'"
    " WHERE holder = $1 RETURNING tenant";

struct held {
  char *tenant;
  int lost; /* another replica took it: counted once */
  struct held *next;
};

struct leases {
  pthread_mutex_t lock; /* guards everything below */
  pthread_cond_t wake;  /* the heartbeat's sleep; close wakes it */
  PGconn *conn;         /* NULL while the database is out of reach */
  char *url, *replica;
  long expiry_ms;
  char why[256]; /* why conn is NULL */
  int closing;
  pthread_t beat;
  struct held *held;
  size_t nheld;
  uint64_t acquired, taken_over, lost, renew_failures, queries;
  double query_s;
};

/* The first line of libpq's message (they end in newlines and may go on
   with a DETAIL). */
static void first_line(char *dst, size_t n, const char *msg) {
  size_t len = strcspn(msg ? msg : "", "\n");

  if (len >= n)
    len = n - 1;
  memcpy(dst, msg ? msg : "", len);
  dst[len] = '\0';
}

/* The connection failed: drop it, say why (once) and take no new work
   until the heartbeat reconnects. Lock held. */
static void go_down(struct leases *l, const char *msg) {
  int was_up = l->conn != NULL;

  first_line(l->why, sizeof(l->why), msg);
  if (l->conn)
    PQfinish(l->conn);
  l->conn = NULL;
  if (was_up)
    log_error("leases: lost the database (%s); replica '%s' takes no new "
              "work until it is back",
              l->why, l->replica);
}

/* Connect and create the table; NULL with `why` filled when the database
   cannot be had. Called without the lock: a connect can take up to
   connect_timeout, and lease calls and /readyz must not wait for it. */
static PGconn *connect_db(const char *url, const char *replica, char *why,
                          size_t n) {
  char app[96];
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"5", app, url, NULL};
  PGconn *conn;
  PGresult *r;

  snprintf(app, sizeof(app), "connhost/%s", replica);
  conn = PQconnectdbParams(keys, vals, 1);
  if (!conn) {
    snprintf(why, n, "out of memory");
    return NULL;
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    first_line(why, n, PQerrorMessage(conn));
    PQfinish(conn);
    return NULL;
  }
  r = PQexec(conn, SCHEMA);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    char msg[256];
    snprintf(msg, sizeof(msg), "creating connhost_serve.leases: %s",
             PQresultErrorMessage(r));
    first_line(why, n, msg);
    PQclear(r);
    PQfinish(conn);
    return NULL;
  }
  PQclear(r);
  return conn;
}

/* One statement; NULL (and the replica down) when it failed. Lock held. */
static PGresult *run(struct leases *l, const char *sql, int n,
                     const char *const *params) {
  int64_t t0 = util_mono_us();
  PGresult *r;
  ExecStatusType st;

  if (!l->conn)
    return NULL;
  r = PQexecParams(l->conn, sql, n, NULL, params, NULL, NULL, 0);
  l->queries++;
  l->query_s += (double)(util_mono_us() - t0) / 1e6;
  st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
    return r;
  go_down(l, r ? PQresultErrorMessage(r) : PQerrorMessage(l->conn));
  PQclear(r);
  return NULL;
}

static struct held **find_held(struct leases *l, const char *tenant) {
  struct held **h = &l->held;

  while (*h && strcmp((*h)->tenant, tenant) != 0)
    h = &(*h)->next;
  return h;
}

/* Renew every held lease; the ones not renewed were taken over. Lock
   held. */
static void renew(struct leases *l) {
  char ms[32];
  const char *p[2] = {l->replica, ms};
  PGresult *r;

  snprintf(ms, sizeof(ms), "%ld", l->expiry_ms);
  r = run(l, l->held ? SQL_RENEW : "SELECT 1", l->held ? 2 : 0, p);
  if (!r) {
    l->renew_failures += l->held != NULL;
    return;
  }
  for (struct held *h = l->held; h; h = h->next) {
    int mine = 0;
    for (int i = 0; i < PQntuples(r) && !mine; i++)
      mine = strcmp(PQgetvalue(r, i, 0), h->tenant) == 0;
    if (!mine && !h->lost) {
      h->lost = 1;
      l->lost++;
      log_warn("leases: tenant '%s': another replica took the lease while "
               "this run went on (it expired: serve.lease_expiry)",
               h->tenant);
    }
  }
  PQclear(r);
}

static void *heartbeat(void *arg) {
  struct leases *l = arg;
  long every = l->expiry_ms / 3 > LEASE_POLL_FLOOR_MS ? l->expiry_ms / 3
                                                      : LEASE_POLL_FLOOR_MS;

  pthread_mutex_lock(&l->lock);
  while (!l->closing) {
    util_cond_wait_us(&l->wake, &l->lock, (int64_t)every * 1000);
    if (l->closing)
      break;
    if (!l->conn) {
      char why[sizeof(l->why)];
      PGconn *conn;
      pthread_mutex_unlock(&l->lock);
      conn = connect_db(l->url, l->replica, why, sizeof(why));
      pthread_mutex_lock(&l->lock);
      if (conn) {
        l->conn = conn;
        log_info("leases: the database is back; replica '%s' takes work "
                 "again",
                 l->replica);
      } else {
        memcpy(l->why, why, sizeof(why));
        l->renew_failures += l->held != NULL;
      }
      continue;
    }
    renew(l);
  }
  pthread_mutex_unlock(&l->lock);
  return NULL;
}

int leases_open(const char *url, const char *replica, long expiry_ms,
                struct leases **out, struct ch_err *err) {
  struct leases *l = calloc(1, sizeof(*l));

  *out = NULL;
  if (!l || !(l->url = strdup(url)) || !(l->replica = strdup(replica))) {
    if (l)
      free(l->url);
    free(l);
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  }
  l->expiry_ms = expiry_ms > 0 ? expiry_ms : LEASE_EXPIRY_MS;
  pthread_mutex_init(&l->lock, NULL);
  pthread_cond_init(&l->wake, NULL);
  l->conn = connect_db(url, replica, l->why, sizeof(l->why));
  if (!l->conn)
    log_error("leases: cannot reach the database (%s); replica '%s' "
              "starts not ready and keeps trying",
              l->why, replica);
  if (pthread_create(&l->beat, NULL, heartbeat, l) != 0) {
    leases_close(l);
    return ch_err_set(err, CH_E_NOMEM, "cannot start the lease heartbeat");
  }
  *out = l;
  return CH_OK;
}

void leases_close(struct leases *l) {
  if (!l)
    return;
  pthread_mutex_lock(&l->lock);
  l->closing = 1;
  pthread_cond_broadcast(&l->wake);
  pthread_mutex_unlock(&l->lock);
  if (l->beat)
    pthread_join(l->beat, NULL);
  while (l->held) {
    struct held *h = l->held;
    l->held = h->next;
    free(h->tenant);
    free(h);
  }
  if (l->conn)
    PQfinish(l->conn);
  pthread_cond_destroy(&l->wake);
  pthread_mutex_destroy(&l->lock);
  free(l->url);
  free(l->replica);
  free(l);
}

/* Taken: remember it for the heartbeat. Lock held. */
static enum lease_result took(struct leases *l, const char *tenant,
                              const char *prev) {
  struct held *h = calloc(1, sizeof(*h));

  if (!h || !(h->tenant = strdup(tenant))) {
    free(h);
    return LEASE_BUSY; /* it expires unrenewed; another replica runs it */
  }
  h->next = l->held;
  l->held = h;
  l->nheld++;
  l->acquired++;
  if (prev[0]) {
    l->taken_over++;
    log_info("leases: tenant '%s': taking over from replica '%s' (its "
             "lease expired)",
             tenant, prev);
  }
  return LEASE_TAKEN;
}

enum lease_result leases_acquire(struct leases *l, const char *tenant, int now,
                                 long *retry_ms) {
  char ms[32];
  const char *p[4] = {l->replica, tenant, ms, now ? "true" : "false"};
  enum lease_result res = LEASE_DOWN;
  PGresult *r;

  *retry_ms = l->expiry_ms / 3;
  snprintf(ms, sizeof(ms), "%ld", l->expiry_ms);
  pthread_mutex_lock(&l->lock);
  for (int pass = 0; pass < 2 && l->conn; pass++) {
    if (!(r = run(l, SQL_TAKE, 4, p)))
      break;
    if (PQntuples(r) == 1) {
      res = took(l, tenant, PQgetvalue(r, 0, 0));
      PQclear(r);
      break;
    }
    PQclear(r);
    if (!(r = run(l, SQL_PEEK, 1, p + 1)))
      break;
    res = LEASE_BUSY;
    if (PQntuples(r) == 1) {
      int held = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
      long wait = strtol(PQgetvalue(r, 0, 1), NULL, 10);
      PQclear(r);
      if (held && now && (r = run(l, SQL_QUEUE, 1, p + 1)))
        PQclear(r);
      if (wait > l->expiry_ms)
        wait = l->expiry_ms;
      *retry_ms = wait > LEASE_POLL_FLOOR_MS ? wait : LEASE_POLL_FLOOR_MS;
      break;
    }
    PQclear(r); /* a tenant not seen before: add it, due now */
    if (!(r = run(l, SQL_ADD, 1, p + 1)))
      break;
    PQclear(r);
    *retry_ms = LEASE_POLL_FLOOR_MS;
  }
  if (!l->conn)
    res = LEASE_DOWN;
  pthread_mutex_unlock(&l->lock);
  return res;
}

void leases_release(struct leases *l, const char *tenant, long next_ms) {
  char ms[32];
  const char *p[3] = {l->replica, tenant, ms};
  struct held **hp, *h;
  PGresult *r;

  snprintf(ms, sizeof(ms), "%ld", next_ms);
  pthread_mutex_lock(&l->lock);
  hp = find_held(l, tenant);
  h = *hp;
  if (h) {
    *hp = h->next;
    l->nheld--;
  }
  r = run(l, SQL_RELEASE, 3, p);
  if (r && strcmp(PQcmdTuples(r), "0") == 0 && !(h && h->lost)) {
    l->lost++;
    log_warn("leases: tenant '%s': the lease had passed to another replica "
             "when this run ended",
             tenant);
  }
  PQclear(r);
  pthread_mutex_unlock(&l->lock);
  if (h)
    free(h->tenant);
  free(h);
}

const char *leases_not_ready(struct leases *l, char *why, size_t n) {
  const char *res = NULL;

  pthread_mutex_lock(&l->lock);
  if (!l->conn) {
    snprintf(why, n, "store database out of reach (%s): taking no new work",
             l->why);
    res = why;
  }
  pthread_mutex_unlock(&l->lock);
  return res;
}

char *leases_render_metrics(struct leases *l, char *body) {
  char id[256];
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);

  if (!f) {
    free(body);
    return NULL;
  }
  metrics_escape_label(l->replica, id, sizeof(id));
  fputs(body ? body : "", f);
  free(body);
  pthread_mutex_lock(&l->lock);
  fprintf(f,
          "# HELP connhost_replica_info This replica's id "
          "(serve.replica_id).\n"
          "# TYPE connhost_replica_info gauge\n"
          "connhost_replica_info{replica=\"%s\"} 1\n"
          "# HELP connhost_lease_database_up Whether the lease database is "
          "reachable (0: no new work is taken).\n"
          "# TYPE connhost_lease_database_up gauge\n"
          "connhost_lease_database_up %d\n"
          "# HELP connhost_leases_held Tenant leases this replica holds "
          "(runs going on).\n"
          "# TYPE connhost_leases_held gauge\n"
          "connhost_leases_held %zu\n"
          "# HELP connhost_lease_acquired_total Tenant leases taken.\n"
          "# TYPE connhost_lease_acquired_total counter\n"
          "connhost_lease_acquired_total %llu\n"
          "# HELP connhost_lease_taken_over_total Leases taken from a "
          "replica whose lease had expired.\n"
          "# TYPE connhost_lease_taken_over_total counter\n"
          "connhost_lease_taken_over_total %llu\n"
          "# HELP connhost_lease_lost_total Leases another replica took "
          "while this one still ran the tenant.\n"
          "# TYPE connhost_lease_lost_total counter\n"
          "connhost_lease_lost_total %llu\n"
          "# HELP connhost_lease_renew_failures_total Heartbeats that "
          "could not renew the held leases.\n"
          "# TYPE connhost_lease_renew_failures_total counter\n"
          "connhost_lease_renew_failures_total %llu\n"
          "# HELP connhost_lease_queries_total Lease statements sent.\n"
          "# TYPE connhost_lease_queries_total counter\n"
          "connhost_lease_queries_total %llu\n"
          "# HELP connhost_lease_query_seconds_total Time spent in lease "
          "statements.\n"
          "# TYPE connhost_lease_query_seconds_total counter\n"
          "connhost_lease_query_seconds_total %.6f\n",
          id, l->conn != NULL, l->nheld, (unsigned long long)l->acquired,
          (unsigned long long)l->taken_over, (unsigned long long)l->lost,
          (unsigned long long)l->renew_failures, (unsigned long long)l->queries,
          l->query_s);
  pthread_mutex_unlock(&l->lock);
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}
