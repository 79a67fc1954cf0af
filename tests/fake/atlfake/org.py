"""Atlassian Organizations (Admin) API v1/v2 under /admin, and the user
management API (/users/{account_id}/manage/...) at the root.

Shapes follow atlassian-admin-organization.openapi.json (plus the v1
directory endpoints of the 2023 legacy spec) and
atlassian-admin-user-management.openapi.json.  v1 pages with links.next as a
full URL; v2 with links.next as a bare cursor token (--relative-next: a
relative URL with the token in its `cursor` parameter).  Cursors are opaque
base64url strings that carry the query, so "if cursor is present, all other
parameters are discarded" holds.
"""

import base64
import binascii
import itertools
import json
import urllib.parse
import zlib

from . import model
from .httpcore import Api, HTTPError, Response, dump_json

JSON = "application/json"
V1_USERS_PAGE = 100
V2_DEFAULT_LIMIT = 20
V2_MAX_LIMIT = 100
WS_DEFAULT_LIMIT = 20
WS_MAX_LIMIT = 1000

_error_ids = itertools.count(1)


# ---------------------------------------------------------------- errors
def errors(status, code, title, detail):
    return Response(status, {"errors": [{"id": "fake-%08d" % next(_error_ids), "status": str(status),
                                         "code": code, "title": title, "detail": detail}]},
                    content_type=JSON)


def proxy_error(status, message):
    return Response(status, {"code": status, "message": message}, content_type=JSON)


def bad_body(message):
    return errors(400, "ADMIN-400-24", "Bad Request", message)


class Errors:
    @staticmethod
    def unauthorized(req):
        return proxy_error(401, "Unauthorized")

    @staticmethod
    def not_found_route(req):
        return errors(404, "ADMIN-404-1", "Not Found", "No such endpoint: %s %s" % (req.method, req.raw_path))

    @staticmethod
    def rate_limited(req):
        return proxy_error(429, "Too Many Requests")

    @staticmethod
    def server_error(req, status):
        if status == 503:
            return errors(503, "ADMIN-503-1", "Service Unavailable", "Please retry after the Retry-After period.")
        return errors(status, "ADMIN-500-1", "Internal Server Error", "We encountered an unexpected error.")

    @staticmethod
    def forbidden(req):
        return errors(403, "ADMIN-403-1", "Forbidden",
                      "The API key does not have the permissions required for this operation.")

    @staticmethod
    def licence(req):
        return errors(409, "ADMIN-UAM-409-3", "Product License Exceeded",
                      "You've exceeded your user limit for an app that this grants access to.")


def authenticate(req, st):
    key = req.bearer()
    if key is not None and key == st.credentials["org_api_key"]:
        req.auth = "org"
        return
    req.auth = "bad" if req.headers.get("Authorization") else "none"
    raise HTTPError(Errors.unauthorized(req))


# --------------------------------------------------------------- helpers
def check_org(req, st):
    if req.params.get("orgId") != st.org_id:
        raise HTTPError(errors(404, "ADMIN-404-2", "Not Found", "Organization not found"))


def check_directory(req, st, write=False):
    """Reads take "-" for every directory (directoryIdParam); the write
    paths declare a directoryId of their own, "Use the Get directories
    endpoint to find the directory ID", with no "-"."""
    check_org(req, st)
    d = req.params.get("directoryId")
    if d not in (("-", st.directory_id) if not write else (st.directory_id,)):
        raise HTTPError(errors(404, "ADMIN-404-10", "Not Found", "Directory not found"))


def admin_base(req):
    return req.scheme_host + "/admin"


def encode_cursor(payload, padded=False):
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    if not padded:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    # Trailing blanks (still the same JSON) make the token end in "==",
    # which a URL's query must percent-encode.
    raw += b" " * ((1 - len(raw)) % 3)
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(token, kind):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if payload.get("k") != kind or not isinstance(payload.get("o"), int) or payload["o"] < 0:
            raise ValueError
        return payload
    except (ValueError, binascii.Error, AttributeError, UnicodeDecodeError):
        raise HTTPError(errors(400, "ADMIN-400-1", "Bad Request", "Invalid cursor"))


def parse_limit(raw, default, maximum):
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise HTTPError(errors(400, "ADMIN-400-5", "Bad Request", "limit must be an integer"))
    if limit < 1 or limit > maximum:
        raise HTTPError(errors(400, "ADMIN-400-5", "Bad Request", "limit must be between 1 and %d" % maximum))
    return limit


def frag(req, st, key, build):
    """Rendered JSON of one listed object, reused until the next write."""
    return st.fragment((key, req.scheme_host), st.version, lambda: dump_json(build()))


def data_page(fragments, links, extra=None):
    """{"data":[...],"links":{...}[,...]} assembled from JSON fragments."""
    tail = {"links": links}
    if extra:
        tail.update(extra)
    return b'{"data":[' + b",".join(fragments) + b"]," + dump_json(tail)[1:]


def cursor_page(req, items, kind, filt, limit, offset):
    """Slice a v2 page and build links{self,prev,next} as cursor tokens.
    Faults: endless wraps around forever, cursor-repeat hands back the
    cursor of the current page as `next`."""
    total = len(items)
    if req.endless == "cycle" and total:
        page = [items[(offset + i) % total] for i in range(limit)]
    else:
        page = items[offset:offset + limit]
    relative = req.server.config.relative_next

    def link(o):
        token = encode_cursor({"k": kind, "o": o, "l": limit, "f": filt}, padded=relative)
        if not relative:
            return token
        # LinkPageModel: "URL to fetch the Next Page", here relative.
        return "%s?cursor=%s" % (req.raw_path, urllib.parse.quote(token, safe=""))

    links = {"self": link(offset)}
    if offset > 0:
        links["prev"] = link(max(0, offset - limit))
    if req.cursor_repeat:
        links["next"] = links["self"]
    elif offset + limit < total or req.endless:
        links["next"] = link(offset + limit)
    return page, links


