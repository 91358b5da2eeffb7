"""A frontend's request rules and routes, compiled once and run per request. Sans-IO.

The protocol (l7/protocol.py) hands over what its parser gathered: the method, the URL, the
header lines it will forward (name, ": ", value, CRLF quadruples), the headers a condition reads
(captured only when a rule needs them) and the client address. `Pipeline.run` applies the rules
in order (add-header, set-header, del-header edit the lines; a redirect answers at once and ends
the rules), then picks the backend: the first route whose condition holds, else None (the
frontend's default_backend). Conditions see the headers as earlier rules left them, as HAProxy's.

A frontend without rules or routes has no Pipeline: its requests never come here.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Callable, Mapping

from virtserve.engine.config.rules import (
    Acl,
    Condition,
    HeaderRuleSpec,
    Match,
    RedirectRuleSpec,
)
from virtserve.engine.l7.responses import ERROR

Test = Callable[["Request"], bool]

_REASONS = {301: b"Moved Permanently", 302: b"Found", 303: b"See Other",
            307: b"Temporary Redirect", 308: b"Permanent Redirect"}
_NO_CACHE = frozenset({302, 303, 307})  # HAProxy marks the temporary ones cache-control: no-cache
_DOM = b"/?.:"
_DIR = b"/?"


class Request:
    """What the rules read and change of one request. `headers` holds the captured ones:
    lower-case name -> values in order."""

    __slots__ = ("method", "url", "path", "headers", "src", "parts", "drop_xff", "backend", "reply",
                 "keep_alive", "status", "sets_proto")

    def __init__(self, method: bytes, url: bytes, headers: dict[bytes, list[bytes]], src: str,
                 parts: list[bytes], keep_alive: bool = True) -> None:
        self.method = method
        self.url = url
        self.path = url if url[:1] == b"/" and b"?" not in url else path_of(url)
        self.headers = headers
        self.src = src
        self.parts = parts  # the header lines to forward, edited in place by the rules
        self.drop_xff = False  # a rule removed the client's X-Forwarded-For (kept apart by the protocol)
        self.backend: Any = None  # the route's backend; None: the default
        self.reply: bytes | None = None  # the proxy's own answer (a redirect): no server is asked
        self.keep_alive = keep_alive  # after the reply
        self.status = 0
        # A rule added X-Forwarded-Proto (haproxy.cfg's `reqadd X-Forwarded-Proto:\ http` beside
        # `option forwardfor`): the operator's value goes alone, as in HAProxy, whose forwardfor
        # adds X-Forwarded-For only.
        self.sets_proto = False

    def origin_form(self) -> bytes:
        """The request target without scheme and authority: path and query."""
        url = self.url
        if url[:1] == b"/":
            return url
        start = url.find(b"://")
        if start < 0:
            return b"/"  # "*" (OPTIONS)
        slash = url.find(b"/", start + 3)
        if slash < 0:
            query = url.find(b"?", start + 3)
            return b"/" + (url[query:] if query >= 0 else b"")
        return url[slash:]


def path_of(url: bytes) -> bytes:
    """HAProxy's `path`: from the first slash (after any scheme://authority) to before '?'."""
    if url[:1] != b"/":
        start = url.find(b"://")
        if start < 0:
            return url if url == b"*" else b""
        slash = url.find(b"/", start + 3)
        if slash < 0:
            return b""
        url = url[slash:]
    query = url.find(b"?")
    return url if query < 0 else url[:query]


