#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Pacing benchmark (not a test): syncs one tenant of the fake Atlassian
Cloud (demo profile with 3,000 users, 100 ms per request) under several
rate-limit and fault scenarios and prints one table: wall, the ideal, the
ratio, requests, 429s, connhost's CPU and peak RSS.

The last scenario is the huge tenant (100,000 users, no latency), for
connhost's CPU and peak RSS, read against the HTTP floor: bench/http_floor
replays the same GETs with bare libcurl on one thread (the CPU any libcurl
client pays for them here, the kernel's loopback work included). The ideal of a run is the larger of the latency bound (requests x latency
/ workers) and the rate bound (the busiest endpoint's calls / the burst
limit). Endpoints are counted the way the fake's limiter counts them: by
route template and method (ids replaced).

Usage: bench/pace-bench.py SRCDIR BUILDDIR [SCENARIO...]
(a SCENARIO argument runs the scenarios whose name contains it;
PACE_BENCH_KEEP=1 keeps the graphs; PACE_BENCH_BASELINE=PATH also runs the
huge tenant with the connhost binary at PATH, for a before/after in one
run; PACE_BENCH_BASELINE_PLUGINS=DIR gives that run its own plugin
directory, for a before/after of the plugins). The syncs run with `store: none`: the huge tenant's goals are for the
sync and the JSON write (bench/store-bench.sh measures the store).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

SRC, BUILD = sys.argv[1], sys.argv[2]
ONLY = sys.argv[3:]
BASELINE = os.environ.get("PACE_BENCH_BASELINE")
BASELINE_PLUGINS = os.environ.get("PACE_BENCH_BASELINE_PLUGINS")
# Issue 12's goals for the huge tenant.
HUGE_CPU_GOAL, HUGE_RSS_GOAL = 15.0, 160.0
FLOOR = os.path.join(BUILD, "bench/http_floor")
LATENCY_MS = 100
USERS = 3000
TENANT = ["--profile", "demo", "--users", str(USERS), "--latency-ms", str(LATENCY_MS)]

# name, fake switches, workers (None: the config's default), compare with
SCENARIOS = [
    ("clean, 16 workers", TENANT, 16, None),
    ("burst 40/s, default workers", TENANT + ["--burst-limit", "40"], None, None),
    ("burst 40/s, 32 workers", TENANT + ["--burst-limit", "40"], 32, None),
    ("5% 429 + 2% 503, 16 workers",
     TENANT + ["--fault", "429,rate=0.05,retry_after=1:.",
               "--fault", "503,rate=0.02,retry_after=1:."],
     16, "clean, 16 workers"),
    ("huge tenant, no latency, default workers", ["--profile", "huge"], None, None),
]
if BASELINE:
    SCENARIOS.append(("huge tenant, baseline binary", ["--profile", "huge"], None,
                      "huge tenant, no latency, default workers"))

WORD = re.compile(r"^[a-z_-]+$")

# Runs argv[1:], passes its stderr through, and prints [exit status, CPU
# seconds, peak RSS KB, user seconds, system seconds] of it as the last
# line of its own stderr.
LAUNCH = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, st, ru = os.wait4(pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(st), ru.ru_utime + ru.ru_stime, ru.ru_maxrss,
                  ru.ru_utime, ru.ru_stime]),
      file=sys.stderr)
