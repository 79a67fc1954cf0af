# SPDX-License-Identifier: MIT
"""End-to-end tests of the access explorer: the built connhost binary,
the real jira_cloud.so, atlassian_org.so and flatfile.so, the fake
Atlassian Cloud (demo profile) on loopback, a real SQLite store.

The API (`connhost explore` and `connhost serve`) answers exactly what
the read commands print with --format json, paged; then in a real browser
(Debian's chromium, headless): a search reaches a person's page, the
entitlements shown are `connhost access`'s, hostile display names render
as text with no script run, a failed instance's data carries the stale
badge, and the CSV download is `connhost export`'s.
"""
import csv
import html
import http.client
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402
import lib  # noqa: E402
import test_serve  # noqa: E402

TENANT = "demo"
# Names that would run script if a page inserted them as markup: each sets
# the title the browser test checks.
PWN = "document.title='pwned'"
HOSTILE = [
    '<img src=x onerror="%s">' % PWN,
    "<script>%s</script>" % PWN,
    '"><svg onload="%s">' % PWN,
    "\u202eevil\u202c RTL \u05e9\u05dc\u05d5\u05dd",
    "zero\u200bwidth\u200d 🚀 Zoë",
    '=HYPERLINK("http://evil.example","click")',
]


def hostile_export(path, broken=False):
    users = [{"id": str(i + 1), "name": n, "email": "h%d@hostile.example" % (i + 1)}
             for i, n in enumerate(HOSTILE)]
    doc = {"flatfile": 1, "users": users,
           "groups": [{"id": "g1", "name": HOSTILE[1], "members": ["1", "2", "3", "6"]},
                      {"id": "g2", "name": HOSTILE[0], "member_groups": ["g1"],
                       "members": ["4"]}],
           "roles": [{"id": "r1", "name": HOSTILE[2], "assigned_groups": ["g2"],
                      "assigned_users": ["5"]}]}
    with open(path, "w", encoding="utf-8") as f:
        f.write("{broken" if broken else json.dumps(doc, ensure_ascii=False))


def steady(answer):
    """An answer without the stale data's age (it grows between two
    reads), nor the API's next_offset (the CLI pages nothing:
    test_api_says_when_it_cuts checks it)."""
    for s in answer.get("stale", ()):
        s.pop("age_seconds", None)
    answer.pop("next_offset", None)
    return answer


NEXT = re.compile(r'^<(/api/v1/[a-z-]+\?[^<>\s]*)>; rel="next"$')


def rows(text):
    return list(csv.reader(io.StringIO(text)))