class Pipeline:
    """One frontend's compiled rules and routes. `backends` maps names to the runtime objects a
    route hands back (anything: the tests pass strings)."""

    __slots__ = ("steps", "routes", "capture")

    def __init__(self, rules: tuple, routes: tuple, backends: Mapping[str, Any]) -> None:
        capture: set[bytes] = set()
        self.steps: list[tuple[Test | None, Any]] = []
        for rule in rules:
            test = compile_condition(rule.condition, capture)
            if isinstance(rule, HeaderRuleSpec):
                edit = _HeaderEdit(rule)
                if edit.action != "add-header":  # seen in on_header: no walk when it is absent
                    capture.add(edit.lname)
                self.steps.append((test, edit))
            else:
                if rule.type == "scheme":
                    capture.add(b"host")
                self.steps.append((test, _Redirect(rule)))
        self.routes = [(compile_condition(route.condition, capture), backends[route.backend])
                       for route in routes]
        self.capture = frozenset(capture)  # header names (lower case) the conditions read

    def run(self, req: Request) -> Request:
        for test, action in self.steps:
            if test is None or test(req):
                if action.apply(req):
                    return req  # answered: no more rules, no route
        for test, backend in self.routes:
            if test is None or test(req):
                req.backend = backend
                break
        return req

    def route_source(self, src: str) -> Any:
        """Mode tcp: the backend for a connection from src (routes test src only), or None."""
        req = Request(b"", b"", {}, src, [])
        for test, backend in self.routes:
            if test is None or test(req):
                return backend
        return None


class _HeaderEdit:
    __slots__ = ("action", "name", "lname", "value")

    def __init__(self, rule: HeaderRuleSpec) -> None:
        self.action = rule.action
        self.name = rule.name.encode("latin-1")
        self.lname = self.name.lower()
        self.value = rule.value.encode()

    def apply(self, req: Request) -> bool:
        lname = self.lname
        if self.action != "add-header":  # set-header and del-header remove what was there
            if req.headers.pop(lname, None) is not None:
                req.parts = _without(req.parts, lname)
                if lname == b"x-forwarded-for":
                    req.drop_xff = True
            if self.action == "del-header":
                return False
        req.parts += (self.name, b": ", self.value, b"\r\n")
        if lname == b"x-forwarded-proto":
            req.sets_proto = True
        values = req.headers.get(lname)
        if values is not None:
            values.append(self.value)
        else:
            req.headers[lname] = [self.value]
        return False


def _without(parts: list[bytes], lname: bytes) -> list[bytes]:
    """The header lines (quadruples) without those named lname."""
    kept: list[bytes] = []
    for i in range(0, len(parts), 4):
        if parts[i].lower() != lname:
            kept += parts[i:i + 4]
    return kept


class _Redirect:
    __slots__ = ("type", "target", "head", "tail", "drop_query", "append_slash")

    def __init__(self, rule: RedirectRuleSpec) -> None:
        self.type = rule.type
        self.target = rule.target.encode()
        self.head = b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nlocation: " % (rule.code, _REASONS[rule.code])
        self.tail = b"\r\ncache-control: no-cache\r\n" if rule.code in _NO_CACHE else b"\r\n"
        self.drop_query = rule.drop_query
        self.append_slash = rule.append_slash

    def apply(self, req: Request) -> bool:
        if self.type == "location":
            location = self.target
        else:
            uri = req.origin_form()
            if self.drop_query:
                uri = uri.partition(b"?")[0]
                if self.append_slash and not uri.endswith(b"/"):
                    uri += b"/"
            if self.type == "prefix":
                location = uri if self.target == b"/" else self.target + uri  # as HAProxy: no slash merging
            else:
                host = req.headers.get(b"host")
                if not host or not host[-1] or any(c in host[-1] for c in b"\r\n /"):
                    req.reply, req.keep_alive, req.status = ERROR[400], False, 400
                    return True
                location = self.target + b"://" + host[-1] + uri
        closing = b"" if req.keep_alive else b"connection: close\r\n"
        req.reply = b"".join((self.head, location, self.tail, closing, b"\r\n"))
        req.status = int(self.head[9:12])
        return True


# --- conditions -------------------------------------------------------------------------------

