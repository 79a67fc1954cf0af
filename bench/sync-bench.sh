#!/bin/sh
# SPDX-License-Identifier: MIT
# Sync benchmark: the fake Atlassian Cloud with a `large` tenant (about
# 20,000 users, 1,000 groups, 500 projects) and a cloud-like round trip,
# synced by jira_cloud + atlassian_org with 1 worker (how a one-at-a-time
# connector walks the API) and with N workers. Prints wall time, requests,
# and what was synced. Not part of `make check`.
# Usage: bench/sync-bench.sh SRCDIR BUILDDIR [PROFILE] [LATENCY_MS] [WORKERS]
set -eu
src=$1
build=$2
profile=${3:-large}
latency=${4:-20}
workers=${5:-16}
work=$(mktemp -d /tmp/connhost-bench.XXXXXX)
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null; rm -rf "$work"' EXIT INT TERM

. "$src/bench/fake-env.sh"

for w in 1 "$workers"; do
  echo "--- connhost sync, $w worker(s)"
  t0=$(date +%s.%N)
  SOURCE_DATE_EPOCH=0 "$build/connhost" -c "$src/conf/demo.yaml" \
    --plugin-dir "$build/plugins/.libs" -o "$work/graph-$w.json" \
    --workers "$w" --log-level warn
  t1=$(date +%s.%N)
  echo "wall: $(echo "$t1 - $t0" | bc 2>/dev/null || python3 -c "print(round($t1 - $t0, 2))") s"
done
if cmp -s "$work/graph-1.json" "$work/graph-$workers.json"; then
  echo "graphs with 1 and $workers workers: byte-identical"
else
  echo "graphs with 1 and $workers workers differ (only the per-instance request counts may, when retries happened)"
fi
