#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of atlassian_org.so: the built connhost binary with the
real plugin against the fake Atlassian Cloud on loopback.

The default run covers the demo and large tenants, the join with
jira_cloud (when built), cursor edges, every write, SCIM and the error
paths. CONNHOST_SKIP_LARGE=1 leaves out the large sync (about a minute).
"""
import json
import os
import shutil
import time
import unittest
import urllib.parse
import urllib.request

import lib

TENANT = "acme"
INST = "org"
# The secrets reach connhost through the environment only, so a test can
# look for them in everything connhost printed or wrote.
ENV_ORG_KEY = "AO_TEST_ORG_KEY"
ENV_SCIM_KEY = "AO_TEST_SCIM_KEY"


# A key component as the host prints it (docs/graph-format.md).
enc = lib.key_encode


def rkey(rtype, rid, tenant=TENANT, inst=INST):
    return "/".join(enc(x) for x in (tenant, inst, rtype, rid))


def ekey(rtype, rid, slug, **kw):
    return rkey(rtype, rid, **kw) + "#" + enc(slug)


def plugin_dir(root, names):
    """A plugin directory holding just the named plugins."""
    path = os.path.join(root, "plugins")
    os.makedirs(path, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(lib.PLUGINS, name + ".so"), os.path.join(path, name + ".so"))
    return path


def have_plugin(name):
    return os.path.exists(os.path.join(lib.PLUGINS, name + ".so"))


class Expected:
    """What a sync of the fake's organization must produce, from its truth."""

    def __init__(self, truth, tenant=TENANT, inst=INST):
        org = truth["org"]
        self.org_id = org["org_id"]
        self.platform = org["platform_resource_id"]
        self.accounts = {a["account_id"]: a for a in org["accounts"]}
        self.groups = {g["id"]: g for g in org["groups"]}
        self.workspaces = {w["id"]: w for w in org["workspaces"]}
        k = dict(tenant=tenant, inst=inst)
        self.members = {(ekey("group", g, "member", **k), rkey("user", a, **k))
                        for g, grp in self.groups.items() for a in grp["members"]
                        if a in self.accounts}
        self.direct = set()
        self.derived = set()
        for ra in org["role_assignments"]:
            if ra["resource_id"] == self.platform:
                ent = ekey("organization", self.org_id, "role:" + ra["role"], **k)
            else:
                ent = ekey("workspace", ra["resource_id"], "role:" + ra["role"], **k)
            if ra["principal_type"] == "user":
                self.direct.add((ent, rkey("user", ra["principal_id"], **k)))
            else:
                self.direct.add((ent, rkey("group", ra["principal_id"], **k)))
                for m in self.groups[ra["principal_id"]]["members"]:
                    if m in self.accounts:
                        self.derived.add((ent, rkey("user", m, **k)))
        self.derived -= self.direct


class OrgTest(lib.TempDirTest):
    profile = "tiny"
    fake_extra = ()

    def setUp(self):
        super().setUp()
        self.plugins = plugin_dir(self.tmp, ["atlassian_org"])
        self.fake = self.start_fake(self.profile, self.fake_extra)

    def tearDown(self):
        self.fake.stop()
        super().tearDown()

    def start_fake(self, profile, extra=(), sub="fake"):
        wd = self.path(sub)
        os.makedirs(wd, exist_ok=True)
        fake = lib.Fake(wd, profile=profile, extra=list(extra))
        self.addCleanup(fake.stop)
        return fake

    def env(self, fake=None):
        fake = fake or self.fake
        return {ENV_ORG_KEY: fake.creds["org_api_key"], ENV_SCIM_KEY: fake.creds["scim_token"]}

    def org_inst(self, fake=None, provisioning=None, scim=True, **opts):
        fake = fake or self.fake
        o = {"org_id": fake.creds["org_id"], "api_token": "${env:%s}" % ENV_ORG_KEY,
             "api_base": fake.truth["urls"]["org_api_base"]}
        if scim:
            o["scim_base_url"] = fake.truth["urls"]["scim_base"]
            o["scim_token"] = "${env:%s}" % ENV_SCIM_KEY
        o.update(opts)
        inst = {"plugin": "atlassian_org", "options": o}
        if provisioning is not None:
            inst["provisioning"] = provisioning
        return inst

    def proxy(self, rewrite):
        """A loopback proxy to the fake's org API, where rewrite(path, body,
        status, answer) may change each answer; returns its api_base."""
        import http.server
        import threading
        base = self.fake.truth["urls"]["org_api_base"]

        class Proxy(http.server.BaseHTTPRequestHandler):
            def do_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                status, _, out = lib.forward(base + self.path[len("/admin"):],
                                             self.command, self.headers, body)
                out = rewrite(self.path, body, status, out)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            do_GET = do_POST = do_any

            def log_message(self, *a):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return "http://127.0.0.1:%d/admin" % srv.server_address[1]

    def config(self, tenants=None, name="c.yaml", **inst_kw):
        if tenants is None:
            tenants = {TENANT: {INST: self.org_inst(**inst_kw)}}
        return lib.write_config(self.path(name), tenants, plugin_dir=self.plugins)

    def run_ch(self, args, env=None, timeout=lib.DEFAULT_TIMEOUT):
        e = self.env()
        if env:
            e.update(env)
        r = lib.run(args, env=e, timeout=timeout)
        self.assert_no_secret(r.out + r.err)
        self.assertNotIn("Segmentation", r.err)
        self.assertNotIn("AddressSanitizer", r.err)
        return r

    def sync(self, cfg, *args, ok=True, out_name="graph.json"):
        out = self.path(out_name)
        if os.path.exists(out):
            os.unlink(out)
        r = self.run_ch(["-c", cfg, "sync", "-o", out] + list(args))
        if ok:
            self.assertEqual(r.rc, 0, r)
            with open(out, encoding="utf-8") as f:
                self.assert_no_secret(f.read())
            return lib.load_json(out), r
        return (lib.load_json(out) if os.path.exists(out) else None), r

    def assert_no_secret(self, text):
        for fake in (self.fake,):
            for name in ("org_api_key", "scim_token"):
                self.assertNotIn(fake.creds[name], text, "secret %s leaked" % name)

    # ---- graph checks ----------------------------------------------------
    def by_type(self, g, rtype, inst=INST):
        return {r["id"]: r for r in g["resources"]
                if r["type"] == rtype and r.get("instance", INST) == inst}

    def writable_group(self):
        """A group with members that is not synced from an IdP."""
        return [x for x in self.fake.truth["org"]["groups"]
                if x["members"] and not x["external_synced"]][-1]

    def workspace_id(self, wstype):
        return [w for w in self.fake.truth["org"]["workspaces"] if w["type"] == wstype][0]["id"]

    def grant_pairs(self, g, direct=None):
        return {(x["entitlement"], x["principal"]) for x in g["grants"]
                if direct is None or bool(x["direct"]) == direct}

    def assert_matches_truth(self, g, truth):
        exp = Expected(truth)
        users = self.by_type(g, "user")
        self.assertEqual(set(users), set(exp.accounts))
        for aid, acct in exp.accounts.items():
            u = users[aid]
            self.assertEqual(u["display_name"], acct["name"] or acct["email"], aid)
            self.assertEqual(u["emails"], [acct["email"]], aid)
            self.assertEqual(u["status"], "enabled" if acct["status"] == "active" else "disabled", aid)
            self.assertEqual(u["profile"]["status"], acct["status"], aid)
            self.assertEqual(u["profile"]["accountType"], "atlassian", aid)
            self.assertIn("atlassian_account_id=" + aid, u["match_keys"])
            self.assertIn("email=" + acct["email"].lower(), u["match_keys"])
        groups = self.by_type(g, "group")
        self.assertEqual(set(groups), set(exp.groups))
        for gid, grp in exp.groups.items():
            self.assertEqual(groups[gid]["display_name"], grp["name"])
        ws = self.by_type(g, "workspace")
        self.assertEqual(set(ws), set(exp.workspaces))
        for wid, w in exp.workspaces.items():
            self.assertEqual(ws[wid]["display_name"], w["name"])
            self.assertEqual(ws[wid]["profile"]["hostUrl"], w["hostUrl"])
        self.assertEqual(set(self.by_type(g, "organization")), {exp.org_id})
        direct = self.grant_pairs(g, True)
        derived = self.grant_pairs(g, False)
        members = {p for p in direct if p[0].endswith("#member")}
        self.assertEqual(members, exp.members)
        roles = direct - members
        self.assertEqual(roles, exp.direct)
        self.assertEqual(derived, exp.derived)
        # Every derived grant names the group grant it came from.
        for x in g["grants"]:
            if not x["direct"]:
                self.assertTrue(x.get("sources"), x)

    def fake_truth_now(self):
        """The fake's truth after the writes so far (GET /_fake/truth)."""
        with urllib.request.urlopen(self.fake.base + "/_fake/truth", timeout=10) as resp:
            return json.load(resp)

    def request_count(self, fake, pred=lambda q: True):
        return len([q for q in fake.requests() if pred(q)])


