"""Ground truth: the tenant as plain JSON, with the ids the APIs use.

The schema is documented in tests/fake/README.md ("Truth file").  Lists
are sorted by id so that two runs with the same seed produce byte-identical
files (apart from the port inside URLs).
"""

import json
import os

SCHEMA_VERSION = 1


def _jira_users(st):
    out = []
    for aid in st.user_order:
        u = st.users[aid]
        out.append({
            "accountId": aid,
            "accountType": u.account_type,
            "active": u.active,
            "displayName": u.display_name,
            "emailAddress": u.email if u.email_visible else None,
        })
    return out


def _projects(st):
    out = []
    for p in st.project_order():
        participants = st.project_participants(p)
        roles = []
        for role_id, name, _ in st.roles:
            actors = p.roles.get(role_id)
            if actors is None:
                continue
            roles.append({"id": role_id, "name": name,
                          "users": sorted(actors.users), "groups": sorted(actors.groups)})
        out.append({
            "id": str(p.pid), "key": p.key, "name": p.name, "lead": p.lead,
            "projectTypeKey": p.type_key, "roles": roles,
            "participants": sorted(participants),
            "participant_count": len(participants),
        })
    return out


def _org(st):
    accounts = []
    for aid in st.org_order:
        a = st.org_accounts[aid]
        if not a.in_directory:
            continue
        accounts.append({
            "account_id": aid, "email": a.email, "name": a.name,
            "account_type": "atlassian", "account_status": a.account_status,
            "membership_status": a.membership_status, "status": a.status,
            "in_jira": bool(a.in_jira), "scim_id": st.scim_by_account.get(aid),
        })
    groups = []
    for g in st.org_groups():
        groups.append({"id": g.group_id, "name": g.name, "external_synced": g.external_synced,
                       "members": sorted(a for a in g.members if a in st.org_accounts)})
    workspaces = []
    for ws in st.workspaces:
        workspaces.append({"id": ws["id"], "type": ws["type"], "typeKey": ws["typeKey"],
                           "name": ws["name"], "hostUrl": st.workspace_host(ws)})
    assignments = []
    for table, kind in ((st.user_roles, "user"), (st.group_roles, "group")):
        for principal in sorted(table):
            for resource in sorted(table[principal]):
                for role in sorted(table[principal][resource]):
                    assignments.append({"principal_type": kind, "principal_id": principal,
                                        "role": role, "resource_id": resource})
    return {
        "org_id": st.org_id, "org_name": "Fake Acme",
        "directory_id": st.directory_id, "directory_name": "Fake Acme directory",
        "platform_resource_id": st.platform_resource,
        "accounts": accounts, "groups": groups, "workspaces": workspaces,
        "role_assignments": assignments,
    }


def _scim(st):
    users = []
    for sid in st.scim_order:
        s = st.scim_users[sid]
        if s.deleted:
            continue
        users.append({"id": sid, "userName": s.user_name, "externalId": s.external_id,
                      "active": s.active, "atlassianAccountId": s.account_id})
    groups = []
    for sid in st.scim_group_order:
        g = st.scim_groups[sid]
        if g.deleted:
            continue
        org_group = st.groups.get(g.group_id)
        members = sorted(st.scim_by_account[a] for a in (org_group.members if org_group else ())
                         if a in st.scim_by_account)
        groups.append({"id": sid, "displayName": g.display_name, "org_group_id": g.group_id,
                       "members": members})
    return {"directory_id": st.credentials["scim_directory_id"], "users": users, "groups": groups}


def build(st):
    """Snapshot of the tenant.  Call with st.lock held."""
    base = st.site_url
    creds = st.credentials
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"seed": st.seed, "profile": st.profile, "sizes": st.sizes},
        "credentials": dict(creds),
        "urls": {
            "jira_site": base,
            "jira_gateway": "%s/ex/jira/%s" % (base, creds["cloud_id"]),
            "org_api_base": base + "/admin",
            "user_management_base": base,
            "scim_base": "%s/scim/directory/%s" % (base, creds["scim_directory_id"]),
        },
        "jira": {
            "myself": st.myself,
            "users": _jira_users(st),
            "groups": [{"groupId": g.group_id, "name": g.name, "site_local": g.site_local,
                        "groupIdHidden": g.group_id in st.hidden_group_ids}
                       for g in st.group_order()],
            "group_members": {g.group_id: sorted(g.members) for g in st.group_order()},
            "roles": [{"id": rid, "name": name} for rid, name, _ in st.roles],
            "projects": _projects(st),
        },
        "org": _org(st),
        "scim": _scim(st),
    }


def dumps(st):
    with st.lock:
        snapshot = build(st)
    if len(st.users) <= 2000:       # small tenants: readable, diffable
        return json.dumps(snapshot, ensure_ascii=False, indent=1, sort_keys=True)
    return json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def write(st, path):
    """Write atomically (temp file + rename) so readers never see half a file."""
    text = dumps(st)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
