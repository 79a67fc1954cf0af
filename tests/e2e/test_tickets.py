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
import sqlite3
import sys
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import pgcluster  # noqa: E402
from test_jira_cloud import INST, TENANT, JiraHelpers, ekey, rkey, settled_count  # noqa: E402

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
    def test_a_lost_create_is_not_sent_again(self):
        """The server reads the create and closes without answering (it may
        have made the issue): connhost must not POST it again, not even
        through libcurl's silent resend on a reused connection."""
        self.fake = self.start_fake("tiny", ["--fault", "drop,count=1,method=POST:/rest/api/3/issue$"],
                                    name="dropping")
        r = self.action("create_ticket", "summary=hello", rc=1)
        self.assertNotIn("done:", r.out, r)
        posts = [q for q in self.fake.requests()
                 if q["method"] == "POST" and q["path"] == "/rest/api/3/issue"]
        self.assertEqual(len(posts), 1, posts)

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


def comment_texts(doc):
    """The plain text of each comment of a PageOfComments."""
    return ["".join(t.get("text", "") for p in c["body"]["content"] for t in p.get("content", []))
            for c in doc["comments"]]


class ManualWorkTest(JiraHelpers, lib.TempDirTest):
    """Tickets for manual work: a change opens a ticket, the store keeps it,
    the syncs that follow confirm it on the ticket (once per outcome)."""

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake()
        self.conf = self.cfg()

    def cfg(self, tickets="    tickets:\n      instance: jira\n", provisioning=True,
            name="connhost.yaml"):
        path = self.config(self.fake, provisioning=provisioning, name=name,
                           project_keys=["OPS", "ALL"], ticket_project_key="OPS")
        with open(path, "a", encoding="utf-8") as f:
            f.write(tickets)
        return path

    def run_ok(self, *args, rc=0, cfg=None, env=None):
        r = lib.run(["-c", cfg or self.conf] + list(args), env=env)
        self.assert_no_secret(self.fake, r.out, r.err)
        self.assertEqual(r.rc, rc, r)
        return r

    def rest(self, method, path, body=None):
        """A request to the fake as the operator's account: the person who
        does the manual work in Jira itself."""
        c = self.fake.creds
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.fake.base + path, data=data, method=method)
        token = base64.b64encode(("%s:%s" % (c["jira_email"], c["jira_api_token"])).encode())
        req.add_header("Authorization", "Basic " + token.decode())
        if data:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode("utf-8")
            return json.loads(text) if text else None

    def person(self, n=0):
        """An active human Jira user that is no project lead (removable)."""
        leads = {p["lead"] for p in self.fake.truth["jira"]["projects"]}
        users = [u for u in self.fake.truth["jira"]["users"][1:]
                 if u["active"] and u["accountType"] == "atlassian"
                 and u["accountId"] not in leads]
        return users[n]["accountId"]

    def key_of(self, out):
        line = next(l for l in out.splitlines() if l.startswith("ticket: "))
        key = line.split("[", 1)[1].split("]", 1)[0]
        self.assertRegex(key, r"^OPS-\d+$")
        return key

    def comments(self, key):
        return comment_texts(self.rest("GET", "/rest/api/3/issue/%s/comment" % key))

    def done(self, key):
        ids = {t["to"]["name"]: t["id"] for t in
               self.rest("GET", "/rest/api/3/issue/%s/transitions" % key)["transitions"]}
        self.rest("POST", "/rest/api/3/issue/%s/transitions" % key, {"transition": {"id": ids["Done"]}})

    def tickets(self, *args):
        return json.loads(self.run_ok("tickets", "--format", "json", *args).out)["tickets"]

    TICKET_ROW = ("SELECT ticket_instance, change_kind, change_instance, principal,"
                  " requested_by, confirmation FROM tickets WHERE ticket_key = '%s'")

    def ticket_row(self, key):
        """A ticket's row as the store holds it (the SQLite file here)."""
        con = sqlite3.connect(self.path("connhost.db"))
        row = con.execute(self.TICKET_ROW % key).fetchone()
        con.close()
        return row

    def sync_run(self):
        r, _ = self.sync(self.conf, self.fake)
        self.assertEqual(r.rc, 0, r)
        return int(r.out.split("run ", 1)[1].split(" ", 1)[0])

    # ---- the seed: deprovisioning a Jira account ------------------------------
    def test_deprovision_opens_a_ticket_that_the_sync_confirms(self):
        aid = self.person()
        who = rkey("user", aid)
        self.sync_run()
        r = self.run_ok("deprovision", "--principal", who, env={"USER": "ada"})
        self.assertIn("manual: deprovision %s: Jira account deprovisioning must be done "
                      "directly in Jira" % who, r.out)
        key = self.key_of(r.out)
        fields = self.rest("GET", "/rest/api/3/issue/" + key)["fields"]
        self.assertEqual(fields["summary"], "connhost: deprovision " + who)
        desc = "\n".join(t["text"] for p in fields["description"]["content"] for t in p["content"])
        for line in ("Change: deprovision", "Tenant: acme", "Instance: jira",
                     "Principal: " + who, "Requested by: ada"):
            self.assertIn(line, desc)
        self.assertRegex(desc, r"Requested at: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        # what the store holds, as the table and through the command
        self.assertEqual(self.ticket_row(key),
                         ("jira", "deprovision", "jira", who, "ada", "unchecked"))
        self.assertEqual([(t["ticket"], t["open"], t["confirmation"]) for t in self.tickets()],
                         [(key, True, "unchecked")])
        # done in Jira: the ticket, then the account
        self.done(key)
        self.rest("DELETE", "/rest/api/3/user?accountId=" + urllib.parse.quote(aid))
        run = self.sync_run()
        self.assertEqual(self.comments(key),
                         ["connhost: the change is confirmed by sync run %d: deprovision %s"
                          % (run, who)])
        [t] = self.tickets()
        self.assertEqual((t["status"], t["status_category"], t["open"], t["confirmation"],
                          t["checked_run"]), ("Done", "done", False, "confirmed", run))
        self.assertRegex(self.run_ok("tickets").out,
                         r"%s +Done \(done\) +confirmed \(run %d\) +ada " % (key, run))
        # confirmed once: later syncs leave the ticket alone
        mark = settled_count(self.fake)
        self.sync_run()
        self.assertEqual(len(self.comments(key)), 1)
        self.assertNotIn("/rest/api/3/issue/" + key,
                         {r["path"] for r in self.fake.requests()[mark:]})

    def test_asking_twice_opens_one_ticket(self):
        """A retried script asks for the same deprovisioning again: the open
        ticket is named, not a second one opened; once it is done, a new
        request opens a new one."""
        who = rkey("user", self.person())
        self.sync_run()
        key = self.key_of(self.run_ok("deprovision", "--principal", who).out)
        mark = settled_count(self.fake)
        for dry in ([], ["--dry-run"]):
            r = self.run_ok("deprovision", "--principal", who, *dry)
            self.assertIn("\nalready: ticket for deprovision %s [%s] is open" % (who, key), r.out)
        self.assertFalse([q for q in self.fake.requests()[mark:]
                          if q["method"] == "POST" and q["path"] == "/rest/api/3/issue"])
        self.assertEqual([t["ticket"] for t in self.tickets()], [key])
        self.done(key)
        self.run_ok("tickets", "refresh")
        again = self.key_of(self.run_ok("deprovision", "--principal", who).out)
        self.assertNotEqual(again, key)

    def test_serve_runs_confirm_too(self):
        """serve's runs go through the same sync_run: its first scheduled
        run confirms the ticket."""
        from test_serve import Serve
        aid = self.person()
        who = rkey("user", aid)
        with open(self.conf, "a", encoding="utf-8") as f:
            f.write("schedule:\n  interval: 1h\n  jitter: 0%\n")
        key = self.key_of(self.run_ok("deprovision", "--principal", who).out)
        self.done(key)
        self.rest("DELETE", "/rest/api/3/user?accountId=" + urllib.parse.quote(aid))
        s = Serve(self.tmp, self.conf)
        try:
            self.assertIsNotNone(s.port, s.log())
            m = s.wait_log(r"ticket %s: confirmed by sync run (\d+)" % key)
            self.assertEqual(self.comments(key),
                             ["connhost: the change is confirmed by sync run %s: deprovision %s"
                              % (m.group(1), who)])
        finally:
            self.assertEqual(s.stop(), 0, s.log()[-3000:])
        self.assertEqual(self.tickets()[0]["confirmation"], "confirmed")

    # ---- --ticket on a grant, and "still missing" -----------------------------
    def test_grant_ticket_still_missing_then_confirmed(self):
        aid = self.person(1)
        members = self.fake.truth["jira"]["group_members"]
        group = next(g for g in self.fake.truth["jira"]["groups"]
                     if aid not in members[g["groupId"]])
        ent, who = ekey("group", group["groupId"], "member"), rkey("user", aid)
        mark = settled_count(self.fake)
        r = self.run_ok("grant", "--entitlement", ent, "--principal", who, "--ticket",
                        "--requester", "grace")
        key = self.key_of(r.out)
        self.assertIn("ticket: grant %s to %s [%s]" % (ent, who, key), r.out)
        # a ticket may ask for what the plugin cannot do (a project's lead)
        project = self.fake.truth["jira"]["projects"][0]["id"]
        r2 = self.run_ok("grant", "--entitlement", ekey("project", project, "lead"),
                         "--principal", who, rc=2)
        self.assertIn("cannot grant 'project' entitlements", r2.err)
        r2 = self.run_ok("grant", "--entitlement", ekey("project", project, "lead"),
                         "--principal", who, "--ticket", "--dry-run")
        self.assertIn("dry run: ticket for grant %s" % ekey("project", project, "lead"), r2.out)
        # the grant itself was not sent: only the ticket was written
        self.assertEqual([(q["method"], q["path"]) for q in self.fake.requests()[mark:]
                          if q["method"] != "GET"], [("POST", "/rest/api/3/issue")])
        # not done yet: the sync reads the status back and says nothing
        self.sync_run()
        self.assertEqual(self.comments(key), [])
        [t] = self.tickets()
        self.assertEqual((t["status_category"], t["confirmation"], t["requested_by"]),
                         ("new", "unchecked", "grace"))
        # done, but nobody made the change: "still missing", once
        self.done(key)
        run = self.sync_run()
        self.sync_run()
        self.assertEqual(self.comments(key),
                         ["connhost: the change is still missing after sync run %d, though "
                          "this ticket is done: grant %s to %s" % (run, ent, who)])
        self.assertEqual(self.tickets()[0]["confirmation"], "missing")
        # made by hand: confirmed, once more and only once
        self.rest("POST", "/rest/api/3/group/user?groupId=" + group["groupId"], {"accountId": aid})
        run2 = self.sync_run()
        self.assertEqual(self.comments(key)[1:],
                         ["connhost: the change is confirmed by sync run %d: grant %s to %s"
                          % (run2, ent, who)])
        self.assertEqual((self.tickets()[0]["confirmation"], self.tickets()[0]["checked_run"]),
                         ("confirmed", run2))

    # ---- dry runs --------------------------------------------------------------
    def test_dry_runs_send_nothing_and_record_nothing(self):
        aid = self.person()
        group = self.fake.truth["jira"]["groups"][0]
        mark = settled_count(self.fake)
        r = self.run_ok("deprovision", "--principal", rkey("user", aid), "--dry-run",
                        "--requester", "ada")
        self.assertIn("dry run: ticket for deprovision %s" % rkey("user", aid), r.out)
        body = json.loads(r.out.split("DRY RUN: POST %s/rest/api/3/issue\n" % self.fake.base)[1]
                          .split("\n", 1)[0])
        self.assertEqual(body["fields"]["summary"], "connhost: deprovision " + rkey("user", aid))
        self.assertEqual(body["fields"]["project"], {"key": "OPS"})
        self.assertIn("Requested by: ada", json.dumps(body))
        r = self.run_ok("grant", "--entitlement", ekey("group", group["groupId"], "member"),
                        "--principal", rkey("user", aid), "--ticket", "--dry-run")
        self.assertIn("DRY RUN: POST %s/rest/api/3/issue" % self.fake.base, r.out)
        # a dry run is allowed without provisioning: true, and still sends nothing
        off = self.cfg(provisioning=False, name="off.yaml")
        self.run_ok("provision", "--tenant", TENANT, "--instance", INST, "--email",
                    "new@example.com", "--ticket", "--dry-run", cfg=off)
        self.assertEqual(settled_count(self.fake), mark)
        self.assertFalse(os.path.exists(self.path("connhost.db")))
        self.assertEqual(self.tickets(), [])

    # ---- the list and its refresh ---------------------------------------------
    def test_tickets_open_and_refresh(self):
        k1 = self.key_of(self.run_ok("deprovision", "--principal", rkey("user", self.person())).out)
        k2 = self.key_of(self.run_ok("deprovision", "--principal",
                                     rkey("user", self.person(1))).out)
        self.done(k1)
        # the list shows the store's last refresh: none yet
        self.assertEqual([t["ticket"] for t in self.tickets("--open")], [k1, k2])
        r = self.run_ok("tickets", "refresh")
        self.assertEqual(r.out.splitlines(), ["%s: Done (done)" % k1, "%s: To Do (new)" % k2])
        self.assertEqual([t["ticket"] for t in self.tickets("--open")], [k2])
        self.assertEqual([t["ticket"] for t in self.tickets()], [k1, k2])
        self.assertEqual(self.run_ok("tickets", "--open").out.count("OPS-"), 1)
        # refresh reads only open tickets
        mark = settled_count(self.fake)
        self.run_ok("tickets", "refresh")
        self.assertEqual({q["path"] for q in self.fake.requests()[mark:]},
                         {"/rest/api/3/issue/" + k2})
        # a tenant the config does not have is a typo, not an empty list
        r = self.run_ok("tickets", "--tenant", "nope", rc=2)
        self.assertIn("no such tenant", r.err)

    def test_store_table_is_the_documented_one(self):
        """docs/store.md shows the SQL the store runs (a ticket creates it)."""
        self.run_ok("deprovision", "--principal", rkey("user", self.person()))
        con = sqlite3.connect(self.path("connhost.db"))
        got = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE tbl_name ="
                                         " 'tickets' AND sql IS NOT NULL ORDER BY type DESC")]
        con.close()
        with open(os.path.join(lib.SRCDIR, "docs", "store.md"), encoding="utf-8") as f:
            doc = f.read().split("### The tickets table", 1)[1]
        block = doc.split("```sql\n", 1)[1].split("```", 1)[0]
        norm = lambda s: " ".join(s.replace("(", " ( ").replace(")", " ) ").split())  # noqa: E731
        self.assertEqual([norm(x) for x in block.strip().rstrip(";").split(";\n")],
                         [norm(x) for x in got])

    # ---- what is refused -------------------------------------------------------
    def test_refusals(self):
        who = rkey("user", self.person())
        bare = self.cfg(tickets="", name="bare.yaml")
        mark = settled_count(self.fake)
        r = self.run_ok("deprovision", "--principal", who, cfg=bare, rc=1)
        self.assertIn("manual: deprovision", r.out)
        self.assertIn("the change needs manual work; add 'tickets: {instance: NAME}' to "
                      "tenant 'acme'", r.err)
        r = self.run_ok("grant", "--entitlement", ekey("group", "g", "member"), "--principal",
                        who, "--ticket", cfg=bare, rc=2)
        self.assertIn("--ticket needs a ticketing instance", r.err)
        off = self.cfg(provisioning=False, name="off.yaml")
        r = self.run_ok("deprovision", "--principal", who, cfg=off, rc=2)
        self.assertIn("provisioning: true", r.err)
        wrong = self.cfg(tickets="    tickets:\n      instance: nope\n", name="wrong.yaml")
        r = self.run_ok("tickets", cfg=wrong, rc=2)
        self.assertRegex(r.err, r"wrong\.yaml:\d+:\d+: tenant 'acme': tickets.instance 'nope' "
                                r"is not an instance of the tenant")
        r = self.run_ok("tickets", "--format", "jsonl", rc=2)
        self.assertIn("--format must be text or json for 'tickets'", r.err)
        self.assertEqual(settled_count(self.fake), mark)


