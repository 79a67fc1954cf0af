"""Jira Cloud platform REST API v3 (and the v2 aliases of the same paths).

Served at the site URL (http://127.0.0.1:PORT/rest/api/3/...) and under
the scoped-token gateway prefix (/ex/jira/<cloudId>/rest/api/3/...).
Shapes follow jira-platform-v3.openapi.json; see README.md for the
behaviour of each endpoint and the exact error texts.
"""

import datetime
import urllib.parse

from . import model
from .httpcore import Api, HTTPError, Response, dump_json

USER_SEARCH_CEILING = 1000      # user-search family only considers 1,000 users
USERS_PAGE_CAP = 1000           # /users/search maxResults is limited to 1000
GROUP_BULK_CAP = 50
GROUP_MEMBER_CAP = 50
PROJECT_SEARCH_CAP = 100
USER_BULK_CAP = 200


# ---------------------------------------------------------------- errors
def error(status, messages=(), errors=None):
    return Response(status, {"errorMessages": list(messages), "errors": errors or {}})


def bad(message):
    return error(400, [message])


class Errors:
    @staticmethod
    def unauthorized(req):
        # Jira Cloud answers a bad or missing token with plain text, not JSON.
        return Response(401, "Client must be authenticated to access this resource.",
                        content_type="text/plain;charset=UTF-8")

    @staticmethod
    def not_found_route(req):
        return error(404, ["null for uri: %s%s" % (req.scheme_host, req.raw_path)])

    @staticmethod
    def rate_limited(req):
        return error(429, ["Rate limit exceeded."])

    @staticmethod
    def server_error(req, status):
        if status == 503:
            return error(503, ["Service Unavailable. Please retry after the Retry-After period."])
        return error(status, ["Internal server error"])

    @staticmethod
    def forbidden(req):
        return error(403, ["You do not have permission to perform this operation."])

    @staticmethod
    def licence(req):
        return error(400, ["You can't add more users: your Jira Software license limit has been reached. "
                           "Upgrade your plan or remove product access from other users."])


def authenticate(req, st):
    creds = st.credentials
    pair = req.basic()
    if pair and pair[0].lower() == creds["jira_email"].lower():
        if pair[1] == creds["jira_api_token"]:
            req.auth = "classic"
            return
        # Scoped tokens only work through the api.atlassian.com gateway.
        if pair[1] == creds["jira_scoped_api_token"] and req.gateway:
            req.auth = "scoped"
            return
    req.auth = "bad" if req.headers.get("Authorization") else "none"
    raise HTTPError(Errors.unauthorized(req))


