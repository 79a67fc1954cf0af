"""The fake tenant: entities, indexes, deterministic generation and the
write operations shared by the Jira, Organizations and SCIM front ends.

One State object holds everything.  Every request handler runs under
State.lock, so handlers may read and write freely; the indexes below exist
so that no request has to scan the whole tenant (the large profile has
20,000 users and the huge one 100,000).

Identity model (the same as Atlassian Cloud):
  * A Jira user of accountType "atlassian" is also an org managed account
    with the same accountId (OrgAccount).  Apps and customers exist only
    in Jira.
  * Jira groups and org directory groups are the same objects with the
    same ids, except the site-local groups (atlassian-addons*,
    system-administrators) that the Organizations API does not show.
  * SCIM users are linked to managed accounts by accountId.
"""

import base64
import datetime
import functools
import random
import threading
import unicodedata

from . import names

ORG_DOMAIN = "example.com"          # the org's verified domain
CUSTOMER_DOMAIN = "customers.example.org"
VERIFIED_DOMAINS = ("example.com", "example.org", "example.net")
AVATAR_HOST = "https://avatar-management.fake.invalid"

PROFILES = {
    "tiny": dict(users=12, groups=11, projects=3, roles_per_project=3, groups_per_user=2),
    "demo": dict(users=200, groups=24, projects=12, roles_per_project=4, groups_per_user=3),
    "large": dict(users=20000, groups=1000, projects=500, roles_per_project=4, groups_per_user=5),
    "huge": dict(users=100000, groups=3000, projects=1500, roles_per_project=4, groups_per_user=5),
}

# Global Jira project roles (ids as on a fresh Jira Cloud site, then extras).
BASE_ROLES = [
    (10002, "Administrators", "A project role that represents administrators in a project"),
    (10001, "Member", "A project role that represents members in a project"),
    (10000, "Viewer", "A project role that represents viewers in a project"),
    (10003, "atlassian-addons-project-access",
     "A project role that represents Connect add-ons declaring a scope that requires more than read issue permissions"),
    (10004, "Developers", "A project role that represents developers in a project"),
    (10005, "Service Desk Team", "Members of the service desk team"),
    (10006, "Service Desk Customers", "Customers of the service desk"),
]

ISSUE_TYPES = [
    ("10001", "Task", False), ("10002", "Story", False), ("10004", "Bug", False),
    ("10000", "Epic", False), ("10003", "Subtask", True),
]

ROLE_IDS = [
    "atlassian/user", "atlassian/user-access-admin", "atlassian/admin",
    "atlassian/guest", "atlassian/contributor", "atlassian/customer",
    "atlassian/basic", "atlassian/stakeholder", "atlassian/site-admin",
    "atlassian/org-admin",
]
PLATFORM_ROLES = ("atlassian/org-admin", "atlassian/site-admin")
# The group role-assignment API's roleId, as the spec lists it ("Valid
# values: atlassian/user, ..., atlassian/stakeholder, atlassian/viewer"):
# viewer, which the user role API's enum lacks, and neither site-admin
# nor org-admin.
GROUP_ROLE_IDS = [r for r in ROLE_IDS if r not in PLATFORM_ROLES] + ["atlassian/viewer"]

# The identity ARI of an org group, the form users/search (expand=groups)
# gives it in `groups[].id`; every other endpoint uses the bare id.
GROUP_ARI_PREFIX = "ari:cloud:identity::group/"


def group_ari(group_id):
    return GROUP_ARI_PREFIX + group_id

SITE_LOCAL_GROUPS = ("atlassian-addons", "atlassian-addons-admin", "system-administrators")

BASE_TIME = datetime.datetime(2023, 1, 2, 9, 0, 0, tzinfo=datetime.timezone.utc)