def v2_paging_from_query(req, kind, filt):
    """(offset, limit, filter) for GETs: the cursor wins over everything."""
    token = req.q("cursor")
    if token:
        c = decode_cursor(token, kind)
        return c["o"], c.get("l", V2_DEFAULT_LIMIT), c.get("f", {})
    return 0, parse_limit(req.q("limit"), V2_DEFAULT_LIMIT, V2_MAX_LIMIT), filt


def v2_paging_from_body(body, kind, filt, default=V2_DEFAULT_LIMIT, maximum=V2_MAX_LIMIT):
    token = body.get("cursor")
    if token:
        if not isinstance(token, str):
            raise HTTPError(errors(400, "ADMIN-400-1", "Bad Request", "Invalid cursor"))
        c = decode_cursor(token, kind)
        return c["o"], c.get("l", default), c.get("f", {})
    return 0, parse_limit(body.get("limit"), default, maximum), filt


def body_object(req):
    body = req.json_or_empty(bad_body)
    if not isinstance(body, dict):
        raise HTTPError(bad_body("The request body must be a JSON object"))
    return body


def string_list(value, name, max_items=None):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPError(bad_body("%s must be an array of strings" % name))
    if max_items is not None and len(value) > max_items:
        raise HTTPError(bad_body("%s accepts at most %d values" % (name, max_items)))
    return value


def find_account(st, aid):
    acct = st.org_accounts.get(aid)
    if acct is None or not acct.in_directory:
        raise HTTPError(errors(404, "ADMIN-404-1", "Not Found", "User not found in the directory"))
    return acct


def find_org_group(st, gid):
    group = st.groups.get(gid)
    if group is None or group.site_local:
        raise HTTPError(errors(404, "ADMIN-404-8", "Not Found", "Group not found"))
    return group


# ------------------------------------------------------------------ v1
def org_model(req, st):
    base = admin_base(req)
    return {"id": st.org_id, "type": "orgs", "attributes": {"name": "Fake Acme"},
            "links": {"self": "%s/v1/orgs/%s" % (base, st.org_id)},
            "relationships": {
                "domains": {"links": {"related": "%s/v1/orgs/%s/domains" % (base, st.org_id)}},
                "users": {"links": {"related": "%s/v1/orgs/%s/users" % (base, st.org_id)}}}}


def list_orgs(req, st):
    if req.q("cursor"):
        decode_cursor(req.q("cursor"), "orgs")
    return Response(200, {"data": [org_model(req, st)],
                          "links": {"self": "%s/v1/orgs" % admin_base(req)}}, content_type=JSON)


def get_org(req, st):
    check_org(req, st)
    return Response(200, {"data": org_model(req, st)}, content_type=JSON)


def product_access(st, acct):
    roles = st.effective_roles(acct.account_id)
    out = []
    for ws in st.workspaces:
        if ws["id"] in roles and any(r in ("atlassian/user", "atlassian/admin") for r in roles[ws["id"]]):
            out.append(ws)
    return out


def v1_user_json(req, st, acct):
    d = {"account_id": acct.account_id, "account_type": "atlassian",
         "account_status": acct.account_status, "name": acct.name,
         "picture": "%s/%s/128" % (model.AVATAR_HOST, urllib.parse.quote(acct.account_id, safe="")),
         "email": acct.email,
         "access_billable": acct.account_status == "active" and acct.membership_status == "active",
         "links": {"self": "%s/users/%s/manage/profile" % (req.scheme_host,
                                                          urllib.parse.quote(acct.account_id, safe=""))}}
    if acct.last_active:
        d["last_active"] = acct.last_active
    products = []
    for ws in product_access(st, acct):
        key = {"jira-software": "jira-software", "confluence": "confluence"}.get(ws["typeKey"])
        if key:
            products.append({"key": key, "name": {"jira-software": "Jira Software",
                                                  "confluence": "Confluence"}[key],
                             "url": st.workspace_host(ws)})
    d["product_access"] = products
    return d


def v1_users(req, st):
    check_org(req, st)
    accounts = st.directory_accounts()
    offset = 0
    token = req.q("cursor")
    if token:
        offset = decode_cursor(token, "v1users")["o"]
    total = len(accounts)
    if req.endless == "cycle" and total:
        page = [accounts[(offset + i) % total] for i in range(V1_USERS_PAGE)]
    else:
        page = accounts[offset:offset + V1_USERS_PAGE]
    url = "%s/v1/orgs/%s/users" % (admin_base(req), st.org_id)
    links = {"self": url + ("?cursor=" + token if token else "")}
    if req.cursor_repeat:
        # Fault: hand back the cursor of the page just served, forever.
        links["next"] = "%s?cursor=%s" % (url, token or encode_cursor({"k": "v1users", "o": offset}))
    elif offset + V1_USERS_PAGE < total or req.endless:
        links["next"] = "%s?cursor=%s" % (url, encode_cursor({"k": "v1users", "o": offset + V1_USERS_PAGE}))
    if offset > 0:
        links["prev"] = "%s?cursor=%s" % (url, encode_cursor({"k": "v1users", "o": max(0, offset - V1_USERS_PAGE)}))
    frags = [frag(req, st, ("v1user", a.account_id), lambda a=a: v1_user_json(req, st, a)) for a in page]
    return Response(200, data_page(frags, links, {"meta": {"total": total}}), content_type=JSON)


