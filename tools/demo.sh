#!/bin/sh
# SPDX-License-Identifier: MIT
# The main job: start the fake Atlassian Cloud (demo tenant) on 127.0.0.1,
# sync it with conf/demo.yaml through the built connhost and plugins, show
# where the graph went and a summary, then two answers from the snapshot
# store (one user's access; the diff after a demo grant), and stop the fake.
# Usage: tools/demo.sh [SRCDIR] [BUILDDIR]
set -eu
src=${1:-$(cd "$(dirname "$0")/.." && pwd)}
build=${2:-$src}
out="$build/demo-out"
mkdir -p "$out"
rm -f "$out/fake.port" "$out/connhost.db" "$out/connhost.db-wal" \
  "$out/connhost.db-shm"
# conf/demo.yaml, with its store beside this copy and writes allowed on
# Jira (for the demo grant at the end).
cfg="$out/demo.yaml"
sed -e 's/^      plugin: jira_cloud$/&\n      provisioning: true/' \
  -e 's/^store: .*/store: connhost.db/' "$src/conf/demo.yaml" >"$cfg"

python3 "$src/tests/fake/atlassian-fake" --host 127.0.0.1 --port 0 \
  --port-file "$out/fake.port" --profile demo --truth "$out/fake-truth.json" \
  >"$out/fake.log" 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null || true' EXIT INT TERM

i=0
while [ ! -s "$out/fake.port" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 $fake 2>/dev/null; then
    echo "demo: the fake Atlassian Cloud did not start; its log:" >&2
    cat "$out/fake.log" >&2
    exit 1
  fi
  sleep 0.1
done
port=$(cat "$out/fake.port")

# The demo config takes its endpoints and credentials from the environment,
# as a production config would take secrets (${env:...}).
eval "$(python3 - "$out/fake-truth.json" "$port" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["credentials"]
base = "http://127.0.0.1:" + sys.argv[2]
env = {
    "DEMO_JIRA_URL": base,
    "DEMO_JIRA_EMAIL": t["jira_email"],
    "DEMO_JIRA_TOKEN": t["jira_api_token"],
    "DEMO_ORG_API_BASE": base + "/admin",
    "DEMO_ORG_ID": t["org_id"],
    "DEMO_ORG_KEY": t["org_api_key"],
    "DEMO_SCIM_URL": base + "/scim/directory/" + t["scim_directory_id"],
    "DEMO_SCIM_TOKEN": t["scim_token"],
}
for k, v in env.items():
    print("export %s='%s'" % (k, v.replace("'", "'\\''")))
PY
)"

echo "demo: fake Atlassian Cloud (demo tenant) on 127.0.0.1:$port"
ch() { "$build/connhost" --plugin-dir "$build/plugins/.libs" "$@"; }
ch -c "$cfg" -o "$out/graph.json"

# A few accounts joined across Jira and the organization, with the email
# the organization knows (Jira hides it for some).
python3 - "$out/graph.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
joined = [i for i in g["identities"] if len({r.split("/")[1] for r in i["resources"]}) > 1]
hidden = {r["key"] for r in g["resources"] if r["instance"] == "jira" and r["type"] == "user" and not r.get("emails")}
print("identities joined across Jira and the organization: %d" % len(joined))
shown = 0
for i in joined:
    if any(k in hidden for k in i["resources"]) and i.get("emails"):
        print("  %-28s %-34s (Jira hides this email)" % (i.get("display_name", "")[:28], i["emails"][0]))
        shown += 1
    if shown == 5:
        break
PY

# Answers from the store: what one user holds across Jira and the org
# (direct, or through which group), then a grant and what it changed.
eval "$(python3 - "$out/fake-truth.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
j = t["jira"]
roles = {g for p in j["projects"] for r in p["roles"] for g in r["groups"]}
synced = {g["id"] for g in t["org"]["groups"] if g["external_synced"]}
u = next(u for u in j["users"][11:] if u["accountType"] == "atlassian"
         and u["active"] and u["emailAddress"])
g = next(g for g in j["groups"] if g["groupId"] in roles and not g["site_local"]
         and g["groupId"] not in synced and u["accountId"] not in j["group_members"][g["groupId"]])
print("who='%s' aid='%s' gid='%s' gname='%s'" % (u["emailAddress"], u["accountId"],
      g["groupId"], g["name"].replace("'", "")))
PY
)"
echo
echo "demo: connhost access $who  (from the store, no API call)"
"$build/connhost" access "$who" --db "$out/connhost.db" --format table
echo
echo "demo: connhost grant: $who joins '$gname', then sync and connhost diff"
ch -c "$cfg" grant --entitlement "demo/jira/group/$gid#member" \
  --principal "demo/jira/user/$aid"
ch -c "$cfg" -q -o "$out/graph.json" || true
"$build/connhost" diff --db "$out/connhost.db" --format table
