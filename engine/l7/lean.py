"""The common case's client protocol: a frontend that never reads a request header.

A frontend without rules, routes, in-band stats, httpclose, client-certificate headers,
persistence or a scheduler that reads the request (decided once, by `choose`, when the frontend
is built) serves its plain connections with LeanProxyProtocol. A request that comes whole in one
read (the head and nothing after it) and names none of the headers the proxy owns is forwarded
as the bytes it came in, X-Forwarded-For/-Proto spliced in before the blank line: httptools
(strict llhttp) validates it with no Python callback at all, and it is dispatched at once. Its
usual end (keep-alive, nothing counting loads) is accounted in one call, not three.

Anything else (a body, a head split over reads, pipelining, HTTP/1.0, Upgrade, hop-by-hop or
X-Forwarded-* headers, CONNECT) switches the connection, at that request boundary and for good,
to the full path of l7/protocol.py, with the same behaviour as a full-path connection.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import httptools

from virtserve.engine.admin.accounting import http_done
from virtserve.engine.l7.protocol import MAX_HEAD, Exchange, HttpProxyProtocol
from virtserve.schedulers.base import Needs

if TYPE_CHECKING:
    from virtserve.engine.frontend import Frontend

# The headers whose presence sends a request to the full path (hop-by-hop, framing, the
# X-Forwarded-* the proxy merges or replaces). One search: a regex beats a dozen byte scans.
# Connection is handled here when it says only close or keep-alive (clients often send it).
_OWNED = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|upgrade|transfer-encoding|content-length"
    rb"|x-forwarded-for|x-forwarded-proto)[ \t]*:", re.IGNORECASE)


class _NoCallbacks:
    """The lean parser's target: httptools calls only what its target defines."""

    __slots__ = ()


_BARE = _NoCallbacks()


def eligible(fe: Frontend) -> bool:
    """True when nothing in fe's config reads or edits a request's headers."""
    return (fe.spec.mode == "http" and fe.pipeline is None and not fe.capture and not fe.strip
            and not fe.needs & Needs.HTTP and all(b.persistence is None for b in fe.uses))


def choose(fe: Frontend, protocol: Callable[[Frontend], object]) -> Callable[[Frontend], object]:
    """The client protocol for fe's plain binds."""
    return LeanProxyProtocol if protocol is HttpProxyProtocol and eligible(fe) else protocol


class LeanProxyProtocol(HttpProxyProtocol):
    __slots__ = ("lean", "tail")

    def __init__(self, fe: Frontend) -> None:
        super().__init__(fe)
        self.lean = True  # self.parser is the callback-free one
        self.tail = b""  # with forwardfor, what ends every forwarded head: X-Forwarded-*, blank line

    def new_parser(self) -> httptools.HttpRequestParser:
        return httptools.HttpRequestParser(_BARE)

    def _full(self) -> None:
        """From the next request on, the full path (called at a request boundary)."""
        self.lean = False
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        if not self.lean:
            HttpProxyProtocol.data_received(self, data)
            return
        if self.closed or self.fatal:
            return
        current = self.current
        n = len(data)
        if current is not None or n > MAX_HEAD or data.find(b"\r\n\r\n") != n - 4:
            self._full()  # the lean parser is between requests: the full one takes over
            HttpProxyProtocol.data_received(self, data)
            return
        line = data.find(b"\r\n")
        keep_alive = True
        head = data
        owned = _OWNED.search(head, line)
        if owned is not None and owned.end(1) - owned.start(1) == 10 and data[owned.start(1)] in b"cC":
            # Connection: close or keep-alive, said once
            end = data.find(b"\r\n", owned.end())
            token = data[owned.end():end].strip(b" \t").lower()
            if token == b"close":
                keep_alive = False
            elif token != b"keep-alive":
                end = -1
            if end >= 0:
                head = data[:owned.start()] + data[end:]  # hop-by-hop: not forwarded
                owned = _OWNED.search(head, owned.start())
        if owned is not None or data[line - 9:line] != b" HTTP/1.1" or data.startswith(b"CONNECT "):
            self._full()
            HttpProxyProtocol.data_received(self, data)
            return
        try:
            self.parser.feed_data(head)
        except httptools.HttpParserError:
            self._full()
            self._bad_request(400)
            return
        if self.fe.forwardfor:
            tail = self.tail
            if not tail:
                tail = self.tail = (b"x-forwarded-for: " + self.ctx.client_ip.encode()
                                    + b"\r\nx-forwarded-proto: " + self.scheme + b"\r\n\r\n")
            head = head[:-2] + tail
        ex = Exchange(head, keep_alive, data.startswith(b"HEAD "), False, False, False)
        ex.complete = True
        ex.t_begin = ex.t_head = self._t_begin = self.state.loop.time()
        self.deadline = 0.0
        self.current = ex
        # _dispatch, inline for the usual case (no persistence or look-ahead here: eligible()):
        # the scheduler's pick, Backend.take, and an idle pooled connection to the server.
        backend = ex.backend = self.backend
        ctx = self.ctx
        ctx.request = ex
        server = backend.scheduler.pick(ctx, None) or backend.pick_spare(ctx, None)
        if server is None:
            self.upstream_failed(ex, 503)
            return
        if backend.counting or server.send_proxy:
            self._send_to(ex, server)  # load hooks, or a PROXY header per client connection
            return
        server.active += 1
        counters = server.counters
        if server.active > counters.max_cur:
            counters.max_cur = server.active
        server.total += 1
        backend.total += 1
        ex.server = server
        idle = self.fe.pool.idle.get(server)
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():
                conn.attach(self, ex)
                return
        self.state.spawn(self._connect(ex, server))

    def response_done(self, ex: Exchange, close: bool) -> None:
        """_ended, merged for the usual end of a lean exchange: accounted, the server released,
        the connection waits for the next request."""
        if (close or not self.lean or not ex.keep_alive or self.paused or self.eof or self.closed
                or self.state.draining or self.fe.retired or ex.backend.counting):
            HttpProxyProtocol.response_done(self, ex, close)
            return
        state = self.state
        http_done(self, ex, ex.status, "--", state.loop.time())
        server = ex.server
        if server is not None:
            server.active -= 1  # Backend.drop when nothing counts loads (no persistence: lean)
            ex.last_server = server
            ex.server = None
        self.current = None
        self.deadline = state.now + self.fe.t_keep_alive

    def reads_done(self) -> bool:
        """For engine/rawio.py after the first read: a whole lean request is being answered,
        nothing more is needed from the client until the response is written."""
        return self.lean and self.current is not None

    def migrate(self) -> bool:
        if not HttpProxyProtocol.migrate(self):
            return False
        if self.lean and not eligible(self.fe):
            self._full()
        return True