def _role_request(req, st, platform_only=False):
    check_org(req, st)
    body = body_object(req)
    role = body.get("role")
    if role not in model.ROLE_IDS:
        raise HTTPError(errors(400, "ADMIN-UAM-400-1", "Bad Request", "Invalid or missing role"))
    if platform_only and role != "atlassian/org-admin":
        raise HTTPError(errors(400, "ADMIN-UAM-400-1", "Bad Request", "Only atlassian/org-admin can be assigned here"))
    acct = st.org_accounts.get(req.params["userId"])
    if acct is None or not acct.in_directory:
        raise HTTPError(errors(404, "ADMIN-UAM-404-1", "Unknown Resource",
                               "One or more user not found in the directory"))
    if acct.account_status != "active":
        raise HTTPError(errors(400, "ADMIN-UAM-400-2", "Inactive user", "The user is not active"))
    if role in model.PLATFORM_ROLES:
        resource = st.platform_resource
    else:
        resource = body.get("resource")
        if not isinstance(resource, str) or not resource:
            raise HTTPError(errors(400, "ADMIN-UAM-400-1", "Bad Request", "resource is required for role %s" % role))
        if resource not in st.workspaces_by_id:
            raise HTTPError(errors(404, "ADMIN-UAM-404-1", "Unknown Resource", "Unknown resource %s" % resource))
    return acct, resource, role


def assign_role(req, st):
    acct, resource, role = _role_request(req, st)
    st.grant_role(st.user_roles, acct.account_id, resource, role)
    return Response(204)


def revoke_role(req, st):
    acct, resource, role = _role_request(req, st)
    st.revoke_role(st.user_roles, acct.account_id, resource, role)
    return Response(204)


def assign_platform_role(req, st):
    acct, resource, role = _role_request(req, st, platform_only=True)
    st.grant_role(st.user_roles, acct.account_id, resource, role)
    return Response(204)


def revoke_platform_role(req, st):
    acct, resource, role = _role_request(req, st, platform_only=True)
    st.revoke_role(st.user_roles, acct.account_id, resource, role)
    return Response(204)


def legacy_suspend(req, st):
    check_org(req, st)
    acct = find_account(st, req.params["accountId"])
    st.set_membership(acct.account_id, "suspended")
    return Response(200, {"message": "User %s access suspended" % acct.account_id}, content_type=JSON)


def legacy_restore(req, st):
    check_org(req, st)
    acct = find_account(st, req.params["accountId"])
    st.set_membership(acct.account_id, "active")
    return Response(200, {"message": "User %s access restored" % acct.account_id}, content_type=JSON)


def legacy_remove(req, st):
    check_org(req, st)
    acct = find_account(st, req.params["accountId"])
    _remove_from_directory(st, acct)
    return Response(204)


# ------------------------------------------------------------------ v2
def directories(req, st):
    check_org(req, st)
    offset, limit, _ = v2_paging_from_query(req, "dirs", {})
    items = [{"directoryId": st.directory_id, "name": "Fake Acme directory",
              "icon": "%s/directory/icon.png" % model.AVATAR_HOST}]
    ids = req.qlist("directoryIds")
    term = (req.q("searchTerm") or "").casefold()
    aid = req.q("accountId")
    items = [d for d in items if (not ids or d["directoryId"] in ids)
             and (not term or term in d["name"].casefold())
             and (not aid or aid in st.org_accounts)]
    page, links = cursor_page(req, items, "dirs", {}, limit, offset)
    return Response(200, {"data": page, "links": links}, content_type=JSON)


USER_FILTER_KEYS = ("accountIds", "directoryIds", "groupIds", "resourceIds", "status",
                    "accountStatus", "membershipStatus", "roleIds", "emailDomains", "emails")


def _user_filter_from_query(req):
    f = {}
    for key in USER_FILTER_KEYS:
        values = req.qlist(key)
        if values:
            f[key] = values
    for key in ("searchTerm", "claimStatus", "mfaEnabled"):
        if req.q(key) not in (None, ""):
            f[key] = req.q(key)
    return f


def _user_filter_from_body(body):
    f = {}
    for key in USER_FILTER_KEYS:
        values = string_list(body.get(key), key, 100 if key == "emails" else 20)
        if values:
            f[key] = values
    if isinstance(body.get("searchTerm"), str) and body["searchTerm"]:
        f["searchTerm"] = body["searchTerm"]
    if body.get("searchTerm") and body.get("emails"):
        raise HTTPError(bad_body("searchTerm and emails are mutually exclusive"))
    if body.get("claimStatus") is not None:
        f["claimStatus"] = body["claimStatus"]
    if body.get("mfaEnabled") is not None:
        f["mfaEnabled"] = str(bool(body["mfaEnabled"])).lower()
    expand = string_list(body.get("expand"), "expand")
    return f, expand


def filtered_accounts(st, f):
    """Directory accounts matching a v2 filter, in directory order.  Group
    and resource filters start from their (indexed) member sets, so paging a
    group's members never scans the whole directory; the result is cached
    until the next write."""
    def build():
        if f.get("directoryIds") and st.directory_id not in f["directoryIds"]:
            return []
        index = st.cached(("org-index",), lambda: {a: i for i, a in enumerate(st.org_order)})
        candidates = None
        if f.get("groupIds"):
            candidates = set()
            for gid in f["groupIds"]:
                g = st.groups.get(gid)
                if g is not None and not g.site_local:
                    candidates |= g.members
        if f.get("resourceIds"):
            holders = set()
            for res in f["resourceIds"]:
                holders |= st.accounts_with_resource(res)
            candidates = holders if candidates is None else candidates & holders
        if f.get("accountIds"):
            wanted = set(f["accountIds"])
            candidates = wanted if candidates is None else candidates & wanted
        if f.get("emails"):
            wanted = {st.users_by_email.get(e.lower()) for e in f["emails"]} - {None}
            candidates = wanted if candidates is None else candidates & wanted
        if candidates is None:
            accounts = st.directory_accounts()
        else:
            ids = sorted((a for a in candidates if a in index), key=index.__getitem__)
            accounts = [st.org_accounts[a] for a in ids if st.org_accounts[a].in_directory]
        return [a for a in accounts if _account_matches(st, a, f)]
    return st.cached(("v2users", json.dumps(f, sort_keys=True)), build)


