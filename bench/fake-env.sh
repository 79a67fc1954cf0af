# SPDX-License-Identifier: MIT
# Sourced by the sync, store and isolation benchmarks: start the fake Atlassian Cloud with
# $profile and $latency ms per request in $work (a temp dir the caller
# removes), wait until it listens, and export the DEMO_* variables
# conf/demo.yaml reads. Sets $fake to its pid (the caller's trap stops it).
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
