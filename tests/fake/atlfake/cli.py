"""Command line, startup and shutdown of the fake.

Startup order matters to callers: bind -> print credentials -> write the
truth file -> write the port file (atomically) -> serve.  So once the port
file exists, the truth file is complete and the socket accepts connections.
"""

import argparse
import os
import signal
import ssl
import sys
import threading
import time

from . import faults, httpcore, jira, model, org, scim, truth
from .httpcore import Api, Response

LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="atlassian-fake",
        description="A faithful fake Atlassian Cloud (Jira REST v3, Organizations API, SCIM) on loopback.")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), localhost or ::1; nothing else")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("--port-file", help="write the bound port here once ready (atomic rename)")
    p.add_argument("--profile", choices=sorted(model.PROFILES), default="tiny")
    p.add_argument("--seed", type=int, default=1)
    for name in ("users", "groups", "projects", "roles-per-project", "groups-per-user"):
        p.add_argument("--" + name, type=int, help="override the profile's %s" % name)
    p.add_argument("--groups-without-id", type=int, default=0, metavar="N",
                   help="N groups answer \"groupId\": null in the Jira API (role actors and"
                        " members name them only; addressed by groupname)")
    p.add_argument("--omit-actor-group-ids", action="store_true",
                   help="project-role group actors carry no actorGroup.groupId, only names")
    p.add_argument("--latency-ms", type=int, default=0, help="sleep this long before every answer")
    p.add_argument("--burst-limit", type=int, default=0,
                   help="429 past N requests per second per endpoint+method (0 = off)")
    p.add_argument("--burst-headers", choices=("always", "refusals"), default="always",
                   help="where the limiter's X-RateLimit-Limit/-Remaining go: every answer"
                        " (default) or only its 429s, like Jira's 200s that lack them")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="KIND[,opt=val...]:PATH_REGEX (repeatable; see README)")
    p.add_argument("--product-aris", action="store_true",
                   help="role-assignment reads name a Jira site by its product's ARI"
                        " (ari:cloud:jira-software::site/<cloudId>, ...), not the workspace's")
    p.add_argument("--relative-next", action="store_true",
                   help="v2 lists give links.next (and self, prev) as a relative URL,"
                        " /admin/v2/...?cursor=<token>, not the bare token")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--truth", help="write the ground truth JSON here at startup (and on SIGUSR1)")
    p.add_argument("--request-log", help="append one JSON line per request here")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = p.parse_args(argv)
    if args.host not in LOOPBACK:
        p.error("--host must be 127.0.0.1, localhost or ::1 (the fake never listens elsewhere)")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.burst_limit < 0 or args.latency_ms < 0:
        p.error("--burst-limit and --latency-ms must be >= 0")
    return args


def sizes_from(args):
    sizes = dict(model.PROFILES[args.profile])
    for key in sizes:
        value = getattr(args, key)
        if value is not None:
            if value < 0:
                raise SystemExit("atlassian-fake: --%s must be >= 0" % key.replace("_", "-"))
            sizes[key] = value
    sizes["users"] = max(1, sizes["users"])
    return sizes


def fake_control_api():
    """/_fake/...: test hooks (unauthenticated, loopback only)."""
    class Errors:
        @staticmethod
        def unauthorized(req):
            return Response(401, {"error": "unauthorized"})

        @staticmethod
        def not_found_route(req):
            return Response(404, {"error": "no such fake endpoint"})

        @staticmethod
        def rate_limited(req):
            return Response(429, {"error": "rate limited"})

        @staticmethod
        def server_error(req, status):
            return Response(status, {"error": "server error"})

        @staticmethod
        def forbidden(req):
            return Response(403, {"error": "forbidden"})

        @staticmethod
        def licence(req):
            return Response(409, {"error": "licence"})

    api = Api("fake", lambda req, st: None, Errors)
    api.route("GET", "/_fake/truth", lambda req, st: Response(200, truth.build(st)), public=True)
    api.route("GET", "/_fake/health", lambda req, st: Response(200, {"ok": True}), public=True)
    return api