def compile_condition(condition: Condition | None, capture: set[bytes]) -> Test | None:
    """A function of the request that says whether the condition holds; adds the header names
    it reads to capture. None for no condition (always)."""
    if condition is None:
        return None
    groups = [tuple(_compile_term(t.acl, t.negate, capture) for t in group) for group in condition.any_of]
    if len(groups) == 1 and len(groups[0]) == 1 and not condition.unless:
        return groups[0][0]
    unless = condition.unless

    def test(req: Request) -> bool:
        for group in groups:
            for term in group:
                if not term(req):
                    break
            else:
                return not unless
        return unless
    return test


def _compile_term(acl: Acl, negate: bool, capture: set[bytes]) -> Test:
    tests = [compile_match(m, capture) for m in acl.matches]
    if len(tests) == 1:
        one = tests[0]
        return (lambda req: not one(req)) if negate else one
    if negate:
        return lambda req: not any(t(req) for t in tests)
    return lambda req: any(t(req) for t in tests)


def compile_match(m: Match, capture: set[bytes]) -> Test:
    if m.fetch == "always_true":
        return lambda req: True
    if m.fetch == "always_false":
        return lambda req: False
    if m.fetch == "src":
        return _ip_test(m.values)
    compare = _comparer(m)
    fold = m.ignore_case
    if m.fetch == "hdr":
        name = m.arg.encode("latin-1").lower()
        capture.add(name)

        def header(req: Request) -> bool:
            values = req.headers.get(name)
            if not values:
                return False
            for value in values:
                if b"," not in value:
                    value = value.strip()
                    if compare(value.lower() if fold else value):
                        return True
                    continue
                for item in value.split(b","):  # hdr() reads each comma-separated value
                    item = item.strip()
                    if compare(item.lower() if fold else item):
                        return True
            return False
        return header
    if m.fetch == "path":
        return (lambda req: compare(req.path.lower())) if fold else (lambda req: compare(req.path))
    if m.fetch == "url":
        return (lambda req: compare(req.url.lower())) if fold else (lambda req: compare(req.url))
    if m.fetch == "method":
        return (lambda req: compare(req.method.lower())) if fold else (lambda req: compare(req.method))
    raise ValueError(f"unknown fetch {m.fetch!r}")


def _comparer(m: Match) -> Callable[[bytes], bool]:
    values = tuple(v.encode() for v in m.values)
    if m.ignore_case:
        values = tuple(v.lower() for v in values)
    method = m.method
    if method == "found":
        return lambda sample: True
    if method == "str":
        exact = frozenset(values)
        return exact.__contains__
    if method == "beg":
        return lambda sample: sample.startswith(values)
    if method == "end":
        return lambda sample: sample.endswith(values)
    if method == "sub":
        return lambda sample: any(v in sample for v in values)
    if method in ("dom", "dir"):
        delims = _DOM if method == "dom" else _DIR
        words = tuple(w for w in (v.strip(delims) for v in values) if w)
        return lambda sample: any(_word_in(sample, w, delims) for w in words)
    raise ValueError(f"unknown match method {method!r}")


def _word_in(sample: bytes, word: bytes, delims: bytes) -> bool:
    """HAProxy's dom/dir match: word occurs in sample between delimiters (or the ends)."""
    start = 0
    n = len(word)
    while True:
        i = sample.find(word, start)
        if i < 0:
            return False
        end = i + n
        if (i == 0 or sample[i - 1] in delims) and (end == len(sample) or sample[end] in delims):
            return True
        start = i + 1


def _ip_test(values: tuple[str, ...]) -> Test:
    # Networks as integer ranges: comparing ints is far cheaper than `address in network`.
    ranges = []
    for value in values:
        net = ipaddress.ip_network(value, strict=False)
        ranges.append((net.version, int(net.network_address), int(net.broadcast_address)))

    def test(req: Request) -> bool:
        key = _address(req.src)
        if key is None:
            return False
        version, number = key
        for v, low, high in ranges:
            if v == version and low <= number <= high:
                return True
        return False
    return test


@lru_cache(maxsize=4096)
def _address(text: str) -> tuple[int, int] | None:
    """(IP version, address as an int) of a client address, or None."""
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
        addr = addr.ipv4_mapped
    return addr.version, int(addr)
