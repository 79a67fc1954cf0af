# SPDX-License-Identifier: MIT
"""Shared helpers for the end-to-end tests: run the built connhost binary,
start the fake Atlassian Cloud on loopback, write configs into a temp dir.

Every test gets its paths from the environment the automake harness sets
(CONNHOST, CONNHOST_PLUGINS, CONNHOST_TEST_PLUGINS, CONNHOST_FAKE,
top_srcdir, top_builddir); defaults fit an in-tree build.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("top_srcdir", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILDDIR = os.environ.get("top_builddir", SRCDIR)
CONNHOST = os.environ.get("CONNHOST", os.path.join(BUILDDIR, "connhost"))
PLUGINS = os.environ.get("CONNHOST_PLUGINS", os.path.join(BUILDDIR, "plugins", ".libs"))
TEST_PLUGINS = os.environ.get(
    "CONNHOST_TEST_PLUGINS", os.path.join(BUILDDIR, "tests", "plugins", ".libs"))
FAKE = os.environ.get("CONNHOST_FAKE", os.path.join(SRCDIR, "tests", "fake", "atlassian-fake"))

# Commands must finish well inside the harness timeout.
DEFAULT_TIMEOUT = 300


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def __repr__(self):
        return "rc=%d\n--- stdout\n%s\n--- stderr\n%s" % (self.rc, self.out[-3000:], self.err[-3000:])


def run(args, env=None, timeout=DEFAULT_TIMEOUT, cwd=None, stdin=None):
    """Run connhost with `args`; returns Result(rc, stdout, stderr)."""
    full_env = dict(os.environ)
    full_env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    if env:
        full_env.update(env)
    p = subprocess.run([CONNHOST] + list(args), capture_output=True, text=True,
                       env=full_env, timeout=timeout, cwd=cwd, input=stdin)
    return Result(p.returncode, p.stdout, p.stderr)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Fake:
    """The fake Atlassian Cloud on 127.0.0.1, a free port, for one test."""

    def __init__(self, workdir, profile="tiny", extra=(), seed=1, start_timeout=120):
        self.workdir = workdir
        self.port_file = os.path.join(workdir, "fake.port")
        self.truth_file = os.path.join(workdir, "fake.truth.json")
        self.log_file = os.path.join(workdir, "fake.requests.jsonl")
        self.stderr_file = os.path.join(workdir, "fake.stderr")
        args = [sys.executable, FAKE, "--host", "127.0.0.1", "--port", "0",
                "--port-file", self.port_file, "--profile", profile,
                "--seed", str(seed), "--truth", self.truth_file,
                "--request-log", self.log_file] + list(extra)
        self._err = open(self.stderr_file, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.time() + start_timeout
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                self._err.close()
                raise RuntimeError("fake exited early: " + open(self.stderr_file).read())
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("fake did not start in %ss" % start_timeout)
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        self.truth = load_json(self.truth_file)
        self.creds = self.truth.get("credentials", {})
        self.base = "http://127.0.0.1:%d" % self.port

    def requests(self):
        """Requests the fake has seen so far (one dict per request)."""
        if not os.path.exists(self.log_file):
            return []
        return load_jsonl(self.log_file)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._err.closed:
            self._err.close()


def forward(url, method, headers, body):
    """Send a request a test proxy received on to `url`, with the client's
    Authorization, Accept and Content-Type; (status, content type, body),
    error answers included."""
    import urllib.error
    import urllib.request
    fwd = urllib.request.Request(url, data=body or None, method=method)
    for k in ("Authorization", "Accept", "Content-Type"):
        if headers.get(k):
            fwd.add_header(k, headers[k])
    try:
        with urllib.request.urlopen(fwd, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def key_encode(component):
    """A key component as the host prints it: '%', '/', '#' and control
    bytes percent-encoded (docs/graph-format.md)."""
    out = []
    for ch in component:
        if ch in "%/#" or ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append("".join("%%%02X" % b for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def yaml_quote(s):
    """A double-quoted YAML scalar for any string."""
    return json.dumps(s, ensure_ascii=False)


def write_config(path, tenants, output=None, plugin_dir=None, extra=""):
    """Write a connhost YAML config. `tenants` maps tenant -> instance ->
    dict(plugin=..., enabled=..., provisioning=..., options={...}). Option
    values are written verbatim when they start with '${', else quoted;
    lists become YAML sequences."""
    lines = []
    if plugin_dir:
        lines.append("plugin_dir: %s" % yaml_quote(plugin_dir))
    if output:
        lines.append("output: %s" % yaml_quote(output))
    if extra:
        lines.append(extra.rstrip("\n"))
    lines.append("tenants:")
    for tname, insts in tenants.items():
        lines.append("  %s:" % tname)
        for iname, inst in insts.items():
            lines.append("    %s:" % iname)
            for key in ("plugin", "enabled", "provisioning"):
                if key in inst:
                    v = inst[key]
                    if isinstance(v, bool):
                        v = "true" if v else "false"
                    lines.append("      %s: %s" % (key, v))
            opts = inst.get("options", {})
            if opts:
                lines.append("      options:")
                for k, v in opts.items():
                    if isinstance(v, bool):
                        lines.append("        %s: %s" % (k, "true" if v else "false"))
                    elif isinstance(v, int):
                        lines.append("        %s: %d" % (k, v))
                    elif isinstance(v, (list, tuple)):
                        lines.append("        %s: [%s]" % (k, ", ".join(yaml_quote(x) for x in v)))
                    elif isinstance(v, str) and v.startswith("${"):
                        lines.append("        %s: %s" % (k, v))
                    else:
                        lines.append("        %s: %s" % (k, yaml_quote(v)))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


class TempDirTest(unittest.TestCase):
    """A TestCase with self.tmp, a fresh directory removed afterwards."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="connhost-e2e-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


def build_third_party(test, include_dir, out_dir):
    """Compile tests/fixtures/oot_plugin/hello.c as a third party would,
    against the plugin header in `include_dir` alone, into
    `out_dir`/hello.so. Skips `test` when there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        test.skipTest("no C compiler")
    os.makedirs(out_dir)
    src = os.path.join(SRCDIR, "tests", "fixtures", "oot_plugin", "hello.c")
    p = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                        "-I", include_dir, "-o", os.path.join(out_dir, "hello.so"), src,
                        "-Wl,-z,defs"], capture_output=True, text=True)
    test.assertEqual(p.returncode, 0, p.stderr)


def main():
    """Run the calling module's tests; exit 77 (skip) if the binary is
    missing, as automake expects."""
    if not os.path.exists(CONNHOST):
        print("skip: %s not built" % CONNHOST)
        sys.exit(77)
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