def _account_matches(st, acct, f):
    if f.get("status") and acct.status not in f["status"]:
        return False
    if f.get("accountStatus") and acct.account_status not in f["accountStatus"]:
        return False
    if f.get("membershipStatus") and acct.membership_status not in f["membershipStatus"]:
        return False
    if f.get("claimStatus") and f["claimStatus"] != "managed":
        return False
    if f.get("mfaEnabled") is not None and str(bool(acct.mfa_enabled)).lower() != str(f["mfaEnabled"]).lower():
        return False
    if f.get("emailDomains") and acct.email.rsplit("@", 1)[-1].lower() not in {d.lower() for d in f["emailDomains"]}:
        return False
    if f.get("searchTerm"):
        term = f["searchTerm"].casefold()
        if not (term in (acct.name or "").casefold() or term in acct.email.lower()
                or term in (acct.nickname or "").casefold()):
            return False
    if f.get("roleIds"):
        roles = st.effective_roles(acct.account_id)
        if not any(r in f["roleIds"] for per in roles.values() for r in per):
            return False
    return True


def v2_user_json(req, st, acct, expand=(), details=False):
    quoted = urllib.parse.quote(acct.account_id, safe="")
    d = {"accountId": acct.account_id, "accountType": "atlassian",
         "accountStatus": acct.account_status, "membershipStatus": acct.membership_status,
         "status": acct.status, "name": acct.name, "nickname": acct.nickname,
         "email": acct.email, "emailVerified": True, "claimStatus": "managed",
         "managementSource": acct.management_source, "mfaEnabled": bool(acct.mfa_enabled),
         "addedToOrg": acct.added_to_org,
         "avatar": "%s/%s/48" % (model.AVATAR_HOST, quoted),
         "picture": "%s/%s/128" % (model.AVATAR_HOST, quoted),
         "timeZone": acct.time_zone or "UTC"}
    if acct.job_title:
        d["jobTitle"] = acct.job_title
    if acct.department:
        d["department"] = acct.department
    if not details:
        d["links"] = {"self": "%s/v2/orgs/%s/directories/%s/users/%s"
                              % (admin_base(req), st.org_id, st.directory_id, quoted)}
    if "groups" in expand:
        groups = [st.groups[g] for g in sorted(st.groups_of(acct.account_id)) if g in st.groups]
        # MultiDirectoryUserGroup.id is the group's ARI (the spec's
        # example), while the group listing and groups/search give the
        # bare id: a client must resolve one to the other.
        d["groups"] = [{"id": model.group_ari(g.group_id), "name": g.name,
                        "description": g.description or None}
                       for g in groups if not g.site_local]
    roles = st.effective_roles(acct.account_id) if (expand or details) else {}
    if "platformRoles" in expand or details:
        d["platformRoles"] = sorted(r for r in roles.get(st.platform_resource, {}) if r in model.PLATFORM_ROLES)
    if "productAccess" in expand:
        d["productAccess"] = [{"id": ws["id"], "key": ws["typeKey"]} for ws in product_access(st, acct)]
    if "counts.resources" in expand:
        d["counts"] = {"resources": len([r for r in roles if r != st.platform_resource])}
    return d


def _users_response(req, st, f, expand, offset, limit):
    accounts = filtered_accounts(st, f)
    page, links = cursor_page(req, accounts, "v2users", {"f": f, "x": sorted(expand)}, limit, offset)
    key = tuple(sorted(expand))
    frags = [frag(req, st, ("v2user", a.account_id, key), lambda a=a: v2_user_json(req, st, a, expand))
             for a in page]
    return Response(200, data_page(frags, links), content_type=JSON)


def v2_users_get(req, st):
    check_directory(req, st)
    f = _user_filter_from_query(req)
    expand = req.qlist("expand")
    offset, limit, carried = v2_paging_from_query(req, "v2users", {"f": f, "x": sorted(expand)})
    return _users_response(req, st, carried.get("f", {}), carried.get("x", []), offset, limit)


def v2_users_search(req, st):
    check_directory(req, st)
    body = body_object(req)
    f, expand = _user_filter_from_body(body)
    offset, limit, carried = v2_paging_from_body(body, "v2users", {"f": f, "x": sorted(expand)})
    return _users_response(req, st, carried.get("f", {}), carried.get("x", []), offset, limit)


def v2_users_count(req, st):
    """getDirectoryUsersCount: {"count": N} of the users the same filter
    lists (query parameters, as GET .../users takes them)."""
    check_directory(req, st)
    return Response(200, {"count": len(filtered_accounts(st, _user_filter_from_query(req)))},
                    content_type=JSON)


def v2_user_details(req, st):
    check_directory(req, st)
    acct = find_account(st, req.params["accountId"])
    return Response(200, {"data": v2_user_json(req, st, acct, details=True)}, content_type=JSON)


def _role_assignment_filter(req):
    return {"resourceIds": req.qlist("resourceIds"), "resourceOwners": req.qlist("resourceOwners"),
            "roleIds": req.qlist("roleIds")}