def make_resolver(state):
    apis = {"jira": jira.build(), "org": org.build(), "usermgmt": org.build_user_management(),
            "scim": scim.build(), "fake": fake_control_api()}

    def not_found(req):
        return Response(404, "Not Found", content_type="text/plain;charset=UTF-8")

    def resolve(req):
        """Pick the API by prefix, strip the prefix, match the route.
        Returns (api, route, params, early_response)."""
        path = req.raw_path
        params = {}
        if path.startswith("/ex/jira/"):
            cloud, _, tail = path[len("/ex/jira/"):].partition("/")
            api = apis["jira"]
            req.gateway = True
            req.jira_base = "%s/ex/jira/%s" % (req.scheme_host, cloud)
            path = "/" + tail
            if cloud != state.cloud_id or path.startswith("/_edge/"):
                req.api = "jira"
                return api, None, params, jira.error(404, ["Site not found"])
        elif path.startswith("/rest/api/") or path.startswith("/_edge/"):
            api = apis["jira"]
        elif path.startswith("/admin/"):
            api = apis["org"]
            path = path[len("/admin"):]
        elif path.startswith("/users/"):
            api = apis["usermgmt"]
        elif path.startswith("/scim/directory/"):
            api = apis["scim"]
            directory, _, tail = path[len("/scim/directory/"):].partition("/")
            params["directoryId"] = directory
            path = "/" + tail
        elif path.startswith("/_fake/"):
            api = apis["fake"]
        else:
            return None, None, params, not_found(req)
        req.api = api.name
        req.path = path
        route, found = api.match(req.method, path)
        if route is None:
            if found:   # the path exists with other methods
                resp = api.errors.not_found_route(req)
                resp.status = 405
                resp.headers["Allow"] = ", ".join(sorted(set(found)))
                return api, None, params, resp
            return api, None, params, None
        params.update(found)
        return api, route, params, None

    return resolve


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    try:
        engine = faults.FaultEngine(args.fault, args.seed) if args.fault else None
    except faults.FaultSpecError as exc:
        print("atlassian-fake: %s" % exc, file=sys.stderr)
        return 2
    state = model.generate(args.seed, sizes_from(args), args.profile)
    model.hide_group_ids(state, args.groups_without_id)
    state.omit_actor_group_ids = args.omit_actor_group_ids
    config = httpcore.Config(latency_ms=args.latency_ms, faults=engine,
                             request_log=args.request_log, verbose=args.verbose,
                             product_aris=args.product_aris, relative_next=args.relative_next)
    if args.burst_limit:
        config.burst = faults.BurstLimiter(args.burst_limit)
        config.burst_headers_on_200 = args.burst_headers == "always"
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    host = LOOPBACK[args.host]
    try:
        server = httpcore.FakeServer(host, args.port, state, config, make_resolver(state), tls)
    except OSError as exc:
        print("atlassian-fake: cannot listen on %s:%d: %s" % (host, args.port, exc), file=sys.stderr)
        return 1
    state.site_url = "%s://%s:%d" % (server.scheme, server.public_host, server.port)

    creds = state.credentials
    lines = ["port=%d" % server.port, "base_url=%s" % state.site_url,
             "jira_site_url=%s" % state.site_url,
             "jira_gateway_url=%s/ex/jira/%s" % (state.site_url, creds["cloud_id"]),
             "org_api_base=%s/admin" % state.site_url,
             "scim_base_url=%s/scim/directory/%s" % (state.site_url, creds["scim_directory_id"])]
    lines += ["%s=%s" % (k, creds[k]) for k in ("jira_email", "jira_api_token", "jira_scoped_api_token",
                                                 "cloud_id", "org_id", "org_api_key",
                                                 "scim_directory_id", "scim_token")]
    lines.append("directory_id=%s" % state.directory_id)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()

    if args.truth:
        truth.write(state, args.truth)
    if args.port_file:
        write_atomic(args.port_file, "%d\n" % server.port)

    stop = threading.Event()
    dump = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: dump.set())

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    print("atlassian-fake: %s ready on %s in %.2f s (%d users, %d groups, %d projects)"
          % (args.profile, state.site_url, time.monotonic() - started, len(state.users),
             len(state.groups), len(state.projects)), file=sys.stderr, flush=True)
    while not stop.is_set():
        stop.wait(0.25)
        if dump.is_set():
            dump.clear()
            if args.truth:
                truth.write(state, args.truth)
    server.shutdown()
    server.server_close()
    return 0
