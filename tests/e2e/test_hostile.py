#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of the host against hostile input: ids made only of
dots, wrong URLs, shrinking data, odd output targets, servers that echo
credentials or page forever, insecure plugin directories, signals.

Everything runs the built connhost binary with the real plugins, against
the fake Atlassian Cloud or a small hostile server on 127.0.0.1 port 0."""
import base64
import http.server
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import threading
import time

import lib

TENANT = "acme"


def enc(component):
    """Percent-encode one key component as the host does."""
    return "".join("%%%02X" % ord(c) if c in "%/#" or ord(c) < 0x20 or ord(c) == 0x7F
                   else c for c in component)


def rkey(inst, rtype, rid):
    return "/".join(enc(x) for x in (TENANT, inst, rtype, rid))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def plugin_dir(root, names, src=None):
    path = os.path.join(root, "plugins")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for name in names:
        s = os.path.join(src or lib.PLUGINS, name + ".so")
        if not os.path.exists(s):
            s = os.path.join(lib.TEST_PLUGINS, name + ".so")
        shutil.copy(s, os.path.join(path, name + ".so"))
        os.chmod(os.path.join(path, name + ".so"), 0o755)
    return path


class Hostile:
    """A loopback HTTP server answering every request with handler(req)."""

    def __init__(self, handler):
        outer = self
        self.seen = []

        class H(http.server.BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, out = handler(self, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class HostileTest(lib.TempDirTest):
    def start_fake(self, profile="tiny", extra=()):
        d = self.path("fake")
        os.makedirs(d, exist_ok=True)
        fake = lib.Fake(d, profile=profile, extra=list(extra))
        self.addCleanup(fake.stop)
        return fake

    def hostile(self, handler):
        h = Hostile(handler)
        self.addCleanup(h.stop)
        return h

    def secret_file(self, value):
        path = self.path("secret-%d" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(value)
        return "${file:%s}" % path

    def org_inst(self, fake, **opts):
        o = {"org_id": fake.creds["org_id"],
             "api_token": self.secret_file(fake.creds["org_api_key"]),
             "api_base": fake.truth["urls"]["org_api_base"]}
        o.update(opts)
        return {"plugin": "atlassian_org", "provisioning": True, "options": o}

    def jira_inst(self, url, email="bot@example.com", token="tok-0123456789abcdef",
                  **opts):
        o = {"url": url, "email": email, "api_token": self.secret_file(token),
             "gateway_url": url}
        o.update(opts)
        return {"plugin": "jira_cloud", "options": o}

    def config(self, insts, name="c.yaml", extra="", plugins=None):
        return lib.write_config(self.path(name), {TENANT: insts},
                                plugin_dir=plugins or plugin_dir(self.tmp, ["atlassian_org", "jira_cloud"]),
                                extra=extra)


class DotSegments(HostileTest):
    """Item 1: an id of '.' or '..' must never address a parent resource."""

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake()
        org = self.fake.truth["org"]
        self.gid = org["groups"][0]["id"]
        self.uid = org["accounts"][0]["account_id"]
        self.cfg = self.config({"org": self.org_inst(self.fake)})

    def writes(self, since):
        return [q for q in self.fake.requests()[since:] if q["method"] != "GET"]

    def assert_nothing_collapsed(self, since, r):
        for q in self.fake.requests()[since:]:
            path = q.get("path", "")
            self.assertNotIn("/..", path, r)
            self.assertFalse(path.rstrip("/").endswith("/groups/" + self.gid) and
                             q["method"] != "GET", (q, r))
        self.assertEqual(self.writes(since), [], r)

    def test_revoke_and_grant_with_dot_ids(self):
        for cmd, ent, who in (
                ("revoke", rkey("org", "group", self.gid) + "#member", rkey("org", "user", "..")),
                ("revoke", rkey("org", "group", self.gid) + "#member", rkey("org", "user", ".")),
                ("grant", rkey("org", "group", "..") + "#member", rkey("org", "user", self.uid))):
            for dry in ([], ["--dry-run"]):
                n = len(self.fake.requests())
                r = lib.run(["-c", self.cfg, cmd, "--entitlement", ent, "--principal", who] + dry)
                self.assertNotEqual(r.rc, 0, r)
                self.assertIn("only dots", r.err, r)
                self.assertNotIn("DRY RUN", r.out + r.err, r)
                self.assert_nothing_collapsed(n, r)

    def test_action_with_dot_arg(self):
        for uid in ("..", "."):
            for dry in ([], ["--dry-run"]):
                n = len(self.fake.requests())
                r = lib.run(["-c", self.cfg, "action", "--tenant", TENANT, "--instance", "org",
                             "--name", "disable_user", "--arg", "user_id=" + uid] + dry)
                self.assertNotEqual(r.rc, 0, r)
                self.assertNotIn("DRY RUN", r.out + r.err, r)
                self.assert_nothing_collapsed(n, r)



FLAT_FIXTURE = os.path.join(lib.SRCDIR, "tests", "fixtures", "flatfile", "legacy-hr.json")


class WrongUrl(HostileTest):
    """Item 2: a root listing that 404s fails the instance."""

    def test_wrong_jira_url_keeps_the_good_graph(self):
        fake = self.start_fake()
        good = self.config({"jira": self.jira_inst(
            fake.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"])})
        out = self.path("graph.json")
        r = lib.run(["-c", good, "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        before = read_bytes(out)
        bad = self.config({"jira": self.jira_inst(
            fake.base + "/wrong", email=fake.creds["jira_email"],
            token=fake.creds["jira_api_token"])}, name="bad.yaml")
        r = lib.run(["-c", bad, "sync", "-o", out])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("404", r.err, r)
        self.assertNotIn("(skipped)", r.err, r)
        self.assertEqual(read_bytes(out), before)


    def test_later_page_404_fails(self):
        fake = self.start_fake()

        def gone(req):
            if "/users/search" in req.path and "startAt=0" not in req.path:
                return 404, {"Content-Type": "application/json"}, b'{"errorMessages":["gone"]}'
            return None
        h = self.hostile(proxy_to(fake.base, gone))
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"],
            page_size=5)})
        r = lib.run(["-c", cfg, "sync", "-o", self.path("g.json")])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("list user", r.err, r)
        self.assertIn("404", r.err, r)
        self.assertFalse(os.path.exists(self.path("g.json")))


class Shrink(HostileTest):
    """Item 2: safety thresholds against the last good run: the store's,
    else the previous output's stats."""

    def flat_cfg(self, data, name, extra="", inst_extra=None):
        path = self.path(name + ".json")
        with open(path, "w") as f:
            json.dump(data, f)
        inst = {"plugin": "flatfile", "options": {"path": path}}
        cfg = self.config({"hr": inst}, name=name + ".yaml", extra=extra,
                          plugins=plugin_dir(self.tmp, ["flatfile"]))
        if inst_extra:
            with open(cfg) as f:
                text = f.read()
            text = text.replace("      plugin: flatfile\n",
                                "      plugin: flatfile\n      %s\n" % inst_extra)
            with open(cfg, "w") as f:
                f.write(text)
        return cfg

    def test_drop_to_zero_and_past_the_share(self):
        full = lib.load_json(FLAT_FIXTURE)
        empty = {"flatfile": 1, "users": [], "groups": [], "roles": []}
        role = dict(full["roles"][0], assigned_users=["1001", "1002"])
        few = dict(full, users=full["users"][:3], groups=[], roles=[role])
        for fmt in ("json", "jsonl"):
            out = self.path("graph." + fmt)
            r = lib.run(["-c", self.flat_cfg(full, "full"), "sync", "-o", out, "--format", fmt])
            self.assertEqual(r.rc, 0, r)
            good = read_bytes(out)
            n = json.loads(good.split(b"\n")[1] if fmt == "json" else
                           good.split(b"\n")[0])
            n = n["stats"]["resources"] if fmt == "json" else n["instances"][0]["stats"]["resources"]
            for data, name in ((empty, "empty"), (few, "few")):
                r = lib.run(["-c", self.flat_cfg(data, name), "sync", "-o", out, "--format", fmt])
                self.assertNotEqual(r.rc, 0, r)
                self.assertIn("refusing to replace the last good data: %d -> " % n, r.err, r)
                self.assertEqual(read_bytes(out), good, name)
            self.assertIn("%d -> 0 resources" % n, lib.run(
                ["-c", self.flat_cfg(empty, "empty"), "sync", "-o", out, "--format", fmt]).err)
        # The per-instance threshold and --accept-shrink let a real drop through.
        out = self.path("graph.json")
        r = lib.run(["-c", self.flat_cfg(few, "few80", inst_extra="max_shrink: 90%"),
                     "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        r = lib.run(["-c", self.flat_cfg(empty, "empty"), "sync", "-o", out])
        self.assertNotEqual(r.rc, 0, r)
        r = lib.run(["-c", self.flat_cfg(empty, "empty"), "sync", "-o", out, "--accept-shrink"])
        self.assertEqual(r.rc, 0, r)
        r = lib.run(["-c", self.flat_cfg(full, "full"), "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        r = lib.run(["-c", self.flat_cfg(empty, "emptytop", extra="max_shrink: 100%"),
                     "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)


    def test_the_store_alone_is_history(self):
        # the last good counts come from the store: with the output gone
        # a shrinking sync is still refused, and a refused (failed) run
        # does not become the new last good one
        full = lib.load_json(FLAT_FIXTURE)
        empty = {"flatfile": 1, "users": [], "groups": [], "roles": []}
        store = "store: %s" % lib.yaml_quote(self.path("history.db"))
        out = self.path("graph.json")
        r = lib.run(["-c", self.flat_cfg(full, "full", extra=store), "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        n = lib.load_json(out)["instances"][0]["stats"]["resources"]
        self.assertGreater(n, 0)
        os.unlink(out)
        for attempt in range(2):
            r = lib.run(["-c", self.flat_cfg(empty, "empty", extra=store), "sync", "-o", out])
            self.assertNotEqual(r.rc, 0, r)
            self.assertIn("refusing to replace the last good data: %d -> 0 resources" % n,
                          r.err, (attempt, r))
            self.assertFalse(os.path.exists(out))
        r = lib.run(["-c", self.flat_cfg(empty, "empty", extra=store), "sync", "-o", out,
                     "--accept-shrink"])
        self.assertEqual(r.rc, 0, r)


class OutputTargets(HostileTest):
    """Item 3: -o onto a device, a FIFO or a symlink to one; failing stdout.
    Item 10: no temp file survives; stale ones of our naming are removed."""

    def setUp(self):
        super().setUp()
        self.cfg = lib.write_config(
            self.path("c.yaml"),
            {TENANT: {"hr": {"plugin": "flatfile", "options": {"path": FLAT_FIXTURE}}}},
            plugin_dir=plugin_dir(self.tmp, ["flatfile"]))

    def sync(self, *args, **kw):
        return lib.run(["-c", self.cfg, "sync"] + list(args), **kw)

    def test_fifo_and_symlink_to_fifo_are_written_into(self):
        fifo = self.path("pipe")
        os.mkfifo(fifo)
        link = self.path("link")
        os.symlink(fifo, link)
        for target in (fifo, link):
            got = []
            t = threading.Thread(target=lambda: got.append(read_bytes(fifo)), daemon=True)
            t.start()
            r = self.sync("-o", target, timeout=60)
            t.join(30)
            self.assertEqual(r.rc, 0, r)
            self.assertTrue(stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced")
            self.assertTrue(os.path.islink(link), "the symlink was replaced")
            self.assertTrue(got and got[0].startswith(b'{"connhost_graph":1'), got)

    def test_symlink_to_a_device(self):
        link = self.path("devnull")
        os.symlink("/dev/null", link)
        r = self.sync("-o", link)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(os.path.islink(link), "the symlink was replaced by a file")
        self.assertTrue(stat.S_ISCHR(os.stat("/dev/null").st_mode))

    def test_fd_link_writes_into_the_fd(self):
        # Our own link, not /dev/stdout itself: the old code replaced the link.
        got = self.path("captured.json")
        link = self.path("fd-link")
        with open(got, "w") as f:
            os.symlink("/proc/self/fd/%d" % f.fileno(), link)
            p = subprocess.run([lib.CONNHOST, "-c", self.cfg, "sync", "-o", link],
                               capture_output=True, text=True, timeout=60,
                               pass_fds=(f.fileno(),))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("graph written to", p.stdout)
        self.assertTrue(os.path.islink(link), "the fd link was replaced by a file")
        self.assertTrue(read_bytes(got).startswith(b'{"connhost_graph":1'))
        json.loads(read_bytes(got))

    def test_symlink_to_a_file_keeps_the_link(self):
        real = self.path("real.json")
        with open(real, "w") as f:
            f.write("old\n")
        link = self.path("graph.json")
        os.symlink("real.json", link)
        r = self.sync("-o", link)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(os.path.islink(link), "the link was replaced by a copy")
        self.assertTrue(read_bytes(real).startswith(b'{"connhost_graph":1'))

    def test_full_device_fails_and_stays_a_device(self):
        dev = self.path("full")
        try:
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            self.skipTest("cannot create a device node here (not root)")
        r = self.sync("-o", dev)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("No space left on device", r.err, r)
        self.assertTrue(stat.S_ISCHR(os.stat(dev).st_mode), "the device was replaced")

    def test_directory_is_refused(self):
        r = self.sync("-o", self.tmp)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("is a directory", r.err, r)

    def test_failing_stdout_exits_non_zero(self):
        with open("/dev/full", "w") as full:
            p = subprocess.run([lib.CONNHOST, "-c", self.cfg, "sync", "-o", "-"],
                               stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertIn("writing the graph to stdout", p.stderr)

    def test_stale_temp_files_are_removed(self):
        out = self.path("graph.json")
        stale = self.path(".graph.json.AbC123")
        foreign = self.path(".graph.json.notours")
        for p in (stale, foreign):
            with open(p, "w") as f:
                f.write("left by a killed run")
        r = self.sync("-o", out)
        self.assertEqual(r.rc, 0, r)
        self.assertFalse(os.path.exists(stale), "stale temp file kept")
        self.assertTrue(os.path.exists(foreign), "a file not of our naming was removed")
        self.assertEqual(sorted(os.listdir(self.tmp)),
                         sorted([".graph.json.notours", "c.yaml", "connhost.db", "graph.json",
                                 "plugins"]))

    def test_unnamed_temp_file_is_used(self):
        if not shutil.which("strace"):
            self.skipTest("strace not installed")
        out = self.path("graph.json")
        log = self.path("strace.log")
        p = subprocess.run(["strace", "-f", "-o", log, "-e", "trace=openat,open,linkat",
                            lib.CONNHOST, "-c", self.cfg, "sync", "-o", out],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0 and not os.path.exists(out):
            self.skipTest("strace cannot trace here: " + p.stderr[-300:])
        with open(log) as f:
            trace = f.read()
        self.assertTrue("O_TMPFILE" in trace and "linkat(" in trace,
                        "no O_TMPFILE + linkat in the trace")
        self.assertNotIn("O_CREAT|O_EXCL", trace)



class InsecurePluginDir(HostileTest):
    """Item 5: StrictModes for the plugin directory and the .so files."""

    def setUp(self):
        super().setUp()
        self.plugins = plugin_dir(self.tmp, ["flatfile"])
        self.so = os.path.join(self.plugins, "flatfile.so")

    def sync(self, extra=""):
        cfg = lib.write_config(
            self.path("c.yaml"),
            {TENANT: {"hr": {"plugin": "flatfile", "options": {"path": FLAT_FIXTURE}}}},
            plugin_dir=self.plugins, extra=extra)
        return lib.run(["-c", cfg, "sync", "-o", self.path("graph.json")])

    def assert_refused(self, path, fix):
        r = self.sync()
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("'%s'" % path, r.err, r)
        self.assertIn(fix, r.err, r)
        self.assertFalse(os.path.exists(self.path("graph.json")))
        r = self.sync(extra="allow_insecure_plugin_dir: true")
        self.assertEqual(r.rc, 0, r)
        os.unlink(self.path("graph.json"))

    def test_world_writable_dir(self):
        os.chmod(self.plugins, 0o757)
        self.assert_refused(self.plugins, "chmod o-w " + self.plugins)
        os.chmod(self.plugins, 0o777)
        self.assert_refused(self.plugins, "chmod go-w " + self.plugins)
        os.chmod(self.plugins, 0o1777)  # sticky does not make it safe
        self.assert_refused(self.plugins, "chmod go-w")

    def test_group_writable_dir(self):
        # a member of the group could replace a .so before it is checked
        os.chmod(self.plugins, 0o775)
        self.assert_refused(self.plugins, "chmod g-w " + self.plugins)

    def test_writable_parent_dir(self):
        # whoever can write a parent can rename the plugin directory away
        os.chmod(self.tmp, 0o777)
        self.assert_refused(self.tmp, "chmod go-w " + self.tmp)
        os.chmod(self.tmp, 0o1777)  # sticky (like /tmp) is enough above it
        self.assertEqual(self.sync().rc, 0)
        os.chmod(self.tmp, 0o700)

    def test_world_writable_so(self):
        os.chmod(self.so, 0o757)
        self.assert_refused(self.so, "chmod o-w " + self.so)
        os.chmod(self.so, 0o775)
        self.assert_refused(self.so, "chmod g-w " + self.so)

    def test_so_owned_by_another_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the file away")
        os.chown(self.so, 65534, 65534)
        self.assert_refused(self.so, "chown 0 " + self.so)

    def test_no_proc_fails_closed(self):
        # plugins load through /proc/self/fd/N: without /proc, none loads
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare(1) to hide /proc")
        # AddressSanitizer's run time reads /proc itself (LeakSanitizer
        # dies without it, whatever its options): not under ASan
        if "ASAN_OPTIONS" in os.environ:
            self.skipTest("an AddressSanitizer build needs /proc")
        p = subprocess.run(
            ["unshare", "-m", "sh", "-c",
             'mount -t tmpfs none /proc && exec "$0" "$@"', lib.CONNHOST,
             "plugins", "--plugin-dir", self.plugins],
            capture_output=True, text=True, timeout=60)
        if "mount:" in p.stderr or "unshare:" in p.stderr:
            self.skipTest("cannot hide /proc here: " + p.stderr.strip())
        out = p.stdout + p.stderr
        self.assertIn("cannot load " + self.so, out)
        self.assertIn("is /proc mounted?", out)
        self.assertNotIn("flatfile 1.", out)

    def test_safe_modes_load(self):
        os.chmod(self.plugins, 0o755)
        os.chmod(self.so, 0o755)
        self.assertEqual(self.sync().rc, 0)



def proxy_to(base, rewrite=None):
    """A Hostile handler forwarding to `base`, except where `rewrite(req)`
    returns a (status, headers, body) answer of its own."""
    def handler(req, body):
        if rewrite:
            got = rewrite(req)
            if got:
                return got
        status, ctype, out = lib.forward(base + req.path, req.command, req.headers, body)
        return status, {"Content-Type": ctype}, out
    return handler


def users_search_rewrite(fake, edit):
    """A rewrite for proxy_to: each Jira /users/search page of `fake`
    goes through `edit(doc)`, which changes the page in place or returns
    its new bytes."""
    def rewrite(req):
        if not req.path.split("?")[0].endswith("/users/search"):
            return None
        status, headers, body = proxy_to(fake.base)(req, b"")
        doc = json.loads(body)
        raw = edit(doc)
        return status, headers, raw if raw is not None else json.dumps(doc).encode()
    return rewrite


class HostileServers(HostileTest):
    def test_echoed_authorization_is_redacted(self):
        """Item 4: a server echoing the Basic credential in an error body."""
        email, token = "bot@example.com", "ATATT3xFfGF0-a-very-secret-token-value-1234567890"

        def echo(req, body):
            msg = {"message": "denied: Authorization: %s" % req.headers.get("Authorization")}
            return 400, {"Content-Type": "application/json"}, json.dumps(msg).encode()
        h = self.hostile(echo)
        cfg = self.config({"jira": self.jira_inst(h.base, email=email, token=token)})
        b64 = base64.b64encode(("%s:%s" % (email, token)).encode()).decode()
        for level in ("info", "debug"):
            r = lib.run(["--log-level", level, "-c", cfg, "sync", "-o", self.path("g.json")])
            self.assertNotEqual(r.rc, 0, r)
            self.assertTrue(any(hd.get("Authorization") == "Basic " + b64 for _, _, hd in h.seen))
            self.assertIn("denied: Authorization: Basic ***", r.err, r)
            for leak in (b64, b64[:20], token, token[:20]):
                self.assertNotIn(leak, r.out + r.err)

    def test_endless_users_search(self):
        """Item 11: users/search answering the same page whatever startAt."""
        fake = self.start_fake()
        first = {}

        def same_page(req):
            if "/users/search" not in req.path:
                return None
            if "page" not in first:
                q = req.path.split("?")[0] + "?startAt=0&maxResults=2"
                first["page"] = proxy_to(fake.base)(type("R", (), {
                    "path": q, "command": "GET", "headers": req.headers})(), b"")
            return first["page"]
        h = self.hostile(proxy_to(fake.base, same_page))
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"])})
        t0 = time.monotonic()
        r = lib.run(["-c", cfg, "sync", "-o", self.path("g.json"), "--max-pages", "300"],
                    timeout=120)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("holds the same 2 records as page 1", r.err, r)
        pages = sum(1 for _, p, _ in h.seen if "/users/search" in p)
        self.assertLess(pages, 5, "kept paging: %d users/search requests" % pages)
        self.assertLess(time.monotonic() - t0, 60)


    def sync_rewritten(self, fake, rewrite, seen):
        """Sync Jira through a proxy to `fake` applying `rewrite`; the sync
        succeeds and every rewrite in `seen` happened. (config, graph, run)"""
        h = self.hostile(proxy_to(fake.base, rewrite))
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"])})
        out = self.path("g.json")
        r = lib.run(["-c", cfg, "sync", "-o", out], timeout=120)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(all(seen.values()), seen)
        return cfg, out, r

    def test_corrupted_deleted_users_are_nobody(self):
        """Jira answers accountId "unknown" for a deleted user whose record
        is corrupted (UserDetails, ProjectRoleUser), and `active` is
        optional: such users must not become one shared principal, and a
        user without `active` has no status rather than "enabled"."""
        fake = self.start_fake()
        corrupt = {"accountId": "unknown", "accountType": "atlassian",
                   "displayName": "Former user", "active": False}
        seen = {"search": 0, "members": 0, "actors": 0}

        def corrupted(req):
            path = req.path.split("?")[0]
            if not any(x in path for x in ("/users/search", "/group/member", "/role/")):
                return None
            status, headers, body = proxy_to(fake.base)(req, b"")
            doc = json.loads(body)
            if path.endswith("/users/search") and doc:
                seen["search"] += 1
                del doc[0]["active"]
                doc.append(dict(corrupt))
            elif path.endswith("/group/member") and doc.get("values"):
                seen["members"] += 1
                doc["values"].append(dict(corrupt))
            elif "/role/" in path and isinstance(doc, dict) and doc.get("actors"):
                seen["actors"] += 1
                doc["actors"].append({"id": 99, "displayName": "Former user",
                                      "type": "atlassian-user-role-actor",
                                      "actorUser": {"accountId": "unknown"}})
            return status, headers, json.dumps(doc).encode()
        cfg, out, r = self.sync_rewritten(fake, corrupted, seen)
        self.assertIn("'unknown' of a corrupted record", r.err)
        with open(out) as f:
            g = json.load(f)
        nobody = rkey("jira", "user", "unknown")
        self.assertNotIn(nobody, {x["key"] for x in g["resources"]})
        self.assertNotIn(nobody, {x["principal"] for x in g["grants"]})
        first = next(u for u in fake.truth["jira"]["users"])
        user = next(x for x in g["resources"] if x["key"] == rkey("jira", "user", first["accountId"]))
        self.assertNotIn("status", user)

    def test_nul_in_names_and_ids_is_a_replacement_character(self):
        """A \\u0000 in a display name or an account id: a NUL would end
        the C string, so "Ann\\u0000Evil" became "Ann" and an id the id of
        another account. Both arrive whole, the NUL as U+FFFD."""
        fake = self.start_fake()
        seen = {"search": 0}
        users = fake.truth["jira"]["users"]
        victim, twin = users[0], users[1]

        def nul(doc):
            for u in doc:
                if u["accountId"] == victim["accountId"]:
                    seen["search"] += 1
                    u["displayName"] = "Ann\u0000Evil"
                    # an id that a NUL would cut to another account's
                    doc.append(dict(u, accountId=twin["accountId"] + "\u0000x",
                                    displayName="Twin"))
        cfg, out, r = self.sync_rewritten(fake, users_search_rewrite(fake, nul), seen)
        with open(out, encoding="utf-8") as f:
            g = json.load(f)
        by_key = {x["key"]: x for x in g["resources"]}
        ann = by_key[rkey("jira", "user", victim["accountId"])]
        self.assertEqual(ann["display_name"], "Ann\ufffdEvil")
        self.assertEqual(by_key[rkey("jira", "user", twin["accountId"])]["display_name"],
                         twin["displayName"])
        odd = by_key[rkey("jira", "user", twin["accountId"] + "\ufffdx")]
        self.assertEqual(odd["display_name"], "Twin")

    def test_bytes_that_are_not_utf8_read_as_replacement_characters(self):
        """A page whose text is not UTF-8 (a stray byte, a sequence cut
        short) failed the whole instance on the first such name. The
        sync now succeeds: each invalid sequence reads as U+FFFD, the
        rest of the name and every other record arrive as sent, and a
        warning says so. skip_inactive_users reads the same page through
        the SDK's json-c path too."""
        fake = self.start_fake()
        seen = {"search": 0}
        users = fake.truth["jira"]["users"]
        victim, other = users[0], users[1]

        def broken(doc):
            for u in doc:
                if u["accountId"] == victim["accountId"]:
                    seen["search"] += 1
                    u["displayName"] = "Ann@@FF@@Evil M\u00fcller@@E282@@"
            raw = json.dumps(doc, ensure_ascii=False).encode()
            return raw.replace(b"@@FF@@", b"\xff").replace(b"@@E282@@", b"\xe2\x82")
        h = self.hostile(proxy_to(fake.base, users_search_rewrite(fake, broken)))
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"],
            skip_inactive_users=True)})
        out = self.path("g.json")
        r = lib.run(["-c", cfg, "sync", "-o", out], timeout=120)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(seen["search"], seen)
        self.assertIn("not valid UTF-8", r.err)
        # once from each reader: the sync's pj_doc, the skipped set's json-c
        self.assertEqual(r.err.count("read as U+FFFD"), 2, r)
        with open(out, encoding="utf-8") as f:
            g = json.load(f)
        by_key = {x["key"]: x for x in g["resources"]}
        ann = by_key[rkey("jira", "user", victim["accountId"])]
        self.assertEqual(ann["display_name"], "Ann\ufffdEvil M\u00fcller\ufffd")
        self.assertEqual(by_key[rkey("jira", "user", other["accountId"])]["display_name"],
                         other["displayName"])

    def test_emails_saved_with_new_identities_are_those_the_store_gathers(self):
        """A first recording writes each new identity's emails with it
        instead of gathering them with a query afterwards. What it writes
        must be what the query gathers, byte for byte: the distinct
        emails of the identity's accounts (a Jira and an org account
        share theirs), and for an email that SQLite's JSON text escapes
        (a quote, a backslash, a control character) or writes unlike ours
        (DEL as it is) the query's own text."""
        fake = self.start_fake()
        users = fake.truth["jira"]["users"]
        victim = next(u for u in users if u.get("emailAddress"))
        odd = 'odd"one\\back\x01sl\x7fash@example.com'

        def odd_email(doc):
            for u in doc:
                if u["accountId"] == victim["accountId"]:
                    u["emailAddress"] = odd
        h = self.hostile(proxy_to(fake.base, users_search_rewrite(fake, odd_email)))
        db = self.path("s.db")
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"]),
            "org": self.org_inst(fake)}, extra="store: %s\n" % db)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("g.json")], timeout=120)
        self.assertEqual(r.rc, 0, r)
        con = sqlite3.connect(db)
        # accounts of one identity that list the same email
        shared = con.execute(
            "SELECT count(*) FROM identities x WHERE (SELECT count(*) FROM resources ir,"
            " json_each(ir.emails) WHERE ir.identity_id = x.id) >"
            " json_array_length(x.emails)").fetchone()[0]
        rows = con.execute(
            "SELECT x.key, x.emails, x.emails_run, (SELECT json_group_array(DISTINCT"
            " je.value) FROM resources ir JOIN run_instances ri ON ri.run_id = 1 AND"
            " ri.inst_id = ir.inst_id AND ir.first_run <= ri.data_run AND"
            " (ir.last_run IS NULL OR ir.last_run >= ri.data_run), json_each(ir.emails)"
            " je WHERE ir.identity_id = x.id) FROM identities x").fetchall()
        con.close()
        self.assertGreater(len(rows), 10)
        for key, saved, run, gathered in rows:
            self.assertEqual(saved, gathered, key)
            self.assertEqual(run, 1, key)
        self.assertGreater(shared, 0)
        self.assertTrue(any(odd in json.loads(saved) for _, saved, _, _ in rows))

    def test_error_text_that_is_not_utf8_stays_valid_in_the_logs(self):
        """A 403 whose message holds bytes that are not UTF-8: the message
        reached the log as sent, so a JSON log line was not valid text
        (nor JSON for a strict reader). Each such byte is now U+FFFD, in
        the JSON and the text log alike, and the rest of the message
        stays."""
        def handler(req, body):
            return 403, {"Content-Type": "application/json"}, \
                b'{"errorMessages":["no \xff access \xe2\x82"]}'
        h = self.hostile(handler)
        cfg = self.config({"jira": self.jira_inst(h.base)})
        r = lib.run(["--log-format", "json", "-c", cfg, "sync", "-o", self.path("g.json")],
                    timeout=60)
        self.assertNotEqual(r.rc, 0, r)
        lines = [json.loads(x) for x in r.err.splitlines() if x.strip()]
        msgs = [x.get("msg", "") + " " + str(x.get("error", "")) for x in lines]
        self.assertTrue(any("no \ufffd access \ufffd\ufffd" in m for m in msgs), r)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("g.json")], timeout=60)
        self.assertIn("no \ufffd access \ufffd\ufffd", r.err)

    def test_records_sent_twice_count_once(self):
        """A server repeating a user and a member across its pages: the
        summary and the JSON events count what the graph kept, as its
        stats and the store do (graph-format.md: distinct grants)."""
        fake = self.start_fake()
        seen = {"search": 0, "members": 0}

        def repeated(req):
            path = req.path.split("?")[0]
            if not (path.endswith("/users/search") or path.endswith("/group/member")):
                return None
            status, headers, body = proxy_to(fake.base)(req, b"")
            doc = json.loads(body)
            if path.endswith("/users/search") and doc:
                seen["search"] += 1
                doc.append(dict(doc[0]))
            elif path.endswith("/group/member") and doc.get("values"):
                seen["members"] += 1
                doc["values"].append(dict(doc["values"][0]))
            return status, headers, json.dumps(doc).encode()
        cfg, out, r = self.sync_rewritten(fake, repeated, seen)
        with open(out) as f:
            stats = json.load(f)["instances"][0]["stats"]
        self.assertIn("(jira_cloud): ok, %d resources, %d grants,"
                      % (stats["resources"], stats["grants"]), r.out + r.err)
        r = lib.run(["--log-format", "json", "-c", cfg, "sync", "-o", out], timeout=120)
        self.assertEqual(r.rc, 0, r)
        events = [json.loads(x) for x in r.err.splitlines() if x.startswith("{")]
        done = [e for e in events if e.get("event") == "instance_finished"]
        self.assertEqual([(e["resources"], e["grants"]) for e in done],
                         [(stats["resources"], stats["grants"])])

    def test_records_sent_twice_do_not_hide_a_shrink(self):
        """A server that fills each group's member pages with one member
        sent again and again: as many records as last time, far fewer
        memberships. The shrink check counts what the graph keeps, as the
        last good run's figures did, so the sync is refused and the good
        graph stays."""
        fake = self.start_fake()
        cfg, out, r = self.sync_rewritten(fake, lambda req: None, {})
        good = read_bytes(out)
        n = json.loads(good)["instances"][0]["stats"]["grants"]
        seen = {"members": 0}

        def one_member(req):
            if not req.path.split("?")[0].endswith("/group/member"):
                return None
            status, headers, body = proxy_to(fake.base)(req, b"")
            doc = json.loads(body)
            if len(doc.get("values") or []) > 1:
                seen["members"] += 1
                doc["values"] = [dict(doc["values"][0]) for _ in doc["values"]]
            return status, headers, json.dumps(doc).encode()
        h = self.hostile(proxy_to(fake.base, one_member))
        # memberships are under half of the tiny tenant's grants
        cfg = self.config({"jira": self.jira_inst(
            h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"])},
            name="one.yaml", extra="max_shrink: 10%")
        r = lib.run(["-c", cfg, "sync", "-o", out], timeout=120)
        self.assertTrue(seen["members"])
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("refusing to replace the last good data: %d -> " % n, r.err, r)
        self.assertIn(" grants (more than max_shrink", r.err, r)
        self.assertEqual(read_bytes(out), good)
        r = lib.run(["-c", cfg, "sync", "-o", out, "--accept-shrink"], timeout=120)
        self.assertEqual(r.rc, 0, r)
        self.assertLess(json.loads(read_bytes(out))["instances"][0]["stats"]["grants"], n * 0.9)

    def test_createmeta_pages_without_total(self):
        """`total` is optional on createmeta's pages: without it only an
        empty page ends them (one page was read and the rest lost). And a
        page of fields may name them `results` (the spec declares both)."""
        fake = self.start_fake()

        def no_total(req):
            if "/issue/createmeta/" not in req.path:
                return None
            status, headers, body = proxy_to(fake.base)(req, b"")
            doc = json.loads(body)
            doc.pop("total", None)
            return status, headers, json.dumps(doc).encode()

        def schema(base, name):
            inst = self.jira_inst(base, email=fake.creds["jira_email"],
                                  token=fake.creds["jira_api_token"], project_keys=["OPS"],
                                  ticket_project_key="OPS", page_size=2)
            inst["provisioning"] = True  # actions are writes to the host
            cfg = self.config({"jira": inst}, name=name)
            r = lib.run(["-c", cfg, "action", "--tenant", TENANT, "--instance", "jira",
                         "ticket_schema", "--arg", "project_key=OPS"], timeout=120)
            self.assertEqual(r.rc, 0, r)
            return json.loads(r.out.partition("\n")[2])
        h = self.hostile(proxy_to(fake.base, no_total))
        whole = schema(fake.base, "direct.yaml")
        self.assertGreater(sum(len(p["issue_types"]) + len(p["skipped"])
                               for p in whole["projects"]), 2, whole)  # pages of 2
        self.assertEqual(schema(h.base, "proxied.yaml"), whole)
        # the same page type declares its fields as `results` too
        seen = {"results": 0}

        def as_results(req):
            if "/issue/createmeta/" not in req.path or "/issuetypes/" not in req.path:
                return None
            status, headers, body = proxy_to(fake.base)(req, b"")
            doc = json.loads(body)
            if "fields" in doc:
                seen["results"] += 1
                doc["results"] = doc.pop("fields")
            return status, headers, json.dumps(doc).encode()
        h2 = self.hostile(proxy_to(fake.base, as_results))
        self.assertEqual(schema(h2.base, "results.yaml"), whole)
        self.assertTrue(seen["results"])

    def test_project_roles_refused_name_the_permission(self):
        """Jira answers a project's roles with 401 or 404 "if the user lacks
        administrative permissions for the project": after the listings
        worked, that is the permission, not the token."""
        fake = self.start_fake()
        for status in (401, 404):
            def refuse(req, status=status):
                if "/role" not in req.path.split("?")[0]:
                    return None
                body = {"errorMessages": ["You do not have permission"], "errors": {}}
                return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
            h = self.hostile(proxy_to(fake.base, refuse))
            cfg = self.config({"jira": self.jira_inst(
                h.base, email=fake.creds["jira_email"], token=fake.creds["jira_api_token"])},
                name="c%d.yaml" % status)
            r = lib.run(["-c", cfg, "sync", "-o", self.path("g%d.json" % status)], timeout=120)
            self.assertIn("Administer Projects permission", r.err, r)
            self.assertNotIn("check email and api_token", r.err, r)
            self.assertEqual(r.rc, 1 if status == 401 else 0, r)


class Signals(HostileTest):
    """Item 8: in-process mode under a plugin that hangs or crashes."""

    def start(self, mode, out):
        with open(out, "w") as f:
            f.write("previous\n")
        cfg = lib.write_config(self.path("c.yaml"),
                               {TENANT: {"bad": {"plugin": "t_hostile", "options": {"mode": mode}}}},
                               plugin_dir=plugin_dir(self.tmp, ["t_hostile"]))
        p = subprocess.Popen([lib.CONNHOST, "-c", cfg, "sync", "-o", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def test_second_signal_exits_at_once(self):
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            out = self.path("g.json")
            p = self.start("hang", out)
            time.sleep(1.0)
            p.send_signal(sig)
            time.sleep(0.3)
            self.assertIsNone(p.poll(), "the hung plugin should hold the first stop")
            t0 = time.monotonic()
            p.send_signal(sig)
            _, err = p.communicate(timeout=10)
            self.assertLess(time.monotonic() - t0, 3)
            self.assertEqual(p.returncode, code, err)
            self.assertIn("second", err)
            with open(out) as f:
                self.assertEqual(f.read(), "previous\n")

    def test_grace_period_runs_out(self):
        out = self.path("g.json")
        p = self.start("hang", out)
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 143, err)
        self.assertGreater(took, 8)
        self.assertLess(took, 20)
        self.assertIn("grace period ran out", err)
        with open(out) as f:
            self.assertEqual(f.read(), "previous\n")

    def test_fatal_signal_names_the_plugin_op(self):
        for mode, sig in (("segv", signal.SIGSEGV), ("abort", signal.SIGABRT),
                          ("overflow", signal.SIGSEGV)):
            out = self.path("g.json")
            p = self.start(mode, out)
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, -sig, err)
            name = "SIGSEGV" if sig == signal.SIGSEGV else "SIGABRT"
            self.assertIn("connhost: plugin t_hostile crashed (%s) in list(user) for acme/bad"
                          % name, err)
            with open(out) as f:
                self.assertEqual(f.read(), "previous\n")


if __name__ == "__main__":
    lib.main()
