#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Docs are code: every ```yaml and ```sh block of README.md and docs/**/*.md,
and every example config in conf/, runs against the fake Atlassian Cloud on
127.0.0.1, through the built connhost and plugins, so the documentation
cannot drift from the code.

YAML blocks
  A block with `tenants:` is a config; a block whose only key is `options:`
  is one instance's options, for the plugin the page is about
  (docs/plugins/NAME.md). Each is run through `connhost check`, which must
  pass for every instance: the block's keys, option names, types and
  `${env:NAME}` / `${file:PATH}` references are used as written. What the
  test changes is where it goes: every endpoint option is pointed at the
  fake (those the block leaves out too, so no request leaves loopback), and
  credentials and ids are the fake's (a literal is replaced, a
  `${env:NAME}` gets NAME set, a `${file:PATH}` gets that file written: a
  relative PATH where it says, an absolute one in the scratch directory). A
  flatfile `path` that does not exist beside the page gets the sample export.

sh blocks
  Run with `sh -eu` (so a placeholder or an unset variable fails) in a
  scratch directory that holds the source tree's conf/, tests/ and tools/,
  the built plugins/ and `acme.yaml` (tenant acme: instances `jira` and
  `org` on the fake, provisioning on, tickets through `jira` to OPS); `connhost` on PATH is the built
  binary; GROUP_ID, ACCOUNT_ID and USER_ID name a Jira group, a Jira
  account and an organization account of the fake. Every command must
  exit 0.

  pkg-config finds connhost-plugin with the source tree's include/ (as an
  installed connhost would give its own), and a block marked
      <!-- doc-test: file NAME -->
  (any language) is written to NAME there first, e.g. the hello.c that a
  later sh block compiles.

Skipping
  A block that is a fragment, a schema with placeholders or a build step
  is marked on the line just above its fence, visibly in the source:
      <!-- doc-test: skip (the reason) -->
  Use it sparingly: a skipped block is one the test cannot keep true.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

import lib

try:
    import yaml
except ImportError:  # tools/install-deps.sh installs python3-yaml
    yaml = None

FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*doc-test:\s*skip\s*\((.+)\)\s*-->\s*$")
FILE = re.compile(r"^\s*<!--\s*doc-test:\s*file\s+([A-Za-z0-9_.-]+)\s*-->\s*$")
MARKER = re.compile(SKIP.pattern + "|" + FILE.pattern)
RUN_LANGS = ("yaml", "sh")


def doc_files():
    files = [os.path.join(lib.SRCDIR, "README.md")]
    files += sorted(glob.glob(os.path.join(lib.SRCDIR, "docs", "**", "*.md"),
                              recursive=True))
    return files


def blocks(path):
    """(line, lang, text, skip reason or None, file name or None) for each
    fenced block."""
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = len(m.group(1)), m.group(2)
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        body = "\n".join(l[indent:] for l in lines[i + 1:j]) + "\n"
        prev = lines[i - 1] if i else ""
        skip, name = SKIP.match(prev), FILE.match(prev)
        out.append((i + 1, lang, body, skip.group(1) if skip else None,
                    name.group(1) if name else None))
        i = j + 1
    return out


def rel(path):
    return os.path.relpath(path, lib.SRCDIR)


class Target:
    """Where each plugin's options point in the test: the fake's endpoints
    and credentials, or the sample export."""

    def __init__(self, fake):
        c, base = fake.creds, fake.base
        self.values = {
            "jira_cloud": {"url": base, "gateway_url": base,
                           "email": c["jira_email"],
                           "api_token": c["jira_api_token"]},
            "atlassian_org": {"api_base": base + "/admin", "org_id": c["org_id"],
                              "api_token": c["org_api_key"],
                              "scim_base_url": "%s/scim/directory/%s" % (
                                  base, c["scim_directory_id"]),
                              "scim_token": c["scim_token"]},
        }
        # Endpoints with a real default are set even when a block leaves them
        # out (SCIM has none: without scim_base_url there are no SCIM calls).
        self.endpoints = {"jira_cloud": ("url", "gateway_url"),
                          "atlassian_org": ("api_base",)}


ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
FILE_REF = re.compile(r"^\$\{file:([^}]+)\}$")