def _resource_owner(st, resource):
    ws = st.workspaces_by_id.get(resource)
    return ws["resourceOwner"] if ws else "platform"


# The Jira products of a site. The workspace listing names the site once,
# by its family ARI ari:cloud:jira::site/<cloudId>; with --product-aris a
# role-assignment read names it by the product the role is on instead, as
# the spec's ResourceId example does (ari:cloud:jira-core::site/1, owner
# jira-core).
JIRA_PRODUCTS = ("jira-software", "jira-servicedesk", "jira-core", "jira-product-discovery")


def _served_resources(req, st, principal, resource, roles):
    """[(resourceId, resourceOwner, [role])]: how a role-assignment read
    names `roles` of `principal` on `resource`. One item normally; with
    --product-aris one per Jira product, each role on a product picked by
    a hash of principal and role (stable across runs and requests)."""
    ws = st.workspaces_by_id.get(resource)
    if not (req.server.config.product_aris and ws and ws["type"] == "jira"):
        return [(resource, _resource_owner(st, resource), sorted(roles))]
    per = {}
    for role in roles:
        h = zlib.crc32(("%s %s" % (principal, role)).encode())
        per.setdefault(JIRA_PRODUCTS[h % len(JIRA_PRODUCTS)], []).append(role)
    return [(resource.replace("ari:cloud:jira:", "ari:cloud:%s:" % product, 1), product, sorted(rs))
            for product, rs in sorted(per.items())]


def _keep_resource(resource, served, owner, f):
    """The resourceIds filter takes either form of a Jira site's ARI."""
    if f.get("resourceIds") and resource not in f["resourceIds"] and served not in f["resourceIds"]:
        return False
    if f.get("resourceOwners") and owner not in f["resourceOwners"]:
        return False
    return True


def user_role_assignments(req, st):
    check_directory(req, st)
    acct = find_account(st, req.params["accountId"])
    offset, limit, f = v2_paging_from_query(req, "uroles:" + acct.account_id, _role_assignment_filter(req))
    roles = st.effective_roles(acct.account_id)
    items = []
    for resource in sorted(roles):
        per = {r: m for r, m in roles[resource].items() if not f.get("roleIds") or r in f["roleIds"]}
        platform = resource == st.platform_resource
        for served, owner, names in _served_resources(req, st, acct.account_id, resource, per):
            if not names or not _keep_resource(resource, served, owner, f):
                continue
            items.append({"resourceId": served, "resourceOwner": owner,
                          "directoryId": None if platform else st.directory_id,
                          "roles": names,
                          "roleAssignments": [{"role": r, "roleAssignmentMethods": sorted(per[r])}
                                              for r in names],
                          "userDirectoryStatus": None if platform else acct.membership_status})
    page, links = cursor_page(req, items, "uroles:" + acct.account_id, f, limit, offset)
    return Response(200, {"data": page, "links": links}, content_type=JSON)


def _lifecycle_check(req, st):
    check_directory(req, st, write=True)
    return find_account(st, req.params["accountId"])


def suspend_user(req, st):
    acct = _lifecycle_check(req, st)
    st.set_membership(acct.account_id, "suspended")
    return Response(204)


def restore_user(req, st):
    acct = _lifecycle_check(req, st)
    st.set_membership(acct.account_id, "active")
    return Response(204)


def _remove_from_directory(st, acct):
    acct.in_directory = False
    acct.membership_status = "no_membership"
    for gid in list(st.groups_of(acct.account_id)):
        group = st.groups.get(gid)
        if group is not None and not group.site_local and acct.account_id in group.members:
            st.remove_member(group, acct.account_id)
    st.user_roles.pop(acct.account_id, None)
    st.bump()


def remove_user(req, st):
    acct = _lifecycle_check(req, st)
    _remove_from_directory(st, acct)
    return Response(204)


# ---------------------------------------------------------------- groups
def group_json(req, st, g, details=False):
    res = {r for r in st.group_roles.get(g.group_id, {})}
    d = {"id": g.group_id, "name": g.name, "description": g.description or "",
         "directoryId": st.directory_id,
         "counts": {"users": len([a for a in g.members if a in st.org_accounts]), "resources": len(res)},
         "managedBy": "external" if g.external_synced else "admins",
         "externalSynced": g.external_synced,
         "managementAccess": {"readable": True, "modifiable": not g.external_synced,
                              "deletable": not g.external_synced},
         "links": {"self": "%s/v2/orgs/%s/directories/%s/groups/%s"
                           % (admin_base(req), st.org_id, st.directory_id, g.group_id)}}
    return d


def group_frag(req, st, g):
    return frag(req, st, ("group", g.group_id), lambda: group_json(req, st, g))


GROUP_FILTER_KEYS = ("groupIds", "accountIds", "directoryIds", "resourceIds", "resourceOwners",
                     "roleIds", "groupNames")


