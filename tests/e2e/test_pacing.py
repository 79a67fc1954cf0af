#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Pacing end to end: jira_cloud against the fake with a burst limit
completes with exactly the truth while drawing few 429s, and a sync off a
terminal logs its progress (docs/pacing.md)."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import test_jira_cloud as jc  # noqa: E402


class PacingTest(lib.TempDirTest):
    # The jira_cloud tests' helpers, not their tests.
    start_fake = jc.JiraTest.start_fake
    secret_ref = jc.JiraTest.secret_ref
    inst_conf = jc.JiraTest.inst_conf
    config = jc.JiraTest.config
    secrets = jc.JiraTest.secrets
    assert_no_secret = jc.JiraTest.assert_no_secret
    sync = jc.JiraTest.sync
    assert_matches = jc.JiraTest.assert_matches
    maxDiff = 4000

    def test_burst_limit_paced(self):
        # 48 role-actor calls and 24 group-member calls at 5/s: an unpaced
        # client with 8 workers draws a 429 on a large share of them. A
        # second per answer keeps the sync (108 requests over 8 workers)
        # well past the 10 s of a progress line on any machine: at 5/s
        # alone the role actors took about 10 s, and the line came or not.
        fake = self.start_fake("demo", ["--burst-limit", "5", "--latency-ms", "1000"])
        r, out = self.sync(self.config(fake), fake, args=["--workers", "8"], timeout=300)
        self.assertEqual(r.rc, 0, r)
        self.assert_matches(jc.Graph(out), jc.Expected(fake.truth))
        codes = [q.get("status") for q in fake.requests()]
        n429 = codes.count(429)
        self.assertGreater(len(codes), 80)
        self.assertLess(n429, 0.10 * len(codes),
                        "%d of %d requests drew a 429" % (n429, len(codes)))
        # Off a terminal the progress is an info line every 10 s; the
        # sync takes longer than that (13.5 s at least).
        self.assertIn("progress: ", r.err)
        self.assertRegex(r.err, r"\d+ resources, \d+ grants, \d+ requests, "
                                r"\d+ requests/s, \d+ 429s, \d+ pages")
        # PageBean totals give a percentage.
        self.assertRegex(r.err, r"% of \d+ counted, ETA \d+ s")
        # The grants still to read are in the line, and in its ETA: a line
        # with every counted record done but grants left never says 0 s.
        lines = re.findall(r"progress: .*", r.err)
        self.assertTrue(any(re.search(r"grants of \d+ of \d+ resources", x)
                            for x in lines), lines)
        for x in lines:
            m = re.search(r"100% of \d+ counted, ETA (\d+) s, grants of (\d+) of (\d+) "
                          r"resources", x)
            if m and int(m.group(2)) < int(m.group(3)):
                self.assertGreater(int(m.group(1)), 0, x)

    def test_connections_reused(self):
        # The workers share one connection cache; curl's default size of 5
        # closed an idle connection after nearly every request once more
        # than 5 workers ran. No more connections than workers are needed.
        fake = self.start_fake("demo")
        r, out = self.sync(self.config(fake), fake, args=["--workers", "8"])
        self.assertEqual(r.rc, 0, r)
        conns = {q["conn"] for q in fake.requests()}
        self.assertGreater(len(fake.requests()), 80)
        self.assertLessEqual(len(conns), 8, "%d connections for %d requests"
                             % (len(conns), len(fake.requests())))


if __name__ == "__main__":
    lib.main()
