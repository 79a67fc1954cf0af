# SPDX-License-Identifier: MIT
"""End-to-end tests of the jira_cloud plugin: the built connhost binary
and the real jira_cloud.so against the fake Atlassian Cloud.

Every sync is compared with the fake's truth file exactly: users (type,
status, email), group memberships (inactive members included and marked),
project leads, role actors (users direct, groups expandable), participants
(direct and through groups), counts and keys.

The `large` profile (20,000 users, 1,000 groups, 500 projects; a graph of
over a million grants) runs by default: about 12 s of sync and 30 s in all
on a developer machine. CONNHOST_SLOW_TESTS=0 skips it; the medium tenant
(1,500 users, a project with more than 1,000 participants) always runs.
"""
import json
import os
import sys
import time
import unittest
from urllib.parse import quote, unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

TENANT = "acme"
INST = "jira"
SLOW = os.environ.get("CONNHOST_SLOW_TESTS") != "0"
TIMES = {}


# A key component as the host prints it (docs/graph-format.md).
enc = lib.key_encode


def rkey(rtype, rid, inst=INST):
    return "/".join([TENANT, inst, rtype, enc(rid)])


def ekey(rtype, rid, slug, inst=INST):
    return rkey(rtype, rid, inst) + "#" + slug


def split_key(key):
    """(type, id) of a resource key of this tenant/instance, ids decoded."""
    parts = key.split("/", 3)
    return parts[2], unquote(parts[3])


def group_key(group):
    """The id a truth group has in the graph: its groupId, or "name:" and
    its name when the API shows none (docs/plugins/jira_cloud.md)."""
    return "name:" + group["name"] if group.get("groupIdHidden") else group["groupId"]


class Graph:
    """The parts of a graph file the tests look at, indexed (the large
    tenant's graph has over a million grants)."""

    def __init__(self, path):
        self.doc = lib.load_json(path)
        self.resources = {r["key"]: r for r in self.doc["resources"]}
        self.grants = self.doc["grants"]
        self.index = {}
        self.by_ent = {}
        for g in self.grants:
            ent, pr = g["entitlement"], g["principal"]
            self.index[(ent, pr)] = g
            base, _, slug = ent.rpartition("#")
            t, i, rtype, rid = base.split("/", 3)
            pt = pr.split("/", 3)
            self.by_ent.setdefault((i, rtype, slug), []).append(
                (unquote(rid), pt[2], unquote(pt[3]), bool(g.get("direct", True))))

    def of_type(self, rtype, inst=INST):
        pre = "%s/%s/%s/" % (TENANT, inst, rtype)
        return {k: r for k, r in self.resources.items() if k.startswith(pre)}

    def ids(self, rtype, inst=INST):
        return {split_key(k)[1] for k in self.of_type(rtype, inst)}

    def pairs(self, rtype, slug, direct=None, ptype=None, inst=INST):
        """{(resource id, principal id)} of grants on rtype#slug."""
        return {(rid, pid) for rid, pt, pid, d in self.by_ent.get((inst, rtype, slug), ())
                if (direct is None or d == direct) and (ptype is None or pt == ptype)}

    def grant(self, ent, principal):
        return self.index.get((ent, principal))


class Expected:
    """What the graph must hold, computed from the truth file."""

    def __init__(self, truth, skip_customer=False, skip_inactive=False,
                 skip_participants=False, keys=None):
        jira = truth["jira"]

        def keep(u):
            if skip_customer and u["accountType"] == "customer":
                return False
            if skip_inactive and not u["active"]:
                return False
            return True
        self.users = {u["accountId"]: u for u in jira["users"] if keep(u)}
        # A group the API shows without a groupId is keyed by its name.
        gk = {g["groupId"]: group_key(g) for g in jira["groups"]}
        self.groups = {gk[g["groupId"]]: g for g in jira["groups"]}
        self.members = {(gk[gid], aid) for gid, ms in jira["group_members"].items()
                        for aid in ms if aid in self.users}
        projects = [p for p in jira["projects"]
                    if keys is None or p["key"] in keys]
        self.projects = {p["id"]: p for p in projects}
        self.leads = {(p["id"], p["lead"]) for p in projects if p["lead"] in self.users}
        self.roles = set()
        self.assigned_users, self.assigned_groups = set(), set()
        self.part_users, self.part_groups, self.participants = set(), set(), set()
        for p in projects:
            for r in p["roles"]:
                rid = "%s:%s" % (p["id"], r["id"])
                self.roles.add(rid)
                for aid in r["users"]:
                    if aid in self.users:
                        self.assigned_users.add((rid, aid))
                        self.part_users.add((p["id"], aid))
                for gid in r["groups"]:
                    self.assigned_groups.add((rid, gk[gid]))
                    self.part_groups.add((p["id"], gk[gid]))
            self.participants |= {(p["id"], a) for a in p["participants"] if a in self.users}
        if skip_participants:
            self.part_users, self.part_groups, self.participants = set(), set(), set()


