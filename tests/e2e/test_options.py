#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Declared options through the built binary (docs/plugin-abi.md §4,
docs/config.md): the host enforces a config map's bounds and required
values with FILE:LINE:COL before open(), fills the plugin's config struct,
and applies an instance's `http:` block with no plugin code; the old
per-plugin `ca_file` / `max_requests_per_second` options still work, with
a deprecation warning."""
import os
import re
import time

import lib


def line_of(path, needle):
    """1-based line and column of the first `needle` in `path`."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i, line.index(needle) + 1
    raise AssertionError("%s not in %s" % (needle, path))


class Options(lib.TempDirTest):
    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def jira_yaml(self, url, email, token_ref, options="", http=""):
        return ("plugin_dir: %s\ntenants:\n  acme:\n    jira:\n"
                "      plugin: jira_cloud\n%s      options:\n"
                "        url: %s\n        email: %s\n"
                "        api_token: %s\n        gateway_url: %s\n%s"
                % (lib.yaml_quote(lib.PLUGINS), http, lib.yaml_quote(url),
                   lib.yaml_quote(email), token_ref, lib.yaml_quote(url), options))

    def token_ref(self, value="tok-123456"):
        path = self.write("token", value)
        return "${file:%s}" % path

    def check(self, cfg):
        return lib.run(["-c", cfg, "check"], timeout=60)

    # ---- bounds and required values ------------------------------------

    def test_a_bound_is_enforced_with_file_line_col(self):
        for plugin, opts in (
                ("jira_cloud", {"url": "https://x.atlassian.net", "email": "a@b.c",
                                "api_token": self.token_ref(), "page_size": 0}),
                ("atlassian_org", {"org_id": "o1", "api_token": self.token_ref(),
                                   "page_size": 0})):
            cfg = lib.write_config(self.path(plugin + ".yaml"),
                                   {"t": {"i": {"plugin": plugin, "options": opts}}},
                                   plugin_dir=lib.PLUGINS)
            r = self.check(cfg)
            self.assertEqual(r.rc, 2, r)
            line, col = line_of(cfg, "page_size")
            self.assertIn("%s:%d:%d: option 'page_size' must be at least 1, not 0"
                          % (cfg, line, col + len("page_size: ")), r.err)

    def test_a_required_value_must_not_be_empty(self):
        cfg = lib.write_config(self.path("e.yaml"), {"t": {"i": {
            "plugin": "jira_cloud", "options": {
                "url": "https://x.atlassian.net", "email": "",
                "api_token": self.token_ref()}}}}, plugin_dir=lib.PLUGINS)
        r = self.check(cfg)
        self.assertEqual(r.rc, 2, r)
        self.assertRegex(r.err, re.escape(cfg) + r":\d+:\d+: option 'email' must "
                                                 r"not be empty")

    def test_plugins_lists_the_bounds_free_and_deprecated_keys(self):
        r = lib.run(["plugins", "--plugin-dir", lib.PLUGINS])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"max_requests_per_second\s+number: deprecated: set "
                                r"max_requests_per_second in the instance's http: block")

    # ---- the instance's http: block --------------------------------------

    def test_http_block_keys_are_checked(self):
        http = "      http:\n        timeout_seconds: 0\n"
        cfg = self.write("h.yaml", self.jira_yaml("https://x.atlassian.net", "a@b.c",
                                                  self.token_ref(), http=http))
        r = self.check(cfg)
        self.assertEqual(r.rc, 2, r)
        line, col = line_of(cfg, "timeout_seconds")
        self.assertIn("%s:%d:%d: option 'timeout_seconds' must be 1ms..86400, not 0"
                      % (cfg, line, col + len("timeout_seconds: ")), r.err)
        http = "      http:\n        max_request_per_second: 2\n"
        cfg = self.write("h.yaml", self.jira_yaml("https://x.atlassian.net", "a@b.c",
                                                  self.token_ref(), http=http))
        r = self.check(cfg)
        self.assertEqual(r.rc, 2, r)
        line, col = line_of(cfg, "max_request_per_second")
        self.assertIn("%s:%d:%d: instance 'acme/jira': unknown option "
                      "'max_request_per_second' for the 'http' block; did you mean "
                      "'max_requests_per_second'?" % (cfg, line, col), r.err)

    def start_fake(self):
        fake = lib.Fake(self.path(), profile="tiny")
        self.addCleanup(fake.stop)
        return fake

    def sync(self, cfg):
        out = self.path("g.json")
        t0 = time.monotonic()
        r = lib.run(["-c", cfg, "sync", "-o", out], timeout=300)
        return r, time.monotonic() - t0

    def test_http_block_rate_cap_applies_with_no_plugin_code(self):
        fake = self.start_fake()
        c = fake.creds
        fast_cfg = self.write("fast.yaml", self.jira_yaml(
            fake.base, c["jira_email"], self.token_ref(c["jira_api_token"])))
        r, fast = self.sync(fast_cfg)
        self.assertEqual(r.rc, 0, r)
        n = len(fake.requests())
        http = "      http:\n        max_requests_per_second: 10\n"
        slow_cfg = self.write("slow.yaml", self.jira_yaml(
            fake.base, c["jira_email"], self.token_ref(c["jira_api_token"]), http=http))
        r, slow = self.sync(slow_cfg)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("deprecated", r.err)
        # n requests at 10 per second take at least (n - 1) / 10 s
        self.assertGreaterEqual(slow, (n - 1) / 10 * 0.9, (fast, slow, n))
        self.assertLess(fast, slow)

    def test_old_option_name_still_works_with_a_deprecation_warning(self):
        fake = self.start_fake()
        c = fake.creds
        cfg = self.write("old.yaml", self.jira_yaml(
            fake.base, c["jira_email"], self.token_ref(c["jira_api_token"]),
            options="        max_requests_per_second: 1000\n"))
        r, _ = self.sync(cfg)
        self.assertEqual(r.rc, 0, r)
        line, col = line_of(cfg, "max_requests_per_second")
        self.assertIn("%s:%d:%d: option 'max_requests_per_second' is deprecated: move "
                      "it to the instance's 'http:' block"
                      % (cfg, line, col + len("max_requests_per_second: ")), r.err)
        both = self.write("both.yaml", self.jira_yaml(
            fake.base, c["jira_email"], self.token_ref(c["jira_api_token"]),
            options="        max_requests_per_second: 5\n",
            http="      http:\n        max_requests_per_second: 5\n"))
        r = self.check(both)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("'max_requests_per_second' is set both in options and in the "
                      "http block", r.err)


if __name__ == "__main__":
    lib.main()
