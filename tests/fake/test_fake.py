#!/usr/bin/env python3
"""Tests of the fake Atlassian Cloud itself (stdlib unittest).

Run directly or as an automake test: exit 0 pass, 1 fail, 77 skip.
Every fake is started on 127.0.0.1 port 0 through --port-file, and
killed at the end even when a test fails.  Takes about 20 s.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "atlassian-fake")
START_TIMEOUT = 30
ISO_MINUTE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ$")
LIVE = []          # every started fake, killed at exit whatever happens


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())


class Fake:
    """One running fake plus a keep-alive client for it."""

    def __init__(self, *args, tls=None):
        self.tmp = tempfile.mkdtemp(prefix="atlassian-fake-test-")
        self.port_file = os.path.join(self.tmp, "port")
        self.truth_file = os.path.join(self.tmp, "truth.json")
        self.log_file = os.path.join(self.tmp, "requests.jsonl")
        self.tls = tls
        argv = [sys.executable, FAKE, "--port", "0", "--port-file", self.port_file,
                "--truth", self.truth_file, "--request-log", self.log_file] + list(args)
        self.stdout = open(os.path.join(self.tmp, "stdout"), "w")
        self.stderr = open(os.path.join(self.tmp, "stderr"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.stdout, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        LIVE.append(self)
        deadline = time.time() + START_TIMEOUT
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError("fake exited %s: %s" % (self.proc.returncode, self.read("stderr")))
            if time.time() > deadline:
                raise RuntimeError("fake did not start in %d s" % START_TIMEOUT)
            time.sleep(0.02)
        self.port = int(self.read("port"))
        self.truth = json.loads(self.read("truth.json"))
        self.creds = self.truth["credentials"]
        self.base = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.conn = None

    def read(self, name):
        with open(os.path.join(self.tmp, name), encoding="utf-8") as fh:
            return fh.read()

    def stop(self):
        if self.conn:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self in LIVE:
            LIVE.remove(self)
        return self.proc.returncode

    # ------------------------------------------------------------ client
    def auth(self, kind):
        c = self.creds
        if kind == "jira":
            return "Basic " + base64.b64encode(("%s:%s" % (c["jira_email"], c["jira_api_token"])).encode()).decode()
        if kind == "scoped":
            return "Basic " + base64.b64encode(
                ("%s:%s" % (c["jira_email"], c["jira_scoped_api_token"])).encode()).decode()
        if kind == "org":
            return "Bearer " + c["org_api_key"]
        if kind == "scim":
            return "Bearer " + c["scim_token"]
        return kind

    def new_conn(self):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method, path, query=None, body=None, auth="jira", headers=None, fresh=False):
        url = path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = self.auth(auth)
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = self.new_conn() if fresh else self.conn
        if conn is None:
            conn = self.conn = self.new_conn()
        try:
            conn.request(method, url, body=payload, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        except Exception:
            conn.close()
            if not fresh:
                self.conn = None
            raise
        if fresh:
            conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)

    def get(self, path, query=None, auth="jira", **kw):
        return self.request("GET", path, query, auth=auth, **kw)

    def jira(self, path, query=None, **kw):
        return self.get("/rest/api/3" + path, query, **kw)

    def log_entries(self):
        with open(self.log_file, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def kill_all():
    for fake in list(LIVE):
        try:
            fake.stop()
        except Exception:
            pass


class FakeCase(unittest.TestCase):
    """A test class with one fake started for the whole class."""
    ARGS = ("--profile", "tiny")

    @classmethod
    def setUpClass(cls):
        cls.fake = Fake(*cls.ARGS)
        cls.truth = cls.fake.truth

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def assertJiraError(self, reply, status, fragment=None):
        self.assertEqual(reply.status, status, reply.raw)
        body = reply.json
        self.assertEqual(set(body), {"errorMessages", "errors"})
        if fragment:
            self.assertIn(fragment, " ".join(body["errorMessages"]) + json.dumps(body["errors"]))

    def assertOrgError(self, reply, status, code=None):
        self.assertEqual(reply.status, status, reply.raw)
        err = reply.json["errors"][0]
        self.assertEqual(err["status"], str(status))
        if code:
            self.assertEqual(err["code"], code)

    # paging walkers -----------------------------------------------------
    def walk_offset(self, path, page, query=None):
        out, start = [], 0
        while True:
            q = dict(query or {}, startAt=start, maxResults=page)
            items = self.fake.jira(path, q).json
            if not items:
                return out
            out += items
            start += len(items)

    def walk_pagebean(self, path, page, query=None, limit=10000):
        out, start = [], 0
        for _ in range(limit):
            q = dict(query or {}, startAt=start, maxResults=page)
            reply = self.fake.jira(path, q)
            self.assertEqual(reply.status, 200, reply.raw)
            bean = reply.json
            out += bean["values"]
            if bean["isLast"]:
                self.assertNotIn("nextPage", bean)
                return out
            self.assertIn("startAt=%d" % (start + len(bean["values"])), bean["nextPage"])
            start += len(bean["values"])
        self.fail("no last page")

    def walk_v2(self, path, query=None, method="GET", body=None, limit=1000):
        out, cursor = [], None
        for _ in range(limit):
            if method == "GET":
                q = dict(query or {})
                if cursor:
                    q = {"cursor": cursor}
                reply = self.fake.get(path, q, auth="org")
            else:
                b = dict(body or {})
                if cursor:
                    b = {"cursor": cursor}
                reply = self.fake.request("POST", path, body=b, auth="org")
            self.assertEqual(reply.status, 200, reply.raw)
            data = reply.json
            out += data["data"]
            cursor = data["links"].get("next")
            if not cursor:
                return out
            self.assertFalse(cursor.startswith("http"), "v2 links.next must be a bare token")
        self.fail("cursor never ended")


# ======================================================================
class JiraReads(FakeCase):
    ARGS = ("--profile", "tiny", "--seed", "3")

    def test_users_search_returns_every_type_and_state(self):
        got = self.walk_offset("/users/search", 1)
        want = self.truth["jira"]["users"]
        self.assertEqual([u["accountId"] for u in got], [u["accountId"] for u in want])
        for g, w in zip(got, want):
            self.assertEqual(g["accountType"], w["accountType"])
            self.assertEqual(g["active"], w["active"])
            self.assertEqual(g.get("emailAddress"), w["emailAddress"])
            self.assertEqual(g["displayName"], w["displayName"])
        self.assertEqual({u["accountType"] for u in got}, {"atlassian", "app", "customer"})
        self.assertEqual({u["active"] for u in got}, {True, False})
        self.assertTrue(any("emailAddress" not in u for u in got if u["accountType"] == "atlassian"))
        self.assertTrue(any(ord(ch) > 127 for u in got for ch in u["displayName"]))
        self.assertTrue(any('"' in u["displayName"] for u in got))
        self.assertEqual(self.walk_offset("/users", 5), got)

    def test_users_search_empty_page_after_the_end(self):
        n = len(self.truth["jira"]["users"])
        self.assertEqual(self.fake.jira("/users/search", {"startAt": n, "maxResults": 10}).json, [])
        self.assertEqual(len(self.fake.jira("/users/search", {"startAt": n - 1}).json), 1)

    def test_bad_paging_parameters_are_400_error_collections(self):
        self.assertJiraError(self.fake.jira("/users/search", {"maxResults": "zz"}), 400, "maxResults")
        self.assertJiraError(self.fake.jira("/group/bulk", {"startAt": "-1"}), 400, "startAt")
        self.assertJiraError(self.fake.jira("/group/member", {"includeInactiveUsers": "maybe",
                                                              "groupId": self.truth["jira"]["groups"][0]["groupId"]}),
                             400)

    def test_group_bulk_is_a_pagebean_over_all_groups(self):
        got = self.walk_pagebean("/group/bulk", 1)
        self.assertEqual([g["groupId"] for g in got], [g["groupId"] for g in self.truth["jira"]["groups"]])
        self.assertTrue(any("/" in g["name"] for g in got))
        self.assertTrue(any(" " in g["name"] for g in got))
        self.assertTrue(any(ord(ch) > 127 for g in got for ch in g["name"]))
        bean = self.fake.jira("/group/bulk", {"maxResults": 500}).json
        self.assertEqual(bean["maxResults"], 50)
        self.assertEqual(bean["total"], len(got))
        one = got[3]
        bean = self.fake.jira("/group/bulk", {"groupId": one["groupId"]}).json
        self.assertEqual(bean["values"], [one])

    def test_group_member_honours_include_inactive_and_the_50_cap(self):
        users = {u["accountId"]: u for u in self.truth["jira"]["users"]}
        for group in self.truth["jira"]["groups"]:
            gid = group["groupId"]
            members = set(self.truth["jira"]["group_members"][gid])
            everyone = self.walk_pagebean("/group/member", 2, {"groupId": gid, "includeInactiveUsers": "true"})
            self.assertEqual({u["accountId"] for u in everyone}, members)
            active = self.walk_pagebean("/group/member", 3, {"groupId": gid})
            self.assertEqual({u["accountId"] for u in active}, {a for a in members if users[a]["active"]})
        software = next(g for g in self.truth["jira"]["groups"] if g["name"] == "jira-software-users")
        bean = self.fake.jira("/group/member", {"groupId": software["groupId"], "maxResults": 1000}).json
        self.assertEqual(bean["maxResults"], 50)
        by_name = self.fake.jira("/group/member", {"groupname": "jira-software-users"}).json
        self.assertEqual(by_name["total"], bean["total"])
        self.assertJiraError(self.fake.jira("/group/member"), 400)
        self.assertJiraError(self.fake.jira("/group/member", {"groupId": "nope"}), 404)

    def test_empty_group_has_an_empty_last_page(self):
        empty = [g for g in self.truth["jira"]["groups"] if not self.truth["jira"]["group_members"][g["groupId"]]]
        self.assertTrue(empty)
        bean = self.fake.jira("/group/member", {"groupId": empty[0]["groupId"]}).json
        self.assertEqual((bean["values"], bean["isLast"], bean["total"]), ([], True, 0))

    def test_project_search_paging_filters_cap_and_404(self):
        projects = self.truth["jira"]["projects"]
        got = self.walk_pagebean("/project/search", 1, {"expand": "lead"})
        self.assertEqual([p["id"] for p in got], [p["id"] for p in projects])
        self.assertEqual([p["lead"]["accountId"] for p in got], [p["lead"] for p in projects])
        bean = self.fake.jira("/project/search", {"maxResults": 1000}).json
        self.assertEqual(bean["maxResults"], 100)
        bean = self.fake.jira("/project/search", {"keys": ["OPS", "ALL"]}).json
        self.assertEqual(sorted(p["key"] for p in bean["values"]), ["ALL", "OPS"])
        self.assertNotIn("lead", bean["values"][0])
        self.assertJiraError(self.fake.jira("/project/search", {"keys": "NOPE"}), 404)
        self.assertJiraError(self.fake.jira("/project/NOPE"), 404)
        self.assertEqual(self.fake.jira("/project/OPS").json["key"], "OPS")

    def test_roles_match_the_truth(self):
        for project in self.truth["jira"]["projects"]:
            role_map = self.fake.jira("/project/%s/role" % project["key"]).json
            self.assertEqual(set(role_map), {r["name"] for r in project["roles"]})
            for role in project["roles"]:
                url = role_map[role["name"]]
                self.assertTrue(url.startswith(self.fake.base + "/rest/api/3/project/"), url)
                self.assertEqual(int(url.rsplit("/", 1)[1]), role["id"])
                body = self.fake.jira("/project/%s/role/%d" % (project["id"], role["id"])).json
                users = {a["actorUser"]["accountId"] for a in body["actors"]
                         if a["type"] == "atlassian-user-role-actor"}
                groups = {a["actorGroup"]["groupId"] for a in body["actors"]
                          if a["type"] == "atlassian-group-role-actor"}
                self.assertEqual((users, groups), (set(role["users"]), set(role["groups"])))
        self.assertJiraError(self.fake.jira("/project/OPS/role/99999"), 404)

    def test_myself_user_and_lookups(self):
        me = self.fake.jira("/myself").json
        self.assertEqual(me["emailAddress"], self.fake.creds["jira_email"])
        self.assertEqual(me["accountId"], self.truth["jira"]["myself"])
        self.assertIn("locale", me)
        other = self.truth["jira"]["users"][3]
        got = self.fake.jira("/user", {"accountId": other["accountId"], "expand": "groups"}).json
        self.assertEqual(got["accountId"], other["accountId"])
        self.assertIn("groups", got)
        self.assertJiraError(self.fake.jira("/user", {"accountId": "nobody"}), 404)
        groups = self.fake.jira("/user/groups", {"accountId": me["accountId"]}).json
        want = {g for g, m in self.truth["jira"]["group_members"].items() if me["accountId"] in m}
        self.assertEqual({g["groupId"] for g in groups}, want)

    def test_authentication_and_scoped_tokens(self):
        f = self.fake
        reply = f.jira("/myself", auth=None)
        self.assertEqual(reply.status, 401)
        self.assertTrue(reply.header("content-type").startswith("text/plain"))
        self.assertEqual(f.jira("/myself", auth="Basic " + base64.b64encode(b"x@y.z:nope").decode()).status, 401)
        self.assertEqual(f.jira("/myself", auth="scoped").status, 401)
        gw = "/ex/jira/%s/rest/api/3" % f.creds["cloud_id"]
        self.assertEqual(f.get(gw + "/myself", auth="scoped").status, 200)
        self.assertEqual(f.get(gw + "/myself", auth="jira").status, 200)
        self.assertEqual(f.get("/ex/jira/not-the-cloud/rest/api/3/myself", auth="scoped").status, 404)
        info = f.get("/_edge/tenant_info", auth=None)
        self.assertEqual(info.json, {"cloudId": f.creds["cloud_id"]})
        self.assertEqual(f.get("/rest/api/3/serverInfo", auth=None).status, 200)

    def test_gateway_urls_keep_the_prefix(self):
        f = self.fake
        gw = "/ex/jira/%s/rest/api/3" % f.creds["cloud_id"]
        role_map = f.get(gw + "/project/OPS/role", auth="scoped").json
        for url in role_map.values():
            self.assertTrue(url.startswith(f.base + gw + "/project/OPS/role/"), url)
        bean = f.get(gw + "/group/bulk", {"maxResults": 1}, auth="scoped").json
        self.assertTrue(bean["nextPage"].startswith(f.base + gw + "/group/bulk?"), bean["nextPage"])

    def test_truth_is_consistent_with_the_org_api(self):
        jira_ids = {u["accountId"] for u in self.truth["jira"]["users"] if u["accountType"] == "atlassian"}
        org_ids = {a["account_id"] for a in self.truth["org"]["accounts"]}
        self.assertEqual(org_ids, jira_ids)
        hidden = [u for u in self.truth["jira"]["users"] if u["accountType"] == "atlassian" and not u["emailAddress"]]
        self.assertTrue(hidden)
        emails = {a["account_id"]: a["email"] for a in self.truth["org"]["accounts"]}
        self.assertTrue(all(emails[u["accountId"]] for u in hidden))
        jira_ws = [w for w in self.truth["org"]["workspaces"] if w["typeKey"] == "jira-software"]
        self.assertEqual([w["hostUrl"] for w in jira_ws], [self.fake.base])
        self.assertEqual(self.truth["urls"]["jira_site"], self.fake.base)

    def test_unknown_paths_and_methods(self):
        self.assertEqual(self.fake.jira("/nope").status, 404)
        self.assertEqual(self.fake.request("PUT", "/rest/api/3/myself").status, 405)
        self.assertEqual(self.fake.get("/elsewhere", auth=None).status, 404)


# ======================================================================
class UserSearchCeiling(FakeCase):
    ARGS = ("--users", "1500", "--groups", "10", "--projects", "2", "--roles-per-project", "2")

    def test_users_search_clamps_to_1000_and_pages_on(self):
        page = self.fake.jira("/users/search", {"maxResults": 5000}).json
        self.assertEqual(len(page), 1000)
        rest = self.fake.jira("/users/search", {"startAt": 1000, "maxResults": 1000}).json
        self.assertEqual(len(page) + len(rest), 1500)

    def test_user_search_family_stops_at_the_thousandth_user(self):
        j = self.truth["jira"]
        users = {u["accountId"]: u for u in j["users"]}
        big = next(p for p in j["projects"] if p["key"] == "ALL")
        participants = set()
        for role in big["roles"]:
            participants.update(role["users"])
            for gid in role["groups"]:
                participants.update(j["group_members"][gid])
        self.assertEqual(sorted(participants), big["participants"])
        self.assertEqual(len(participants), big["participant_count"])
        reachable = [a for a in participants if users[a]["active"]]
        self.assertGreater(len(participants), 1000)
        self.assertGreater(len(reachable), 1000, "precondition: the big project has > 1,000 active participants")
        for path, q in (("/user/viewissue/search", {"projectKey": "ALL", "query": "."}),
                        ("/user/assignable/search", {"project": "ALL"}),
                        ("/user/permission/search", {"projectKey": "ALL", "permissions": "BROWSE_PROJECTS"}),
                        ("/user/search", {"query": "."})):
            got = self.walk_offset(path, 100, q)
            self.assertEqual(len(got), 1000, path)
            self.assertEqual(self.fake.jira(path, dict(q, startAt=1000)).json, [])
            tail = self.fake.jira(path, dict(q, startAt=990, maxResults=50)).json
            self.assertEqual(len(tail), 10)
        self.assertJiraError(self.fake.jira("/user/viewissue/search", {"query": "."}), 400)


# ======================================================================
class JiraWrites(FakeCase):
    ARGS = ("--profile", "tiny", "--seed", "5")

    def pick(self):
        j = self.truth["jira"]
        synced = {g["id"] for g in self.truth["org"]["groups"] if g["external_synced"]}
        user = next(u for u in j["users"] if u["accountType"] == "atlassian" and u["active"]
                    and u["accountId"] != j["myself"])
        group = next(g for g in j["groups"] if not g["site_local"] and g["groupId"] not in synced
                     and user["accountId"] not in j["group_members"][g["groupId"]])
        return user, group, synced

    def members(self, gid):
        return {u["accountId"] for u in self.walk_pagebean("/group/member", 50,
                                                           {"groupId": gid, "includeInactiveUsers": "true"})}

    def test_group_membership_add_remove_and_idempotency_answers(self):
        user, group, synced = self.pick()
        q = {"groupId": group["groupId"]}
        r = self.fake.request("POST", "/rest/api/3/group/user", q, {"accountId": user["accountId"]})
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["groupId"], group["groupId"])
        self.assertIn(user["accountId"], self.members(group["groupId"]))
        again = self.fake.request("POST", "/rest/api/3/group/user", q, {"accountId": user["accountId"]})
        self.assertJiraError(again, 400, "is already a member")
        gone = self.fake.request("DELETE", "/rest/api/3/group/user", dict(q, accountId=user["accountId"]))
        self.assertEqual((gone.status, gone.raw), (200, b""))
        self.assertNotIn(user["accountId"], self.members(group["groupId"]))
        self.assertJiraError(self.fake.request("DELETE", "/rest/api/3/group/user",
                                               dict(q, accountId=user["accountId"])), 400, "not a member")
        self.assertJiraError(self.fake.request("POST", "/rest/api/3/group/user", q, {"accountId": "ghost"}), 404)
        self.assertJiraError(self.fake.request("POST", "/rest/api/3/group/user", q, {}), 400)
        self.assertJiraError(self.fake.request("DELETE", "/rest/api/3/group/user", q), 400)
        self.assertJiraError(self.fake.request("POST", "/rest/api/3/group/user", {"groupId": list(synced)[0]},
                                               {"accountId": user["accountId"]}), 400, "identity provider")

    def test_role_actors_add_and_remove(self):
        user, group, _ = self.pick()
        ops = next(p for p in self.truth["jira"]["projects"] if p["key"] == "OPS")
        role = next(r for r in ops["roles"] if r["name"] == "Viewer")
        path = "/rest/api/3/project/OPS/role/%d" % role["id"]
        newcomer = next(u for u in self.truth["jira"]["users"] if u["accountType"] == "atlassian"
                        and u["active"] and u["accountId"] not in role["users"])
        r = self.fake.request("POST", path, body={"user": [newcomer["accountId"]], "groupId": [group["groupId"]]})
        self.assertEqual(r.status, 200, r.raw)
        actors = self.fake.get(path).json["actors"]
        self.assertIn(newcomer["accountId"], [a.get("actorUser", {}).get("accountId") for a in actors])
        self.assertIn(group["groupId"], [a.get("actorGroup", {}).get("groupId") for a in actors])
        self.assertJiraError(self.fake.request("POST", path, body={"user": [newcomer["accountId"]]}),
                             400, "already a member of the project role")
        self.assertJiraError(self.fake.request("POST", path, body={"users": ["x"]}), 400)
        self.assertJiraError(self.fake.request("POST", path, body={"user": ["ghost"]}), 404)
        d = self.fake.request("DELETE", path, {"user": newcomer["accountId"]})
        self.assertEqual(d.status, 204)
        self.assertEqual(self.fake.request("DELETE", path, {"groupId": group["groupId"]}).status, 204)
        self.assertJiraError(self.fake.request("DELETE", path, {"user": newcomer["accountId"]}), 404)
        self.assertJiraError(self.fake.request("DELETE", path), 400)
        actors = self.fake.get(path).json["actors"]
        self.assertEqual({a.get("actorUser", {}).get("accountId") for a in actors} - {None}, set(role["users"]))

    def test_create_user(self):
        r = self.fake.request("POST", "/rest/api/3/user",
                              body={"emailAddress": "new.person@example.com", "products": ["jira-software"]})
        self.assertEqual(r.status, 201, r.raw)
        aid = r.json["accountId"]
        self.assertEqual(self.fake.jira("/user", {"accountId": aid}).json["emailAddress"], "new.person@example.com")
        all_ids = [u["accountId"] for u in self.walk_offset("/users/search", 100)]
        self.assertIn(aid, all_ids)
        again = self.fake.request("POST", "/rest/api/3/user",
                                  body={"emailAddress": "new.person@example.com", "products": []})
        self.assertEqual((again.status, again.json["accountId"]), (201, aid))
        org = self.fake.get("/admin/v2/orgs/%s/directories/-/users/%s" % (self.fake.creds["org_id"], aid),
                            auth="org")
        self.assertEqual(org.status, 200)
        self.assertJiraError(self.fake.request("POST", "/rest/api/3/user", body={"emailAddress": "a@example.com"}),
                             400, "products")

    def test_create_issue(self):
        adf = {"type": "doc", "version": 1, "content": [{"type": "paragraph",
                                                          "content": [{"type": "text", "text": "hi"}]}]}
        fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "Grant", "description": adf}
        first = self.fake.request("POST", "/rest/api/3/issue", body={"fields": fields})
        self.assertEqual(first.status, 201, first.raw)
        self.assertEqual(first.json["key"], "OPS-1")
        self.assertEqual(self.fake.request("POST", "/rest/api/3/issue", body={"fields": fields}).json["key"], "OPS-2")
        got = self.fake.jira("/issue/OPS-1").json
        self.assertEqual(got["fields"]["description"], adf)
        bad = self.fake.request("POST", "/rest/api/3/issue", body={"fields": dict(fields, description="plain")})
        self.assertJiraError(bad, 400, "Atlassian Document")
        bad = self.fake.request("POST", "/rest/api/3/issue", body={"fields": dict(fields, project={"key": "NOPE"},
                                                                                  summary="")})
        self.assertJiraError(bad, 400)
        self.assertEqual(set(bad.json["errors"]), {"project", "summary"})
        self.assertJiraError(self.fake.request("POST", "/rest/api/3/issue", body=b"{not json"), 400)


# ======================================================================
class GroupsWithoutId(FakeCase):
    """--groups-without-id / --omit-actor-group-ids: GroupDetails.groupId
    is nullable and ProjectRoleGroup.groupId optional."""
    ARGS = ("--profile", "tiny", "--groups-without-id", "2", "--omit-actor-group-ids")

    def test_hidden_groups_answer_null_and_go_by_name(self):
        j = self.truth["jira"]
        hidden = [g for g in j["groups"] if g["groupIdHidden"]]
        self.assertEqual(len(hidden), 2)
        self.assertFalse(any(g["site_local"] for g in hidden))
        listed = {g["name"]: g["groupId"] for g in self.walk_pagebean("/group/bulk", 50)}
        for g in j["groups"]:
            self.assertEqual(listed[g["name"]], None if g["groupIdHidden"] else g["groupId"])
        grp = hidden[0]
        members = self.walk_pagebean("/group/member", 50, {"groupname": grp["name"],
                                                           "includeInactiveUsers": "true"})
        self.assertEqual(sorted(u["accountId"] for u in members), j["group_members"][grp["groupId"]])
        self.assertJiraError(self.fake.jira("/group/member", {"groupId": grp["groupId"]}), 404)
        by_name = self.fake.jira("/group/bulk", {"groupName": grp["name"]}).json["values"]
        self.assertEqual(by_name, [{"name": grp["name"], "groupId": None}])

    def test_role_actors_carry_names_only(self):
        p = self.truth["jira"]["projects"][0]
        seen = 0
        for r in p["roles"]:
            actors = self.fake.jira("/project/%s/role/%d" % (p["id"], r["id"])).json["actors"]
            for a in actors:
                if a["type"] == "atlassian-group-role-actor":
                    self.assertNotIn("groupId", a["actorGroup"])
                    self.assertTrue(a["actorGroup"]["name"])
                    seen += 1
        self.assertGreater(seen, 0)


# ======================================================================
class OrgApi(FakeCase):
    ARGS = ("--profile", "demo", "--seed", "11")

    @property
    def org(self):
        return self.truth["org"]["org_id"]

    def d(self, suffix="", directory="-"):
        return "/admin/v2/orgs/%s/directories/%s%s" % (self.org, directory, suffix)

    def test_v1_users_pages_with_full_url_cursors(self):
        url = "/admin/v1/orgs/%s/users" % self.org
        seen, query, pages = [], None, 0
        while True:
            reply = self.fake.get(url, query, auth="org").json
            seen += reply["data"]
            pages += 1
            nxt = reply["links"].get("next")
            if not nxt:
                break
            self.assertTrue(nxt.startswith(self.fake.base + url + "?cursor="), nxt)
            query = {"cursor": urllib.parse.parse_qs(urllib.parse.urlparse(nxt).query)["cursor"][0]}
        self.assertGreater(pages, 1)
        want = [a["account_id"] for a in self.truth["org"]["accounts"]]
        self.assertEqual([u["account_id"] for u in seen], want)
        self.assertTrue(all(u["email"] for u in seen))
        self.assertOrgError(self.fake.get(url, {"cursor": "zzz"}, auth="org"), 400, "ADMIN-400-1")

    def test_v2_users_get_and_search_walk_every_account(self):
        want = [a["account_id"] for a in self.truth["org"]["accounts"]]
        got = self.walk_v2(self.d("/users"), {"limit": 7})
        self.assertEqual([u["accountId"] for u in got], want)
        statuses = {u["accountId"]: u["status"] for u in got}
        self.assertEqual(statuses, {a["account_id"]: a["status"] for a in self.truth["org"]["accounts"]})
        got = self.walk_v2(self.d("/users/search", self.truth["org"]["directory_id"]), method="POST",
                           body={"limit": 13, "expand": ["groups"]})
        self.assertEqual([u["accountId"] for u in got], want)
        self.assertIn("groups", got[0])
        for group in self.truth["org"]["groups"][:5]:
            members = self.walk_v2(self.d("/users"), {"limit": 3, "groupIds": group["id"]})
            self.assertEqual({u["accountId"] for u in members}, set(group["members"]))
            searched = self.walk_v2(self.d("/users/search"), method="POST", body={"groupIds": [group["id"]]})
            self.assertEqual({u["accountId"] for u in searched}, set(group["members"]))

    def test_v2_parameter_errors(self):
        self.assertOrgError(self.fake.get(self.d("/users"), {"limit": 0}, auth="org"), 400)
        self.assertOrgError(self.fake.get(self.d("/users"), {"limit": 101}, auth="org"), 400)
        self.assertOrgError(self.fake.get(self.d("/users"), {"cursor": "!!"}, auth="org"), 400, "ADMIN-400-1")
        self.assertOrgError(self.fake.get(self.d("/users", "not-a-dir"), auth="org"), 404)
        self.assertOrgError(self.fake.get("/admin/v1/orgs/other", auth="org"), 404, "ADMIN-404-2")
        self.assertOrgError(self.fake.get(self.d("/users/ghost"), auth="org"), 404)
        r = self.fake.get(self.d("/users"), auth=None)
        self.assertEqual((r.status, r.json), (401, {"code": 401, "message": "Unauthorized"}))

    def test_groups_and_directories(self):
        want = [g["id"] for g in self.truth["org"]["groups"]]
        got = self.walk_v2(self.d("/groups"), {"limit": 4})
        self.assertEqual([g["id"] for g in got], want)
        got = self.walk_v2(self.d("/groups/search"), method="POST", body={"limit": 5})
        self.assertEqual([g["id"] for g in got], want)
        jira_group_names = {g["name"] for g in self.truth["jira"]["groups"] if g["site_local"]}
        self.assertFalse(jira_group_names & {g["name"] for g in got})
        one = self.fake.get(self.d("/groups/" + want[0]), auth="org").json["data"]
        self.assertEqual(one["id"], want[0])
        dirs = self.fake.get("/admin/v2/orgs/%s/directories" % self.org, auth="org").json["data"]
        self.assertEqual([x["directoryId"] for x in dirs], [self.truth["org"]["directory_id"]])

    def test_membership_writes_show_up_in_jira_and_org_reads(self):
        acct = next(a for a in self.truth["org"]["accounts"] if a["status"] == "active")
        group = next(g for g in self.truth["org"]["groups"]
                     if not g["external_synced"] and acct["account_id"] not in g["members"])
        # a write names the group's directory: "-" is a read-only scope
        for write in (self.d("/groups/%s/memberships" % group["id"]),
                      self.d("/groups/%s/role-assignments/assign" % group["id"])):
            self.assertOrgError(self.fake.request("POST", write, body={"accountId": acct["account_id"]},
                                                  auth="org"), 404, "ADMIN-404-10")
        directory = self.fake.get(self.d("/groups/" + group["id"]), auth="org").json["data"]["directoryId"]
        path = self.d("/groups/%s/memberships" % group["id"], directory=directory)
        r = self.fake.request("POST", path, body={"accountId": acct["account_id"]}, auth="org")
        self.assertEqual((r.status, r.raw), (204, b""))
        self.assertIsNone(r.header("content-length"))
        members = self.walk_v2(self.d("/users"), {"groupIds": group["id"]})
        self.assertIn(acct["account_id"], [u["accountId"] for u in members])
        jira = self.walk_pagebean("/group/member", 50, {"groupId": group["id"], "includeInactiveUsers": "true"})
        self.assertIn(acct["account_id"], [u["accountId"] for u in jira])
        self.assertOrgError(self.fake.request("POST", path, body={"accountId": acct["account_id"]}, auth="org"),
                            409, "ADMIN-UAM-409-2")
        self.assertEqual(self.fake.request("DELETE", path + "/" + acct["account_id"], auth="org").status, 204)
        self.assertOrgError(self.fake.request("DELETE", path + "/" + acct["account_id"], auth="org"), 404)
        synced = next(g for g in self.truth["org"]["groups"] if g["external_synced"])
        self.assertOrgError(self.fake.request("POST", self.d("/groups/%s/memberships" % synced["id"],
                                                             directory=directory),
                                              body={"accountId": acct["account_id"]}, auth="org"), 400)

    def test_group_create_and_delete(self):
        d = lambda suffix: self.d(suffix, directory=self.truth["org"]["directory_id"])
        self.assertOrgError(self.fake.request("POST", self.d("/groups"), body={"name": "Brand new / groupé"},
                                              auth="org"), 404, "ADMIN-404-10")  # writes take no "-"
        r = self.fake.request("POST", d("/groups"), body={"name": "Brand new / groupé"}, auth="org")
        self.assertEqual(r.status, 201, r.raw)
        gid = r.json["id"]
        self.assertOrgError(self.fake.request("POST", d("/groups"), body={"name": "brand NEW / groupé"},
                                              auth="org"), 409)
        names = [g["name"] for g in self.walk_pagebean("/group/bulk", 50)]
        self.assertIn("Brand new / groupé", names)
        self.assertOrgError(self.fake.request("DELETE", self.d("/groups/" + gid), auth="org"), 404, "ADMIN-404-10")
        self.assertEqual(self.fake.request("DELETE", d("/groups/" + gid), auth="org").status, 204)
        self.assertOrgError(self.fake.get(self.d("/groups/" + gid), auth="org"), 404)

    def test_role_assign_revoke_and_role_assignment_reads(self):
        acct = next(a for a in self.truth["org"]["accounts"] if a["status"] == "active"
                    and a["account_id"] != self.truth["jira"]["myself"])
        bb = next(w for w in self.truth["org"]["workspaces"] if w["type"] == "bitbucket")
        base = "/admin/v1/orgs/%s/users/%s/roles/" % (self.org, acct["account_id"])
        body = {"role": "atlassian/admin", "resource": bb["id"]}
        self.assertEqual(self.fake.request("POST", base + "assign", body=body, auth="org").status, 204)
        ra = self.walk_v2(self.d("/users/%s/role-assignments" % acct["account_id"]), {"limit": 1})
        entry = next(x for x in ra if x["resourceId"] == bb["id"])
        self.assertIn("atlassian/admin", entry["roles"])
        self.assertIn({"role": "atlassian/admin", "roleAssignmentMethods": ["direct"]}, entry["roleAssignments"])
        self.assertEqual(self.fake.request("POST", base + "revoke", body=body, auth="org").status, 204)
        ra = self.walk_v2(self.d("/users/%s/role-assignments" % acct["account_id"]))
        self.assertFalse(any("atlassian/admin" in x["roles"] for x in ra if x["resourceId"] == bb["id"]))
        self.assertOrgError(self.fake.request("POST", base + "assign", body={"role": "atlassian/nope"}, auth="org"),
                            400, "ADMIN-UAM-400-1")
        self.assertOrgError(self.fake.request("POST", base + "assign",
                                              body={"role": "atlassian/user", "resource": "ari:nope"}, auth="org"),
                            404, "ADMIN-UAM-404-1")
        jira_group = next(g for g in self.truth["org"]["groups"] if g["name"] == "jira-software-users")
        ga = self.fake.get(self.d("/groups/%s/role-assignments" % jira_group["id"]), auth="org").json["data"]
        self.assertEqual([(x["resourceId"], x["roles"]) for x in ga],
                         [(w["id"], ["atlassian/user"]) for w in self.truth["org"]["workspaces"]
                          if w["typeKey"] == "jira-software"])

    def test_suspend_restore_and_legacy_v1(self):
        acct = [a for a in self.truth["org"]["accounts"] if a["status"] == "active"][5]["account_id"]
        status = lambda: self.fake.get(self.d("/users/" + acct), auth="org").json["data"]["status"]
        # the user writes name the user's directory, found through
        # GET /v2/orgs/{orgId}/directories?accountId=: "-" is only for reads
        dirs = self.fake.get("/admin/v2/orgs/%s/directories" % self.org, {"accountId": acct}, auth="org")
        directory = dirs.json["data"][0]["directoryId"]
        self.assertEqual(len(dirs.json["data"]), 1)
        for verb in ("suspend", "restore"):
            self.assertOrgError(self.fake.request("POST", self.d("/users/%s/%s" % (acct, verb)), auth="org"),
                                404, "ADMIN-404-10")
        self.assertEqual(status(), "active")
        d = lambda suffix: self.d(suffix, directory=directory)
        self.assertEqual(self.fake.request("POST", d("/users/%s/suspend" % acct), auth="org").status, 204)
        self.assertEqual(status(), "suspended")
        self.assertEqual(self.fake.request("POST", d("/users/%s/restore" % acct), auth="org").status, 204)
        self.assertEqual(status(), "active")
        nobody = self.fake.get("/admin/v2/orgs/%s/directories" % self.org, {"accountId": "nobody"}, auth="org")
        self.assertEqual(nobody.json["data"], [])
        legacy = "/admin/v1/orgs/%s/directory/users/%s/" % (self.org, acct)
        r = self.fake.request("POST", legacy + "suspend-access", auth="org")
        self.assertEqual(r.status, 200)
        self.assertIn("message", r.json)
        self.assertEqual(status(), "suspended")
        self.fake.request("POST", legacy + "restore-access", auth="org")
        self.assertEqual(status(), "active")

    def test_user_management_lifecycle_flips_jira_active(self):
        acct = [a for a in self.truth["org"]["accounts"] if a["status"] == "active"][6]["account_id"]
        path = "/users/%s/manage/lifecycle/" % acct
        self.assertEqual(self.fake.request("POST", path + "disable", body={"message": "bye"}, auth="org").status, 204)
        self.assertFalse(self.fake.jira("/user", {"accountId": acct}).json["active"])
        details = self.fake.get(self.d("/users/" + acct), auth="org").json["data"]
        self.assertEqual((details["accountStatus"], details["status"]), ("inactive", "deactivated"))
        self.assertEqual(self.fake.request("POST", path + "enable", auth="org").status, 204)
        self.assertTrue(self.fake.jira("/user", {"accountId": acct}).json["active"])
        r = self.fake.request("POST", "/users/ghost/manage/lifecycle/disable", auth="org")
        self.assertEqual((r.status, r.json), (404, {"key": "accountNotFound"}))
        self.assertEqual(self.fake.request("POST", path + "disable", auth=None).json, {"key": "unauthorized"})

    def test_workspaces_cursor_in_body(self):
        path = "/admin/v2/orgs/%s/workspaces" % self.org
        got = self.walk_v2(path, method="POST", body={"limit": 1})
        self.assertEqual([w["id"] for w in got], [w["id"] for w in self.truth["org"]["workspaces"]])
        jira = [w for w in got if w["attributes"]["typeKey"] == "jira-software"]
        self.assertEqual(jira[0]["attributes"]["hostUrl"], self.fake.base)
        only = self.fake.request("POST", path, body={"query": {"field": {"name": "type", "values": ["confluence"]}}},
                                 auth="org").json
        self.assertEqual([w["attributes"]["type"] for w in only["data"]], ["confluence"])
        self.assertEqual(self.fake.request("POST", path, body={"limit": 5000}, auth="org").status, 400)


# ======================================================================
SPECS = os.environ.get("ATLASSIAN_SPECS_DIR") or os.path.join(HERE, "..", "..", "..", "shared", "specs")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def id_shape(value):
    """The form of an id with its variable parts taken out: a bare uuid is
    '<uuid>', an ARI keeps its 'ari:cloud:<owner>::<type>/' prefix."""
    m = re.match(r"^(ari:cloud:[a-z-]*::[a-z-]+/)", value)
    if m:
        return m.group(1) + "<id>"
    return "<uuid>" if UUID_RE.fullmatch(value) else "<other>"


class IdForms(FakeCase):
    """Every id the plugins read comes in the form the spec's example shows
    (docs/plugins/atlassian_org.md, "Id forms"): ARIs where the spec shows
    ARIs, bare ids where it shows bare ids."""
    ARGS = ("--profile", "demo", "--seed", "17")

    def spec_shape(self, schema, prop):
        path = os.path.join(SPECS, "atlassian-admin-organization.openapi.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            schemas = json.load(fh)["components"]["schemas"]
        return id_shape(schemas[schema]["properties"][prop]["example"])

    def assertShape(self, values, shape, schema=None, prop=None):
        self.assertTrue(values)
        for v in values:
            self.assertEqual(id_shape(v), shape, v)
        if schema:
            spec = self.spec_shape(schema, prop)
            if spec is not None:
                self.assertEqual(spec, shape, "%s.%s in the spec" % (schema, prop))

    @property
    def org(self):
        return self.truth["org"]["org_id"]

    def d(self, suffix):
        return "/admin/v2/orgs/%s/directories/-%s" % (self.org, suffix)

    def test_users_search_groups_are_group_aris(self):
        got = self.walk_v2(self.d("/users/search"), method="POST", body={"expand": ["groups", "productAccess"]})
        gids = [g["id"] for u in got for g in u.get("groups", [])]
        self.assertShape(gids, "ari:cloud:identity::group/<id>", "MultiDirectoryUserGroup", "id")
        bare = {g["id"] for g in self.truth["org"]["groups"]}
        self.assertTrue({x.split("/", 1)[1] for x in gids} <= bare)
        sites = [p["id"] for u in got for p in u.get("productAccess", [])]
        # Product instances are ARIs (a site's, or a Bitbucket workspace's).
        self.assertEqual({x for x in sites if not x.startswith("ari:cloud:")}, set())
        self.assertTrue(any(id_shape(x).endswith("::site/<id>") for x in sites))

    def test_group_listings_give_bare_group_ids(self):
        for got in (self.walk_v2(self.d("/groups")),
                    self.walk_v2(self.d("/groups/search"), method="POST", body={})):
            self.assertShape([g["id"] for g in got], "<uuid>", "MultiDirectoryGroup", "id")
            self.assertShape([g["directoryId"] for g in got], "<uuid>", "MultiDirectoryGroup", "directoryId")
        dirs = self.fake.get("/admin/v2/orgs/%s/directories" % self.org, auth="org").json["data"]
        self.assertShape([x["directoryId"] for x in dirs], "<uuid>", "MultiDirectoryUserDirectory", "directoryId")

    def test_role_assignments_name_resources_by_ari(self):
        platform = "ari:cloud:platform::org/" + self.org
        seen = set()
        for ra in self.truth["org"]["role_assignments"]:
            kind = "users" if ra["principal_type"] == "user" else "groups"
            got = self.walk_v2(self.d("/%s/%s/role-assignments" % (kind, ra["principal_id"])))
            for item in got:
                self.assertTrue(item["resourceId"].startswith("ari:cloud:"), item)
                if item["resourceId"].startswith("ari:cloud:platform::"):
                    self.assertEqual((item["resourceId"], item["resourceOwner"]), (platform, "platform"))
                seen.add(item["resourceId"])
        self.assertIn(platform, seen)
        self.assertEqual(self.truth["org"]["platform_resource_id"], platform)

    def test_workspace_ids_are_the_role_assignment_aris(self):
        got = self.walk_v2("/admin/v2/orgs/%s/workspaces" % self.org, method="POST", body={})
        ids = {w["id"] for w in got}
        self.assertTrue(all(x.startswith("ari:cloud:") for x in ids), ids)
        held = {ra["resource_id"] for ra in self.truth["org"]["role_assignments"]}
        self.assertTrue(held - {self.truth["org"]["platform_resource_id"]} <= ids)

    def test_org_and_account_ids_are_bare(self):
        org = self.fake.get("/admin/v1/orgs/" + self.org, auth="org").json["data"]
        self.assertEqual(org["id"], self.org)
        self.assertEqual(id_shape(org["id"]), "<uuid>")
        got = self.walk_v2(self.d("/users/search"), method="POST", body={})
        ids = [u["accountId"] for u in got]
        # Real account ids: 24 hex digits or "<n>:<uuid>"; never an ARI.
        self.assertTrue(any(":" in x for x in ids))
        self.assertFalse([x for x in ids if x.startswith("ari:")])


# ======================================================================
class ProductAris(FakeCase):
    """--product-aris: role-assignment reads name a Jira site by the ARI of
    the product a role is on (the spec's ResourceId example,
    ari:cloud:jira-core::site/1 with owner jira-core); the workspace
    listing and the truth keep the site's ari:cloud:jira::site/<cloudId>."""
    ARGS = ("--profile", "demo", "--product-aris")
    PRODUCTS = {"jira-software", "jira-servicedesk", "jira-core", "jira-product-discovery"}

    @property
    def org(self):
        return self.truth["org"]["org_id"]

    def read(self, kind, principal, query=None):
        path = "/admin/v2/orgs/%s/directories/-/%s/%s/role-assignments" % (self.org, kind, principal)
        return self.walk_v2(path, query)

    def test_jira_roles_come_under_product_aris_and_match_the_truth(self):
        jira = [w["id"] for w in self.truth["org"]["workspaces"] if w["type"] == "jira"]
        self.assertEqual(len(jira), 1)
        site = jira[0].split("::", 1)[1]
        want, got, owners = set(), set(), set()
        for ra in self.truth["org"]["role_assignments"]:
            want.add((ra["principal_type"], ra["principal_id"], ra["resource_id"], ra["role"]))
        for kind, table in (("user", "users"), ("group", "groups")):
            for pid in {ra["principal_id"] for ra in self.truth["org"]["role_assignments"]
                        if ra["principal_type"] == kind}:
                for item in self.read(table, pid):
                    rid, owner = item["resourceId"], item["resourceOwner"]
                    self.assertFalse(rid.startswith("ari:cloud:jira::"), item)
                    product = rid[len("ari:cloud:"):].split(":", 1)[0]
                    if product in self.PRODUCTS:
                        self.assertEqual(rid, "ari:cloud:%s::%s" % (product, site), item)
                        self.assertEqual(owner, product, item)
                        owners.add(owner)
                        rid = jira[0]
                    methods = {r["role"]: r["roleAssignmentMethods"]
                               for r in item.get("roleAssignments", [])}
                    for role in item["roles"]:
                        if kind == "group" or "direct" in methods[role]:
                            got.add((kind, pid, rid, role))
        self.assertEqual(got, want)
        self.assertGreater(len(owners), 1, owners)
        ws = self.walk_v2("/admin/v2/orgs/%s/workspaces" % self.org, method="POST", body={})
        self.assertIn(jira[0], {w["id"] for w in ws})

    def test_resource_filters_take_either_form(self):
        jira = [w["id"] for w in self.truth["org"]["workspaces"] if w["type"] == "jira"][0]
        ra = [r for r in self.truth["org"]["role_assignments"]
              if r["resource_id"] == jira and r["principal_type"] == "group"][0]
        kind = "groups"
        every = self.read(kind, ra["principal_id"])
        served = [i for i in every if i["resourceOwner"] in self.PRODUCTS]
        self.assertTrue(served)
        by_family = self.read(kind, ra["principal_id"], {"resourceIds": jira})
        self.assertEqual(by_family, served)
        one = served[0]
        self.assertEqual(self.read(kind, ra["principal_id"], {"resourceIds": one["resourceId"]}), [one])
        self.assertEqual(self.read(kind, ra["principal_id"], {"resourceOwners": one["resourceOwner"]}),
                         [one])


