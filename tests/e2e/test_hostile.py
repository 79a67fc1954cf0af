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


if __name__ == "__main__":
    lib.main()
