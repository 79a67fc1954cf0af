#!/bin/sh
# SPDX-License-Identifier: MIT
# Store benchmark on a real sync: the fake Atlassian Cloud (`large` tenant by
# default), synced by jira_cloud + atlassian_org three times: without a
# store, with a new store (run 1 records everything), and again (run 2
# records only what changed), STORE_BENCH_ROUNDS rounds (default 5).
# Prints the median CPU time and the peak RSS of each sync side by side,
# the store's size against the JSONL graph, and the latency of `access`,
# `who-has` on the largest group's membership, and `diff`. Then
# the same two store runs and reads into PostgreSQL (a throwaway cluster,
# tests/e2e/pgcluster.py), with the server's CPU as well as connhost's;
# skipped, saying why, when PostgreSQL is not installed.
# Not part of `make check`.
# Usage: bench/store-bench.sh SRCDIR BUILDDIR [PROFILE] [WORKERS]
set -eu
src=$1
build=$2
profile=${3:-large}
workers=${4:-16}
work=$(mktemp -d /tmp/connhost-store-bench.XXXXXX)
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null; rm -rf "$work"' EXIT INT TERM

latency=0
. "$src/bench/fake-env.sh"

# Configs (secrets in files) and the WHO and WHAT to ask about; then the
# runs, each command's CPU and peak RSS from its own rusage (wait4).
python3 - "$work" "$build" "$workers" <<'PY'
import json, os, sys
work, build, workers = sys.argv[1], sys.argv[2], sys.argv[3]
t = json.load(open(os.path.join(work, "truth.json")))
c = t["credentials"]
base = "http://127.0.0.1:" + open(os.path.join(work, "port")).read().strip()
for name, value in (("jira", c["jira_api_token"]), ("org", c["org_api_key"])):
    with open(os.path.join(work, name + ".secret"), "w") as f:
        f.write(value)
def config(name, store):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write("""plugin_dir: %s/plugins/.libs
store: %s
workers: %s
tenants:
  bench:
    jira:
      plugin: jira_cloud
      options:
        url: %s
        email: %s
        api_token: ${file:%s/jira.secret}
        gateway_url: %s
    org:
      plugin: atlassian_org
      options:
        org_id: %s
        api_token: ${file:%s/org.secret}
        api_base: %s/admin
""" % (build, store, workers, base, c["jira_email"], work, base, c["org_id"], work, base))
    return path