class RelativeNext(FakeCase):
    """--relative-next: v2 lists link the next page by a relative URL
    (LinkPageModel.next is "URL to fetch the Next Page"); its `cursor`
    parameter, decoded once, is the token to send."""
    ARGS = ("--profile", "tiny", "--relative-next")

    @property
    def org(self):
        return self.truth["org"]["org_id"]

    def walk(self, path, method, first):
        out, cursor, pages = [], None, 0
        while True:
            if method == "GET":
                reply = self.fake.get(path, {"cursor": cursor} if cursor else first, auth="org")
            else:
                reply = self.fake.request("POST", path, body={"cursor": cursor} if cursor else first,
                                          auth="org")
            self.assertEqual(reply.status, 200, reply.raw)
            out += reply.json["data"]
            pages += 1
            nxt = reply.json["links"].get("next")
            if not nxt:
                return out, pages
            url = urllib.parse.urlsplit(nxt)
            self.assertEqual((url.scheme, url.netloc, url.path), ("", "", path), nxt)
            self.assertTrue(url.query.startswith("cursor=") and url.query.endswith("%3D%3D"), nxt)
            if cursor is None:
                # Sent whole, or not decoded, the cursor is refused.
                for wrong in (nxt, url.query[len("cursor="):]):
                    bad = self.fake.request("POST", path, body={"cursor": wrong}, auth="org") \
                        if method == "POST" else self.fake.get(path, {"cursor": wrong}, auth="org")
                    self.assertOrgError(bad, 400, "ADMIN-400-1")
            cursor = urllib.parse.parse_qs(url.query)["cursor"][0]

    def test_workspaces_users_and_role_pages_link_relative_urls(self):
        o = self.truth["org"]
        ws, pages = self.walk("/admin/v2/orgs/%s/workspaces" % self.org, "POST", {"limit": 1})
        self.assertEqual({w["id"] for w in ws}, {w["id"] for w in o["workspaces"]})
        self.assertEqual(pages, len(o["workspaces"]))
        d = "/admin/v2/orgs/%s/directories/-" % self.org
        users, pages = self.walk(d + "/users/search", "POST", {"limit": 2})
        self.assertEqual({u["accountId"] for u in users}, {a["account_id"] for a in o["accounts"]})
        self.assertGreater(pages, 2)
        groups, _ = self.walk(d + "/groups/search", "POST", {"limit": 2})
        self.assertEqual({g["id"] for g in groups}, {g["id"] for g in o["groups"]})
        gid = next(ra["principal_id"] for ra in o["role_assignments"] if ra["principal_type"] == "group")
        want = {(ra["resource_id"], ra["role"]) for ra in o["role_assignments"] if ra["principal_id"] == gid}
        items, _ = self.walk(d + "/groups/%s/role-assignments" % gid, "GET", {"limit": 1})
        self.assertEqual({(i["resourceId"], r) for i in items for r in i["roles"]}, want)