# ---------------------------------------------------------------- progress
class Progress(OrgTest):
    # A second per answer keeps the tiny tenant's sync past the 10 s of an
    # off-terminal progress line.
    fake_extra = ("--latency-ms", "1000")

    def count(self, what):
        """The fake's users/count or groups/count, as the spec defines it."""
        org, d = self.fake.creds["org_id"], self.fake.truth["org"]["directory_id"]
        url = "%s/v2/orgs/%s/directories/%s/%s/count" % (
            self.fake.truth["urls"]["org_api_base"], org, d, what)
        req = urllib.request.Request(
            url, headers={"Authorization": "Bearer " + self.fake.creds["org_api_key"]})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["count"]

    def test_progress_counts_users_and_groups(self):
        """The users/count and groups/count totals give the progress line a
        percentage; they count what the listings then list."""
        g, r = self.sync(self.config(scim=False), "--workers", "2")
        # One count per listing chain, not one per page.
        counts = [q for q in self.fake.requests() if q["path"].endswith("/count")]
        self.assertEqual(sorted(q["path"].rsplit("/", 2)[1] for q in counts),
                         ["groups", "users"], counts)
        users, groups = self.count("users"), self.count("groups")
        types = [x["type"] for x in g["resources"]]
        self.assertEqual(users, types.count("user"))
        self.assertEqual(groups, types.count("group"))
        self.assertIn("progress: ", r.err)
        self.assertRegex(r.err, r"%% of %d counted, ETA \d+ s" % (users + groups))


