#!/bin/sh
# SPDX-License-Identifier: MIT
# Isolation overhead: the `large` tenant synced with conf/demo.yaml
# (jira_cloud + atlassian_org) in-process (`isolation: none`) and with each
# plugin in a child process (`isolation: process`), RUNS times each,
# alternating. Prints wall time and CPU (user + system, the host and its
# children) per run, their medians, and whether the graphs are
# byte-identical. SCOPE `jira` drops the org instance: one instance with
# the same worker count in both modes (a child has `workers` threads of
# its own, so with two instances isolation also doubles the threads).
# Not part of `make check`.
# Usage: bench/isolation-bench.sh SRCDIR BUILDDIR [PROFILE] [LATENCY_MS]
#   [WORKERS] [RUNS] [SCOPE: all|jira]
set -eu
src=$1
build=$2
profile=${3:-large}
latency=${4:-20}
workers=${5:-16}
runs=${6:-3}
scope=${7:-all}
work=$(mktemp -d /tmp/connhost-isobench.XXXXXX)
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null; rm -rf "$work"' EXIT INT TERM

. "$src/bench/fake-env.sh"

for mode in none process; do
  if [ "$scope" = jira ]; then
    { echo "isolation: $mode"; sed '/^    org:/,$d' "$src/conf/demo.yaml"; }
  else
    { echo "isolation: $mode"; cat "$src/conf/demo.yaml"; }
  fi >"$work/$mode.yaml"
done
# wait4() counts the host and every child it reaped.
SOURCE_DATE_EPOCH=0 python3 - "$build/connhost" "$build/plugins/.libs" \
  "$work" "$workers" "$runs" <<'PY'
import os, statistics, subprocess, sys, time
connhost, plugins, work, workers, runs = sys.argv[1:4] + [sys.argv[4], int(sys.argv[5])]
res = {"none": [], "process": []}
for i in range(runs):
    for mode in ("none", "process"):
        out = os.path.join(work, "%s-%d.json" % (mode, i))
        t0 = time.monotonic()
        p = subprocess.Popen([connhost, "-c", os.path.join(work, mode + ".yaml"),
                              "--plugin-dir", plugins, "-o", out, "--workers", workers,
                              "--log-level", "warn", "-q"])
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        if status != 0:
            sys.exit("connhost failed (%s, status %d)" % (mode, status))
        cpu = ru.ru_utime + ru.ru_stime
        res[mode].append((wall, cpu))
        print("run %d %-7s wall %6.2f s  cpu %6.2f s (user %.2f, sys %.2f)  max RSS %d MB"
              % (i + 1, mode, wall, cpu, ru.ru_utime, ru.ru_stime, ru.ru_maxrss // 1024))
med = {m: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
       for m, v in res.items()}
for m in ("none", "process"):
    print("median %-7s wall %6.2f s  cpu %6.2f s" % (m, med[m][0], med[m][1]))
print("process vs none: wall %+.1f%%, cpu %+.1f%%"
      % (100 * (med["process"][0] / med["none"][0] - 1),
         100 * (med["process"][1] / med["none"][1] - 1)))
a = open(os.path.join(work, "none-0.json"), "rb").read()
b = open(os.path.join(work, "process-0.json"), "rb").read()
print("graphs none vs process: " + ("byte-identical" if a == b else "DIFFER"))
PY