class DocBlocks(lib.TempDirTest):
    maxDiff = None

    def start_fake(self):
        if yaml is None:
            self.fail("PyYAML is missing: run tools/install-deps.sh (python3-yaml)")
        os.makedirs(self.path("fake"))
        self.fake = lib.Fake(self.path("fake"))
        self.addCleanup(self.fake.stop)
        self.target = Target(self.fake)

    # ---- YAML ------------------------------------------------------------
    def retarget(self, doc, workdir, env, base):
        """Point the config `doc` (parsed) at the fake, in place."""
        tenants = doc.get("tenants")
        if not isinstance(tenants, dict):
            return "no 'tenants' map"
        for tname, insts in tenants.items():
            for iname, inst in (insts or {}).items():
                if iname in ("schedule", "tickets"):
                    continue  # the tenant's own settings, not instances
                inst = inst if isinstance(inst, dict) else {}
                insts[iname] = inst
                plugin = inst.get("plugin", iname)
                opts = inst.get("options")
                if opts is None:
                    opts = inst["options"] = {}
                if not isinstance(opts, dict):
                    return "%s/%s: options is not a map" % (tname, iname)
                values = self.target.values.get(plugin, {})
                for key in self.target.endpoints.get(plugin, ()):
                    opts.setdefault(key, values[key])
                for key, val in list(opts.items()):
                    if plugin == "flatfile" and key == "path" and isinstance(val, str):
                        beside = os.path.join(base, val)
                        if os.path.exists(beside):
                            opts[key] = os.path.abspath(beside)
                            continue
                        dest = os.path.join(workdir, "export.json")
                        shutil.copy(os.path.join(lib.SRCDIR, "tests", "fixtures",
                                                 "flatfile", "legacy-hr.json"), dest)
                        opts[key] = dest
                        continue
                    if key not in values:
                        continue
                    text = str(val)
                    m = ENV_REF.match(text)
                    f = FILE_REF.match(text)
                    if "${" in text and not (m or f):
                        continue  # for connhost to judge, as written
                    if m:
                        env[m.group(1)] = values[key]
                    elif f:
                        p = f.group(1)
                        if os.path.isabs(p):
                            p = os.path.join(workdir, "secret-%s-%s" % (iname, key))
                            opts[key] = "${file:%s}" % p
                        else:
                            p = os.path.join(workdir, p)
                        os.makedirs(os.path.dirname(p), exist_ok=True)
                        with open(p, "w") as fh:
                            fh.write(values[key])
                    else:
                        opts[key] = values[key]
        serve = doc.get("serve")
        token = serve.get("auth_token") if isinstance(serve, dict) else None
        m = ENV_REF.match(str(token)) if token else None
        if m:  # the listener's bearer token: any secret long enough
            env[m.group(1)] = "doc-test-token-0123456789abcdef"
        doc["plugin_dir"] = lib.PLUGINS
        doc.pop("output", None)
        return None

    def run_yaml(self, text, page_plugin, n, base):
        workdir = self.path("yaml-%d" % n)
        os.makedirs(workdir)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            return "not valid YAML: %s" % e
        if isinstance(doc, dict) and set(doc) == {"options"}:
            if not page_plugin:
                return "an options fragment outside docs/plugins/NAME.md"
            doc = {"tenants": {"doc": {page_plugin: {"plugin": page_plugin,
                                                     "options": doc["options"]}}}}
        if not isinstance(doc, dict):
            return "not a config (a map with 'tenants', or 'options')"
        env = {}
        problem = self.retarget(doc, workdir, env, base)
        if problem:
            return problem
        cfg = os.path.join(workdir, "connhost.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        r = lib.run(["-c", cfg, "check"], env=env, timeout=120)
        if r.rc != 0:
            return "connhost check: %r" % r
        return None

    # ---- sh --------------------------------------------------------------
    def scratch(self):
        d = self.path("sh")
        if os.path.isdir(d):
            return d
        os.makedirs(os.path.join(d, "bin"))
        # conf/ is copied: a sync of a config there writes its store beside
        # it, and the source tree must stay as it is.
        shutil.copytree(os.path.join(lib.SRCDIR, "conf"), os.path.join(d, "conf"))
        for name in ("tests", "tools"):
            os.symlink(os.path.join(lib.SRCDIR, name), os.path.join(d, name))
        os.symlink(os.path.dirname(lib.PLUGINS.rstrip("/")), os.path.join(d, "plugins"))
        os.symlink(lib.CONNHOST, os.path.join(d, "bin", "connhost"))
        fake, t = self.fake, self.target.values
        secrets = {"ACME_JIRA_TOKEN": t["jira_cloud"]["api_token"],
                   "ACME_ORG_KEY": t["atlassian_org"]["api_token"],
                   "ACME_SCIM_KEY": t["atlassian_org"]["scim_token"]}
        jira = dict(t["jira_cloud"], api_token="${env:ACME_JIRA_TOKEN}")
        org = dict(t["atlassian_org"], api_token="${env:ACME_ORG_KEY}",
                   scim_token="${env:ACME_SCIM_KEY}")
        insts = {"jira": {"plugin": "jira_cloud", "provisioning": True, "options": jira},
                 "org": {"plugin": "atlassian_org", "provisioning": True, "options": org}}
        lib.write_config(os.path.join(d, "acme.yaml"), {"acme": insts},
                         plugin_dir=lib.PLUGINS)
        with open(os.path.join(d, "acme.yaml"), "a") as f:  # the tenant's last key
            f.write("    tickets:\n      instance: jira\n      project: OPS\n")
        truth = fake.truth
        members = truth["jira"].get("group_members", {})
        group = truth["jira"]["groups"][0]["groupId"]
        account = next(u["accountId"] for u in truth["jira"]["users"]
                       if u["active"] and u["accountId"] not in members.get(group, []))
        user = next(a["account_id"] for a in truth["org"]["accounts"]
                    if a["account_status"] == "active" and a["account_type"] == "atlassian")
        pc = os.path.join(d, "pkgconfig")
        os.makedirs(pc)
        with open(os.path.join(pc, "connhost-plugin.pc"), "w") as f:
            f.write("includedir=%s\nplugindir=%s\n\nName: connhost-plugin\n"
                    "Description: connhost plugin ABI (source tree)\nVersion: 0\n"
                    "Cflags: -I${includedir}\n" % (os.path.join(lib.SRCDIR, "include"),
                                                   lib.PLUGINS))
        self.sh_env = dict(secrets, GROUP_ID=group, ACCOUNT_ID=account, USER_ID=user,
                           PKG_CONFIG_PATH=pc,
                           PATH=os.path.join(d, "bin") + os.pathsep + os.environ["PATH"])
        return d

    def run_sh(self, text):
        d = self.scratch()
        env = dict(os.environ)
        env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
        env.update(self.sh_env)
        p = subprocess.run(["sh", "-eu", "-c", text], cwd=d, env=env,
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            return "exit %d\n--- stdout\n%s\n--- stderr\n%s" % (
                p.returncode, p.stdout[-2000:], p.stderr[-3000:])
        return None

    # ---- the test ----------------------------------------------------------
    def test_every_block_runs(self):
        self.start_fake()
        ran = skipped = n = 0
        for path in doc_files():
            page = os.path.splitext(os.path.basename(path))[0]
            page_plugin = page if os.path.basename(os.path.dirname(path)) == "plugins" else None
            for line, lang, text, skip, name in blocks(path):
                if name:
                    with open(os.path.join(self.scratch(), name), "w") as f:
                        f.write(text)
                    continue
                if lang not in RUN_LANGS:
                    continue
                where = "%s:%d" % (rel(path), line)
                if skip:
                    skipped += 1
                    continue
                n += 1
                with self.subTest(block=where):
                    problem = (self.run_yaml(text, page_plugin, n, os.path.dirname(path))
                               if lang == "yaml" else self.run_sh(text))
                    if problem:
                        self.fail("%s (```%s block): %s\n--- the block\n%s" % (
                            where, lang, problem, text))
                ran += 1
        examples = sorted(glob.glob(os.path.join(lib.SRCDIR, "conf", "*.yaml")) +
                          glob.glob(os.path.join(lib.SRCDIR, "conf", "*.yaml.example")))
        for path in examples:
            n += 1
            with self.subTest(config=rel(path)):
                with open(path, encoding="utf-8") as f:
                    problem = self.run_yaml(f.read(), None, n, os.path.dirname(path))
                if problem:
                    self.fail("%s: %s" % (rel(path), problem))
            ran += 1
        print("doc blocks and example configs: %d run, %d marked skip" % (ran, skipped))
        self.assertGreater(ran, skipped, "most blocks must run")

    def test_skip_markers_give_a_reason_and_sit_on_a_block(self):
        for path in doc_files():
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            for i, l in enumerate(lines):
                if "doc-test:" not in l:
                    continue
                where = "%s:%d" % (rel(path), i + 1)
                self.assertRegex(l, MARKER, where + ": write <!-- doc-test: skip (reason) -->"
                                 " or <!-- doc-test: file NAME -->")
                m = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
                self.assertTrue(m and (m.group(2) in RUN_LANGS or FILE.match(l)),
                                where + ": the marker must be just above a ```yaml or ```sh"
                                " fence (a file marker: above any fence)")


if __name__ == "__main__":
    lib.main()
