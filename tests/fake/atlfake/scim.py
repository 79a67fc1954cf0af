"""Atlassian user provisioning (SCIM 2.0) under /scim/directory/<id>.

Shapes follow atlassian-user-provisioning-scim.openapi.json.  Atlassian
specifics reproduced: only single `eq` filters (userName/externalId for
users, displayName for groups), DELETE deactivates and the user then 404s,
the atlassian-external extension carries the accountId, an existing managed
account with the same email is linked instead of created, 401/403 use the
`Failure` shape and everything else the SCIM `Error` shape.
"""

import itertools
import re

from . import model
from .httpcore import Api, HTTPError, Response, dump_json

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ATLASSIAN = "urn:scim:schemas:extension:atlassian-external:1.0"
DEFAULT_COUNT = 100
MAX_COUNT = 100

_trace = itertools.count(1)


def content_type(req):
    """Both media types are accepted and returned; answer in the caller's."""
    accept = (req.headers.get("Accept") or "") + (req.headers.get("Content-Type") or "")
    return "application/scim+json" if "scim+json" in accept else "application/json"


def scim_error(req, status, detail, scim_type=None):
    body = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return Response(status, body, content_type=content_type(req))


def failure(req, status, message):
    return Response(status, {"error": message, "traceId": "%016x" % next(_trace)},
                    content_type=content_type(req))


class Errors:
    @staticmethod
    def unauthorized(req):
        return failure(req, 401, "Unauthorized")

    @staticmethod
    def not_found_route(req):
        return scim_error(req, 404, "Resource not found")

    @staticmethod
    def rate_limited(req):
        return scim_error(req, 429, "Too many requests. You can retry calls after the Retry-After period.")

    @staticmethod
    def server_error(req, status):
        return scim_error(req, status, "An unexpected error occurred. You can retry calls.")

    @staticmethod
    def forbidden(req):
        return failure(req, 403, "Forbidden")

    @staticmethod
    def licence(req):
        return scim_error(req, 409, "You've exceeded your user limit for an app in this directory.")


def authenticate(req, st):
    token = req.bearer()
    if token is None or token != st.credentials["scim_token"]:
        req.auth = "bad" if req.headers.get("Authorization") else "none"
        raise HTTPError(Errors.unauthorized(req))
    req.auth = "scim"
    if req.params.get("directoryId") != st.credentials["scim_directory_id"]:
        # The SCIM key is scoped to exactly one directory.
        raise HTTPError(failure(req, 403, "Forbidden"))


def scim_base(req, st):
    return "%s/scim/directory/%s" % (req.scheme_host, st.credentials["scim_directory_id"])


def bad_syntax(req):
    return lambda message: scim_error(req, 400, message, "invalidSyntax")


def body_object(req):
    body = req.json(bad_syntax(req))
    if not isinstance(body, dict):
        raise HTTPError(scim_error(req, 400, "The request body must be a JSON object", "invalidSyntax"))
    return body


# ---------------------------------------------------------------- render
def user_json(req, st, s):
    base = scim_base(req, st)
    groups = []
    for gid in sorted(st.groups_of(s.account_id)):
        sg_id = st.scim_group_by_name.get(st.groups[gid].name.casefold()) if gid in st.groups else None
        if sg_id and not st.scim_groups[sg_id].deleted:
            groups.append({"value": sg_id, "display": st.groups[gid].name, "type": "direct",
                           "$ref": "%s/Groups/%s" % (base, sg_id)})
    formatted = " ".join(p for p in (s.given_name, s.family_name) if p)
    d = {"schemas": [USER_SCHEMA, ENTERPRISE, ATLASSIAN],
         "id": s.id, "userName": s.user_name,
         "emails": s.emails or [],
         "name": {"formatted": formatted, "givenName": s.given_name or "", "familyName": s.family_name or ""},
         "displayName": s.display_name or formatted,
         "active": bool(s.active),
         "phoneNumbers": s.phone_numbers or [],
         "groups": groups,
         ENTERPRISE: dict(s.enterprise or {}),
         ATLASSIAN: {"atlassianAccountId": s.account_id},
         "meta": {"resourceType": "USER", "location": "%s/Users/%s" % (base, s.id),
                  "created": s.created, "lastModified": s.last_modified}}
    for attr, key in (("external_id", "externalId"), ("nick_name", "nickName"), ("title", "title"),
                      ("preferred_language", "preferredLanguage"), ("department", "department"),
                      ("organization", "organization"), ("timezone", "timezone")):
        value = getattr(s, attr)
        if value:
            d[key] = value
    return project_attributes(req, d)


