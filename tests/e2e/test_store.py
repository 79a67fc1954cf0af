# SPDX-License-Identifier: MIT
"""End-to-end tests of the snapshot store and the read commands: the built
connhost binary, the real jira_cloud.so and atlassian_org.so, the fake
Atlassian Cloud on loopback, a real SQLite file.

Every answer is checked against a model computed from the fake's truth
file (never against connhost's own graph): access and who-has for sampled
users, groups, project roles, projects and workspace roles, direct and
inherited; diff after a real grant and revoke through connhost is exactly
the difference between the fake's state before and after; a failed
instance answers from its last good data, marked stale (identities' emails
included); a version-1 and a version-4 store migrate; a corrupt or locked
store gives a clear error and the graph is still written.

The same tests run against both backends: StoreTest on an SQLite file,
PgStoreTest on a throwaway PostgreSQL cluster (tests/e2e/pgcluster.py; a
fresh database per test). The PostgreSQL classes fail when the cluster
cannot start, unless CONNHOST_TEST_NO_PG=1 says to skip them.
"""
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import pgcluster  # noqa: E402

TENANT = "demo"
FIXTURES = os.path.join(lib.SRCDIR, "tests", "fixtures", "store")


enc = lib.key_encode


def rkey(inst, rtype, rid):
    return "/".join([TENANT, inst, rtype, enc(rid)])


def ekey(inst, rtype, rid, slug):
    return rkey(inst, rtype, rid) + "#" + enc(slug)



def _schema_version():
    """The version this connhost writes (host/store.h): a migrated store ends there."""
    with open(os.path.join(lib.SRCDIR, "host", "store.h"), encoding="utf-8") as f:
        m = re.search(r"#define STORE_SCHEMA_VERSION (\d+)", f.read())
    return int(m.group(1))


SCHEMA_VERSION = _schema_version()

class Model:
    """Every grant the tenant holds, from the truth file: a dict
    (entitlement key, principal key) -> direct, and for inherited grants
    the group entitlements they may come through."""

    def __init__(self, truth):
        self.grants = {}
        self.via = {}
        self.names = {}
        self.jira(truth["jira"])
        self.org(truth["org"])

    def add(self, ent, principal, direct, via=None):
        # a direct grant wins over an inherited one (and may name its
        # groups too: it is also inherited)
        self.grants[(ent, principal)] = direct or self.grants.get((ent, principal), False)
        if via:
            self.via.setdefault((ent, principal), set()).add(via)

    def jira(self, j):
        users = {u["accountId"] for u in j["users"]}
        for u in j["users"]:
            self.names[rkey("jira", "user", u["accountId"])] = u["displayName"]
        members = {g: [a for a in ms if a in users] for g, ms in j["group_members"].items()}
        for gid, ms in members.items():
            for a in ms:
                self.add(ekey("jira", "group", gid, "member"), rkey("jira", "user", a), True)
        for p in j["projects"]:
            if p["lead"] in users:
                self.add(ekey("jira", "project", p["id"], "lead"), rkey("jira", "user", p["lead"]), True)
            part = ekey("jira", "project", p["id"], "participate")
            for r in p["roles"]:
                role = ekey("jira", "project_role", "%s:%s" % (p["id"], r["id"]), "assigned")
                for a in r["users"]:
                    if a in users:
                        self.add(role, rkey("jira", "user", a), True)
                        self.add(part, rkey("jira", "user", a), True)
                for gid in r["groups"]:
                    self.add(role, rkey("jira", "group", gid), True)
                    self.add(part, rkey("jira", "group", gid), True)
            for p2 in [p]:
                for r in p2["roles"]:
                    role = ekey("jira", "project_role", "%s:%s" % (p["id"], r["id"]), "assigned")
                    for gid in r["groups"]:
                        via = ekey("jira", "group", gid, "member")
                        for a in members.get(gid, ()):
                            self.add(role, rkey("jira", "user", a), False, via)
                            self.add(part, rkey("jira", "user", a), False, via)

    def org(self, o):
        accounts = {a["account_id"] for a in o["accounts"]}
        groups = {g["id"]: [m for m in g["members"] if m in accounts] for g in o["groups"]}
        for gid, ms in groups.items():
            for a in ms:
                self.add(ekey("org", "group", gid, "member"), rkey("org", "user", a), True)
        role_ents = []
        for ra in o["role_assignments"]:
            if ra["resource_id"] == o["platform_resource_id"]:
                ent = ekey("org", "organization", o["org_id"], "role:" + ra["role"])
            else:
                ent = ekey("org", "workspace", ra["resource_id"], "role:" + ra["role"])
            if ra["principal_type"] == "user":
                self.add(ent, rkey("org", "user", ra["principal_id"]), True)
            else:
                self.add(ent, rkey("org", "group", ra["principal_id"]), True)
                role_ents.append((ent, ra["principal_id"]))
        for ent, gid in role_ents:  # after every direct one
            for m in groups.get(gid, ()):
                self.add(ent, rkey("org", "user", m), False, ekey("org", "group", gid, "member"))

    def holders(self, ent):
        return {(p, d) for (e, p), d in self.grants.items() if e == ent}

    def held_by(self, principals):
        return {(e, p, d) for (e, p), d in self.grants.items() if p in principals}


