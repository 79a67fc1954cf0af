# SPDX-License-Identifier: MIT
"""End-to-end tests of the snapshot store and the read commands: the built
connhost binary, the real jira_cloud.so and atlassian_org.so, the fake
Atlassian Cloud on loopback, a real SQLite file.

Every answer is checked against a model computed from the fake's truth
file (never against connhost's own graph): access and who-has for sampled
users, groups, project roles, projects and workspace roles, direct and
inherited; diff after a real grant and revoke through connhost is exactly
the difference between the fake's state before and after; a failed
instance answers from its last good data, marked stale; a version-1 store
migrates; a corrupt or locked store gives a clear error and the graph is
still written.
"""
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TENANT = "demo"
FIXTURES = os.path.join(lib.SRCDIR, "tests", "fixtures", "store")


enc = lib.key_encode


def rkey(inst, rtype, rid):
    return "/".join([TENANT, inst, rtype, enc(rid)])


def ekey(inst, rtype, rid, slug):
    return rkey(inst, rtype, rid) + "#" + enc(slug)


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
    maxDiff = 6000
    profile = "demo"
    fake_extra = ()

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
               name="connhost.yaml"):
        c = fake.creds
        insts = {
            "jira": {"plugin": "jira_cloud", "provisioning": provisioning,
                     "options": {"url": fake.base, "email": c["jira_email"],
                                 "api_token": self.secret("jira", c["jira_api_token"]),
                                 "gateway_url": fake.base}},
            "org": {"plugin": "atlassian_org", "provisioning": provisioning,
                    "options": {"org_id": c["org_id"],
                                "api_token": self.secret("org", org_token or c["org_api_key"]),
                                "api_base": fake.base + "/admin"}},
        }
        return lib.write_config(self.path(name), {TENANT: insts},
                                plugin_dir=lib.PLUGINS, extra=extra)

    def sync(self, cfg, rc=0, args=()):
        r = lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")] + list(args))
        self.assertEqual(r.rc, rc, r)
        return r

    def read(self, *args, db=None, rc=0, fmt="json"):
        a = list(args) + ["--db", db or self.path("connhost.db")]
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
    def test_answers_match_truth(self):
        fake = self.start_fake()
        cfg = self.config(fake)
        self.sync(cfg)
        truth = fake.truth
        model = Model(truth)
        db = self.path("connhost.db")
        self.assertTrue(os.path.exists(db), "the store sits beside the config")

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
        db = sqlite3.connect(self.path("connhost.db"))
        n1 = db.execute("SELECT count(*) FROM grants").fetchone()[0]
        db.close()
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
        db = sqlite3.connect(self.path("connhost.db"))
        n3 = db.execute("SELECT count(*) FROM grants").fetchone()[0]
        db.close()
        self.assertEqual(n3, n1 + new_rows, "only what changed is written again")

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
                          extra="store: %s" % lib.yaml_quote(self.path("connhost.db")))
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
                         .fetchone()[0], "3")
        # v3: runs name the serve replica that recorded them (none here)
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
        db = sqlite3.connect(self.path("connhost.db"))
        closed = db.execute("SELECT count(*) FROM grants WHERE last_run IS NOT NULL"
                            " AND last_run < 2").fetchone()[0]
        db.close()
        self.assertEqual(closed, 0)
        doc = self.read("access", gone, "--run", "2")
        self.assertNotIn(ekey("jira", "group", gid, "member"),
                         {x["entitlement"] for x in doc["access"]})
        # --tenant and --search narrow the answer; an unknown tenant is empty
        doc = self.read("resources", "--search", j["users"][5]["displayName"][:6])
        self.assertIn(rkey("jira", "user", j["users"][5]["accountId"]),
                      {x["key"] for x in doc["resources"]})
        self.assertEqual(self.read("resources", "--tenant", "nope")["resources"], [])

        # store: none records nothing
        none = self.config(fake, extra="store: none", name="none.yaml")
        os.unlink(self.path("connhost.db"))
        self.sync(none)
        self.assertFalse(os.path.exists(self.path("connhost.db")))
        r = lib.run(["-c", none, "runs"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("store: none", r.err)

    def test_csv_is_rfc4180_with_formula_guard(self):
        fake = self.start_fake()
        self.sync(self.config(fake))
        p = subprocess.run([lib.CONNHOST, "resources", "--type", "user", "--db",
                            self.path("connhost.db"), "--format", "csv"],
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


if __name__ == "__main__":
    lib.main()
