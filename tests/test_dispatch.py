#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every call into a plugin op goes through the dispatch layer in
host/instance.c (instance_open / _check / _list / _grants / _grant /
_revoke / _provision / _deprovision / _action): it resets the error, checks the op and
the descriptor size, fills the message, redacts and counts. A direct
`d->op(...)` anywhere else in host/ skips all of that; this test finds one.

Testing whether an op is set (`d->grants && ...`, `d->check ? a : b`) is
fine: only calls, and op pointers taken to be called later, are flagged."""
import os
import re
import sys
import unittest

SRCDIR = os.environ.get("top_srcdir", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HOST = os.path.join(SRCDIR, "host")
OWNER = "instance.c"
OPS = ("open", "close", "check", "list", "grants", "grant", "revoke",
       "provision_account", "deprovision_account", "action")

OP = r"(?:->|\.)\s*(?P<op>%s)\b" % "|".join(OPS)
# d->op(  |  (d->op)(  |  (c ? d->grant : d->revoke)(  |  f = d->op;
CALL = re.compile(OP + r"\s*(?:\(|\)\s*\()")
TERNARY_CALL = re.compile(OP + r"\s*:\s*[\w>.-]+\s*\)\s*\(")
# Taking an op's address is only told apart from reading a counter of the
# same name by the descriptor it comes from (`d`, `desc`: ch_plugin).
TAKEN = re.compile(r"=\s*(?:[\w>.()-]*->)?(?:d|desc)" + OP + r"\s*;")


def strip_c(text):
    """Blank out comments and string/char literals, keeping line breaks."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  blank, text, flags=re.S)


def direct_calls(path):
    with open(path, encoding="utf-8") as f:
        code = strip_c(f.read())
    found = []
    for rx in (CALL, TERNARY_CALL, TAKEN):
        for m in rx.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            found.append("%s:%d: direct call of plugin op '%s'" %
                         (os.path.relpath(path, SRCDIR), line, m.group("op")))
    return found


class DispatchOnly(unittest.TestCase):
    def test_no_op_call_outside_the_dispatch_layer(self):
        sources = sorted(f for f in os.listdir(HOST) if f.endswith((".c", ".h")))
        self.assertIn(OWNER, sources)
        found = []
        for name in sources:
            if name != OWNER:
                found += direct_calls(os.path.join(HOST, name))
        self.assertEqual(found, [], "call the instance_* dispatch functions "
                         "(host/instance.h) instead:\n" + "\n".join(found))

    def test_the_patterns_catch_each_shape(self):
        # The shapes a call site takes, so the grep cannot silently rot.
        cases = {
            "rc = d->list(in->pinst, t, NULL, tok, s, &err);": 1,
            "rc = (granting ? d->grant : d->revoke)(in->pinst, &c, &r, &e);": 2,
            "rc = in->plugin->desc->provision_account (p, &a, &r, &e);": 1,
            "fn = d->action;": 1,
            "fn = in->plugin->desc->grants;": 1,
            "b = prev->grants;": 0,
            "if (rc == CH_OK && d->check)\n  x();": 0,
            "if (!(granting ? d->grant : d->revoke) ||\n !(rt->caps)) {": 0,
            'printf("%s", d->grants ? ",grants" : "");': 0,
            "/* d->list(in, ...) in a comment */ in->grants++;": 0,
        }
        for code, want in cases.items():
            code = strip_c(code)
            got = sum(len(rx.findall(code)) for rx in (CALL, TERNARY_CALL, TAKEN))
            self.assertEqual(got, want, code)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
