#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ABI 1 only grows (docs/plugin-abi.md), through the built binary:
a plugin built against the first ABI 1 header (kept in tests/plugins/abi-1.0)
loads and syncs on this host, and a plugin laid out as a later header would
be (longer descriptor, table elements and records) loads, syncs the same
data and uses an ABI 1.1 host service only after CH_HOST_HAS.
The other direction, a new plugin on a host table that stops at the 1.0
fields, is in tests/check_loader.c (it needs a host table made to measure)."""
import os
import json
import re
import shutil

import lib

OLD_HEADER_DIR = os.path.join(lib.SRCDIR, "tests", "plugins", "abi-1.0")


def strip_instance(records, inst):
    """Records of one instance with the instance name taken out."""
    out = []
    for r in records:
        text = json.dumps(r, sort_keys=True)
        for form in ("t/%s/", "t%%2F%s%%2F", '"%s"'):
            text = text.replace(form % inst, form % "X")
        out.append(text)
    return sorted(out)


class AbiLayouts(lib.TempDirTest):
    def setUp(self):
        super().setUp()
        self.plugins = self.path("plugins")
        os.makedirs(self.plugins)
        for name in ("t_old", "t_future"):
            shutil.copy(os.path.join(lib.TEST_PLUGINS, name + ".so"), self.plugins)

    def config(self, **opts):
        o = {"users": 4, "prefix": "Person"}
        o.update(opts)
        return lib.write_config(self.path("c.yaml"), {"t": {
            "old": {"plugin": "t_old", "provisioning": True, "options": o},
            "new": {"plugin": "t_future", "provisioning": True, "options": o}}},
            plugin_dir=self.plugins)

    def test_both_layouts_describe_the_same_tables(self):
        r = lib.run(["plugins", "--plugin-dir", self.plugins])
        self.assertEqual(r.rc, 0, r)
        blocks = re.split(r"(?m)^(?=t_)", r.out)
        old = [b for b in blocks if b.startswith("t_old ")][0]
        new = [b for b in blocks if b.startswith("t_future ")][0]
        # Every element of every table arrived, from both strides.
        for line in ("project        traits: workspace; parent: group; caps: sync",
                     "#owner -> user,group", "#viewer -> user,group",
                     "ping(who,note): answer pong", "echo(text): say it back",
                     "token                      string, secret: unused secret",
                     "ops: open,close,list,grants,action"):
            self.assertIn(line, old)
        self.assertEqual(old.replace("t_old", "X"), new.replace("t_future", "X"))

    def test_old_header_plugin_syncs_and_a_later_layout_syncs_the_same(self):
        out = self.path("g.json")
        r = lib.run(["-c", self.config(), "sync", "-o", out])
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(out)
        old = [x for x in g["resources"] if x["instance"] == "old"]
        self.assertEqual(sorted(x["key"] for x in old),
                         ["t/old/group/admins", "t/old/group/staff",
                          "t/old/project/admins-wiki", "t/old/project/staff-wiki",
                          "t/old/user/u0", "t/old/user/u1", "t/old/user/u2",
                          "t/old/user/u3"])
        self.assertIn("Person 3", [x["display_name"] for x in old])
        grants = [x for x in g["grants"] if x["entitlement"].startswith("t/old/")]
        self.assertEqual(len(grants), 4 + 1 + 2)
        self.assertIn({"entitlement": "t/old/project/staff-wiki#viewer",
                       "principal": "t/old/group/admins", "direct": True}, grants)
        for kind in ("resources", "grants"):
            self.assertEqual(
                strip_instance([x for x in g[kind] if "t/old/" in json.dumps(x)], "old"),
                strip_instance([x for x in g[kind] if "t/new/" in json.dumps(x)], "new"),
                kind)

    def test_later_plugin_sees_the_new_host_service(self):
        r = lib.run(["-c", self.config(), "sync", "-o", self.path("g.json")])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.err, r"\[t_future:t/new\] host table \d+ bytes: "
                                r"log_enabled yes \(debug off\), sink \d+, result \d+ bytes")
        r = lib.run(["-c", self.config(), "--log-level", "debug", "sync",
                     "-o", self.path("g.json")])
        self.assertEqual(r.rc, 0, r)
        self.assertIn("log_enabled yes (debug on)", r.err)

    def test_manual_work_needs_the_later_op(self):
        """ABI 1.3: t_future's deprovision answers "manual" (no tickets:
        here, so the command fails saying so); t_old has no such op."""
        cfg = self.config()
        r = lib.run(["-c", cfg, "deprovision", "--principal", "t/new/user/u1"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn("manual: deprovision t/new/user/u1: remove u1 by hand", r.out)
        self.assertIn("the change needs manual work", r.err)
        r = lib.run(["-c", cfg, "deprovision", "--principal", "t/old/user/u1"])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("plugin 't_old' cannot deprovision accounts", r.err)

    def test_action_tables_work_in_both_layouts(self):
        cfg = self.config()
        for inst in ("old", "new"):
            r = lib.run(["-c", cfg, "action", "--tenant", "t", "--instance", inst,
                         "ping", "--arg", "who=ops"])
            self.assertEqual(r.rc, 0, r)
            self.assertIn("done: action ping in t/%s: pong ops" % inst, r.out)
            # `required` of the second field set is read through the stride.
            r = lib.run(["-c", cfg, "action", "--tenant", "t", "--instance", inst,
                         "ping", "--arg", "note=x"])
            self.assertEqual(r.rc, 2, r)
            self.assertIn("action 'ping' needs --arg who=VALUE", r.err)
            r = lib.run(["-c", cfg, "action", "--tenant", "t", "--instance", inst,
                         "echo", "--arg", "text=hi"])
            self.assertEqual(r.rc, 0, r)
            self.assertIn("echo hi", r.out)
            # ch_result.output (ABI 1.2): the later plugin's answer follows
            # the outcome line; the 1.0 one has no such field to call.
            lines = r.out.splitlines()
            self.assertEqual(lines[1:], ["hi"] if inst == "new" else [], r)

    def test_secret_option_of_old_table_is_redacted(self):
        # The option flags of the 1.0 table reach the host: a secret value
        # stays out of the output even when an error quotes it.
        cfg = self.config(token="s3cr3t-token-value", users="not-a-number")
        r = lib.run(["-c", cfg, "sync", "-o", self.path("g.json")])
        self.assertEqual(r.rc, 2, r)
        self.assertIn("users", r.err)
        self.assertNotIn("s3cr3t-token-value", r.out + r.err)

    def test_third_party_binary_built_against_the_1_0_header(self):
        # As a third party built it before ABI 1.1: the header alone.
        pdir = self.path("third-party")
        lib.build_third_party(self, OLD_HEADER_DIR, pdir)
        cfg = lib.write_config(self.path("h.yaml"), {"t": {"h": {"plugin": "hello"}}},
                               plugin_dir=pdir)
        r = lib.run(["-c", cfg, "sync", "-o", self.path("h.json")])
        self.assertEqual(r.rc, 0, r)
        g = lib.load_json(self.path("h.json"))
        self.assertEqual([x["principal"] for x in g["grants"]], ["t/h/user/alice"])


if __name__ == "__main__":
    lib.main()