class Explore:
    """`connhost explore --db PATH --listen 127.0.0.1:0`, stopped at the end."""

    def __init__(self, test, db, argv=None):
        """`argv`: the arguments instead of `explore --db DB`."""
        # the log to a file: every answer warns of the stale instance, and a
        # pipe nobody reads would fill up
        self.err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        argv = argv or ["explore", "--db", db]
        self.proc = subprocess.Popen([lib.CONNHOST] + argv + ["--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        test.addCleanup(self.stop)
        self.url = self.proc.stdout.readline().strip()
        test.assertRegex(self.url, r"^http://127\.0\.0\.1:\d+/$", self.read_log()
                         if not self.url else "")

    def read_log(self):
        self.err.seek(0)
        return self.err.read()

    def get(self, path, method="GET", headers=()):
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method,
                                     headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode("utf-8")

    def json(self, path):
        status, _, body = self.get(path)
        assert status == 200, (path, status, body)
        return steady(json.loads(body))

    def stop(self):
        """SIGTERM; returns the exit status (0: a clean stop)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.proc.stdout.closed:
            self.log = self.read_log()
            self.proc.stdout.close()
            self.err.close()
        return self.proc.returncode


class ExplorerTest(unittest.TestCase):
    maxDiff = 8000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="connhost-explorer-")
        d = os.path.join(cls.tmp, "fake")
        os.makedirs(d)
        cls.fake = lib.Fake(d, profile="demo")
        cls.db = os.path.join(cls.tmp, "connhost.db")
        cls.export = os.path.join(cls.tmp, "hostile.json")
        hostile_export(cls.export)
        c = cls.fake.creds
        secrets = {}
        for name, value in (("jira", c["jira_api_token"]), ("org", c["org_api_key"])):
            secrets[name] = os.path.join(cls.tmp, "secret-" + name)
            with open(secrets[name], "w") as f:
                f.write(value)
        cls.cfg = lib.write_config(os.path.join(cls.tmp, "connhost.yaml"), {
            TENANT: {
                "jira": {"plugin": "jira_cloud", "options": {
                    "url": cls.fake.base, "email": c["jira_email"],
                    "api_token": "${file:%s}" % secrets["jira"], "gateway_url": cls.fake.base}},
                "org": {"plugin": "atlassian_org", "options": {
                    "org_id": c["org_id"], "api_token": "${file:%s}" % secrets["org"],
                    "api_base": cls.fake.base + "/admin"}}},
            "hostile": {"hr": {"plugin": "flatfile", "options": {"path": cls.export}}},
        }, plugin_dir=lib.PLUGINS, extra="store: %s" % lib.yaml_quote(cls.db))
        out = os.path.join(cls.tmp, "graph.json")
        r = lib.run(["-c", cls.cfg, "sync", "-o", out])
        assert r.rc == 0, r
        # The second run: the hostile export is broken, so that instance
        # answers from run 1's data, marked stale.
        hostile_export(cls.export, broken=True)
        r = lib.run(["-c", cls.cfg, "sync", "-o", out])
        assert r.rc != 0 and "hostile/hr" in r.err, r
        cls.truth = cls.fake.truth

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, *args, fmt="json"):
        r = lib.run(list(args) + ["--db", self.db, "--format", fmt])
        self.assertEqual(r.rc, 0, r)
        return steady(json.loads(r.out)) if fmt == "json" else r.out

    def explore(self):
        return Explore(self, self.db)

    def sample_users(self, n=6):
        users = self.truth["jira"]["users"]
        return users[1:11] + users[11::max(1, len(users) // n)][:n]

    def jira_key(self, account_id):
        return "/".join([TENANT, "jira", "user", lib.key_encode(account_id)])

    # ---- the API ---------------------------------------------------------
    def test_api_equals_cli(self):
        ex = self.explore()
        big = "limit=100000"
        for cmd in ("runs", "resources", "grants", "stats", "report", "diff"):
            self.assertEqual(ex.json("/api/v1/%s?%s" % (cmd, big)), self.cli(cmd), cmd)
        self.assertEqual(ex.json("/api/v1/export?" + big), self.cli("export", "access-review"))
        self.assertEqual(ex.json("/api/v1/diff?from=1&to=2&" + big),
                         self.cli("diff", "--from", "1", "--to", "2"))
        self.assertEqual(ex.json("/api/v1/resources?type=group&search=a&run=1&" + big),
                         self.cli("resources", "--type", "group", "--search", "a", "--run", "1"))
        held = 0
        for u in self.sample_users():
            who = self.jira_key(u["accountId"])
            got = ex.json("/api/v1/access?who=%s&%s" % (urllib.parse.quote(who, safe=""), big))
            self.assertEqual(got, self.cli("access", who), who)
            held += len(got["access"])
            for row in got["access"][:2]:
                what = row["entitlement"]
                q = "who=%s&what=%s&%s" % (urllib.parse.quote(who, safe=""),
                                           urllib.parse.quote(what, safe=""), big)
                self.assertEqual(ex.json("/api/v1/explain?" + q), self.cli("explain", who, what))
                self.assertEqual(ex.json("/api/v1/who-has?what=%s&%s" % (
                    urllib.parse.quote(what, safe=""), big)), self.cli("who-has", what))
        self.assertGreater(held, 0)
        # the stale instance shows in the answers' "stale" field
        self.assertEqual([s["tenant"] + "/" + s["instance"]
                          for s in ex.json("/api/v1/stats")["stale"]], ["hostile/hr"])

    def test_api_pages_and_errors(self):
        ex = self.explore()
        full = self.cli("resources")["resources"]
        self.assertGreater(len(full), 5)
        page = ex.json("/api/v1/resources?limit=3&offset=2")
        self.assertEqual(page["resources"], full[2:5])
        self.assertEqual(ex.json("/api/v1/resources?offset=%d" % (len(full) - 1))["resources"],
                         full[-1:])
        self.assertEqual(ex.json("/api/v1/resources?limit=0")["resources"], [])
        status, _, body = ex.get("/api/v1/access?who=nobody-at-all")
        self.assertEqual(status, 404, body)
        self.assertIn("nobody-at-all", json.loads(body)["error"])
        # a tenant never synced is a 404 naming the known ones; an empty
        # tenant= (a form left blank) means every tenant
        status, _, body = ex.get("/api/v1/resources?tenant=nope")
        self.assertEqual(status, 404, body)
        self.assertIn("no tenant 'nope'", json.loads(body)["error"])
        self.assertEqual(ex.json("/api/v1/resources?tenant=&type=&limit=100000")["resources"],
                         full)
        self.assertEqual(ex.get("/api/v1/resources?type=users")[0], 404)
        for bad in ("/api/v1/resources?limit=-1", "/api/v1/resources?limit=x",
                    "/api/v1/resources?run=0", "/api/v1/access", "/api/v1/stats?format=xml"):
            status, _, body = ex.get(bad)
            self.assertEqual(status, 400, (bad, body))
            self.assertTrue(json.loads(body)["error"])
        self.assertEqual(ex.get("/api/v1/nope")[0], 404)
        self.assertEqual(ex.get("/api/v1/sync", method="POST")[0], 405)  # read-only
        status, headers, body = ex.get("/")
        self.assertEqual(status, 200)
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        self.assertNotIn("unsafe-inline", headers["Content-Security-Policy"])
        self.assertIn('<script src="/explore.js"', body)
        self.assertNotRegex(body, r"<script>|https?://")  # no inline script, no external fetch
        status, headers, body = ex.get("/explore.js")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/javascript; charset=utf-8"))
        self.assertNotIn("innerHTML", body)
        self.assertEqual(rows(ex.get("/api/v1/export?format=csv&limit=100000")[2]),
                         rows(self.cli("export", "access-review", fmt="csv")))
        self.assertEqual(ex.stop(), 0, ex.log)  # and, under ASan, no leak

    def test_answers_do_not_name_the_store_path(self):
        """An HTTP client does not learn where the store is on the server:
        the API's and the pages' errors say "the store"; the server's log
        and the CLI name it."""
        ex = self.explore()
        for path in ("/api/v1/resources?tenant=nope", "/api/v1/stats?run=999",
                     "/api/v1/who-has?what=%s/nope" % TENANT, "/review?run=999", "/diff?from=999",
                     "/resource?what=%s/nope" % TENANT):
            status, _, body = ex.get(path)
            self.assertEqual(status, 404, (path, body))
            text = json.loads(body)["error"] if path.startswith("/api/") else html.unescape(body)
            self.assertNotIn(self.tmp, text, path)
            self.assertIn("the store", text, path)
        self.assertEqual(ex.stop(), 0)
        self.assertIn("no run 999 in '%s'" % self.db, ex.log)
        r = lib.run(["stats", "--db", self.db, "--run", "999"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no run 999 in '%s'" % self.db, r.err)

    def test_api_refuses_arguments_that_do_not_apply(self):
        """As the CLI refuses an option that does not apply to the command,
        the API refuses such an argument, naming the endpoints it applies
        to: to= is diff's, not the run of another read."""
        ex = self.explore()
        for path, name, where in (
                ("/api/v1/runs?to=1", "to", "it applies to /api/v1/diff"),
                ("/api/v1/stats?from=1", "from", "it applies to /api/v1/diff"),
                ("/api/v1/runs?run=1", "run", "it applies to /api/v1/resources, "),
                ("/api/v1/grants?type=group", "type", "it applies to /api/v1/resources"),
                ("/api/v1/resources?entitlement=x", "entitlement", "it applies to /api/v1/grants"),
                ("/api/v1/stats?who=x", "who", "it applies to /api/v1/access, /api/v1/explain"),
                ("/api/v1/access?who=x&what=y", "what",
                 "it applies to /api/v1/who-has, /api/v1/explain"),
                ("/api/v1/diff?run=2&to=2", "to", "not both"),
                ("/api/v1/stats?db=/etc/passwd", "db", "unknown"),
                ("/api/v1/stats?nonsense", "nonsense", "unknown")):
            status, headers, body = ex.get(path)
            self.assertEqual((status, headers["Content-Type"]), (400, "application/json"),
                             (path, body))
            error = json.loads(body)["error"]
            self.assertIn("'%s'" % name, error, path)
            self.assertIn(where, error, path)
        # the CLI's own words for its options, from the same table
        r = lib.run(["runs", "--db", self.db, "--to", "1"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--to does not apply to 'runs': it applies to diff", r.err)
        # what applies still answers
        self.assertEqual(ex.json("/api/v1/diff?from=1&to=2&tenant=%s&format=json&limit=5&offset=0"
                                 % TENANT)["from"], 1)
        self.assertEqual(ex.get("/api/v1/resources?run=1&type=group&search=a")[0], 200)
        self.assertEqual(ex.stop(), 0)

    def next_link(self, headers):
        """The Link header's next page (path?query), checked for form;
        None without one."""
        if "Link" not in headers:
            return None
        m = NEXT.match(headers["Link"])
        self.assertTrue(m, headers["Link"])
        return m.group(1)

    def test_api_says_when_it_cuts(self):
        """A page that leaves rows out says so: in JSON next_offset per
        section (null when the section is complete), in every format a Link
        header to the same request from there; the default limit (1000)
        included, in CSV too."""
        ex = self.explore()
        full = self.cli("resources")["resources"]
        n = len(full)
        status, headers, body = ex.get("/api/v1/resources?limit=3&offset=2")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["next_offset"], {"resources": 5})
        link = self.next_link(headers)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query),
                         {"limit": ["3"], "offset": ["5"]})
        self.assertEqual(ex.json(link)["resources"], full[5:8])
        # the end: exactly the rest, or less than a page
        for q in ("limit=%d" % n, "offset=%d" % (n - 1), "limit=100000"):
            status, headers, body = ex.get("/api/v1/resources?" + q)
            self.assertEqual(json.loads(body)["next_offset"], {"resources": None}, q)
            self.assertIsNone(self.next_link(headers), q)
        # several sections: each says for itself, one offset for all
        cli = self.cli("stats")
        status, headers, body = ex.get("/api/v1/stats?limit=1")
        nxt = json.loads(body)["next_offset"]
        sections = ["tenants", "instances", "types", "entitlements", "top_entitlements"]
        self.assertEqual(list(nxt), sections)
        self.assertEqual(nxt, {k: 1 if len(cli[k]) > 1 else None for k in sections})
        self.assertIn("offset=1", self.next_link(headers))
        # the arguments come back as given (encoded), only offset changes
        who = self.jira_key(self.sample_users()[0]["accountId"])
        want = self.cli("access", who)
        self.assertGreater(len(want["access"]), 1)
        status, headers, body = ex.get("/api/v1/access?who=%s&limit=1&tenant=%s" % (
            urllib.parse.quote(who, safe=""), TENANT))
        self.assertEqual(json.loads(body)["next_offset"],
                         {"accounts": 1 if len(want["accounts"]) > 1 else None, "access": 1})
        link = self.next_link(headers)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query),
                         {"who": [who], "limit": ["1"], "tenant": [TENANT], "offset": ["1"]})
        self.assertEqual(ex.json(link)["access"], want["access"][1:2])
        # CSV: the body is the CLI's, the header says it is cut
        cli_rows = rows(self.cli("export", "access-review", fmt="csv"))
        status, headers, body = ex.get("/api/v1/export?format=csv&limit=10")
        self.assertEqual(rows(body), cli_rows[:11])
        link = self.next_link(headers)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query),
                         {"format": ["csv"], "limit": ["10"], "offset": ["10"]})
        self.assertEqual(rows(ex.get(link)[2]), cli_rows[:1] + cli_rows[11:21])
        # no limit: the documented 1000 rows, and the header
        grants = self.cli("grants")["grants"]
        self.assertGreater(len(grants), 1000, "a section longer than the default page")
        status, headers, body = ex.get("/api/v1/grants?format=csv")
        self.assertEqual(len(rows(body)), 1001)
        self.assertEqual(urllib.parse.parse_qs(urllib.parse.urlsplit(
            self.next_link(headers)).query), {"format": ["csv"], "offset": ["1000"]})
        status, headers, body = ex.get("/api/v1/grants")
        self.assertEqual(json.loads(body)["next_offset"], {"grants": 1000})
        status, headers, body = ex.get("/api/v1/grants?format=csv&offset=%d" % (len(grants) - 5))
        self.assertEqual(len(rows(body)), 6)
        self.assertIsNone(self.next_link(headers))
        # HEAD: the same headers
        status, headers, _ = ex.get("/api/v1/grants", method="HEAD")
        self.assertEqual(self.next_link(headers), "/api/v1/grants?offset=1000")
        self.assertEqual(ex.stop(), 0, ex.log)

    def test_explore_answers_only_its_own_names(self):
        """No token: a page whose name was rebound to 127.0.0.1 reads
        nothing (DNS rebinding), and a POST of another origin is refused
        before anything else."""
        ex = self.explore()
        port = int(ex.url.rsplit(":", 1)[1].strip("/"))
        rebound = {"Host": "rebind.attacker.test:%d" % port}
        status, _, body = ex.get("/api/v1/export?format=csv&limit=100000", headers=rebound)
        self.assertEqual(status, 421, body)
        self.assertNotIn("@", body)
        self.assertEqual(ex.get("/review", headers=rebound)[0], 421)
        self.assertEqual(ex.get("/review", headers={"Host": "localhost:%d" % port})[0], 200)
        self.assertEqual(test_serve.raw_status(port, b"GET / HTTP/1.1\r\n\r\n"), 400)
        self.assertEqual(ex.get("/api/v1/sync", method="POST",
                                headers={"Origin": "http://evil.test"})[0], 403)
        self.assertEqual(ex.stop(), 0)

    def test_explore_usage(self):
        r = lib.run(["explore"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--db", r.err)
        # usage errors read as every command's: the message, then the help
        # to try; a near miss of an option names the option meant
        hint = "\nTry 'connhost explore --help'.\n"
        for argv, says in (
                (["--dbb", self.db], "unknown option '--dbb'; did you mean '--db'?"),
                (["--frobnicate"], "unknown option '--frobnicate'"),
                (["--db"], "option needs a value: '--db'"),
                (["--db", self.db, "stray"], "unexpected argument 'stray'"),
                (["--db", self.db, "--listen", "nowhere"],
                 "listen address 'nowhere' is not ADDR:PORT")):
            r = lib.run(["explore"] + argv)
            self.assertEqual(r.rc, 2, r)
            self.assertTrue(r.err.startswith("connhost: " + says), r.err)
            self.assertTrue(r.err.endswith(hint), r.err)
        r = lib.run(["explore", "--db", os.path.join(self.tmp, "missing.db")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("missing.db", r.err)
        r = lib.run(["explore", "--db", self.db, "--listen", "0.0.0.0:0"])
        self.assertEqual(r.rc, 1, r)
        # explore never syncs and takes no token: it says what does
        self.assertIn("listens on loopback only", r.err)
        self.assertIn("run 'connhost serve' with 'serve.auth_token'", r.err)
        self.assertNotIn("sync", r.err.replace("connhost serve", ""))
        # -c FILE, before or after the command, names the store; --db wins
        r = lib.run(["-c", self.cfg, "explore", "--db", os.path.join(self.tmp, "missing.db")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("missing.db", r.err)
        # a config that does not load is a config error, as for every command
        r = lib.run(["-c", os.path.join(self.tmp, "missing.yaml"), "explore"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("missing.yaml", r.err)

    def test_explore_takes_the_config(self):
        want = self.cli("stats")
        for argv in (["-c", self.cfg, "explore"], ["explore", "--config", self.cfg],
                     ["explore", "-c", os.path.join(self.tmp, "missing.yaml"), "--db", self.db]):
            ex = Explore(self, None, argv)
            self.assertEqual(ex.json("/api/v1/stats"), want, argv)
            self.assertEqual(ex.stop(), 0)
        r = lib.run(["--help"])
        self.assertIn("connhost [-c FILE] [COMMAND]", r.out)
        self.assertIn("connhost [-c FILE] explore", lib.run(["explore", "--help"]).out)

    def test_serve_answers_the_api(self):
        s = test_serve.Serve(self.tmp, self.cfg, name="serve-explorer")
        self.addCleanup(s.stop)
        self.assertIsNotNone(s.port, s.log())
        url = "http://127.0.0.1:%d/api/v1/" % s.port
        with urllib.request.urlopen(url + "access?who=" + urllib.parse.quote(
                self.jira_key(self.sample_users()[0]["accountId"]), safe="") + "&limit=0",
                timeout=30) as r:
            got = json.load(r)
        self.assertEqual(got["command"], "access")
        self.assertEqual(got["access"], [])
        with urllib.request.urlopen("http://127.0.0.1:%d/" % s.port, timeout=30) as r:
            self.assertIn("default-src 'self'", r.headers["Content-Security-Policy"])
            self.assertIn("/explore.js", r.read().decode())

    TOKEN = "explorer-token-0123456789abcdef"

    def serve_with_token(self, name):
        tok = os.path.join(self.tmp, "serve-token")
        with open(tok, "w") as f:
            f.write(self.TOKEN)
        with open(self.cfg, encoding="utf-8") as f:
            text = f.read()
        cfg = os.path.join(self.tmp, "token.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write("serve:\n  auth_token: ${file:%s}\n" % tok + text)
        s = test_serve.Serve(self.tmp, cfg, name=name)
        self.addCleanup(s.stop)
        self.assertIsNotNone(s.port, s.log())
        return s

    def test_serve_api_needs_the_token(self):
        token = self.TOKEN
        s = self.serve_with_token("serve-token")
        self.assertEqual(s.get("/api/v1/stats")[0], 401)
        self.assertEqual(s.get("/api/v1/stats", token=token[:-1])[0], 401)
        status, _, body = s.get("/api/v1/resources?limit=100000", token=token)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["resources"], self.cli("resources")["resources"])
        # the pages hold data: they need it too; the style sheet and the
        # script do not
        for page in ("/", "/person?who=nobody", "/review"):
            self.assertEqual(s.get(page)[0], 401, page)
        status, _, body = s.get("/review", token=token)
        self.assertEqual(status, 200, body)
        self.assertIn(b'data-table="access_review"', body)
        self.assertEqual(s.get("/explore.js")[0], 200)
        self.assertEqual(s.get("/explore.css")[0], 200)
        self.assertNotIn(token, s.log())

    def test_serve_sign_in(self):
        """A browser has no Bearer header: it signs in with the token once
        and gets a session cookie that reads (GET) and does nothing else."""
        s = self.serve_with_token("serve-sign-in")

        def req(method, path, body=None, headers=()):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            c.request(method, path, body=body, headers=dict(headers))
            r = c.getresponse()
            out = r.status, r.getheader("Location"), r.getheader("Set-Cookie"), r.read()
            c.close()
            return out

        form = {"Content-Type": "application/x-www-form-urlencoded"}
        # a browser's page load without it goes to the sign-in form
        status, where, _, _ = req("GET", "/review", headers={"Accept": "text/html"})
        self.assertEqual((status, where), (303, "/login"))
        # the JSON API, opened in a browser, answers JSON: a 401, no redirect
        status, where, _, body = req("GET", "/api/v1/runs", headers={"Accept": "text/html"})
        self.assertEqual((status, where), (401, None))
        self.assertTrue(json.loads(body)["error"])
        status, _, _, body = req("GET", "/login")
        self.assertEqual(status, 200)
        self.assertIn(b'<form class="login" action="/login" method="post">', body)
        # a wrong token: back to the form, no cookie
        status, where, cookie, _ = req("POST", "/login", "token=nope", form)
        self.assertEqual((status, where, cookie), (303, "/login?failed=1", None))
        status, where, cookie, _ = req("POST", "/login",
                                       "a=1&token=" + urllib.parse.quote_plus(self.TOKEN), form)
        self.assertEqual((status, where), (303, "/"))
        self.assertRegex(cookie, r"^connhost_session=[0-9a-f]{32}; Path=/; HttpOnly; "
                                 r"SameSite=Strict; Max-Age=\d+$")
        self.assertNotIn(self.TOKEN, cookie)
        session = cookie.split(";")[0]
        status, _, _, body = req("GET", "/review", headers={"Cookie": session})
        self.assertEqual(status, 200)
        self.assertIn(b'data-table="access_review"', body)
        self.assertEqual(req("GET", "/api/v1/stats", headers={"Cookie": session})[0], 200)
        # it reads, nothing more; and a made-up session is nothing
        self.assertEqual(req("POST", "/api/v1/sync?tenant=demo",
                             headers={"Cookie": session})[0], 401)
        self.assertEqual(req("GET", "/review", headers={"Cookie": "connhost_session=" +
                                                        "0" * 32})[0], 401)
        log = s.log()
        self.assertNotIn(self.TOKEN, log)
        self.assertNotIn(session.split("=")[1], log)

    def test_browser_signs_in_to_serve(self):
        s = self.serve_with_token("serve-browser")
        b = self.browser()
        url = "http://127.0.0.1:%d/" % s.port
        b.goto(url + "report")
        self.assertEqual(b.eval("location.pathname"), "/login")
        b.follow("document.querySelector('input[name=token]').value = %s;"
                 "document.querySelector('form.login').submit()" % json.dumps(self.TOKEN))
        self.assertEqual(b.eval("location.pathname"), "/")
        self.assertTrue(b.eval("!!document.querySelector('table[data-table=instances]')"))
        b.goto(url + "report")
        self.assertEqual(b.eval("document.querySelector('h1').textContent"), "Hygiene report")
        self.assertNotIn(self.TOKEN, s.log())

    # ---- the pages, over HTTP ---------------------------------------------
    def test_pages_are_server_rendered(self):
        ex = self.explore()
        total = len(self.cli("export", "access-review")["access_review"])
        self.assertGreater(total, 20)
        status, headers, body = ex.get("/review?limit=7&offset=7")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        # the rows are in the HTML itself, paged as asked, with links on
        want = self.cli("export", "access-review")["access_review"][7:14]
        self.assertEqual(re.findall(r'<tr[^>]* data-entitlement="([^"]*)" data-key="([^"]*)"',
                                    body),
                         [(html.escape(r["entitlement"]), html.escape(r["principal"]))
                          for r in want])
        self.assertIn('rel="prev" href="/review?offset=0&amp;limit=7"', body)
        self.assertIn('rel="next" href="/review?offset=14&amp;limit=7"', body)
        self.assertIn("rows 8–14", body)
        # a project role's row names its project ("in"), as the export does
        self.assertIn("<th>in</th>", body)
        roles = [r for r in self.cli("export", "access-review")["access_review"]
                 if r["resource_type"] == "project_role"][:3]
        self.assertTrue(roles)
        for r in roles:
            _, _, page = ex.get("/person?limit=1000&who=" + urllib.parse.quote(r["principal"], safe=""))
            row = re.search(r'<tr[^>]* data-entitlement="%s"[^>]*>(.*?)</tr>'
                            % re.escape(html.escape(r["entitlement"])), page, re.S)
            self.assertIsNotNone(row, r["entitlement"])
            self.assertIn(html.escape(r["resource_parent_name"]), row.group(1))
        self.assertIn('<a href="/api/v1/export?format=csv&amp;limit=100000" '
                      'download="access_review.csv">', body)
        # the last page: the rows it has, and no next
        _, _, last = ex.get("/review?limit=7&offset=%d" % (total - 3))
        self.assertIn("rows %d–%d" % (total - 2, total), last)
        self.assertNotIn('rel="next"', last)
        self.assertEqual(re.findall(r"<script[^>]*>", body), ['<script src="/explore.js" defer>'])
        self.assertNotRegex(body, r"https?://|<(img|iframe|object|embed)\b|\son\w+=")
        # an unknown WHO: 404, and the name given is text on the error page
        status, _, body = ex.get("/person?who=" + urllib.parse.quote("<b>nobody</b>"))
        self.assertEqual(status, 404, body)
        self.assertIn("&lt;b&gt;nobody&lt;/b&gt;", body)
        self.assertNotIn("<b>nobody", body)
        for bad in ("/person", "/resource", "/review?limit=x", "/runs?offset=-1"):
            self.assertEqual(ex.get(bad)[0], 400, bad)
        self.assertEqual(ex.get("/nope")[0], 404)
        # an unknown run: 404, with the run pickers still there to choose another
        status, _, body = ex.get("/diff?from=999&to=1")
        self.assertEqual(status, 404, body)
        self.assertIn('<p class="error">', body)
        self.assertIn('<select name="from"', body)
        self.assertEqual(ex.get("/diff?from=1&to=1")[0], 200)
        self.assertEqual(ex.stop(), 0, ex.log)  # and, under ASan, no leak

    def test_concurrent_requests(self):
        """A store read that waits (here: on a lock some other process holds)
        holds up no other request; many page loads at once all answer."""
        ex = self.explore()
        lock = sqlite3.connect(self.db, isolation_level=None)
        lock.execute("PRAGMA locking_mode=EXCLUSIVE")
        lock.execute("BEGIN EXCLUSIVE")
        slow = {}

        def slow_read():
            t = time.monotonic()
            slow["status"] = ex.get("/runs")[0]
            slow["took"] = time.monotonic() - t

        th = threading.Thread(target=slow_read)
        th.start()
        time.sleep(0.3)
        t = time.monotonic()
        status, _, _ = ex.get("/explore.css")
        fast = time.monotonic() - t
        busy = th.is_alive()
        th.join()
        lock.execute("COMMIT")
        lock.close()
        self.assertEqual(status, 200)
        self.assertTrue(busy, "the slow read had finished before the fast one: %r" % slow)
        self.assertLess(fast, 1.0)
        self.assertGreater(slow["took"], 1.5)  # the store's busy timeout (2 s)
        self.assertEqual(slow["status"], 500)  # and it says the store is locked
        # twelve person pages at once, each its own store connection
        users = self.sample_users()
        want = {}
        for u in users:
            key = self.jira_key(u["accountId"])
            want[key] = sorted(r["entitlement"] for r in self.cli("access", key)["access"])
        got = {}

        def person(key):
            status, _, body = ex.get("/person?limit=1000&who=" + urllib.parse.quote(key, safe=""))
            got[key] = (status, sorted(html.unescape(e) for e in re.findall(
                r'data-entitlement="([^"]*)"', body)))

        threads = [threading.Thread(target=person, args=(k,)) for k in want]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(got, {k: (200, v) for k, v in want.items()})
        self.assertEqual(ex.stop(), 0, ex.log)

    # ---- in a browser ----------------------------------------------------
    def browser(self, width=1366, height=900, script=True):
        if not cdp.CHROMIUM:
            self.skipTest("chromium is not installed (tools/install-deps.sh installs it)")
        b = cdp.Chromium(tempfile.mkdtemp(prefix="chromium-", dir=self.tmp))
        self.addCleanup(b.close)
        b.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
               deviceScaleFactor=1, mobile=False)
        if not script:
            b.call("Emulation.setScriptExecutionDisabled", value=True)
        return b

    def rows_shown(self, b, table, follow=True):
        """(data-entitlement, data-key) of a table's rows, on every page."""
        out = []
        while True:
            out += b.eval("Array.from(document.querySelectorAll('table[data-table=%s] tbody tr'))"
                          ".map(r => [r.dataset.entitlement || null, r.dataset.key || null])"
                          % table) or []
            nxt = b.eval("(document.querySelector('a[rel=next]') || {}).href")
            if not follow or not nxt:
                return [tuple(r) for r in out]
            b.goto(nxt)

    def click(self, b, table, href):
        """Click the link to `href` in `table` and wait for its page."""
        b.follow("Array.from(document.querySelectorAll('table[data-table=%s] a'))"
                 ".find(a => a.getAttribute('href') === %s).click()" % (table, json.dumps(href)))

    def csv_links(self, b):
        return b.eval("Array.from(document.querySelectorAll('a')).filter(a => "
                      "a.textContent === 'Download CSV').map(a => a.getAttribute('href'))")

    def assert_clean(self, b):
        """No script from the data ran, and the page's own did."""
        self.assertNotEqual(b.eval("document.title"), "pwned")
        self.assertEqual(b.eval("document.images.length"), 0)
        self.assertEqual(b.eval("Array.from(document.scripts).map(s => s.getAttribute('src'))"),
                         ["/explore.js"])
        self.assertEqual(b.eval("document.querySelectorAll('[onerror],[onload]').length"), 0)

    def test_browser_search_reaches_person(self):
        ex = self.explore()
        b = self.browser()
        u = next(u for u in self.sample_users()[10:]
                 if self.cli("access", self.jira_key(u["accountId"]))["access"])
        key = self.jira_key(u["accountId"])
        b.goto(ex.url)
        b.follow("document.querySelector('form.search input').value = %s;"
                 "document.querySelector('form.search').submit()" % json.dumps(u["displayName"]))
        self.assertEqual(b.eval("location.pathname"), "/")
        href = "/person?who=" + urllib.parse.quote(key, safe="")
        self.click(b, "results", href)
        self.assertEqual(b.eval("location.pathname + location.search"), href)
        self.assertEqual(b.eval("document.querySelector('h1').textContent"), u["displayName"])
        want = self.cli("access", key)
        self.assertEqual(sorted(self.rows_shown(b, "accounts", follow=False)),
                         sorted((None, r["resource"]) for r in want["accounts"]))
        self.assertEqual(sorted(self.rows_shown(b, "access")),
                         sorted((r["entitlement"], r["principal"]) for r in want["access"]))
        # a path graph in every row: person -> (group ->) entitlement
        b.goto(ex.url + href[1:])
        self.assertEqual(b.eval("document.querySelectorAll('table[data-table=access] tbody tr')"
                                ".length"),
                         b.eval("document.querySelectorAll('table[data-table=access] svg.graph')"
                                ".length"))
        inherited = [r for r in want["access"] if r["via_names"]]
        if inherited:
            self.assertTrue(b.eval("Array.from(document.querySelectorAll('svg.graph .n1 title'))"
                                   ".some(t => t.textContent === %s)"
                                   % json.dumps(inherited[0]["via_names"][0])))
        # the search finds by email, accountId, group and project name too
        group = next(r for r in want["access"] if r["resource_type"] == "group")
        email = want["accounts"][0]["emails"][0]
        for q, hit in ((email, key), (u["accountId"], key),
                       (group["resource_name"], group["resource"])):
            b.goto(ex.url + "?q=" + urllib.parse.quote(q))
            self.assertIn(hit, [k for _, k in self.rows_shown(b, "results")], q)
        projects = [r for r in self.cli("resources", "--type", "project")["resources"]]
        self.assertTrue(projects)
        b.goto(ex.url + "?q=" + urllib.parse.quote(projects[0]["display_name"]))
        self.assertIn(projects[0]["key"], [k for _, k in self.rows_shown(b, "results")])
        self.click(b, "results", "/resource?what=" + urllib.parse.quote(projects[0]["key"],
                                                                        safe=""))
        holders = self.cli("who-has", projects[0]["key"])["holders"]
        self.assertEqual(sorted(self.rows_shown(b, "holders")),
                         sorted((r["entitlement"], r["principal"]) for r in holders))

    def test_browser_hostile_names_are_text(self):
        ex = self.explore()
        b = self.browser()
        for i, name in enumerate(HOSTILE):
            b.goto(ex.url + "person?who=" + urllib.parse.quote("hostile/hr/user/%d" % (i + 1)))
            self.assert_clean(b)
            self.assertEqual(b.eval("document.documentElement.dataset.js"), "on")
            self.assertEqual(b.eval("document.querySelector('h1').textContent"), name)
            self.assertEqual(b.eval("document.title"), name + " · connhost explorer")
            self.assertTrue(self.rows_shown(b, "access"), name)
            self.assertGreater(b.eval("document.querySelectorAll('td .stale').length"), 0,
                               "the failed instance's data is marked stale")
            self.assertTrue(b.eval("Array.from(document.querySelectorAll('svg.graph .n0 title'))"
                                   ".every(t => t.textContent === %s)" % json.dumps(name)))
        b.goto(ex.url + "?q=" + urllib.parse.quote("<script>"))
        self.assert_clean(b)
        self.assertIn(HOSTILE[1], b.eval("Array.from(document.querySelectorAll("
                                         "'table[data-table=results] a')).map(a => a.textContent)"))
        b.goto(ex.url + "resource?what=" + urllib.parse.quote("hostile/hr/group/g2"))
        self.assert_clean(b)
        self.assertEqual(b.eval("document.querySelector('h1').textContent"), HOSTILE[0])
        self.assertEqual(b.eval("document.querySelector('input[name=q]').value"), "")
        b.goto(ex.url + "?q=" + urllib.parse.quote(HOSTILE[2]))
        self.assert_clean(b)
        self.assertEqual(b.eval("document.querySelector('input[name=q]').value"), HOSTILE[2])

    def test_browser_csv_download_is_the_export(self):
        ex = self.explore()
        b = self.browser()
        b.goto(ex.url + "review")
        links = self.csv_links(b)
        self.assertEqual(len(links), 1)
        self.assertEqual(b.eval("document.querySelector('p.csv a').getAttribute('download')"),
                         "access_review.csv")
        status, headers, body = ex.get(links[0])
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/csv"))
        want = self.cli("export", "access-review", fmt="csv")
        self.assertEqual(rows(body), rows(want))
        # the table shows the same rows, a page at a time
        review = self.cli("export", "access-review")["access_review"]
        self.assertEqual(len(self.rows_shown(b, "access_review", follow=False)), 100)
        b.goto(ex.url + "review?limit=1000")
        self.assertEqual(self.rows_shown(b, "access_review"),
                         [(r["entitlement"], r["principal"]) for r in review])
        # the formula guard is the CLI's: a name starting with '=' is quoted
        self.assertIn('"\'=HYPERLINK(""http://evil.example"",""click"")"', body)
        self.assertNotRegex(body, r"(?m)(^|,)=")
        # every table has its download, and each is the CLI's CSV
        who = self.jira_key(self.sample_users()[3]["accountId"])
        what = self.cli("access", who)["access"][0]["entitlement"]
        for page, cli in (("", ["stats"]), ("?q=a", ["resources", "--search", "a"]),
                          ("person?who=" + urllib.parse.quote(who, safe=""), ["access", who]),
                          ("resource?what=" + urllib.parse.quote(what, safe=""),
                           ["who-has", what]),
                          ("runs", ["runs"]), ("diff", ["diff"]), ("report", ["report"])):
            b.goto(ex.url + page)
            links = self.csv_links(b)
            self.assertEqual(len(links), 1, page)
            status, _, body = ex.get(links[0])
            self.assertEqual(status, 200, page)
            self.assertEqual(rows(body), rows(self.cli(*cli, fmt="csv")), page)
        self.assertEqual(ex.stop(), 0, ex.log)  # every page, and under ASan no leak

    def test_browser_pages_without_javascript(self):
        ex = self.explore()
        b = self.browser(script=False)
        u = self.sample_users()[4]
        key = self.jira_key(u["accountId"])
        b.goto(ex.url + "?q=" + urllib.parse.quote(u["accountId"]))
        self.assertIsNone(b.eval("document.documentElement.dataset.js"))  # no script ran
        self.assertIn(key, [k for _, k in self.rows_shown(b, "results")])
        b.goto(ex.url + "person?who=" + urllib.parse.quote(key, safe=""))
        self.assertEqual(b.eval("document.querySelector('h1').textContent"), u["displayName"])
        self.assertEqual(sorted(self.rows_shown(b, "access")),
                         sorted((r["entitlement"], r["principal"])
                                for r in self.cli("access", key)["access"]))
        # the run pickers: a plain form
        b.goto(ex.url + "diff?from=2&to=1")
        self.assertEqual(b.eval("[document.querySelector('select[name=from]').value,"
                                "document.querySelector('select[name=to]').value]"), ["2", "1"])
        self.assertEqual(b.eval("document.querySelector('select[name=from]').options.length"), 2)
        diff = self.cli("diff", "--from", "2", "--to", "1")
        for section in ("resources", "direct_grants", "derived_grants", "status_changes",
                        "identity_changes"):
            shown = b.eval("document.querySelectorAll('table[data-table=%s] tbody tr').length"
                           % section)
            self.assertEqual(shown, len(diff[section]), section)
        report = self.cli("report")
        b.goto(ex.url + "report")
        for section in ("inactive_with_grants", "jira_without_org_account",
                        "nonhuman_with_grants"):
            self.assertEqual(sorted(self.rows_shown(b, section, follow=False)),
                             sorted((None, r["principal"]) for r in report[section][:100]),
                             section)

    def test_browser_run_picker_submits(self):
        ex = self.explore()
        b = self.browser()
        b.goto(ex.url + "diff")
        self.assertEqual(b.eval("[document.querySelector('select[name=from]').value,"
                                "document.querySelector('select[name=to]').value]"), ["1", "2"])
        b.follow("const s = document.querySelector('select[name=to]'); s.value = '1';"
                 "s.dispatchEvent(new Event('change'))")
        self.assertEqual(b.eval("location.pathname + location.search"), "/diff?from=1&to=1")

    def test_browser_print_and_laptop_width(self):
        ex = self.explore()
        b = self.browser(width=1366, height=768)
        who = self.jira_key(self.sample_users()[5]["accountId"])
        pages = ["person?who=" + urllib.parse.quote(who, safe=""), "review", "report", "diff",
                 "runs", "?q=e", "resource?what=" + urllib.parse.quote(
                     self.cli("access", who)["access"][0]["entitlement"], safe="")]
        fits = ("document.documentElement.scrollWidth <= innerWidth && "
                "Array.from(document.querySelectorAll('.scroll'))"
                ".every(d => d.scrollWidth <= d.clientWidth + 1)")
        for page in pages:
            b.goto(ex.url + page)
            self.assertTrue(b.eval(fits), "%s is wider than a laptop screen" % page)
            self.assertEqual(b.eval("getComputedStyle(document.querySelector('header'))"
                                    ".display"), "flex")
        b.call("Emulation.setEmulatedMedia", media="print")
        for page in pages:
            b.goto(ex.url + page)
            style = "getComputedStyle(document.querySelector(%s)).%s"
            for chrome in ("header", "form.search", "p.csv"):
                self.assertEqual(b.eval(style % (json.dumps(chrome), "display")), "none",
                                 (page, chrome))
            if not b.eval("document.querySelector('td')"):
                continue  # no rows (diff between equal runs)
            self.assertEqual(b.eval(style % ("'table'", "display")), "table", page)
            self.assertGreaterEqual(float(b.eval(style % ("'td'", "fontSize"))[:-2]), 12, page)
            self.assertEqual(b.eval(style % ("'thead'", "display")), "table-header-group")
            # a link shows its target on paper
            self.assertEqual(b.eval(
                "Array.from(document.querySelectorAll('main a')).filter(a => "
                "!getComputedStyle(a, '::after').content.includes(a.getAttribute('href')))"
                ".length"), 0, page)
        b.goto(ex.url + pages[0])
        self.assertEqual(b.eval("getComputedStyle(document.querySelector('svg.graph')).display"),
                         "block")
        self.assertEqual(b.pdf()[:5], b"%PDF-")

    def test_browser_screenshot(self):
        ex = self.explore()
        b = self.browser(width=1200, height=900)
        u = self.sample_users()[5]
        b.goto(ex.url + "person?who=" + urllib.parse.quote(self.jira_key(u["accountId"]),
                                                            safe=""))
        out = os.path.join(lib.BUILDDIR, "explorer-screenshot.png")
        b.screenshot(out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    lib.main()
