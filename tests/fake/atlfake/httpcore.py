"""HTTP plumbing shared by the three APIs: request/response objects, the
router, the threaded HTTP/1.1 server, faults, burst limits, latency, TLS
and the request log.

A request goes through:  prefix -> route -> faults/latency -> burst limit
-> authentication -> handler (under State.lock) -> serialise -> send -> log.
"""

import base64
import email.utils
import http.server
import json
import re
import socket
import sys
import threading
import time
import traceback
import urllib.parse

JSON = "application/json;charset=UTF-8"


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status, body=None, content_type=JSON, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class HTTPError(Exception):
    """Raised by handlers to answer early with an API-shaped error."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def dump_json(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Request:
    __slots__ = ("method", "raw_path", "path", "query", "headers", "body", "params",
                 "api", "scheme_host", "jira_base", "gateway", "endless",
                 "cursor_repeat", "auth", "_json", "server", "query_string")

    def __init__(self, method, raw_path, query_string, headers, body, server):
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path
        self.query_string = query_string
        self.query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.params = {}
        self.api = None
        self.server = server
        host = headers.get("Host") or "%s:%d" % (server.public_host, server.port)
        self.scheme_host = "%s://%s" % (server.scheme, host)
        self.jira_base = self.scheme_host
        self.gateway = False
        self.endless = None
        self.cursor_repeat = False
        self.auth = "none"
        self._json = None

    def q(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def qlist(self, name):
        """Repeated parameters, also accepting comma-separated values."""
        out = []
        for value in self.query.get(name, []):
            out.extend(v for v in value.split(",") if v != "")
        return out

    def bearer(self):
        value = self.headers.get("Authorization", "")
        if value[:7].lower() == "bearer ":
            return value[7:].strip()
        return None

    def basic(self):
        value = self.headers.get("Authorization", "")
        if value[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None

    def json(self, bad):
        """Parse the body as JSON; `bad(message)` builds the API's 400."""
        if self._json is None:
            if not self.body:
                raise HTTPError(bad("No content to map due to end-of-input"))
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(bad("Unexpected character in request body: %s" % exc))
        return self._json

    def json_or_empty(self, bad):
        if not self.body or not self.body.strip():
            return {}
        return self.json(bad)


class Route:
    __slots__ = ("method", "regex", "fn", "route_id", "public")

    def __init__(self, method, regex, fn, route_id, public):
        self.method = method
        self.regex = regex
        self.fn = fn
        self.route_id = route_id
        self.public = public


class Api:
    """One API front end: its routes, its authentication check and its
    error shapes (each API answers 401/404/429/500 differently)."""

    def __init__(self, name, authenticate, errors):
        self.name = name
        self.authenticate = authenticate    # fn(req, st) -> None or raises HTTPError
        self.errors = errors                # object with the error builders
        self.routes = []

    def route(self, method, pattern, fn, public=False):
        self.routes.append(Route(method, re.compile("^" + pattern + "$"), fn,
                                 "%s %s" % (method, pattern), public))

    def match(self, method, path):
        """(route, params) or (None, allowed_methods)."""
        allowed = []
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                if route.method == method:
                    params = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items() if v is not None}
                    return route, params
                allowed.append(route.method)
        return None, allowed


class Config:
    """Runtime switches from the command line."""

    def __init__(self, latency_ms=0, burst_limit=0, faults=None, request_log=None, verbose=False,
                 product_aris=False, relative_next=False):
        self.latency_ms = latency_ms
        self.product_aris = product_aris
        self.relative_next = relative_next
        self.burst = None
        self.burst_headers_on_200 = True
        self.faults = faults
        self.request_log = request_log
        self.verbose = verbose
        self.log_lock = threading.Lock()
        self.log_file = open(request_log, "a", encoding="utf-8", buffering=1) if request_log else None