# ------------------------------------------------------------ parameters
def int_param(req, name, default, minimum=None):
    raw = req.q(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(bad("The value '%s' is invalid for the parameter '%s'." % (raw, name)))
    if minimum is not None and value < minimum:
        raise HTTPError(bad("The '%s' parameter must be greater than or equal to %d." % (name, minimum)))
    return value


def bool_param(req, name, default=False):
    raw = req.q(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise HTTPError(bad("The value '%s' is invalid for the parameter '%s'." % (raw, name)))


def paging(req, cap, default=50):
    start = int_param(req, "startAt", 0, minimum=0)
    max_results = int_param(req, "maxResults", default, minimum=0)
    return start, min(max_results, cap)


def root(req):
    return "%s/rest/api/%s" % (req.jira_base, req.params.get("ver", "3"))


def page_url(req, start, max_results):
    """self/nextPage links: the request's own URL with startAt/maxResults
    replaced, as Jira builds them."""
    query = [(k, v) for k, vs in req.query.items() for v in vs if k not in ("startAt", "maxResults")]
    query += [("maxResults", str(max_results)), ("startAt", str(start))]
    path = req.raw_path
    prefix = "/ex/jira/%s" % req.server.state.cloud_id
    if req.gateway and not path.startswith(prefix):
        path = prefix + path
    return "%s%s?%s" % (req.scheme_host, path, urllib.parse.urlencode(query))


def window(items, start, count, endless):
    """A page of `items`.  With an endless fault the page wraps around so it
    is never empty (mode=cycle) or is empty past the end (mode=empty)."""
    total = len(items)
    if endless == "cycle" and total:
        return [items[(start + i) % total] for i in range(count)]
    return items[start:start + count]


def page_bean(req, items, start, max_results, render, raw=False):
    """A PageBean.  With raw=True `render` returns JSON bytes per item and
    the bean is assembled as bytes (used for pages of users)."""
    values = [render(x) for x in window(items, start, max_results, req.endless)]
    total = len(items)
    is_last = start + len(values) >= total and not req.endless
    bean = {"self": page_url(req, start, max_results), "maxResults": max_results,
            "startAt": start, "total": total, "isLast": is_last}
    if not is_last:
        bean["nextPage"] = page_url(req, start + max(len(values), max_results, 1), max_results)
    if raw:
        return dump_json(bean)[:-1] + b',"values":[' + b",".join(values) + b"]}"
    bean["values"] = values
    return bean


def raw_array(fragments):
    return b"[" + b",".join(fragments) + b"]"


# ---------------------------------------------------------------- render
def avatars(aid):
    quoted = urllib.parse.quote(aid, safe="")
    return {size: "%s/%s/%s" % (model.AVATAR_HOST, quoted, size.split("x")[0])
            for size in ("48x48", "24x24", "16x16", "32x32")}


def user_json(req, st, u, expand=(), me=False):
    d = {"self": "%s/user?accountId=%s" % (root(req), urllib.parse.quote(u.account_id, safe="")),
         "accountId": u.account_id, "accountType": u.account_type}
    if u.email_visible and u.email:
        d["emailAddress"] = u.email
    d["avatarUrls"] = avatars(u.account_id)
    d["displayName"] = u.display_name
    d["active"] = u.active
    if u.account_type == "atlassian":
        d["timeZone"] = u.time_zone
    if me:
        d["locale"] = u.locale
    if "groups" in expand:
        items = [group_name_json(req, st, st.groups[g]) for g in sorted(u.groups) if g in st.groups]
        d["groups"] = {"size": len(items), "items": items}
    if "applicationRoles" in expand:
        d["applicationRoles"] = {"size": 0, "items": []}
    if expand:
        d["expand"] = "groups,applicationRoles"
    return d


def user_details_json(req, u):
    """UserDetails (group members): no locale/expand, accountType a plain string."""
    d = {"self": "%s/user?accountId=%s" % (root(req), urllib.parse.quote(u.account_id, safe="")),
         "accountId": u.account_id}
    if u.email_visible and u.email:
        d["emailAddress"] = u.email
    d["avatarUrls"] = avatars(u.account_id)
    d["displayName"] = u.display_name
    d["active"] = u.active
    if u.account_type == "atlassian":
        d["timeZone"] = u.time_zone
    d["accountType"] = u.account_type
    return d


def user_frag(req, st, u):
    return st.fragment(("user", root(req), u.account_id), u.rev,
                       lambda: dump_json(user_json(req, st, u)))


def user_details_frag(req, st, u):
    return st.fragment(("details", root(req), u.account_id), u.rev,
                       lambda: dump_json(user_details_json(req, u)))


def group_self(req, st, g):
    gid = st.api_group_id(g)
    if gid is None:
        return "%s/group?groupname=%s" % (root(req), urllib.parse.quote(g.name, safe=""))
    return "%s/group?groupId=%s" % (root(req), gid)


def group_name_json(req, st, g):
    return {"name": g.name, "groupId": st.api_group_id(g), "self": group_self(req, st, g)}


def expand_set(req):
    return {e.strip() for e in (req.q("expand") or "").split(",") if e.strip()}


def find_user(st, aid):
    user = st.users.get(aid) if aid else None
    if user is None:
        raise HTTPError(error(404, ["Specified user does not exist or you do not have required permissions"]))
    return user


# ----------------------------------------------------------------- users
def users_search(req, st):
    start, max_results = paging(req, USERS_PAGE_CAP)
    order = st.user_order
    ids = window(order, start, max_results, "cycle" if req.endless else None)
    users = st.users
    return Response(200, raw_array([user_frag(req, st, users[a]) for a in ids]))


def get_user(req, st):
    aid = req.q("accountId")
    if not aid:
        raise HTTPError(bad("The accountId query parameter needs to be provided."))
    return Response(200, user_json(req, st, find_user(st, aid), expand_set(req)))


def myself(req, st):
    return Response(200, user_json(req, st, st.users[st.myself], expand_set(req), me=True))


def user_bulk(req, st):
    ids = req.query.get("accountId", [])
    if not ids:
        raise HTTPError(bad("You must provide at least one accountId."))
    start, max_results = paging(req, USER_BULK_CAP, default=10)
    found = [a for a in dict.fromkeys(ids) if a in st.users]
    return Response(200, page_bean(req, found, start, max_results,
                                   lambda a: user_frag(req, st, st.users[a]), raw=True))


def user_groups(req, st):
    user = find_user(st, req.q("accountId"))
    groups = sorted((st.groups[g] for g in user.groups if g in st.groups), key=lambda g: g.name.casefold())
    return Response(200, [group_name_json(req, st, g) for g in groups])


def remove_user(req, st):
    aid = req.q("accountId")
    if not aid:
        raise HTTPError(bad("The accountId query parameter needs to be provided."))
    find_user(st, aid)
    if aid == st.myself or any(p.lead == aid for p in st.projects.values()):
        raise HTTPError(bad("The user cannot be removed: they are a project lead or "
                            "the current user."))
    st.remove_jira_user(aid)
    return Response(204)


def create_user(req, st):
    body = req.json(bad)
    if not isinstance(body, dict):
        raise HTTPError(bad("Request body must be a JSON object."))
    email = body.get("emailAddress")
    errors = {}
    if not isinstance(email, str) or "@" not in email:
        errors["emailAddress"] = "You must specify a valid email address."
    products = body.get("products")
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        errors["products"] = "You must specify the products the user should have access to."
    if errors:
        raise HTTPError(error(400, [], errors))
    valid = {"jira-core", "jira-servicedesk", "jira-product-discovery", "jira-software"}
    unknown = [p for p in products if p not in valid]
    if unknown:
        raise HTTPError(error(400, [], {"products": "Unknown product: %s" % unknown[0]}))
    existing = st.users_by_email.get(email.lower())
    if existing and existing in st.users:
        user = st.users[existing]
        if not user.active:
            raise HTTPError(bad("The user %s already exists but does not have access to Jira. "
                                "Grant product access in Atlassian Administration." % email))
        st.grant_products(existing, products)
        return Response(201, user_json(req, st, user))
    display = body.get("displayName") if isinstance(body.get("displayName"), str) else email.split("@")[0]
    domain = email.rsplit("@", 1)[1].lower()
    if existing and existing in st.org_accounts:
        # A managed account that was not on the site yet (e.g. SCIM-created).
        acct = st.org_accounts[existing]
        user = st.add_jira_user(existing, acct.name or display, acct.email)
        st.grant_products(existing, products)
        return Response(201, user_json(req, st, user))
    if domain in model.VERIFIED_DOMAINS or domain.endswith(tuple("." + d for d in model.VERIFIED_DOMAINS)):
        aid = st.create_account(email, display, in_jira=True, products=products)
    else:
        # Outside the org's verified domains: an unmanaged account, known to
        # Jira only (it never shows up in the Organizations API).
        aid = "712020:" + st.mint_uuid()
        st.users_by_email[email.lower()] = aid
        st.add_jira_user(aid, display, email)
        st.grant_products(aid, products)
    return Response(201, user_json(req, st, st.users[aid]))


# ---------------------------------------------------------- user search
def _query_filter(st, query, ids):
    q = (query or "").strip().casefold()
    if q in ("", ".", "*"):
        return ids
    users = st.users
    out = []
    for aid in ids:
        u = users[aid]
        if q in u.display_name.casefold() or aid == query or (
                u.email_visible and u.email and q in u.email.lower()):
            out.append(aid)
    return out


def _active_users(st):
    return st.cached(("active-users",), lambda: [a for a in st.user_order if st.users[a].active])


def _search_response(req, st, candidates):
    """The user-search family: only the first 1,000 matches are reachable,
    whatever startAt says (JRACLOUD-73019)."""
    start, max_results = paging(req, USER_SEARCH_CEILING)
    matches = _query_filter(st, req.q("query"), candidates)
    if req.endless:     # never an empty page: wrap around the reachable 1,000
        ids = window(matches[:USER_SEARCH_CEILING], start, max_results, "cycle")
        return Response(200, raw_array([user_frag(req, st, st.users[a]) for a in ids]))
    end = min(start + max_results, USER_SEARCH_CEILING)
    ids = matches[start:end] if start < end else []
    return Response(200, raw_array([user_frag(req, st, st.users[a]) for a in ids]))


def _project_for_search(req, st, key_param):
    key = req.q(key_param)
    issue_key = req.q("issueKey")
    if not key and issue_key:
        issue = st.issues_by_key.get(issue_key.upper())
        if issue is None:
            raise HTTPError(error(404, ["Issue does not exist or you do not have permission to see it."]))
        key = issue["project_key"]
    if not key:
        return None
    project = st.find_project(key)
    if project is None:
        raise HTTPError(error(404, ["No project could be found with key '%s'." % key]))
    return project


def _participants_active(st, project):
    return st.cached(("participants-active", project.pid),
                     lambda: [a for a in st.participants_sorted(project) if st.users[a].active])


def user_search(req, st):
    if not (req.q("query") or req.q("accountId") or req.q("property")):
        raise HTTPError(bad("One of 'query' or 'accountId' or 'property' query parameter must be provided"))
    if req.q("accountId") and not req.q("query"):
        aid = req.q("accountId")
        return Response(200, [user_json(req, st, st.users[aid])] if aid in st.users else [])
    return _search_response(req, st, _active_users(st))


def viewissue_search(req, st):
    project = _project_for_search(req, st, "projectKey")
    if project is None:
        raise HTTPError(bad("Either 'issueKey' or 'projectKey' must be provided."))
    return _search_response(req, st, _participants_active(st, project))


def permission_search(req, st):
    if not req.q("permissions"):
        raise HTTPError(bad("The 'permissions' parameter is required."))
    project = _project_for_search(req, st, "projectKey")
    candidates = _participants_active(st, project) if project else _active_users(st)
    return _search_response(req, st, candidates)


def assignable_search(req, st):
    project = _project_for_search(req, st, "project")
    if project is None:
        raise HTTPError(bad("A project or issue must be specified."))
    return _search_response(req, st, _participants_active(st, project))


# ---------------------------------------------------------------- groups
def _group_from_query(req, st):
    gid = req.q("groupId")
    name = req.q("groupname")
    if not gid and not name:
        raise HTTPError(bad("You must provide a groupId or a groupname."))
    group = st.find_group_by_id(gid) if gid else st.find_group_by_name(name)
    if group is None:
        raise HTTPError(error(404, ["Specified group does not exist."]))
    return group


def _groups_for_access(st, access):
    jira_ws = st.workspaces[0]["id"]
    if access == "site-admin":
        names = {"site-admins"}
    elif access == "admin":
        names = {"jira-admins", "site-admins", "system-administrators"}
    else:
        return {gid for gid, per in st.group_roles.items() if jira_ws in per}
    return {st.groups_by_name.get(n) for n in names}


def group_bulk(req, st):
    start, max_results = paging(req, GROUP_BULK_CAP)
    ids = set(req.query.get("groupId", []))
    group_names = {n.casefold() for n in req.query.get("groupName", [])}
    access = req.q("accessType")
    if access and access not in ("site-admin", "admin", "user"):
        raise HTTPError(bad("Invalid accessType: %s" % access))
    app = req.q("applicationKey")
    if app and app not in ("jira-servicedesk", "jira-software", "jira-product-discovery", "jira-core"):
        raise HTTPError(bad("Invalid applicationKey: %s" % app))
    groups = st.group_order()
    if ids or group_names or access or app:
        allowed = _groups_for_access(st, access or "user") if (access or app) else None
        groups = [g for g in groups
                  if (not ids or st.api_group_id(g) in ids)
                  and (not group_names or g.name.casefold() in group_names)
                  and (allowed is None or g.group_id in allowed)]
    return Response(200, page_bean(req, groups, start, max_results,
                                   lambda g: {"name": g.name, "groupId": st.api_group_id(g)}))


def group_member(req, st):
    group = _group_from_query(req, st)
    inactive = bool_param(req, "includeInactiveUsers", False)
    start, max_results = paging(req, GROUP_MEMBER_CAP)
    ids = st.cached(("jira-members", group.group_id, group.rev, inactive),
                    lambda: [a for a in (st.sorted_members(group) if inactive else st.active_members(group))
                             if a in st.users])
    return Response(200, page_bean(req, ids, start, max_results,
                                   lambda a: user_details_frag(req, st, st.users[a]), raw=True))


def _refuse_synced(group, verb):
    if group.external_synced:
        raise HTTPError(bad("Cannot %s user. Group '%s' is managed by an external identity provider "
                            "and can only be changed there." % (verb, group.name)))


def add_group_user(req, st):
    group = _group_from_query(req, st)
    body = req.json(bad)
    aid = body.get("accountId") if isinstance(body, dict) else None
    if not aid and isinstance(body, dict) and body.get("name"):
        aid = body.get("name")
    if not aid:
        raise HTTPError(bad("You must specify the accountId of the user to add."))
    find_user(st, aid)
    _refuse_synced(group, "add")
    if aid in group.members:
        raise HTTPError(bad("Cannot add user. User is already a member of '%s'" % group.name))
    st.add_member(group, aid)
    return Response(201, {
        "name": group.name, "groupId": st.api_group_id(group),
        "self": group_self(req, st, group),
        "users": {"size": len(group.members), "items": [], "max-results": 50,
                  "start-index": 0, "end-index": 0},
        "expand": "users",
    })


def remove_group_user(req, st):
    group = _group_from_query(req, st)
    aid = req.q("accountId")
    if not aid:
        raise HTTPError(bad("The accountId query parameter needs to be provided."))
    find_user(st, aid)
    _refuse_synced(group, "remove")
    if aid not in group.members:
        raise HTTPError(bad("Cannot remove user. User is not a member of '%s'" % group.name))
    st.remove_member(group, aid)
    return Response(200, None)


# -------------------------------------------------------------- projects


def project_avatars(pid):
    return {size: "%s/project/%d/%s" % (model.AVATAR_HOST, pid, size.split("x")[0])
            for size in ("48x48", "24x24", "16x16", "32x32")}


def issue_types_json(req):
    return [{"self": "%s/issuetype/%s" % (root(req), tid), "id": tid, "name": name,
             "description": "A %s." % name.lower(), "subtask": sub,
             "iconUrl": "%s/issuetype/%s.svg" % (model.AVATAR_HOST, tid),
             "hierarchyLevel": -1 if sub else (1 if name == "Epic" else 0)}
            for tid, name, sub in model.ISSUE_TYPES]


def project_json(req, st, p, expand, detail=False):
    d = {"expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
         "self": "%s/project/%d" % (root(req), p.pid), "id": str(p.pid), "key": p.key,
         "name": p.name, "avatarUrls": project_avatars(p.pid), "projectTypeKey": p.type_key,
         "simplified": False, "style": "classic", "isPrivate": p.is_private, "properties": {},
         "uuid": p.uuid}
    if detail or "description" in expand:
        d["description"] = p.description
    if (detail or "lead" in expand) and p.lead in st.users:
        d["lead"] = user_json(req, st, st.users[p.lead])
    if detail or "issueTypes" in expand:
        d["issueTypes"] = issue_types_json(req)
    if "insight" in expand:
        d["insight"] = {"totalIssueCount": p.issue_counter,
                        "lastIssueUpdateTime": "2024-06-01T10:00:00.000+0000"}
    if detail:
        d["assigneeType"] = "UNASSIGNED"
        d["components"] = []
        d["versions"] = []
        d["roles"] = role_map(req, st, p, str(p.pid))
    return d


def _project_filter(req, st):
    keys = [k.upper() for k in req.qlist("keys")]
    ids = req.qlist("id")
    query = (req.q("query") or "").casefold()
    types = set(req.qlist("typeKey"))
    order = (req.q("orderBy") or "key").lstrip("+")
    for raw in ids:
        if not raw.isdigit():
            raise HTTPError(bad("The value '%s' is invalid for the parameter 'id'." % raw))
    if len(keys) > 50 or len(ids) > 50:
        raise HTTPError(bad("You can specify at most 50 projects."))
    cache_key = ("projects", tuple(keys), tuple(ids), query, tuple(sorted(types)), order)

    def build():
        items = st.project_order()
        if keys or ids or query or types:
            key_set, id_set = set(keys), {int(i) for i in ids}
            items = [p for p in items
                     if (not key_set or p.key in key_set)
                     and (not id_set or p.pid in id_set)
                     and (not query or query in p.key.casefold() or query in p.name.casefold())
                     and (not types or p.type_key in types)]
        if order.endswith("name"):
            items = sorted(items, key=lambda p: p.name.casefold())
        if order.startswith("-"):
            items = list(reversed(items))
        return items
    return st.cached(cache_key, build)


def project_search(req, st):
    start, max_results = paging(req, PROJECT_SEARCH_CAP)
    items = _project_filter(req, st)
    if not items:
        raise HTTPError(error(404, ["No projects matching the search criteria were found."]))
    expand = expand_set(req)
    return Response(200, page_bean(req, items, start, max_results,
                                   lambda p: project_json(req, st, p, expand)))


def find_project(st, id_or_key):
    project = st.find_project(id_or_key)
    if project is None:
        raise HTTPError(error(404, ["No project could be found with key '%s'." % id_or_key]))
    return project


def get_project(req, st):
    p = find_project(st, req.params["p"])
    return Response(200, project_json(req, st, p, expand_set(req), detail=True))


def role_map(req, st, p, ident):
    names = {rid: name for rid, name, _ in st.roles}
    return {names[rid]: "%s/project/%s/role/%d" % (root(req), ident, rid) for rid in p.roles}


def project_roles(req, st):
    ident = req.params["p"]
    p = find_project(st, ident)
    # Jira echoes the project identifier the caller used in the role URLs.
    return Response(200, role_map(req, st, p, p.key if not ident.isdigit() else str(p.pid)))


def _role(st, p, role_id_text):
    try:
        role_id = int(role_id_text)
    except ValueError:
        raise HTTPError(bad("The value '%s' is invalid for the role id." % role_id_text))
    if role_id not in p.roles:
        raise HTTPError(error(404, ["No project role with id %d was found in project %s." % (role_id, p.key)]))
    meta = next(r for r in st.roles if r[0] == role_id)
    return role_id, meta, p.roles[role_id]


def role_json(req, st, p, role_id, meta, actors, exclude_inactive=False):
    users, groups = st.users, st.groups
    out = []
    for aid, actor_id in actors.users.items():
        u = users.get(aid)
        if u is None or (exclude_inactive and not u.active):
            continue
        out.append({"id": actor_id, "displayName": u.display_name,
                    "type": "atlassian-user-role-actor", "actorUser": {"accountId": aid},
                    "avatarUrl": avatars(aid)["48x48"]})
    for gid, actor_id in actors.groups.items():
        g = groups.get(gid)
        if g is None:
            continue
        group = {"name": g.name, "displayName": g.name}
        if st.api_group_id(g) is not None and not st.omit_actor_group_ids:
            group["groupId"] = gid      # ProjectRoleGroup.groupId is optional
        out.append({"id": actor_id, "displayName": g.name, "type": "atlassian-group-role-actor",
                    "name": g.name, "actorGroup": group})
    out.sort(key=lambda a: (a["displayName"].casefold(), a["id"]))
    return {"self": "%s/project/%d/role/%d" % (root(req), p.pid, role_id), "name": meta[1],
            "id": role_id, "description": meta[2], "actors": out}


def get_project_role(req, st):
    p = find_project(st, req.params["p"])
    role_id, meta, actors = _role(st, p, req.params["id"])
    exclude = bool_param(req, "excludeInactiveUsers", False)
    return Response(200, role_json(req, st, p, role_id, meta, actors, exclude))


def add_role_actors(req, st):
    p = find_project(st, req.params["p"])
    role_id, meta, actors = _role(st, p, req.params["id"])
    body = req.json(bad)
    if not isinstance(body, dict) or set(body) - {"user", "group", "groupId"}:
        raise HTTPError(bad("Unrecognized field in the actors map; use user, groupId or group."))
    for field in ("user", "group", "groupId"):
        value = body.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise HTTPError(bad("'%s' must be an array of strings." % field))
    new_users, new_groups = [], []
    for aid in body.get("user", []):
        u = st.users.get(aid)
        if u is None or not u.active:
            raise HTTPError(error(404, ["The user with account ID '%s' does not exist or is inactive." % aid]))
        if aid in actors.users or aid in new_users:
            raise HTTPError(bad("'%s' is already a member of the project role." % u.display_name))
        new_users.append(aid)
    requested = [(gid, st.find_group_by_id(gid)) for gid in body.get("groupId", [])]
    requested += [(name, st.find_group_by_name(name)) for name in body.get("group", [])]
    for ident, g in requested:
        if g is None:
            raise HTTPError(error(404, ["The group '%s' does not exist." % ident]))
        if g.group_id in actors.groups or g.group_id in new_groups:
            raise HTTPError(bad("'%s' is already a member of the project role." % g.name))
        new_groups.append(g.group_id)
    for aid in new_users:
        actors.users[aid] = st.new_actor_id()
    for gid in new_groups:
        actors.groups[gid] = st.new_actor_id()
    if new_users or new_groups:
        st.bump()
    return Response(200, role_json(req, st, p, role_id, meta, actors))


def delete_role_actor(req, st):
    p = find_project(st, req.params["p"])
    role_id, meta, actors = _role(st, p, req.params["id"])
    given = [(k, req.q(k)) for k in ("user", "groupId", "group") if req.q(k)]
    if len(given) != 1:
        raise HTTPError(bad("You must specify exactly one of user, groupId or group."))
    kind, value = given[0]
    if kind == "user":
        if value not in actors.users:
            label = st.users[value].display_name if value in st.users else value
            raise HTTPError(error(404, ["'%s' is not a member of the project role." % label]))
        del actors.users[value]
    else:
        g = st.find_group_by_id(value) if kind == "groupId" else st.find_group_by_name(value)
        if g is None or g.group_id not in actors.groups:
            raise HTTPError(error(404, ["'%s' is not a member of the project role." % (g.name if g else value)]))
        del actors.groups[g.group_id]
    st.bump()
    return Response(204)


def list_roles(req, st):
    return Response(200, [{"self": "%s/role/%d" % (root(req), rid), "name": name, "id": rid,
                           "description": desc} for rid, name, desc in st.roles])


def get_role(req, st):
    rid = req.params["id"]
    for role_id, name, desc in st.roles:
        if str(role_id) == rid:
            return Response(200, {"self": "%s/role/%d" % (root(req), role_id), "name": name,
                                  "id": role_id, "description": desc})
    raise HTTPError(error(404, ["No project role with id %s was found." % rid]))


# ---------------------------------------------------------------- issues
# Issue metadata (createmeta / editmeta), the issues themselves, comments
# and a three-status workflow.  Every project offers the standard issue
# types plus "Access Request" (which requires two custom fields) and
# "Legacy Form", whose field configuration is broken: describing it
# answers 500, as Jira does for a field configuration it cannot render.
CREATEMETA_CAP = 200
ACCESS_REQUEST = ("10010", "Access Request", False)
BROKEN_TYPE = ("10011", "Legacy Form", False)
META_TYPES = list(model.ISSUE_TYPES) + [ACCESS_REQUEST, BROKEN_TYPE]
META_TYPE_BY_ID = {tid: (tid, name, sub) for tid, name, sub in META_TYPES}
META_TYPE_BY_NAME = {name.casefold(): (tid, name, sub) for tid, name, sub in META_TYPES}

PRIORITIES = [("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"), ("5", "Lowest")]
COMPONENT_NAMES = ["Access", "Billing", "Infrastructure"]
ACCESS_LEVELS = [("10200", "Read"), ("10201", "Write"), ("10202", "Admin")]
CF = "com.atlassian.jira.plugin.system.customfieldtypes:"

# Statuses: (id, name, category id, category key, category name, colour).
STATUSES = {
    "10000": ("10000", "To Do", 2, "new", "To Do", "blue-gray"),
    "3": ("3", "In Progress", 4, "indeterminate", "In Progress", "yellow"),
    "10001": ("10001", "Done", 3, "done", "Done", "green"),
}
# Transitions: (id, name, target status id); each is offered from every
# status but its own target (global transitions, as a simplified workflow).
TRANSITIONS = [("11", "To Do", "10000"), ("21", "Start Progress", "3"), ("31", "Done", "10001")]
DONE_RESOLUTION = {"id": "10000", "name": "Done", "description": "Work on this issue is complete."}


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def components_of(project):
    return [(str(20000 + project.pid * 10 + i), name) for i, name in enumerate(COMPONENT_NAMES)]


def _field(fid, name, schema, required=False, allowed=None, operations=("set",), default=None):
    d = {"fieldId": fid, "key": fid, "name": name, "required": required,
         "hasDefaultValue": default is not None, "operations": list(operations), "schema": schema}
    if allowed is not None:
        d["allowedValues"] = allowed
    if default is not None:
        d["defaultValue"] = default
    return d


def type_fields(req, project, itype):
    """FieldCreateMetadata of one issue type in one project."""
    tid, tname, sub = itype
    comps = [{"self": "%s/component/%s" % (root(req), cid), "id": cid, "name": name}
             for cid, name in components_of(project)]
    prios = [{"self": "%s/priority/%s" % (root(req), pid), "id": pid, "name": name}
             for pid, name in PRIORITIES]
    access = [{"self": "%s/customFieldOption/%s" % (root(req), oid), "id": oid, "value": name}
              for oid, name in ACCESS_LEVELS]
    is_access = tid == ACCESS_REQUEST[0]
    fields = [
        _field("summary", "Summary", {"type": "string", "system": "summary"}, required=True),
        _field("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}, required=True,
               allowed=[{"self": "%s/issuetype/%s" % (root(req), tid), "id": tid, "name": tname,
                         "subtask": sub}]),
        _field("project", "Project", {"type": "project", "system": "project"}, required=True,
               allowed=[{"self": "%s/project/%d" % (root(req), project.pid), "id": str(project.pid),
                         "key": project.key, "name": project.name}]),
        _field("description", "Description", {"type": "string", "system": "description"}),
        _field("labels", "Labels", {"type": "array", "items": "string", "system": "labels"},
               operations=("add", "set", "remove")),
        _field("components", "Components", {"type": "array", "items": "component", "system": "components"},
               required=is_access, allowed=comps, operations=("add", "set", "remove")),
        _field("priority", "Priority", {"type": "priority", "system": "priority"}, allowed=prios,
               default=prios[2]),
        _field("assignee", "Assignee", {"type": "user", "system": "assignee"}),
        _field("duedate", "Due date", {"type": "date", "system": "duedate"}),
        _field("customfield_10050", "Access Level",
               {"type": "option", "custom": CF + "select", "customId": 10050},
               required=is_access, allowed=access),
        _field("customfield_10051", "Ticket Reference",
               {"type": "string", "custom": CF + "textfield", "customId": 10051}),
        _field("customfield_10052", "Story Points",
               {"type": "number", "custom": CF + "float", "customId": 10052}),
    ]
    if is_access:
        fields.append(_field("customfield_10053", "Justification",
                             {"type": "string", "custom": CF + "textarea", "customId": 10053},
                             required=True))
    return fields


def _meta_project(st, ident):
    project = st.find_project(ident)
    if project is None:
        raise HTTPError(error(404, ["No project could be found with key '%s'." % ident]))
    return project


def _meta_page(req, items, member):
    start = int_param(req, "startAt", 0, minimum=0)
    max_results = int_param(req, "maxResults", 50, minimum=0)
    if max_results > CREATEMETA_CAP:
        raise HTTPError(bad("Parameter 'maxResults' must not exceed the limit '%d'" % CREATEMETA_CAP))
    page = items[start:start + max_results]
    return {member: page, "maxResults": max_results, "startAt": start, "total": len(items)}


def createmeta_types(req, st):
    _meta_project(st, req.params["p"])
    items = [{"self": "%s/issuetype/%s" % (root(req), tid), "id": tid, "name": name,
              "description": "A %s." % name.lower(), "subtask": sub,
              "iconUrl": "%s/issuetype/%s.svg" % (model.AVATAR_HOST, tid),
              "hierarchyLevel": -1 if sub else (1 if name == "Epic" else 0)}
             for tid, name, sub in META_TYPES]
    return Response(200, _meta_page(req, items, "issueTypes"))


def createmeta_fields(req, st):
    project = _meta_project(st, req.params["p"])
    itype = META_TYPE_BY_ID.get(req.params["t"])
    if itype is None:
        raise HTTPError(error(404, ["Issue type with id '%s' does not exist." % req.params["t"]]))
    if itype == BROKEN_TYPE:
        raise HTTPError(error(500, ["Internal server error"]))
    return Response(200, _meta_page(req, type_fields(req, project, itype), "fields"))


def _adf_ok(doc):
    return (isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1
            and isinstance(doc.get("content"), list))


def _pick(meta, value):
    """The allowed value `value` ({"id"}, {"name"} or {"value"}) refers to."""
    if not isinstance(value, dict):
        return None
    for a in meta.get("allowedValues", []):
        for k in ("id", "name", "value", "key"):
            if k in value and k in a and str(value[k]) == str(a[k]):
                return a
    return None


def _convert(st, meta, value, ver):
    """The stored form of one field value, or raise ValueError(message)."""
    schema = meta["schema"]
    kind = schema["type"]
    if value is None:
        return None
    if kind == "array":
        if not isinstance(value, list):
            raise ValueError("Field '%s' must be an array." % meta["fieldId"])
        item_meta = dict(meta, schema={"type": schema["items"]})
        return [_convert(st, item_meta, v, ver) for v in value]
    if kind == "string":
        if meta["fieldId"] in ("description", "customfield_10053"):
            if not (_adf_ok(value) or (ver == "2" and isinstance(value, str))):
                raise ValueError("Operation value must be an Atlassian Document "
                                 "(see the Atlassian Document Format)")
            return value
        if not isinstance(value, str):
            raise ValueError("Operation value must be a string")
        if meta["fieldId"] == "labels" and " " in value:
            raise ValueError("The label '%s' contains spaces which is invalid." % value)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("Operation value must be a number")
        return value
    if kind == "date":
        try:
            datetime.date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError("Error parsing date string: %s" % value)
        return value
    if kind == "user":
        aid = value.get("accountId") if isinstance(value, dict) else None
        if aid not in st.users:
            raise ValueError("Specified user does not exist or you do not have required permissions")
        return aid
    if "allowedValues" in meta:
        picked = _pick(meta, value)
        if picked is None:
            if kind == "option":
                raise ValueError("Option value '%s' is not valid" % json_text(value))
            raise ValueError("Specify a valid '%s' id or name" % meta["fieldId"])
        return picked
    return value


def json_text(v):
    return dump_json(v).decode("utf-8")


def _apply_fields(st, metas, fields, issue, ver, errors, skip=("project", "issuetype")):
    by_id = {m["fieldId"]: m for m in metas}
    for fid, value in fields.items():
        if fid in skip:
            continue
        meta = by_id.get(fid)
        if meta is None:
            errors[fid] = ("Field '%s' cannot be set. It is not on the appropriate screen, "
                           "or unknown." % fid)
            continue
        try:
            issue["fields"][fid] = _convert(st, meta, value, ver)
        except ValueError as exc:
            errors[fid] = str(exc)


def create_issue(req, st):
    body = req.json(bad)
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        raise HTTPError(error(400, [], {"fields": "The 'fields' object is required."}))
    errors = {}
    proj = fields.get("project") or {}
    project = None
    if isinstance(proj, dict):
        ident = proj.get("key") or proj.get("id")
        if ident is not None:
            project = st.find_project(str(ident))
    if project is None:
        errors["project"] = "valid project is required"
    itype = fields.get("issuetype") or {}
    found_type = None
    if isinstance(itype, dict):
        if itype.get("id") is not None:
            found_type = META_TYPE_BY_ID.get(str(itype["id"]))
        elif isinstance(itype.get("name"), str):
            found_type = META_TYPE_BY_NAME.get(itype["name"].casefold())
    if found_type is None or found_type == BROKEN_TYPE:
        errors["issuetype"] = "Specify an issue type"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > 255:
        errors["summary"] = "Summary must be less than 255 characters."
    if errors:
        # without a project and a type there is no screen to check the rest on
        raise HTTPError(error(400, [], errors))
    metas = type_fields(req, project, found_type)
    issue = {"fields": {}}
    _apply_fields(st, metas, {k: v for k, v in fields.items() if k != "summary"}, issue,
                  req.params.get("ver"), errors)
    for m in metas:
        fid = m["fieldId"]
        if m["required"] and fid not in ("project", "issuetype", "summary") and \
                issue["fields"].get(fid) in (None, []) and fid not in errors:
            errors[fid] = "%s is required." % m["name"]
    if errors:
        raise HTTPError(error(400, [], errors))
    project.issue_counter += 1
    st.next_issue_id += 1
    issue_id = str(st.next_issue_id - 1)
    key = "%s-%d" % (project.key, project.issue_counter)
    created = now_iso()
    stored = issue["fields"]
    stored["summary"] = summary
    stored.setdefault("priority", next(m for m in metas if m["fieldId"] == "priority")["defaultValue"])
    issue.update({"id": issue_id, "key": key, "project_key": project.key, "project_id": project.pid,
                  "type": found_type, "summary": summary, "description": stored.get("description"),
                  "labels": stored.get("labels") or [], "created": created, "updated": created,
                  "status": "10000", "resolution": None, "comments": []})
    st.issues[issue_id] = issue
    st.issues_by_key[key] = issue
    st.bump()
    return Response(201, {"id": issue_id, "key": key, "self": "%s/issue/%s" % (root(req), issue_id)})


def find_issue(st, ident):
    issue = st.issues.get(ident) or st.issues_by_key.get(ident.upper())
    if issue is None:
        raise HTTPError(error(404, ["Issue does not exist or you do not have permission to see it."]))
    return issue


def status_json(req, sid):
    sid, name, cid, ckey, cname, colour = STATUSES[sid]
    return {"self": "%s/status/%s" % (root(req), sid), "description": "", "iconUrl":
            "%s/status/%s.png" % (model.AVATAR_HOST, sid), "name": name, "id": sid,
            "statusCategory": {"self": "%s/statuscategory/%d" % (root(req), cid), "id": cid,
                               "key": ckey, "colorName": colour, "name": cname}}


def comment_json(req, st, issue, c):
    author = user_details_json(req, st.users[c["author"]]) if c["author"] in st.users else None
    d = {"self": "%s/issue/%s/comment/%s" % (root(req), issue["id"], c["id"]), "id": c["id"],
         "body": c["body"], "created": c["created"], "updated": c["created"], "jsdPublic": True}
    if author:
        d["author"] = d["updateAuthor"] = author
    return d


def issue_fields_json(req, st, issue):
    project = st.projects[issue["project_id"]]
    tid, tname, sub = issue["type"]
    stored = issue["fields"]
    assignee = stored.get("assignee")
    fields = {k: v for k, v in stored.items() if k not in ("assignee",)}
    fields.update({
        "summary": issue["summary"], "description": stored.get("description"),
        "labels": stored.get("labels") or [], "created": issue["created"], "updated": issue["updated"],
        "project": {"self": "%s/project/%d" % (root(req), project.pid), "id": str(project.pid),
                    "key": project.key, "name": project.name},
        "issuetype": {"self": "%s/issuetype/%s" % (root(req), tid), "id": tid, "name": tname, "subtask": sub},
        "status": status_json(req, issue["status"]),
        "statuscategorychangedate": issue["updated"],
        "resolution": issue["resolution"],
        "resolutiondate": issue["updated"] if issue["resolution"] else None,
        "assignee": user_details_json(req, st.users[assignee]) if assignee in st.users else None,
        "components": stored.get("components") or [],
        "comment": {"comments": [comment_json(req, st, issue, c) for c in issue["comments"]],
                    "maxResults": len(issue["comments"]), "total": len(issue["comments"]), "startAt": 0},
    })
    return fields


def get_issue(req, st):
    issue = find_issue(st, req.params["issue"])
    fields = issue_fields_json(req, st, issue)
    wanted = [f for raw in req.qlist("fields") for f in raw.split(",") if f]
    if wanted and "*all" not in wanted:
        fields = {k: v for k, v in fields.items() if k in wanted}
    return Response(200, {"expand": "renderedFields,names,schema,operations,editmeta,changelog",
                          "id": issue["id"], "key": issue["key"],
                          "self": "%s/issue/%s" % (root(req), issue["id"]), "fields": fields})


def _edit_metas(req, st, issue):
    project = st.projects[issue["project_id"]]
    return [m for m in type_fields(req, project, issue["type"])
            if m["fieldId"] not in ("project", "issuetype")]


def edit_meta(req, st):
    issue = find_issue(st, req.params["issue"])
    out = {}
    for m in _edit_metas(req, st, issue):
        m = dict(m)
        m.pop("fieldId")
        out[m["key"]] = m
    return Response(200, {"fields": out})


def _apply_update_ops(issue, update, errors):
    for fid, ops in update.items():
        if fid != "labels":
            errors[fid] = "Field '%s' cannot be set. It is not on the appropriate screen, or unknown." % fid
            continue
        labels = list(issue["fields"].get("labels") or [])
        for op in ops if isinstance(ops, list) else []:
            for verb, value in (op.items() if isinstance(op, dict) else []):
                if not isinstance(value, str) or " " in value:
                    errors[fid] = "The label '%s' contains spaces which is invalid." % value
                elif verb == "add" and value not in labels:
                    labels.append(value)
                elif verb == "remove" and value in labels:
                    labels.remove(value)
                elif verb not in ("add", "remove", "set"):
                    errors[fid] = "Unsupported operation '%s' for labels." % verb
        issue["fields"]["labels"] = labels


def edit_issue(req, st):
    issue = find_issue(st, req.params["issue"])
    body = req.json(bad)
    if not isinstance(body, dict):
        raise HTTPError(bad("Can not deserialize the request body."))
    errors = {}
    fields = body.get("fields") or {}
    update = body.get("update") or {}
    both = set(fields) & set(update)
    for fid in both:
        errors[fid] = "Field '%s' cannot be set in both 'fields' and 'update'." % fid
    draft = {"fields": dict(issue["fields"])}
    _apply_fields(st, _edit_metas(req, st, issue), fields, draft, req.params.get("ver"), errors,
                  skip=())
    _apply_update_ops(draft, update, errors)
    if errors:
        raise HTTPError(error(400, [], errors))
    issue["fields"] = draft["fields"]
    if "summary" in fields:
        issue["summary"] = fields["summary"]
    issue["updated"] = now_iso()
    st.bump()
    return Response(204)


def list_comments(req, st):
    issue = find_issue(st, req.params["issue"])
    start, max_results = paging(req, 5000, default=100)
    items = issue["comments"][start:start + max_results]
    return Response(200, {"comments": [comment_json(req, st, issue, c) for c in items],
                          "maxResults": max_results, "total": len(issue["comments"]), "startAt": start})


def add_comment(req, st):
    issue = find_issue(st, req.params["issue"])
    body = req.json(bad)
    doc = body.get("body") if isinstance(body, dict) else None
    if not (_adf_ok(doc) or (req.params.get("ver") == "2" and isinstance(doc, str) and doc)):
        raise HTTPError(error(400, [], {"comment": "Comment body can not be empty!"}))
    st.next_comment_id += 1
    c = {"id": str(st.next_comment_id), "author": st.myself, "body": doc, "created": now_iso()}
    issue["comments"].append(c)
    issue["updated"] = c["created"]
    st.bump()
    return Response(201, comment_json(req, st, issue, c))


def _transitions(issue):
    return [t for t in TRANSITIONS if t[2] != issue["status"]]


def list_transitions(req, st):
    issue = find_issue(st, req.params["issue"])
    out = [{"id": tid, "name": name, "to": status_json(req, target), "hasScreen": False,
            "isGlobal": True, "isInitial": False, "isAvailable": True, "isConditional": False,
            "isLooped": False}
           for tid, name, target in _transitions(issue)]
    return Response(200, {"expand": "transitions", "transitions": out})


def do_transition(req, st):
    issue = find_issue(st, req.params["issue"])
    body = req.json(bad)
    t = body.get("transition") if isinstance(body, dict) else None
    tid = str(t.get("id")) if isinstance(t, dict) and t.get("id") is not None else None
    match = next((x for x in _transitions(issue) if x[0] == tid), None)
    if match is None:
        raise HTTPError(bad("Transition id '%s' is not valid for this issue." % tid))
    issue["status"] = match[2]
    issue["resolution"] = DONE_RESOLUTION if STATUSES[match[2]][3] == "done" else None
    issue["updated"] = now_iso()
    st.bump()
    return Response(204)


# ---------------------------------------------------------------- public
def tenant_info(req, st):
    return Response(200, {"cloudId": st.cloud_id})


def server_info(req, st):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    return Response(200, {"baseUrl": st.site_url, "displayUrl": st.site_url,
                          "version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
                          "deploymentType": "Cloud", "buildNumber": 100300,
                          "buildDate": "2026-03-31T00:00:00.000+0000", "serverTime": now,
                          "scmInfo": "96fbf6fa2f00a8b0d3c82f748add29137ec189d4",
                          "serverTitle": "Jira", "serverTimeZone": "Etc/UTC"})


def build():
    api = Api("jira", authenticate, Errors)
    v = "/rest/api/(?P<ver>[23])"
    r = api.route
    r("GET", "/_edge/tenant_info", tenant_info, public=True)
    r("GET", v + "/serverInfo", server_info, public=True)
    r("GET", v + "/users/search", users_search)
    r("GET", v + "/users", users_search)
    r("GET", v + "/user", get_user)
    r("POST", v + "/user", create_user)
    r("DELETE", v + "/user", remove_user)
    r("GET", v + "/user/bulk", user_bulk)
    r("GET", v + "/user/groups", user_groups)
    r("GET", v + "/user/search", user_search)
    r("GET", v + "/user/viewissue/search", viewissue_search)
    r("GET", v + "/user/permission/search", permission_search)
    r("GET", v + "/user/assignable/search", assignable_search)
    r("GET", v + "/myself", myself)
    r("GET", v + "/group/bulk", group_bulk)
    r("GET", v + "/group/member", group_member)
    r("POST", v + "/group/user", add_group_user)
    r("DELETE", v + "/group/user", remove_group_user)
    r("GET", v + "/project/search", project_search)
    r("GET", v + "/project/(?P<p>[^/]+)", get_project)
    r("GET", v + "/project/(?P<p>[^/]+)/role", project_roles)
    r("GET", v + "/project/(?P<p>[^/]+)/role/(?P<id>[^/]+)", get_project_role)
    r("POST", v + "/project/(?P<p>[^/]+)/role/(?P<id>[^/]+)", add_role_actors)
    r("DELETE", v + "/project/(?P<p>[^/]+)/role/(?P<id>[^/]+)", delete_role_actor)
    r("GET", v + "/role", list_roles)
    r("GET", v + "/role/(?P<id>[^/]+)", get_role)
    r("GET", v + "/issue/createmeta/(?P<p>[^/]+)/issuetypes", createmeta_types)
    r("GET", v + "/issue/createmeta/(?P<p>[^/]+)/issuetypes/(?P<t>[^/]+)", createmeta_fields)
    r("POST", v + "/issue", create_issue)
    r("GET", v + "/issue/(?P<issue>[^/]+)", get_issue)
    r("PUT", v + "/issue/(?P<issue>[^/]+)", edit_issue)
    r("GET", v + "/issue/(?P<issue>[^/]+)/editmeta", edit_meta)
    r("GET", v + "/issue/(?P<issue>[^/]+)/comment", list_comments)
    r("POST", v + "/issue/(?P<issue>[^/]+)/comment", add_comment)
    r("GET", v + "/issue/(?P<issue>[^/]+)/transitions", list_transitions)
    r("POST", v + "/issue/(?P<issue>[^/]+)/transitions", do_transition)
    return api
