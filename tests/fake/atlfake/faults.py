"""--fault parsing and selection, and the --burst-limit counter.

Grammar (one --fault per rule, repeatable):

    SPEC   := KIND [ "," OPTION ]* ":" PATH_REGEX
    KIND   := 403 | 429 | 500 | 503 | delay | truncate | badjson | drop
            | endless | cursor-repeat | licence | license
    OPTION := method=GET|POST|...   only requests with this method
            | nth=N                 fire on the Nth matching request only (1-based)
            | every=N               fire on every Nth matching request
            | after=N               ignore the first N matching requests
            | count=N               fire at most N times in total
            | rate=P                fire with probability P (0..1), seeded by --seed
            | ms=N                  delay: milliseconds to sleep (default 1000)
            | retry_after=S         429/503: Retry-After seconds (default 1)
            | bytes=N               truncate: body bytes to send (default: half)
            | mode=cycle|empty      endless: wrap around (default) or send empty pages

The regex is everything after the first ":" and is matched with re.search
against the request path (no query string), so "^/rest/api/3/users/search$"
or just "group/member" both work.  Without nth/every/rate a rule fires on
every matching request (subject to after/count).
"""

import random
import re
import threading
import time

TERMINAL = {"403", "429", "500", "503", "truncate", "badjson", "drop", "licence"}
MODIFIERS = {"delay", "endless", "cursor-repeat"}
KINDS = TERMINAL | MODIFIERS | {"license"}
INT_OPTIONS = {"nth", "every", "after", "count", "ms", "retry_after", "bytes"}


class FaultSpecError(ValueError):
    pass


class Fault:
    def __init__(self, text, index, seed):
        self.text = text
        head, sep, regex = text.partition(":")
        if not sep or not regex:
            raise FaultSpecError("fault %r: expected KIND[,opt=val...]:PATH_REGEX" % text)
        parts = head.split(",")
        kind = parts[0].strip().lower()
        if kind not in KINDS:
            raise FaultSpecError("fault %r: unknown kind %r (known: %s)"
                                 % (text, kind, ", ".join(sorted(KINDS))))
        self.kind = "licence" if kind == "license" else kind
        self.options = {}
        for opt in parts[1:]:
            name, eq, value = opt.partition("=")
            name = name.strip()
            if not eq:
                raise FaultSpecError("fault %r: option %r needs a value" % (text, opt))
            if name in INT_OPTIONS:
                try:
                    self.options[name] = int(value)
                except ValueError:
                    raise FaultSpecError("fault %r: %s must be an integer" % (text, name))
            elif name == "rate":
                try:
                    self.options[name] = float(value)
                except ValueError:
                    raise FaultSpecError("fault %r: rate must be a number" % text)
            elif name == "method":
                self.options[name] = value.strip().upper()
            elif name == "mode":
                if value not in ("cycle", "empty"):
                    raise FaultSpecError("fault %r: mode is cycle or empty" % text)
                self.options[name] = value
            else:
                raise FaultSpecError("fault %r: unknown option %r" % (text, name))
        try:
            self.regex = re.compile(regex)
        except re.error as exc:
            raise FaultSpecError("fault %r: bad regex: %s" % (text, exc))
        # One generator per rule, derived from --seed and the rule's
        # position, so a sequential client sees the same faults every run.
        self.rng = random.Random(seed * 1000003 + index)
        self.matched = 0
        self.fired = 0

    def opt(self, name, default=None):
        return self.options.get(name, default)

    def decide(self, method, path):
        """Called under the engine lock; returns True when the rule fires."""
        want = self.options.get("method")
        if want and want != method:
            return False
        if not self.regex.search(path):
            return False
        self.matched += 1
        m = self.matched
        if m <= self.options.get("after", 0):
            return False
        if "count" in self.options and self.fired >= self.options["count"]:
            return False
        if "nth" in self.options:
            fire = m == self.options["nth"]
        elif "every" in self.options:
            fire = m % max(1, self.options["every"]) == 0
        elif "rate" in self.options:
            fire = self.rng.random() < self.options["rate"]
        else:
            fire = True
        if fire:
            self.fired += 1
        return fire


class Decision:
    """What the faults say about one request."""
    __slots__ = ("terminal", "delay_ms", "endless", "cursor_repeat", "names")

    def __init__(self):
        self.terminal = None
        self.delay_ms = 0
        self.endless = None
        self.cursor_repeat = False
        self.names = []


class FaultEngine:
    def __init__(self, specs, seed):
        self.faults = [Fault(text, i, seed) for i, text in enumerate(specs)]
        self.lock = threading.Lock()

    def decide(self, method, path):
        if not self.faults:
            return None
        out = None
        with self.lock:
            for fault in self.faults:
                if not fault.decide(method, path):
                    continue
                if out is None:
                    out = Decision()
                out.names.append(fault.kind)
                if fault.kind == "delay":
                    out.delay_ms += fault.opt("ms", 1000)
                elif fault.kind == "endless":
                    out.endless = fault.opt("mode", "cycle")
                elif fault.kind == "cursor-repeat":
                    out.cursor_repeat = True
                elif out.terminal is None:
                    out.terminal = fault
        return out


class BurstLimiter:
    """Fixed one-second windows per endpoint+method, like Jira's burst
    limits (scoped to tenant + endpoint + method)."""

    def __init__(self, limit):
        self.limit = limit
        self.lock = threading.Lock()
        self.windows = {}

    def check(self, key):
        """Returns (allowed, remaining, seconds_until_reset)."""
        now = time.time()
        window = int(now)
        with self.lock:
            start, count = self.windows.get(key, (window, 0))
            if start != window:
                start, count = window, 0
            count += 1
            self.windows[key] = (start, count)
        remaining = max(0, self.limit - count)
        return count <= self.limit, remaining, max(1, int(start + 1 - now + 0.999))