def user_frag(req, st, s):
    """A listed user as JSON bytes, reused until the next write."""
    key = ("scimuser", req.scheme_host, s.id, req.q("attributes"), req.q("excludedAttributes"))
    return st.fragment(key, st.version, lambda: dump_json(user_json(req, st, s)))


def group_json(req, st, sg):
    base = scim_base(req, st)
    group = st.groups.get(sg.group_id)
    members = []
    if group is not None:
        for aid in st.sorted_members(group):
            sid = st.scim_by_account.get(aid)
            if sid and not st.scim_users[sid].deleted:
                members.append({"value": sid, "display": st.scim_users[sid].display_name,
                                 "type": "User", "$ref": "%s/Users/%s" % (base, sid)})
    d = {"schemas": [GROUP_SCHEMA], "id": sg.id, "displayName": sg.display_name, "members": members,
         "meta": {"resourceType": "GROUP", "location": "%s/Groups/%s" % (base, sg.id),
                  "created": sg.created, "lastModified": sg.last_modified}}
    if sg.external_id:
        d["externalId"] = sg.external_id
    return project_attributes(req, d)


def project_attributes(req, d):
    """attributes= / excludedAttributes= on top-level attributes; id and
    schemas are always returned (RFC 7644 §3.4.2.5)."""
    wanted = [a.strip() for a in (req.q("attributes") or "").split(",") if a.strip()]
    excluded = {a.strip().lower() for a in (req.q("excludedAttributes") or "").split(",") if a.strip()}
    if wanted:
        keep = {w.lower().split(".")[0] for w in wanted} | {"id", "schemas"}
        d = {k: v for k, v in d.items() if k.lower() in keep}
    if excluded:
        d = {k: v for k, v in d.items() if k.lower() not in excluded or k in ("id", "schemas")}
    return d


