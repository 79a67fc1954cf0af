#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The deployment files against the built binary: every manifest under
contrib/kubernetes/ parses (python3-yaml) and agrees with itself and with
connhost (command, options, ports, probes, env names), then the Deployment's
own arguments run `connhost serve` on the ConfigMap's config with the
Secret's variables (listen address and URLs pointed at loopback and the
fake) and its probes and scrape path answer. The systemd units pass
`systemd-analyze verify` where it exists, and their command lines use only
what `connhost --help` offers."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from test_serve import Serve, parse_exposition, sample  # noqa: E402

try:
    import yaml
except ImportError:  # tools/install-deps.sh installs python3-yaml
    yaml = None

CONTRIB = os.path.join(lib.SRCDIR, "contrib")
MANPAGE = os.path.join(lib.BUILDDIR, "connhost.1")


def help_text():
    r = lib.run(["--help"])
    assert r.rc == 0, r
    return r.out


def check_argv(test, argv, help_out):
    """Every option in `argv` is one --help lists; the command is one of its
    commands."""
    commands = set(re.findall(r"^  ([a-z]+)  ", help_out, re.M))
    test.assertTrue(commands, help_out)
    cmds = [a for a in argv if a in commands]
    test.assertEqual(len(cmds), 1, (argv, commands))
    for a in argv:
        if a.startswith("--"):
            test.assertRegex(help_out, r"(^|[ ,])%s\b" % re.escape(a.split("=")[0]), a)
        elif a.startswith("-") and len(a) == 2:
            test.assertRegex(help_out, r"\s%s, --" % re.escape(a), a)
    return cmds[0]


def opt_value(argv, *names):
    for i, a in enumerate(argv):
        if a in names:
            return argv[i + 1]
    return None