def filtered_groups(st, f):
    def build():
        if f.get("directoryIds") and st.directory_id not in f["directoryIds"]:
            return []
        groups = st.org_groups()
        if f.get("groupIds"):
            wanted = set(f["groupIds"])
            groups = [g for g in groups if g.group_id in wanted]
        if f.get("groupNames"):
            wanted = {n.casefold() for n in f["groupNames"]}
            groups = [g for g in groups if g.name.casefold() in wanted]
        if f.get("accountIds"):
            containing = set()
            for aid in f["accountIds"]:
                containing |= set(st.groups_of(aid))
            groups = [g for g in groups if g.group_id in containing]
        if f.get("resourceIds"):
            holders = set()
            for res in f["resourceIds"]:
                holders |= st.groups_with_resource(res)
            groups = [g for g in groups if g.group_id in holders]
        if f.get("resourceOwners") or f.get("roleIds"):
            def keep(g):
                per = st.group_roles.get(g.group_id, {})
                for res, roles in per.items():
                    if f.get("resourceOwners") and _resource_owner(st, res) not in f["resourceOwners"]:
                        continue
                    if f.get("roleIds") and not roles & set(f["roleIds"]):
                        continue
                    return True
                return False
            groups = [g for g in groups if keep(g)]
        if f.get("searchTerm"):
            term = f["searchTerm"].casefold()
            groups = [g for g in groups if term in g.name.casefold()]
        if f.get("desc"):
            groups = list(reversed(groups))
        return groups
    return st.cached(("v2groups", json.dumps(f, sort_keys=True)), build)


def _sort_desc(sort_by):
    return bool(sort_by) and isinstance(sort_by[0], dict) and sort_by[0].get("direction") == "desc"


def v2_groups_get(req, st):
    check_directory(req, st)
    f = {k: req.qlist(k) for k in GROUP_FILTER_KEYS if req.qlist(k)}
    if req.q("searchTerm"):
        f["searchTerm"] = req.q("searchTerm")
    offset, limit, f = v2_paging_from_query(req, "v2groups", f)
    page, links = cursor_page(req, filtered_groups(st, f), "v2groups", f, limit, offset)
    return Response(200, data_page([group_frag(req, st, g) for g in page], links), content_type=JSON)


def v2_groups_search(req, st):
    check_directory(req, st)
    body = body_object(req)
    f = {}
    for key in GROUP_FILTER_KEYS:
        values = string_list(body.get(key), key, 100 if key == "groupNames" else 20)
        if values:
            f[key] = values
    if isinstance(body.get("searchTerm"), str) and body["searchTerm"]:
        f["searchTerm"] = body["searchTerm"]
    if _sort_desc(body.get("sortBy")):
        f["desc"] = True
    offset, limit, f = v2_paging_from_body(body, "v2groups", f)
    page, links = cursor_page(req, filtered_groups(st, f), "v2groups", f, limit, offset)
    return Response(200, data_page([group_frag(req, st, g) for g in page], links), content_type=JSON)


def v2_groups_count(req, st):
    """getGroupsCount: {"count": N} of the groups the same filter lists."""
    check_directory(req, st)
    f = {k: req.qlist(k) for k in GROUP_FILTER_KEYS if req.qlist(k)}
    if req.q("searchTerm"):
        f["searchTerm"] = req.q("searchTerm")
    return Response(200, {"count": len(filtered_groups(st, f))}, content_type=JSON)


def v2_group_get(req, st):
    check_directory(req, st)
    g = find_org_group(st, req.params["groupId"])
    return Response(200, {"data": group_json(req, st, g)}, content_type=JSON)


def v2_group_create(req, st):
    check_directory(req, st, write=True)
    body = body_object(req)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HTTPError(bad_body("name is required"))
    if st.find_group_by_name(name) is not None:
        raise HTTPError(errors(409, "ADMIN-409-1", "Conflict", "A group named '%s' already exists" % name))
    desc = body.get("description") if isinstance(body.get("description"), str) else ""
    g = st.add_group(name, desc)
    return Response(201, group_json(req, st, g), content_type=JSON)


def _refuse_synced(g):
    if g.external_synced:
        raise HTTPError(errors(400, "ADMIN-400-4", "Bad Request",
                               "Group '%s' is synced from an identity provider; manage it there." % g.name))


def v2_group_delete(req, st):
    check_directory(req, st, write=True)
    g = find_org_group(st, req.params["groupId"])
    _refuse_synced(g)
    st.delete_group(g)
    return Response(204)


def add_membership(req, st):
    check_directory(req, st, write=True)
    g = find_org_group(st, req.params["groupId"])
    body = body_object(req)
    aid = body.get("accountId")
    if not isinstance(aid, str) or not aid:
        raise HTTPError(bad_body("accountId is required"))
    find_account(st, aid)
    _refuse_synced(g)
    if aid in g.members:
        raise HTTPError(errors(409, "ADMIN-UAM-409-2", "Resource Conflicts", "User is already a member of the group"))
    st.add_member(g, aid)
    return Response(204)


def remove_membership(req, st):
    check_directory(req, st, write=True)
    g = find_org_group(st, req.params["groupId"])
    aid = req.params["accountId"]
    find_account(st, aid)
    _refuse_synced(g)
    if aid not in g.members:
        raise HTTPError(errors(404, "ADMIN-404-1", "Not Found", "User is not a member of the group"))
    st.remove_member(g, aid)
    return Response(204)


def group_role_assignments(req, st):
    check_directory(req, st)
    g = find_org_group(st, req.params["groupId"])
    offset, limit, f = v2_paging_from_query(req, "groles:" + g.group_id, _role_assignment_filter(req))
    items = []
    per = st.group_roles.get(g.group_id, {})
    for resource in sorted(per):
        roles = [r for r in per[resource] if not f.get("roleIds") or r in f["roleIds"]]
        for served, owner, names in _served_resources(req, st, g.group_id, resource, roles):
            if names and _keep_resource(resource, served, owner, f):
                items.append({"resourceId": served, "resourceOwner": owner,
                              "roles": names, "defaultRole": None})
    page, links = cursor_page(req, items, "groles:" + g.group_id, f, limit, offset)
    return Response(200, {"data": page, "links": links}, content_type=JSON)


