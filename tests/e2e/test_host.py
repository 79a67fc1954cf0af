#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of the host through the built binary with real plugins:
the example plugin (flatfile) and the test-only plugin t_chaos."""
import json
import os
import re
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


def stderr_on_a_terminal(args):
    """Run connhost with stderr on a pseudo-terminal; (exit code, what it
    wrote there)."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([lib.CONNHOST] + args, stdout=subprocess.DEVNULL, stderr=slave)
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
    return p.wait(timeout=30), seen


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

    def test_exit_status_table_is_one(self):
        # --help prints runstate.c's table; README.md shows the same codes
        # with the same meanings.
        r = lib.run(["--help"])
        self.assertEqual(r.rc, 0, r)
        block = r.out.split("Exit status:\n", 1)[1].split("serve: SIGHUP", 1)[0]
        rows, code = {}, None
        for line in block.splitlines():
            m = re.match(r"^  (\d+)\s+(.*)$", line)
            if m:
                code = m.group(1)
                rows[code] = m.group(2)
            else:
                rows[code] += " " + line.strip()
        self.assertEqual(sorted(rows), ["0", "1", "130", "2", "3"])
        with open(os.path.join(lib.SRCDIR, "README.md")) as f:
            readme = f.read()
        table = dict(re.findall(r"^\| ([\d, ]+) \| (.+) \|$", readme, re.M))
        self.assertEqual(sorted(table), ["0", "1", "130, 143", "2", "3"])
        words = lambda s: re.sub(r"\s+", " ", s.replace("`", "")).strip()
        for c in ("0", "1", "2", "3"):
            self.assertEqual(words(table[c]), words(rows[c]), c)
        self.assertIn("143 by SIGTERM", rows["130"])

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

    def test_malformed_records_say_the_same_in_a_child(self):
        """Under isolation: process the host validates the child's records
        and fails the instance in the same words as in-process."""
        for mode in ("no_id", "bad_type"):
            errors = {}
            for iso in ("none", "process"):
                cfg = self.config({"t": {"x": chaos(mode)}}, name="%s-%s.yaml" % (mode, iso),
                                  extra="isolation: %s\n" % iso)
                out = self.path("%s-%s.json" % (mode, iso))
                r = self.sync(cfg, "-o", out, "--allow-partial")
                self.assertEqual(r.rc, 1, (mode, iso, r))
                [inst] = lib.load_json(out)["instances"]
                errors[iso] = inst["error"]
            self.assertEqual(errors["none"], errors["process"], mode)
            self.assertIn("no id" if mode == "no_id" else "is not declared by plugin", errors["none"])

    def test_a_plugin_printing_on_stdout_stays_out_of_the_graph(self):
        """With -o - the graph owns stdout: what a plugin prints there goes
        to stderr, in-process and from a child process alike."""
        for iso in ("none", "process"):
            cfg = self.config({"t": {"x": chaos("chatty")}}, name="chatty-%s.yaml" % iso,
                              extra="isolation: %s\n" % iso)
            r = self.sync(cfg, "-o", "-")
            self.assertEqual(r.rc, 0, (iso, r))
            g = json.loads(r.out)
            self.assertTrue(any(x["type"] == "user" for x in g["resources"]), iso)
            self.assertIn("chatty: listing page 0", r.err, iso)

    def test_data_cannot_forge_a_log_line(self):
        """An id from a source with a newline and a terminal escape in it:
        the error quoting it stays one line, in the log and the summary."""
        forged = "2026-12-02T00:00:00.000Z connhost: info: FORGED"
        bad = "u1\n" + forged + "\x1b[31m"
        src = self.path("forged.json")
        with open(src, "w") as f:
            json.dump({"flatfile": 1, "users": [{"id": bad, "name": "x"}, {"id": bad, "name": "y"}]}, f)
        cfg = self.config({"t": {"hr": flat(path=src)}}, name="forged.yaml")
        r = self.sync(cfg, "-o", self.path("forged-out.json"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("duplicate id", r.err)
        self.assertIn("u1\\n" + forged + "\\x1b[31m", r.err)
        for line in (r.out + r.err).splitlines():
            self.assertFalse(line.startswith(forged), line)
        self.assertNotIn("\x1b", r.out + r.err)

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

    def test_output_per_tenant_exit_codes(self):
        # one run per tenant, each counted once: 3 when a tenant's run
        # failed and another's did not, 1 when none landed, 0 when all did
        out = self.path("{tenant}.json")
        cfg = self.config({"good": {"hr": flat()}, "bad": {"x": chaos("list_fail")}})
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 3, r)
        self.assertTrue(os.path.exists(self.path("good.json")))
        self.assertFalse(os.path.exists(self.path("bad.json")))
        cfg = self.config({"bad": {"x": chaos("list_fail")},
                           "worse": {"y": chaos("list_fail")}}, name="f.yaml")
        self.assertEqual(self.sync(cfg, "-o", out).rc, 1)
        cfg = self.config({"good": {"hr": flat()}, "also": {"hr": flat()}},
                          name="ok.yaml")
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(os.path.exists(self.path("also.json")))

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
        cfg = self.config({"t": {"x": chaos("slow", delay_ms=100, pages=8)}})
        rc, seen = stderr_on_a_terminal(["-c", cfg, "sync", "-o", self.path("g.json")])
        self.assertEqual(rc, 0)
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


def jira(fake, url="${env:H8_JIRA_URL}", provisioning=False, **opts):
    """A jira_cloud instance on the fake; url and token from the environment."""
    o = {"url": url, "email": fake.creds["jira_email"],
         "api_token": "${env:H8_JIRA_TOKEN}", "gateway_url": fake.base}
    o.update(opts)
    return {"plugin": "jira_cloud", "provisioning": provisioning, "options": o}


def jira_env(fake):
    return {"H8_JIRA_URL": fake.base, "H8_JIRA_TOKEN": fake.creds["jira_api_token"]}


def plugin_options(name):
    """Option name -> type, as `connhost plugins` prints them for `name`."""
    r = lib.run(["plugins", "--plugin-dir", lib.PLUGINS])
    opts, cur, in_opts = {}, None, False
    for line in r.out.splitlines():
        if not line.startswith(" "):
            cur, in_opts = line.split(" ")[0], False
        elif line.strip() == "options:":
            in_opts = True
        elif in_opts and cur == name and line.startswith("    "):
            m = re.match(r"\s+(\S+)\s+(\w+)", line)
            opts[m.group(1)] = m.group(2)
    return opts


class RoughEdges(HostTest):
    """Issue 8's first-day rough edges, each through the built binary."""

    def test_flag_that_does_not_apply_is_a_usage_error(self):
        for args, cmd in ((["plugins", "--format", "json"], "plugins"),
                          (["check", "--format", "jsonl"], "check"),
                          (["check", "-o", "g.json"], "check"),
                          (["grant", "--workers", "3"], "grant"),
                          (["sync", "--email", "a@b.c"], "sync")):
            r = lib.run(args, cwd=self.tmp)
            self.assertEqual(r.rc, 2, (args, r))
            self.assertIn("'%s'" % cmd, r.err, args)
            self.assertIn("does not apply", r.err, args)

    def test_sync_dry_run_is_refused_before_any_work(self):
        cfg = self.config({"legacy": {"hr": flat()}})
        out = self.path("g.json")
        r = self.sync(cfg, "-o", out, "--dry-run")
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--dry-run", r.err)
        self.assertIn("'sync'", r.err)
        self.assertFalse(os.path.exists(out), "a dry-run sync wrote a graph")

    def test_output_extension_picks_the_format(self):
        cfg = self.config({"legacy": {"hr": flat()}})
        out = self.path("g.jsonl")
        r = self.sync(cfg, "-o", out)
        self.assertEqual(r.rc, 0, r)
        rows = lib.load_jsonl(out)
        self.assertGreater(len(rows), 2)
        self.assertEqual(rows[0]["connhost_graph"], 1)
        self.assertTrue(all("kind" in row for row in rows[1:]))
        # An explicit --format still wins over the extension.
        out = self.path("g2.jsonl")
        r = self.sync(cfg, "-o", out, "--format", "json")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(lib.load_json(out)["connhost_graph"], 1)

    def test_unknown_option_suggests_the_near_miss(self):
        r = lib.run(["sync", "--dry-runn"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("unknown option '--dry-runn'; did you mean '--dry-run'?", r.err)
        r = lib.run(["--wrokers", "3"])
        self.assertIn("did you mean '--workers'?", r.err)
        r = lib.run(["--frobnicate"])
        self.assertNotIn("did you mean", r.err)
        r = lib.run(["synk"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("did you mean 'sync'?", r.err)

    def test_unknown_host_key_lists_every_key(self):
        # The host's keys outgrew one error message: the list is logged in
        # full on the line above the error, never cut.
        cfg = self.path("k.yaml")
        with open(cfg, "w") as f:
            f.write("wrokers: 3\ntenants: {}\n")
        r = lib.run(["-c", cfg, "check"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("unknown key 'wrokers' in the top-level map; did you "
                      "mean 'workers'? (expected one of: on the line above)", r.err)
        listed = [l for l in r.err.splitlines() if "the keys of the top-level map:" in l]
        self.assertEqual(len(listed), 1, r.err)
        for key in ("plugin_dir", "workers", "max_shrink", "isolation",
                    "schedule", "serve", "store", "keep_runs", "tenants"):
            self.assertIn(key, listed[0].split("map:", 1)[1])

    def test_unknown_plugin_option_lists_every_option(self):
        known = plugin_options("jira_cloud")
        cfg = lib.write_config(self.path("j.yaml"), {"t": {"j": {
            "plugin": "jira_cloud", "options": {
                "url": "https://x.atlassian.net", "email": "a@b.c",
                "api_token": "${env:H8_TOKEN}", "max_request_per_second": 2}}}},
            plugin_dir=lib.PLUGINS)
        r = lib.run(["-c", cfg, "check"], env={"H8_TOKEN": "tok-123456"})
        self.assertEqual(r.rc, 2, r)
        self.assertIn("did you mean 'max_requests_per_second'?", r.err)
        listed = re.search(r"knows these options: (.*)", r.err).group(1)
        self.assertEqual(set(listed.split(", ")), set(known), r.err)

    def test_rate_cap_is_a_number(self):
        for plugin in ("jira_cloud", "atlassian_org"):
            self.assertEqual(plugin_options(plugin)["max_requests_per_second"],
                             "number", plugin)
        cfg = lib.write_config(self.path("j.yaml"), {"t": {"j": {
            "plugin": "jira_cloud", "options": {
                "url": "https://x.atlassian.net", "email": "a@b.c",
                "api_token": "${env:H8_TOKEN}", "max_requests_per_second": "fast"}}}},
            plugin_dir=lib.PLUGINS)
        r = lib.run(["-c", cfg, "check"], env={"H8_TOKEN": "tok-123456"})
        self.assertEqual(r.rc, 2, r)
        self.assertRegex(r.err, r"j\.yaml:\d+:\d+: option 'max_requests_per_second' "
                                r"must be a number")

    def test_help_states_the_default_workers_the_code_uses(self):
        h = " ".join(lib.run(["--help"]).out.split())
        m = re.search(r"else (\d+) per core, at most (\d+)\)", h)
        self.assertTrue(m, h)
        per_core, cap = int(m.group(1)), int(m.group(2))
        cores = os.sysconf("SC_NPROCESSORS_ONLN")
        cfg = self.config({"legacy": {"hr": flat()}})
        r = self.sync(cfg, "-o", self.path("g.json"), "--log-level", "debug")
        self.assertEqual(r.rc, 0, r)
        used = int(re.search(r"(\d+) workers", r.err).group(1))
        self.assertEqual(used, min(per_core * cores, cap))

    def json_lines(self, text):
        lines = [json.loads(line) for line in text.splitlines()]
        for line in lines:
            self.assertIsInstance(line, dict)
            self.assertIn("time", line)
            self.assertIn("level", line)
        return lines

    def test_json_logs_are_json_lines_to_the_end(self):
        cfg = self.config({"good": {"hr": flat()}, "bad": {"x": chaos("list_fail")}})
        out = self.path("g.json")
        for args, status, written in (([], "partial", None),
                                      (["--allow-partial"], "partial", out)):
            r = self.sync(cfg, "-o", out, "--log-format", "json", *args)
            self.assertEqual(r.rc, 3, r)
            lines = self.json_lines(r.err)  # every stderr line is an object
            self.assertEqual(r.out, "")
            fin = lines[-1]
            self.assertEqual(fin["event"], "sync_finished", r.err)
            self.assertEqual(fin["status"], status)
            self.assertEqual(fin["output"], written)
            per = {(i["tenant"], i["instance"]): i for i in fin["instances"]}
            self.assertEqual(per[("good", "hr")]["status"], "ok")
            self.assertEqual(per[("good", "hr")]["resources"], 19)
            self.assertEqual(per[("bad", "x")]["status"], "failed")
            self.assertIn("error", per[("bad", "x")])
            done = [x for x in lines if x.get("event") == "instance_finished"]
            self.assertEqual(len(done), 2)
            # A plugin's own line names its tenant and instance apart.
            loaded = [x for x in lines if "loaded" in x.get("msg", "")]
            self.assertEqual((loaded[0]["plugin"], loaded[0]["tenant"],
                              loaded[0]["instance"]), ("flatfile", "good", "hr"))
        r = self.sync(self.config({"good": {"hr": flat()}}, name="ok.yaml"), "-o", out,
                      "--log-format", "json")
        self.assertEqual(r.rc, 0, r)
        fin = self.json_lines(r.err)[-1]
        self.assertEqual((fin["event"], fin["status"], fin["output"]),
                         ("sync_finished", "ok", out))

    def test_json_logs_on_a_terminal_have_no_progress_line(self):
        cfg = self.config({"t": {"x": chaos("slow", delay_ms=100, pages=8)}})
        rc, seen = stderr_on_a_terminal(["-c", cfg, "sync", "-o", self.path("g.json"),
                                         "--log-format", "json"])
        self.assertEqual(rc, 0)
        lines = self.json_lines(seen.decode().replace("\r\n", "\n"))
        self.assertEqual(lines[-1]["event"], "sync_finished")

    def test_text_logs_carry_a_timestamp_off_a_terminal(self):
        cfg = self.config({"legacy": {"hr": flat()}})
        r = self.sync(cfg, "-o", self.path("g.json"))
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.err, r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                                r"connhost: info: \[flatfile:legacy/hr\] loaded")

    def fake(self):
        fake = lib.Fake(self.tmp)
        self.addCleanup(fake.stop)
        return fake

    def test_missing_output_directory_is_found_before_any_request(self):
        fake = self.fake()
        cfg = lib.write_config(self.path("j.yaml"), {"acme": {"jira": jira(fake)}},
                               plugin_dir=lib.PLUGINS)
        out = self.path("no", "such", "dir", "g.json")
        r = lib.run(["-c", cfg, "sync", "-o", out], env=jira_env(fake))
        self.assertEqual(r.rc, 2, r)
        self.assertIn(self.path("no", "such", "dir"), r.err)
        self.assertEqual(fake.requests(), [], "requests were sent first")
        # so is an output that is a directory
        os.makedirs(self.path("adir"))
        r = lib.run(["-c", cfg, "sync", "-o", self.path("adir")], env=jira_env(fake))
        self.assertEqual(r.rc, 2, r)
        self.assertIn("is a directory", r.err)
        self.assertEqual(fake.requests(), [], "requests were sent first")

    def test_an_output_that_is_an_input_is_refused(self):
        """-o naming the flatfile an instance reads would replace the HR
        export with the graph (and the next sync fail on it)."""
        src = self.path("hr.json")
        shutil.copy(FLAT_FIXTURE, src)
        with open(src, "rb") as f:
            before = f.read()
        cfg = lib.write_config(self.path("f.yaml"), {"legacy": {"hr": flat(path=src)}},
                               plugin_dir=lib.PLUGINS)
        for out in (src, os.path.join(os.path.dirname(src), ".", "hr.json")):
            r = lib.run(["-c", cfg, "sync", "-o", out])
            self.assertEqual(r.rc, 2, r)
            self.assertIn("is what instance legacy/hr reads (option 'path')", r.err)
            with open(src, "rb") as f:
                self.assertEqual(f.read(), before)

    def test_json_logs_of_a_failed_write_are_json(self):
        fake = self.fake()
        cfg = lib.write_config(self.path("j.yaml"), {"acme": {"jira": jira(
            fake, provisioning=True)}}, plugin_dir=lib.PLUGINS)
        aid = fake.truth["jira"]["users"][0]["accountId"]
        r = lib.run(["-c", cfg, "grant", "--log-format", "json",
                     "--entitlement", "acme/jira/group/no-such-group#member",
                     "--principal", "acme/jira/user/%s" % aid], env=jira_env(fake))
        self.assertEqual(r.rc, 1, r)
        errors = [x for x in self.json_lines(r.err) if x["level"] == "error"]
        self.assertTrue(errors and "failed" in errors[-1]["msg"], r)
        self.assertEqual((errors[-1]["tenant"], errors[-1]["instance"]), ("acme", "jira"))

    def test_dry_run_shows_the_site_not_the_secret(self):
        fake = self.fake()
        cfg = lib.write_config(self.path("j.yaml"), {"acme": {"jira": jira(
            fake, provisioning=True)}}, plugin_dir=lib.PLUGINS)
        gid = fake.truth["jira"]["groups"][0]["groupId"]
        aid = fake.truth["jira"]["users"][0]["accountId"]
        r = lib.run(["-c", cfg, "grant", "--dry-run",
                     "--entitlement", "acme/jira/group/%s#member" % gid,
                     "--principal", "acme/jira/user/%s" % aid], env=jira_env(fake))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("DRY RUN: POST %s/rest/api/3/group/user" % fake.base, r.out)
        self.assertNotIn(fake.creds["jira_api_token"], r.out + r.err)
        # A password inside a URL from the environment is still a secret.
        cfg = lib.write_config(self.path("p.yaml"), {"acme": {"jira": jira(
            fake, provisioning=True)}}, plugin_dir=lib.PLUGINS)
        env = jira_env(fake)
        env["H8_JIRA_URL"] = fake.base.replace("://", "://ops:pw-in-the-url@")
        r = lib.run(["-c", cfg, "grant", "--dry-run",
                     "--entitlement", "acme/jira/group/%s#member" % gid,
                     "--principal", "acme/jira/user/%s" % aid], env=env)
        self.assertNotIn("pw-in-the-url", r.out + r.err)


class Install(lib.TempDirTest):
    def test_reconfigured_prefix_reaches_the_installed_binary(self):
        # `./configure --prefix=P && make && make install` on a tree already
        # built for another prefix, in a copy of this build tree.
        status = os.path.join(lib.BUILDDIR, "config.status")
        if lib.BUILDDIR != lib.SRCDIR or not os.path.exists(status):
            self.skipTest("needs an in-tree build")
        args = subprocess.run([status, "--config"], capture_output=True,
                              text=True).stdout.strip()
        args = re.sub(r"'--prefix=[^']*'", "", args)
        tree = self.path("tree")
        shutil.copytree(lib.SRCDIR, tree, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", ".tools", "build-asan", "demo-out", "*.trs",
                                                      "*.log", "connhost-e2e-*"))
        prefix = self.path("prefix")
        sh = "./configure -q %s '--prefix=%s' && make -s -j2 install" % (args, prefix)
        p = subprocess.run(["sh", "-c", sh], cwd=tree, capture_output=True, text=True,
                           timeout=900)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-3000:])
        r = subprocess.run([os.path.join(prefix, "bin", "connhost"), "plugins"],
                           cwd=self.tmp, capture_output=True, text=True, timeout=60)
        want = os.path.join(prefix, "lib", "connhost")
        self.assertIn("plugin directory: " + want, r.stdout, r.stderr)
        self.assertIn("jira_cloud", r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    lib.main()