# ---------------------------------------------------------------- filter
FILTER_RE = re.compile(r'^\s*([A-Za-z.:0-9]+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


def parse_filter(req, allowed):
    raw = req.q("filter")
    if raw is None or raw.strip() == "":
        return None
    m = FILTER_RE.match(raw)
    if not m or m.group(1).lower() not in allowed:
        raise HTTPError(scim_error(req, 400, "Unsupported filter: only '%s eq \"value\"' is supported"
                                   % " or ".join(sorted(allowed)), "invalidFilter"))
    value = m.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return m.group(1).lower(), value


def list_window(req):
    def number(name, default):
        raw = req.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(scim_error(req, 400, "%s must be an integer" % name, "invalidValue"))
    start = max(1, number("startIndex", 1))
    count = min(MAX_COUNT, max(0, number("count", DEFAULT_COUNT)))
    return start, count


def list_response(req, items, render):
    start, count = list_window(req)
    total = len(items)
    if req.endless and total and count:
        page = [items[(start - 1 + i) % total] for i in range(count)]
        total = start - 1 + len(page) + count    # always "one more page"
    else:
        page = items[start - 1:start - 1 + count]
    head = {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start, "itemsPerPage": len(page)}
    body = dump_json(head)[:-1] + b',"Resources":[' + b",".join(render(x) for x in page) + b"]}"
    return Response(200, body, content_type=content_type(req))


# ----------------------------------------------------------------- users
def live_users(st):
    return st.cached(("scim-users",), lambda: [st.scim_users[i] for i in st.scim_order
                                               if not st.scim_users[i].deleted])


def list_users(req, st):
    flt = parse_filter(req, {"username", "externalid"})
    if flt is None:
        items = live_users(st)
    elif flt[0] == "username":
        sid = st.scim_by_username.get(flt[1].lower())
        items = [st.scim_users[sid]] if sid and not st.scim_users[sid].deleted else []
    else:
        items = [s for s in live_users(st) if s.external_id == flt[1]]
    return list_response(req, items, lambda s: user_frag(req, st, s))


def find_user(req, st):
    s = st.scim_users.get(req.params["userId"])
    if s is None or s.deleted:
        raise HTTPError(scim_error(req, 404, "User not found"))
    return s


def get_user(req, st):
    return Response(200, user_json(req, st, find_user(req, st)), content_type=content_type(req))


def _primary_email(body):
    emails = body.get("emails")
    if isinstance(emails, list):
        for e in emails:
            if isinstance(e, dict) and e.get("primary") and isinstance(e.get("value"), str):
                return e["value"]
        for e in emails:
            if isinstance(e, dict) and isinstance(e.get("value"), str):
                return e["value"]
    return body.get("userName")


def _verified(email):
    domain = email.rsplit("@", 1)[-1].lower()
    return any(domain == d or domain.endswith("." + d) for d in model.VERIFIED_DOMAINS)


def _bool(req, value, name):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"   # Azure AD sends "False" as a string
    raise HTTPError(scim_error(req, 400, "%s must be a boolean" % name, "invalidValue"))


def _apply_user_fields(req, s, body, replace):
    """Copy ScimUser attributes from a POST/PUT body onto a record."""
    name = body.get("name") if isinstance(body.get("name"), dict) else {}
    simple = (("externalId", "external_id"), ("displayName", "display_name"), ("nickName", "nick_name"),
              ("title", "title"), ("preferredLanguage", "preferred_language"),
              ("department", "department"), ("organization", "organization"), ("timezone", "timezone"))
    for key, attr in simple:
        if key in body or replace:
            value = body.get(key)
            setattr(s, attr, value if isinstance(value, str) else None)
    if "name" in body or replace:
        s.given_name = name.get("givenName") if isinstance(name.get("givenName"), str) else None
        s.family_name = name.get("familyName") if isinstance(name.get("familyName"), str) else None
    if "emails" in body or replace:
        s.emails = [e for e in body.get("emails") or [] if isinstance(e, dict)]
    if "phoneNumbers" in body or replace:
        s.phone_numbers = [p for p in body.get("phoneNumbers") or [] if isinstance(p, dict)]
    if ENTERPRISE in body or replace:
        ent = body.get(ENTERPRISE)
        s.enterprise = ent if isinstance(ent, dict) else {}
    if not s.display_name:
        s.display_name = " ".join(p for p in (s.given_name, s.family_name) if p) or s.user_name


def _sync_profile(st, s):
    """The IdP owns the managed profile: push the display name through."""
    acct = st.org_accounts.get(s.account_id)
    if acct is not None and s.display_name:
        acct.name = s.display_name
    user = st.users.get(s.account_id)
    if user is not None and s.display_name and user.display_name != s.display_name:
        user.display_name = s.display_name
        user.rev += 1
        for gid in user.groups:
            if gid in st.groups:
                st.groups[gid].rev += 1
    st.bump()


def create_user(req, st):
    body = body_object(req)
    user_name = body.get("userName")
    if not isinstance(user_name, str) or not user_name.strip():
        raise HTTPError(scim_error(req, 400, "userName is required", "invalidValue"))
    email = _primary_email(body) or user_name
    if not isinstance(email, str) or "@" not in email:
        raise HTTPError(scim_error(req, 400, "A valid email address is required", "invalidValue"))
    if not _verified(email):
        raise HTTPError(scim_error(req, 400, "The email domain of %s is not verified for this organization"
                                   % email, "invalidValue"))
    existing = st.scim_by_username.get(user_name.lower())
    if existing and not st.scim_users[existing].deleted:
        raise HTTPError(scim_error(req, 409, "A user with userName %s already exists in this directory"
                                   % user_name, "uniqueness"))
    active = _bool(req, body.get("active", True), "active")
    now = model.now_iso()
    s = model.ScimUser(id=st.mint_uuid(), user_name=user_name, active=active, created=now,
                       last_modified=now, deleted=False)
    _apply_user_fields(req, s, body, replace=True)
    if not s.emails:
        s.emails = [{"value": email, "type": "work", "primary": True}]
    aid = st.users_by_email.get(email.lower())
    if aid is not None and aid in st.org_accounts:
        # Linked: the managed account already exists; the SCIM record now
        # points at it (the response carries the existing accountId).
        old = st.scim_by_account.get(aid)
        if old and not st.scim_users[old].deleted:
            raise HTTPError(scim_error(req, 409, "The account %s is already provisioned by this directory"
                                       % email, "uniqueness"))
        acct = st.org_accounts[aid]
        acct.in_directory = True
        if acct.membership_status == "no_membership":
            acct.membership_status = "active"
    else:
        aid = st.create_account(email, s.display_name, in_jira=False)
    s.account_id = aid
    st.org_accounts[aid].management_source = "synced"
    st.scim_users[s.id] = s
    st.scim_order.append(s.id)
    st.scim_by_username[user_name.lower()] = s.id
    st.scim_by_account[aid] = s.id
    if st.org_accounts[aid].account_status != ("active" if active else "inactive"):
        st.set_account_active(aid, active)
    _sync_profile(st, s)
    return Response(201, user_json(req, st, s), content_type=content_type(req),
                    headers={"Location": "%s/Users/%s" % (scim_base(req, st), s.id)})


def _set_user_name(req, st, s, user_name):
    if not isinstance(user_name, str) or not user_name.strip():
        raise HTTPError(scim_error(req, 400, "userName is required", "invalidValue"))
    other = st.scim_by_username.get(user_name.lower())
    if other and other != s.id and not st.scim_users[other].deleted:
        raise HTTPError(scim_error(req, 409, "A user with userName %s already exists" % user_name, "uniqueness"))
    st.scim_by_username.pop(s.user_name.lower(), None)
    s.user_name = user_name
    st.scim_by_username[user_name.lower()] = s.id


def _set_active(req, st, s, value):
    active = _bool(req, value, "active")
    if active != s.active:
        s.active = active
        st.set_account_active(s.account_id, active)


def put_user(req, st):
    s = find_user(req, st)
    body = body_object(req)
    _set_user_name(req, st, s, body.get("userName"))
    _apply_user_fields(req, s, body, replace=True)
    _set_active(req, st, s, body.get("active", True))
    s.last_modified = model.now_iso()
    _sync_profile(st, s)
    return Response(200, user_json(req, st, s), content_type=content_type(req))


def _operations(req, body):
    ops = None
    for key, value in body.items():
        if key.lower() == "operations":
            ops = value
    if not isinstance(ops, list) or not ops:
        raise HTTPError(scim_error(req, 400, "Operations must be a non-empty array", "invalidSyntax"))
    for op in ops:
        if not isinstance(op, dict) or str(op.get("op", "")).lower() not in ("add", "replace", "remove"):
            raise HTTPError(scim_error(req, 400, "Each operation needs op add, replace or remove", "invalidSyntax"))
    return ops


USER_PATHS = {
    "active": "active", "displayname": "display_name", "username": "user_name",
    "externalid": "external_id", "name.givenname": "given_name", "name.familyname": "family_name",
    "nickname": "nick_name", "title": "title", "department": "department",
    "organization": "organization", "timezone": "timezone", "preferredlanguage": "preferred_language",
    "emails": "emails", "phonenumbers": "phone_numbers",
    (ENTERPRISE + ":department").lower(): "enterprise.department",
    (ENTERPRISE + ":organization").lower(): "enterprise.organization",
}


def _patch_user_attr(req, st, s, path, value, remove):
    key = USER_PATHS.get(path.lower())
    if key is None:
        raise HTTPError(scim_error(req, 400, "Unsupported path: %s" % path, "invalidPath"))
    if key == "active":
        _set_active(req, st, s, False if remove else value)
    elif key == "user_name":
        if remove:
            raise HTTPError(scim_error(req, 400, "userName cannot be removed", "mutability"))
        _set_user_name(req, st, s, value)
    elif key.startswith("enterprise."):
        ent = dict(s.enterprise or {})
        if remove:
            ent.pop(key.split(".", 1)[1], None)
        else:
            ent[key.split(".", 1)[1]] = value
        s.enterprise = ent
    elif key in ("emails", "phone_numbers"):
        setattr(s, key, [] if remove else [v for v in (value if isinstance(value, list) else [value])
                                          if isinstance(v, dict)])
    else:
        if not remove and value is not None and not isinstance(value, str):
            raise HTTPError(scim_error(req, 400, "%s must be a string" % path, "invalidValue"))
        setattr(s, key, None if remove else value)


def patch_user(req, st):
    s = find_user(req, st)
    for op in _operations(req, body_object(req)):
        kind = op["op"].lower()
        path = op.get("path")
        if path:
            _patch_user_attr(req, st, s, path, op.get("value"), kind == "remove")
        elif kind == "remove":
            raise HTTPError(scim_error(req, 400, "remove needs a path", "noTarget"))
        elif isinstance(op.get("value"), dict):
            for attr, value in op["value"].items():
                if attr == "name" and isinstance(value, dict):
                    for sub, subval in value.items():
                        _patch_user_attr(req, st, s, "name." + sub, subval, False)
                elif attr == ENTERPRISE and isinstance(value, dict):
                    for sub, subval in value.items():
                        _patch_user_attr(req, st, s, ENTERPRISE + ":" + sub, subval, False)
                else:
                    _patch_user_attr(req, st, s, attr, value, False)
        else:
            raise HTTPError(scim_error(req, 400, "An operation without a path needs an object value",
                                       "invalidValue"))
    s.last_modified = model.now_iso()
    _sync_profile(st, s)
    return Response(200, user_json(req, st, s), content_type=content_type(req))


def delete_user(req, st):
    """Atlassian: DELETE deactivates the account; the SCIM record is gone."""
    s = find_user(req, st)
    s.deleted = True
    s.active = False
    st.set_account_active(s.account_id, False)
    return Response(204)


# ---------------------------------------------------------------- groups
def live_groups(st):
    return st.cached(("scim-groups",), lambda: [st.scim_groups[i] for i in st.scim_group_order
                                                if not st.scim_groups[i].deleted])


def list_groups(req, st):
    flt = parse_filter(req, {"displayname"})
    items = live_groups(st)
    if flt is not None:
        items = [g for g in items if g.display_name.casefold() == flt[1].casefold()]
    return list_response(req, items, lambda g: dump_json(group_json(req, st, g)))


def find_group(req, st):
    sg = st.scim_groups.get(req.params["id"])
    if sg is None or sg.deleted:
        raise HTTPError(scim_error(req, 404, "Group not found"))
    return sg


def get_group(req, st):
    return Response(200, group_json(req, st, find_group(req, st)), content_type=content_type(req))


def _member_accounts(req, st, values):
    out = []
    for v in values:
        sid = v.get("value") if isinstance(v, dict) else None
        s = st.scim_users.get(sid) if sid else None
        if s is None or s.deleted:
            raise HTTPError(scim_error(req, 400, "Unknown member: %s" % sid, "invalidValue"))
        out.append(s.account_id)
    return out


def _set_members(st, group, accounts):
    for aid in list(group.members):
        if aid not in accounts:
            st.remove_member(group, aid)
    for aid in accounts:
        if aid not in group.members:
            st.add_member(group, aid)


def create_group(req, st):
    body = body_object(req)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise HTTPError(scim_error(req, 400, "displayName is required", "invalidValue"))
    if st.scim_group_by_name.get(name.casefold()) and not st.scim_groups[st.scim_group_by_name[name.casefold()]].deleted:
        raise HTTPError(scim_error(req, 409, "A group named %s already exists in this directory" % name, "uniqueness"))
    if st.find_group_by_name(name) is not None:
        raise HTTPError(scim_error(req, 409, "A group named %s already exists in the organization" % name,
                                   "uniqueness"))
    members = _member_accounts(req, st, body.get("members") or [])
    group = st.add_group(name, external_synced=True)
    now = model.now_iso()
    sg = model.ScimGroup(id=st.mint_uuid(), display_name=name,
                         external_id=body.get("externalId") if isinstance(body.get("externalId"), str) else None,
                         group_id=group.group_id, created=now, last_modified=now, deleted=False)
    st.scim_groups[sg.id] = sg
    st.scim_group_order.append(sg.id)
    st.scim_group_by_name[name.casefold()] = sg.id
    _set_members(st, group, members)
    st.bump()
    return Response(201, group_json(req, st, sg), content_type=content_type(req),
                    headers={"Location": "%s/Groups/%s" % (scim_base(req, st), sg.id)})


def _check_rename(req, sg, name):
    if name is not None and name != sg.display_name:
        raise HTTPError(scim_error(req, 400, "Renaming a group is not supported", "mutability"))


def put_group(req, st):
    sg = find_group(req, st)
    body = body_object(req)
    _check_rename(req, sg, body.get("displayName"))
    group = st.groups[sg.group_id]
    _set_members(st, group, _member_accounts(req, st, body.get("members") or []))
    sg.last_modified = model.now_iso()
    return Response(200, group_json(req, st, sg), content_type=content_type(req))


MEMBER_PATH_RE = re.compile(r'^members\[value eq "([^"]+)"\]$', re.IGNORECASE)


def patch_group(req, st):
    sg = find_group(req, st)
    group = st.groups[sg.group_id]
    for op in _operations(req, body_object(req)):
        kind, path, value = op["op"].lower(), op.get("path") or "", op.get("value")
        m = MEMBER_PATH_RE.match(path)
        if m and kind == "remove":
            accounts = _member_accounts(req, st, [{"value": m.group(1)}])
            for aid in accounts:
                if aid in group.members:
                    st.remove_member(group, aid)
        elif path.lower() == "members":
            values = value if isinstance(value, list) else []
            accounts = _member_accounts(req, st, values)
            if kind == "add":
                for aid in accounts:
                    if aid not in group.members:
                        st.add_member(group, aid)
            elif kind == "remove":
                for aid in (accounts if values else list(group.members)):
                    if aid in group.members:
                        st.remove_member(group, aid)
            else:
                _set_members(st, group, accounts)
        elif path.lower() == "displayname" or (not path and isinstance(value, dict) and "displayName" in value):
            _check_rename(req, sg, value.get("displayName") if isinstance(value, dict) else value)
        elif path.lower() == "externalid":
            sg.external_id = value if isinstance(value, str) else None
        else:
            raise HTTPError(scim_error(req, 400, "Unsupported path: %s" % path, "invalidPath"))
    sg.last_modified = model.now_iso()
    st.bump()
    return Response(200, group_json(req, st, sg), content_type=content_type(req))


def delete_group(req, st):
    sg = find_group(req, st)
    sg.deleted = True
    group = st.groups.get(sg.group_id)
    if group is not None:
        st.delete_group(group)
    st.bump()
    return Response(204)


# ------------------------------------------------------------- discovery
def service_provider_config(req, st):
    return Response(200, {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True}, "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT}, "changePassword": {"supported": False},
        "sort": {"supported": False}, "etag": {"supported": False},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
                                   "description": "Authentication scheme using the Bearer token"}],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": scim_base(req, st) + "/ServiceProviderConfig"}}, content_type=content_type(req))