def _group_role_body(req, st):
    check_directory(req, st, write=True)
    g = find_org_group(st, req.params["groupId"])
    body = body_object(req)
    resource, role = body.get("resourceId"), body.get("roleId")
    if role not in model.GROUP_ROLE_IDS or not isinstance(resource, str):
        raise HTTPError(bad_body("resourceId and a valid roleId are required"))
    if resource not in st.workspaces_by_id and resource != st.platform_resource:
        raise HTTPError(errors(404, "ADMIN-UAM-404-1", "Unknown Resource", "Unknown resource %s" % resource))
    return g, resource, role


def group_role_assign(req, st):
    g, resource, role = _group_role_body(req, st)
    st.grant_role(st.group_roles, g.group_id, resource, role)
    return Response(200, None)


def group_role_revoke(req, st):
    g, resource, role = _group_role_body(req, st)
    st.revoke_role(st.group_roles, g.group_id, resource, role)
    return Response(204)


# ------------------------------------------------------------ workspaces
WS_FIELDS = ("id", "type", "typeKey", "name", "hostUrl", "status", "realm")


def _ws_value(st, ws, field):
    if field == "hostUrl":
        return st.workspace_host(ws)
    if field == "status":
        return "online"
    if field == "realm":
        return "us"
    return ws.get(field)


def _ws_query_matches(st, ws, query):
    if query is None:
        return True
    if not isinstance(query, dict):
        raise HTTPError(Response(400, {"code": "ADMIN-400-24", "status": "400", "title": "Bad Request",
                                       "detail": "query must be an object"}, content_type=JSON))
    if "and" in query:
        return all(_ws_query_matches(st, ws, q) for q in query["and"] or [])
    if "nor" in query:
        return not any(_ws_query_matches(st, ws, q) for q in query["nor"] or [])
    if "field" in query:
        field = query["field"] or {}
        values = field.get("values") or []
        return _ws_value(st, ws, field.get("name")) in values
    if "searchWorkspaces" in query or "value" in query:
        term = str(query.get("value") or query.get("searchWorkspaces") or "").casefold()
        return term in ws["name"].casefold() or term in (st.workspace_host(ws) or "").casefold()
    return True


def workspace_json(req, st, ws):
    return {"id": ws["id"], "type": "workspace",
            "attributes": {"name": ws["name"], "typeKey": ws["typeKey"], "type": ws["type"],
                           "owner": st.org_id, "status": "online", "statusDetails": [],
                           "icons": {}, "avatars": {}, "labels": [],
                           "sandbox": {"type": "NONE"}, "createdAt": ws["createdAt"],
                           "hostUrl": st.workspace_host(ws), "realm": "us", "regions": ["us-east-1"]},
            "links": {"self": "%s/v2/orgs/%s/workspaces/%s" % (admin_base(req), st.org_id,
                                                              urllib.parse.quote(ws["id"], safe=""))},
            "relationships": {}}


def workspaces(req, st):
    check_org(req, st)
    body = body_object(req)
    token = body.get("cursor")
    if token:
        if not isinstance(token, str):
            raise HTTPError(errors(400, "ADMIN-400-1", "Bad Request", "Invalid cursor"))
        c = decode_cursor(token, "ws")
        offset, limit, spec = c["o"], c.get("l", WS_DEFAULT_LIMIT), c.get("f", {})
    else:
        try:
            limit = parse_limit(body.get("limit"), WS_DEFAULT_LIMIT, WS_MAX_LIMIT)
        except HTTPError:
            raise HTTPError(Response(400, {"code": "ADMIN-400-5", "status": "400", "title": "Bad Request",
                                           "detail": "limit must be between 1 and %d" % WS_MAX_LIMIT},
                                     content_type=JSON))
        offset, spec = 0, {"q": body.get("query"), "s": body.get("sort")}
    items = [ws for ws in st.workspaces if _ws_query_matches(st, ws, spec.get("q"))]
    for sort in reversed(spec.get("s") or []):
        if isinstance(sort, dict) and sort.get("field") in WS_FIELDS:
            items.sort(key=lambda w, f=sort["field"]: str(_ws_value(st, w, f) or ""),
                       reverse=sort.get("order") == "desc")
    page, links = cursor_page(req, items, "ws", spec, limit, offset)
    meta = {"pageSize": limit, "startIndex": offset if page else None,
            "endIndex": offset + len(page) - 1 if page else None, "total": len(items)}
    return Response(200, {"data": [workspace_json(req, st, ws) for ws in page], "links": links,
                          "meta": meta}, content_type=JSON)


