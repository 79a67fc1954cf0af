#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of the host through the built binary with real plugins:
the example plugin (flatfile) and the test-only plugin t_chaos."""
import json
import os
import shutil
import signal
import subprocess
import time

import lib

FLAT_FIXTURE = os.path.join(lib.SRCDIR, "tests", "fixtures", "flatfile", "legacy-hr.json")


def chaos(mode="ok", **opts):
    o = {"mode": mode}
    o.update(opts)
    return {"plugin": "t_chaos", "options": o}


def flat(page_size=100, path=FLAT_FIXTURE):
    return {"plugin": "flatfile", "options": {"path": path, "page_size": page_size}}


class PluginDir:
    """A fresh plugin directory holding copies of the named .so files."""

    def __init__(self, root, names):
        self.path = os.path.join(root, "plugins")
        os.makedirs(self.path, exist_ok=True)
        for name in names:
            src = os.path.join(lib.PLUGINS, name + ".so")
            if not os.path.exists(src):
                src = os.path.join(lib.TEST_PLUGINS, name + ".so")
            shutil.copy(src, os.path.join(self.path, name + ".so"))


class HostTest(lib.TempDirTest):
    def setUp(self):
        super().setUp()
        self.plugins = PluginDir(self.tmp, ["flatfile", "t_chaos"]).path

    def config(self, tenants, name="c.yaml", **kw):
        return lib.write_config(self.path(name), tenants, plugin_dir=self.plugins, **kw)

    def sync(self, cfg, *args, env=None):
        return lib.run(["-c", cfg, "sync"] + list(args), env=env)


class CliBasics(HostTest):
    def test_help_and_version(self):
        r = lib.run(["--help"])
        self.assertEqual(r.rc, 0, r)
        for word in ("sync", "check", "plugins", "grant", "revoke", "provision",
                     "action", "--dry-run", "--allow-partial", "--workers"):
            self.assertIn(word, r.out)
        r = lib.run(["--version"])
        self.assertEqual(r.rc, 0)
        self.assertRegex(r.out, r"^connhost \S+ \(plugin ABI 1\)")

    def test_unknown_option_and_command(self):
        r = lib.run(["--frobnicate"])
        self.assertEqual(r.rc, 2)
        self.assertIn("unknown option '--frobnicate'", r.err)
        r = lib.run(["explode"])
        self.assertEqual(r.rc, 2)
        self.assertIn("unknown command 'explode'", r.err)

    def test_config_error_has_location(self):
        cfg = self.path("bad.yaml")
        with open(cfg, "w") as f:
            f.write("tenants:\n  acme:\n    hr:\n      plugin: flatfile\n      colour: blue\n")
        r = lib.run(["-c", cfg, "sync"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn(cfg + ":5:7", r.err)

    def test_missing_config(self):
        r = lib.run(["-c", self.path("nope.yaml"), "sync"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("nope.yaml", r.err)

    def test_unknown_plugin_option_has_location(self):
        cfg = self.config({"acme": {"hr": {"plugin": "flatfile",
                                           "options": {"path": FLAT_FIXTURE, "colour": "x"}}}})
        r = lib.run(["-c", cfg, "sync"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("colour", r.err)
        self.assertRegex(r.err, r"c\.yaml:\d+:\d+")


class Plugins(HostTest):
    def test_lists_good_and_explains_bad(self):
        r = lib.run(["plugins", "--plugin-dir", lib.TEST_PLUGINS])
        self.assertEqual(r.rc, 1, r)  # some test plugins are broken on purpose
        self.assertIn("t_chaos", r.out)
        self.assertRegex(r.out, r"FAILED to load t_badabi\.so: .*ABI 99")
        self.assertRegex(r.out, r"FAILED to load t_nosym\.so: .*no 'connhost_plugin' symbol")
        self.assertRegex(r.out, r"FAILED to load t_misname\.so: .*someone_else")
        self.assertRegex(r.out, r"FAILED to load t_short\.so: .*descriptor size")
        self.assertRegex(r.out, r"FAILED to load t_noops\.so: .*'list'")

    def test_dropped_in_plugin_is_listed_and_used(self):
        # A fresh directory with one plugin copied in: no rebuild of connhost.
        fresh = PluginDir(self.path("fresh"), ["t_chaos"]).path
        r = lib.run(["plugins", "--plugin-dir", fresh])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("t_chaos", r.out)
        self.assertIn("options:", r.out)
        self.assertIn("#member -> user", r.out)
        cfg = lib.write_config(self.path("c.yaml"), {"t": {"x": chaos(users=3)}},
                               plugin_dir=fresh)
        out = self.path("g.json")
        r = lib.run(["-c", cfg, "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(out)
        self.assertEqual(len([x for x in g["resources"] if x["type"] == "user"]), 3)

    def test_out_of_tree_plugin_builds_against_the_header_alone(self):
        pdir = self.path("third-party")
        lib.build_third_party(self, os.path.join(lib.SRCDIR, "include"), pdir)
        r = lib.run(["plugins", "--plugin-dir", pdir])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("hello 1.0 (ABI 1)", r.out)
        cfg = lib.write_config(self.path("h.yaml"), {"t": {"h": {"plugin": "hello"}}},
                               plugin_dir=pdir)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("h.json")])
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(self.path("h.json"))
        self.assertEqual([x["principal"] for x in g["grants"]], ["t/h/user/alice"])

    def test_installed_flatfile_describes_itself(self):
        r = lib.run(["plugins", "--plugin-dir", self.plugins])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("flatfile", r.out)
        self.assertIn("path", r.out)
        self.assertIn("page_size", r.out)


class Sync(HostTest):
    def test_same_bytes_whatever_workers(self):
        outs = []
        for workers, page in ((1, 1), (16, 1), (4, 1)):
            cfg = self.config({"legacy": {"hr": flat(page)}}, name="c%d%d.yaml" % (workers, page))
            out = self.path("g-%d-%d.json" % (workers, page))
            r = self.sync(cfg, "-o", out, "--workers", str(workers))
            self.assertEqual(r.rc, 0, r)
            with open(out, "rb") as f:
                outs.append(f.read())
        for other in outs[1:]:
            self.assertEqual(outs[0], other)
        g = json.loads(outs[0])
        self.assertEqual(g["connhost_graph"], 1)
        self.assertTrue(g["resources"] and g["grants"] and g["entitlements"])
        keys = [r["key"] for r in g["resources"]]
        self.assertEqual(keys, sorted(keys))

    def test_page_size_changes_only_the_page_count(self):
        graphs = []
        for page in (1, 2, 1000):
            cfg = self.config({"legacy": {"hr": flat(page)}}, name="p%d.yaml" % page)
            out = self.path("p%d.json" % page)
            r = self.sync(cfg, "-o", out, "--workers", "8")
            self.assertEqual(r.rc, 0, r)
            g = lib.load_json(out)
            pages = g["instances"][0]["stats"].pop("pages")
            graphs.append((pages, g))
        self.assertGreater(graphs[0][0], graphs[2][0])
        for _, g in graphs[1:]:
            self.assertEqual(graphs[0][1], g)

    def test_summary_says_where_the_graph_went(self):
        cfg = self.config({"legacy": {"hr": flat()}})
        out = self.path("g.json")
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("graph written to " + out, r.out)
        self.assertRegex(r.out, r"\d+ resources, \d+ entitlements, \d+ grants")

    def test_jsonl(self):
        cfg = self.config({"legacy": {"hr": flat()}})
        out = self.path("g.jsonl")
        r = self.sync(cfg, "-o", out, "--format", "jsonl")
        self.assertEqual(r.rc, 0, r)
        rows = lib.load_jsonl(out)
        self.assertEqual(rows[0]["connhost_graph"], 1)
        kinds = {row.get("kind") for row in rows[1:]}
        self.assertTrue({"resource", "entitlement", "grant"} <= kinds, kinds)

    def test_failing_instance_is_isolated_and_old_output_kept(self):
        out = self.path("g.json")
        with open(out, "w") as f:
            f.write("previous good graph\n")
        cfg = self.config({"good": {"hr": flat()}, "bad": {"x": chaos("open_fail")}})
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("credentials refused by test", r.err)
        with open(out) as f:
            self.assertEqual(f.read(), "previous good graph\n")
        r = self.sync(cfg, "-o", out, "--allow-partial")
        self.assertEqual(r.rc, 3, r)
        g = lib.load_json(out)
        status = {(i["tenant"], i["instance"]): i["status"] for i in g["instances"]}
        self.assertEqual(status, {("good", "hr"): "ok", ("bad", "x"): "failed"})
        self.assertTrue(any(x["tenant"] == "good" for x in g["resources"]))
        self.assertFalse(any(x["tenant"] == "bad" for x in g["resources"]))

    def test_only_instance_failing_is_exit_1(self):
        cfg = self.config({"bad": {"x": chaos("list_fail")}})
        r = self.sync(cfg, "-o", self.path("g.json"))
        self.assertEqual(r.rc, 1, r)
        self.assertFalse(os.path.exists(self.path("g.json")))

    def test_unchanged_token_guard(self):
        cfg = self.config({"t": {"x": chaos("same_token")}})
        r = self.sync(cfg, "-o", self.path("g.json"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("page token it was given", r.err)

    def test_page_limit(self):
        cfg = self.config({"t": {"x": chaos("endless")}})
        r = self.sync(cfg, "-o", self.path("g.json"), "--max-pages", "40")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("more than 40 pages", r.err)

    def test_malformed_records_are_errors_not_crashes(self):
        for mode, text in (("no_id", "no id"), ("bad_grant", "unknown entitlement"),
                           ("bad_slug", "is not declared")):
            cfg = self.config({"t": {"x": chaos(mode)}, "ok": {"hr": flat()}},
                              name=mode + ".yaml")
            r = self.sync(cfg, "-o", self.path(mode + ".json"), "--allow-partial")
            self.assertEqual(r.rc, 3, (mode, r))
            self.assertIn(text, r.err, mode)
            g = lib.load_json(self.path(mode + ".json"))
            failed = [i for i in g["instances"] if i["status"] == "failed"]
            self.assertEqual(len(failed), 1, mode)

    def test_tenant_filter(self):
        cfg = self.config({"a": {"hr": flat()}, "b": {"x": chaos("open_fail")}})
        out = self.path("g.json")
        r = self.sync(cfg, "-o", out, "--tenant", "a")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual({i["tenant"] for i in lib.load_json(out)["instances"]}, {"a"})
        r = self.sync(cfg, "-o", out, "--tenant", "zzz")
        self.assertEqual(r.rc, 2, r)

    def test_disabled_instance_is_skipped(self):
        bad = chaos("open_fail")
        bad["enabled"] = False
        cfg = self.config({"a": {"hr": flat(), "x": bad}})
        r = self.sync(cfg, "-o", self.path("g.json"))
        self.assertEqual(r.rc, 0, r)

    def test_awkward_ids_round_trip(self):
        prefix = "a/b#c%d:e é\u00e9"
        cfg = self.config({"t": {"x": chaos(users=2, id_prefix=prefix)}})
        out = self.path("g.json")
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(out)
        users = [x for x in g["resources"] if x["type"] == "user"]
        self.assertEqual(len(users), 2)
        for u in users:
            self.assertTrue(u["id"].startswith(prefix))
            comp = u["key"].split("/")
            self.assertEqual(len(comp), 4)  # '/' inside the id is encoded
            self.assertNotIn("#", u["key"])
            self.assertIn("%2F", u["key"])
            self.assertIn("%23", u["key"])
            self.assertIn("%25", u["key"])

    def test_signals_stop_cleanly(self):
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            out = self.path("g.json")
            with open(out, "w") as f:
                f.write("previous\n")
            cfg = self.config({"t": {"x": chaos("slow", delay_ms=200, pages=100)}})
            p = subprocess.Popen([lib.CONNHOST, "-c", cfg, "sync", "-o", out],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)
            p.send_signal(sig)
            _, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, code, err)
            self.assertIn("stopped by", err)
            with open(out) as f:
                self.assertEqual(f.read(), "previous\n")

    def test_progress_line_only_on_a_terminal(self):
        import pty
        cfg = self.config({"t": {"x": chaos("slow", delay_ms=100, pages=8)}})
        master, slave = pty.openpty()
        p = subprocess.Popen([lib.CONNHOST, "-c", cfg, "sync", "-o", self.path("g.json")],
                             stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        self.assertEqual(p.wait(timeout=30), 0)
        self.assertIn(b"syncing:", seen)
        self.assertRegex(seen, rb"\d+ resources, \d+ grants, \d+ requests")
        # Not a terminal: no progress line in the captured stderr.
        r = self.sync(cfg, "-o", self.path("g2.json"))
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("syncing:", r.err)

    def test_secrets_never_leak(self):
        secret = "s3cr3t-VALUE-do-not-print"
        cfg = self.config({"t": {"x": chaos("leak_secret", secret="${env:CHAOS_SECRET}")}})
        out = self.path("g.json")
        r = self.sync(cfg, "-o", out, "--allow-partial", "--log-level", "debug",
                      env={"CHAOS_SECRET": secret})
        self.assertNotEqual(r.rc, 0, r)
        self.assertNotIn(secret, r.out + r.err)
        if os.path.exists(out):
            with open(out) as f:
                self.assertNotIn(secret, f.read())
        r = lib.run(["-c", cfg, "check"], env={"CHAOS_SECRET": secret})
        self.assertNotIn(secret, r.out + r.err)

    def test_missing_env_secret_names_the_key(self):
        cfg = self.config({"t": {"x": chaos(secret="${env:CONNHOST_NOT_SET_X}")}})
        r = self.sync(cfg, "-o", self.path("g.json"))
        self.assertEqual(r.rc, 2, r)
        self.assertIn("secret", r.err)
        self.assertIn("CONNHOST_NOT_SET_X", r.err)


class Check(HostTest):
    def test_check_reports_each_instance(self):
        cfg = self.config({"a": {"hr": flat()}, "b": {"x": chaos("check_fail")}})
        r = lib.run(["-c", cfg, "check"])
        self.assertEqual(r.rc, 3, r)
        self.assertRegex(r.out, r"ok\s+a/hr")
        self.assertRegex(r.out, r"FAILED\s+b/x")


class Writes(HostTest):
    def test_write_needs_provisioning(self):
        cfg = self.config({"t": {"x": chaos()}})
        r = lib.run(["-c", cfg, "grant", "--entitlement", "t/x/group/everyone#member",
                     "--principal", "t/x/user/u1"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("provisioning: true", r.err)

    def test_bad_keys_are_usage_errors(self):
        cfg = self.config({"t": {"x": chaos()}})
        r = lib.run(["-c", cfg, "grant", "--entitlement", "t/x/group", "--principal", "t/x/user/u"])
        self.assertEqual(r.rc, 2, r)
        r = lib.run(["-c", cfg, "grant", "--entitlement", "t/x/group/g#member",
                     "--principal", "t/other/user/u"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("must belong", r.err)


if __name__ == "__main__":
    lib.main()