class Scim(FakeCase):
    ARGS = ("--profile", "demo", "--seed", "13")

    def base(self, directory=None):
        return "/scim/directory/%s" % (directory or self.truth["scim"]["directory_id"])

    def scim(self, method, suffix, query=None, body=None, auth="scim"):
        return self.fake.request(method, self.base() + suffix, query, body, auth=auth)

    def assertScimError(self, reply, status, scim_type=None):
        self.assertEqual(reply.status, status, reply.raw)
        body = reply.json
        self.assertEqual(body["schemas"], ["urn:ietf:params:scim:api:messages:2.0:Error"])
        self.assertEqual(body["status"], str(status))
        if scim_type:
            self.assertEqual(body["scimType"], scim_type)

    def test_list_paging_and_filters(self):
        # Other tests of this class write, so compare with the live truth.
        want = [u["id"] for u in self.fake.get("/_fake/truth", auth=None).json["scim"]["users"]]
        got, start = [], 1
        while True:
            page = self.scim("GET", "/Users", {"startIndex": start, "count": 7}).json
            got += [u["id"] for u in page["Resources"]]
            self.assertEqual(page["totalResults"], len(want))
            if start + page["itemsPerPage"] > page["totalResults"] or not page["Resources"]:
                break
            start += page["itemsPerPage"]
        self.assertEqual(got, want)
        one = self.truth["scim"]["users"][2]
        found = self.scim("GET", "/Users", {"filter": 'userName eq "%s"' % one["userName"].upper()}).json
        self.assertEqual([u["id"] for u in found["Resources"]], [one["id"]])
        self.assertEqual(found["Resources"][0]["urn:scim:schemas:extension:atlassian-external:1.0"],
                         {"atlassianAccountId": one["atlassianAccountId"]})
        self.assertScimError(self.scim("GET", "/Users", {"filter": 'userName sw "a"'}), 400, "invalidFilter")
        self.assertScimError(self.scim("GET", "/Users", {"filter": 'userName eq "a" and active eq true'}),
                             400, "invalidFilter")

    def test_auth_shapes(self):
        r = self.scim("GET", "/Users", auth="Bearer wrong")
        self.assertEqual(r.status, 401)
        self.assertEqual(set(r.json), {"error", "traceId"})
        r = self.fake.get(self.base("other-directory") + "/Users", auth="scim")
        self.assertEqual(r.status, 403)
        self.assertEqual(set(r.json), {"error", "traceId"})

    def test_create_conflict_link_patch_put_delete(self):
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "fresh.one@example.com",
                "emails": [{"value": "fresh.one@example.com", "type": "work", "primary": True}],
                "name": {"givenName": "Fresh", "familyName": "One"}, "displayName": "Fresh One", "active": True}
        r = self.scim("POST", "/Users", body=body)
        self.assertEqual(r.status, 201, r.raw)
        created = r.json
        aid = created["urn:scim:schemas:extension:atlassian-external:1.0"]["atlassianAccountId"]
        org = "/admin/v2/orgs/%s/directories/-/users/%s" % (self.truth["org"]["org_id"], aid)
        self.assertEqual(self.fake.get(org, auth="org").json["data"]["email"], "fresh.one@example.com")
        self.assertScimError(self.scim("POST", "/Users", body=body), 409, "uniqueness")
        self.assertScimError(self.scim("POST", "/Users", body=dict(body, userName="x@elsewhere.test", emails=[])),
                             400, "invalidValue")
        # Linking: an existing managed account with the same email keeps its accountId.
        acct = next(a for a in self.truth["org"]["accounts"] if not a["scim_id"])
        linked = self.scim("POST", "/Users", body=dict(body, userName=acct["email"],
                                                       emails=[{"value": acct["email"], "primary": True}]))
        self.assertEqual(linked.status, 201, linked.raw)
        self.assertEqual(linked.json["urn:scim:schemas:extension:atlassian-external:1.0"]["atlassianAccountId"],
                         acct["account_id"])
        uid = created["id"]
        patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations": [{"op": "replace", "path": "active", "value": False}]}
        r = self.scim("PATCH", "/Users/" + uid, body=patch)
        self.assertEqual((r.status, r.json["active"]), (200, False))
        self.assertEqual(self.fake.get(org, auth="org").json["data"]["accountStatus"], "inactive")
        r = self.scim("PATCH", "/Users/" + uid, body={"Operations": [{"op": "replace",
                                                                      "value": {"active": "True", "title": "Boss"}}]})
        self.assertEqual((r.json["active"], r.json["title"]), (True, "Boss"))
        self.assertScimError(self.scim("PATCH", "/Users/" + uid,
                                       body={"Operations": [{"op": "replace", "path": "bogus", "value": 1}]}),
                             400, "invalidPath")
        r = self.scim("PUT", "/Users/" + uid, body=dict(body, displayName="Fresh Two"))
        self.assertEqual((r.status, r.json["displayName"]), (200, "Fresh Two"))
        self.assertNotIn("title", r.json)
        self.assertEqual(self.scim("DELETE", "/Users/" + uid).status, 204)
        self.assertScimError(self.scim("GET", "/Users/" + uid), 404)
        self.assertScimError(self.scim("PATCH", "/Users/" + uid, body=patch), 404)
        self.assertEqual(self.fake.get(org, auth="org").json["data"]["accountStatus"], "inactive")

    def test_groups(self):
        users = self.truth["scim"]["users"]
        r = self.scim("POST", "/Groups", body={"displayName": "IdP team"})
        self.assertEqual(r.status, 201, r.raw)
        gid = r.json["id"]
        self.assertScimError(self.scim("POST", "/Groups", body={"displayName": "IdP team"}), 409, "uniqueness")
        add = {"Operations": [{"op": "add", "path": "members", "value": [{"value": users[0]["id"]},
                                                                         {"value": users[1]["id"]}]}]}
        r = self.scim("PATCH", "/Groups/" + gid, body=add)
        self.assertEqual(sorted(m["value"] for m in r.json["members"]), sorted([users[0]["id"], users[1]["id"]]))
        rm = {"Operations": [{"op": "remove", "path": 'members[value eq "%s"]' % users[0]["id"]}]}
        self.assertEqual([m["value"] for m in self.scim("PATCH", "/Groups/" + gid, body=rm).json["members"]],
                         [users[1]["id"]])
        org_groups = self.walk_v2("/admin/v2/orgs/%s/directories/-/groups" % self.truth["org"]["org_id"])
        mirrored = next(g for g in org_groups if g["name"] == "IdP team")
        self.assertTrue(mirrored["externalSynced"])
        self.assertScimError(self.scim("PATCH", "/Groups/" + gid, body={"Operations": [
            {"op": "replace", "path": "displayName", "value": "Other"}]}), 400, "mutability")
        found = self.scim("GET", "/Groups", {"filter": 'displayName eq "IdP team"'}).json
        self.assertEqual([g["id"] for g in found["Resources"]], [gid])
        self.assertEqual(self.scim("DELETE", "/Groups/" + gid).status, 204)
        self.assertScimError(self.scim("GET", "/Groups/" + gid), 404)


