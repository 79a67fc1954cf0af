# SPDX-License-Identifier: MIT
"""End-to-end tests of process isolation (`isolation: process`): the built
connhost binary with the hostile test plugin t_crash (segfault, abort,
stack overflow, a list() that never returns, junk written into its pipe)
next to good instances, and the real jira_cloud and atlassian_org plugins
against the fake Atlassian Cloud, synced in-process and isolated.

CONNHOST_SLOW_TESTS=0 skips the `large` profile comparison (two syncs of
about 15 s each)."""
import filecmp
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import test_serve  # noqa: E402  (its Serve daemon and metrics parser)

SLOW = os.environ.get("CONNHOST_SLOW_TESTS") != "0"
GRACE_S = 5  # ISOLATE_GRACE_MS in host/isolate.h
SIGNALS = {"segv": "SIGSEGV", "abort": "SIGABRT", "overflow": "SIGSEGV"}

def asan_build():
    """Whether connhost is an AddressSanitizer build: serve runs plugins
    in-process there (ISOLATE_THREADED_FORK in host/isolate.h)."""
    try:
        out = subprocess.run(["ldd", lib.CONNHOST], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "libasan" in out


ASAN = asan_build()
NO_THREADED_FORK = "an AddressSanitizer build does not fork beside threads (isolate.h)"
SERVE_FAST = "schedule:\n  interval: 200ms\n  jitter: 0%\nworkers: 4\n"


def hostile_config(path, mode, default="process", bad_key=None, plugin_dir=None):
    """acme/jira runs t_crash in `mode`; acme/good and globex/good run
    t_chaos with good data. `default` is the host-wide isolation key (None:
    not written); `bad_key` is acme/jira's own key."""
    lines = ["plugin_dir: %s" % lib.yaml_quote(plugin_dir or lib.TEST_PLUGINS)]
    if default:
        lines.append("isolation: %s" % default)
    lines += ["tenants:", "  acme:", "    jira:", "      plugin: t_crash"]
    if bad_key:
        lines.append("      isolation: %s" % bad_key)
    lines += ["      options:", "        mode: %s" % mode,
              "    good:", "      plugin: t_chaos",
              "      options:", "        users: 7",
              "  globex:", "    good:", "      plugin: t_chaos",
              "      options:", "        id_prefix: g-"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def children_of(pid):
    """Live (not zombie) pids whose parent is `pid` (from /proc)."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(name))
    return kids


class Hostile(lib.TempDirTest):
    def sync(self, cfg, *extra):
        return lib.run(["-c", cfg, "-o", self.path("graph.json"), "--allow-partial"]
                       + list(extra), timeout=120)

    def assert_others_synced(self, graph):
        keys = {r["key"] for r in graph["resources"]}
        for n in range(1, 8):
            self.assertIn("acme/good/user/u%d" % n, keys)
        for n in range(1, 6):
            self.assertIn("globex/good/user/g-u%d" % n, keys)
        self.assertIn("acme/good/group/everyone", keys)
        self.assertIn("globex/good/group/g-everyone", keys)
        self.assertFalse([k for k in keys if k.startswith("acme/jira/")])
        members = [g for g in graph["grants"]
                   if g["entitlement"] == "acme/good/group/everyone#member"]
        self.assertEqual(len(members), 7)

    def test_a_crash_fails_that_instance_only(self):
        for mode, sig in SIGNALS.items():
            with self.subTest(mode=mode):
                cfg = hostile_config(self.path("c.yaml"), mode)
                r = self.sync(cfg)
                self.assertEqual(r.rc, 3, r)
                line = "plugin t_crash crashed (%s) in list(user) for acme/jira" % sig
                self.assertIn(line, r.err)
                self.assertIn("acme/jira (t_crash): FAILED", r.out)
                graph = lib.load_json(self.path("graph.json"))
                self.assert_others_synced(graph)
                report = {(i["tenant"], i["instance"]): i for i in graph["instances"]}
                self.assertEqual(report[("acme", "jira")]["status"], "failed")
                self.assertEqual(report[("acme", "jira")]["error"], line)
                self.assertEqual(report[("acme", "good")]["status"], "ok")
                self.assertEqual(report[("globex", "good")]["status"], "ok")

    def test_a_plugin_calling_exit_is_no_success(self):
        """In-process, a plugin's exit(0) would end connhost with status 0
        and no word: cron and systemd would see a good run that wrote
        nothing. It is a failure that names the plugin; in a child process
        it fails that instance only."""
        out = self.path("graph.json")
        with open(out, "w") as f:
            f.write('{"previous": true}\n')
        cfg = hostile_config(self.path("n.yaml"), "exit", default="none")
        r = self.sync(cfg)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("plugin t_crash called exit() in list(user) for acme/jira", r.err)
        self.assertIn("no graph written", r.err)
        with open(out) as f:
            self.assertEqual(f.read(), '{"previous": true}\n')
        r = self.sync(hostile_config(self.path("p.yaml"), "exit"))
        self.assertEqual(r.rc, 3, r)
        self.assertIn("acme/jira (t_crash): FAILED", r.out)
        self.assert_others_synced(lib.load_json(out))

    def test_plugin_threads_have_a_wide_stack_guard(self):
        # the overflow mode's 16 KiB frames would jump glibc's one-page
        # guard into the next thread's stack; every thread that runs plugin
        # code has a guard no plugin frame can jump, isolated or not
        for default in ("process", "none"):
            with self.subTest(default=default):
                cfg = hostile_config(self.path("c.yaml"), "guard", default=default)
                r = self.sync(cfg)
                self.assertEqual(r.rc, 3, r)
                m = re.search(r"stack guard (\d+) bytes", r.err)
                self.assertTrue(m, r)
                self.assertGreaterEqual(int(m.group(1)), 1024 * 1024, r)

    def test_the_instance_key_overrides_the_host_default(self):
        # in-process by default, the hostile instance alone in a child
        cfg = hostile_config(self.path("c.yaml"), "segv", default="none",
                             bad_key="process")
        r = self.sync(cfg)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("plugin t_crash crashed (SIGSEGV) in list(user) for acme/jira", r.err)
        self.assert_others_synced(lib.load_json(self.path("graph.json")))

    def test_in_process_a_crash_takes_the_host_down(self):
        # what isolation is for: `none` (and no key: sync's default) dies
        for default, key in (("none", None), (None, None), ("process", "none")):
            with self.subTest(default=default, key=key):
                cfg = hostile_config(self.path("c.yaml"), "abort", default=default,
                                     bad_key=key)
                r = self.sync(cfg)
                self.assertNotIn(r.rc, (0, 3), r)
                self.assertFalse(os.path.exists(self.path("graph.json")))

    def test_a_plugin_error_crosses_once(self):
        # an ordinary failure in the child: in the summary, the graph's
        # report and the exit code, logged once
        cfg = hostile_config(self.path("c.yaml"), "segv")
        with open(cfg) as f:
            text = f.read().replace("plugin: t_crash", "plugin: t_chaos")
        with open(cfg, "w") as f:
            f.write(text.replace("mode: segv", "mode: list_fail"))
        r = self.sync(cfg)
        self.assertEqual(r.rc, 3, r)
        line = "list user: credentials refused by test on page 2"
        self.assertEqual(r.err.count(line), 1, r)
        self.assertIn("acme/jira (t_chaos): FAILED", r.out)
        graph = lib.load_json(self.path("graph.json"))
        report = {(i["tenant"], i["instance"]): i for i in graph["instances"]}
        self.assertEqual(report[("acme", "jira")]["error"], line)
        # counted in the child: both user pages at least
        self.assertGreaterEqual(report[("acme", "jira")]["stats"]["pages"], 2)
        self.assert_others_synced(graph)

    def test_junk_in_the_pipe_fails_that_instance_only(self):
        cfg = hostile_config(self.path("c.yaml"), "scribble")
        r = self.sync(cfg)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("plugin t_crash sent a bad record stream for acme/jira: "
                      "a frame length of 2147483647 bytes is out of bounds", r.err)
        self.assert_others_synced(lib.load_json(self.path("graph.json")))

    def test_a_stop_kills_a_child_that_ignores_it_after_the_grace_period(self):
        cfg = hostile_config(self.path("c.yaml"), "block")
        out = self.path("graph.json")
        # SIGINT to the whole process group is a terminal's Ctrl-C
        for sig, code, group in ((signal.SIGTERM, 143, False),
                                 (signal.SIGINT, 130, False),
                                 (signal.SIGINT, 130, True)):
            with self.subTest(sig=sig, group=group):
                with open(out, "w") as f:
                    f.write("previous\n")
                env = dict(os.environ, SOURCE_DATE_EPOCH="0")
                p = subprocess.Popen([lib.CONNHOST, "-c", cfg, "-o", out,
                                      "--allow-partial"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
                # the good instances finish; the blocked child stays
                deadline = time.time() + 30
                kids = []
                while time.time() < deadline and p.poll() is None:
                    kids = children_of(p.pid)
                    if len(kids) == 1:
                        time.sleep(0.5)
                        break
                    time.sleep(0.05)
                self.assertEqual(len(kids), 1, "no blocked child process")
                t0 = time.time()
                if group:
                    os.killpg(p.pid, sig)
                else:
                    p.send_signal(sig)
                try:
                    _, err = p.communicate(timeout=GRACE_S + 20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
                    self.fail("connhost did not exit after %s" % sig)
                elapsed = time.time() - t0
                self.assertEqual(p.returncode, code, err)
                self.assertLess(elapsed, GRACE_S + 3, err)
                self.assertGreater(elapsed, GRACE_S - 1, err)
                self.assertIn("plugin t_crash did not stop within %d s of the stop "
                              "request in list(user) for acme/jira: killed" % GRACE_S, err)
                self.assertFalse(os.path.exists("/proc/%d" % kids[0]), "child left behind")
                with open(out) as f:
                    self.assertEqual(f.read(), "previous\n")

    def test_bad_isolation_value_has_its_location(self):
        cfg = hostile_config(self.path("c.yaml"), "segv", default="fork")
        r = self.sync(cfg)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("c.yaml:2:12: 'isolation' must be none or process, not 'fork'",
                      r.err)


class SameBytes(lib.TempDirTest):
    """Isolated or not, the same data gives the same graph, byte for byte."""

    def compare(self, profile):
        fake = lib.Fake(self.tmp, profile=profile)
        try:
            c = fake.creds
            env = {"DEMO_JIRA_URL": fake.base, "DEMO_JIRA_EMAIL": c["jira_email"],
                   "DEMO_JIRA_TOKEN": c["jira_api_token"],
                   "DEMO_ORG_API_BASE": fake.base + "/admin", "DEMO_ORG_ID": c["org_id"],
                   "DEMO_ORG_KEY": c["org_api_key"],
                   "DEMO_SCIM_URL": fake.base + "/scim/directory/" + c["scim_directory_id"],
                   "DEMO_SCIM_TOKEN": c["scim_token"], "SOURCE_DATE_EPOCH": "0"}
            with open(os.path.join(lib.SRCDIR, "conf", "demo.yaml")) as f:
                # the graphs are compared; the demo's store is not needed
                demo = re.sub(r"(?m)^store: .*$", "store: none", f.read())
            outs = {}
            for mode in ("none", "process"):
                cfg = self.path("%s.yaml" % mode)
                with open(cfg, "w") as f:
                    f.write("isolation: %s\n" % mode + demo)
                outs[mode] = self.path("%s.json" % mode)
                r = lib.run(["-c", cfg, "--plugin-dir", lib.PLUGINS, "-o", outs[mode]],
                            env=env)
                self.assertEqual(r.rc, 0, r)
                self.assertIn("demo/jira (jira_cloud): ok", r.out)
                self.assertIn("demo/org (atlassian_org): ok", r.out)
            graph = lib.load_json(outs["process"])
            self.assertTrue(graph["resources"] and graph["grants"])
            self.assertTrue(filecmp.cmp(outs["none"], outs["process"], shallow=False),
                            "graphs differ between isolation none and process")
        finally:
            fake.stop()

    def test_demo(self):
        self.compare("demo")

    @unittest.skipUnless(SLOW, "CONNHOST_SLOW_TESTS=0")
    def test_large(self):
        self.compare("large")


class UnderServe(test_serve.ServeTest):
    """`connhost serve` runs every instance in a child by default: many
    tenants forking and syncing at once beside the listener, a crash or a
    hang costing one instance's run, and `isolation: none` to opt out."""

    def plugin_dir(self):
        """jira_cloud and the test plugins in one directory (copies: a
        symlinked plugin is refused)."""
        d = self.path("plugins")
        if not os.path.isdir(d):
            os.makedirs(d)
            for src in (os.path.join(lib.PLUGINS, "jira_cloud.so"),
                        os.path.join(lib.TEST_PLUGINS, "t_chaos.so"),
                        os.path.join(lib.TEST_PLUGINS, "t_crash.so")):
                shutil.copy(src, d)
        return d

    def serve_config(self, tenants, extra=SERVE_FAST):
        """`tenants` maps tenant -> instance -> YAML lines of the instance."""
        lines = ["plugin_dir: %s" % lib.yaml_quote(self.plugin_dir()),
                 "output: %s" % lib.yaml_quote(os.path.join(self.out_dir, "{tenant}.json")),
                 extra.rstrip("\n"), "tenants:"]
        for tname, insts in tenants.items():
            lines.append("  %s:" % tname)
            for iname, body in insts.items():
                lines.append("    %s:" % iname)
                lines += ["      " + b for b in body]
        path = self.path("serve.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def jira_lines(self, tenant):
        j = self.jira(tenant)
        return ["plugin: jira_cloud", "options:"] + [
            "  %s: %s" % (k, v if v.startswith("${") else lib.yaml_quote(v))
            for k, v in j["options"].items()]

    @staticmethod
    def runs(log, tenant, instance, status):
        return len(re.findall(r"sync_finished: tenant=%s instance=%s status=%s "
                              % (tenant, instance, status), log))

    def wait_runs(self, s, want, timeout=180):
        """Wait until each (tenant, instance, status) has finished `n` runs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = s.log()
            if all(self.runs(log, *key) >= n for key, n in want.items()):
                return log
            self.assertIsNone(s.proc.poll(), log[-4000:])
            time.sleep(0.2)
        self.fail("runs %r not reached in %ss:\n%s" % (want, timeout, s.log()[-4000:]))

    @unittest.skipIf(ASAN, NO_THREADED_FORK)
    def test_many_tenants_fork_and_sync_at_once_for_many_rounds(self):
        # two tenants on HTTP to the fake (their connections live in the
        # host while others fork), three on the test plugin, a short
        # interval: forks land while other tenants' transfers, logs and
        # children are in flight
        chaos = ["plugin: t_chaos", "options:", "  users: 40"]
        slow = ["plugin: t_chaos", "options:", "  mode: slow", "  pages: 3",
                "  delay_ms: 30"]
        tenants = {"alpha": {"jira": self.jira_lines("alpha")},
                   "beta": {"jira": self.jira_lines("beta"), "hr": chaos},
                   "gamma": {"hr": chaos}, "delta": {"hr": slow},
                   "eps": {"hr": chaos, "hr2": chaos}}
        s = self.serve(self.serve_config(tenants))
        seen_child = False
        deadline = time.time() + 180
        want = {("alpha", "jira", "ok"): 5, ("beta", "jira", "ok"): 5,
                ("gamma", "hr", "ok"): 25, ("delta", "hr", "ok"): 15,
                ("eps", "hr2", "ok"): 25}
        while time.time() < deadline:
            seen_child = seen_child or bool(children_of(s.proc.pid))
            log = s.log()
            if all(self.runs(log, *k) >= n for k, n in want.items()) and seen_child:
                break
            self.assertIsNone(s.proc.poll(), log[-4000:])
            time.sleep(0.02)
        log = self.wait_runs(s, want, timeout=5)
        self.assertTrue(seen_child, "no plugin process seen under serve")
        self.assertNotIn("status=failed", log)
        for bad in ("crashed", "bad record stream", "exited with status",
                    "cannot start the plugin's process", "error:"):
            self.assertNotIn(bad, log)
        for tenant in tenants:
            graph = lib.load_json(self.out(tenant))
            self.assertTrue(graph["resources"], tenant)
            self.assertEqual({i["status"] for i in graph["instances"]}, {"ok"}, tenant)
        # the child's HTTP counters reach the host (sync_finished, /metrics)
        self.assertRegex(log, r"tenant=alpha instance=jira status=ok .* requests=[1-9]\d* "
                              r"retries=\d+ throttled=\d+ bytes=[1-9]")
        fam = s.metrics()
        self.assertGreater(test_serve.sample(fam, "connhost_http_bytes_total",
                                             tenant="alpha", instance="jira") or 0, 0)
        for tenant, inst in (("gamma", "hr"), ("alpha", "jira")):
            self.assertEqual(test_serve.sample(fam, "connhost_sync_runs_total", tenant=tenant,
                                               instance=inst, status="failed"), 0)
        self.assertEqual(s.get("/healthz")[0], 200)
        self.assertEqual(s.stop(), 0, s.log()[-3000:])

    @unittest.skipIf(ASAN, NO_THREADED_FORK)
    def test_a_crash_costs_only_that_instance_run(self):
        tenants = {"acme": {"jira": ["plugin: t_crash", "options:", "  mode: segv"],
                            "good": ["plugin: t_chaos", "options:", "  users: 7"]},
                   "globex": {"good": ["plugin: t_chaos"]}}
        s = self.serve(self.serve_config(tenants))
        log = self.wait_runs(s, {("acme", "jira", "failed"): 3, ("globex", "good", "ok"): 3})
        self.assertIn("plugin t_crash crashed (SIGSEGV) in list(user) for acme/jira", log)
        # acme's file holds both instances, so it is not written; globex's is
        self.assertFalse(os.path.exists(self.out("acme")))
        self.assertTrue(lib.load_json(self.out("globex"))["resources"])
        fam = s.metrics()
        self.assertGreaterEqual(test_serve.sample(fam, "connhost_sync_runs_total", tenant="acme",
                                                  instance="jira", status="failed"), 3)
        self.assertGreaterEqual(test_serve.sample(fam, "connhost_sync_runs_total",
                                                  tenant="globex", instance="good",
                                                  status="ok"), 3)
        self.assertEqual(test_serve.sample(fam, "connhost_sync_last_success", tenant="acme",
                                           instance="jira"), 0)
        self.assertEqual(s.get("/healthz")[0], 200)
        self.assertEqual(s.stop(), 0, s.log()[-3000:])

    @unittest.skipIf(ASAN, NO_THREADED_FORK)
    def test_a_hang_is_killed_at_the_instance_timeout(self):
        tenants = {"acme": {"jira": ["plugin: t_crash", "timeout: 1500ms", "options:",
                                     "  mode: block"]},
                   "globex": {"good": ["plugin: t_chaos"]}}
        s = self.serve(self.serve_config(tenants))
        s.wait_log(r"sync_started: tenant=acme instance=jira")
        t0 = time.time()
        # the blocked child holds nothing of the host's but stdio and its
        # pipe: not the listener, not a sibling's pipe
        fds = None
        while fds is None and time.time() < t0 + 10:
            for kid in children_of(s.proc.pid):
                try:
                    fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (kid, fd))
                           for fd in os.listdir("/proc/%d/fd" % kid)}
                    break
                except OSError:  # a short-lived sibling just ended
                    continue
        self.assertIsNotNone(fds, "no child process")
        self.assertFalse([v for v in fds.values() if v.startswith("socket:")], fds)
        self.assertEqual(len([fd for fd, v in fds.items()
                              if fd > 2 and v.startswith("pipe:")]), 1, fds)
        log = self.wait_runs(s, {("acme", "jira", "failed"): 2}, timeout=60)
        # two runs, each ended by the timeout (not by the 5 s stop grace)
        self.assertLess(time.time() - t0, 2 * (1.5 + GRACE_S), log[-3000:])
        self.assertIn("timed out after", log)
        self.assertNotIn("did not stop within", log)
        self.assertNotIn("crashed", log)
        self.assertGreaterEqual(self.runs(log, "globex", "good", "ok"), 2)
        # a blocked child is killed, not left behind: at most the current
        # run's child exists
        self.assertLessEqual(len(children_of(s.proc.pid)), 1)
        self.assertEqual(s.stop(), 0, s.log()[-3000:])
        self.assertFalse(children_of(s.proc.pid))

    @unittest.skipIf(ASAN, NO_THREADED_FORK)
    def test_sigterm_reaches_the_children(self):
        # serve blocks SIGTERM in its threads for its own sigwait; a child
        # forked from one must still take the host's stop request
        tenants = {"acme": {"hr": ["plugin: t_chaos", "options:", "  mode: slow",
                                   "  pages: 1000", "  delay_ms: 100"]}}
        s = self.serve(self.serve_config(
            tenants, extra=SERVE_FAST + "serve:\n  shutdown_grace: 1s\n"))
        s.wait_log(r"sync_started: tenant=acme instance=hr")
        deadline = time.time() + 30
        while not children_of(s.proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(children_of(s.proc.pid), s.log()[-3000:])
        t0 = time.time()
        self.assertEqual(s.stop(), 0, s.log()[-3000:])
        # the grace, then the child stops at once (not GRACE_S later, killed)
        self.assertLess(time.time() - t0, 1 + GRACE_S - 1, s.log()[-3000:])
        self.assertNotIn("did not stop within", s.log())

    def test_isolation_none_opts_an_instance_out(self):
        # in-process on request: the same crash then takes serve down
        tenants = {"acme": {"jira": ["plugin: t_crash", "isolation: none", "options:",
                                     "  mode: abort"]},
                   "globex": {"good": ["plugin: t_chaos"]}}
        s = self.serve(self.serve_config(tenants))
        try:
            rc = s.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("serve survived an in-process abort:\n" + s.log()[-3000:])
        self.assertEqual(rc, -signal.SIGABRT, s.log()[-3000:])
        self.assertIn("plugin t_crash crashed (SIGABRT) in list(user) for acme/jira",
                      s.log())


if __name__ == "__main__":
    lib.main()
