# SPDX-License-Identifier: MIT
"""A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, for one test
(class). Debian's postgresql package provides initdb and pg_ctl under
/usr/lib/postgresql/<major>/bin; tools/install-deps.sh installs it.

initdb refuses to run as root, so as root the cluster is created and run as
the `postgres` system user the package creates; its directory is made theirs.
The cluster trusts local connections from loopback only (it is a test
fixture, nothing else can reach it), and is stopped (immediate mode) by
stop(), also from a test's cleanup.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def _bindir():
    env = os.environ.get("CONNHOST_PG_BINDIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        return None
    return os.path.dirname(found[-1])


def available():
    """Why PostgreSQL cannot be started here, or None when it can."""
    if _bindir() is None:
        return "no initdb under /usr/lib/postgresql (install-deps.sh installs postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no postgres user to run the cluster as"
    return None


def for_tests():
    """A started Cluster for a test (class). The suite's one rule: without
    PostgreSQL the test fails (tools/install-deps.sh installs it), unless
    CONNHOST_TEST_NO_PG=1 asks to skip it."""
    import unittest
    if os.environ.get("CONNHOST_TEST_NO_PG") == "1":
        raise unittest.SkipTest("CONNHOST_TEST_NO_PG=1")
    why = available()
    if why:  # a failure, not a skip: CI must run these tests
        raise RuntimeError("PostgreSQL is needed (or set CONNHOST_TEST_NO_PG=1 to "
                           "skip): " + why)
    return Cluster()


class ClusterPerClass:
    """Mixed in before a unittest.TestCase: one started cluster per test
    class (cls.cluster, from for_tests()), stopped after the class."""
    cluster = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = for_tests()

    @classmethod
    def tearDownClass(cls):
        if cls.cluster:
            cls.cluster.stop()
            cls.cluster = None
        super().tearDownClass()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl start; url() gives a postgresql:// URL for a database."""

    def __init__(self, start_timeout=60):
        why = available()
        if why:
            raise RuntimeError(why)
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix="connhost-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.sock)
        self.user = "connhost"
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(["initdb", "-D", self.data, "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--no-sync", "--locale=C"])
        self.port = _free_port()
        opts = ("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200" % (self.port, self.sock))
        self._opts = opts
        self._start_timeout = start_timeout
        self.start()

    def start(self):
        """Start the server (again, after pause(): same port and data)."""
        self._run(["pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                   "-o", self._opts, "-w", "-t", str(self._start_timeout), "start"])
        self.running = True

    def pause(self):
        """Stop the server (fast: clients are disconnected) and keep its data,
        for tests of what clients do while the database is away."""
        self._run(["pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])

    def _run(self, argv):
        cmd = self._as + [os.path.join(self.bindir, argv[0])] + argv[1:]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            log = os.path.join(self.dir, "server.log")
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError("%s failed (%d): %s%s\n%s" % (argv[0], p.returncode,
                                                             p.stdout, p.stderr, tail))
        return p.stdout

    def psql(self, sql, db="postgres"):
        """Run SQL through psql; returns its unaligned, tuples-only output."""
        cmd = [os.path.join(self.bindir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
               "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", db, "-c", sql]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql failed: " + p.stderr)
        return p.stdout

    def create_db(self, name):
        self.psql('CREATE DATABASE "%s"' % name)
        return self.url(name)

    def url(self, db="postgres"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (self.user, self.port, db)

    def stop(self):
        if getattr(self, "running", False):
            try:
                self._run(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
            finally:
                self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
