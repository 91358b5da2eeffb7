"""HAProxy's hashing algorithms: source, uri, url_param, hdr(name), rdp-cookie(name); key from
keys.py, hash from hashfn.py, server from mapping.py.

Options (HAProxy's words): `hash-type` = "map-based" (default) | "consistent", optionally with
the function and modifier as in haproxy.cfg ("consistent djb2 avalanche"); or separately
`hash-function` = sdbm (default) | djb2 | wt6 | crc32 and `avalanche` = true. As in HAProxy, a
bare "consistent" (no function named) is sdbm with avalanche.
- source: the client address as HAProxy hashes it (XOR of its 32-bit words; the function is
  not applied, only avalanche).
- uri: `len`, `depth`, `whole`, `path-only`.
- url_param: `param` (the name); `check-post` = true (or a number of bytes) also looks in a
  POST body (application/x-www-form-urlencoded, or no Content-Type) when the query string lacks
  the parameter: the L7 path holds the pick until the first min(Content-Length, look-ahead)
  body bytes are in (the first chunk when chunked), HAProxy's "first buffer" (tune.bufsize
  16384 by default), then streams the whole body on unchanged (engine/l7/bodywait.py).
- hdr: `header` (the name, e.g. "host"); `use-domain-only`.
- rdp-cookie: `cookie` (default "mstshash"), L4 only: the relay holds the first client bytes.
When the key is absent the pick is round robin (HAProxy's fallback), over the same servers.
Cost: extracting the key is O(key length); a map lookup O(1), a ring lookup O(log points).
"""
from __future__ import annotations

from virtserve.schedulers import keys
from virtserve.schedulers.base import Needs, PickContext, Scheduler, register
from virtserve.schedulers.haproxy import HaproxyRoundRobin
from virtserve.schedulers.hashfn import FUNCTIONS, full_hash
from virtserve.schedulers.mapping import ConsistentRing, WeightedMap
from virtserve.schedulers.sh import addr_fold

HASH_TYPES = ("map-based", "consistent")
MODIFIERS = ("avalanche",)


def hash_settings(options) -> tuple[str, str, bool]:
    words = str(options.get("hash-type", "map-based")).split()
    kind = words[0] if words else "map-based"
    if kind not in HASH_TYPES:
        raise ValueError(f"hash-type must be one of {', '.join(HASH_TYPES)}, got {kind!r}")
    function = words[1] if len(words) > 1 else str(options.get("hash-function", "sdbm"))
    if function not in FUNCTIONS:
        raise ValueError(f"hash function must be one of {', '.join(FUNCTIONS)}, got {function!r}")
    modifier = words[2] if len(words) > 2 else ""
    if modifier and modifier not in MODIFIERS:
        raise ValueError(f"hash modifier must be 'avalanche', got {modifier!r}")
    # HAProxy's cfgparse: "consistent" with no function named means sdbm *with* avalanche.
    implied = kind == "consistent" and len(words) < 2 and "hash-function" not in options
    return kind, function, implied or modifier == "avalanche" or bool(options.get("avalanche"))


class HashScheduler(Scheduler):
    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        kind, function, self._avalanche = hash_settings(self.options)
        self._fn = FUNCTIONS[function]
        self._map = ConsistentRing(self.servers) if kind == "consistent" else WeightedMap(self.servers)
        self._rr = HaproxyRoundRobin(self.servers, self.options)

    def key(self, ctx: PickContext) -> bytes | None:
        raise NotImplementedError

    def hash(self, ctx: PickContext) -> int | None:
        k = self.key(ctx)
        if k is None:
            return None
        h = self._fn(k)
        return full_hash(h) if self._avalanche else h

    def pick(self, ctx: PickContext, avoid=None):
        h = self.hash(ctx)
        if h is None:
            return self._rr.pick(ctx, avoid)
        return self._map.lookup(h, avoid)

    def take(self, s) -> None:
        self._rr.take(s)

    def drop(self, s) -> None:
        self._rr.drop(s)

    def up(self, s) -> None:
        self._map.rebuild(s)
        self._rr.up(s)

    def down(self, s) -> None:
        self._map.rebuild(s)
        self._rr.down(s)

    def weight(self, s) -> None:
        self._map.rebuild(s)
        self._rr.weight(s)


