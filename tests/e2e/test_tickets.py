# SPDX-License-Identifier: MIT
"""End-to-end tests of the jira_cloud ticket actions (ticket_schema,
create_ticket, get_ticket, update_ticket): the built connhost binary and
the real jira_cloud.so against the fake Atlassian Cloud.

What connhost prints is compared with what the fake itself answers (read
here over HTTP with the same credentials), and the fake's request log
shows which requests were sent: a refused ticket sends no write, a dry
run sends nothing at all.
"""
import base64
import json
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from test_jira_cloud import INST, TENANT, JiraHelpers, settled_count  # noqa: E402

# The broken issue type answers 500: two attempts keep the retry short.
FAST_RETRY = "http:\n  max_attempts: 2"
BROKEN = "Legacy Form"


def answer(out):
    """The JSON document an action prints after its outcome line."""
    first, _, rest = out.partition("\n")
    return first, json.loads(rest)


class TicketTest(JiraHelpers, lib.TempDirTest):
    # ---- helpers ---------------------------------------------------------
    def setUp(self):
        super().setUp()
        self.fake = self.start_fake()

    def cfg(self, provisioning=True, **opts):
        opts.setdefault("project_keys", ["OPS", "ALL"])
        opts.setdefault("ticket_project_key", "OPS")
        return self.config(self.fake, provisioning=provisioning, extra=FAST_RETRY, **opts)

    def action(self, name, *args, cfg=None, rc=0, dry=False):
        argv = ["-c", cfg or self.cfg(), "action", "--tenant", TENANT, "--instance", INST, name]
        for a in args:
            argv += ["--arg", a]
        if dry:
            argv.append("--dry-run")
        r = self.cli(self.fake, argv)
        self.assertEqual(r.rc, rc, r)
        return r

    def fake_get(self, path):
        """GET `path` from the fake directly, as the operator's account."""
        c = self.fake.creds
        req = urllib.request.Request(self.fake.base + path)
        token = base64.b64encode(("%s:%s" % (c["jira_email"], c["jira_api_token"])).encode())
        req.add_header("Authorization", "Basic " + token.decode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def fake_meta(self, project):
        """{issue type name: {field id: (name, required)}} from the fake."""
        types = self.fake_get("/rest/api/3/issue/createmeta/%s/issuetypes" % project)["issueTypes"]
        out = {}
        for t in types:
            if t["name"] == BROKEN:
                continue
            fields = self.fake_get("/rest/api/3/issue/createmeta/%s/issuetypes/%s"
                                   % (project, t["id"]))["fields"]
            out[t["name"]] = {f["fieldId"]: (f["name"], f["required"]) for f in fields}
        return out

    def writes_since(self, mark):
        """The non-GET requests the fake logged after the first `mark`."""
        settled_count(self.fake)
        return [(r["method"], r["path"]) for r in self.fake.requests()[mark:]
                if r["method"] != "GET"]

    def create(self, *args):
        r = self.action("create_ticket", *args)
        self.assertTrue(r.out.startswith("done:"), r)
        key = r.out.split("[", 1)[1].split("]", 1)[0]
        self.assertRegex(key, r"^OPS-\d+$")
        return key

    def issue(self, key):
        return self.fake_get("/rest/api/3/issue/" + key)["fields"]

    # ---- schema ----------------------------------------------------------
    def test_schema_lists_every_type_and_skips_the_broken_one(self):
        r = self.action("ticket_schema")
        line, doc = answer(r.out)
        self.assertIn("2 project(s)", line)
        self.assertIn("2 skipped", line)
        self.assertIn("skipping issue type %s" % BROKEN, r.err)
        self.assertEqual([p["key"] for p in doc["projects"]], ["OPS", "ALL"])
        for p in doc["projects"]:
            want = self.fake_meta(p["key"])
            got = {t["name"]: {f["id"]: (f["name"], f["required"]) for f in t["fields"]}
                   for t in p["issue_types"]}
            self.assertEqual(got, want)
            self.assertEqual([s["name"] for s in p["skipped"]], [BROKEN])
            self.assertIn("HTTP 500", p["skipped"][0]["error"])
            access = next(t for t in p["issue_types"] if t["name"] == "Access Request")
            fields = {f["name"]: f for f in access["fields"]}
            self.assertTrue(fields["Access Level"]["required"])
            self.assertEqual(fields["Access Level"]["allowed"], ["Read", "Write", "Admin"])
            self.assertIn(":select", fields["Access Level"]["custom"])
            self.assertEqual(fields["Components"]["allowed"], ["Access", "Billing", "Infrastructure"])
        # one project, one type
        r = self.action("ticket_schema", "project_key=ALL", "issue_type=bug")
        _, doc = answer(r.out)
        self.assertEqual([(p["key"], [t["name"] for t in p["issue_types"]]) for p in doc["projects"]],
                         [("ALL", ["Bug"])])
        r = self.action("ticket_schema", "project_key=TM", rc=1)
        self.assertIn("ticket projects", r.err)
        r = self.action("ticket_schema", "project_key=OPS", "issue_type=Incident", rc=1)
        self.assertIn("ticket_schema: no issue type 'Incident' in OPS", r.err)

    def test_schema_pages(self):
        """createmeta is paged (startAt/maxResults): small pages give the
        same schema as one page each."""
        _, whole = answer(self.action("ticket_schema", "project_key=OPS").out)
        mark = settled_count(self.fake)
        _, paged = answer(self.action("ticket_schema", "project_key=OPS",
                                      cfg=self.cfg(page_size=2, name="paged.yaml")).out)
        self.assertEqual(paged, whole)
        starts = {r["query"] for r in self.fake.requests()[mark:]
                  if r["path"] == "/rest/api/3/issue/createmeta/OPS/issuetypes"}
        self.assertEqual(starts, {"startAt=%d&maxResults=2" % i for i in (0, 2, 4, 6)})

    # ---- create ----------------------------------------------------------
    def test_create_with_custom_field_and_component_by_name(self):
        mark = settled_count(self.fake)
        key = self.create("summary=Give Zoë write access", "issue_type=access request",
                          "components=Access", "labels=access,review",
                          "field=Access Level=Write", "field=Justification=Quarterly review.\nLine two.",
                          "field=customfield_10052=3.5", "field=Priority=High")
        f = self.issue(key)
        self.assertEqual(f["issuetype"]["name"], "Access Request")
        self.assertEqual([c["name"] for c in f["components"]], ["Access"])
        self.assertEqual(f["customfield_10050"]["value"], "Write")
        self.assertEqual(f["customfield_10052"], 3.5)
        self.assertEqual(f["priority"]["name"], "High")
        self.assertEqual(f["labels"], ["access", "review"])
        self.assertEqual([p["content"][0]["text"] for p in f["customfield_10053"]["content"]],
                         ["Quarterly review.", "Line two."])
        self.assertEqual(self.writes_since(mark), [("POST", "/rest/api/3/issue")])

    def test_bad_fields_are_refused_before_the_create(self):
        mark = settled_count(self.fake)
        cases = [
            (["issue_type=Access Request", "components=Access", "field=Access Level=Read"],
             "'Justification' (customfield_10053) is required"),
            (["issue_type=Access Request", "field=Access Level=Read", "field=Justification=x"],
             "'Components' (components) is required"),
            (["field=Colour=red"], "no field 'Colour'"),
            (["field=Story Points=lots"], "'Story Points' takes a number"),
            (["components=Payroll"], "'Components' has no value 'Payroll' (allowed: Access, Billing"),
            (["field=Access Level=Owner"], "'Access Level' has no value 'Owner'"),
            (["labels=two words"], "label 'two words'"),
            (["issue_type=Incident"], "no issue type 'Incident' (it has: Task"),
            (["project_key=TM"], "project_keys"),
        ]
        for extra, message in cases:
            r = self.action("create_ticket", "summary=Access for Zoë", *extra, rc=1)
            self.assertIn(message, r.err, extra)
        self.assertEqual(self.writes_since(mark), [])

    # ---- get -------------------------------------------------------------
    def test_get_after_create(self):
        key = self.create("summary=Remove Bob's admin access")
        r = self.action("get_ticket", "ticket=" + key)
        line, got = answer(r.out)
        f = self.issue(key)
        self.assertEqual(got["key"], key)
        self.assertEqual(got["status"], f["status"]["name"])
        self.assertEqual(got["status_category"], f["status"]["statusCategory"]["key"])
        self.assertEqual((got["status"], got["status_category"]), ("To Do", "new"))
        self.assertIsNone(got["resolution"])
        self.assertIsNone(got["assignee"])
        self.assertEqual(got["updated"], f["updated"])
        self.assertIn("To Do (new), unassigned, unresolved", line)
        # assign it (a field by name), and the assignee reads back
        me = self.fake_get("/rest/api/3/myself")
        self.action("update_ticket", "ticket=" + key, "field=Assignee=" + me["accountId"])
        _, got = answer(self.action("get_ticket", "ticket=" + key).out)
        self.assertEqual(got["assignee"], {"account_id": me["accountId"],
                                           "display_name": me["displayName"]})
        r = self.action("get_ticket", "ticket=OPS-999", rc=1)
        self.assertIn("HTTP 404", r.err)
        r = self.action("get_ticket", "ticket=TM-1", rc=1)
        self.assertIn("not one of the ticket projects", r.err)

    # ---- update ----------------------------------------------------------
    def test_transition_by_status_name(self):
        key = self.create("summary=Offboard Carol")
        r = self.action("update_ticket", "ticket=" + key, "status=in progress")
        self.assertIn("status in progress", r.out)
        _, got = answer(self.action("get_ticket", "ticket=" + key).out)
        self.assertEqual((got["status"], got["status_category"]), ("In Progress", "indeterminate"))
        # an unknown status lists the ones the issue can move to; nothing sent
        mark = settled_count(self.fake)
        r = self.action("update_ticket", "ticket=" + key, "status=Finished",
                        "comment=should not be posted", rc=1)
        self.assertIn("cannot move to status 'Finished'", r.err)
        self.assertIn("To Do, Done", r.err)
        self.assertEqual(self.writes_since(mark), [])
        self.assertEqual(self.issue(key)["comment"]["total"], 0)
        self.action("update_ticket", "ticket=" + key, "status=Done")
        f = self.issue(key)
        self.assertEqual((f["status"]["name"], f["resolution"]["name"]), ("Done", "Done"))
        r = self.action("update_ticket", "ticket=" + key, "status=done")
        self.assertTrue(r.out.startswith("already:"), r)

    def test_comment_labels_and_fields(self):
        key = self.create("summary=Review access", "labels=one,two")
        mark = settled_count(self.fake)
        r = self.action("update_ticket", "ticket=" + key, "comment=Checked by the review.",
                        "add_labels=three", "remove_labels=one", "field=Story Points=8",
                        "field=Ticket Reference=CHG-1")
        self.assertIn("updated %s: fields, comment" % key, r.out)
        self.assertEqual(self.writes_since(mark), [("PUT", "/rest/api/3/issue/" + key),
                                                   ("POST", "/rest/api/3/issue/%s/comment" % key)])
        f = self.issue(key)
        self.assertEqual(f["labels"], ["two", "three"])
        self.assertEqual((f["customfield_10052"], f["customfield_10051"]), (8, "CHG-1"))
        comments = self.fake_get("/rest/api/3/issue/%s/comment" % key)["comments"]
        self.assertEqual([c["body"]["content"][0]["content"][0]["text"] for c in comments],
                         ["Checked by the review."])
        r = self.action("update_ticket", "ticket=" + key, "field=Components=Nope", rc=1)
        self.assertIn("'Components' has no value 'Nope'", r.err)
        r = self.action("update_ticket", "ticket=" + key, rc=1)
        self.assertIn("nothing to do", r.err)

    # ---- dry runs and the provisioning gate ----------------------------------
    def test_dry_runs_send_nothing(self):
        key = self.create("summary=Dry runs")
        cfg = self.cfg(provisioning=False)
        before = settled_count(self.fake)
        runs = [("ticket_schema", []),
                ("create_ticket", ["summary=x", "issue_type=Access Request", "components=Access",
                                   "field=Access Level=Read"]),
                ("get_ticket", ["ticket=" + key]),
                ("update_ticket", ["ticket=" + key, "comment=hello", "status=Done"])]
        for name, args in runs:
            r = self.action(name, *args, cfg=cfg, dry=True)
            self.assertIn("dry run: action %s" % name, r.out)
            self.assertIn("DRY RUN: GET ", r.out)
        r = self.action("create_ticket", "summary=x", "labels=a,b", "components=Access",
                        cfg=cfg, dry=True)
        body = json.loads(r.out.split("DRY RUN: POST %s/rest/api/3/issue\n" % self.fake.base)[1]
                          .split("\n", 1)[0])
        self.assertEqual(body["fields"]["labels"], ["a", "b"])
        self.assertEqual(body["fields"]["components"], [{"name": "Access"}])
        r = self.action("update_ticket", "ticket=" + key, "comment=hello", cfg=cfg, dry=True)
        self.assertIn("DRY RUN: POST %s/rest/api/3/issue/%s/comment" % (self.fake.base, key), r.out)
        self.assertEqual(settled_count(self.fake), before)
        # for real, the same instance refuses without provisioning: true
        for name, args in runs:
            r = self.action(name, *args, cfg=cfg, rc=2)
            self.assertIn("provisioning: true", r.err)
        self.assertEqual(settled_count(self.fake), before)

    def test_ticket_projects_option(self):
        cfg = self.cfg(ticket_projects=["ALL"], ticket_project_key="ALL", project_keys=[])
        r = self.action("ticket_schema", cfg=cfg)
        self.assertEqual([p["key"] for p in answer(r.out)[1]["projects"]], ["ALL"])
        r = self.action("create_ticket", "summary=x", "project_key=OPS", cfg=cfg, rc=1)
        self.assertIn("is not in project_keys", r.err)
        bad = self.cfg(ticket_projects=["ALL"], ticket_project_key="OPS", name="bad.yaml")
        r = self.action("ticket_schema", cfg=bad, rc=1)
        self.assertIn("ticket_project_key OPS is not in ticket_projects", r.err)


if __name__ == "__main__":
    lib.main()