# ======================================================================
class Faults(unittest.TestCase):
    def start(self, *args):
        fake = Fake("--profile", "tiny", *args)
        self.addCleanup(fake.stop)
        return fake

    def test_429_500_503_and_licence_shapes(self):
        f = self.start("--fault", "429,nth=1,retry_after=3:/myself", "--fault", "500,nth=2:/myself",
                       "--fault", "503,nth=3,retry_after=4:/myself", "--fault", "500:/directories$",
                       "--fault", "licence:/memberships$")
        r = f.jira("/myself")
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("retry-after"), "3")
        self.assertRegex(r.header("x-ratelimit-reset"), ISO_MINUTE)
        self.assertEqual(r.header("ratelimit-reason"), "jira-burst-based")
        self.assertEqual(r.header("x-ratelimit-remaining"), "0")
        r = f.jira("/myself")
        self.assertEqual(r.status, 500)
        self.assertIn("errorMessages", r.json)
        r = f.jira("/myself")
        self.assertEqual((r.status, r.header("retry-after")), (503, "4"))
        self.assertEqual(f.jira("/myself").status, 200)
        r = f.get("/admin/v2/orgs/%s/directories" % f.creds["org_id"], auth="org")
        self.assertEqual((r.status, r.json["errors"][0]["code"]), (500, "ADMIN-500-1"))
        org = f.truth["org"]
        group = next(g for g in org["groups"] if not g["external_synced"])
        r = f.request("POST", "/admin/v2/orgs/%s/directories/-/groups/%s/memberships" % (org["org_id"], group["id"]),
                      body={"accountId": org["accounts"][0]["account_id"]}, auth="org")
        self.assertEqual((r.status, r.json["errors"][0]["code"]), (409, "ADMIN-UAM-409-3"))

    def test_403_after_authentication_in_each_shape(self):
        f = self.start("--fault", "403:/myself", "--fault", "403:/directories$",
                       "--fault", "403,nth=1:/roles/assign$")
        r = f.jira("/myself")
        self.assertEqual(r.status, 403)
        self.assertIn("errorMessages", r.json)
        self.assertEqual(f.jira("/myself", auth=None).status, 401)  # auth first
        r = f.get("/admin/v2/orgs/%s/directories" % f.creds["org_id"], auth="org")
        self.assertEqual((r.status, r.json["errors"][0]["code"]), (403, "ADMIN-403-1"))
        org = f.truth["org"]
        r = f.request("POST", "/admin/v1/orgs/%s/users/%s/roles/assign"
                      % (org["org_id"], org["accounts"][0]["account_id"]),
                      body={"role": "atlassian/user", "resource": org["workspaces"][0]["id"]},
                      auth="org")
        self.assertEqual(r.status, 403)

    def test_delay_truncate_badjson_drop(self):
        f = self.start("--fault", "delay,ms=300:/myself", "--fault", "truncate:/users/search",
                       "--fault", "badjson:/group/bulk", "--fault", "drop,nth=1:/project/search")
        t0 = time.monotonic()
        self.assertEqual(f.jira("/myself").status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        with self.assertRaises(http.client.IncompleteRead):
            f.jira("/users/search")
        r = f.jira("/group/bulk")
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            json.loads(r.raw)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            f.jira("/project/search", fresh=True)
        self.assertEqual(f.jira("/project/search").status, 200)
        drops = [e for e in f.log_entries() if "drop" in e["fault"]]
        self.assertEqual([(e["path"], e["status"]) for e in drops], [("/rest/api/3/project/search", None)])

    def test_endless_pages_and_repeating_cursors(self):
        f = self.start("--fault", "endless:/group/bulk|/users/search|/directories/-/users$|/Users$",
                       "--fault", r"cursor-repeat:/groups/search|/v1/orgs/[^/]+/users$")
        start = 0
        for _ in range(6):
            bean = f.jira("/group/bulk", {"startAt": start, "maxResults": 5}).json
            self.assertFalse(bean["isLast"])
            self.assertTrue(bean["values"])
            start += len(bean["values"])
        self.assertGreater(start, len(f.truth["jira"]["groups"]))
        n = len(f.truth["jira"]["users"])
        self.assertTrue(f.jira("/users/search", {"startAt": n * 3}).json)
        org = f.truth["org"]["org_id"]
        page = f.get("/admin/v2/orgs/%s/directories/-/users" % org, {"limit": 100}, auth="org").json
        self.assertIn("next", page["links"])
        page = f.get("/admin/v2/orgs/%s/directories/-/users" % org, {"cursor": page["links"]["next"]},
                     auth="org").json
        self.assertIn("next", page["links"])
        scim = f.get("/scim/directory/%s/Users" % f.creds["scim_directory_id"], {"startIndex": 1000, "count": 2},
                     auth="scim").json
        self.assertGreater(scim["totalResults"], 1000 + scim["itemsPerPage"] - 1)
        self.assertEqual(len(scim["Resources"]), 2)
        page = f.request("POST", "/admin/v2/orgs/%s/directories/-/groups/search" % org, body={"limit": 1},
                         auth="org").json
        again = f.request("POST", "/admin/v2/orgs/%s/directories/-/groups/search" % org,
                          body={"cursor": page["links"]["next"]}, auth="org").json
        self.assertEqual(again["links"]["next"], page["links"]["next"])
        self.assertEqual(again["data"], page["data"])
        v1 = "/admin/v1/orgs/%s/users" % org
        first = f.get(v1, auth="org").json["links"]["next"]
        cursor = urllib.parse.parse_qs(urllib.parse.urlparse(first).query)["cursor"][0]
        self.assertEqual(f.get(v1, {"cursor": cursor}, auth="org").json["links"]["next"], first)

    def test_rate_faults_are_deterministic_and_counted(self):
        def statuses(*extra):
            f = Fake("--profile", "tiny", "--seed", "9", *extra)
            try:
                return [f.jira("/myself").status for _ in range(30)]
            finally:
                f.stop()
        a = statuses("--fault", "500,rate=0.5:/myself")
        self.assertEqual(a, statuses("--fault", "500,rate=0.5:/myself"))
        self.assertIn(500, a)
        self.assertIn(200, a)
        b = statuses("--fault", "500,every=3,count=2,method=GET:/myself")
        self.assertEqual([i for i, s in enumerate(b) if s == 500], [2, 5])
        c = statuses("--fault", "503,after=28:/myself")
        self.assertEqual(c.count(503), 2)

    def test_latency_and_bad_specs(self):
        f = self.start("--latency-ms", "150")
        t0 = time.monotonic()
        f.jira("/myself")
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        for bad in ("nope:/x", "500", "500,nth=x:/y", "500,wat=1:/y", "500:(("):
            proc = subprocess.run([sys.executable, FAKE, "--fault", bad], capture_output=True, timeout=20)
            self.assertEqual(proc.returncode, 2, bad)

    def test_burst_limit(self):
        f = self.start("--burst-limit", "5")
        while time.time() % 1 > 0.5:      # keep the burst inside one window
            time.sleep(0.05)
        codes = [f.jira("/myself") for _ in range(8)]
        self.assertEqual([r.status for r in codes[:5]], [200] * 5)
        limited = [r for r in codes if r.status == 429]
        self.assertTrue(limited)
        r = limited[0]
        self.assertEqual(r.header("ratelimit-reason"), "jira-burst-based")
        self.assertEqual(r.header("x-ratelimit-limit"), "5")
        self.assertEqual(r.header("x-ratelimit-remaining"), "0")
        self.assertRegex(r.header("x-ratelimit-reset"), ISO_MINUTE)
        self.assertGreaterEqual(int(r.header("retry-after")), 1)
        self.assertEqual(codes[0].header("x-ratelimit-limit"), "5")
        self.assertEqual(f.jira("/group/bulk").status, 200, "other endpoints have their own budget")
        time.sleep(1.1)
        self.assertEqual(f.jira("/myself").status, 200)

    def test_burst_headers_only_on_refusals(self):
        f = self.start("--burst-limit", "2", "--burst-headers", "refusals")
        while time.time() % 1 > 0.5:      # keep the burst inside one window
            time.sleep(0.05)
        codes = [f.jira("/myself") for _ in range(3)]
        self.assertEqual([r.status for r in codes], [200, 200, 429])
        self.assertIsNone(codes[0].header("x-ratelimit-limit"))
        self.assertIsNone(codes[1].header("x-ratelimit-remaining"))
        self.assertEqual(codes[2].header("x-ratelimit-limit"), "2")
        self.assertEqual(codes[2].header("x-ratelimit-remaining"), "0")
        proc = subprocess.run([sys.executable, FAKE, "--burst-headers", "sometimes"],
                              capture_output=True, timeout=20)
        self.assertEqual(proc.returncode, 2)


# ======================================================================
class Process(unittest.TestCase):
    def test_same_seed_same_truth_and_different_seed_differs(self):
        def snapshot(seed):
            f = Fake("--profile", "demo", "--seed", str(seed))
            try:
                t = f.truth
                t.pop("urls")
                for ws in t["org"]["workspaces"]:
                    ws["hostUrl"] = ws["hostUrl"].replace(str(f.port), "PORT")
                return json.dumps(t, sort_keys=True)
            finally:
                f.stop()
        self.assertEqual(snapshot(42), snapshot(42))
        self.assertNotEqual(snapshot(42), snapshot(43))

    def test_sigterm_exits_0_and_refuses_other_hosts(self):
        f = Fake()
        out = f.read("stdout")
        for key in ("jira_email", "jira_api_token", "jira_scoped_api_token", "cloud_id", "org_id",
                    "org_api_key", "scim_directory_id", "scim_token"):
            self.assertIn("%s=%s\n" % (key, f.creds[key]), out)
        self.assertEqual(f.read("port").strip(), str(f.port))
        self.assertEqual(f.stop(), 0)
        for host in ("0.0.0.0", "192.0.2.1", "example.com"):
            proc = subprocess.run([sys.executable, FAKE, "--host", host], capture_output=True, timeout=20)
            self.assertEqual(proc.returncode, 2, host)

    def test_request_log_has_no_secrets(self):
        f = Fake()
        try:
            f.jira("/myself")
            f.get("/admin/v1/orgs", auth="org")
            f.jira("/myself", auth=None)
            entries = f.log_entries()
            self.assertEqual([(e["method"], e["path"], e["status"]) for e in entries],
                             [("GET", "/rest/api/3/myself", 200), ("GET", "/admin/v1/orgs", 200),
                              ("GET", "/rest/api/3/myself", 401)])
            text = f.read("requests.jsonl")
            for secret in ("jira_api_token", "org_api_key", "scim_token"):
                self.assertNotIn(f.creds[secret], text)
            self.assertNotIn("Basic ", text)
        finally:
            f.stop()

    def test_truth_endpoint_and_sigusr1_reflect_writes(self):
        f = Fake()
        try:
            g = next(x for x in f.truth["jira"]["groups"] if not f.truth["jira"]["group_members"][x["groupId"]])
            aid = f.truth["jira"]["myself"]
            f.request("POST", "/rest/api/3/group/user", {"groupId": g["groupId"]}, {"accountId": aid})
            live = f.get("/_fake/truth", auth=None).json
            self.assertEqual(live["jira"]["group_members"][g["groupId"]], [aid])
            self.assertEqual(json.loads(f.read("truth.json"))["jira"]["group_members"][g["groupId"]], [])
            f.proc.send_signal(signal.SIGUSR1)
            deadline = time.time() + 5
            while time.time() < deadline:
                if json.loads(f.read("truth.json"))["jira"]["group_members"][g["groupId"]] == [aid]:
                    break
                time.sleep(0.05)
            self.assertEqual(json.loads(f.read("truth.json"))["jira"]["group_members"][g["groupId"]], [aid])
        finally:
            f.stop()

    def test_tls(self):
        openssl = shutil.which("openssl")
        if not openssl:
            self.skipTest("openssl not installed")
        tmp = tempfile.mkdtemp(prefix="atlassian-fake-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        ctx = ssl.create_default_context(cafile=cert)
        f = Fake("--tls-cert", cert, "--tls-key", key, tls=ctx)
        try:
            self.assertEqual(f.truth["urls"]["jira_site"], "https://127.0.0.1:%d" % f.port)
            r = f.jira("/myself")
            self.assertEqual(r.status, 200)
            self.assertEqual(f.jira("/myself").status, 200, "keep-alive over TLS")
            ws = [w for w in f.truth["org"]["workspaces"] if w["typeKey"] == "jira-software"]
            self.assertEqual(ws[0]["hostUrl"], f.base)
            with socket.create_connection(("127.0.0.1", f.port), timeout=5) as raw:   # plain HTTP is refused
                raw.sendall(b"GET /rest/api/3/myself HTTP/1.1\r\nHost: x\r\n\r\n")
                raw.settimeout(5)
                try:
                    data = raw.recv(100)
                except OSError:
                    data = b""
                self.assertFalse(data.startswith(b"HTTP/1.1 200"))
            self.assertEqual(f.jira("/myself").status, 200, "a bad client does not break the server")
        finally:
            f.stop()


def abort(signum, _frame):
    """A hung test or a harness timeout must not leave fakes behind."""
    print("test_fake: aborted by signal %d" % signum, file=sys.stderr)
    kill_all()
    os._exit(1)


def main():
    if not os.path.exists(FAKE):
        print("SKIP: %s not found" % FAKE)
        return 77
    signal.signal(signal.SIGTERM, abort)
    signal.signal(signal.SIGALRM, abort)
    signal.alarm(int(os.environ.get("TEST_FAKE_TIMEOUT", "300")))
    try:
        program = unittest.main(module=__name__, exit=False, verbosity=int(os.environ.get("VERBOSE", "1")))
    finally:
        kill_all()
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
