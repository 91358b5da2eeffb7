"""Persistence layered on any scheduler: consulted before it, told what it picked. Sans-IO.

- SourcePersistence: IPVS `persistent TIMEOUT` + `netmask` templates, and HAProxy `stick on src`
  (a bounded stick table with expiry). The masked client address keys a record
  [server, connections, expiry]; a record holds while it has connections and until `timeout`
  after the last one ended (IPVS) or after its last use (stick). A weight-0 server keeps its
  records (IPVS serves existing templates); a down one loses them. The table is bounded: at
  `size` entries the least recently used idle ones go first. O(1) per pick.
- CookiePersistence: HAProxy `cookie NAME insert|rewrite|prefix ...` (see README). A request
  cookie naming an up server goes to it; else the scheduler picks and the response carries the
  cookie. Requests and responses are edited only when cookies are configured.

A persisted server that is down is not used (HAProxy without `option persist`; the kernel
invalidates the template). A retry after a failed connection stays on the persisted server
unless `redispatch` is set (HAProxy `option redispatch`).
"""
from __future__ import annotations

import ipaddress
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

from virtserve.schedulers import keys

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.config.model import CookieSpec
    from virtserve.schedulers.base import PickContext


@lru_cache(maxsize=65536)
def masked(ip: str, bits4: int, bits6: int) -> str:
    try:
        addr = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return ip
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = bits4 if addr.version == 4 else bits6
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False).network_address)


class _Record:
    __slots__ = ("key", "server", "conns", "expires")

    def __init__(self, key: str, server: Server) -> None:
        self.key = key
        self.server = server
        self.conns = 0
        self.expires = 0.0