def iso(ts):
    """ISO-8601 with milliseconds and Z, as Atlassian prints timestamps."""
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uuid4_from(bits):
    """A version-4 UUID string from 128 random bits (faster than uuid.UUID
    for the 100,000-user profile, same format)."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = "%032x" % bits
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def now_iso():
    return iso(datetime.datetime.now(datetime.timezone.utc))


@functools.lru_cache(maxsize=4096)
def ascii_fold(text):
    """'Zoë Østergaard' -> 'zoeostergaard'; used only to build email locals."""
    text = text.replace("Ø", "O").replace("ø", "o").replace("Æ", "AE").replace("æ", "ae")
    text = text.replace("Ł", "L").replace("ł", "l").replace("ß", "ss")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


class JiraUser:
    __slots__ = ("account_id", "account_type", "display_name", "email", "email_visible",
                 "active", "time_zone", "locale", "groups", "first_name", "rev")

    def __init__(self, account_id, account_type, display_name, email, email_visible,
                 active, time_zone, locale, first_name=""):
        self.account_id = account_id
        self.account_type = account_type
        self.display_name = display_name
        self.email = email
        self.email_visible = email_visible
        self.active = active
        self.time_zone = time_zone
        self.locale = locale
        self.groups = set()
        self.first_name = first_name
        self.rev = 0            # bumped on change; keys the rendered-JSON cache


class OrgAccount:
    __slots__ = ("account_id", "email", "name", "nickname", "account_status",
                 "membership_status", "in_directory", "added_to_org", "job_title",
                 "department", "mfa_enabled", "management_source", "last_active",
                 "time_zone", "in_jira")

    def __init__(self, **kw):
        for key in self.__slots__:
            setattr(self, key, kw.get(key))

    @property
    def status(self):
        """The v2 composite status (see the spec's Status schema)."""
        if self.account_status == "inactive":
            return "deactivated"
        if self.account_status == "closed":
            return "deactivated"
        if self.membership_status == "suspended":
            return "suspended"
        if self.membership_status == "no_membership":
            return "not_invited"
        return "active"


class Group:
    __slots__ = ("group_id", "name", "members", "site_local", "external_synced",
                 "description", "created", "_sorted", "_sorted_rev", "rev")

    def __init__(self, group_id, name, site_local=False, external_synced=False, description=""):
        self.group_id = group_id
        self.name = name
        self.members = set()
        self.site_local = site_local
        self.external_synced = external_synced
        self.description = description
        self.created = None
        self._sorted = None
        self._sorted_rev = -1
        self.rev = 0


class RoleActors:
    """Actors of one role in one project; dicts keep insertion order and map
    the principal to its RoleActor id."""
    __slots__ = ("users", "groups")

    def __init__(self):
        self.users = {}
        self.groups = {}


class Project:
    __slots__ = ("pid", "key", "name", "lead", "type_key", "description", "is_private",
                 "roles", "issue_counter", "uuid")

    def __init__(self, pid, key, name, lead, type_key, description, is_private, puuid):
        self.pid = pid
        self.key = key
        self.name = name
        self.lead = lead
        self.type_key = type_key
        self.description = description
        self.is_private = is_private
        self.roles = {}
        self.issue_counter = 0
        self.uuid = puuid


class ScimUser:
    __slots__ = ("id", "user_name", "external_id", "given_name", "family_name",
                 "display_name", "nick_name", "title", "department", "organization",
                 "timezone", "preferred_language", "emails", "phone_numbers",
                 "enterprise", "active", "account_id", "created", "last_modified",
                 "deleted")

    def __init__(self, **kw):
        for key in self.__slots__:
            setattr(self, key, kw.get(key))


class ScimGroup:
    __slots__ = ("id", "display_name", "external_id", "group_id", "created",
                 "last_modified", "deleted")

    def __init__(self, **kw):
        for key in self.__slots__:
            setattr(self, key, kw.get(key))


class Conflict(Exception):
    """A write that the real service refuses (already a member, ...)."""


class NotFound(Exception):
    pass


class State:
    """The whole tenant.  Attribute names ending in _order are lists in the
    order the APIs page through; the dicts are the lookup indexes."""

    def __init__(self, seed, sizes, profile):
        self.lock = threading.RLock()
        self.seed = seed
        self.sizes = dict(sizes)
        self.profile = profile
        self.version = 0                    # bumped by every write; keys caches
        self._cache = {}
        self.fragments = {}                 # (kind, base, id) -> (rev, JSON bytes)
        self.rt_rng = random.Random(seed * 7919 + 17)   # ids minted at run time

        self.users = {}
        self.user_order = []
        self.users_by_email = {}
        self.org_accounts = {}
        self.org_order = []
        self.groups = {}
        self.groups_by_name = {}
        self._group_order = None
        self.hidden_group_ids = set()       # answer "groupId": null (GroupDetails)
        self.omit_actor_group_ids = False   # role actors without actorGroup.groupId
        self.projects = {}
        self.projects_by_key = {}
        self._project_order = None
        self.roles = []                     # [(id, name, description)]
        self.next_actor_id = 10100
        self.issues = {}
        self.issues_by_key = {}
        self.next_issue_id = 10000
        self.next_comment_id = 10000
        self.workspaces = []
        self.workspaces_by_id = {}
        self.user_roles = {}                # aid -> {resource: set(role)}
        self.group_roles = {}               # gid -> {resource: set(role)}
        self.scim_users = {}
        self.scim_order = []
        self.scim_by_username = {}
        self.scim_by_account = {}
        self.scim_groups = {}
        self.scim_group_order = []
        self.scim_group_by_name = {}
        self.site_url = "http://127.0.0.1:0"  # set by the server once bound
        self.credentials = {}
        self.org_directory_id = None
        self.myself = None

    # ----------------------------------------------------------------- ids
    def mint_uuid(self):
        return uuid4_from(self.rt_rng.getrandbits(128))

    def bump(self):
        self.version += 1

    def fragment(self, key, rev, build):
        """Pre-rendered JSON of one object (a user in a 1,000-user page is
        rendered once, not once per request); `rev` invalidates it."""
        hit = self.fragments.get(key)
        if hit is not None and hit[0] == rev:
            return hit[1]
        data = build()
        self.fragments[key] = (rev, data)
        return data

    def cached(self, key, build):
        """Memoise derived lists (filters, indexes) until the next write."""
        full_key = (self.version,) + tuple(key)
        hit = self._cache.get(full_key)
        if hit is None:
            if len(self._cache) > 512:
                self._cache.clear()
            hit = build()
            self._cache[full_key] = hit
        return hit

    # ------------------------------------------------------------ lookups
    @property
    def cloud_id(self):
        return self.credentials["cloud_id"]

    @property
    def org_id(self):
        return self.credentials["org_id"]

    @property
    def directory_id(self):
        return self.org_directory_id

    def workspace_host(self, ws):
        """None means the Jira site URL itself; "/x" is relative to it."""
        host = ws["hostUrl"]
        if host is None:
            return self.site_url
        if host.startswith("/"):
            return self.site_url + host
        return host

    @property
    def platform_resource(self):
        return "ari:cloud:platform::org/%s" % self.org_id

    def group_order(self):
        if self._group_order is None:
            self._group_order = sorted(self.groups.values(),
                                       key=lambda g: (g.name.casefold(), g.group_id))
        return self._group_order

    def project_order(self):
        if self._project_order is None:
            self._project_order = sorted(self.projects.values(), key=lambda p: p.key)
        return self._project_order

    def find_project(self, id_or_key):
        if id_or_key.isdigit():
            return self.projects.get(int(id_or_key))
        pid = self.projects_by_key.get(id_or_key.upper())
        return self.projects.get(pid) if pid is not None else None

    def api_group_id(self, group):
        """The groupId the Jira API shows: None for a group without one
        (GroupDetails.groupId is nullable)."""
        return None if group.group_id in self.hidden_group_ids else group.group_id

    def find_group_by_id(self, gid):
        """The group a groupId names; a group without an id has none."""
        return None if gid in self.hidden_group_ids else self.groups.get(gid)

    def find_group_by_name(self, name):
        gid = self.groups_by_name.get(name.casefold())
        return self.groups.get(gid) if gid else None

    def sorted_members(self, group):
        """Members ordered as Jira lists them (by display name), cached per
        group revision so that paging a 20,000-member group stays O(page)."""
        if group._sorted_rev != group.rev:
            users = self.users
            group._sorted = sorted(
                group.members,
                key=lambda aid: (users[aid].display_name.casefold(), aid) if aid in users else ("", aid))
            group._sorted_rev = group.rev
        return group._sorted

    def active_members(self, group):
        return self.cached(("active-members", group.group_id, group.rev),
                           lambda: [a for a in self.sorted_members(group)
                                    if a in self.users and self.users[a].active])

    def org_groups(self):
        """Directory groups: everything except the site-local Jira groups."""
        return self.cached(("org-groups",),
                           lambda: [g for g in self.group_order() if not g.site_local])

    def directory_accounts(self):
        return self.cached(("dir-accounts",),
                           lambda: [self.org_accounts[a] for a in self.org_order
                                    if self.org_accounts[a].in_directory])

    def effective_roles(self, account_id):
        """{resource: {role: set(methods)}} for a user: direct + via groups."""
        out = {}
        for res, roles in self.user_roles.get(account_id, {}).items():
            for role in roles:
                out.setdefault(res, {}).setdefault(role, set()).add("direct")
        user = self.users.get(account_id)
        gids = user.groups if user else self._groups_of_account(account_id)
        for gid in gids:
            for res, roles in self.group_roles.get(gid, {}).items():
                for role in roles:
                    out.setdefault(res, {}).setdefault(role, set()).add("group_direct")
        return out

    def _groups_of_account(self, account_id):
        return self.cached(("groups-of", account_id),
                           lambda: {g.group_id for g in self.groups.values()
                                    if account_id in g.members})

    def groups_of(self, account_id):
        user = self.users.get(account_id)
        return user.groups if user else self._groups_of_account(account_id)

    def accounts_with_resource(self, resource):
        """Account ids holding any role on a resource, directly or via a
        group.  Cached until the next write."""
        def build():
            found = set()
            for aid, per_res in self.user_roles.items():
                if resource in per_res:
                    found.add(aid)
            for gid, per_res in self.group_roles.items():
                if resource in per_res and gid in self.groups:
                    found.update(self.groups[gid].members)
            return found
        return self.cached(("with-resource", resource), build)

    def groups_with_resource(self, resource):
        return self.cached(("groups-with-resource", resource),
                           lambda: {gid for gid, per in self.group_roles.items() if resource in per})

    def project_participants(self, project):
        """Users reachable through any role actor (directly or via a group)."""
        found = set()
        for actors in project.roles.values():
            found.update(actors.users)
            for gid in actors.groups:
                group = self.groups.get(gid)
                if group:
                    found.update(group.members)
        return found

    def participants_sorted(self, project):
        def build():
            users = self.users
            aids = [a for a in self.project_participants(project) if a in users]
            aids.sort(key=lambda a: (users[a].display_name.casefold(), a))
            return aids
        return self.cached(("participants", project.pid), build)

    # ------------------------------------------------------------- writes
    def _touch_group(self, group):
        group.rev += 1
        self.bump()

    def add_member(self, group, account_id):
        if account_id in group.members:
            raise Conflict("already a member")
        group.members.add(account_id)
        user = self.users.get(account_id)
        if user:
            user.groups.add(group.group_id)
        self._touch_group(group)

    def remove_member(self, group, account_id):
        if account_id not in group.members:
            raise NotFound("not a member")
        group.members.discard(account_id)
        user = self.users.get(account_id)
        if user:
            user.groups.discard(group.group_id)
        self._touch_group(group)

    def add_group(self, name, description="", external_synced=False):
        group = Group(self.mint_uuid(), name, external_synced=external_synced,
                      description=description)
        group.created = now_iso()
        self.groups[group.group_id] = group
        self.groups_by_name[name.casefold()] = group.group_id
        self._group_order = None
        self.bump()
        return group

    def delete_group(self, group):
        for aid in list(group.members):
            user = self.users.get(aid)
            if user:
                user.groups.discard(group.group_id)
        del self.groups[group.group_id]
        self.groups_by_name.pop(group.name.casefold(), None)
        self.group_roles.pop(group.group_id, None)
        for project in self.projects.values():
            for actors in project.roles.values():
                actors.groups.pop(group.group_id, None)
        self._group_order = None
        self.bump()

    def new_actor_id(self):
        self.next_actor_id += 1
        return self.next_actor_id

    def set_account_active(self, account_id, active):
        """Account-level (de)activation: the lifecycle API and SCIM both
        flip Jira's `active` and the org accountStatus together."""
        user = self.users.get(account_id)
        if user:
            user.active = active
            user.rev += 1
        acct = self.org_accounts.get(account_id)
        if acct:
            acct.account_status = "active" if active else "inactive"
        for gid in self.groups_of(account_id):
            group = self.groups.get(gid)
            if group:
                group.rev += 1
        self.bump()

    def set_membership(self, account_id, status):
        acct = self.org_accounts[account_id]
        acct.membership_status = status
        self.bump()

    def grant_role(self, table, principal, resource, role):
        roles = table.setdefault(principal, {}).setdefault(resource, set())
        added = role not in roles
        roles.add(role)
        self.bump()
        return added

    def revoke_role(self, table, principal, resource, role):
        roles = table.get(principal, {}).get(resource)
        if not roles or role not in roles:
            return False
        roles.discard(role)
        if not roles:
            del table[principal][resource]
        self.bump()
        return True

    def create_account(self, email, display_name, in_jira, products=()):
        """Mint a new managed atlassian account (Jira create-user, SCIM)."""
        aid = "712020:" + self.mint_uuid()
        first = display_name.split(" ")[0] if display_name else email.split("@")[0]
        acct = OrgAccount(account_id=aid, email=email, name=display_name, nickname=first,
                          account_status="active", membership_status="active",
                          in_directory=True, added_to_org=now_iso(), job_title=None,
                          department=None, mfa_enabled=False, management_source="invited",
                          last_active=None, time_zone="UTC", in_jira=in_jira)
        self.org_accounts[aid] = acct
        self.org_order.append(aid)
        self.users_by_email[email.lower()] = aid
        if in_jira:
            self.add_jira_user(aid, display_name, email)
            self.grant_products(aid, products)
        self.bump()
        return aid

    def add_jira_user(self, aid, display_name, email):
        user = JiraUser(aid, "atlassian", display_name, email, True, True, "UTC", "en_US",
                        first_name=display_name.split(" ")[0])
        self.users[aid] = user
        self.user_order.append(aid)
        acct = self.org_accounts.get(aid)
        if acct:
            acct.in_jira = True
        self.bump()
        return user

    def remove_jira_user(self, aid):
        """Jira's removeUser: the account leaves the site's user base (its
        groups and project-role actors); the Atlassian account stays."""
        user = self.users.pop(aid)
        self.user_order.remove(aid)
        for gid in list(user.groups):
            group = self.groups.get(gid)
            if group:
                group.members.discard(aid)
                group.rev += 1
        for project in self.projects.values():
            for actors in project.roles.values():
                actors.users.pop(aid, None)
        acct = self.org_accounts.get(aid)
        if acct:
            acct.in_jira = False
        self.bump()

    def grant_products(self, aid, products):
        """Product access on Jira create-user = membership of the product's
        default group, as on a real site."""
        default_groups = {"jira-software": "jira-software-users",
                          "jira-core": "jira-software-users",
                          "jira-servicedesk": "jira-software-users",
                          "jira-product-discovery": "jira-software-users"}
        for product in products:
            group = self.find_group_by_name(default_groups.get(product, ""))
            if group and aid not in group.members:
                self.add_member(group, aid)


# ======================================================================
# Deterministic generation
# ======================================================================

class _Gen:
    """Builds a State from a seed.  The order of rng calls is part of the
    contract: the same seed and sizes must give the same tenant."""

    def __init__(self, seed, sizes, profile):
        self.rng = random.Random(seed)
        self.state = State(seed, sizes, profile)
        self.sizes = sizes

    def uid(self):
        return uuid4_from(self.rng.getrandbits(128))

    def token(self, length):
        """`length` URL-safe characters from the seeded generator."""
        raw = self.rng.getrandbits(6 * length + 6).to_bytes((6 * length + 13) // 8, "big")
        return base64.urlsafe_b64encode(raw).decode()[:length]

    def when(self, max_days=900):
        return BASE_TIME + datetime.timedelta(seconds=self.rng.randrange(max_days * 86400))

    # ------------------------------------------------------------------
    def build(self):
        self.make_credentials()
        self.make_users()
        self.make_groups()
        self.make_scim()
        self.make_projects()
        self.make_workspaces()
        return self.state

    def make_credentials(self):
        st = self.state
        cloud_id, org_id, directory_id, scim_dir = self.uid(), self.uid(), self.uid(), self.uid()
        st.org_directory_id = directory_id
        st.credentials = {
            "jira_email": "admin@" + ORG_DOMAIN,
            "jira_api_token": "ATATT3xFfGF0" + self.token(180),
            "jira_scoped_api_token": "ATATT3xFfGF0" + self.token(180),
            "cloud_id": cloud_id,
            "org_id": org_id,
            "org_api_key": "ATCTT3xFfGN0" + self.token(180),
            "scim_directory_id": scim_dir,
            "scim_token": self.token(48),
        }

    # ------------------------------------------------------------------
    def account_id(self, kind):
        if kind == "app":
            return "557058:" + self.uid()
        if kind == "customer":
            return "qm:" + self.uid() + ":" + self.uid()
        if self.rng.random() < 0.3:     # legacy 24-hex-digit account ids
            return "%024x" % self.rng.getrandbits(96)
        return "712020:" + self.uid()

    def person_name(self):
        if self.rng.random() < 0.03:
            name = self.rng.choice(names.SPECIAL_DISPLAY_NAMES)
            return name, name.strip().split(" ")[0]
        first = self.rng.choice(names.FIRST_NAMES)
        last = self.rng.choice(names.LAST_NAMES)
        return "%s %s" % (first, last), first

    # Forced properties for the first users, so that even `tiny` has every
    # kind of account the connectors must cope with.
    FORCED = {
        1: dict(kind="app", active=True),
        2: dict(kind="customer", active=True, hidden=False),
        3: dict(kind="atlassian", active=False, hidden=False),
        4: dict(kind="atlassian", active=True, hidden=True),
        5: dict(kind="atlassian", active=True, hidden=False, name='Robert "Bobby" Tables'),
        6: dict(kind="atlassian", active=True, hidden=False, name="Zoë 🚀 Østergaard"),
        7: dict(kind="atlassian", active=True, hidden=False, suspended=True),
        8: dict(kind="customer", active=False, hidden=True),
        9: dict(kind="app", active=False),
        10: dict(kind="atlassian", active=True, hidden=False, name="Renée O'Connor-Smith"),
    }

    def make_users(self):
        st, rng = self.state, self.rng
        total = max(1, self.sizes["users"])
        self.atlassian_ids = []
        self.app_ids = []
        self.customer_ids = []
        self.suspended = set()
        app_count = 0
        # Real sites have tens of apps, not thousands: cap them at 60.
        max_apps = max(2, min(60, int(total * 0.04)))
        for i in range(total):
            forced = self.FORCED.get(i, {})
            if i == 0:
                kind, active, hidden = "atlassian", True, False
                display, first = "Fake Site Admin", "Fake"
            else:
                r = rng.random()
                kind = forced.get("kind") or ("app" if r < 0.04 else "customer" if r < 0.14 else "atlassian")
                if kind == "app" and app_count >= max_apps and "kind" not in forced:
                    kind = "atlassian"
                p_active = {"atlassian": 0.9, "customer": 0.95, "app": 0.85}[kind]
                active = forced.get("active", rng.random() < p_active)
                p_hidden = {"atlassian": 0.2, "customer": 0.3, "app": 1.0}[kind]
                hidden = forced.get("hidden", rng.random() < p_hidden)
                if kind == "app":
                    base = names.APP_NAMES[app_count % len(names.APP_NAMES)]
                    display = base if app_count < len(names.APP_NAMES) else "%s %d" % (base, app_count)
                    first = display
                    app_count += 1
                elif "name" in forced:
                    display = forced["name"]
                    first = display.split(" ")[0]
                else:
                    display, first = self.person_name()
            aid = self.account_id(kind) if i else "712020:" + self.uid()
            if kind == "app":
                email = None
                hidden = True
            else:
                domain = ORG_DOMAIN if kind == "atlassian" else CUSTOMER_DOMAIN
                local = ascii_fold(first) or "user"
                email = "%s.%d@%s" % (local, i, domain) if i else st.credentials["jira_email"]
            tz = rng.choice(names.TIME_ZONES)
            locale = rng.choice(names.LOCALES)
            user = JiraUser(aid, kind, display, email, not hidden, active, tz, locale, first)
            st.users[aid] = user
            st.user_order.append(aid)
            if email:
                st.users_by_email[email.lower()] = aid
            if kind == "atlassian":
                self.atlassian_ids.append(aid)
                suspended = forced.get("suspended", False) or (active and i > 10 and rng.random() < 0.03)
                if suspended:
                    self.suspended.add(aid)
                st.org_accounts[aid] = OrgAccount(
                    account_id=aid, email=email, name=display, nickname=first,
                    account_status="active" if active else "inactive",
                    membership_status="suspended" if suspended else "active",
                    in_directory=True, added_to_org=iso(self.when()),
                    job_title=rng.choice(names.JOB_TITLES), department=rng.choice(names.DEPARTMENTS),
                    mfa_enabled=rng.random() < 0.5, management_source="invited",
                    last_active=iso(self.when(1000)), time_zone=tz, in_jira=True)
                st.org_order.append(aid)
            elif kind == "app":
                self.app_ids.append(aid)
            else:
                self.customer_ids.append(aid)
        st.myself = st.user_order[0]

    # ------------------------------------------------------------------
    GROUP_PATTERNS = [
        "R&D / {w} {n}", "Équipe {w} – Île-de-France {n}", "team-{w}-{n}",
        "{w} Ünïcödé Grüppe {n}", "Team {w} {n}", "{w}/on-call {n}",
        "开发团队 {w} {n}", "{w} & Friends {n}", "contractors.{w}.{n}", "{w} (EMEA) {n}",
    ]

    def new_group(self, name, site_local=False, external_synced=False, description=""):
        st = self.state
        group = Group(self.uid(), name, site_local, external_synced, description)
        group.created = iso(self.when())
        st.groups[group.group_id] = group
        st.groups_by_name[name.casefold()] = group.group_id
        return group

    def put(self, group, aid):
        group.members.add(aid)
        st = self.state
        if aid in st.users:
            st.users[aid].groups.add(group.group_id)

    def make_groups(self):
        st, rng = self.state, self.rng
        admin = st.myself
        people = self.atlassian_ids
        self.g_software = self.new_group("jira-software-users", description="Grants access to Jira Software")
        self.g_admins = self.new_group("jira-admins", description="Jira administrators")
        self.g_site_admins = self.new_group("site-admins", description="Site administrators")
        self.g_confluence = self.new_group("confluence-users", description="Grants access to Confluence")
        self.g_addons_admin = self.new_group("atlassian-addons-admin", site_local=True)
        self.g_addons = self.new_group("atlassian-addons", site_local=True)
        self.g_sysadmins = self.new_group("system-administrators", site_local=True)
        for aid in people:
            self.put(self.g_software, aid)
            if rng.random() < 0.6 or aid == admin:
                self.put(self.g_confluence, aid)
        self.put(self.g_admins, admin)
        for aid in rng.sample(people, min(2, len(people))):
            self.put(self.g_admins, aid)
        self.put(self.g_site_admins, admin)
        self.put(self.g_sysadmins, admin)
        for aid in self.app_ids:
            self.put(self.g_addons_admin, aid)
            self.put(self.g_addons, aid)

        regular_count = max(0, self.sizes["groups"] - 7)
        self.regular = []
        for i in range(regular_count):
            pattern = self.GROUP_PATTERNS[i % len(self.GROUP_PATTERNS)]
            word = rng.choice(names.GROUP_WORDS)
            self.regular.append(self.new_group(pattern.format(w=word, n=i + 1)))
        # Role of the first regular groups: [2] is synced from the IdP (SCIM),
        # the last one stays empty (an edge case for member paging).
        self.synced = [self.regular[2]] if len(self.regular) >= 3 else []
        if len(self.regular) >= 40:
            self.synced.append(self.regular[12])
        for group in self.synced:
            group.external_synced = True
        self.empty = self.regular[-1] if len(self.regular) >= 4 else None
        self.fillable = [g for g in self.regular if g not in self.synced and g is not self.empty]
        per_user = min(self.sizes["groups_per_user"], len(self.fillable))
        if per_user > 0:
            for aid in people:
                for idx in rng.sample(range(len(self.fillable)), per_user):
                    self.put(self.fillable[idx], aid)

    # ------------------------------------------------------------------
    def make_scim(self):
        """About a third of the managed accounts were provisioned by an IdP
        over SCIM; members of IdP-synced groups always are."""
        st, rng = self.state, self.rng
        chosen = [aid for aid in self.atlassian_ids[1:] if rng.random() < 0.33]
        for group in self.synced:
            pool = chosen or self.atlassian_ids[1:]
            for aid in rng.sample(pool, min(len(pool), 3 + rng.randrange(20))):
                self.put(group, aid)
        members_of_synced = set()
        for group in self.synced:
            members_of_synced |= group.members
        selected = set(chosen) | members_of_synced
        for aid in self.atlassian_ids:
            if aid not in selected:
                continue
            user = st.users[aid]
            acct = st.org_accounts[aid]
            acct.management_source = "synced"
            given, _, family = user.display_name.strip().partition(" ")
            created = iso(self.when())
            scim = ScimUser(
                id=self.uid(), user_name=user.email, external_id="ext-" + self.token(12),
                given_name=given, family_name=family or given, display_name=user.display_name,
                nick_name=user.first_name, title=acct.job_title, department=acct.department,
                organization="Fake Acme", timezone=user.time_zone, preferred_language="en-US",
                emails=[{"value": user.email, "type": "work", "primary": True}],
                phone_numbers=[], enterprise={"organization": "Fake Acme", "department": acct.department},
                active=user.active, account_id=aid, created=created, last_modified=created,
                deleted=False)
            st.scim_users[scim.id] = scim
            st.scim_order.append(scim.id)
            st.scim_by_username[scim.user_name.lower()] = scim.id
            st.scim_by_account[aid] = scim.id
        for group in self.synced:
            created = iso(self.when())
            sg = ScimGroup(id=self.uid(), display_name=group.name, external_id="ext-" + self.token(12),
                           group_id=group.group_id, created=created, last_modified=created, deleted=False)
            st.scim_groups[sg.id] = sg
            st.scim_group_order.append(sg.id)
            st.scim_group_by_name[group.name.casefold()] = sg.id

    # ------------------------------------------------------------------
    def project_identity(self, index, used_keys):
        if index == 0:
            return "OPS", "Operations"
        if index == 1:
            return "ALL", "All Hands"
        adj = self.rng.choice(names.PROJECT_ADJECTIVES)
        noun = self.rng.choice(names.PROJECT_NOUNS)
        name = "%s %s" % (adj, noun)
        base = (adj[0] + "".join(w[0] for w in noun.split())).upper()
        key, n = base, 1
        while key in used_keys:
            n += 1
            key = "%s%d" % (base, n)
        if n > 1:
            name = "%s %d" % (name, n)
        return key, name

    def make_projects(self):
        st, rng = self.state, self.rng
        role_defs = list(BASE_ROLES)
        want = max(1, self.sizes["roles_per_project"])
        extra = 10007
        while len(role_defs) < want:
            role_defs.append((extra, "Role %d" % (extra - 10006), "Generated project role"))
            extra += 1
        st.roles = role_defs
        chosen_roles = role_defs[:want]
        people = self.atlassian_ids
        active_people = [a for a in people if st.users[a].active] or people
        groups_pool = [g.group_id for g in self.fillable] or [self.g_software.group_id]
        used = set()
        for i in range(self.sizes["projects"]):
            key, name = self.project_identity(i, used)
            used.add(key)
            lead = st.myself if i == 0 else rng.choice(active_people)
            type_key = "software" if i < 2 else rng.choice(["software", "service_desk", "business"])
            project = Project(10000 + i, key, name, lead, type_key,
                              "%s project generated by the fake" % name,
                              rng.random() < 0.2, self.uid())
            for role_id, role_name, _ in chosen_roles:
                project.roles[role_id] = self.role_actors(role_name, project, people, groups_pool)
            if key == "ALL" and chosen_roles:
                # The big project: everyone reaches it through the product
                # group, so it has more than 1,000 participants whenever the
                # tenant has more than 1,000 users.
                target = project.roles.get(10001) or project.roles[chosen_roles[0][0]]
                target.groups[self.g_software.group_id] = self.next_actor()
            st.projects[project.pid] = project
            st.projects_by_key[key] = project.pid

    def next_actor(self):
        st = self.state
        st.next_actor_id += 1
        return st.next_actor_id

    def role_actors(self, role_name, project, people, groups_pool):
        rng = self.rng
        actors = RoleActors()
        if role_name == "Administrators":
            actors.users[project.lead] = self.next_actor()
            actors.groups[self.g_admins.group_id] = self.next_actor()
            return actors
        if role_name == "atlassian-addons-project-access":
            actors.groups[self.g_addons_admin.group_id] = self.next_actor()
            for aid in self.app_ids[:2]:
                actors.users[aid] = self.next_actor()
            return actors
        if role_name == "Viewer":
            n_users, n_groups = rng.randint(0, 3), 1
        else:
            n_users, n_groups = rng.randint(1, 6), rng.randint(0, 2)
        for aid in rng.sample(people, min(n_users, len(people))):
            actors.users.setdefault(aid, self.next_actor())
        for gid in rng.sample(groups_pool, min(n_groups, len(groups_pool))):
            actors.groups.setdefault(gid, self.next_actor())
        return actors

    # ------------------------------------------------------------------
    def make_workspaces(self):
        st, rng = self.state, self.rng
        cloud = st.cloud_id

        def add(wid, wtype, type_key, name, host, owner):
            ws = {"id": wid, "type": wtype, "typeKey": type_key, "name": name,
                  "hostUrl": host, "resourceOwner": owner, "createdAt": iso(self.when())}
            st.workspaces.append(ws)
            st.workspaces_by_id[wid] = ws
            return ws

        # hostUrl None means "the Jira site URL this fake serves" and is
        # filled in when the port is known (see State.workspace_host).
        jira = add("ari:cloud:jira::site/%s" % cloud, "jira", "jira-software", "fake-acme", None, "jira-software")
        conf = add("ari:cloud:confluence::site/%s" % cloud, "confluence", "confluence",
                   "fake-acme wiki", "/wiki", "confluence")
        bb = add("ari:cloud:bitbucket::workspace/%s" % self.uid(), "bitbucket", "bitbucket",
                 "fake-acme-code", "https://bitbucket.fake.invalid/fake-acme", "bitbucket")
        extra = {"tiny": 0, "demo": 0, "large": 27, "huge": 57}.get(st.profile, 0)
        kinds = [("statuspage", "statuspage"), ("opsgenie", "opsgenie"), ("trello", "trello")]
        for i in range(extra):
            kind, key = kinds[i % len(kinds)]
            add("ari:cloud:%s::site/%s" % (key, self.uid()), kind, key, "%s-%d" % (kind, i + 1),
                "https://%s-%d.fake.invalid" % (kind, i + 1), key)

        grant = st.grant_role
        grant(st.group_roles, self.g_software.group_id, jira["id"], "atlassian/user")
        grant(st.group_roles, self.g_admins.group_id, jira["id"], "atlassian/admin")
        grant(st.group_roles, self.g_confluence.group_id, conf["id"], "atlassian/user")
        grant(st.group_roles, self.g_site_admins.group_id, conf["id"], "atlassian/admin")
        for group in self.synced:
            grant(st.group_roles, group.group_id, conf["id"], "atlassian/user")
        grant(st.user_roles, st.myself, st.platform_resource, "atlassian/org-admin")
        grant(st.user_roles, st.myself, jira["id"], "atlassian/admin")
        for aid in self.atlassian_ids[1:]:
            r = rng.random()
            if r < 0.10:
                grant(st.user_roles, aid, bb["id"], "atlassian/user")
            elif r < 0.15:
                grant(st.user_roles, aid, jira["id"], "atlassian/user-access-admin")
        st.version = 0


def hide_group_ids(st, count):
    """Give `count` groups no groupId in the Jira API (GroupDetails.groupId
    is nullable), preferring groups with members that are role actors so
    that their memberships and inherited grants are exercised; built-in
    site groups keep theirs."""
    actors = {gid for p in st.projects.values() for a in p.roles.values() for gid in a.groups}
    cands = sorted((g for g in st.groups.values() if not g.site_local),
                   key=lambda g: (g.group_id not in actors, not g.members,
                                  g.name.casefold(), g.group_id))
    st.hidden_group_ids = {g.group_id for g in cands[:max(0, count)]}


def generate(seed, sizes, profile):
    return _Gen(seed, sizes, profile).build()
