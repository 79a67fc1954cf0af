#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The plugin SDK and test kit are really installed and really enough: `make install`
into a scratch DESTDIR, then plugins/flatfile/flatfile.c (the example
plugin) is compiled out of tree with -Wall -Wextra -Werror using only
what pkg-config says about connhost-sdk (installed headers and
libconnhost-sdk; no build-tree header), and the resulting flatfile.so
syncs the same graph as the in-tree one; and the test kit example of
docs/plugin-abi.md §16 (tests/fixtures/testkit: an HTTP plugin and its
test against canned files) builds the same way and passes."""
import os
import shutil
import subprocess

import lib

BUILDDIR = os.environ.get("top_builddir", os.path.dirname(lib.CONNHOST))
FIXTURE = os.path.join(lib.SRCDIR, "tests", "fixtures", "flatfile", "legacy-hr.json")


def cc():
    return shutil.which("cc") or shutil.which("gcc")


class InstalledSdk(lib.TempDirTest):
    def install(self):
        """`make install` into a scratch DESTDIR; returns the pkg-config
        environment that finds the installed .pc files."""
        if not (shutil.which("cc") or shutil.which("gcc")) or not shutil.which("pkg-config"):
            self.skipTest("no C compiler or pkg-config")
        dest = self.path("dest")
        make = os.environ.get("MAKE", "make")
        # a make of its own, not a job of the `make check` running this
        menv = {k: v for k, v in os.environ.items()
                if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        p = subprocess.run([make, "-C", BUILDDIR, "install", "DESTDIR=" + dest],
                           capture_output=True, text=True, timeout=600, env=menv)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        pcs = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs
               if f == "connhost-sdk.pc"]
        self.assertEqual(len(pcs), 1, pcs)
        return dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
                    PKG_CONFIG_SYSROOT_DIR=dest)

    def flags(self, env, *pkgs):
        f = subprocess.run(["pkg-config", "--cflags", "--libs"] + list(pkgs),
                           capture_output=True, text=True, env=env)
        self.assertEqual(f.returncode, 0, f.stderr)
        return f.stdout.split()

    def test_testkit_example_builds_and_passes(self):
        env = self.install()
        flags = self.flags(env, "connhost-sdk", "connhost-testkit")
        self.assertIn("-lconnhost-testkit", flags)
        src = os.path.join(lib.SRCDIR, "tests", "fixtures", "testkit")
        exe = self.path("ping_test")
        # A program linked to a sanitizer build's libraries needs the same
        # sanitizer runtime (CI's ASan/UBSan step): nothing else is taken.
        san = [f for f in os.environ.get("CONNHOST_BUILD_CFLAGS", "").split()
               if f.startswith("-fsanitize") or f == "-fno-omit-frame-pointer"]
        p = subprocess.run([cc(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", exe,
                            os.path.join(src, "ping_test.c"), os.path.join(src, "ping.c")]
                           + san + flags, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        libdir = [a[2:] for a in flags if a.startswith("-L")][0]
        r = subprocess.run([exe, os.path.join(src, "canned")], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        self.assertEqual((r.returncode, r.stdout), (0, "ok\n"), r.stderr)

    def test_flatfile_builds_out_of_tree_against_the_installed_sdk(self):
        env = self.install()
        flags = self.flags(env, "connhost-sdk")
        self.assertIn("-lconnhost-sdk", flags)
        src = self.path("src")
        os.makedirs(src)
        for name in ("flatfile.c", "ff_data.c", "ff_data.h"):
            shutil.copy(os.path.join(lib.SRCDIR, "plugins", "flatfile", name), src)
        plugins = self.path("plugins")
        os.makedirs(plugins)
        p = subprocess.run([cc(), "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared",
                            "-fPIC", "-o", os.path.join(plugins, "flatfile.so"),
                            os.path.join(src, "flatfile.c"),
                            os.path.join(src, "ff_data.c")] + flags
                           + ["-Wl,-z,defs"], capture_output=True, text=True, cwd=src)
        self.assertEqual(p.returncode, 0, p.stderr)
        libdir = [a[2:] for a in flags if a.startswith("-L")][0]
        graphs = []
        for pdir in (plugins, lib.PLUGINS):
            out = self.path("g-%d.json" % len(graphs))
            cfg = lib.write_config(self.path("c.yaml"), {"t": {"hr": {
                "plugin": "flatfile", "options": {"path": FIXTURE}}}},
                plugin_dir=pdir)
            r = lib.run(["-c", cfg, "sync", "-o", out],
                        env={"LD_LIBRARY_PATH": libdir})
            self.assertEqual(r.rc, 0, r)
            g = lib.load_json(out)
            graphs.append((g["resources"], g["grants"]))
        self.assertTrue(graphs[0][0])
        self.assertEqual(graphs[0], graphs[1])


if __name__ == "__main__":
    lib.main()