def _resource_type(req, st, name):
    schema = USER_SCHEMA if name == "User" else GROUP_SCHEMA
    d = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": name, "name": name,
         "endpoint": "/%ss" % name, "schema": schema,
         "meta": {"resourceType": "ResourceType", "location": "%s/ResourceTypes/%s" % (scim_base(req, st), name)}}
    if name == "User":
        d["schemaExtensions"] = [{"schema": ENTERPRISE, "required": False},
                                 {"schema": ATLASSIAN, "required": False}]
    return d


def resource_types(req, st):
    items = [_resource_type(req, st, "User"), _resource_type(req, st, "Group")]
    return Response(200, {"schemas": [LIST_SCHEMA], "totalResults": 2, "startIndex": 1, "itemsPerPage": 2,
                          "Resources": items}, content_type=content_type(req))


def resource_type(req, st):
    return Response(200, _resource_type(req, st, req.params["name"]), content_type=content_type(req))


def _schema(req, st, urn):
    attrs = {
        USER_SCHEMA: ["userName", "name", "displayName", "nickName", "title", "preferredLanguage",
                      "timezone", "active", "emails", "phoneNumbers", "groups", "externalId"],
        GROUP_SCHEMA: ["displayName", "members", "externalId"],
        ENTERPRISE: ["organization", "department"],
    }[urn]
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": urn,
            "name": urn.rsplit(":", 1)[-1],
            "attributes": [{"name": a, "type": "string", "multiValued": a in ("emails", "phoneNumbers",
                                                                                "groups", "members"),
                            "required": a in ("userName", "displayName") and urn != ENTERPRISE,
                            "mutability": "readWrite", "returned": "default"} for a in attrs],
            "meta": {"resourceType": "Schema", "location": "%s/Schemas/%s" % (scim_base(req, st), urn)}}