def _status_line(status):
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    return "HTTP/1.1 %d %s\r\n" % (status, phrase)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "atlassian-fake/1"
    sys_version = ""
    disable_nagle_algorithm = True     # small keep-alive responses must not wait
    timeout = 120                      # idle keep-alive connections give up eventually

    def log_message(self, fmt, *args):  # quiet: --request-log is the log
        if self.server.config.verbose:
            sys.stderr.write("atlassian-fake: " + (fmt % args) + "\n")

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # ------------------------------------------------------------ body
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -------------------------------------------------------- dispatch
    def dispatch(self):
        srv = self.server
        started = time.monotonic()
        raw_path, _, query_string = self.path.partition("?")
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        req = Request(self.command, raw_path, query_string, self.headers, body, srv)
        api, route, params, early = srv.resolve(req)
        req.params = params
        decision = srv.config.faults.decide(req.method, raw_path) if srv.config.faults else None
        if srv.config.latency_ms:
            time.sleep(srv.config.latency_ms / 1000.0)
        if decision and decision.delay_ms:
            time.sleep(decision.delay_ms / 1000.0)
        if decision and decision.terminal is not None and decision.terminal.kind == "drop":
            self.close_connection = True
            srv.log(req, None, decision, started, self.client_address[1])
            return
        if decision:
            req.endless = decision.endless
            req.cursor_repeat = decision.cursor_repeat
        resp, limit_headers = self.answer(req, api, route, early, decision)
        if limit_headers:
            resp.headers.update(limit_headers)
        # Log before sending: once a client holds the answer, its line is in
        # the request log (tests count requests right after a call).
        srv.log(req, resp.status, decision, started, self.client_address[1])
        self.send(req, api, resp, decision)

    def answer(self, req, api, route, early, decision):
        """Everything up to and including the handler; returns a Response."""
        srv = self.server
        st = srv.state
        limit_headers = None
        if early is not None:
            return early, None
        if srv.config.burst is not None:
            key = route.route_id if route else "unmatched " + req.raw_path
            allowed, remaining, reset_in = srv.config.burst.check(key)
            if srv.config.burst_headers_on_200:
                limit_headers = {"X-RateLimit-Limit": str(srv.config.burst.limit),
                                 "X-RateLimit-Remaining": str(remaining)}
            if not allowed:
                return rate_limited(api, req, reset_in), None
        terminal = decision.terminal if decision else None
        if terminal is not None and terminal.kind in ("429", "500", "503"):
            if terminal.kind == "429":
                return rate_limited(api, req, terminal.opt("retry_after", 1)), limit_headers
            resp = api.errors.server_error(req, int(terminal.kind))
            if terminal.kind == "503":
                resp.headers["Retry-After"] = str(terminal.opt("retry_after", 1))
            return resp, limit_headers
        try:
            if route is None or not route.public:
                api.authenticate(req, st)
            if route is None:
                return api.errors.not_found_route(req), limit_headers
            # A 403 comes after authentication: the key is good, the
            # permission (or the org's enablement of an API) is missing.
            if terminal is not None and terminal.kind == "403":
                return api.errors.forbidden(req), limit_headers
            if terminal is not None and terminal.kind == "licence" and req.method != "GET":
                return api.errors.licence(req), limit_headers
            with st.lock:
                return route.fn(req, st), limit_headers
        except HTTPError as exc:
            return exc.response, limit_headers
        except Exception:  # a bug in the fake: answer like the API would
            traceback.print_exc()
            return api.errors.server_error(req, 500), limit_headers

    # ------------------------------------------------------------ send
    def send(self, req, api, resp, decision):
        body = resp.body
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = dump_json(body)
        terminal = decision.terminal if decision else None
        if terminal is not None and terminal.kind == "badjson" and payload:
            payload = corrupt_json(payload)
        lines = [_status_line(resp.status),
                 "Date: %s\r\n" % email.utils.formatdate(usegmt=True),
                 "Server: atlassian-fake\r\n"]
        if api is not None and api.name == "jira" and req.auth in ("classic", "scoped"):
            lines.append("X-AAccountId: %s\r\n" % self.server.state.myself)
        for name, value in resp.headers.items():
            lines.append("%s: %s\r\n" % (name, value))
        if resp.status not in (204, 304) and req.method != "HEAD":
            if resp.body is not None:
                lines.append("Content-Type: %s\r\n" % resp.content_type)
            lines.append("Content-Length: %d\r\n" % len(payload))
        else:
            payload = b""
        truncate = terminal is not None and terminal.kind == "truncate"
        if truncate or self.close_connection:
            lines.append("Connection: close\r\n")
            self.close_connection = True
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if truncate:
            keep = terminal.opt("bytes", len(payload) // 2)
            payload = payload[:max(0, min(keep, len(payload) - 1))]
        try:
            self.wfile.write(head + payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def corrupt_json(payload):
    """Malformed but plausible JSON: a dropped closing bracket and a stray
    comma, so a lenient parser cannot accidentally accept it."""
    return payload[:-1] + b',"' if len(payload) > 1 else b'{"'


def rate_limited(api, req, retry_after):
    resp = api.errors.rate_limited(req) if api is not None else Response(429, {"message": "Too Many Requests"})
    reset = time.gmtime(time.time() + retry_after)
    resp.headers.update({
        "Retry-After": str(retry_after),
        "X-RateLimit-Reset": time.strftime("%Y-%m-%dT%H:%MZ", reset),
        "X-RateLimit-Remaining": "0",
    })
    burst = req.server.config.burst
    if burst is not None:
        resp.headers["X-RateLimit-Limit"] = str(burst.limit)
    if api is not None and api.name == "jira":
        resp.headers["RateLimit-Reason"] = "jira-burst-based"
    return resp


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host, port, state, config, resolver, tls_context=None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = state
        self.config = config
        self.resolve = resolver
        self.tls_context = tls_context
        self.scheme = "https" if tls_context else "http"
        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        self.public_host = "[%s]" % host if ":" in host else host

    def finish_request(self, request, client_address):
        """TLS handshakes happen here, in the worker thread, so that a slow
        or broken client cannot stall the accept loop."""
        if self.tls_context is None:
            return super().finish_request(request, client_address)
        try:
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Client hang-ups are normal (drop faults, killed benchmarks).
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)

    def log(self, req, status, decision, started, conn=None):
        log_file = self.config.log_file
        if log_file is None:
            return
        entry = {
            "ts": round(time.time(), 3),
            "method": req.method,
            "path": req.raw_path,
            "query": req.query_string,
            "api": req.api,
            "auth": req.auth,
            "status": status,
            "fault": decision.names if decision else [],
            "ms": round((time.monotonic() - started) * 1000, 2),
            # The client's port names its TCP connection: tests count them.
            "conn": conn,
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.config.log_lock:
            log_file.write(line)