class SourcePersistence:
    def __init__(self, timeout: float, size: int = 1 << 20, bits4: int = 32, bits6: int = 128,
                 redispatch: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.size = size
        self.bits4, self.bits6 = bits4, bits6
        self.redispatch = redispatch
        self.clock = clock
        self.table: dict[str, _Record] = {}  # least recently used first

    def pick(self, ctx: PickContext, avoid: Server | None) -> Server | None:
        key = masked(ctx.client_ip, self.bits4, self.bits6)
        rec = self.table.get(key)
        if rec is None:
            return None
        if not rec.server.up or (rec.conns <= 0 and self.clock() >= rec.expires):
            del self.table[key]
            return None
        if rec.server is avoid and self.redispatch:
            return None
        del self.table[key]  # to the most recently used end
        self.table[key] = rec
        rec.conns += 1
        ctx.persist = rec
        return rec.server

    def picked(self, ctx: PickContext, server: Server) -> None:
        key = masked(ctx.client_ip, self.bits4, self.bits6)
        table = self.table
        rec = table.pop(key, None)
        if rec is None or rec.server is not server:
            rec = _Record(key, server)
            if len(table) >= self.size:
                self._evict()
        table[key] = rec
        rec.conns += 1
        ctx.persist = rec

    def _evict(self) -> None:
        table = self.table
        while len(table) >= self.size:  # least recently used first
            del table[next(iter(table))]

    def dropped(self, ctx: PickContext, server: Server) -> None:
        rec = ctx.persist
        if isinstance(rec, _Record) and rec.server is server:
            rec.conns -= 1
            rec.expires = self.clock() + self.timeout
            ctx.persist = None


class _CookieChoice:
    """What the cookie layer decided for one request."""

    __slots__ = ("request", "server", "valid", "first")

    def __init__(self, request: Any, server: Server | None, valid: bool, first: int) -> None:
        self.request = request
        self.server = server  # the server the request's cookie names (up), or None
        self.valid = valid  # the cookie needs no refresh
        self.first = first  # first-seen date carried in the cookie (maxlife)


class CookiePersistence:
    def __init__(self, spec: CookieSpec, servers: list[Server], redispatch: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.name = spec.name.encode()
        self.mode = spec.mode
        self.redispatch = redispatch
        self.clock = clock
        self.by_value = {(s.spec.cookie or s.name).encode(): s for s in servers}
        self.value_of = {id(s): v for v, s in self.by_value.items()}
        attrs = b"; path=/"
        if spec.domain:
            attrs += b"; domain=" + spec.domain.encode()
        if spec.httponly:
            attrs += b"; HttpOnly"
        if spec.secure:
            attrs += b"; Secure"
        self.attrs = attrs

    # --- request side ---------------------------------------------------------------------

    def pick(self, ctx: PickContext, avoid: Server | None) -> Server | None:
        ex = ctx.request
        if ex is None:
            return None
        choice = ctx.persist
        if not (isinstance(choice, _CookieChoice) and choice.request is ex):
            choice = ctx.persist = self._read(ex)
        s = choice.server
        if s is None or not s.up:
            return None
        if s is avoid and self.redispatch:
            return None
        if self.mode == "insert" and not choice.valid:
            ex.response_edit = self._inserter(ex, s, choice.first)
        return s

    def _read(self, ex: Any) -> _CookieChoice:
        head = ex.head
        value = keys.cookie(head, self.name)
        if value is None:
            return _CookieChoice(ex, None, False, 0)
        first = 0
        valid = True
        if self.mode == "prefix":
            srv, sep, _ = value.partition(b"~")
            if not sep:
                return _CookieChoice(ex, None, False, 0)
            value = srv
        elif self.mode == "insert" and (self.spec.maxidle or self.spec.maxlife):
            value, valid, first, ok = self._dates(value)
            if not ok:
                value = b""
        if self.mode == "prefix" or (self.mode == "insert" and self.spec.indirect):
            ex.head = self._strip(head)
        server = self.by_value.get(value)
        return _CookieChoice(ex, server, valid, first)

    def _dates(self, value: bytes) -> tuple[bytes, bool, int, bool]:
        """`SRV|last|first` (hex seconds): (server value, no refresh needed, first, not expired)."""
        parts = value.split(b"|")
        now = int(self.clock())
        try:
            last = int(parts[1], 16) if len(parts) > 1 and parts[1] else 0
            first = int(parts[2], 16) if len(parts) > 2 and parts[2] else 0
        except ValueError:
            return parts[0], False, 0, False
        spec = self.spec
        if spec.maxidle and (not last or now - last > spec.maxidle):
            return parts[0], False, 0, False
        if spec.maxlife and (not first or now - first > spec.maxlife):
            return parts[0], False, 0, False
        fresh = not spec.maxidle or now - last < max(1.0, spec.maxidle / 4)
        return parts[0], fresh, first, True

    def _strip(self, head: bytes) -> bytes:
        """The request head with our cookie removed (indirect) or unprefixed (prefix)."""
        lines = head.split(b"\r\n")
        name = self.name + b"="
        out = []
        for line in lines:
            if line[:7].lower() == b"cookie:":
                kept = []
                for part in line[7:].split(b";"):
                    p = part.strip()
                    if p.startswith(name):
                        if self.mode != "prefix":
                            continue
                        p = name + p[len(name):].partition(b"~")[2]
                    if p:
                        kept.append(p)
                if not kept:
                    continue
                line = b"Cookie: " + b"; ".join(kept)
            out.append(line)
        return b"\r\n".join(out)

    def picked(self, ctx: PickContext, server: Server) -> None:
        ex = ctx.request
        if ex is None:
            return
        if self.mode == "insert":
            ex.response_edit = self._inserter(ex, server, 0)
        else:
            ex.response_edit = self._rewriter(server)

    def dropped(self, ctx: PickContext, server: Server) -> None:
        pass

    # --- response side ----------------------------------------------------------------------

    def _value(self, server: Server, first: int) -> bytes:
        value = self.value_of.get(id(server), server.name.encode())
        spec = self.spec
        if spec.maxidle or spec.maxlife:
            now = int(self.clock())
            value += b"|%x|%x" % (now, first or now)
        return value

    def _inserter(self, ex: Any, server: Server, first: int) -> Callable[[bytes], bytes] | None:
        spec = self.spec
        if spec.postonly and keys.method(ex.head) != b"POST":
            return None
        line = b"Set-Cookie: " + self.name + b"=" + self._value(server, first) + self.attrs + b"\r\n"
        if spec.nocache:
            line += b"Cache-Control: private\r\n"
        name = self.name

        def insert(head: bytes) -> bytes:
            if spec.preserve and _sets_cookie(head, name):
                return head
            return head[:-2] + line + b"\r\n"

        return insert

    def _rewriter(self, server: Server) -> Callable[[bytes], bytes]:
        value = self.value_of.get(id(server), server.name.encode())
        name = self.name + b"="
        prefix = self.mode == "prefix"

        def rewrite(head: bytes) -> bytes:
            lines = head.split(b"\r\n")
            for i, line in enumerate(lines):
                if line[:11].lower() == b"set-cookie:":
                    v = line[11:].lstrip()
                    if v.startswith(name):
                        rest = v[len(name):]
                        if prefix:
                            lines[i] = b"Set-Cookie: " + name + value + b"~" + rest
                        else:
                            end = rest.find(b";")
                            lines[i] = b"Set-Cookie: " + name + value + (rest[end:] if end >= 0 else b"")
            return b"\r\n".join(lines)

        return rewrite


def _sets_cookie(head: bytes, name: bytes) -> bool:
    lower = head.lower()
    needle = b"\r\nset-cookie:"
    pos = lower.find(needle)
    while pos >= 0:
        start = pos + len(needle)
        if head[start:start + len(name) + 2].lstrip().startswith(name + b"="):
            return True
        pos = lower.find(needle, start)
    return False


def edit_response(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """Apply `edit` to the final (non-1xx) response head at the start of data, which holds it
    whole; the head passed includes its closing blank line's first CRLF pair."""
    pos = 0
    while True:
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return data
        if data[pos + 9:pos + 10] != b"1":
            break
        pos = end + 4
    return data[:pos] + edit(data[pos:end + 4]) + data[end + 4:]