ACCOUNT_TYPES = {"atlassian": "human", "app": "service", "customer": "customer"}


class JiraHelpers:
    """Fake, config and CLI helpers for a TestCase (test_tickets.py too)."""
    maxDiff = 4000

    def start_fake(self, profile="tiny", extra=(), name="fake"):
        d = self.path(name)
        os.makedirs(d, exist_ok=True)
        fake = lib.Fake(d, profile=profile, extra=list(extra))
        self.addCleanup(fake.stop)
        return fake

    def secret_ref(self, value):
        """${file:...} for a secret, as operators are told to write it."""
        path = self.path("secret-%d" % (abs(hash(value)) % 10**8))
        with open(path, "w") as f:
            f.write(value)
        return "${file:%s}" % path

    def inst_conf(self, fake, provisioning=False, **opts):
        creds = fake.creds
        options = {"url": fake.base, "email": creds["jira_email"],
                   "api_token": creds["jira_api_token"], "gateway_url": fake.base}
        options.update(opts)
        options["api_token"] = self.secret_ref(options["api_token"])
        return {"plugin": "jira_cloud", "provisioning": provisioning,
                "options": options}

    def config(self, fake, provisioning=False, extra="", name="connhost.yaml",
               **opts):
        insts = {INST: self.inst_conf(fake, provisioning, **opts)}
        return lib.write_config(self.path(name), {TENANT: insts},
                                plugin_dir=lib.PLUGINS, extra=extra)

    def secrets(self, fake):
        c = fake.creds
        return [c["jira_api_token"], c.get("jira_scoped_api_token", "")]

    def assert_no_secret(self, fake, *texts):
        for s in self.secrets(fake):
            if not s:
                continue
            for t in texts:
                self.assertNotIn(s, t, "a secret leaked")

    def sync(self, cfg, fake=None, args=(), timeout=lib.DEFAULT_TIMEOUT,
             out=None, label=None):
        out = out or self.path("graph.json")
        t0 = time.monotonic()
        r = lib.run(["-c", cfg, "sync", "-o", out] + list(args), timeout=timeout)
        dt = time.monotonic() - t0
        if label:
            TIMES[label] = dt
            sys.stderr.write("[timing] %s: %.1f s\n" % (label, dt))
        if fake:
            graph_text = ""
            if os.path.exists(out):
                with open(out, encoding="utf-8") as f:
                    graph_text = f.read()
            self.assert_no_secret(fake, r.out, r.err, graph_text)
        return r, out

    def sync_ok(self, cfg, fake, **kw):
        r, out = self.sync(cfg, fake, **kw)
        self.assertEqual(r.rc, 0, r)
        return Graph(out)

    def cli(self, fake, args, timeout=120):
        r = lib.run(args, timeout=timeout)
        self.assert_no_secret(fake, r.out, r.err)
        return r

    def assert_matches(self, g, exp):
        """The graph holds exactly what the truth says."""
        users = g.of_type("user")
        self.assertEqual({split_key(k)[1] for k in users}, set(exp.users))
        for key, r in users.items():
            u = exp.users[split_key(key)[1]]
            self.assertEqual(r.get("status"), "enabled" if u["active"] else "disabled", key)
            self.assertEqual(r.get("account_type"), ACCOUNT_TYPES[u["accountType"]], key)
            emails = r.get("emails") or []
            self.assertEqual(emails, [u["emailAddress"]] if u["emailAddress"] else [], key)
            self.assertIn("atlassian_account_id=" + u["accountId"], r.get("match_keys") or [])
            self.assertEqual(r.get("display_name"), u["displayName"])
        self.assertEqual(g.ids("group"), set(exp.groups))
        self.assertEqual(g.ids("project"), set(exp.projects))
        self.assertEqual(g.ids("project_role"), exp.roles)
        # group members: every page, inactive included and marked
        self.assertEqual(g.pairs("group", "member", direct=True), exp.members)
        for gid, aid in exp.members:
            gr = g.grant(ekey("group", gid, "member"), rkey("user", aid))
            inactive = not exp.users[aid]["active"]
            prof = gr.get("profile") or {}
            self.assertEqual(prof.get("active", True), not inactive, (gid, aid))
        self.assertEqual(g.pairs("project", "lead"), exp.leads)
        self.assertEqual(g.pairs("project_role", "assigned", direct=True, ptype="user"),
                         exp.assigned_users)
        self.assertEqual(g.pairs("project_role", "assigned", direct=True, ptype="group"),
                         exp.assigned_groups)
        self.assertEqual(g.pairs("project", "participate", direct=True, ptype="user"),
                         exp.part_users)
        self.assertEqual(g.pairs("project", "participate", direct=True, ptype="group"),
                         exp.part_groups)
        self.assertEqual(g.pairs("project", "participate", ptype="user"), exp.participants)
        # role assignments through groups reach every (listed) member
        by_group = {}
        for gid, aid in exp.members:
            by_group.setdefault(gid, set()).add(aid)
        via_groups = {(rid, aid) for rid, gid in exp.assigned_groups
                      for aid in by_group.get(gid, ())}
        self.assertEqual(g.pairs("project_role", "assigned", ptype="user"),
                         exp.assigned_users | via_groups)