# ---------------------------------------------------------------- sync
class SyncDemo(OrgTest):
    profile = "demo"

    def test_demo_sync_matches_truth(self):
        cfg = self.config()
        t0 = time.time()
        g, r = self.sync(cfg)
        took = time.time() - t0
        self.assert_matches_truth(g, self.fake.truth)
        print("demo sync: %.2fs, %d requests" % (took, self.request_count(self.fake)))

    def test_check_ok_and_wrong_org(self):
        r = self.run_ch(["-c", self.config(), "check"])
        self.assertEqual(r.rc, 0, r)
        cfg = self.config(name="bad.yaml", org_id="00000000-0000-4000-8000-000000000000")
        r = self.run_ch(["-c", cfg, "check"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("org_id", r.err + r.out)
        cfg = self.config(name="bad2.yaml", api_token="wrong-key")
        r = self.run_ch(["-c", cfg, "check"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("api_token", r.err + r.out)
        self.assertIn("401", r.err + r.out)
        cfg = self.config(name="bad3.yaml", scim_token="wrong-scim")
        r = self.run_ch(["-c", cfg, "check"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("scim_token", r.err + r.out)

    def test_without_user_roles(self):
        """sync_user_roles: false skips the per-user calls: no direct user
        roles, everything else intact."""
        g, _ = self.sync(self.config(sync_user_roles=False))
        exp = Expected(self.fake.truth)
        self.assertFalse([q for q in self.fake.requests()
                          if "/users/" in q.get("path", "") and q["path"].endswith("/role-assignments")])
        members = {p for p in self.grant_pairs(g, True) if p[0].endswith("#member")}
        self.assertEqual(members, exp.members)
        group_roles = {p for p in exp.direct if "/group/" in p[1]}
        self.assertEqual(self.grant_pairs(g, True) - members, group_roles)


class SyncLarge(OrgTest):
    """The `large` profile: 20,000 Jira users (about 17,000 managed
    accounts), 1,000 groups, 30 workspaces. About a minute on a laptop,
    nearly all of it the fake answering one role request per user; set
    CONNHOST_SKIP_LARGE=1 to leave it out."""
    profile = "large"

    @unittest.skipIf(os.environ.get("CONNHOST_SKIP_LARGE") == "1", "CONNHOST_SKIP_LARGE=1")
    def test_large_sync_matches_truth(self):
        t0 = time.time()
        g, r = self.sync(self.config(), "--workers", "16")
        took = time.time() - t0
        self.assert_matches_truth(g, self.fake.truth)
        print("large sync: %.2fs, %d requests" % (took, self.request_count(self.fake)))


@unittest.skipUnless(have_plugin("jira_cloud"), "jira_cloud.so is not built yet")
class JoinWithJira(OrgTest):
    profile = "demo"

    def test_identities_join_and_carry_org_emails(self):
        self.plugins = plugin_dir(self.path("p2"), ["atlassian_org", "jira_cloud"])
        t = self.fake.truth
        jira = {"plugin": "jira_cloud",
                "options": {"url": t["urls"]["jira_site"], "email": t["credentials"]["jira_email"],
                            "api_token": "${env:AO_TEST_JIRA_TOKEN}"}}
        cfg = self.config({TENANT: {INST: self.org_inst(), "jira": jira}})
        out = self.path("graph.json")
        r = self.run_ch(["-c", cfg, "sync", "-o", out],
                        env={"AO_TEST_JIRA_TOKEN": t["credentials"]["jira_api_token"]})
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(out)
        with open(out, encoding="utf-8") as f:
            self.assertNotIn(t["credentials"]["jira_api_token"], f.read())
        self.assertNotIn(t["credentials"]["jira_api_token"], r.out + r.err)
        hidden = [u for u in t["jira"]["users"]
                  if u["emailAddress"] is None and u["accountType"] == "atlassian"]
        self.assertTrue(hidden, "the demo tenant has Jira users with hidden email")
        accounts = {a["account_id"]: a for a in t["org"]["accounts"]}
        by_member = {}
        for ident in g["identities"]:
            for res in ident["resources"]:
                by_member[res] = ident
        checked = 0
        for u in hidden:
            if u["accountId"] not in accounts:
                continue
            jkey = rkey("user", u["accountId"], inst="jira")
            okey = rkey("user", u["accountId"])
            ident = by_member.get(jkey)
            self.assertIsNotNone(ident, jkey)
            self.assertIn(okey, ident["resources"])
            self.assertIn(accounts[u["accountId"]]["email"], ident["emails"])
            checked += 1
        self.assertGreater(checked, 0)


class IdForms(OrgTest):
    """users/search (expand=groups) names each group by its ARI, the group
    listing by the bare id: memberships must resolve either way."""
    profile = "demo"

    def test_memberships_given_as_group_aris_resolve(self):
        g, _ = self.sync(self.config())
        exp = Expected(self.fake.truth)
        members = {p for p in self.grant_pairs(g, True) if p[0].endswith("#member")}
        self.assertTrue(exp.members)
        self.assertEqual(members, exp.members)
        self.assertEqual([r["key"] for r in g["resources"] if r["key"].count("ari:cloud:identity")], [])
        # The fake served the spec's ARI form: without it this test proves nothing.
        logged = [q for q in self.fake.requests() if q.get("path", "").endswith("/users/search")]
        self.assertTrue(logged)
        req = urllib.request.Request(
            self.fake.base + logged[0]["path"], method="POST",
            data=json.dumps({"expand": ["groups"]}).encode(),
            headers={"Authorization": "Bearer " + self.fake.creds["org_api_key"],
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            served = [x["id"] for u in json.load(resp)["data"] for x in u.get("groups", [])]
        self.assertTrue(served)
        self.assertTrue(all(x.startswith("ari:cloud:identity::group/") for x in served), served[:3])

    def test_workspace_keys_keep_the_ari(self):
        """The graph key of a workspace is its ARI with ':' kept and '/'
        encoded, as docs/plugins/atlassian_org.md shows."""
        g, _ = self.sync(self.config())
        ws = self.by_type(g, "workspace")
        self.assertTrue(ws)
        for wid, r in ws.items():
            self.assertTrue(wid.startswith("ari:cloud:"), wid)
            self.assertEqual(r["key"], rkey("workspace", wid))
            self.assertIn("/workspace/ari:cloud:", r["key"])
            self.assertNotIn("%3A", r["key"])


class ProductAris(OrgTest):
    """Role assignments may name a Jira site by its product's ARI
    (ari:cloud:jira-software::site/<cloudId>, the spec's ResourceId example
    is ari:cloud:jira-core::site/1) while the workspace listing gives
    ari:cloud:jira::site/<cloudId>: the roles belong to that workspace."""
    profile = "demo"
    fake_extra = ("--product-aris",)

    def served_products(self):
        """The resource owners the fake answers role reads with."""
        org, seen = self.fake.creds["org_id"], set()
        for ra in self.fake.truth["org"]["role_assignments"]:
            if ra["principal_type"] != "group":
                continue
            url = "%s/v2/orgs/%s/directories/-/groups/%s/role-assignments" % (
                self.fake.truth["urls"]["org_api_base"], org, ra["principal_id"])
            req = urllib.request.Request(
                url, headers={"Authorization": "Bearer " + self.fake.creds["org_api_key"]})
            with urllib.request.urlopen(req, timeout=10) as resp:
                seen |= {(i["resourceOwner"], i["resourceId"].split("::")[0])
                         for i in json.load(resp)["data"]}
        return seen

    def test_roles_on_product_aris_land_on_the_jira_workspace(self):
        g, r = self.sync(self.config(scim=False))
        self.assert_matches_truth(g, self.fake.truth)
        self.assertNotIn("the workspace listing did not return it", r.err)
        # The keys are the listed workspace's, whichever ARI the server used.
        keys = {x["entitlement"] for x in g["grants"]}
        self.assertFalse([k for k in keys if "ari:cloud:jira-" in k], sorted(keys)[:5])
        # The fake served product ARIs: without them this test proves nothing.
        products = {p for p, _ in self.served_products() if p.startswith("jira-")}
        self.assertGreater(len(products), 1, products)


class Cursors(OrgTest):
    def test_page_size_one(self):
        g, _ = self.sync(self.config(page_size=1))
        self.assert_matches_truth(g, self.fake.truth)
        searches = [q for q in self.fake.requests() if q["path"].endswith("/users/search")]
        self.assertEqual(len(searches), len(self.fake.truth["org"]["accounts"]))

    def test_cursor_repeat_fails_cleanly(self):
        self.fake.stop()
        self.fake = self.start_fake("tiny", ["--fault", "cursor-repeat:/users/search$"], sub="f2")
        g, r = self.sync(self.config(page_size=2), ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("cursor", (r.err + r.out).lower())
        self.assertLess(len(self.fake.requests()), 200)


class RelativeNext(OrgTest):
    """links.next may be a relative URL, /admin/v2/...?cursor=<token>
    (LinkPageModel.next is "URL to fetch the Next Page"): its cursor
    parameter, decoded once, is what the next request sends."""
    fake_extra = ("--relative-next",)

    def test_every_list_follows_relative_next_urls(self):
        g, r = self.sync(self.config(page_size=2))
        self.assert_matches_truth(g, self.fake.truth)
        # Several pages of each list were read through such links.
        reqs = self.fake.requests()
        for tail in ("/users/search", "/groups/search", "/workspaces", "/role-assignments"):
            self.assertGreater(len([q for q in reqs if q["path"].endswith(tail)]), 2, tail)
        self.assertFalse([q for q in reqs if q.get("status") != 200], r.err)

    def test_absolute_next_urls_still_work(self):
        """The same links made absolute (as v1 lists give them)."""
        def absolute(path, body, status, out):
            doc = json.loads(out)
            nxt = doc.get("links", {}).get("next") if isinstance(doc, dict) else None
            if nxt:
                doc["links"]["next"] = "https://api.atlassian.com" + nxt
            return json.dumps(doc).encode()
        g, _ = self.sync(self.config(page_size=2, api_base=self.proxy(absolute)))
        self.assert_matches_truth(g, self.fake.truth)


class EmptyLastPage(OrgTest):
    fake_extra = ("--fault", "endless,mode=empty:/(users|groups)/search$")

    def test_empty_last_page_ends_the_list(self):
        g, _ = self.sync(self.config(page_size=3))
        self.assert_matches_truth(g, self.fake.truth)


# ---------------------------------------------------------------- writes
class Writes(OrgTest):
    profile = "tiny"

    def cli(self, cfg, *args):
        return self.run_ch(["-c", cfg] + list(args))

    def pick_user(self, active=True, exclude=()):
        for a in self.fake.truth["org"]["accounts"]:
            if a["account_id"] in exclude:
                continue
            if (a["status"] == "active") == active:
                return a["account_id"]
        self.fail("no suitable user")

    def pick_group(self, not_member, synced=False):
        for grp in self.fake.truth["org"]["groups"]:
            if grp["external_synced"] == synced and not_member not in grp["members"]:
                return grp["id"]
        self.fail("no suitable group")

    def posted(self, since, method=None):
        qs = self.fake.requests()[since:]
        return [q for q in qs if method is None or q["method"] == method]

    def test_refused_without_provisioning(self):
        cfg = self.config()
        uid = self.pick_user()
        gid = self.pick_group(uid)
        n = len(self.fake.requests())
        r = self.cli(cfg, "grant", "--entitlement", ekey("group", gid, "member"),
                     "--principal", rkey("user", uid))
        self.assertEqual(r.rc, 2, r)
        r = self.cli(cfg, "action", "--tenant", TENANT, "--instance", INST,
                     "--name", "disable_user", "--arg", "user_id=" + uid)
        self.assertEqual(r.rc, 2, r)
        self.assertEqual(len(self.fake.requests()), n)

    def test_group_membership(self):
        cfg = self.config(provisioning=True)
        uid = self.pick_user()
        gid = self.pick_group(uid)
        ent, who = ekey("group", gid, "member"), rkey("user", uid)
        n = len(self.fake.requests())
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who, "--dry-run")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.fake.requests()), n, "dry run sent a request")
        # a write takes no "-" directory: the group's own is read first
        # (printed, not sent, in a dry run)
        self.assertIn("DRY RUN: GET ", r.out)
        self.assertIn("/directories/-/groups/%s\n" % gid, r.out)
        self.assertIn("/directories/{directoryId}/groups/%s/memberships" % gid, r.out)
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        posted = [q["path"] for q in self.posted(n, "POST")]
        self.assertEqual(posted, ["/admin/v2/orgs/%s/directories/%s/groups/%s/memberships"
                                  % (self.fake.truth["org"]["org_id"],
                                     self.fake.truth["org"]["directory_id"], gid)])
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("already", (r.out + r.err).lower())
        g, _ = self.sync(cfg)
        self.assertIn((ent, who), self.grant_pairs(g, True))
        n = len(self.fake.requests())
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", who, "--dry-run")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.fake.requests()), n)
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("already", (r.out + r.err).lower())
        g, _ = self.sync(cfg)
        self.assertNotIn((ent, who), self.grant_pairs(g))

    def test_group_membership_errors(self):
        cfg = self.config(provisioning=True)
        uid = self.pick_user()
        # A group synced from the IdP cannot be changed here.
        synced = [x for x in self.fake.truth["org"]["groups"] if x["external_synced"]]
        if synced:
            r = self.cli(cfg, "grant", "--entitlement", ekey("group", synced[0]["id"], "member"),
                         "--principal", rkey("user", uid))
            self.assertEqual(r.rc, 1, r)
        # A group that does not exist.
        r = self.cli(cfg, "grant", "--entitlement",
                     ekey("group", "00000000-0000-4000-8000-000000000000", "member"),
                     "--principal", rkey("user", uid))
        self.assertEqual(r.rc, 1, r)

    def test_membership_licence_limit(self):
        self.fake.stop()
        self.fake = self.start_fake("tiny", ["--fault", "licence,method=POST:/memberships$"], sub="f2")
        cfg = self.config(provisioning=True)
        uid = self.pick_user()
        gid = self.pick_group(uid)
        r = self.cli(cfg, "grant", "--entitlement", ekey("group", gid, "member"),
                     "--principal", rkey("user", uid))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("licence limit", (r.out + r.err).lower())

    def test_provision_licence_409_is_not_already(self):
        """SCIM's 409 means "User already exists"; a 409 for a user that
        cannot then be found (a licence limit) is the server's error, not a
        done provision with no account."""
        self.fake.stop()
        self.fake = self.start_fake("tiny", ["--fault", "licence,method=POST:/Users$"], sub="f3")
        cfg = self.config(provisioning=True)
        email = "licensed.out@" + self.fake.truth["org"]["accounts"][0]["email"].split("@")[1]
        r = self.cli(cfg, "provision", "--tenant", TENANT, "--instance", INST, "--email", email)
        self.assertEqual(r.rc, 1, r)
        self.assertNotIn("already", (r.out + r.err).lower())
        self.assertIn("409", r.out + r.err)

    def test_workspace_roles(self):
        cfg = self.config(provisioning=True)
        uid = self.pick_user()
        ws = [w for w in self.fake.truth["org"]["workspaces"] if w["type"] == "confluence"][0]["id"]
        ent, who = ekey("workspace", ws, "role:atlassian/admin"), rkey("user", uid)
        n = len(self.fake.requests())
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who, "--dry-run")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.fake.requests()), n)
        self.assertIn("roles/assign", r.out + r.err)
        for _ in range(2):  # the repeat is idempotent
            r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who)
            self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertIn((ent, who), self.grant_pairs(g, True))
        for _ in range(2):
            r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", who)
            self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertNotIn((ent, who), self.grant_pairs(g, True))

    def assert_refused_unsent(self, cfg, ent, who, message):
        """`grant` of `ent` to `who` fails saying `message`, and nothing
        was posted to the fake."""
        n = len(self.fake.requests())
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn(message, r.out + r.err)
        self.assertEqual(len(self.posted(n, "POST")), 0)

    def grant_role_to_group(self, cfg, grp, wstype, role):
        """Grant `role` on the first `wstype` workspace to `grp` and sync:
        the grant is there. Returns (entitlement key, graph)."""
        ent = ekey("workspace", self.workspace_id(wstype), role)
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", rkey("group", grp["id"]))
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertIn((ent, rkey("group", grp["id"])), self.grant_pairs(g, True))
        return ent, g

    def test_workspace_role_for_group(self):
        cfg = self.config(provisioning=True)
        grp = self.writable_group()
        ent, g = self.grant_role_to_group(cfg, grp, "bitbucket", "role:atlassian/user")
        for m in grp["members"]:
            self.assertIn((ent, rkey("user", m)), self.grant_pairs(g))
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", rkey("group", grp["id"]))
        self.assertEqual(r.rc, 0, r)

    def test_viewer_role_goes_to_groups_only(self):
        """atlassian/viewer is in the group role API's roleId list only: a
        grant to a group is written and synced back; to a user it is
        refused before anything is sent (the user role API would 400).
        site-admin, the other way round, is not in that list."""
        cfg = self.config(provisioning=True)
        grp = self.writable_group()
        ent, _ = self.grant_role_to_group(cfg, grp, "jira", "role:atlassian/viewer")
        user = rkey("user", self.pick_user())
        self.assert_refused_unsent(cfg, ent, user,
                                   "atlassian/viewer can be given to groups only")
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", rkey("group", grp["id"]))
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertNotIn((ent, rkey("group", grp["id"])), self.grant_pairs(g, True))
        # and the other way round: the group role API has no site-admin
        ws = self.workspace_id("jira")
        self.assert_refused_unsent(cfg, ekey("workspace", ws, "role:atlassian/site-admin"),
                                   rkey("group", grp["id"]),
                                   "atlassian/site-admin can be given to users only")
        # ai-access is in neither API's list
        for who in (user, rkey("group", grp["id"])):
            self.assert_refused_unsent(
                cfg, ekey("workspace", ws, "role:atlassian/ai-access"), who,
                "the role API cannot change atlassian/ai-access on a workspace")

    def test_group_keys_in_ari_form_address_the_bare_group(self):
        """A group key copied from a users/search answer is the group's ARI
        (MultiDirectoryUserGroup.id); membership and group-role writes
        still go to the bare {groupId} path (docs "Id forms")."""
        cfg = self.config(provisioning=True)
        uid = self.pick_user()
        gid = self.pick_group(uid)
        ari = "ari:cloud:identity::group/" + gid
        ent, who = ekey("group", ari, "member"), rkey("user", uid)
        n = len(self.fake.requests())
        r = self.cli(cfg, "grant", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        paths = [q["path"] for q in self.posted(n, "POST")]
        self.assertIn("/groups/%s/memberships" % gid, " ".join(paths))
        g, _ = self.sync(cfg)
        self.assertIn((ekey("group", gid, "member"), who), self.grant_pairs(g, True))
        r = self.cli(cfg, "revoke", "--entitlement", ent, "--principal", who)
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertNotIn((ekey("group", gid, "member"), who), self.grant_pairs(g))
        ws = [w for w in self.fake.truth["org"]["workspaces"] if w["type"] == "bitbucket"][0]["id"]
        role = ekey("workspace", ws, "role:atlassian/user")
        r = self.cli(cfg, "grant", "--entitlement", role, "--principal", rkey("group", ari))
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertIn((role, rkey("group", gid)), self.grant_pairs(g, True))

    def test_role_api_refusal_names_atlassian_support(self):
        """A 404 from the user role API (what an org without the API sees,
        and an unknown user) keeps the server's reason and says how the API
        gets enabled."""
        cfg = self.config(provisioning=True)
        ws = self.fake.truth["org"]["workspaces"][0]["id"]
        r = self.cli(cfg, "grant", "--entitlement", ekey("workspace", ws, "role:atlassian/user"),
                     "--principal", rkey("user", "557058:no-such-account"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("Atlassian Support", r.out + r.err)
        self.assertIn("404", r.out + r.err)

    def test_disable_enable_user(self):
        cfg = self.config(provisioning=True)
        uid = self.pick_user(exclude=(self.fake.truth["jira"]["myself"],))
        base = ["action", "--tenant", TENANT, "--instance", INST, "--arg", "user_id=" + uid]
        n = len(self.fake.requests())
        r = self.cli(cfg, *(base + ["--name", "disable_user", "--dry-run"]))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.fake.requests()), n)
        # the write takes no "-" directory: the user's own is read first
        # (printed, not sent, in a dry run)
        quoted = urllib.parse.quote(uid, safe="")
        self.assertIn("DRY RUN: GET ", r.out)
        self.assertIn("/directories?accountId=%s\n" % quoted, r.out)
        self.assertIn("/directories/{directoryId}/users/%s/suspend" % quoted, r.out)
        r = self.cli(cfg, *(base + ["--name", "disable_user"]))
        self.assertEqual(r.rc, 0, r)
        org = self.fake.truth["org"]
        self.assertEqual([(q["method"], q["path"]) for q in self.fake.requests()[n:]],
                         [("GET", "/admin/v2/orgs/%s/directories" % org["org_id"]),
                          ("POST", "/admin/v2/orgs/%s/directories/%s/users/%s/suspend"
                           % (org["org_id"], org["directory_id"], quoted))])
        r = self.cli(cfg, *(base + ["--name", "disable_user"]))
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        u = self.by_type(g, "user")[uid]
        self.assertEqual(u["status"], "disabled")
        self.assertEqual(u["profile"]["status"], "suspended")
        r = self.cli(cfg, *(base + ["--name", "enable_user"]))
        self.assertEqual(r.rc, 0, r)
        g, _ = self.sync(cfg)
        self.assertEqual(self.by_type(g, "user")[uid]["status"], "enabled")
        r = self.cli(cfg, "action", "--tenant", TENANT, "--instance", INST,
                     "--name", "disable_user", "--arg", "user_id=nobody-here")
        self.assertEqual(r.rc, 1, r)

    def test_an_org_id_from_the_environment_is_shown(self):
        """org_id names the organization (and is the id in its keys): from
        ${env:} it is shown in dry runs and errors, not masked as a
        secret; the API key next to it still is."""
        org = self.fake.truth["org"]["org_id"]
        cfg = self.config(provisioning=True, org_id="${env:TEST_ORG_ID}")
        uid = self.pick_user(exclude=(self.fake.truth["jira"]["myself"],))
        r = self.run_ch(["-c", cfg, "action", "--tenant", TENANT, "--instance", INST,
                         "--arg", "user_id=" + uid, "--name", "disable_user", "--dry-run"],
                        env={"TEST_ORG_ID": org})
        self.assertEqual(r.rc, 0, r)
        self.assertIn("/v2/orgs/%s/directories?accountId=" % org, r.out)
        self.assertNotIn("orgs/***", r.out + r.err)

    def test_user_actions_in_no_or_several_directories_send_nothing(self):
        """The user writes name one directory. An account in several
        (MultiDirectoryUserDirectoryPage lists each) is the operator's
        choice to make with directory_id; one in none is an error."""
        uid = self.pick_user(exclude=(self.fake.truth["jira"]["myself"],))
        dirs = {}

        def listed(path, body, status, out):
            if "/directories?" not in path or "directories" not in dirs:
                return out
            return json.dumps({"data": dirs["directories"], "links": {}}).encode()
        cfg = self.config(provisioning=True, api_base=self.proxy(listed))
        act = ["action", "--tenant", TENANT, "--instance", INST, "--arg", "user_id=" + uid,
               "--name", "disable_user"]
        two = [{"directoryId": "11111111-1111-4111-8111-111111111111", "name": "A"},
               {"directoryId": "22222222-2222-4222-8222-222222222222", "name": "B"}]
        for listing, words, rc in ((two, ["more than one directory", two[0]["directoryId"],
                                          two[1]["directoryId"] + "):", "directory_id"], 1),
                                   ([], ["in no directory"], 1)):
            dirs["directories"] = listing
            n = len(self.fake.requests())
            r = self.cli(cfg, *act)
            self.assertEqual(r.rc, rc, r)
            for w in words:
                self.assertIn(w, r.err, r)
            self.assertEqual([q["method"] for q in self.fake.requests()[n:]], ["GET"])
        # with directory_id set, nothing is looked up
        cfg = self.config(provisioning=True, directory_id=self.fake.truth["org"]["directory_id"])
        n = len(self.fake.requests())
        r = self.cli(cfg, *act)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([q["method"] for q in self.fake.requests()[n:]], ["POST"])
        r = self.cli(cfg, *(act[:-1] + ["enable_user"]))
        self.assertEqual(r.rc, 0, r)

    def test_scim_provision_create_and_link(self):
        cfg = self.config(provisioning=True)
        email = "new.person@" + self.fake.truth["org"]["accounts"][0]["email"].split("@")[1]
        prov = ["provision", "--tenant", TENANT, "--instance", INST, "--email", email,
                "--given-name", "New", "--family-name", "Person", "--display-name", "New Person"]
        n = len(self.fake.requests())
        r = self.cli(cfg, *(prov + ["--dry-run"]))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.fake.requests()), n)
        r = self.cli(cfg, *prov)
        self.assertEqual(r.rc, 0, r)
        r2 = self.cli(cfg, *prov)
        self.assertEqual(r2.rc, 0, r2)
        self.assertIn("already", (r2.out + r2.err).lower())
        g, _ = self.sync(cfg)
        users = [u for u in self.by_type(g, "user").values() if u["emails"] == [email]]
        self.assertEqual(len(users), 1)
        self.assertIn(users[0]["id"], r.out + r.err)
        # An existing managed account without a SCIM user is linked.
        scim_linked = {u["atlassianAccountId"] for u in self.fake.truth["scim"]["users"]}
        existing = [a for a in self.fake.truth["org"]["accounts"]
                    if a["account_id"] not in scim_linked and a["status"] == "active"][0]
        r = self.cli(cfg, "provision", "--tenant", TENANT, "--instance", INST,
                     "--email", existing["email"], "--display-name", existing["name"])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("linked", (r.out + r.err).lower())
        self.assertIn(existing["account_id"], r.out + r.err)
        g, _ = self.sync(cfg)
        self.assertEqual(len([u for u in self.by_type(g, "user").values()
                              if u["emails"] == [existing["email"]]]), 1)

    def test_scim_lookup_escapes_quotes_in_the_email(self):
        """After a 409 the plugin looks the user up with a SCIM filter; the
        email goes in as a JSON string (RFC 7644 3.4.2.2), so a '"' in it
        cannot end the value and add filter terms of its own."""
        cfg = self.config(provisioning=True)
        domain = self.fake.truth["org"]["accounts"][0]["email"].split("@")[1]
        email = 'o"brien\\x@' + domain
        prov = ["provision", "--tenant", TENANT, "--instance", INST, "--email", email]
        r = self.cli(cfg, *prov)
        self.assertEqual(r.rc, 0, r)
        made = [u["atlassianAccountId"] for u in self.fake_truth_now()["scim"]["users"]
                if u["userName"] == email]
        self.assertEqual(len(made), 1)
        n = len(self.fake.requests())
        r = self.cli(cfg, *prov)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("already", (r.out + r.err).lower())
        self.assertIn(made[0], r.out + r.err)
        finds = [urllib.parse.unquote(q.get("query") or "") for q in self.posted(n, "GET")
                 if q["path"].endswith("/Users")]
        self.assertEqual(finds, ['filter=userName eq "o\\"brien\\\\x@%s"' % domain])

    def test_provision_refuses_bad_emails_before_sending(self):
        cfg = self.config(provisioning=True)
        domain = self.fake.truth["org"]["accounts"][0]["email"].split("@")[1]
        bad = {"no-at-sign": "one '@'", "a@b@" + domain: "one '@'", "@" + domain: "local part",
               "someone@": "domain", "tab\there@" + domain: "control character",
               "x" * 65 + "@" + domain: "longer", "y@" + "d" * 250 + ".com": "longer"}
        n = len(self.fake.requests())
        for email, why in bad.items():
            r = self.cli(cfg, "provision", "--tenant", TENANT, "--instance", INST, "--email", email)
            self.assertEqual(r.rc, 2, (email, r))
            self.assertIn("--email", r.err, email)
            self.assertIn(why, r.err, email)
        self.assertEqual(len(self.fake.requests()), n, "a bad email reached the server")

    def test_provision_without_scim(self):
        cfg = self.config(provisioning=True, scim=False)
        r = self.cli(cfg, "provision", "--tenant", TENANT, "--instance", INST,
                     "--email", "x@example.com")
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("scim_base_url", r.out + r.err)


# ---------------------------------------------------------------- errors
class Errors(OrgTest):
    def faulty(self, *specs):
        self.fake.stop()
        extra = []
        for s in specs:
            extra += ["--fault", s]
        self.fake = self.start_fake("tiny", extra, sub="f%d" % len(os.listdir(self.tmp)))

    def test_one_empty_page_in_the_middle_loses_nothing(self):
        """A users/search page that comes back empty but links the next
        one, in the middle of the list: the rest is read, not dropped
        without a word (two empty pages in a row still end a list)."""
        seen = {"pages": 0}

        def hiccup(path, body, status, out):
            if not path.endswith("/users/search") or status != 200:
                return out
            seen["pages"] += 1
            doc = json.loads(out)
            if seen["pages"] != 2 or not doc["links"].get("next"):
                return out
            seen["emptied"] = {u["accountId"] for u in doc["data"]}
            doc["data"] = []
            return json.dumps(doc).encode()
        g, r = self.sync(self.config(scim=False, page_size=2, api_base=self.proxy(hiccup)))
        self.assertEqual(len(seen.get("emptied", ())), 2, seen)
        # every user but the two the proxy blanked, those after them too
        want = set(Expected(self.fake.truth).accounts) - seen["emptied"]
        self.assertEqual(set(self.by_type(g, "user")), want)
        self.assertIn("an empty page was followed by one with data", r.err)

    def test_one_empty_workspaces_page_keeps_the_roles_after_it(self):
        """The workspaces' first page comes back empty but links the next:
        the listing reads past it, and so must the lookup that tells a
        role's workspace is listed, or every role on the workspaces after
        it is skipped as on an unlisted one."""
        seen = {"blanked": 0}

        def hiccup(path, body, status, out):
            if not path.endswith("/workspaces") or status != 200:
                return out
            doc = json.loads(out)
            if json.loads(body or b"{}").get("cursor") or not doc["links"].get("next"):
                return out
            seen["blanked"] += 1
            seen["lost"] = {w["id"] for w in doc["data"]}
            doc["data"] = []
            return json.dumps(doc).encode()
        # one workspace a page: the tiny tenant's first one is lost to
        # both the listing and the lookup, the others must not be
        g, r = self.sync(self.config(scim=False, page_size=1, api_base=self.proxy(hiccup)))
        self.assertGreaterEqual(seen["blanked"], 2, seen)  # the listing and the lookup
        kept = [w["id"] for w in self.fake.truth["org"]["workspaces"]
                if w["id"] not in seen["lost"]]
        roles = {e for e, _ in self.grant_pairs(g, True) if "/workspace/" in e}
        held = [w for w in kept if any(e.startswith(rkey("workspace", w) + "#") for e in roles)]
        self.assertTrue(held, roles)

    def test_a_user_without_its_groups_is_told(self):
        """expand ["groups"] asked for every user's groups: one answer
        without the array loses that user's memberships, which is said."""
        def forgetful(path, body, status, out):
            if not path.endswith("/users/search") or status != 200:
                return out
            doc = json.loads(out)
            for u in doc["data"]:
                if u.get("groups"):
                    u.pop("groups")
                    break
            return json.dumps(doc).encode()
        _, r = self.sync(self.config(scim=False, api_base=self.proxy(forgetful)))
        self.assertIn("has no groups array", r.err)
        self.assertEqual(r.err.count("has no groups array"), 1, r.err)

    def test_later_search_pages_ask_for_groups_again(self):
        """users/search's body cursor only "sets the starting point": a
        server that does not keep the first page's expand in its cursor
        must still be asked for the groups on every page, or every later
        user's memberships vanish without a word."""
        bodies = []

        def forgetful(path, body, status, out):
            if not path.endswith("/users/search") or status != 200:
                return out
            ask = json.loads(body)
            bodies.append(ask)
            if "expand" in ask:
                return out
            doc = json.loads(out)  # the expand forgotten with the cursor
            for u in doc.get("data", []):
                u.pop("groups", None)
            return json.dumps(doc).encode()
        g, _ = self.sync(self.config(scim=False, page_size=3, api_base=self.proxy(forgetful)))
        self.assertGreater(len([b for b in bodies if "cursor" in b]), 1, bodies)
        self.assertTrue(all(b.get("expand") == ["groups"] for b in bodies), bodies)
        self.assert_matches_truth(g, self.fake.truth)

    def test_roles_on_unlisted_workspaces_are_told(self):
        """A role on a workspace the listing did not return (a product ARI
        the sync does not know) is skipped with one warning, not silently."""
        odd = "ari:cloud:jira-core::site/00000000-0000-0000-0000-000000000001"

        def extra_role(path, body, status, out):
            if "/role-assignments" not in path or status != 200:
                return out
            doc = json.loads(out)
            doc.setdefault("data", []).append({"resourceId": odd, "resourceOwner": "jira-core",
                                               "roles": ["atlassian/user"]})
            return json.dumps(doc).encode()
        g, r = self.sync(self.config(scim=False, api_base=self.proxy(extra_role)))
        self.assert_matches_truth(g, self.fake.truth)
        self.assertEqual(r.err.count("the workspace listing did not return it"), 1, r.err)
        self.assertIn(odd, r.err)

    def test_group_viewer_role_is_synced(self):
        """The group role-assignment API's roleId takes atlassian/viewer
        (the spec: "Valid values: ..., atlassian/stakeholder,
        atlassian/viewer"), and the group read's `roles` are free strings:
        a group holding viewer on a workspace keeps that grant, and its
        members derive it."""
        truth = self.fake.truth
        org, d = truth["org"]["org_id"], truth["org"]["directory_id"]
        jira = self.workspace_id("jira")
        gid = self.writable_group()["id"]
        url = "%s/v2/orgs/%s/directories/%s/groups/%s/role-assignments/assign" % (
            truth["urls"]["org_api_base"], org, d, gid)
        req = urllib.request.Request(
            url, method="POST",
            data=json.dumps({"resourceId": jira, "roleId": "atlassian/viewer"}).encode(),
            headers={"Authorization": "Bearer " + self.fake.creds["org_api_key"],
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertIn(resp.status, (200, 204))
        g, r = self.sync(self.config(scim=False))
        self.assertIn((ekey("workspace", jira, "role:atlassian/viewer"), rkey("group", gid)),
                      self.grant_pairs(g, True))
        self.assert_matches_truth(g, self.fake_truth_now())
        self.assertNotIn("the workspace listing did not return it", r.err)

    def test_401_is_a_clear_instance_error(self):
        cfg = self.config(api_token="not-the-key")
        g, r = self.sync(cfg, ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("401", r.err + r.out)
        self.assertIn("api_token refused", r.err + r.out)
        self.assertIsNone(g, "a failed sync must not write a graph")

    def test_wrong_org_id_is_a_clear_instance_error(self):
        cfg = self.config(org_id="00000000-0000-4000-8000-000000000000")
        g, r = self.sync(cfg, ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("404", r.err + r.out)
        self.assertIn("org_id", r.err + r.out)

    def test_403_is_a_clear_instance_error(self):
        """A key without the permission a listing needs: the instance fails
        with the server's reason, no graph is written."""
        self.faulty("403:/users/search$")
        g, r = self.sync(self.config(), ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("403", r.err + r.out)
        self.assertIn("does not have the permissions", r.err + r.out)
        self.assertIsNone(g)

    def test_403_from_role_api_names_atlassian_support(self):
        """The role assign API answers 403 where Atlassian has not enabled
        it for the org: the error says how to get it enabled."""
        self.faulty("403:/roles/assign$")
        cfg = self.config(provisioning=True)
        org = self.fake.truth["org"]
        user = next(a["account_id"] for a in org["accounts"] if a["status"] == "active")
        ws = org["workspaces"][0]["id"]
        r = self.run_ch(["-c", cfg, "grant", "--entitlement",
                         ekey("workspace", ws, "role:atlassian/user"),
                         "--principal", rkey("user", user)])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("403", r.out + r.err)
        self.assertIn("Atlassian Support", r.out + r.err)

    def test_429_with_retry_after_recovers(self):
        self.faulty("429,retry_after=1,count=2:/users/search$",
                    "429,retry_after=1,count=1:/workspaces$")
        g, r = self.sync(self.config())
        self.assert_matches_truth(g, self.fake.truth)
        codes = [q.get("status") for q in self.fake.requests()]
        self.assertIn(429, codes)

    def test_burst_limit_recovers(self):
        """Past N requests per second per endpoint the fake answers 429 with
        Retry-After and X-RateLimit-Reset; the sync still completes. The
        limit is told only with a 429 (as on Jira's 200s, some lack it), so
        the unpaced first wave meets the limiter on a machine of any speed."""
        self.fake.stop()
        self.fake = self.start_fake("tiny", ["--burst-limit", "2", "--burst-headers", "refusals"],
                                    sub="fburst")
        g, r = self.sync(self.config(), "--workers", "8")
        self.assert_matches_truth(g, self.fake.truth)
        self.assertIn(429, [q.get("status") for q in self.fake.requests()])

    def test_5xx_recovers(self):
        self.faulty("500,count=1:/groups/search$", "503,retry_after=1,count=1:/role-assignments$")
        g, r = self.sync(self.config())
        self.assert_matches_truth(g, self.fake.truth)

    def test_persistent_5xx_fails_the_instance(self):
        self.faulty("500:/groups/search$")
        g, r = self.sync(self.config(), ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("500", r.err + r.out)

    def test_malformed_and_truncated_json(self):
        for spec in ("badjson:/users/search$", "truncate:/groups/search$"):
            self.faulty(spec)
            g, r = self.sync(self.config(), ok=False)
            self.assertEqual(r.rc, 1, r)
            self.assertIn("json", (r.err + r.out).lower(), spec)

    def test_malformed_role_assignments_sent_again(self):
        """The per-user role assignments are read without a json-c tree;
        a malformed 2xx answer is still sent again (a GET), and one that
        stays malformed still fails the instance with the same words."""
        self.faulty("badjson,nth=1:/users/[^/]+/role-assignments$")
        g, r = self.sync(self.config(), "--log-level", "warn")
        self.assert_matches_truth(g, self.fake.truth)
        self.assertIn("user role assignments: malformed JSON", r.err)
        self.assertIn("sending the request again", r.err)
        self.faulty("badjson:/users/[^/]+/role-assignments$")
        g, r = self.sync(self.config(), ok=False)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("user role assignments: malformed JSON", r.err + r.out)

    def test_other_instance_survives_with_allow_partial(self):
        bad = self.org_inst(api_token="not-the-key")
        cfg = self.config({TENANT: {INST: self.org_inst()}, "other": {INST: bad}})
        out = self.path("g.json")
        r = self.run_ch(["-c", cfg, "sync", "-o", out, "--allow-partial"])
        self.assertEqual(r.rc, 3, r)
        g = lib.load_json(out)
        self.assertTrue(self.by_type(g, "user"))


if __name__ == "__main__":
    lib.main()