class PgManualWorkTest(pgcluster.ClusterPerClass, ManualWorkTest):
    """The same flow with the store in PostgreSQL: the tickets table is the
    store's, on either backend."""

    def setUp(self):
        self.__class__.ndb = getattr(self.__class__, "ndb", 0) + 1
        self.dbname = "tk%d" % self.ndb
        self.url = self.cluster.create_db(self.dbname)
        super().setUp()

    def cfg(self, *args, **kw):
        path = super().cfg(*args, **kw)
        with open(path, "a", encoding="utf-8") as f:
            f.write("store: %s\n" % lib.yaml_quote(self.url))
        return path

    def ticket_row(self, key):
        row = self.cluster.psql(self.TICKET_ROW % key, self.dbname).strip()
        return tuple(row.split("|")) if row else None

    def tearDown(self):
        # the store was the database: no SQLite file beside the config
        self.assertFalse(os.path.exists(self.path("connhost.db")))
        super().tearDown()


# Only the deprovision flow runs against PostgreSQL; the rest is backend-neutral.
for _name in [n for n in dir(ManualWorkTest) if n.startswith("test_")]:
    if _name != "test_deprovision_opens_a_ticket_that_the_sync_confirms":
        setattr(PgManualWorkTest, _name, None)


if __name__ == "__main__":
    lib.main()
