#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replica benchmark (not a test): `connhost serve` replicas sharing 200
small tenants through a PostgreSQL store, against the fake Atlassian Cloud
with 100 ms per request. 1, 2 and 3 replicas side by side in one run (one
fake, one PostgreSQL, a fresh database each), every tenant due again 1 s
after its last run, so the replicas are never idle: syncs per minute
(recorded in the store), the fake's requests per second (where it saturates), the lease statements and
their time per sync, and the CPU the replicas used.

Usage: bench/replica-bench.py SRCDIR BUILDDIR [TENANTS] [SECONDS] [LATENCY_MS]
"""
import os
import signal
import subprocess
import sys
import time

SRC, BUILD = sys.argv[1], sys.argv[2]
TENANTS = int(sys.argv[3]) if len(sys.argv) > 3 else 200
WINDOW_S = float(sys.argv[4]) if len(sys.argv) > 4 else 60
LATENCY_MS = int(sys.argv[5]) if len(sys.argv) > 5 else 100
WARMUP_S = 20  # the first round of every tenant starts at once: not counted

os.environ.setdefault("top_srcdir", SRC)
os.environ.setdefault("top_builddir", BUILD)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import lib  # noqa: E402
import pgcluster  # noqa: E402
from test_serve import Serve, parse_exposition, sample  # noqa: E402


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runs_between(pg, db, t0, t1):
    if pg.psql("SELECT to_regclass('runs') IS NOT NULL", db).strip() != "t":
        return 0
    return int(pg.psql("SELECT count(*) FROM runs WHERE finished_at >= %d AND finished_at < %d"
                       % (t0, t1), db))


def one(pg, fake, tmp, n):
    db = "bench%d" % n
    url = pg.create_db(db)
    c = fake.creds
    tok = os.path.join(tmp, "token")
    with open(tok, "w") as f:
        f.write(c["jira_api_token"])
    inst = {"plugin": "jira_cloud",
            "options": {"url": fake.base, "gateway_url": fake.base,
                        "email": c["jira_email"], "api_token": "${file:%s}" % tok}}
    out = os.path.join(tmp, "out%d" % n)
    os.makedirs(out)
    cfg = lib.write_config(
        os.path.join(tmp, "serve%d.yaml" % n),
        {"t%03d" % i: {"jira": inst} for i in range(TENANTS)},
        output=os.path.join(out, "{tenant}.json"), plugin_dir=lib.PLUGINS,
        extra="store: %s\nkeep_runs: 100000\nschedule:\n  interval: 1s\n  jitter: 0%%\n"
              "serve:\n  lease_expiry: 30s\n" % url)
    reps = []
    try:
        for i in range(n):
            reps.append(Serve(tmp, cfg, ["--replica-id", "r%d" % i], name="b%d-r%d" % (n, i)))
        time.sleep(WARMUP_S)
        req0 = len(fake.requests())
        cpu0 = sum(cpu_s(r.proc.pid) for r in reps)
        m0 = [r.metrics() for r in reps]
        t0 = int(time.time())
        time.sleep(WINDOW_S)
        t1 = int(time.time())
        m1 = [r.metrics() for r in reps]
        cpu1 = sum(cpu_s(r.proc.pid) for r in reps)
        req1 = len(fake.requests())
    finally:
        for r in reps:
            r.stop(signal.SIGTERM, timeout=120)
    ok = sum(r.log().count("status=ok") for r in reps)
    failed = sum(r.log().count("status=failed") for r in reps)
    syncs = runs_between(pg, db, t0, t1)

    def delta(name):
        return sum(sample(b, name) - sample(a, name) for a, b in zip(m0, m1))
    acquired = delta("connhost_lease_acquired_total")
    queries = delta("connhost_lease_queries_total")
    qsec = delta("connhost_lease_query_seconds_total")
    per = max(acquired, 1)
    return {"replicas": n, "syncs_min": syncs * 60.0 / (t1 - t0),
            "req_s": (req1 - req0) / (t1 - t0), "q_per_sync": queries / per,
            "ms_per_sync": qsec * 1000.0 / per, "cpu": (cpu1 - cpu0) / (t1 - t0),
            "ok": ok, "failed": failed}


def main():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="connhost-replica-bench-")
    pg = pgcluster.Cluster()
    fake = lib.Fake(tmp, profile="tiny", extra=("--latency-ms", str(LATENCY_MS)))
    try:
        print("%d tiny tenants, %d ms per request, %.0f s measured after %d s; "
              "PostgreSQL %s" % (TENANTS, LATENCY_MS, WINDOW_S, WARMUP_S,
                                 os.path.basename(os.path.dirname(pg.bindir))))
        print("| replicas | syncs/min | fake requests/s | lease statements/sync "
              "| lease ms/sync | replicas' CPU (cores) | runs ok / failed (whole run) |")
        print("|---|---|---|---|---|---|---|")
        for n in (1, 2, 3):
            r = one(pg, fake, tmp, n)
            print("| %(replicas)d | %(syncs_min).0f | %(req_s).0f | %(q_per_sync).1f "
                  "| %(ms_per_sync).2f | %(cpu).2f | %(ok)d / %(failed)d |" % r, flush=True)
    finally:
        fake.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