@register
class Source(HashScheduler):
    name = "source"
    needs = Needs.ADDRESS

    def hash(self, ctx: PickContext) -> int | None:
        h = addr_fold(ctx.client_ip)
        return full_hash(h) if self._avalanche else h


@register
class Uri(HashScheduler):
    name = "uri"
    needs = Needs.HTTP

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        o = self.options
        self._len = int(o.get("len", 0))
        self._depth = int(o.get("depth", 0))
        self._whole = bool(o.get("whole"))
        self._path_only = bool(o.get("path-only"))

    def key(self, ctx: PickContext) -> bytes | None:
        req = ctx.request
        if req is None:
            return None
        return keys.uri_key(keys.request_target(req.head), self._len, self._depth, self._whole, self._path_only)


@register
class UrlParam(HashScheduler):
    name = "url_param"
    aliases = ("url-param",)
    needs = Needs.HTTP

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        param = self.options.get("param")
        if not param:
            raise ValueError("url_param needs the parameter's name: scheduler-options = { param = \"NAME\" }")
        self._param = str(param).encode()
        self.post_lookahead = post_lookahead(self.options.get("check-post"))

    def key(self, ctx: PickContext) -> bytes | None:
        req = ctx.request
        if req is None:
            return None
        value = keys.url_param(keys.request_target(req.head), self._param)
        if value is None and ctx.payload and self.post_lookahead:
            window = ctx.payload  # the body's first bytes (bodywait.py), whole when shorter
            whole = len(window) < self.post_lookahead or _content_length(req.head) == len(window)
            value = keys.post_param(window, self._param, whole)
        return value

    def body_wanted(self, head: bytes, chunked: bool) -> int:
        """How many body bytes the pick waits for: 0 unless check-post is on, the request is a
        POST whose query string lacks the parameter and whose body may be a form."""
        limit = self.post_lookahead
        if not limit or not head.startswith(b"POST ") or self.key_in_query(head):
            return 0
        ctype = keys.header(head, b"content-type")
        if ctype is not None and not ctype.lower().startswith(b"application/x-www-form-urlencoded"):
            return 0
        if chunked:
            return 1  # the first chunk, as HAProxy
        return min(limit, _content_length(head))

    def key_in_query(self, head: bytes) -> bool:
        return keys.url_param(keys.request_target(head), self._param) is not None


POST_LOOKAHEAD = 16384  # HAProxy's tune.bufsize: check_post reads the first buffer


def post_lookahead(value) -> int:
    """check-post: false/absent -> 0, true -> POST_LOOKAHEAD, a number of bytes -> that."""
    if value is None or value is False:
        return 0
    if value is True:
        return POST_LOOKAHEAD
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"check-post must be true or a number of bytes, got {value!r}") from None
    if n < 0 or isinstance(value, float):
        raise ValueError(f"check-post must be true or a number of bytes, got {value!r}")
    return n


def _content_length(head: bytes) -> int:
    value = keys.header(head, b"content-length")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


@register
class Header(HashScheduler):
    name = "hdr"
    needs = Needs.HTTP

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        header = self.options.get("header")
        if not header:
            raise ValueError("hdr needs the header's name: scheduler-options = { header = \"host\" }")
        self._header = str(header).encode()
        self._domain_only = bool(self.options.get("use-domain-only"))

    def key(self, ctx: PickContext) -> bytes | None:
        req = ctx.request
        if req is None:
            return None
        value = keys.header(req.head, self._header)
        if value is not None and self._domain_only:
            value = keys.domain_only(value)
        return value


@register
class RdpCookie(HashScheduler):
    name = "rdp-cookie"
    needs = Needs.PAYLOAD

    def __init__(self, servers, options=None) -> None:
        super().__init__(servers, options)
        self._cookie = str(self.options.get("cookie", "mstshash")).encode()

    def key(self, ctx: PickContext) -> bytes | None:
        return keys.rdp_cookie(ctx.payload, self._cookie) if ctx.payload else None