"""


def route_of(path):
    return "/".join(s if (not s or WORD.match(s)) else "{}" for s in path.split("/"))


def start_fake(work, extra):
    port_file = os.path.join(work, "port")
    for f in (port_file,):
        if os.path.exists(f):
            os.unlink(f)
    log = os.path.join(work, "requests.jsonl")
    if os.path.exists(log):
        os.unlink(log)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(SRC, "tests/fake/atlassian-fake"), "--host", "127.0.0.1",
         "--port", "0", "--port-file", port_file, "--truth", os.path.join(work, "truth.json"),
         "--request-log", log] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.time() - t0 > 600:
            proc.kill()
            raise SystemExit("pace-bench: the fake did not start")
        time.sleep(0.1)
    with open(port_file) as f:
        port = int(f.read())
    with open(os.path.join(work, "truth.json")) as f:
        creds = json.load(f)["credentials"]
    return proc, port, creds, log


def env_for(port, c):
    b = "http://127.0.0.1:%d" % port
    env = dict(os.environ, SOURCE_DATE_EPOCH="0", DEMO_JIRA_URL=b, DEMO_JIRA_EMAIL=c["jira_email"],
               DEMO_JIRA_TOKEN=c["jira_api_token"], DEMO_ORG_API_BASE=b + "/admin",
               DEMO_ORG_ID=c["org_id"], DEMO_ORG_KEY=c["org_api_key"],
               DEMO_SCIM_URL=b + "/scim/directory/" + c["scim_directory_id"],
               DEMO_SCIM_TOKEN=c["scim_token"])
    return env


def graph_core(path):
    """The graph without the per-instance request counts (retries change
    them, nothing else) and the fake's port."""
    with open(path) as f:
        # Each run has its own fake, on its own port (in workspace URLs).
        g = json.loads(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", f.read()))
    for inst in g.get("instances", []):
        for k in ("requests", "retries"):
            inst.get("stats", {}).pop(k, None)
    return json.dumps(g, sort_keys=True)


def http_floor(log, env):
    """The floor tool's figures for the GETs in the sync's request log,
    replayed against the same fake; None when the tool is not built."""
    if not os.path.exists(FLOOR):
        print("pace-bench: %s is not built (make bench/http_floor): no HTTP floor" % FLOOR,
              file=sys.stderr)
        return None
    out = subprocess.run([FLOOR, log], env=env, stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout.decode())


def config(work):
    """conf/demo.yaml without its store (see the docstring)."""
    path = os.path.join(work, "demo.yaml")
    with open(os.path.join(SRC, "conf/demo.yaml")) as f:
        text = re.sub(r"(?m)^store: .*$", "store: none", f.read())
    with open(path, "w") as f:
        f.write(text)
    return path


def run(work, name, extra, workers):
    proc, port, creds, log = start_fake(work, extra)
    out = os.path.join(work, re.sub(r"\W+", "_", name) + ".json")
    binary = BASELINE if "baseline" in name else os.path.join(BUILD, "connhost")
    plugins = os.path.join(BUILD, "plugins/.libs")
    if "baseline" in name and BASELINE_PLUGINS:
        plugins = BASELINE_PLUGINS
    cmd = [binary, "-c", config(work),
           "--plugin-dir", plugins, "-o", out, "--log-level", "error",
           "--quiet"]
    if workers:
        cmd += ["--workers", str(workers)]
    try:
        t0 = time.monotonic()
        # A small fresh process starts connhost and reports its rusage: a
        # child's peak RSS counts its parent's at the fork, and this one
        # has read the truth file (800 MB for the huge tenant).
        p = subprocess.Popen([sys.executable, "-c", LAUNCH] + cmd, env=env_for(port, creds),
                             stderr=subprocess.PIPE)
        status, cpu, maxrss, user, system = json.loads(
            p.communicate()[1].decode().splitlines()[-1])
        wall = time.monotonic() - t0
        # The sync's requests, before the floor replay adds its own.
        subprocess.check_call(["cp", log, log + ".sync"])
        log += ".sync"
        floor = http_floor(log, env_for(port, creds)) if "huge" in name else None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if status != 0:
        print("%s: connhost exited with %d" % (name, status), file=sys.stderr)
    reqs = []
    with open(log) as f:
        for line in f:
            try:
                reqs.append(json.loads(line))
            except ValueError:
                pass
    n = len(reqs)
    n429 = sum(1 for r in reqs if r.get("status") == 429)
    per = {}
    for r in reqs:
        k = (r["method"], route_of(r["path"]))
        per[k] = per.get(k, 0) + 1
    w = workers or 8
    latency = int(extra[extra.index("--latency-ms") + 1]) if "--latency-ms" in extra else 0
    ideal = n * latency / 1000.0 / w
    if "--burst-limit" in extra:
        limit = int(extra[extra.index("--burst-limit") + 1])
        ideal = max(ideal, max(per.values()) / limit)
    return dict(name=name, wall=wall, ideal=ideal, requests=n, n429=n429,
                cpu=cpu, user=user, sys=system, rss=maxrss / 1024.0, graph=out, floor=floor,
                busiest=max(per.items(), key=lambda kv: kv[1]))


def main():
    work = tempfile.mkdtemp(prefix="connhost-pace-bench.")
    rows = {}
    for name, extra, workers, compare in SCENARIOS:
        if ONLY and not any(o in name for o in ONLY):
            continue
        r = run(work, name, extra, workers)
        if compare and compare in rows:
            c = rows[compare]
            r["vs"] = "%.2fx %s, graph %s" % (
                r["wall"] / c["wall"], "clean" if "clean" in compare else "this binary's",
                "identical" if graph_core(r["graph"]) == graph_core(c["graph"]) else "DIFFERS")
        if "huge" in name:
            # Against the goals, as ratios (over 1.00 misses).
            r["goal"] = "CPU %.2fx, RSS %.2fx the goals (%.0f s, %.0f MB)" % (
                r["cpu"] / HUGE_CPU_GOAL, r["rss"] / HUGE_RSS_GOAL, HUGE_CPU_GOAL, HUGE_RSS_GOAL)
            f = r.get("floor")
            if f:
                r["goal"] += ("; CPU %.1f user + %.1f sys; HTTP floor %.1f s (%.1f user + %.1f sys)"
                              " for %d GETs%s: CPU %.2fx it") % (
                    r["user"], r["sys"], f["cpu_s"], f["user_s"], f["sys_s"], f["requests"],
                    ", %d failed" % f["failed"] if f["failed"] else "", r["cpu"] / f["cpu_s"])
        rows[name] = r
        print("done: %s (%.1f s)" % (name, r["wall"]), file=sys.stderr)
    print("| scenario | wall | ideal | ratio | requests | 429s | CPU | peak RSS | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows.values():
        ideal = ("%.1f s" % r["ideal"], "%.2fx" % (r["wall"] / r["ideal"])) if r["ideal"] else ("-", "-")
        print("| %s | %.1f s | %s | %s | %d | %d (%.1f%%) | %.1f s | %.0f MB | %s |" % (
            r["name"], r["wall"], ideal[0], ideal[1], r["requests"], r["n429"],
            100.0 * r["n429"] / max(1, r["requests"]), r["cpu"], r["rss"],
            "; ".join(x for x in (r.get("goal"), r.get("vs", None if "goal" in r else
                "busiest %s %s: %d" % (r["busiest"][0][0], r["busiest"][0][1],
                                       r["busiest"][1]))) if x)))
    if os.environ.get("PACE_BENCH_KEEP"):
        print("graphs kept in " + work, file=sys.stderr)
    else:
        subprocess.call(["rm", "-rf", work])


main()