class JiraTest(JiraHelpers, lib.TempDirTest):
    # ---- sync ------------------------------------------------------------
    def test_demo_sync_matches_truth(self):
        fake = self.start_fake("demo")
        g = self.sync_ok(self.config(fake), fake, label="demo sync")
        exp = Expected(fake.truth)
        self.assert_matches(g, exp)
        # the demo tenant has every kind of account and inactive members
        kinds = {r.get("account_type") for r in g.of_type("user").values()}
        self.assertEqual(kinds, {"human", "service", "customer"})
        self.assertTrue(any(not exp.users[a]["active"] for _, a in exp.members))
        # group names with spaces, slashes and non-ASCII come through intact
        names = {r["display_name"] for r in g.of_type("group").values()}
        self.assertEqual(names, {x["name"] for x in fake.truth["jira"]["groups"]})

    def test_groups_without_group_id_match_truth(self):
        """GroupDetails.groupId is nullable and ProjectRoleGroup.groupId
        optional: such groups are still listed (keyed "name:<name>"), their
        members read by groupname, and role actors naming a group only by
        name point at the same key as the listing, so every participant
        inherited through them is there."""
        fake = self.start_fake("demo", extra=["--groups-without-id", "3",
                                              "--omit-actor-group-ids"])
        jira = fake.truth["jira"]
        hidden = [g for g in jira["groups"] if g["groupIdHidden"]]
        self.assertEqual(len(hidden), 3)
        # the case is exercised: hidden groups have members and are actors
        actor_groups = {gid for p in jira["projects"] for r in p["roles"] for gid in r["groups"]}
        self.assertTrue(any(jira["group_members"][g["groupId"]] for g in hidden))
        self.assertTrue(any(g["groupId"] in actor_groups for g in hidden))
        r, out = self.sync(self.config(fake), fake)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("groupId", r.err, r)
        g = Graph(out)
        self.assert_matches(g, Expected(fake.truth))
        for grp in hidden:
            res = g.resources[rkey("group", "name:" + grp["name"])]
            self.assertEqual(res.get("display_name"), grp["name"])
        reqs = [unquote(x.get("query", "")) for x in fake.requests()
                if x.get("path") == "/rest/api/3/group/member"]
        for grp in hidden:
            self.assertIn("groupname=" + grp["name"], "\n".join(reqs))

    def test_check_ok(self):
        fake = self.start_fake()
        r = self.cli(fake, ["-c", self.config(fake), "check"])
        self.assertEqual(r.rc, 0, r)

    def test_page_size_one(self):
        fake = self.start_fake("tiny")
        g = self.sync_ok(self.config(fake, page_size=1), fake)
        self.assert_matches(g, Expected(fake.truth))
        reqs = [q for q in fake.requests() if "users/search" in q.get("path", "")]
        # one request per user plus the empty page that ends the listing
        self.assertGreaterEqual(len(reqs), len(fake.truth["jira"]["users"]) + 1)

    def test_page_size_max_is_clamped_per_endpoint(self):
        fake = self.start_fake("demo")
        g = self.sync_ok(self.config(fake, page_size=5000), fake)
        self.assert_matches(g, Expected(fake.truth))
        caps = {"/users/search": "1000", "/group/member": "50",
                "/group/bulk": "50", "/project/search": "100"}
        seen = set()
        for q in fake.requests():
            path = q.get("path", "")
            for suffix, cap in caps.items():
                if path.endswith(suffix):
                    self.assertEqual(query(q).get("maxResults"), [cap], q)
                    seen.add(suffix)
        self.assertEqual(seen, set(caps))

    def test_filters(self):
        fake = self.start_fake("demo")
        keys = ["OPS", "ALL"]
        cfg = self.config(fake, skip_customer_users=True, skip_inactive_users=True,
                          skip_project_participants=True, project_keys=keys)
        r, out = self.sync(cfg, fake)
        self.assertEqual(r.rc, 0, r)
        g = Graph(out)
        exp = Expected(fake.truth, skip_customer=True, skip_inactive=True,
                       skip_participants=True, keys=keys)
        self.assert_matches(g, exp)
        self.assertEqual(len(g.ids("project")), 2)
        # skipped accounts are never grant principals either (nothing dropped)
        users = set(rkey("user", a) for a in exp.users)
        for gr in g.grants:
            if gr["principal"].split("/")[2] == "user":
                self.assertIn(gr["principal"], users)
        self.assertNotIn("never listed", r.err)

    def test_project_keys_over_50_go_in_slices(self):
        fake = self.start_fake("tiny")
        keys = ["OPS"] + ["NX%d" % i for i in range(55)] + ["all"]
        g = self.sync_ok(self.config(fake, project_keys=keys), fake)
        self.assert_matches(g, Expected(fake.truth, keys={"OPS", "ALL"}))
        searches = [query(q) for q in fake.requests()
                    if q["path"].endswith("/project/search")]
        self.assertEqual(len(searches), 2, searches)
        self.assertTrue(all(len(q.get("keys", [])) <= 50 for q in searches))
        self.assertEqual(sorted(k for q in searches for k in q["keys"]), sorted(keys))

    def test_medium_project_over_1000_participants(self):
        fake = self.start_fake("demo", ["--users", "1500", "--groups", "40",
                                        "--projects", "20"])
        g = self.sync_ok(self.config(fake), fake, label="medium sync (1500 users)")
        exp = Expected(fake.truth)
        self.assert_matches(g, exp)
        big = [p for p in fake.truth["jira"]["projects"] if len(p["participants"]) > 1000]
        self.assertTrue(big, "the fake has no project with >1000 participants")
        for p in big:
            got = {a for pid, a in g.pairs("project", "participate", ptype="user")
                   if pid == p["id"]}
            self.assertGreater(len(got), 1000)
            self.assertEqual(got, {a for a in p["participants"] if a in exp.users})

    @unittest.skipUnless(SLOW, "CONNHOST_SLOW_TESTS=0 skips the large tenant")
    def test_large_sync_matches_truth(self):
        fake = self.start_fake("large")
        g = self.sync_ok(self.config(fake), fake, timeout=1200, label="large sync")
        self.assert_matches(g, Expected(fake.truth))

    def test_group_deleted_mid_sync_is_a_warning(self):
        """A group deleted between its listing and its member pages: a
        warning, the sync succeeds, every other membership is there."""
        import subprocess
        import urllib.request
        fake = self.start_fake("tiny", ["--fault", "delay,ms=1500:/group/member$"])
        victim = next(g for g in fake.truth["org"]["groups"]
                      if not g["external_synced"] and g["members"])
        out = self.path("graph.json")
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
        p = subprocess.Popen([lib.CONNHOST, "-c", self.config(fake), "sync", "-o", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 30
            while not any(q["path"].endswith("/group/bulk") for q in fake.requests()):
                self.assertLess(time.monotonic(), deadline, "no group listing")
                time.sleep(0.05)
            url = "%s/admin/v2/orgs/%s/directories/%s/groups/%s" % (
                fake.base, fake.creds["org_id"], fake.truth["org"]["directory_id"], victim["id"])
            req = urllib.request.Request(url, method="DELETE", headers={
                "Authorization": "Bearer " + fake.creds["org_api_key"]})
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.assertEqual(resp.status, 204)
            stdout, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, stderr)
        self.assertIn("group %s is gone (HTTP 404)" % victim["id"], stderr)
        g = Graph(out)
        exp = Expected(fake.truth)
        self.assertEqual(g.pairs("group", "member"),
                         {m for m in exp.members if m[0] != victim["id"]})
        self.assertEqual(g.pairs("project", "lead"), exp.leads)

    def test_tls_with_ca_file(self):
        cert, key = self.path("cert.pem"), self.path("key.pem")
        import subprocess
        gen = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
             "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
             "-keyout", key, "-out", cert], capture_output=True, timeout=60)
        if gen.returncode != 0:
            self.skipTest("openssl cannot make a certificate: %s" % gen.stderr[-200:])
        fake = self.start_fake("tiny", ["--tls-cert", cert, "--tls-key", key])
        base = "https://127.0.0.1:%d" % fake.port
        cfg = self.config(fake, url=base, gateway_url=base, name="notrust.yaml")
        r, _ = self.sync(cfg, fake)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("acme/jira (jira_cloud): FAILED", r.err)
        cfg = self.config(fake, url=base, gateway_url=base, ca_file=cert)
        self.assert_matches(self.sync_ok(cfg, fake), Expected(fake.truth))

    def test_max_requests_per_second(self):
        fake = self.start_fake("tiny")
        t0 = time.monotonic()
        self.sync_ok(self.config(fake), fake)
        fast = time.monotonic() - t0
        n = settled_count(fake)
        t0 = time.monotonic()
        self.sync_ok(self.config(fake, max_requests_per_second="12.5"), fake)
        slow = time.monotonic() - t0
        # n requests at 12.5 per second take at least (n - 1) / 12.5 s
        self.assertGreaterEqual(slow, (n - 1) / 12.5 * 0.9, (fast, slow, n))
        self.assertLess(fast, slow)
        r = self.cli(fake, ["-c", self.config(fake, max_requests_per_second="fast"),
                            "check"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("max_requests_per_second", r.out + r.err)

    # ---- pagination faults ------------------------------------------------
    def write_previous(self, path):
        with open(path, "w") as f:
            f.write('{"previous": true}\n')

    def assert_previous(self, path):
        with open(path) as f:
            self.assertEqual(f.read(), '{"previous": true}\n')

    def test_empty_page_not_last_fails_only_instance(self):
        fake = self.start_fake("tiny", ["--fault", "endless,mode=empty:group/member"])
        out = self.path("graph.json")
        self.write_previous(out)
        r, _ = self.sync(self.config(fake), fake, out=out, timeout=120)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("empty page not marked last", r.err)
        self.assert_previous(out)

    def test_endless_page_fails_instance_partial(self):
        good = self.start_fake("tiny", name="good")
        bad = self.start_fake("tiny", ["--fault", "endless:users/search"], name="bad")
        insts = {"good": self.inst_conf(good), INST: self.inst_conf(bad)}
        cfg = lib.write_config(self.path("two.yaml"), {TENANT: insts},
                               plugin_dir=lib.PLUGINS)
        out = self.path("graph.json")
        self.write_previous(out)
        r, _ = self.sync(cfg, bad, out=out, args=["--max-pages", "30"], timeout=120)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("acme/jira", r.err)
        self.assert_previous(out)
        # --allow-partial writes the healthy instance only
        r, _ = self.sync(cfg, bad, out=out, args=["--max-pages", "30", "--allow-partial"],
                         timeout=120)
        self.assertEqual(r.rc, 3, r)
        g = Graph(out)
        self.assertEqual(g.ids("user", "good"), {u["accountId"] for u in good.truth["jira"]["users"]})
        self.assertEqual(g.ids("user", INST), set())

    def test_a_failed_instance_retries_nothing(self):
        """Once an instance has failed, its requests still waiting for a
        retry (a Retry-After of 30 s) are dropped, not sent again for
        minutes against a server that throttles."""
        fake = self.start_fake("tiny", ["--fault", "403,nth=1:/group/member$",
                                        "--fault", "429,after=1,retry_after=30:/group/member$"])
        t0 = time.monotonic()
        r, _ = self.sync(self.config(fake), fake, timeout=120)
        took = time.monotonic() - t0
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("403", r.err)
        asked = [q["query"] for q in fake.requests() if q["path"].endswith("/group/member")]
        self.assertEqual(len(asked), len(set(asked)), "a request was retried after the failure")
        self.assertLess(took, 30, "the run waited out a Retry-After of a failed instance")

    def test_cycling_listing_fetches_each_group_once(self):
        """A group listing that pages in circles (never isLast, wrapping
        around) meets the same groups again on every lap: their members
        are fetched once, not once per lap, and each counts once."""
        fake = self.start_fake("tiny", ["--fault", "endless:/group/bulk$"])
        groups = len(fake.truth["jira"]["groups"])
        r, _ = self.sync(self.config(fake), fake, args=["--max-pages", "60"], timeout=120)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("more than 60 pages", r.err)
        firsts = [q for q in fake.requests() if q["path"].endswith("/group/member")
                  and "startAt=0&" in q.get("query", "") + "&"]
        self.assertEqual(len({q["query"] for q in firsts}), groups)
        self.assertEqual(len(firsts), groups, "a group's members fetched again per lap")

    def test_429_bursts_recovered(self):
        # The limiter announces itself only when it refuses, so the first
        # wave (8 group/member and 9 role requests, sent unpaced) must meet
        # it, on a machine of any speed and wherever the one-second windows
        # fall: a limit the client learnt from a 200 could be paced around.
        fake = self.start_fake("tiny", ["--burst-limit", "2", "--burst-headers", "refusals"])
        g = self.sync_ok(self.config(fake), fake, timeout=240)
        self.assert_matches(g, Expected(fake.truth))
        self.assertTrue(any(q.get("status") == 429 for q in fake.requests()),
                        "the burst limit never fired")

    def test_429_and_503_with_retry_after_recovered(self):
        fake = self.start_fake("tiny", [
            "--fault", "429,count=2,retry_after=1:users/search",
            "--fault", "503,count=2,retry_after=1:group/member",
            "--fault", "500,nth=2:project/search"])
        g = self.sync_ok(self.config(fake), fake, timeout=120)
        self.assert_matches(g, Expected(fake.truth))

    def sync_with_fault(self, fault):
        fake = self.start_fake("tiny", ["--fault", fault])
        out = self.path("graph.json")
        self.write_previous(out)
        r, _ = self.sync(self.config(fake), fake, out=out, timeout=120)
        self.assertNotIn("Segmentation", r.err)
        return fake, r, out

    def assert_recovered(self, fault):
        fake, r, out = self.sync_with_fault(fault)
        self.assertEqual(r.rc, 0, r)
        self.assert_matches(Graph(out), Expected(fake.truth))
        return r

    def assert_clean_failure(self, fault, words):
        fake, r, out = self.sync_with_fault(fault)
        self.assertEqual(r.rc, 1, r)
        self.assertTrue(any(w in r.err for w in words), r)
        self.assertIn("acme/jira (jira_cloud): FAILED", r.err)
        self.assert_previous(out)

    def test_truncated_body_recovered(self):
        self.assert_recovered("truncate,nth=2:group/member")

    def test_truncated_body_every_time_fails_cleanly(self):
        self.assert_clean_failure("truncate:project/search",
                                  ["transfer closed", "truncated"])

    def test_malformed_json_recovered(self):
        r = self.assert_recovered("badjson,nth=1:project/search")
        self.assertIn("malformed JSON", r.err)
        self.assertIn("sending the request again", r.err)

    def test_malformed_json_every_time_fails_cleanly(self):
        self.assert_clean_failure("badjson:group/member", ["malformed JSON"])

    def test_dropped_connection_recovered(self):
        self.assert_recovered("drop,nth=1:users/search")

    # ---- credentials -------------------------------------------------------
    def test_wrong_token(self):
        fake = self.start_fake()
        cfg = self.config(fake, api_token="not-the-token-1234567")
        r = self.cli(fake, ["-c", cfg, "check"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("credentials refused (HTTP 401): check email and api_token",
                      r.out + r.err)
        self.assertNotIn("not-the-token-1234567", r.out + r.err)
        r, _ = self.sync(cfg, fake)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("credentials refused", r.err)

    def test_scoped_token_on_site_url_names_the_gateway(self):
        fake = self.start_fake()
        scoped = fake.creds["jira_scoped_api_token"]
        gw = fake.truth["urls"]["jira_gateway"]
        cfg = self.config(fake, api_token=scoped)
        r = self.cli(fake, ["-c", cfg, "check"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("scoped token", r.out + r.err)
        self.assertIn("set url to " + gw, r.out + r.err)
        # a sync with that config fails the same clear way
        r, _ = self.sync(cfg, fake)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("set url to " + gw, r.err)
        # with the gateway URL the same token works, sync included
        cfg = self.config(fake, api_token=scoped, url=gw, name="gw.yaml")
        r = self.cli(fake, ["-c", cfg, "check"])
        self.assertEqual(r.rc, 0, r)
        self.assert_matches(self.sync_ok(cfg, fake), Expected(fake.truth))

    def test_missing_permission_403(self):
        """An account without Browse users and groups: Jira's 403 text comes
        through. The fake has no 403 switch, so a stub answers it."""
        stub = Stub403()
        self.addCleanup(stub.stop)
        insts = {INST: {"plugin": "jira_cloud", "options": {
            "url": stub.base, "email": "someone@example.com",
            "api_token": self.secret_ref("stub-token-abcdef")}}}
        cfg = lib.write_config(self.path("stub.yaml"), {TENANT: insts},
                               plugin_dir=lib.PLUGINS)
        r = lib.run(["-c", cfg, "check"], timeout=60)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("HTTP 403", r.out + r.err)
        self.assertIn(Stub403.MESSAGE, r.out + r.err)
        self.assertNotIn("stub-token-abcdef", r.out + r.err)
        r, _ = self.sync(cfg, timeout=60)
        self.assertEqual(r.rc, 1, r)
        self.assertIn(Stub403.MESSAGE, r.err)

    # ---- provisioning ------------------------------------------------------
    def write(self, fake, cfg, args, expect_rc=0, dry=False):
        before = settled_count(fake)
        r = self.cli(fake, ["-c", cfg] + args + (["--dry-run"] if dry else []))
        self.assertEqual(r.rc, expect_rc, r)
        if dry:
            self.assertEqual(settled_count(fake), before,
                             "a dry run sent a request: %r" % r)
            self.assertIn("dry run:", r.out, r)
        return r

    def pick_member_case(self, truth):
        """A group anyone may be added to, and an active human not in it."""
        org_synced = {g["id"] for g in truth["org"]["groups"] if g["external_synced"]}
        members = truth["jira"]["group_members"]
        for grp in truth["jira"]["groups"]:
            gid = grp["groupId"]
            if gid in org_synced:
                continue
            for u in truth["jira"]["users"]:
                if u["active"] and u["accountType"] == "atlassian" and \
                        u["accountId"] not in members.get(gid, []):
                    return gid, u["accountId"]
        self.fail("no group/user pair to test with")

    def test_group_membership_grant_revoke(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        gid, aid = self.pick_member_case(fake.truth)
        ent, pr = ekey("group", gid, "member"), rkey("user", aid)
        args = ["grant", "--entitlement", ent, "--principal", pr]
        self.write(fake, cfg, args, dry=True)
        self.assertNotIn((gid, aid), self.sync_ok(cfg, fake).pairs("group", "member"))
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("done:"), r)
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("already:"), r)
        self.assertIn((gid, aid), self.sync_ok(cfg, fake).pairs("group", "member"))
        args[0] = "revoke"
        self.write(fake, cfg, args, dry=True)
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("done:"), r)
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("already:"), r)
        self.assertNotIn((gid, aid), self.sync_ok(cfg, fake).pairs("group", "member"))

    def test_role_assignment_users_and_groups(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        proj = fake.truth["jira"]["projects"][0]
        role = proj["roles"][0]
        rid = "%s:%s" % (proj["id"], role["id"])
        user = next(u["accountId"] for u in fake.truth["jira"]["users"]
                    if u["active"] and u["accountType"] == "atlassian"
                    and u["accountId"] not in role["users"])
        group = next(g["groupId"] for g in fake.truth["jira"]["groups"]
                     if g["groupId"] not in role["groups"])
        ent = ekey("project_role", rid, "assigned")
        for ptype, pid in (("user", user), ("group", group)):
            args = ["grant", "--entitlement", ent, "--principal", rkey(ptype, pid)]
            self.write(fake, cfg, args, dry=True)
            self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
            self.assertTrue(self.write(fake, cfg, args).out.startswith("already:"))
        g = self.sync_ok(cfg, fake)
        self.assertIn((rid, user), g.pairs("project_role", "assigned", direct=True))
        self.assertIn((rid, group), g.pairs("project_role", "assigned", direct=True))
        self.assertIn((proj["id"], user), g.pairs("project", "participate", direct=True))
        self.assertIn((proj["id"], group), g.pairs("project", "participate", direct=True))
        for ptype, pid in (("user", user), ("group", group)):
            args = ["revoke", "--entitlement", ent, "--principal", rkey(ptype, pid)]
            self.write(fake, cfg, args, dry=True)
            self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
            self.assertTrue(self.write(fake, cfg, args).out.startswith("already:"))
        g = self.sync_ok(cfg, fake)
        self.assertNotIn((rid, user), g.pairs("project_role", "assigned", direct=True))
        self.assertNotIn((rid, group), g.pairs("project_role", "assigned", direct=True))

    def test_writes_to_group_without_group_id_go_by_name(self):
        """Membership and role-actor writes on a group Jira shows without a
        groupId use the name forms the spec takes (groupname=, "group"),
        and the dry run prints exactly those requests."""
        fake = self.start_fake(extra=["--groups-without-id", "2"])
        cfg = self.config(fake, provisioning=True)
        truth = fake.truth["jira"]
        synced = {g["id"] for g in fake.truth["org"]["groups"] if g["external_synced"]}
        grp = next(g for g in truth["groups"] if g["groupIdHidden"] and g["groupId"] not in synced)
        gkey, name = "name:" + grp["name"], grp["name"]
        aid = next(u["accountId"] for u in truth["users"]
                   if u["active"] and u["accountType"] == "atlassian"
                   and u["accountId"] not in truth["group_members"][grp["groupId"]])
        qname = query_value(name)
        ent, pr = ekey("group", gkey, "member"), rkey("user", aid)
        args = ["grant", "--entitlement", ent, "--principal", pr]
        r = self.write(fake, cfg, args, dry=True)
        self.assertIn("DRY RUN: POST %s/rest/api/3/group/user?groupname=%s\n" % (fake.base, qname), r.out)
        self.assertIn(json.dumps({"accountId": aid}, separators=(",", ":")), r.out)
        self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
        self.assertTrue(self.write(fake, cfg, args).out.startswith("already:"))
        self.assertIn((gkey, aid), self.sync_ok(cfg, fake).pairs("group", "member"))
        args[0] = "revoke"
        r = self.write(fake, cfg, args, dry=True)
        self.assertIn("DRY RUN: DELETE %s/rest/api/3/group/user?groupname=%s&accountId=%s\n"
                      % (fake.base, qname, query_value(aid)), r.out)
        self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
        self.assertNotIn((gkey, aid), self.sync_ok(cfg, fake).pairs("group", "member"))

        proj = truth["projects"][0]
        role = next(r for r in proj["roles"] if grp["groupId"] not in r["groups"])
        rid = "%s:%s" % (proj["id"], role["id"])
        ent, pr = ekey("project_role", rid, "assigned"), rkey("group", gkey)
        args = ["grant", "--entitlement", ent, "--principal", pr]
        r = self.write(fake, cfg, args, dry=True)
        self.assertIn("DRY RUN: POST %s/rest/api/3/project/%s/role/%s\n%s\n" % (
            fake.base, proj["id"], role["id"],
            json.dumps({"group": [name]}, ensure_ascii=False, separators=(",", ":"))), r.out)
        self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
        self.assertTrue(self.write(fake, cfg, args).out.startswith("already:"))
        g = self.sync_ok(cfg, fake)
        self.assertIn((rid, gkey), g.pairs("project_role", "assigned", direct=True))
        self.assertIn((proj["id"], gkey), g.pairs("project", "participate", direct=True))
        members = set(truth["group_members"][grp["groupId"]]) & {u["accountId"] for u in truth["users"]}
        self.assertTrue(members)
        self.assertTrue(members <= {a for p, a in g.pairs("project", "participate", ptype="user")
                                    if p == proj["id"]})
        args[0] = "revoke"
        r = self.write(fake, cfg, args, dry=True)
        self.assertIn("DRY RUN: DELETE %s/rest/api/3/project/%s/role/%s?group=%s\n" % (
            fake.base, proj["id"], role["id"], qname), r.out)
        self.assertTrue(self.write(fake, cfg, args).out.startswith("done:"))
        self.assertTrue(self.write(fake, cfg, args).out.startswith("already:"))
        g = self.sync_ok(cfg, fake)
        self.assertNotIn((rid, gkey), g.pairs("project_role", "assigned", direct=True))

    def test_lead_and_participate_not_grantable(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        proj = fake.truth["jira"]["projects"][0]
        user = fake.truth["jira"]["users"][1]["accountId"]
        for slug in ("lead", "participate"):
            r = self.cli(fake, ["-c", cfg, "grant", "--entitlement",
                                ekey("project", proj["id"], slug),
                                "--principal", rkey("user", user)])
            self.assertEqual(r.rc, 2, r)

    def test_provision_account(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True)
        email = "new.hire.e2e@example.com"
        args = ["provision", "--tenant", TENANT, "--instance", INST,
                "--email", email, "--attr", "products=jira-software"]
        self.write(fake, cfg, args, dry=True)
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("done:"), r)
        key = r.out.split("[", 1)[1].split("]", 1)[0]
        self.assertTrue(key.startswith("%s/%s/user/" % (TENANT, INST)), r)
        g = self.sync_ok(cfg, fake)
        self.assertIn(key, g.resources)
        self.assertEqual(g.resources[key].get("status"), "enabled")
        # provisioning the same address again is not an error
        r = self.write(fake, cfg, args)
        self.assertIn(key, r.out)
        r = self.cli(fake, ["-c", cfg, "provision", "--tenant", TENANT, "--instance",
                            INST, "--email", email, "--attr", "colour=blue"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("colour", r.err)

    def test_create_ticket(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=True, ticket_project_key="OPS",
                          project_keys=["OPS", "ALL"])
        args = ["action", "--tenant", TENANT, "--instance", INST, "--name",
                "create_ticket", "--arg", "summary=Give Zoë access to OPS",
                "--arg", "description=Requested by the access review.\nTwo lines."]
        self.write(fake, cfg, args, dry=True)
        r = self.write(fake, cfg, args)
        self.assertTrue(r.out.startswith("done:"), r)
        self.assertIn("[OPS-", r.out)
        r = self.write(fake, cfg, args + ["--arg", "project_key=ALL", "--arg",
                                          "issue_type=Story"])
        self.assertIn("[ALL-", r.out)
        # a project outside project_keys is refused before any request
        before = settled_count(fake)
        r = self.cli(fake, ["-c", cfg] + args + ["--arg", "project_key=NOPE"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("project_keys", r.err)
        self.assertEqual(settled_count(fake), before)

    def test_writes_refused_without_provisioning(self):
        fake = self.start_fake()
        cfg = self.config(fake, provisioning=False)
        gid, aid = self.pick_member_case(fake.truth)
        before = settled_count(fake)
        # a dry run sends nothing, so it needs no provisioning: true
        r = self.write(fake, cfg, ["grant", "--entitlement", ekey("group", gid, "member"),
                                   "--principal", rkey("user", aid)], dry=True)
        for args in (["grant", "--entitlement", ekey("group", gid, "member"),
                      "--principal", rkey("user", aid)],
                     ["revoke", "--entitlement", ekey("group", gid, "member"),
                      "--principal", rkey("user", aid)],
                     ["provision", "--tenant", TENANT, "--instance", INST,
                      "--email", "x@example.com"],
                     ["action", "--tenant", TENANT, "--instance", INST, "--name",
                      "create_ticket", "--arg", "summary=x", "--arg", "project_key=OPS"]):
            r = self.cli(fake, ["-c", cfg] + args)
            self.assertEqual(r.rc, 2, r)
            self.assertIn("provisioning: true", r.err)
        self.assertEqual(settled_count(fake), before)


def query_value(text):
    """A query value as the plugin sends it (curl_easy_escape: all but
    unreserved characters percent-encoded)."""
    return quote(text, safe="-._~")


def settled_count(fake):
    """How many requests the fake logged, once its log stopped growing (it
    appends a line just after answering)."""
    last, deadline = -1, time.monotonic() + 3
    while time.monotonic() < deadline:
        n = len(fake.requests())
        if n == last:
            return n
        last = n
        time.sleep(0.15)
    return last


class Stub403:
    """A loopback server answering every Jira call with the real 403 body."""
    MESSAGE = "Browse users and groups permission is required to view users."

    def __init__(self):
        import http.server
        import threading
        body = json.dumps({"errorMessages": [self.MESSAGE], "errors": {}}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server naming)
                self.send_response(403)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def query(req):
    """The query of a logged request as {name: [values]}."""
    import urllib.parse
    if isinstance(req.get("query"), dict):
        return {k: v if isinstance(v, list) else [v] for k, v in req["query"].items()}
    raw = req.get("query") or req.get("url", "").partition("?")[2] or \
        req.get("path_qs", "").partition("?")[2]
    return urllib.parse.parse_qs(raw, keep_blank_values=True)


if __name__ == "__main__":
    try:
        lib.main()
    finally:
        if TIMES:
            sys.stderr.write("timings: %s\n" % json.dumps(TIMES))