class StoreTest(lib.TempDirTest):
    """The store tests on SQLite; the hooks below are what PgStoreTest
    changes (where the store is, and SQL on it)."""
    maxDiff = 6000
    profile = "demo"
    fake_extra = ()
    default_store = True  # configs leave store: out (connhost.db beside them)

    # ---- the backend -----------------------------------------------------
    def setUp(self):
        super().setUp()
        self.db = self.path("connhost.db")  # what --db and store: name

    def store_line(self):
        """The config's `store:` line for this test's store."""
        return "store: %s\n" % lib.yaml_quote(self.db)

    def scalar(self, sql):
        """The first column of the first row of `sql` on the store."""
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()

    def execute(self, sql):
        """Run `sql` (no result) on the store."""
        con = sqlite3.connect(self.db)
        try:
            con.executescript(sql)
        finally:
            con.close()

    def drop_table(self, name):
        self.execute("DROP TABLE %s" % name)

    def store_exists(self):
        return os.path.exists(self.db)

    def drop_store(self):
        os.unlink(self.db)

    def load_fixture(self, name):
        """The SQLite dump tests/fixtures/store/NAME as this test's store."""
        con = sqlite3.connect(self.db)
        with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
            con.executescript(f.read())
        con.close()

    # ---- helpers -------------------------------------------------------
    def start_fake(self):
        d = self.path("fake")
        os.makedirs(d, exist_ok=True)
        fake = lib.Fake(d, profile=self.profile, extra=list(self.fake_extra))
        self.addCleanup(fake.stop)
        return fake

    def secret(self, name, value):
        path = self.path("secret-" + name)
        with open(path, "w") as f:
            f.write(value)
        return "${file:%s}" % path

    def config(self, fake, provisioning=False, org_token=None, extra="",
               name="connhost.yaml", jira_token=None, more_insts=None):
        c = fake.creds
        insts = {
            "jira": {"plugin": "jira_cloud", "provisioning": provisioning,
                     "options": {"url": fake.base, "email": c["jira_email"],
                                 "api_token": self.secret("jira", jira_token or c["jira_api_token"]),
                                 "gateway_url": fake.base}},
            "org": {"plugin": "atlassian_org", "provisioning": provisioning,
                    "options": {"org_id": c["org_id"],
                                "api_token": self.secret("org", org_token or c["org_api_key"]),
                                "api_base": fake.base + "/admin"}},
        }
        insts.update(more_insts or {})
        if "store:" not in extra and not self.default_store:
            extra = self.store_line() + extra
        return lib.write_config(self.path(name), {TENANT: insts},
                                plugin_dir=lib.PLUGINS, extra=extra)

    def sync(self, cfg, rc=0, args=()):
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")] + list(args))
        self.assertEqual(r.rc, rc, r)
        return r

    def read(self, *args, db=None, rc=0, fmt="json"):
        a = list(args) + ["--db", db or self.db]
        if fmt:
            a += ["--format", fmt]
        r = lib.run(a)
        self.assertEqual(r.rc, rc, r)
        if fmt == "json" and rc in (0, 1) and r.out:
            return json.loads(r.out)
        return r

    def truth_now(self, fake):
        with urllib.request.urlopen(fake.base + "/_fake/truth", timeout=30) as f:
            return json.load(f)

    def sample_users(self, truth, n=12):
        """Users of every kind: the forced special cases (1-10) and some
        ordinary ones, with their Jira and org keys."""
        users = truth["jira"]["users"]
        picked = users[1:11] + users[11::max(1, len(users) // n)][:n]
        return picked

    def accounts_of(self, truth, account_id):
        keys = {rkey("jira", "user", account_id)}
        if any(a["account_id"] == account_id for a in truth["org"]["accounts"]):
            keys.add(rkey("org", "user", account_id))
        return keys

    def hidden_email_users(self, truth):
        """Jira users whose email Jira hides and the org shows: account id -> email."""
        emails = {a["account_id"]: a["email"] for a in truth["org"]["accounts"]}
        return {u["accountId"]: emails[u["accountId"]] for u in truth["jira"]["users"]
                if u["accountType"] == "atlassian" and not u["emailAddress"]
                and u["accountId"] in emails}

    def member_ent(self, truth, name):
        return ekey("jira", "group", next(g["groupId"] for g in truth["jira"]["groups"]
                                          if g["name"] == name), "member")

    def identity_emails(self, ent, *run):
        """who-has ENT [--run RUN]: principal -> identity_emails."""
        doc = self.read("who-has", ent, *(("--run", str(run[0])) if run else ()))
        got = {x["principal"]: x["identity_emails"] for x in doc["holders"]}
        self.assertTrue(got)
        return got

    def check_hidden_emails(self, truth, ent, want_org, *run):
        """Each holder of ENT whose email Jira hides has the org's email as
        its identity's (want_org) or none (the org not synced then)."""
        got = self.identity_emails(ent, *run)
        hidden = {rkey("jira", "user", a): e for a, e in self.hidden_email_users(truth).items()
                  if rkey("jira", "user", a) in got}
        self.assertTrue(hidden, "the group has members whose email Jira hides")
        for p, e in sorted(hidden.items()):
            self.assertEqual(got[p], [e] if want_org else [], (p, run))
        return got

    def triples(self, rows):
        return {(x["entitlement"], x["principal"], x["direct"]) for x in rows}

    def check_via(self, model, rows):
        """Inherited grants name every group they come through; a direct
        grant names them too when it is also inherited."""
        for x in rows:
            want = model.via.get((x["entitlement"], x["principal"]), set())
            if not x["direct"]:
                self.assertTrue(x["via"], x)
            self.assertEqual(set(x["via"]), want, x)

    # ---- tests -----------------------------------------------------------
    def check_parent(self, truth, x):
        """A project role names its project (key and name, as the fake's
        truth has them); a resource without a parent names none."""
        if x["resource_type"] == "project_role":
            pid = x["resource"].rsplit("/", 1)[1].split(":")[0]
            project = [p for p in truth["jira"]["projects"] if p["id"] == pid]
            self.assertEqual(len(project), 1, x)
            self.assertEqual((x["resource_parent"], x["resource_parent_name"]),
                             (rkey("jira", "project", pid), project[0]["name"]), x)
        elif x["resource_type"] in ("group", "project"):
            self.assertEqual((x["resource_parent"], x["resource_parent_name"]),
                             (None, None), x)

    def test_answers_match_truth(self):
        fake = self.start_fake()
        cfg = self.config(fake)
        self.sync(cfg)
        truth = fake.truth
        model = Model(truth)
        self.assertTrue(self.store_exists(), "the store sits beside the config")

        runs = self.read("runs")
        self.assertEqual({(x["run"], x["instance"], x["status"]) for x in runs["runs"]},
                         {(1, "jira", "ok"), (1, "org", "ok")})

        # access: by email, by account id and by resource key; both accounts
        emails = {a["account_id"]: a["email"] for a in truth["org"]["accounts"]}
        for i, u in enumerate(self.sample_users(truth)):
            aid = u["accountId"]
            who = [aid, rkey("jira", "user", aid), emails.get(aid) or u["emailAddress"]][i % 3]
            if not who:
                who = aid
            doc = self.read("access", who)
            accounts = self.accounts_of(truth, aid)
            self.assertEqual({x["resource"] for x in doc["accounts"]}, accounts, who)
            self.assertEqual(self.triples(doc["access"]), model.held_by(accounts), who)
            self.check_via(model, doc["access"])
            for x in doc["access"]:
                self.assertFalse(x["stale"])
                if x["principal"].startswith(TENANT + "/jira/"):
                    self.assertEqual(x["principal_name"], u["displayName"])
                self.check_parent(truth, x)

        # who-has: groups, project roles, projects, workspace and org roles
        ents = sorted({e for e, _ in model.grants})
        kinds = {}
        for e in ents:
            kinds.setdefault(e.split("/")[1] + "/" + e.split("/")[2] + "#" + e.split("#")[1], []).append(e)
        sampled = []
        for k in sorted(kinds):
            sampled += kinds[k][:: max(1, len(kinds[k]) // 3)][:3]
        self.assertTrue(any("#participate" in e for e in sampled))
        self.assertTrue(any("/workspace/" in e for e in sampled))
        for e in sampled:
            doc = self.read("who-has", e)
            self.assertEqual({(x["principal"], x["direct"]) for x in doc["holders"]},
                             model.holders(e), e)
            self.check_via(model, doc["holders"])
        # a resource key: all its entitlements
        g0 = truth["jira"]["groups"][0]["groupId"]
        doc = self.read("who-has", rkey("jira", "group", g0))
        self.assertEqual({(x["entitlement"], x["principal"], x["direct"]) for x in doc["holders"]},
                         {(e, p, d) for (e, p), d in model.grants.items()
                          if e.startswith(rkey("jira", "group", g0) + "#")})
        # a resource whose entitlements differ (a workspace's roles): each
        # holder says which, in JSON and first in a table
        ws = sorted({e.split("#")[0] for e, _ in model.grants if "/workspace/" in e},
                    key=lambda w: -len({e for e, _ in model.grants
                                        if e.startswith(w + "#")}))[0]
        doc = self.read("who-has", ws)
        slugs = {urllib.parse.unquote(x["entitlement"].split("#")[1]) for x in doc["holders"]}
        self.assertGreater(len(slugs), 1, ws)
        for x in doc["holders"]:
            self.assertEqual(x["slug"], urllib.parse.unquote(x["entitlement"].split("#")[1]))
        lines = self.read("who-has", ws, fmt="table").out.splitlines()
        self.assertEqual(lines[0].split()[0], "slug")
        self.assertEqual({ln.split()[0] for ln in lines[1:] if ln.strip()}, slugs)
        # a resource with no entitlements (a user) is held by nobody; a key
        # the store never had is an error
        u0 = truth["jira"]["users"][0]["accountId"]
        self.assertEqual(self.read("who-has", rkey("jira", "user", u0))["holders"], [])
        r = self.read("who-has", rkey("jira", "user", "nobody-at-all"), rc=1, fmt=None)
        self.assertIn("no entitlement or resource", r.err)
        # joined identities carry the org's email even where Jira hides it
        hidden = [u for u in truth["jira"]["users"]
                  if u["accountType"] == "atlassian" and not u["emailAddress"]
                  and u["accountId"] in emails]
        self.assertTrue(hidden)
        doc = self.read("who-has", ekey("jira", "group",
                                        [g["groupId"] for g in truth["jira"]["groups"]
                                         if g["name"] == "jira-software-users"][0], "member"))
        by_p = {x["principal"]: x for x in doc["holders"]}
        for u in hidden[:5]:
            x = by_p[rkey("jira", "user", u["accountId"])]
            self.assertEqual(x["principal_emails"], [])
            self.assertEqual(x["identity_emails"], [emails[u["accountId"]]])

        # explain: each inherited path names a group the user is in
        x = next(x for x in doc["holders"] if x["direct"])
        for (e, p), d in sorted(model.grants.items()):
            if not d and p.startswith(TENANT + "/jira/user/"):
                break
        paths = self.read("explain", p, e)["paths"]
        self.assertEqual({y["through"] for y in paths}, model.via[(e, p)])
        self.assertTrue(all(y["kind"] == "inherited" for y in paths))

        # stats agree with the model
        st = self.read("stats")
        tot = {(x["instance"]): (x["direct_grants"], x["derived_grants"]) for x in st["instances"]}
        for inst in ("jira", "org"):
            d = sum(1 for (e, _), v in model.grants.items() if e.split("/")[1] == inst and v)
            n = sum(1 for (e, _), v in model.grants.items() if e.split("/")[1] == inst and not v)
            self.assertEqual(tot[inst], (d, n), inst)
        # the per-slug section covers every entitlement, held or not
        for inst in st["instances"]:
            rows = [x for x in st["entitlements"] if x["instance"] == inst["instance"]]
            self.assertEqual(sum(x["entitlements"] for x in rows), inst["entitlements"], inst)
            self.assertEqual((sum(x["direct_grants"] for x in rows),
                              sum(x["derived_grants"] for x in rows)),
                             tot[inst["instance"]], inst)
        top = st["top_entitlements"][0]
        self.assertEqual(top["holders"], max(len(model.holders(e)) for e in ents))

        # report: disabled accounts that hold grants; customers and apps
        rep = self.read("report")
        inactive = {rkey("jira", "user", u["accountId"]) for u in truth["jira"]["users"]
                    if not u["active"]}
        holding = {p for (_, p) in model.grants}
        got = {x["principal"] for x in rep["inactive_with_grants"]
               if x["principal"].startswith(TENANT + "/jira/")}
        self.assertEqual(got, inactive & holding)
        nonhuman = {rkey("jira", "user", u["accountId"]) for u in truth["jira"]["users"]
                    if u["accountType"] in ("app", "customer")}
        self.assertEqual({x["principal"] for x in rep["nonhuman_with_grants"]},
                         nonhuman & holding)
        in_org = {a["account_id"] for a in truth["org"]["accounts"]}
        unmanaged = {rkey("jira", "user", u["accountId"]) for u in truth["jira"]["users"]
                     if u["accountType"] == "atlassian" and u["accountId"] not in in_org}
        self.assertEqual({x["principal"] for x in rep["jira_without_org_account"]}, unmanaged)

        # export: CSV, one row per identity x entitlement, names as written
        r = self.read("export", "access-review", fmt=None)
        rows = list(csv.DictReader(io.StringIO(r.out, newline="")))
        users = {p for (_, p) in model.grants if "/user/" in p}
        self.assertEqual({(x["entitlement"], x["principal"]) for x in rows},
                         {(e, p) for (e, p) in model.grants if p in users})
        names = {x["principal"]: x["principal_name"] for x in rows}
        roles = [x for x in rows if x["resource_type"] == "project_role"]
        self.assertTrue(roles)
        for x in roles + [x for x in rows if x["resource_type"] == "group"][:50]:
            self.check_parent(truth, {k: v or None for k, v in x.items()})
        for u in truth["jira"]["users"]:
            k = rkey("jira", "user", u["accountId"])
            if k in names:
                want = u["displayName"]
                if want[:1] in ("=", "+", "-", "@"):
                    want = "'" + want
                self.assertEqual(names[k], want)

        # table output on request; resources filter
        r = self.read("resources", "--type", "project", fmt="table")
        self.assertEqual(len(r.out.strip().splitlines()) - 1, len(truth["jira"]["projects"]))
        doc = self.read("grants", "--entitlement", sampled[0])
        self.assertEqual({(x["principal"], x["direct"]) for x in doc["grants"]},
                         model.holders(sampled[0]))

    def test_history_and_diff_after_grant_and_revoke(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        self.sync(cfg)
        before = self.truth_now(fake)
        # the same data again: no new rows, an empty diff
        self.sync(cfg)
        n1 = self.scalar("SELECT count(*) FROM grants")
        self.assertEqual(n1, len(Model(before).grants))
        doc = self.read("diff", "--exit-code")
        self.assertEqual(doc["from"], 1)
        for k in ("resources", "direct_grants", "derived_grants", "status_changes",
                  "identity_changes"):
            self.assertEqual(doc[k], [], k)

        # grant a group that holds project roles; revoke another membership
        j = before["jira"]
        users = {u["accountId"]: u for u in j["users"]}
        role_groups = {g for p in j["projects"] for r in p["roles"] for g in r["groups"]}
        regular = [g for g in j["groups"] if not g["site_local"]
                   and g["name"] not in ("jira-software-users", "jira-admins", "site-admins",
                                         "confluence-users")]
        synced = {g["id"] for g in before["org"]["groups"] if g["external_synced"]}
        gadd = next(g["groupId"] for g in regular if g["groupId"] in role_groups
                    and g["groupId"] not in synced and j["group_members"][g["groupId"]])
        who = next(a for a, u in users.items() if u["accountType"] == "atlassian" and u["active"]
                   and a not in j["group_members"][gadd])
        grev = next(g["groupId"] for g in regular if g["groupId"] not in synced
                    and g["groupId"] != gadd and j["group_members"][g["groupId"]])
        gone = j["group_members"][grev][0]
        r = lib.run(["-c", cfg, "grant", "--entitlement", ekey("jira", "group", gadd, "member"),
                     "--principal", rkey("jira", "user", who)])
        self.assertEqual(r.rc, 0, r)
        r = lib.run(["-c", cfg, "revoke", "--entitlement", ekey("jira", "group", grev, "member"),
                     "--principal", rkey("jira", "user", gone)])
        self.assertEqual(r.rc, 0, r)
        after = self.truth_now(fake)
        self.sync(cfg)

        mb, ma = Model(before), Model(after)
        new_rows = 0
        doc = self.read("diff", "--exit-code", rc=1)
        self.assertEqual((doc["from"], doc["run"]), (2, 3))
        for direct, field in ((True, "direct_grants"), (False, "derived_grants")):
            want = {("added", e, p) for (e, p), d in ma.grants.items()
                    if d == direct and (e, p) not in mb.grants}
            want |= {("removed", e, p) for (e, p), d in mb.grants.items()
                     if d == direct and (e, p) not in ma.grants}
            # still held, but through other groups (or now also directly)
            want |= {("changed", e, p) for (e, p), d in ma.grants.items()
                     if d == direct and (e, p) in mb.grants
                     and (mb.grants[(e, p)] != d or mb.via.get((e, p)) != ma.via.get((e, p)))}
            got = {(x["change"], x["entitlement"], x["principal"]) for x in doc[field]}
            self.assertEqual(got, want, field)
            new_rows += sum(1 for c, _, _ in want if c != "removed")
        self.assertIn(("added", ekey("jira", "group", gadd, "member"), rkey("jira", "user", who)),
                      {(x["change"], x["entitlement"], x["principal"]) for x in doc["direct_grants"]})
        self.assertTrue(doc["derived_grants"], "the granted group holds roles")
        self.assertEqual(doc["resources"], [])
        self.assertEqual(doc["status_changes"], [])
        # an explicit range, and the old run still answers as it was
        doc = self.read("diff", "--from", "1", "--to", "2", "--exit-code")
        self.assertEqual(doc["direct_grants"], [])
        old = self.read("access", rkey("jira", "user", who), "--run", "1")
        self.assertEqual(self.triples(old["access"]),
                         mb.held_by(self.accounts_of(before, who)))
        new = self.read("access", rkey("jira", "user", who))
        self.assertEqual(self.triples(new["access"]),
                         ma.held_by(self.accounts_of(after, who)))
        # history is cheap: three runs, one small change, few extra rows
        n3 = self.scalar("SELECT count(*) FROM grants")
        self.assertEqual(n3, n1 + new_rows, "only what changed is written again")

        # both changes undone: run 4 holds what run 2 held, in new rows, and
        # a diff across the round trip shows nothing (a weekly
        # `diff --from LASTWEEK --exit-code` must not alert on it)
        for cmd, ent, who_ in (("revoke", ekey("jira", "group", gadd, "member"), rkey("jira", "user", who)),
                               ("grant", ekey("jira", "group", grev, "member"), rkey("jira", "user", gone))):
            r = lib.run(["-c", cfg, cmd, "--entitlement", ent, "--principal", who_])
            self.assertEqual(r.rc, 0, r)
        self.sync(cfg)
        self.assertGreater(self.scalar("SELECT count(*) FROM grants"), n3)
        self.assertTrue(self.read("diff", "--exit-code", rc=1)["direct_grants"])
        doc = self.read("diff", "--from", "2", "--to", "4", "--exit-code")
        for k in ("resources", "direct_grants", "derived_grants", "status_changes",
                  "identity_changes"):
            self.assertEqual(doc[k], [], k)

    def test_failed_instance_answers_stale(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        self.sync(cfg)
        truth1 = self.truth_now(fake)
        j = truth1["jira"]
        synced = {g["id"] for g in truth1["org"]["groups"] if g["external_synced"]}
        g = next(g["groupId"] for g in j["groups"] if not g["site_local"]
                 and g["groupId"] not in synced and j["group_members"][g["groupId"]]
                 and g["name"] not in ("jira-software-users",))
        who = next(u["accountId"] for u in j["users"] if u["accountType"] == "atlassian"
                   and u["active"] and u["accountId"] not in j["group_members"][g])
        r = lib.run(["-c", cfg, "grant", "--entitlement", ekey("jira", "group", g, "member"),
                     "--principal", rkey("jira", "user", who)])
        self.assertEqual(r.rc, 0, r)
        truth2 = self.truth_now(fake)
        # the org's key is now wrong: that instance fails, Jira goes on
        bad = self.config(fake, org_token="wrong-key-wrong-key", name="bad.yaml",
                          extra=self.store_line())
        self.sync(bad, rc=3)
        runs = self.read("runs")
        last = {x["instance"]: x for x in runs["runs"] if x["run"] == 2}
        self.assertEqual(last["org"]["status"], "failed")
        self.assertTrue(last["org"]["error"])
        self.assertEqual(last["org"]["data_run"], 1)
        self.assertEqual(last["jira"]["status"], "ok")

        doc = self.read("access", rkey("jira", "user", who))
        stale = doc["stale"]
        self.assertEqual([(x["instance"], x["status"], x["data_run"]) for x in stale],
                         [("org", "failed", 1)])
        self.assertIsInstance(stale[0]["age_seconds"], int)
        self.assertGreaterEqual(stale[0]["age_seconds"], 0)
        self.assertTrue(stale[0]["error"])
        accounts = self.accounts_of(truth1, who)
        m1, m2 = Model(truth1), Model(truth2)
        want = {t for t in m2.held_by(accounts) if "/jira/" in t[0]} | \
               {t for t in m1.held_by(accounts) if "/org/" in t[0]}
        self.assertEqual(self.triples(doc["access"]), want)
        for x in doc["access"]:
            self.assertEqual(x["stale"], x["principal"].startswith(TENANT + "/org/"), x)
        r = self.read("access", rkey("jira", "user", who), fmt="table")
        self.assertIn("demo/org", r.err)
        self.assertIn("stale", r.err)
        # identities' emails: the failed org's last good data still counts,
        # in the values saved with the run and in those gathered for it
        self.assertEqual(self.scalar("SELECT count(*) FROM identities"
                                     " WHERE emails_run IS NULL"), 0)
        ent = self.member_ent(truth1, "jira-software-users")
        now = self.check_hidden_emails(truth1, ent, True)
        self.assertEqual(self.identity_emails(ent, 1), now)
        self.assertEqual(self.identity_emails(ent, 2), now)

    def test_old_schema_migrates(self):
        fixture = os.path.join(FIXTURES, "v1-tiny.sql")
        db = self.path("old.db")
        con = sqlite3.connect(db)
        with open(fixture, encoding="utf-8") as f:
            con.executescript(f.read())
        con.close()
        con = sqlite3.connect(db)
        self.assertEqual(con.execute("SELECT value FROM meta WHERE key='schema_version'")
                         .fetchone()[0], "1")
        con.close()
        # the fixture is a v1 store of the tiny tenant, seed 1: its truth
        fake = lib.Fake(self.path(), profile="tiny")
        self.addCleanup(fake.stop)
        model = Model(fake.truth)
        u = fake.truth["jira"]["users"][5]
        doc = self.read("access", u["accountId"], db=db)
        self.assertEqual(self.triples(doc["access"]),
                         model.held_by(self.accounts_of(fake.truth, u["accountId"])))
        con = sqlite3.connect(db)
        self.assertEqual(con.execute("SELECT value FROM meta WHERE key='schema_version'")
                         .fetchone()[0], str(SCHEMA_VERSION))
        # step 3: the tickets table (docs/store.md), empty
        self.assertEqual([c[1] for c in con.execute("PRAGMA table_info(tickets)")],
                         ["tenant", "ticket_instance", "ticket_key", "change_kind",
                          "change_instance", "entitlement", "principal", "requested_by",
                          "requested_at", "status", "status_category", "status_at",
                          "confirmation", "checked_run", "checked_at"])
        self.assertEqual(con.execute("SELECT count(*) FROM tickets").fetchone()[0], 0)
        # v4: runs name the serve replica that recorded them (none here)
        self.assertEqual(con.execute("SELECT count(*) FROM runs WHERE replica IS NOT NULL")
                         .fetchone()[0], 0)
        self.assertEqual(con.execute("SELECT count(*) FROM run_instances WHERE data_at IS NULL")
                         .fetchone()[0], 0)
        con.close()
        # and a new run goes on top of the migrated store
        cfg = lib.write_config(self.path("c.yaml"), {TENANT: {
            "jira": {"plugin": "jira_cloud", "options": {
                "url": fake.base, "email": fake.creds["jira_email"],
                "api_token": self.secret("jira", fake.creds["jira_api_token"]),
                "gateway_url": fake.base}}}},
            plugin_dir=lib.PLUGINS, extra="store: %s" % lib.yaml_quote(db))
        self.sync(cfg)
        doc = self.read("diff", db=db)
        self.assertEqual((doc["from"], doc["run"]), (1, 2))
        self.assertEqual(doc["direct_grants"], [])
        self.assertEqual(doc["resources"], [])
        # the org instance, not in this config, answers from run 1, stale
        self.assertEqual([(x["instance"], x["status"], x["data_run"]) for x in doc["stale"]],
                         [("org", "not_synced", 1)])

    def only_jira_config(self, fake, name):
        return lib.write_config(self.path(name), {TENANT: {
            "jira": {"plugin": "jira_cloud", "options": {
                "url": fake.base, "email": fake.creds["jira_email"],
                "api_token": self.secret("jira", fake.creds["jira_api_token"]),
                "gateway_url": fake.base}}}},
            plugin_dir=lib.PLUGINS, extra=self.store_line())

    def test_identity_emails_per_run(self):
        """An identity's emails are saved with each run that changes them;
        an older run answers with its own (Jira alone: none for the users
        whose email Jira hides), a newer one with the org's, also when the
        org fails later and answers stale."""
        fake = self.start_fake()
        truth = fake.truth
        self.sync(self.only_jira_config(fake, "jira.yaml"))
        self.sync(self.config(fake, extra=self.store_line()))
        ent = self.member_ent(truth, "jira-software-users")
        self.check_hidden_emails(truth, ent, False, 1)
        self.check_hidden_emails(truth, ent, True, 2)
        # run 2 saved the joined identities' new emails; run 1 kept its own
        self.assertGreaterEqual(self.scalar("SELECT count(*) FROM identities"
                                            " WHERE emails_run = 2"),
                                len(self.hidden_email_users(truth)))
        bad = self.config(fake, org_token="wrong-key-wrong-key", name="bad.yaml",
                          extra=self.store_line())
        self.sync(bad, rc=3)
        self.check_hidden_emails(truth, ent, True, 3)
        self.check_hidden_emails(truth, ent, True)
        self.check_hidden_emails(truth, ent, False, 1)
        # export access-review answers the same as who-has
        rows = self.read("export", "access-review", "--run", "1",
                         fmt="json")["access_review"]
        hidden = {rkey("jira", "user", a) for a in self.hidden_email_users(truth)}
        self.assertTrue(any(x["principal"] in hidden for x in rows))
        for x in rows:
            if x["principal"] in hidden:
                self.assertEqual(x["identity_emails"], [], x)

    def test_schema4_store_migrates(self):
        """A version-4 store (two runs, the org failed in the second)
        migrates: its runs answer as they did (their emails gathered), and
        the next run saves every identity's emails."""
        self.load_fixture("v4-tiny.sql")
        self.assertEqual(int(self.scalar("SELECT value FROM meta WHERE key='schema_version'")), 4)
        fake = lib.Fake(self.path(), profile="tiny")
        self.addCleanup(fake.stop)
        truth = fake.truth
        ent = self.member_ent(truth, "jira-software-users")
        before = self.check_hidden_emails(truth, ent, True)
        self.assertEqual(int(self.scalar("SELECT value FROM meta WHERE key='schema_version'")),
                         SCHEMA_VERSION)
        # v6: the stable views, rebuilt, name a project role's project
        self.assertEqual(self.scalar("SELECT count(*) FROM access WHERE resource_type ="
                                     " 'project_role' AND (resource_parent_name IS NULL"
                                     " OR resource_parent NOT LIKE '%/jira/project/%')"), 0)
        self.assertGreater(self.scalar("SELECT count(*) FROM access WHERE"
                                       " resource_parent_name IS NOT NULL"), 0)
        # v5: no emails saved by the migration itself
        self.assertEqual(self.scalar("SELECT count(*) FROM identities"
                                     " WHERE emails IS NOT NULL OR emails_run IS NOT NULL"), 0)
        doc = self.read("runs")
        self.assertEqual({(x["run"], x["instance"], x["status"]) for x in doc["runs"]},
                         {(1, "jira", "ok"), (1, "org", "ok"), (2, "jira", "ok"),
                          (2, "org", "failed")})
        self.sync(self.config(fake, extra=self.store_line()))
        self.assertEqual(self.scalar("SELECT count(*) FROM identities WHERE emails_run IS NULL"), 0)
        self.assertEqual(self.check_hidden_emails(truth, ent, True), before)
        self.assertEqual(self.check_hidden_emails(truth, ent, True, 2), before)
        doc = self.read("diff")
        self.assertEqual((doc["from"], doc["run"]), (2, 3))
        self.assertEqual(doc["direct_grants"], [])
        self.assertEqual(doc["stale"], [])

    def test_corrupt_and_locked_store(self):
        fake = self.start_fake()
        cfg = self.config(fake)
        db = self.path("connhost.db")
        with open(db, "wb") as f:
            f.write(b"this is not an SQLite database, just some bytes" * 100)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("corrupt or not a connhost store", r.err)
        self.assertIn(db, r.err)
        self.assertIn("the graph is still written", r.err)
        self.assertTrue(lib.load_json(self.path("graph.json"))["resources"])
        r = self.read("runs", rc=1, fmt=None)
        self.assertIn("corrupt or not a connhost store", r.err)

        os.unlink(db)
        self.sync(cfg)
        os.unlink(self.path("graph.json"))
        con = sqlite3.connect(db, timeout=0)
        con.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")])
            self.assertEqual(r.rc, 1, r)
            self.assertIn("locked by another process", r.err)
            self.assertTrue(lib.load_json(self.path("graph.json"))["resources"])
            # readers still answer from the last recorded run meanwhile
            self.assertEqual(len(self.read("runs")["runs"]), 2)
        finally:
            con.rollback()
            con.close()
        r = self.read("access", "nobody@nowhere.example", rc=1, fmt=None)
        self.assertIn("no account or resource matches 'nobody@nowhere.example'", r.err)
        r = self.read("runs", db=self.path("missing.db"), rc=1, fmt=None)
        self.assertIn("does not exist", r.err)

    def test_new_file_filled_once_then_wal(self):
        """A new SQLite store gets 16 KB pages and its first recording in
        the rollback journal mode (its pages written once), then WAL: a
        reader in a transaction does not stop the next sync and keeps
        seeing the run it started with."""
        fake = self.start_fake()
        cfg = self.config(fake)
        self.sync(cfg)
        self.assertFalse(os.path.exists(self.db + "-journal"))
        con = sqlite3.connect(self.db, timeout=0)
        try:
            self.assertEqual(con.execute("PRAGMA page_size").fetchone()[0], 16384)
            self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            con.execute("BEGIN")
            self.assertEqual(con.execute("SELECT count(*) FROM runs").fetchone()[0], 1)
            self.sync(cfg)
            self.assertEqual(con.execute("SELECT count(*) FROM runs").fetchone()[0], 1)
            con.rollback()
            self.assertEqual(con.execute("SELECT count(*) FROM runs").fetchone()[0], 2)
        finally:
            con.close()
        self.assertEqual({x["run"] for x in self.read("runs")["runs"]}, {1, 2})

    def test_keep_runs_and_store_none(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True, extra="keep_runs: 2")
        self.sync(cfg)
        j = fake.truth["jira"]
        synced = {g["id"] for g in fake.truth["org"]["groups"] if g["external_synced"]}
        gid = next(g["groupId"] for g in j["groups"] if not g["site_local"]
                   and g["groupId"] not in synced and j["group_members"][g["groupId"]])
        gone = j["group_members"][gid][0]
        r = lib.run(["-c", cfg, "revoke", "--entitlement", ekey("jira", "group", gid, "member"),
                     "--principal", rkey("jira", "user", gone)])
        self.assertEqual(r.rc, 0, r)
        self.sync(cfg)
        self.sync(cfg)
        self.assertEqual(sorted({x["run"] for x in self.read("runs")["runs"]}), [2, 3])
        r = self.read("access", gone, "--run", "1", rc=1, fmt=None)
        self.assertIn("no run 1", r.err)
        # the membership revoked before run 2 is needed by no kept run: gone
        closed = self.scalar("SELECT count(*) FROM grants WHERE last_run IS NOT NULL"
                             " AND last_run < 2")
        self.assertEqual(closed, 0)
        doc = self.read("access", gone, "--run", "2")
        self.assertNotIn(ekey("jira", "group", gid, "member"),
                         {x["entitlement"] for x in doc["access"]})
        # --tenant and --search narrow the answer
        doc = self.read("resources", "--search", j["users"][5]["displayName"][:6])
        self.assertIn(rkey("jira", "user", j["users"][5]["accountId"]),
                      {x["key"] for x in doc["resources"]})
        self.assertEqual(self.read("resources", "--tenant", TENANT)["resources"],
                         self.read("resources")["resources"])
        # --search looks in each email, not in the JSON text of the list:
        # a quote finds the names and keys with one, and nothing else
        every = self.read("resources")["resources"]
        for text in ('"', '["', '.com"'):
            self.assertEqual({x["key"] for x in self.read("resources", "--search", text)["resources"]},
                             {x["key"] for x in every
                              if text in (x["display_name"] or "").lower() or text in x["key"]
                              or any(text in e.lower() for e in x["emails"])}, text)
        # and every letter matches either case, not only A-Z (SQLite's
        # lower() maps those alone; PostgreSQL's columns are "C")
        def each(name, f):
            return "".join(f(c) if len(f(c)) == 1 else c for c in name)
        named = [x for x in every if any(ord(c) > 127 and c.lower() != c.upper()
                                         for c in x["display_name"] or "")]
        self.assertTrue(named)
        for x in named[:3]:
            for text in (each(x["display_name"], str.lower), each(x["display_name"], str.upper)):
                self.assertIn(x["key"], {y["key"] for y in self.read(
                    "resources", "--search", text)["resources"]}, text)
        mail = next(e for x in every for e in x["emails"])
        self.assertIn(mail, {e for x in self.read("resources", "--search", mail.upper())["resources"]
                             for e in x["emails"]})
        # a tenant never synced is a typo, not an empty answer: above all
        # not "no change" to an alert on diff --exit-code
        for cmd in (["resources"], ["stats"], ["diff", "--exit-code"], ["runs"],
                    ["access", gone]):
            r = self.read(*cmd, "--tenant", "nope", rc=1, fmt=None)
            self.assertIn("no tenant 'nope'", r.err, cmd)
            self.assertIn("(it has: %s)" % TENANT, r.err, cmd)
            self.assertEqual(r.out, "", cmd)
        # so is a resource type, an entitlement or a principal it never held
        r = self.read("resources", "--type", "users", rc=1, fmt=None)
        self.assertIn("no resource type 'users'", r.err)
        self.assertIn("user, workspace)", r.err)
        for flag, bad in (("--entitlement", ekey("jira", "group", "nope", "member")),
                          ("--principal", rkey("jira", "user", "nope"))):
            r = self.read("grants", flag, bad, rc=1, fmt=None)
            self.assertIn("'%s'" % bad, r.err, flag)
            self.assertEqual(r.out, "", flag)
        # one the store holds that holds nothing (a project) is an empty answer
        self.assertEqual(self.read("grants", "--principal",
                                   rkey("jira", "project", j["projects"][0]["id"]))["grants"],
                         [])

        # store: none records nothing
        none = self.config(fake, extra="store: none", name="none.yaml")
        self.drop_store()
        self.sync(none)
        self.assertFalse(self.store_exists())
        r = lib.run(["-c", none, "runs"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("store: none", r.err)

    def test_failed_instances_still_join_identities(self):
        """While Jira and the org fail, an HR account joined to a person by
        email stays that person's: the identity keeps its key, `access`
        of the HR account still reaches the person's (stale) Jira and org
        access, and diff reports no split."""
        fake = self.start_fake()
        acct = next(a for a in fake.truth["org"]["accounts"]
                    if a["status"] == "active" and a["email"])
        hr = self.path("hr.json")
        with open(hr, "w") as f:
            json.dump({"flatfile": 1, "users": [{"id": "u2", "name": "HR copy",
                                                 "email": acct["email"]}]}, f)
        more = {"hr": {"plugin": "flatfile", "options": {"path": hr}}}
        self.sync(self.config(fake, more_insts=more))
        before = self.read("access", rkey("hr", "user", "u2"), "--run", "1")
        self.assertIn(rkey("org", "user", acct["account_id"]),
                      {a["resource"] for a in before["accounts"]})
        bad = self.config(fake, org_token="wrong-key-wrong-key", jira_token="wrong-token",
                          name="bad.yaml", more_insts=more)
        self.sync(bad, rc=3)
        after = self.read("access", rkey("hr", "user", "u2"))
        self.assertEqual(after["run"], 2)
        self.assertEqual({(a["identity"], a["resource"]) for a in after["accounts"]},
                         {(a["identity"], a["resource"]) for a in before["accounts"]})
        self.assertEqual(self.triples(after["access"]), self.triples(before["access"]))
        doc = self.read("diff", "--exit-code")
        self.assertEqual(doc["identity_changes"], [])

    def test_keep_runs_prunes_per_instance(self):
        """keep_runs drops each instance's rows that no kept run reads for
        that instance, even while another instance answers from older data
        (a failed one's last good run)."""
        def write(path, users):
            with open(path, "w") as f:
                json.dump({"flatfile": 1, "users": [{"id": u, "name": u} for u in users]}, f)
        a, b = self.path("a.json"), self.path("b.json")
        write(a, ["u1", "u2"])
        write(b, ["v1"])
        insts = {"a": {"plugin": "flatfile", "options": {"path": a}},
                 "b": {"plugin": "flatfile", "options": {"path": b}}}
        cfg = lib.write_config(self.path("k.yaml"), {"t": insts}, plugin_dir=lib.PLUGINS,
                               extra=self.store_line() + "keep_runs: 2\n")
        self.sync(cfg)
        self.sync(cfg)
        write(a, ["u1"])             # u2 is gone from run 3 on
        os.unlink(b)                 # and b fails: it answers from run 2
        for _ in range(2):
            self.sync(cfg, rc=3)
        self.assertEqual(sorted({x["run"] for x in self.read("runs")["runs"]}), [3, 4])
        closed = self.scalar("SELECT count(*) FROM resources r JOIN nodes n ON n.id = r.node_id"
                             " WHERE n.key = 't/a/user/u2'")
        self.assertEqual(closed, 0, "a row only pruned runs read is kept")
        keys = {x["key"] for x in self.read("resources", "--run", "4")["resources"]}
        self.assertEqual(keys, {"t/a/user/u1", "t/b/user/v1"})

    def test_a_key_of_another_tenant_is_an_error(self):
        """Under --tenant, a key of another tenant would only ever answer
        "nobody holds it": an error, as for a tenant never synced."""
        tenants = {}
        for t, role in (("a", True), ("b", False)):
            path = self.path("%s.json" % t)
            doc = {"flatfile": 1, "users": [{"id": "u1", "name": "User %s" % t,
                                             "email": "u1@%s.example" % t}]}
            if role:
                doc["roles"] = [{"id": "admin", "name": "Admin", "assigned_users": ["u1"]}]
            with open(path, "w") as f:
                json.dump(doc, f)
            tenants[t] = {"hr": {"plugin": "flatfile", "options": {"path": path}}}
        cfg = lib.write_config(self.path("two.yaml"), tenants, plugin_dir=lib.PLUGINS,
                               extra=self.store_line())
        self.sync(cfg)
        held = self.read("who-has", "a/hr/role/admin", "--tenant", "a")["holders"]
        self.assertEqual([h["principal"] for h in held], ["a/hr/user/u1"])
        for cmd in (["who-has", "a/hr/role/admin"], ["explain", "a/hr/user/u1", "a/hr/role/admin"],
                    ["grants", "--entitlement", "a/hr/role/admin#assigned"],
                    ["grants", "--principal", "a/hr/user/u1"]):
            r = self.read(*cmd, "--tenant", "b", rc=1, fmt=None)
            self.assertIn("is not in tenant 'b'", r.err, cmd)
            self.assertEqual(r.out, "", cmd)

    def test_explain_follows_nested_groups(self):
        """A grant inherited through groups nested in groups: explain's path
        names every group between the account and WHAT (a reviewer opening
        the last group alone does not find the account in it), one row per
        chain, shortest first; `through` stays the group holding WHAT."""
        path = self.path("nested.json")
        with open(path, "w") as f:
            json.dump({"flatfile": 1,
                       "users": [{"id": u, "name": n} for u, n in (
                           ("svc", "svc bot"), ("d", "Dee"), ("m", "Em"), ("c", "Cy"))],
                       "groups": [
                           {"id": "innermost", "name": "Innermost", "members": ["svc", "m"]},
                           {"id": "inner", "name": "Inner", "members": ["m"],
                            "member_groups": ["innermost"]},
                           {"id": "outer", "name": "Outer",
                            "member_groups": ["inner", "ga", "gb"]},
                           {"id": "ga", "name": "A", "members": ["d"]},
                           {"id": "gb", "name": "B", "members": ["d"]},
                           {"id": "c1", "name": "C1", "member_groups": ["c2"]},
                           {"id": "c2", "name": "C2", "members": ["c"],
                            "member_groups": ["c1"]}],
                       "roles": [{"id": "admin", "name": "Admin", "assigned_groups": ["outer"]},
                                 {"id": "r", "name": "R", "assigned_groups": ["c1"]}]}, f)
        cfg = lib.write_config(self.path("nested.yaml"),
                               {"a": {"hr": {"plugin": "flatfile", "options": {"path": path}}}},
                               plugin_dir=lib.PLUGINS, extra=self.store_line())
        self.sync(cfg)
        admin = "a/hr/role/admin#assigned"
        outer = "a/hr/group/outer#member"
        r = self.read("explain", "a/hr/user/svc", "a/hr/role/admin", fmt="csv")
        got = list(csv.DictReader(io.StringIO(r.out, newline="")))
        self.assertEqual([(x["kind"], x["through"], x["through_name"], x["path"]) for x in got],
                         [("inherited", outer, "Outer",
                           "svc bot -> Innermost -> Inner -> Outer -> " + admin)])
        for who, what, paths in (
                # in two groups of Outer: a row per chain
                ("a/hr/user/d", admin, ["Dee -> A -> Outer -> " + admin,
                                        "Dee -> B -> Outer -> " + admin]),
                # in Inner itself and through Innermost: the shortest way
                ("a/hr/user/m", admin, ["Em -> Inner -> Outer -> " + admin]),
                # a group as WHO, and a group's entitlement as WHAT
                ("a/hr/group/innermost", admin, ["Innermost -> Inner -> Outer -> " + admin]),
                ("a/hr/user/svc", outer, ["svc bot -> Innermost -> Inner -> " + outer]),
                ("a/hr/user/svc", "a/hr/group/innermost#member",
                 ["svc bot -> a/hr/group/innermost#member"]),
                # groups in a cycle: the chain ends
                ("a/hr/user/c", "a/hr/role/r#assigned",
                 ["Cy -> C2 -> C1 -> a/hr/role/r#assigned"])):
            doc = self.read("explain", who, what)["paths"]
            self.assertEqual([x["path"] for x in doc], paths, (who, what))
            for x in doc:
                self.assertEqual(x["kind"], "inherited" if "#member" not in what
                                 or what == outer else "direct", x)
                if x["kind"] == "inherited":
                    self.assertEqual(x["through"], outer if what == admin else x["through"])

    def test_options_must_apply(self):
        """Each read command takes only its own options: any other is a
        usage error (exit 2) naming the commands it applies to, never an
        answer that ignored it."""
        self.load_fixture("v4-tiny.sql")
        every = "resources, grants, access, who-has, explain, diff, stats, export, report"
        for args, applies in ((["stats", "--type", "user"], "resources"),
                              (["access", "x", "--entitlement", "e"], "grants"),
                              (["who-has", "w", "--search", "zzz"], "resources"),
                              (["grants", "--search", "zzz"], "resources"),
                              (["resources", "--principal", "p"], "grants"),
                              (["runs", "--run", "1"], every),
                              (["stats", "--to", "1"], "diff"),
                              (["access", "x", "--from", "1"], "diff"),
                              (["report", "--exit-code"], "diff"),
                              (["export", "access-review", "--type", "user"], "resources")):
            opt = next(a for a in args if a.startswith("--"))
            r = self.read(*args, rc=2, fmt=None)
            self.assertIn("connhost: %s does not apply to '%s': it applies to %s\n"
                          % (opt, args[0], applies), r.err)
            # and points to the help of the command typed
            self.assertIn("Try 'connhost %s --help'." % args[0], r.err)
            self.assertEqual(r.out, "", args)
        # an option no read command has names the one meant, if one is near
        r = self.read("stats", "--tenat", TENANT, rc=2, fmt=None)
        self.assertEqual(r.err, "connhost: unknown option '--tenat'; did you mean "
                                "'--tenant'?\nTry 'connhost stats --help'.\n")
        r = self.read("stats", "--frobnicate", rc=2, fmt=None)
        self.assertIn("connhost: unknown option '--frobnicate'\n", r.err)
        # diff's --run is its --to: one of them, not both
        r = self.read("diff", "--run", "2", "--to", "1", rc=2, fmt=None)
        self.assertIn("give --to RUN or --run RUN, not both", r.err)
        for flag in ("--run", "--to"):
            doc = self.read("diff", flag, "2")
            self.assertEqual((doc["from"], doc["run"]), (1, 2), flag)
        # what applies still answers
        self.assertEqual({x["run"] for x in self.read("runs", "--tenant", TENANT)["runs"]},
                         {1, 2})
        self.assertEqual(self.read("stats", "--run", "1")["run"], 1)

    def test_config_error_is_exit_2(self):
        """A config that does not load is a config error (exit 2) for a
        read command too, as for sync and check; `store: none` is no store
        (exit 1)."""
        bad = self.path("bad.yaml")
        with open(bad, "w") as f:
            f.write("bogus: [\n")
        for args in (["-c", bad, "runs"], ["runs", "-c", bad],
                     ["-c", self.path("missing.yaml"), "stats"]):
            r = lib.run(args)
            self.assertEqual(r.rc, 2, (args, r))
            self.assertEqual(r.out, "", args)
        self.assertIn("bad.yaml:2:1: invalid YAML", lib.run(["-c", bad, "runs"]).err)
        self.assertEqual(lib.run(["-c", bad, "sync"]).rc, 2)
        r = lib.run(["runs"], cwd=self.path())  # no --db, no ./connhost.yaml
        self.assertEqual(r.rc, 2, r)
        self.assertIn("give the store with --db or the config with -c", r.err)

    def test_read_never_creates_a_store(self):
        """A read never writes a schema into a file: an empty (0-byte)
        file, or an SQLite file with no tables, is refused and left as it
        was (no journal either); a sync records into either."""
        empty, bare = self.path("e0.db"), self.path("bare.db")
        open(empty, "w").close()
        con = sqlite3.connect(bare)
        con.execute("CREATE TABLE x(a)")
        con.execute("DROP TABLE x")
        con.close()
        bare_size = os.path.getsize(bare)
        for db, says in ((empty, "is an empty file, not a connhost store"),
                         (bare, "is an empty SQLite database (no tables), "
                                "not a connhost store")):
            for cmd in (["stats"], ["runs"], ["access", "x"],
                        ["export", "access-review"]):
                r = self.read(*cmd, db=db, rc=1, fmt=None)
                self.assertIn("store '%s' %s" % (db, says), r.err)
                self.assertEqual(r.out, "", cmd)
            r = lib.run(["explore", "--db", db, "--listen", "127.0.0.1:0"], timeout=30)
            self.assertEqual(r.rc, 1, r)
            self.assertIn(says, r.err)
        self.assertEqual(os.path.getsize(empty), 0)
        self.assertEqual(os.path.getsize(bare), bare_size)
        con = sqlite3.connect(bare)
        self.assertEqual(con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0], 0)
        con.close()
        self.assertEqual(sorted(f for f in os.listdir(self.path()) if ".db" in f),
                         ["bare.db", "e0.db"])
        # a sync fills the empty file: it has no history yet, nothing to warn of
        fake = self.start_fake()
        r = self.sync(self.config(fake, extra="store: %s" % lib.yaml_quote(empty)))
        self.assertNotIn("no last good counts", r.err)
        self.assertEqual({x["run"] for x in self.read("runs", db=empty)["runs"]}, {1})

    def test_foreign_file_is_left_as_it_was(self):
        """An SQLite file that is not a connhost store is refused by a read
        and by a sync without a byte of it changed: no switch to WAL (a
        header write) before the refusal, no -wal, -shm or -journal beside
        it. The sync still writes its graph and exits 1."""
        def slurp(path):
            with open(path, "rb") as f:
                return f.read()

        d = self.path("foreign")
        os.makedirs(d)
        files = {}
        for name, sql, says in (
                ("theirs.db", "CREATE TABLE t(a); INSERT INTO t VALUES(1);",
                 "is an SQLite file but not a connhost store (no schema version)"),
                ("meta.db", "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);",
                 "is not a connhost store (no schema version)")):
            db = os.path.join(d, name)
            con = sqlite3.connect(db)
            con.executescript(sql)
            con.close()
            files[db] = says
        before = {db: slurp(db) for db in files}
        for db, says in files.items():
            self.assertEqual(before[db][18:20], b"\x01\x01")  # rollback journal
            for cmd in (["runs"], ["stats"]):
                r = self.read(*cmd, db=db, rc=1, fmt=None)
                self.assertIn(says, r.err)
                self.assertEqual(r.out, "", cmd)
                self.assertEqual(slurp(db), before[db], (cmd, db))
                self.assertEqual(sorted(os.listdir(d)), sorted(map(os.path.basename, files)))
        fake = self.start_fake()
        for db, says in files.items():
            graph = self.path("graph.json")
            if os.path.exists(graph):
                os.unlink(graph)
            r = self.sync(self.config(fake, extra="store: %s" % lib.yaml_quote(db)), rc=1)
            self.assertIn(says, r.err)
            self.assertIn("the graph is still written", r.err)
            self.assertTrue(lib.load_json(graph)["resources"])
            self.assertEqual(slurp(db), before[db], db)
            self.assertEqual(sorted(os.listdir(d)), sorted(map(os.path.basename, files)))

    def test_table_shows_control_characters_and_aligns_wide_names(self):
        """--format table writes each control character of a name (C0,
        DEL) as U+FFFD: no escape sequence reaches the terminal and no
        name forges a row. Columns line up by display width (CJK names
        take two columns a character). JSON and CSV keep the name as is."""
        import unicodedata
        self.load_fixture("v4-tiny.sql")
        self.read("runs")  # migrated to the current schema
        hostile = "Evil\x1b[31mRED\x07\rX\nforged row\x7f!\x01"
        wide = "山田太郎"
        con = sqlite3.connect(self.db)
        users = [r[0] for r in con.execute(
            "SELECT n.key FROM nodes n WHERE n.type = 'user' ORDER BY n.key LIMIT 2")]
        for key, name in zip(users, (hostile, wide)):
            con.execute("UPDATE resources SET display_name = ? WHERE node_id ="
                        " (SELECT id FROM nodes WHERE key = ?)", (name, key))
        con.commit()
        con.close()
        def answer(fmt):  # bytes as written (no newline translation)
            p = subprocess.run([lib.CONNHOST, "resources", "--type", "user", "--db",
                                self.db, "--format", fmt], capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.decode("utf-8")
        names = {x["key"]: x["display_name"] or ""
                 for x in json.loads(answer("json"))["resources"]}
        self.assertEqual(names[users[0]], hostile)
        rows = list(csv.reader(io.StringIO(answer("csv"), newline="")))
        self.assertIn(hostile, {r[rows[0].index("display_name")] for r in rows})

        out = answer("table")
        lines = out.split("\n")
        self.assertEqual(lines[-1], "")
        lines = lines[:-1]
        self.assertEqual(len(lines), len(names) + 1, "one line a row, and the header")
        self.assertFalse([c for c in out if unicodedata.category(c) == "Cc" and c != "\n"])
        shown = "".join("\ufffd" if ord(c) < 0x20 or c == "\x7f" else c for c in hostile)
        self.assertIn(shown, out)

        def width(text):
            return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
        # where the column after display_name starts, in terminal columns,
        # on the rows whose names are plain ASCII or wide
        starts = set()
        for line in lines[1:]:
            key = line.split(" ", 1)[0]
            name = names[key].replace("\x7f", "\ufffd")
            name = "".join("\ufffd" if ord(c) < 0x20 else c for c in name)
            if not name or not (name.isascii() or name == wide):
                continue
            end = line.index(name, len(key)) + len(name)
            end += len(line[end:]) - len(line[end:].lstrip(" "))
            starts.add(width(line[:end]))
        self.assertEqual(len(starts), 1, starts)

    def test_broken_store_says_what_is_wrong(self):
        """A store missing a table is corrupt (the message garbage gets),
        when opened, before any answer; a schema version that is not a
        number is an invalid one, not a missing one; a directory is a
        directory."""
        self.load_fixture("v4-tiny.sql")
        self.read("runs")  # migrated to the current schema
        for bad in ("abc", "5x", "0"):
            self.execute("UPDATE meta SET value = '%s' WHERE key = 'schema_version'" % bad)
            r = self.read("runs", rc=1, fmt=None)
            self.assertIn("is not a connhost store (invalid schema version '%s')" % bad, r.err)
        self.execute("DELETE FROM meta WHERE key = 'schema_version'")
        r = self.read("runs", rc=1, fmt=None)
        self.assertIn("is not a connhost store (no schema version)", r.err)
        self.execute("INSERT INTO meta VALUES('schema_version', '%d')" % SCHEMA_VERSION)
        self.assertEqual(len(self.read("runs")["runs"]), 4)
        self.drop_table("grants")
        for cmd in (["stats"], ["runs"], ["resources"]):
            r = self.read(*cmd, rc=1, fmt=None)
            self.assertIn("is corrupt or not a connhost store (checking its tables: ", r.err)
            self.assertIn("grants", r.err)
            self.assertIn("move it away and sync again to start a new one", r.err)
            self.assertEqual(r.out, "", cmd)

    def test_store_path_is_a_directory(self):
        r = self.read("runs", db=self.path(), rc=1, fmt=None)
        self.assertIn("store '%s' is a directory, not a store file" % self.path(), r.err)

    def test_csv_is_rfc4180_with_formula_guard(self):
        fake = self.start_fake()
        self.sync(self.config(fake))
        p = subprocess.run([lib.CONNHOST, "resources", "--type", "user", "--db",
                            self.db, "--format", "csv"],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode("utf-8")
        self.assertTrue(out.endswith("\r\n") and "\n" not in out.replace("\r\n", ""),
                        "records end in CRLF")
        rows = list(csv.reader(io.StringIO(out, newline="")))
        header = rows[0]
        names = {row[header.index("key")]: row[header.index("display_name")] for row in rows[1:]}
        for u in fake.truth["jira"]["users"]:
            want = u["displayName"]
            if want[:1] in ("=", "+", "-", "@"):
                want = "'" + want
            self.assertEqual(names[rkey("jira", "user", u["accountId"])], want)
        self.assertTrue(any('"' in n or "," in n for n in names.values()),
                        "the tenant has names with quotes or commas")


class MidSizeStoreTest(StoreTest):
    """The same checks on a bigger tenant (600 users)."""
    profile = "demo"
    fake_extra = ("--users", "600", "--groups", "60", "--projects", "30")

    # these do not depend on size
    test_old_schema_migrates = None
    test_corrupt_and_locked_store = None
    test_csv_is_rfc4180_with_formula_guard = None
    test_failed_instance_answers_stale = None
    test_keep_runs_and_store_none = None
    test_identity_emails_per_run = None
    test_schema4_store_migrates = None
    test_new_file_filled_once_then_wal = None
    test_options_must_apply = None
    test_explain_follows_nested_groups = None
    test_config_error_is_exit_2 = None
    test_read_never_creates_a_store = None
    test_foreign_file_is_left_as_it_was = None
    test_table_shows_control_characters_and_aligns_wide_names = None
    test_broken_store_says_what_is_wrong = None
    test_store_path_is_a_directory = None


class PgBackend(pgcluster.ClusterPerClass):
    """The store in a PostgreSQL database: one cluster per class, a fresh
    database per test. Mixed in before a StoreTest class."""
    default_store = False
    ndb = 0

    def setUp(self):
        super().setUp()
        PgBackend.ndb += 1
        self.dbname = "t%d" % PgBackend.ndb
        self.db = self.cluster.create_db(self.dbname)

    def psql(self, sql):
        return self.cluster.psql(sql, self.dbname).strip()

    def scalar(self, sql):
        v = self.psql(sql).splitlines()[0]
        return int(v) if v.lstrip("-").isdigit() else v

    def execute(self, sql):
        self.psql(sql)

    def drop_table(self, name):
        self.psql("DROP TABLE %s CASCADE" % name)  # the views that use it too

    def store_exists(self):
        return self.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") > 0

    def drop_store(self):
        self.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")

    def psql_file(self, path):
        p = subprocess.run([os.path.join(self.cluster.bindir, "psql"), "-X", "-q",
                            "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                            str(self.cluster.port), "-U", self.cluster.user, "-d",
                            self.dbname, "-f", path],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)

    def load_fixture(self, name):
        """The SQLite dump tests/fixtures/store/NAME as its schema is on
        PostgreSQL (db.h's types; the views come with the migration)."""
        out = []
        with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
            for line in f:
                if line.startswith("CREATE TABLE"):
                    line = (line.replace(" WITHOUT ROWID", "")
                            .replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
                            .replace("INTEGER", "BIGINT").replace(" TEXT", ' TEXT COLLATE "C"'))
                elif not line.startswith(("INSERT", "CREATE INDEX")):
                    continue
                out.append(line)
        for t in ("runs", "instances", "nodes", "identities", "entitlements"):
            out.append("SELECT setval(pg_get_serial_sequence('%s', 'id'),"
                       " (SELECT max(id) FROM %s));\n" % (t, t))
        sql = self.path(name + ".pg")
        with open(sql, "w", encoding="utf-8") as f:
            f.writelines(out)
        self.psql_file(sql)

    def closed_port(self):
        import socket
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            return so.getsockname()[1]


class PgStoreTest(PgBackend, StoreTest):
    """Every store test of StoreTest against PostgreSQL, and what is
    PostgreSQL's own: the URL's password, an unreachable server, a sync
    killed while it records."""

    # A corrupt file and SQLite's write lock have no PostgreSQL
    # counterpart; test_unreachable_and_foreign_store is this backend's.
    test_corrupt_and_locked_store = None
    test_new_file_filled_once_then_wal = None  # SQLite's file
    test_read_never_creates_a_store = None  # SQLite's file
    test_foreign_file_is_left_as_it_was = None  # SQLite's file
    test_store_path_is_a_directory = None  # SQLite's file
    # the table's text does not depend on the backend
    test_table_shows_control_characters_and_aligns_wide_names = None

    def test_old_schema_migrates(self):
        """The v1 fixture as the v1 schema is on PostgreSQL (db.h's types)
        migrates on the first read, then a new run goes on top."""
        self.load_fixture("v1-tiny.sql")
        self.assertEqual(self.scalar("SELECT value FROM meta WHERE key='schema_version'"), 1)
        fake = lib.Fake(self.path(), profile="tiny")
        self.addCleanup(fake.stop)
        model = Model(fake.truth)
        u = fake.truth["jira"]["users"][5]
        doc = self.read("access", u["accountId"])
        self.assertEqual(self.triples(doc["access"]),
                         model.held_by(self.accounts_of(fake.truth, u["accountId"])))
        self.assertEqual(self.scalar("SELECT value FROM meta WHERE key='schema_version'"),
                         SCHEMA_VERSION)
        # v4: runs name the serve replica that recorded them (none here)
        self.assertEqual(self.scalar("SELECT count(*) FROM runs WHERE replica IS NOT NULL"), 0)
        self.assertEqual(self.scalar("SELECT count(*) FROM run_instances WHERE data_at IS NULL"), 0)
        # the stable views are there too
        self.assertGreater(self.scalar("SELECT count(*) FROM access"), 0)
        cfg = lib.write_config(self.path("c.yaml"), {TENANT: {
            "jira": {"plugin": "jira_cloud", "options": {
                "url": fake.base, "email": fake.creds["jira_email"],
                "api_token": self.secret("jira", fake.creds["jira_api_token"]),
                "gateway_url": fake.base}}}},
            plugin_dir=lib.PLUGINS, extra=self.store_line())
        self.sync(cfg)
        doc = self.read("diff")
        self.assertEqual((doc["from"], doc["run"]), (1, 2))
        self.assertEqual(doc["direct_grants"], [])
        self.assertEqual(doc["resources"], [])
        self.assertEqual([(x["instance"], x["status"], x["data_run"]) for x in doc["stale"]],
                         [("org", "not_synced", 1)])

    def test_unreachable_and_foreign_store(self):
        port = self.closed_port()
        url = "postgresql://connhost:not-this-pw-9x@127.0.0.1:%d/x" % port
        shown = "postgresql://connhost:***@127.0.0.1:%d/x" % port
        r = self.read("runs", db=url, rc=1, fmt=None)
        self.assertIn("store '%s': cannot reach the PostgreSQL server" % shown, r.err)
        self.assertIn("check that it runs and accepts connections", r.err)
        self.assertNotIn("not-this-pw-9x", r.out + r.err)
        # a sync still writes its graph, and says why the store failed
        fake = self.start_fake()
        cfg = self.config(fake, extra="store: %s\n" % url)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("cannot reach the PostgreSQL server", r.err)
        self.assertIn("the graph is still written", r.err)
        self.assertNotIn("not-this-pw-9x", r.out + r.err)
        self.assertTrue(lib.load_json(self.path("graph.json"))["resources"])
        # no such database
        r = self.read("runs", db=self.cluster.url("nosuchdb"), rc=1, fmt=None)
        self.assertIn('database "nosuchdb" does not exist', r.err)
        # a database that holds other tables is not taken over
        self.psql("CREATE TABLE theirs(x int)")
        r = self.read("runs", rc=1, fmt=None)
        self.assertIn("is a PostgreSQL database with tables but not a connhost store", r.err)
        r = lib.run(["-c", self.config(fake), "sync", "-o", self.path("graph.json")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("not a connhost store", r.err)
        self.assertEqual(self.scalar("SELECT count(*) FROM pg_tables WHERE schemaname"
                                     " = 'public'"), 1)

    def test_same_answers_as_sqlite_and_explorer(self):
        """The same sync into PostgreSQL and into an SQLite file: every read
        command answers the same, row for row; and `connhost explore --db
        URL` serves those answers."""
        fake = self.start_fake()
        self.sync(self.config(fake))
        lite = self.path("lite.db")
        self.sync(self.config(fake, name="lite.yaml",
                              extra="store: %s\n" % lib.yaml_quote(lite)))
        truth = fake.truth
        user = truth["jira"]["users"][6]["accountId"]
        model = Model(truth)
        ent, who = next((e, p) for (e, p), d in sorted(model.grants.items())
                        if not d and "/jira/user/" in p)
        commands = [["runs"], ["resources"], ["grants"], ["stats"], ["report"], ["diff"],
                    ["export", "access-review"], ["access", user], ["who-has", ent],
                    ["explain", who, ent], ["resources", "--search", "a", "--type", "user"]]
        for args in commands:
            pg, sq = self.read(*args), self.read(*args, db=lite)
            for doc in (pg, sq):
                for x in doc.get("runs", ()):
                    x.pop("started")
                    x.pop("finished")
            self.assertEqual(pg, sq, args)
        # the explorer over the same URL
        proc = subprocess.Popen([lib.CONNHOST, "explore", "--db", self.db, "--listen",
                                 "127.0.0.1:0"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            base = proc.stdout.readline().strip()
            self.assertRegex(base, r"^http://127\.0\.0\.1:\d+/$")
            for path, args in (("api/v1/stats", ["stats"]),
                               ("api/v1/access?who=" + user, ["access", user]),
                               ("api/v1/report", ["report"])):
                with urllib.request.urlopen(base + path, timeout=60) as r:
                    got = json.load(r)
                # the API says where each section's next page starts
                self.assertEqual(set(got.pop("next_offset").values()), {None}, path)
                self.assertEqual(got, self.read(*args), path)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()

    def test_password_from_env_never_shown(self):
        pw = "pg-Secret-7fQz2Lw9"
        self.cluster.psql("ALTER ROLE connhost PASSWORD '%s'" % pw)
        fake = self.start_fake()
        store = "postgresql://connhost:${env:CONNHOST_TEST_PGPW}@127.0.0.1:%d/%s" % (
            self.cluster.port, self.dbname)
        cfg = self.config(fake, extra="store: %s\n" % store)
        env = {"CONNHOST_TEST_PGPW": pw}
        seen = []
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json"), "--log-level",
                     "debug"], env=env)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("recorded in postgresql://connhost:***@127.0.0.1", r.out)
        seen += [r.out, r.err]
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json"), "--log-level",
                     "debug", "--log-format", "json"], env=env)
        self.assertEqual(r.rc, 0, r)
        seen += [r.out, r.err]
        for args in (["runs"], ["stats"], ["access", fake.truth["jira"]["users"][3]["accountId"]],
                     ["diff"], ["report"]):
            r = lib.run(["-c", cfg] + args + ["--format", "json"], env=env)
            self.assertEqual(r.rc, 0, r)
            seen += [r.out, r.err]
        # the URL given on the command line, and an error naming it
        full = "postgresql://connhost:%s@127.0.0.1:%d/%s" % (pw, self.cluster.port, self.dbname)
        r = lib.run(["runs", "--db", full])
        self.assertEqual(r.rc, 0, r)
        seen += [r.out, r.err]
        r = lib.run(["runs", "--db", full.replace(str(self.cluster.port),
                                                  str(self.closed_port()))])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("postgresql://connhost:***@", r.err)
        seen += [r.out, r.err]
        # a password in the query string too
        r = lib.run(["runs", "--db", self.cluster.url("nosuchdb") + "?password=" + pw])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("password=***", r.err)
        seen += [r.out, r.err]
        with open(self.path("graph.json"), encoding="utf-8") as f:
            seen.append(f.read())
        for text in seen:
            self.assertNotIn(pw, text)

    def test_kill_mid_record_leaves_last_run(self):
        """SIGKILL while the run is being recorded (the store's write lock is
        held): the previous run is intact, the killed one is nowhere, and
        keep_runs still counts runs (not ids) afterwards."""
        fake = self.start_fake()
        cfg = self.config(fake, extra="keep_runs: 2\n")
        self.sync(cfg)
        lock = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname ="
                " current_database())")
        caught = False
        for _ in range(20):
            p = subprocess.Popen([lib.CONNHOST, "-c", cfg, "sync", "-o",
                                  self.path("killed.json")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 120
            killed = False
            try:
                while p.poll() is None and time.time() < deadline:
                    if self.scalar(lock) > 0:
                        os.kill(p.pid, signal.SIGKILL)
                        killed = True
                        break
            finally:
                if p.poll() is None and not killed:
                    p.kill()
                p.wait(timeout=60)
            # the server drops the dead connection's transaction
            for _ in range(100):
                if self.scalar(lock) == 0:
                    break
                time.sleep(0.1)
            runs = self.scalar("SELECT count(*) FROM runs WHERE id > 1")
            if killed and runs == 0:
                caught = True
                break
            # it finished first, or its COMMIT reached the server before the
            # kill did: then the run is whole (all its instances recorded)
            if runs:
                self.assertEqual(self.scalar(
                    "SELECT count(*) FROM run_instances WHERE run_id > 1"),
                    self.scalar("SELECT count(*) FROM run_instances WHERE run_id = 1"))
            # forget that run and try again
            self.psql("DELETE FROM run_instances WHERE run_id > 1; DELETE FROM runs"
                      " WHERE id > 1")
        self.assertTrue(caught, "never killed the sync while it was recording")
        self.assertEqual(p.returncode, -signal.SIGKILL)
        self.assertEqual(self.scalar("SELECT string_agg(id || ':' || status, ',')"
                                     " FROM runs"), "1:ok")
        self.assertEqual({x["run"] for x in self.read("runs")["runs"]}, {1})
        model = Model(fake.truth)
        u = fake.truth["jira"]["users"][4]["accountId"]
        self.assertEqual(self.triples(self.read("access", u)["access"]),
                         model.held_by(self.accounts_of(fake.truth, u)))
        # the next run records normally on top; the lost id is a gap
        self.sync(cfg)
        runs = sorted({x["run"] for x in self.read("runs")["runs"]})
        self.assertEqual(len(runs), 2, runs)
        self.assertEqual(runs[0], 1)
        self.assertEqual(self.read("diff", "--exit-code")["direct_grants"], [])


class PgMidSizeStoreTest(PgBackend, MidSizeStoreTest):
    """MidSizeStoreTest's checks against PostgreSQL."""


if __name__ == "__main__":
    lib.main()