class Kubernetes(lib.TempDirTest):
    def setUp(self):
        super().setUp()
        if yaml is None:
            self.skipTest("python3-yaml is not installed (tools/install-deps.sh)")
        self.docs = {}
        for path in sorted(glob.glob(os.path.join(CONTRIB, "kubernetes", "*.yaml"))):
            with open(path, encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    self.assertNotIn(doc["kind"], self.docs, path)
                    self.docs[doc["kind"]] = doc
        self.assertEqual(set(self.docs), {"Secret", "ConfigMap", "Deployment", "Service"})

    def parts(self):
        dep = self.docs["Deployment"]
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(len(pod["containers"]), 1)
        return dep, pod, pod["containers"][0]

    def config_text(self, container, pod):
        cm = self.docs["ConfigMap"]
        argv = container["args"]
        path = opt_value(argv, "-c", "--config")
        vol = [v for v in pod["volumes"] if v.get("configMap", {}).get("name")
               == cm["metadata"]["name"]]
        self.assertEqual(len(vol), 1)
        mount = [m for m in container["volumeMounts"] if m["name"] == vol[0]["name"]][0]
        key = os.path.relpath(path, mount["mountPath"])
        self.assertIn(key, cm["data"], "the -c path is not a key of the ConfigMap")
        return cm["data"][key]

    def test_manifests_match_the_binary(self):
        dep, pod, c = self.parts()
        out = help_text()
        self.assertEqual(c["command"], ["connhost"])
        self.assertEqual(check_argv(self, c["args"], out), "serve")
        # env: the Secret feeds every ${env:} of the config, and nothing else
        secret = self.docs["Secret"]
        self.assertEqual([e["secretRef"]["name"] for e in c["envFrom"]],
                         [secret["metadata"]["name"]])
        text = self.config_text(c, pod)
        used = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", text))
        self.assertEqual(used, set(secret["stringData"]))
        # ports: --listen, containerPort, probes, Service, scrape annotations
        listen = opt_value(c["args"], "--listen")
        port = int(listen.rsplit(":", 1)[1])
        (cport,) = c["ports"]
        self.assertEqual(cport["containerPort"], port)
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertIn(c[probe]["httpGet"]["port"], (cport["name"], port))
        svc = self.docs["Service"]
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        self.assertIn(svc["spec"]["ports"][0]["targetPort"], (cport["name"], port))
        ann = svc["metadata"]["annotations"]
        self.assertEqual(ann["prometheus.io/scrape"], "true")
        self.assertEqual(int(ann["prometheus.io/port"]), port)
        self.assertEqual(ann["prometheus.io/path"], "/metrics")
        # outputs go to a mounted volume (the root filesystem is read-only)
        cfg = yaml.safe_load(text)
        mounts = [m["mountPath"] for m in c["volumeMounts"]]
        self.assertIn(os.path.dirname(cfg["output"]), mounts)
        # the pod waits longer than serve's shutdown grace before SIGKILL
        grace = cfg["serve"]["shutdown_grace"]
        self.assertRegex(grace, r"^\d+s$")
        self.assertGreater(pod["terminationGracePeriodSeconds"], int(grace[:-1]))

    def test_the_deployment_runs(self):
        _, pod, c = self.parts()
        fake = lib.Fake(self.tmp)
        self.addCleanup(fake.stop)
        cfg = yaml.safe_load(self.config_text(c, pod))
        env_of = {}
        for tenant, insts in cfg["tenants"].items():
            for name, inst in insts.items():
                if name == "schedule":
                    continue
                opts = inst["options"]
                opts["url"] = opts["gateway_url"] = fake.base
                for opt, cred in (("email", "jira_email"), ("api_token", "jira_api_token")):
                    m = re.fullmatch(r"\$\{env:(\w+)\}", opts[opt])
                    self.assertTrue(m, opt)
                    env_of[m.group(1)] = fake.creds[cred]
        out_dir = self.path("state")
        os.makedirs(out_dir)
        cfg["output"] = os.path.join(out_dir, os.path.basename(cfg["output"]))
        cfg["plugin_dir"] = lib.PLUGINS
        path = self.path("connhost.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        env = dict(self.docs["Secret"]["stringData"])
        env.update(env_of)
        argv = list(c["args"])
        argv[argv.index(opt_value(argv, "-c", "--config"))] = path
        argv[argv.index(opt_value(argv, "--listen"))] = "127.0.0.1:0"
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            s = Serve(self.tmp, path, name="k8s", argv=argv)
        finally:
            for k, v in old.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        self.addCleanup(lambda: s.proc.poll() is None and s.proc.kill())
        self.assertIsNotNone(s.port, s.log())
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(s.get(c[probe]["httpGet"]["path"])[0], 200)
        scrape = self.docs["Service"]["metadata"]["annotations"]["prometheus.io/path"]
        token = env["CONNHOST_AUTH_TOKEN"]
        self.assertEqual(s.get(scrape)[0], 401)
        # the Deployment's args ask for JSON logs: the run is an event
        s.wait_log(r'"event":\s*"sync_finished",\s*"tenant":\s*"acme",\s*'
                   r'"instance":\s*"jira",\s*"status":\s*"ok"')
        status, _, body = s.get(scrape, token=token)
        self.assertEqual(status, 200)
        fam = parse_exposition(body)
        self.assertEqual(sample(fam, "connhost_sync_last_success", tenant="acme", instance="jira"), 1)
        # JSON logs, as --log-format json in the args says
        for line in s.log().splitlines():
            json.loads(line)
        self.assertEqual(s.stop(), 0)


class KubernetesReplicas(lib.TempDirTest):
    """contrib/kubernetes/replicas/: three replicas sharing the tenants
    through a PostgreSQL store whose URL comes from the Secret; then the
    Deployment's args run three replicas on a real PostgreSQL (pgcluster),
    each named as the manifest names it, and the runs name them."""

    def setUp(self):
        super().setUp()
        if yaml is None:
            self.skipTest("python3-yaml is not installed (tools/install-deps.sh)")
        self.docs = {}
        for path in sorted(glob.glob(os.path.join(CONTRIB, "kubernetes", "replicas", "*.yaml"))):
            with open(path, encoding="utf-8") as f:
                for doc in yaml.safe_load_all(f):
                    self.assertNotIn(doc["kind"], self.docs, path)
                    self.docs[doc["kind"]] = doc
        self.assertEqual(set(self.docs), {"Secret", "ConfigMap", "Deployment", "Service",
                                          "PodDisruptionBudget"})
        dep = self.docs["Deployment"]
        self.pod = dep["spec"]["template"]["spec"]
        (self.c,) = self.pod["containers"]
        cm = self.docs["ConfigMap"]
        self.text = cm["data"][os.path.basename(opt_value(self.c["args"], "-c"))]
        self.cfg = yaml.safe_load(self.text)

    def test_manifests(self):
        dep, c, secret = self.docs["Deployment"], self.c, self.docs["Secret"]
        self.assertEqual(dep["spec"]["replicas"], 3)
        self.assertEqual(check_argv(self, c["args"], help_text()), "serve")
        # the store URL is a secret: ${env:X} with X a key of the Secret
        m = re.fullmatch(r"\$\{env:(\w+)\}", self.cfg["store"])
        self.assertTrue(m, "store must come from the Secret, not be written in the config")
        self.assertIn(m.group(1), secret["stringData"])
        self.assertRegex(secret["stringData"][m.group(1)], r"^postgres(ql)?://")
        self.assertEqual([e["secretRef"]["name"] for e in c["envFrom"]],
                         [secret["metadata"]["name"]])
        used = set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", self.text))
        self.assertEqual(used, set(secret["stringData"]))
        # --replica-id is the pod's name, from the downward API
        rid = opt_value(c["args"], "--replica-id")
        var = re.fullmatch(r"\$\((\w+)\)", rid).group(1)
        (env,) = [e for e in c["env"] if e["name"] == var]
        self.assertEqual(env["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        # probes, Service, disruption budget, grace
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        labels = dep["spec"]["selector"]["matchLabels"]
        self.assertEqual(self.docs["Service"]["spec"]["selector"], labels)
        pdb = self.docs["PodDisruptionBudget"]["spec"]
        self.assertEqual(pdb["selector"]["matchLabels"], labels)
        self.assertLess(pdb["minAvailable"], dep["spec"]["replicas"])
        grace = self.cfg["serve"]["shutdown_grace"]
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], int(grace[:-1]))
        self.assertRegex(self.cfg["serve"]["lease_expiry"], r"^\d+s$")

    def test_three_replicas_run(self):
        import pgcluster
        pg = pgcluster.for_tests()
        self.addCleanup(pg.stop)
        # a password in the URL (the cluster trusts loopback, so any will
        # do): it must never reach a log
        url = pg.create_db("k8s").replace("connhost@", "connhost:k8s-store-pass-0451@")
        fake = lib.Fake(self.tmp)
        self.addCleanup(fake.stop)
        cfg = self.cfg
        store_var = re.fullmatch(r"\$\{env:(\w+)\}", cfg["store"]).group(1)
        opts = cfg["tenants"]["acme"]["jira"]["options"]
        opts["url"] = opts["gateway_url"] = fake.base
        env = dict(self.docs["Secret"]["stringData"])
        env[store_var] = url
        env[re.fullmatch(r"\$\{env:(\w+)\}", opts["email"]).group(1)] = fake.creds["jira_email"]
        env[re.fullmatch(r"\$\{env:(\w+)\}", opts["api_token"]).group(1)] = \
            fake.creds["jira_api_token"]
        cfg["output"] = os.path.join(self.tmp, "{tenant}.json")
        cfg["plugin_dir"] = lib.PLUGINS
        cfg["schedule"] = {"interval": "2s", "jitter": "0%"}
        path = self.path("connhost.yaml")
        with open(path, "w") as f:
            json.dump(cfg, f)
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        servers = []
        try:
            for i in range(3):
                pod = "connhost-replicas-7d9f-%d" % i
                argv = [pod if a == opt_value(self.c["args"], "--replica-id") else a
                        for a in self.c["args"]]
                argv[argv.index(opt_value(argv, "-c"))] = path
                argv[argv.index(opt_value(argv, "--listen"))] = "127.0.0.1:0"
                s = Serve(self.tmp, path, name=pod, argv=argv)
                servers.append(s)
                self.addCleanup(lambda s=s: s.proc.poll() is None and s.proc.kill())
                self.assertIsNotNone(s.port, s.log())
        finally:
            for k, v in old.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        pods = {"connhost-replicas-7d9f-%d" % i for i in range(3)}
        for s in servers:
            self.assertEqual(s.get("/readyz")[0], 200, s.log())
        deadline = time.time() + 60
        while time.time() < deadline:  # three runs of acme, 2 s apart
            if pg.psql("SELECT to_regclass('runs') IS NOT NULL", "k8s").strip() == "t" and \
                    int(pg.psql("SELECT count(*) FROM runs", "k8s")) >= 3:
                break
            time.sleep(0.2)
        names = set(pg.psql("SELECT DISTINCT replica FROM runs", "k8s").split())
        self.assertTrue(names and names <= pods, names)
        token = env["CONNHOST_AUTH_TOKEN"]
        for s, pod in zip(servers, sorted(pods)):
            fam = parse_exposition(s.get("/metrics", token=token)[2])
            self.assertEqual(sample(fam, "connhost_replica_info", replica=pod), 1)
            self.assertEqual(s.stop(), 0, s.log()[-2000:])
        logs = "".join(s.log() for s in servers)
        self.assertIn("sync_finished", logs)
        self.assertNotIn("k8s-store-pass-0451", logs)


class Systemd(lib.TempDirTest):
    def units(self):
        out = {}
        bindir = os.path.dirname(os.path.abspath(lib.CONNHOST))
        for path in glob.glob(os.path.join(CONTRIB, "systemd", "*")):
            name = os.path.basename(path)
            if os.path.exists(path + ".in"):
                continue  # made from the .in by an in-tree build
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if name.endswith(".in"):
                name = name[:-3]
                text = text.replace("@bindir@", bindir).replace("@sysconfdir@", self.tmp)
            self.assertNotRegex(text, r"@\w+@", name)
            out[name] = text
            with open(self.path(name), "w") as f:
                f.write(text)
        self.assertEqual(set(out), {"connhost.service", "connhost-sync.service",
                                    "connhost-sync.timer"})
        return out

    def exec_argv(self, text, key="ExecStart"):
        (line,) = re.findall(r"^%s=(.*)$" % key, text, re.M)
        return line.split()

    def test_units_use_what_the_binary_accepts(self):
        units = self.units()
        out = help_text()
        argv = self.exec_argv(units["connhost.service"])
        self.assertEqual(os.path.realpath(argv[0]), os.path.realpath(lib.CONNHOST))
        self.assertEqual(check_argv(self, argv[1:], out), "serve")
        self.assertIn("kill -HUP $MAINPID", units["connhost.service"])
        stop = int(re.search(r"^TimeoutStopSec=(\d+)$", units["connhost.service"], re.M).group(1))
        self.assertGreater(stop, 30)  # serve.shutdown_grace's default
        argv = self.exec_argv(units["connhost-sync.service"])
        self.assertEqual(check_argv(self, argv[1:], out), "sync")
        for name in ("connhost.service", "connhost-sync.service"):
            for opt in ("DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=connhost"):
                self.assertIn(opt, units[name].splitlines(), name)

    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if not tool:
            self.skipTest("no systemd-analyze")
        self.units()
        names = [self.path(n) for n in ("connhost.service", "connhost-sync.service",
                                        "connhost-sync.timer")]
        # Documentation=man:connhost(1) is checked against the built page
        env = dict(os.environ)
        args = [tool, "verify"]
        if shutil.which("man") and os.path.exists(MANPAGE):
            os.makedirs(self.path("man", "man1"))
            shutil.copy(MANPAGE, self.path("man", "man1", "connhost.1"))
            env["MANPATH"] = self.path("man")
        else:
            args.append("--man=no")
        p = subprocess.run(args + names, capture_output=True, text=True, timeout=60,
                           cwd=self.tmp, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # verify also warns without failing: no warning about our units
        noise = [ln for ln in (p.stdout + p.stderr).splitlines() if "connhost" in ln]
        self.assertEqual(noise, [], p.stderr)


class Install(lib.TempDirTest):
    def test_make_install(self):
        """`make install` puts the units, the example config and connhost(1)
        in place; the man page says what --help says."""
        make = shutil.which("make")
        if not make or not os.path.exists(os.path.join(lib.BUILDDIR, "Makefile")):
            self.skipTest("no make or no configured build tree")
        dest = self.path("root")
        p = subprocess.run([make, "-s", "-C", lib.BUILDDIR, "install-data", "DESTDIR=" + dest],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        found = {}
        for root, _dirs, files in os.walk(dest):
            for f in files:
                found[f] = os.path.join(root, f)
        for f in ("connhost.service", "connhost-sync.service", "connhost-sync.timer",
                  "connhost.yaml.example", "connhost.1", "deployment.yaml"):
            self.assertIn(f, found)
        self.assertTrue(found["connhost.service"].endswith("/lib/systemd/system/connhost.service"))
        self.assertTrue(found["connhost.1"].endswith("/man1/connhost.1"))
        with open(found["connhost.service"]) as f:
            self.assertNotRegex(f.read(), r"@\w+@")
        with open(found["connhost.1"]) as f:
            page = f.read().replace("\\-", "-").replace("\\e", "\\")
        for opt in set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text())):
            self.assertIn(opt, page)
        for cmd in re.findall(r"^  ([a-z]+)  ", help_text(), re.M):
            self.assertIn(".TP\n\\fB%s\\fR" % cmd, page)


if __name__ == "__main__":
    lib.main()
