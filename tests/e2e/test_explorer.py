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
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
    reads)."""
    for s in answer.get("stale", ()):
        s.pop("age_seconds", None)
    return answer


def rows(text):
    return list(csv.reader(io.StringIO(text)))


class Explore:
    """`connhost explore --db PATH --listen 127.0.0.1:0`, stopped at the end."""

    def __init__(self, test, db):
        self.proc = subprocess.Popen([lib.CONNHOST, "explore", "--db", db, "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        test.addCleanup(self.stop)
        self.url = self.proc.stdout.readline().strip()
        test.assertRegex(self.url, r"^http://127\.0\.0\.1:\d+/$", self.proc.stderr.read()
                         if not self.url else "")

    def get(self, path, method="GET"):
        req = urllib.request.Request(self.url + path.lstrip("/"), method=method)
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
            self.log = self.proc.stderr.read()
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode


class Dom(html.parser.HTMLParser):
    """The parts of a dumped DOM the tests look at."""

    def __init__(self, text):
        super().__init__()
        self.title = ""
        self.rows = {}      # table id -> [attrs of each data row]
        self.links = []     # (href, text)
        self.imgs = []
        self.scripts = []
        self.h1 = ""
        self.stale = 0
        self.ready = False
        self._in = []
        self._table = None
        self._link = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in.append(tag)
        if tag == "body" and a.get("data-ready") == "1":
            self.ready = True
        if tag == "table":
            self._table = a.get("data-table")
        if tag == "tr" and self._table and ("data-key" in a or "data-entitlement" in a):
            self.rows.setdefault(self._table, []).append(a)
        if tag == "a":
            self._link = [a.get("href"), "", a]
            self.links.append(self._link)
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts.append(a)
        if tag == "span" and a.get("class") == "stale":
            self.stale += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        if tag == "a":
            self._link = None
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if self._in and self._in[-1] == "title":
            self.title += data
        if self._in and self._in[-1] == "h1":
            self.h1 += data
        if self._link is not None:
            self._link[1] += data


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

    def test_explore_usage(self):
        r = lib.run(["explore"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--db", r.err)
        r = lib.run(["explore", "--db", os.path.join(self.tmp, "missing.db")])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("missing.db", r.err)
        r = lib.run(["explore", "--db", self.db, "--listen", "0.0.0.0:0"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("auth_token", r.err)

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

    def test_serve_api_needs_the_token(self):
        token = "explorer-token-0123456789abcdef"
        tok = os.path.join(self.tmp, "serve-token")
        with open(tok, "w") as f:
            f.write(token)
        with open(self.cfg, encoding="utf-8") as f:
            text = f.read()
        cfg = os.path.join(self.tmp, "token.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write("serve:\n  auth_token: ${file:%s}\n" % tok + text)
        s = test_serve.Serve(self.tmp, cfg, name="serve-token")
        self.addCleanup(s.stop)
        self.assertIsNotNone(s.port, s.log())
        self.assertEqual(s.get("/api/v1/stats")[0], 401)
        self.assertEqual(s.get("/api/v1/stats", token=token[:-1])[0], 401)
        status, _, body = s.get("/api/v1/resources?limit=100000", token=token)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["resources"], self.cli("resources")["resources"])
        # the pages hold no data: they load without it (and then ask for it)
        self.assertEqual(s.get("/")[0], 200)
        self.assertEqual(s.get("/explore.js")[0], 200)
        self.assertNotIn(token, s.log())

    # ---- in a browser ----------------------------------------------------
    def browse(self, url, extra=()):
        if not CHROMIUM:
            self.skipTest("chromium is not installed (tools/install-deps.sh installs it)")
        prof = tempfile.mkdtemp(prefix="chromium-", dir=self.tmp)
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--no-first-run", "--user-data-dir=" + prof,
                            "--virtual-time-budget=10000"] + list(extra) + [url],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return p.stdout

    def page(self, ex, frag):
        dom = Dom(self.browse(ex.url + frag, ["--dump-dom"]))
        self.assertTrue(dom.ready, frag)
        self.assertNotEqual(dom.title, "pwned")
        return dom

    def test_browser_search_reaches_person(self):
        ex = self.explore()
        u = next(u for u in self.sample_users()[10:]
                 if self.cli("access", self.jira_key(u["accountId"]))["access"])
        dom = self.page(ex, "#/?q=" + urllib.parse.quote(u["displayName"]))
        key = self.jira_key(u["accountId"])
        hits = [h for h, _, _ in dom.links if h == "#/person?who=" + urllib.parse.quote(key, safe="")]
        self.assertTrue(hits, dom.links)
        dom = self.page(ex, hits[0])
        self.assertEqual(dom.h1, u["displayName"])
        want = self.cli("access", key)
        shown = sorted((r["data-entitlement"], r["data-key"]) for r in dom.rows["access"])
        self.assertEqual(shown, sorted((r["entitlement"], r["principal"]) for r in want["access"]))
        self.assertEqual(sorted(r["data-key"] for r in dom.rows["accounts"]),
                         sorted(r["resource"] for r in want["accounts"]))

    def test_browser_hostile_names_are_text(self):
        ex = self.explore()
        for i, name in enumerate(HOSTILE):
            dom = self.page(ex, "#/person?who=" + urllib.parse.quote("hostile/hr/user/%d" % (i + 1)))
            self.assertEqual(dom.h1, name)
            self.assertEqual(dom.imgs, [])
            self.assertEqual([s.get("src") for s in dom.scripts], ["/explore.js"])
            self.assertTrue(dom.rows.get("access"), name)
            self.assertGreater(dom.stale, 0, "the failed instance's data is marked stale")
        dom = self.page(ex, "#/?q=" + urllib.parse.quote("<script>"))
        self.assertTrue(any(t == HOSTILE[1] for _, t, _ in dom.links), dom.links)

    def test_browser_csv_download_is_the_export(self):
        ex = self.explore()
        dom = self.page(ex, "#/review")
        links = [a for h, t, a in dom.links if t == "Download CSV"]
        self.assertEqual(len(links), 1)
        self.assertEqual(links[0].get("download"), "access_review.csv")
        status, headers, body = ex.get(links[0]["href"])
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/csv"))
        want = self.cli("export", "access-review", fmt="csv")
        self.assertEqual(rows(body), rows(want))
        self.assertEqual(len(dom.rows["access_review"]), len(rows(want)) - 1)
        # the formula guard is the CLI's: a name starting with '=' is quoted
        self.assertIn('"\'=HYPERLINK(""http://evil.example"",""click"")"', body)
        self.assertNotRegex(body, r"(?m)(^|,)=")

    def test_browser_screenshot(self):
        ex = self.explore()
        u = self.sample_users()[5]
        out = os.path.join(lib.BUILDDIR, "explorer-screenshot.png")
        self.browse(ex.url + "#/person?who=" + urllib.parse.quote(
            self.jira_key(u["accountId"]), safe=""), ["--screenshot=" + out, "--window-size=1200,900",
                                                      "--hide-scrollbars"])
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    lib.main()
