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

python3 "$src/tests/fake/atlassian-fake" --host 127.0.0.1 --port 0 \
  --port-file "$work/port" --profile "$profile" --latency-ms "$latency" \
  --truth "$work/truth.json" >"$work/fake.log" 2>&1 &
fake=$!
start=$(date +%s)
while [ ! -s "$work/port" ]; do
  kill -0 $fake 2>/dev/null || { cat "$work/fake.log"; exit 1; }
  sleep 0.2
done
echo "fake: profile $profile, ${latency} ms per request, ready in $(( $(date +%s) - start )) s"
port=$(cat "$work/port")
eval "$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["credentials"]
b = "http://127.0.0.1:" + sys.argv[2]
for k, v in (("DEMO_JIRA_URL", b), ("DEMO_JIRA_EMAIL", t["jira_email"]),
             ("DEMO_JIRA_TOKEN", t["jira_api_token"]), ("DEMO_ORG_API_BASE", b + "/admin"),
             ("DEMO_ORG_ID", t["org_id"]), ("DEMO_ORG_KEY", t["org_api_key"]),
             ("DEMO_SCIM_URL", b + "/scim/directory/" + t["scim_directory_id"]),
             ("DEMO_SCIM_TOKEN", t["scim_token"])):
    print("export %s=%s" % (k, v))
' "$work/truth.json" "$port")"

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