def build():
    api = Api("org", authenticate, Errors)
    r = api.route
    o = "/v1/orgs/(?P<orgId>[^/]+)"
    d = "/v2/orgs/(?P<orgId>[^/]+)/directories/(?P<directoryId>[^/]+)"
    r("GET", "/v1/orgs", list_orgs)
    r("GET", o, get_org)
    r("GET", o + "/users", v1_users)
    r("POST", o + "/users/(?P<userId>[^/]+)/roles/assign", assign_role)
    r("POST", o + "/users/(?P<userId>[^/]+)/roles/revoke", revoke_role)
    r("POST", o + "/users/(?P<userId>[^/]+)/role-assignments/assign", assign_platform_role)
    r("POST", o + "/users/(?P<userId>[^/]+)/role-assignments/revoke", revoke_platform_role)
    r("POST", o + "/directory/users/(?P<accountId>[^/]+)/suspend-access", legacy_suspend)
    r("POST", o + "/directory/users/(?P<accountId>[^/]+)/restore-access", legacy_restore)
    r("DELETE", o + "/directory/users/(?P<accountId>[^/]+)", legacy_remove)
    r("GET", "/v2/orgs/(?P<orgId>[^/]+)/directories", directories)
    r("POST", "/v2/orgs/(?P<orgId>[^/]+)/workspaces", workspaces)
    r("GET", d + "/users", v2_users_get)
    r("POST", d + "/users/search", v2_users_search)
    r("GET", d + "/users/count", v2_users_count)
    r("GET", d + "/users/(?P<accountId>[^/]+)", v2_user_details)
    r("DELETE", d + "/users/(?P<accountId>[^/]+)", remove_user)
    r("GET", d + "/users/(?P<accountId>[^/]+)/role-assignments", user_role_assignments)
    r("POST", d + "/users/(?P<accountId>[^/]+)/suspend", suspend_user)
    r("POST", d + "/users/(?P<accountId>[^/]+)/restore", restore_user)
    r("GET", d + "/groups", v2_groups_get)
    r("POST", d + "/groups", v2_group_create)
    r("POST", d + "/groups/search", v2_groups_search)
    r("GET", d + "/groups/count", v2_groups_count)
    r("GET", d + "/groups/(?P<groupId>[^/]+)", v2_group_get)
    r("DELETE", d + "/groups/(?P<groupId>[^/]+)", v2_group_delete)
    r("POST", d + "/groups/(?P<groupId>[^/]+)/memberships", add_membership)
    r("DELETE", d + "/groups/(?P<groupId>[^/]+)/memberships/(?P<accountId>[^/]+)", remove_membership)
    r("GET", d + "/groups/(?P<groupId>[^/]+)/role-assignments", group_role_assignments)
    r("POST", d + "/groups/(?P<groupId>[^/]+)/role-assignments/assign", group_role_assign)
    r("POST", d + "/groups/(?P<groupId>[^/]+)/role-assignments/revoke", group_role_revoke)
    return api


# ======================================================================
# User management API: /users/{account_id}/manage/...
# ======================================================================

def um_error(status, key, **extra):
    body = {"key": key}
    body.update(extra)
    return Response(status, body, content_type=JSON)


class UMErrors:
    @staticmethod
    def unauthorized(req):
        return um_error(401, "unauthorized")

    @staticmethod
    def not_found_route(req):
        return um_error(404, "notFound")

    @staticmethod
    def rate_limited(req):
        return um_error(429, "rateLimited")

    @staticmethod
    def server_error(req, status):
        return um_error(status, "internalServerError" if status == 500 else "serviceUnavailable")

    @staticmethod
    def forbidden(req):
        return um_error(403, "forbidden")

    @staticmethod
    def licence(req):
        return um_error(409, "conflict.lifecycleErrors",
                        context={"message": "Licence limit reached", "accountId": "",
                                 "errorCodes": [{"code": "LICENCE_LIMIT"}]})


def um_authenticate(req, st):
    key = req.bearer()
    if key is not None and key == st.credentials["org_api_key"]:
        req.auth = "org"
        return
    req.auth = "bad" if req.headers.get("Authorization") else "none"
    raise HTTPError(UMErrors.unauthorized(req))


def _managed(st, aid):
    acct = st.org_accounts.get(aid)
    if acct is None:
        raise HTTPError(um_error(404, "accountNotFound"))
    return acct


def um_profile(req, st):
    acct = _managed(st, req.params["account_id"])
    return Response(200, {"account": {
        "account_id": acct.account_id, "account_status": acct.account_status,
        "account_type": "atlassian", "name": acct.name, "nickname": (acct.nickname or acct.name)[:30],
        "email": acct.email,
        "picture": "%s/%s/128" % (model.AVATAR_HOST, urllib.parse.quote(acct.account_id, safe="")),
        "zoneinfo": acct.time_zone or "UTC", "locale": "en-US",
        "extended_profile": {k: v for k, v in (("job_title", acct.job_title),
                                                ("department", acct.department)) if v}}},
        content_type=JSON)


def um_disable(req, st):
    acct = _managed(st, req.params["account_id"])
    if req.body and req.body.strip():
        body = req.json(lambda m: um_error(400, "badRequest", errorDetail=m))
        if not isinstance(body, dict):
            raise HTTPError(um_error(400, "badRequest"))
    if acct.account_id == st.myself:
        raise HTTPError(um_error(403, "forbidden.action",
                                 context={"allowed": False, "reason": {"key": "administrative.notMyself"}}))
    st.set_account_active(acct.account_id, False)
    return Response(204)


def um_enable(req, st):
    acct = _managed(st, req.params["account_id"])
    if acct.account_status == "closed":
        raise HTTPError(um_error(409, "conflict.lifecycleErrors", context={
            "message": "The account is not eligible to be enabled", "accountId": acct.account_id,
            "errorCodes": [{"code": "ACCOUNT_CLOSED", "message": "The account is closed"}]}))
    st.set_account_active(acct.account_id, True)
    return Response(204)


def um_delete(req, st):
    acct = _managed(st, req.params["account_id"])
    if acct.account_id == st.myself:
        raise HTTPError(um_error(403, "forbidden.action",
                                 context={"allowed": False, "reason": {"key": "administrative.notMyself"}}))
    st.set_account_active(acct.account_id, False)
    acct.account_status = "closed"
    st.bump()
    return Response(200, {"message": "The account %s is scheduled for deletion" % acct.account_id},
                    content_type=JSON)


def build_user_management():
    api = Api("usermgmt", um_authenticate, UMErrors)
    u = "/users/(?P<account_id>[^/]+)/manage"
    api.route("GET", u + "/profile", um_profile)
    api.route("POST", u + "/lifecycle/disable", um_disable)
    api.route("POST", u + "/lifecycle/enable", um_enable)
    api.route("POST", u + "/lifecycle/delete", um_delete)
    return api