none = config("none.yaml", "none")
withdb = config("store.yaml", os.path.join(work, "connhost.db"))
org = {a["account_id"]: a for a in t["org"]["accounts"]}
who = next(a["email"] for a in t["org"]["accounts"][len(org) // 2:])
big = max(t["jira"]["group_members"].items(), key=lambda kv: len(kv[1]))[0]
with open(os.path.join(work, "ask"), "w") as f:
    f.write("%s\nbench/jira/group/%s#member\n%d\n"
            % (who, big, len(t["jira"]["group_members"][big])))
PY

# A fresh, small process measures: a child's peak RSS starts from its
# parent's, so the parent must not be the one that read the truth file.
python3 - "$work" "$build" "$src" <<'PY'
import os, subprocess, sys, time
work, build, src = sys.argv[1], sys.argv[2], sys.argv[3]
none = os.path.join(work, "none.yaml")
withdb = os.path.join(work, "store.yaml")
who, what, members = open(os.path.join(work, "ask")).read().split("\n")[:3]
ch = os.path.join(build, "connhost")

def run(args):
    """Wall seconds, CPU seconds and peak RSS (MB) of one connhost run."""
    err = open(os.path.join(work, "stderr"), "w+")
    t0 = time.monotonic()
    p = subprocess.Popen([ch] + args, stdout=subprocess.DEVNULL, stderr=err)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        err.seek(0)
        sys.exit("connhost %s failed: %s" % (" ".join(args), err.read()))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024

jsonl = os.path.join(work, "graph.jsonl")
# CPU times of one sync swing by a quarter from run to run on a shared
# machine, so the three syncs run STORE_BENCH_ROUNDS times (default 5),
# alternating, each round into a new store; the table shows medians and
# the recording cost is read from them.
import statistics
rounds = int(os.environ.get("STORE_BENCH_ROUNDS", "5"))
labels = ("sync, store: none", "sync, new store (run 1)", "sync, store again (run 2)")
samples = {label: [] for label in labels}
db = os.path.join(work, "connhost.db")
for _ in range(rounds):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    for label, cfg in zip(labels, (none, withdb, withdb)):
        samples[label].append(run(["-q", "-c", cfg, "-o", jsonl, "--format", "jsonl"]))
print("%-30s %9s %9s %14s   (medians of %d rounds; CPU range)"
      % ("", "wall s", "CPU s", "peak RSS MB", rounds))
med = {}
for label in labels:
    walls, cpus, rsss = zip(*samples[label])
    med[label] = statistics.median(cpus)
    print("%-30s %9.1f %9.2f %14d   %.2f to %.2f"
          % (label, statistics.median(walls), med[label], max(rsss), min(cpus), max(cpus)))
base_cpu = med[labels[0]]
for label in labels[1:]:
    cpu = med[label]
    print("  recording cost, %s: %+.2f s CPU (%+.0f%% of the sync)"
          % (label.split(", ")[1], cpu - base_cpu, 100 * (cpu - base_cpu) / base_cpu))
print("\n%-30s %12s" % ("size", "MB"))
print("%-30s %12.1f" % ("JSONL graph (one run)", os.path.getsize(jsonl) / 1e6))
print("%-30s %12.1f" % ("store after two runs", os.path.getsize(db) / 1e6))

print("\n%-44s %9s %9s" % ("read (best of 3)", "wall ms", "CPU ms"))
for label, args in (("access " + who, ["access", who]),
                    ("who-has (%s members)" % members,
                     ["who-has", what]),
                    ("diff (run 1 to 2)", ["diff"])):
    best = min(run(args + ["--db", db, "--format", "json"])[:2] for _ in range(3))
    print("%-44s %9.0f %9.0f" % (label, best[0] * 1000, best[1] * 1000))
# The same into PostgreSQL, side by side.
sys.path.insert(0, os.path.join(src, "tests", "e2e"))
import pgcluster
why = pgcluster.available()
if why:
    print("\nPostgreSQL: skipped (%s)" % why)
    sys.exit(0)

def server_cpu(cluster):
    """CPU seconds of the cluster: the postmaster, its reaped children
    (backends that have exited) and the live ones."""
    tick = os.sysconf("SC_CLK_TCK")
    pm = int(open(os.path.join(cluster.data, "postmaster.pid")).readline())
    def stat(pid):
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        return [int(x) for x in f[11:15]]  # utime stime cutime cstime
    total = sum(stat(pm))
    for c in open("/proc/%d/task/%d/children" % (pm, pm)).read().split():
        try:
            total += sum(stat(int(c))[:2])
        except OSError:
            pass
    return total / tick

cluster = pgcluster.Cluster()
try:
    url = cluster.create_db("bench")
    pgcfg = os.path.join(work, "pg.yaml")
    with open(withdb) as f, open(pgcfg, "w") as g:
        g.write(f.read().replace("store: " + db, "store: " + url))
    print("\n%-30s %9s %9s %14s %9s" % ("PostgreSQL", "wall s", "CPU s", "peak RSS MB",
                                      "server s"))
    for label in ("sync, new store (run 1)", "sync, store again (run 2)"):
        s0 = server_cpu(cluster)
        wall, cpu, rss = run(["-q", "-c", pgcfg, "-o", jsonl, "--format", "jsonl"])
        print("%-30s %9.1f %9.2f %14d %9.2f" % (label, wall, cpu, rss, server_cpu(cluster) - s0))
        print("  recording cost: %+.2f s CPU in connhost (%+.0f%% of the sync)"
              % (cpu - base_cpu, 100 * (cpu - base_cpu) / base_cpu))
    size = int(cluster.psql("SELECT pg_database_size('bench')").strip())
    print("%-30s %12.1f" % ("database after two runs, MB", size / 1e6))
    print("\n%-44s %9s %9s" % ("read from PostgreSQL (best of 3)", "wall ms", "CPU ms"))
    for label, args in (("access " + who, ["access", who]),
                        ("who-has (%s members)" % members, ["who-has", what]),
                        ("diff (run 1 to 2)", ["diff"])):
        best = min(run(args + ["--db", url, "--format", "json"])[:2] for _ in range(3))
        print("%-44s %9.0f %9.0f" % (label, best[0] * 1000, best[1] * 1000))
finally:
    cluster.stop()
PY