def schemas(req, st):
    items = [_schema(req, st, u) for u in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE)]
    return Response(200, {"schemas": [LIST_SCHEMA], "totalResults": len(items), "startIndex": 1,
                          "itemsPerPage": len(items), "Resources": items}, content_type=content_type(req))


def schema(req, st):
    return Response(200, _schema(req, st, req.params["urn"]), content_type=content_type(req))


def build():
    api = Api("scim", authenticate, Errors)
    r = api.route
    r("GET", "/Users", list_users)
    r("POST", "/Users", create_user)
    r("GET", "/Users/(?P<userId>[^/]+)", get_user)
    r("PUT", "/Users/(?P<userId>[^/]+)", put_user)
    r("PATCH", "/Users/(?P<userId>[^/]+)", patch_user)
    r("DELETE", "/Users/(?P<userId>[^/]+)", delete_user)
    r("GET", "/Groups", list_groups)
    r("POST", "/Groups", create_group)
    r("GET", "/Groups/(?P<id>[^/]+)", get_group)
    r("PUT", "/Groups/(?P<id>[^/]+)", put_group)
    r("PATCH", "/Groups/(?P<id>[^/]+)", patch_group)
    r("DELETE", "/Groups/(?P<id>[^/]+)", delete_group)
    r("GET", "/ServiceProviderConfig", service_provider_config)
    r("GET", "/ResourceTypes", resource_types)
    r("GET", "/ResourceTypes/(?P<name>User|Group)", resource_type)
    r("GET", "/Schemas", schemas)
    r("GET", "/Schemas/(?P<urn>%s|%s|%s)" % tuple(re.escape(u) for u in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE)),
      schema)
    return api

