#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of `connhost serve` replicas that share their tenants
through a PostgreSQL store (docs/scale-out.md): a real throwaway PostgreSQL
(pgcluster.py), three real `connhost serve` processes with the same config,
the real jira_cloud.so and the fake Atlassian Cloud on loopback.

- Ten demo-size tenants on a short interval: every tenant syncs once per
  interval (never sooner, never much later) and never on two replicas at
  once, checked from the runs table; the runs are spread over the replicas
  and each names the replica that did it.
- SIGKILL of a replica in the middle of a sync: another replica takes its
  tenants within the lease expiry, and the store holds no half-recorded run.
- The database stopped: every replica's /readyz answers 503 with the reason
  and no new sync starts; the database back: ready again, syncing again.

PostgreSQL is required (tools/install-deps.sh installs it): without it the
test fails, unless CONNHOST_TEST_NO_PG=1 asks to skip it.
"""
import datetime
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import pgcluster  # noqa: E402
from test_serve import Serve, sample  # noqa: E402

INTERVAL_MS = 4000
EXPIRY_MS = 3000
# how late a due run may start: a poll after a lease's expiry, a busy machine
SLACK_MS = 2500
TENANTS = ["t%02d" % i for i in range(10)]


class ReplicaTest(lib.TempDirTest):
    fake_profile = "demo"
    fake_extra = ()

    @classmethod
    def setUpClass(cls):
        cls.pg = pgcluster.for_tests()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        super().setUp()
        self.db = "t%d" % (int(time.time() * 1000) % 10 ** 9)
        self.url = self.pg.create_db(self.db)
        self.fake = lib.Fake(self.tmp, profile=self.fake_profile, extra=self.fake_extra)
        self.addCleanup(self.fake.stop)
        self.out_dir = self.path("out")
        os.makedirs(self.out_dir)
        self.replicas = {}

    def tearDown(self):
        for s in self.replicas.values():
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
            if not s._err.closed:
                s._err.close()
        super().tearDown()

    def config(self, interval_ms=INTERVAL_MS, expiry_ms=EXPIRY_MS):
        c = self.fake.creds
        tok = self.path("token")
        with open(tok, "w") as f:
            f.write(c["jira_api_token"])
        inst = {"plugin": "jira_cloud",
                "options": {"url": self.fake.base, "gateway_url": self.fake.base,
                            "email": c["jira_email"], "api_token": "${file:%s}" % tok}}
        extra = ("store: %s\nschedule:\n  interval: %dms\n  jitter: 0%%\nworkers: 1\n"
                 "serve:\n  lease_expiry: %dms\n  shutdown_grace: 5s\n"
                 % (self.url, interval_ms, expiry_ms))
        return lib.write_config(self.path("serve.yaml"), {t: {"jira": inst} for t in TENANTS},
                                output=os.path.join(self.out_dir, "{tenant}.json"),
                                plugin_dir=lib.PLUGINS, extra=extra)

    def start(self, cfg, n=3):
        for i in range(n):
            rid = "r%d" % i
            s = Serve(self.tmp, cfg, ["--replica-id", rid], name=rid)
            self.replicas[rid] = s
            self.assertIsNotNone(s.port, s.log())

    def sql(self, q):
        return [line.split("|") for line in self.pg.psql(q, self.db).splitlines() if line]

    def runs(self):
        """Every recorded run: (tenant, started_s, finished_s, replica, id);
        the store keeps whole seconds."""
        if self.sql("SELECT to_regclass('runs') IS NULL") == [["t"]]:
            return []  # no run recorded yet
        rows = self.sql("SELECT i.tenant, r.started_at, r.finished_at, coalesce(r.replica, ''),"
                        " r.id FROM runs r JOIN run_instances ri ON ri.run_id = r.id"
                        " JOIN instances i ON i.id = ri.inst_id WHERE ri.status <> 'not_synced'"
                        " ORDER BY r.started_at")
        return [(t, int(a), int(b), rep, int(i)) for t, a, b, rep, i in rows]

    def logged_runs(self, killed=None, killed_ms=0):
        """Every run the replicas logged, to the millisecond: (tenant,
        start_ms, end_ms, replica); a run the SIGKILL cut ends then."""
        out = []
        for rid, s in self.replicas.items():
            open_runs = {}
            for m in re.finditer(r"^(\S+)Z connhost: \w+: sync_(started|finished): tenant=(\S+)",
                                 s.log(), re.M):
                when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                ms = int(when.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
                if m.group(2) == "started":
                    open_runs[m.group(3)] = ms
                else:
                    out.append((m.group(3), open_runs.pop(m.group(3)), ms, rid))
            for t, ms in open_runs.items():
                self.assertEqual(rid, killed, "%s: a run of %s never finished" % (rid, t))
                out.append((t, ms, killed_ms, rid))
        return sorted(out, key=lambda r: r[1])

    def wait_runs(self, pred, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            runs = self.runs()
            if pred(runs):
                return runs
            time.sleep(0.25)
        self.fail("%s in %ss; runs: %r\n%s" % (what, timeout, self.runs()[-20:],
                                               self.replicas["r0"].log()[-3000:]))

    def assert_consistent(self):
        # a run is recorded whole or not at all: each is finished, has the
        # one instance it synced (the other tenants' rows are carried over
        # as not_synced) and a row for every instance the store knows, and
        # no instance row points at a run that is not there
        half = self.sql("SELECT r.id, r.status FROM runs r LEFT JOIN run_instances ri"
                        " ON ri.run_id = r.id GROUP BY r.id, r.status"
                        " HAVING r.status = 'recording'"
                        " OR count(*) FILTER (WHERE ri.status <> 'not_synced') <> 1")
        self.assertEqual(half, [], "runs recorded in part")
        short = self.sql("SELECT r.id FROM runs r WHERE (SELECT count(*) FROM run_instances ri"
                         " WHERE ri.run_id = r.id) < (SELECT count(DISTINCT inst_id) FROM"
                         " run_instances ri WHERE ri.run_id <= r.id AND ri.data_run IS NOT NULL"
                         " AND ri.run_id >= (SELECT min(id) FROM runs))")
        self.assertEqual(short, [], "runs missing an instance's row")
        orphans = self.sql("SELECT ri.run_id FROM run_instances ri LEFT JOIN runs r"
                           " ON r.id = ri.run_id WHERE r.id IS NULL")
        self.assertEqual(orphans, [], "instance rows of no run")


class Sharing(ReplicaTest):
    fake_extra = ("--latency-ms", "15")  # a sync of ~2 s: long enough to be killed in

    def test_once_per_interval_no_overlap_and_takeover(self):
        self.start(self.config())
        self.wait_runs(lambda rs: all(sum(r[0] == t for r in rs) >= 2 for t in TENANTS),
                       90, "every tenant synced twice")

        # SIGKILL a replica while it holds a tenant (in the middle of its
        # sync). It is stopped first and killed only if it still holds one:
        # a replica that let its lease go between the query and the kill
        # goes on, so exactly one replica dies.
        victim, orphans, killed_ms = None, [], 0
        deadline = time.time() + 30
        while not orphans and time.time() < deadline:
            held = self.sql("SELECT holder FROM connhost_serve.leases WHERE holder IS NOT NULL"
                            " AND expires_at > now() LIMIT 1")
            if held:
                proc = self.replicas[held[0][0]].proc
                proc.send_signal(signal.SIGSTOP)
                stopped_ms = int(time.time() * 1000)
                orphans = [r[0] for r in self.sql(
                    "SELECT tenant FROM connhost_serve.leases WHERE holder = '%s'" % held[0][0])]
                if orphans:
                    victim, killed_ms = held[0][0], stopped_ms
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                else:
                    proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        self.assertTrue(orphans, "no replica was caught in the middle of a sync")
        survivors = [r for r in self.replicas if r != victim]

        # another replica takes each of them within the lease expiry
        def taken(rs):
            return all(any(r[0] == t and r[3] in survivors and r[1] >= killed_ms // 1000
                           for r in rs) for t in orphans)
        self.wait_runs(taken, 60, "the killed replica's tenants taken over")
        fams = [self.replicas[r].metrics() for r in survivors]
        self.assertGreaterEqual(sum(sample(f, "connhost_lease_taken_over_total") for f in fams),
                                1, "no survivor counted a take-over")

        # one more interval, then stop the survivors and read the record
        time.sleep(INTERVAL_MS / 1000.0)
        for r in survivors:
            fam = self.replicas[r].metrics()
            self.assertEqual(sample(fam, "connhost_replica_info", replica=r), 1)
            self.assertEqual(sample(fam, "connhost_lease_database_up"), 1)
            self.assertGreater(sample(fam, "connhost_lease_acquired_total"), 0)
            self.assertEqual(self.replicas[r].stop(), 0, self.replicas[r].log()[-2000:])
        self.assert_consistent()

        # the runs table: every tenant, each run by a replica, spread over
        # them, never two at once (whole seconds; finished_at is when the
        # run was recorded, before the graph is written and the lease let
        # go, so the interval itself is checked from the logs below)
        runs = self.runs()
        by = {}
        for t, a, b, rep, _ in runs:
            self.assertIn(rep, self.replicas, "a run names no replica")
            self.assertLessEqual(a, b)
            by.setdefault(t, []).append((a, b, rep))
        self.assertEqual(sorted(by), TENANTS)
        self.assertGreaterEqual(len({r[3] for r in runs}), 2, "one replica did every run")
        self.assertFalse([r for r in runs if r[3] == victim and r[1] > killed_ms // 1000 + 1])
        # `connhost runs` names the replica of each run, as the table does
        r = lib.run(["runs", "--db", self.url, "--format", "json"])
        self.assertEqual(r.rc, 0, r)
        shown = {(x["run"], x["tenant"]): x["replica"] for x in json.loads(r.out)["runs"]
                 if x["status"] != "not_synced"}
        self.assertEqual(shown, {(i, t): rep for t, _, _, rep, i in runs})
        for t, rs in by.items():
            self.assertGreaterEqual(len(rs), 2, t)
            for (a0, b0, r0), (a1, b1, r1) in zip(rs, rs[1:]):
                self.assertGreaterEqual(a1 - b0, 0,
                                        "%s: the run by %s started %d s after the run by %s"
                                        " ended" % (t, r1, a1 - b0, r0))

        # the logs, to the millisecond: no overlap, the interval kept, none
        # skipped, the take-over within the lease expiry
        by = {}
        for t, a, b, rep in self.logged_runs(victim, killed_ms):
            by.setdefault(t, []).append((a, b, rep))
        for t, rs in by.items():
            for (a0, b0, r0), (a1, b1, r1) in zip(rs, rs[1:]):
                gap = a1 - b0
                cut = r0 == victim and b0 == killed_ms
                if cut:  # the killed run's tenant: taken when its lease expired
                    self.assertGreaterEqual(gap, 0, "%s: overlapping runs" % t)
                    self.assertLessEqual(gap, EXPIRY_MS + SLACK_MS,
                                         "%s: taken %d ms after the kill" % (t, gap))
                    continue
                self.assertGreaterEqual(gap, INTERVAL_MS - 250,
                                        "%s: the run by %s started %d ms after the run by %s"
                                        " ended" % (t, r1, gap, r0))
                self.assertLessEqual(gap, INTERVAL_MS + SLACK_MS,
                                     "%s: %d ms between runs" % (t, gap))
        for t in orphans:
            self.assertTrue(any(r[2] == victim and r[1] == killed_ms for r in by[t]), t)


class DatabaseAway(ReplicaTest):
    fake_profile = "tiny"

    def test_not_ready_and_idle_while_the_database_is_away(self):
        self.start(self.config(interval_ms=1500, expiry_ms=1500))
        for s in self.replicas.values():
            st, _, body = s.get("/readyz")
            self.assertEqual(st, 200, body)
        self.wait_runs(lambda rs: len({r[0] for r in rs}) == len(TENANTS), 60,
                       "every tenant synced")

        self.pg.pause()
        try:
            for rid, s in self.replicas.items():
                deadline = time.time() + 20
                while True:
                    st, _, body = s.get("/readyz")
                    if st == 503:
                        break
                    self.assertLess(time.time(), deadline, "%s still ready" % rid)
                    time.sleep(0.1)
                self.assertIn(b"store database out of reach", body)
                self.assertIn(b"taking no new work", body)
                fam = s.metrics()
                self.assertEqual(sample(fam, "connhost_lease_database_up"), 0)
                st, _, body = s.get("/api/v1/sync?tenant=t00", method="POST")
                self.assertEqual(st, 503, body)
            # what ran when the database went away has finished by now
            time.sleep(2.0)
            marks = {rid: s.log().count("sync_started") for rid, s in self.replicas.items()}
            time.sleep(3 * 1.5)
            for rid, s in self.replicas.items():
                self.assertEqual(s.log().count("sync_started"), marks[rid],
                                 "%s started a sync without its database:\n%s"
                                 % (rid, s.log()[-2000:]))
                self.assertIn("lost the database", s.log())
        finally:
            back_ms = int(time.time() * 1000)
            self.pg.start()

        for rid, s in self.replicas.items():
            deadline = time.time() + 20
            while s.get("/readyz")[0] != 200:
                self.assertLess(time.time(), deadline, "%s not ready again" % rid)
                time.sleep(0.1)
            self.assertIn("the database is back", s.log())
        self.wait_runs(lambda rs: len({r[0] for r in rs if r[1] >= back_ms // 1000 + 1})
                       == len(TENANTS),
                       60, "every tenant synced again")
        for s in self.replicas.values():
            self.assertEqual(s.stop(), 0, s.log()[-2000:])
        self.assert_consistent()


class SQLiteStore(ReplicaTest):
    """With a SQLite store serve runs alone, as before: no leases."""
    fake_profile = "tiny"

    def test_no_leases_without_postgresql(self):
        cfg = self.config(interval_ms=1000)
        with open(cfg) as f:
            text = f.read().replace("store: %s" % self.url, "store: %s" % self.path("c.db"))
        with open(cfg, "w") as f:
            f.write(text)
        s = Serve(self.tmp, cfg, ["--replica-id", "solo"], name="solo")
        self.replicas["solo"] = s
        s.wait_log("sync_finished: tenant=t09", timeout=60)
        self.assertIsNone(sample(s.metrics(), "connhost_leases_held"))
        self.assertNotIn("leases", s.log())
        self.assertEqual(s.stop(), 0)
        self.assertEqual(self.sql("SELECT to_regclass('connhost_serve.leases') IS NULL"), [["t"]])


if __name__ == "__main__":
    lib.main()
