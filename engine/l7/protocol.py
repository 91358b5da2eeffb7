"""The client side of the HTTP/1.1 proxy: one asyncio.Protocol per client connection.

httptools (llhttp, strict mode) frames requests; it rejects the smuggling shapes (both
Content-Length and Transfer-Encoding, duplicate Content-Length, obs-fold, bare LF) itself.
Each request head is rebuilt from the parsed pieces, so only what was understood is
forwarded: hop-by-hop headers dropped, X-Forwarded-For/-Proto added, chunked bodies re-framed.
Pipelined requests wait in a queue, with reading paused, and are answered in order.
No task per request: the protocols call each other, and a full write buffer on one side pauses
reading on the other.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools

from virtserve.engine.admin.accounting import (connect_failed, connected, http_done, redispatched, tunnel_closed,
                                               tunnel_opened)
from virtserve.engine.l7.pipeline import Request
from virtserve.engine.l7.responses import ERROR
from virtserve.engine.l7.upstream import HttpUpstreamProtocol
from virtserve.engine.upstream.connect import open_server
from virtserve.schedulers.base import PickContext

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend

MAX_HEAD = 32 * 1024  # bytes of request head we accept before answering 400
MAX_PENDING_BODY = 256 * 1024  # request body bytes held while the server connection is being set up

# Reasons reading from the client is paused; reading resumes when none is left.
_PIPELINE, _BODY, _UPSTREAM, _UPGRADE = 1, 2, 4, 8

# Headers the proxy owns or that only mean something on one hop (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade"})
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
_SPECIAL = _HOP_BY_HOP | _FORWARDED | {b"transfer-encoding", b"content-length"}
_VERSION = {"1.1": b" HTTP/1.1\r\n", "1.0": b" HTTP/1.0\r\n"}


class _Reject(Exception):
    """Raised from a parser callback: the request is refused with this status."""

    def __init__(self, status: int) -> None:
        self.status = status


class Exchange:
    """One request and its response."""

    __slots__ = ("head", "pending", "pending_size", "complete", "keep_alive", "head_request",
                 "chunked", "retriable", "upgrade", "early", "conn", "server", "tries",
                 "response_started",
                 # for the stats and the log: loop times, bytes, status, the server that answered
                 "t_begin", "t_head", "t_resp", "t_conn", "bytes_in", "bytes_out", "status",
                 "last_server", "response_edit", "backend", "reply")

    def __init__(self, head: bytes, keep_alive: bool, head_request: bool, chunked: bool,
                 has_body: bool, upgrade: bool) -> None:
        self.head = head
        self.pending: list[bytes] = []  # body bytes not yet sent to the server
        self.pending_size = 0
        self.complete = False  # the whole request was read from the client
        self.keep_alive = keep_alive
        self.head_request = head_request
        self.chunked = chunked
        self.retriable = not has_body  # can be re-sent whole on another connection
        self.upgrade = upgrade
        self.early = b""  # tunnel bytes the client sent after an Upgrade request
        self.conn: HttpUpstreamProtocol | None = None
        self.server: Server | None = None
        self.tries = 0
        self.response_started = False
        self.t_begin = self.t_head = self.t_resp = self.t_conn = 0.0
        self.bytes_in = len(head)
        self.bytes_out = 0
        self.status = 0
        self.last_server: Server | None = None
        self.response_edit = None  # persistence: edits the response head (Set-Cookie), or None
        self.backend = None  # where it goes: a route's backend, or the frontend's (set at dispatch)
        self.reply: bytes | None = None  # the proxy's own answer (a redirect rule): no server


class HttpProxyProtocol(asyncio.Protocol):
    __slots__ = (
        "fe", "state", "backend", "transport", "parser", "ctx", "deadline", "paused",
        "current", "queue", "parsing", "in_head", "head_size", "head_raw", "began", "closed",
        "fatal", "tunnel", "blocked", "eof", "scheme", "added", "special",
        "_url", "_parts", "_xff", "_connection", "_upgrade", "_chunked", "_has_body",
        "t_accept", "_t_begin", "pipeline", "capture", "_seen",
    )

    def __init__(self, fe: Frontend) -> None:
        self.fe = fe
        self.state = fe.state
        self.backend = fe.backend
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = self.new_parser()
        self.ctx = PickContext()
        self.deadline = 0.0
        self.paused = 0
        self.current: Exchange | None = None  # being answered
        self.queue: deque[Exchange] = deque()  # pipelined, waiting their turn
        self.parsing: Exchange | None = None  # head done, body still arriving
        self.in_head = False
        self.head_size = 0  # head bytes seen by the parser callbacks (url, headers)
        self.head_raw = 0  # bytes received while a head is incomplete (bounds httptools' buffer)
        self.began = False  # a request began within the bytes being parsed now
        self.closed = False
        self.fatal = 0  # an error status to send once the requests before it are answered
        self.tunnel: HttpUpstreamProtocol | None = None
        self.blocked = False  # the client's write buffer is over its high-water mark
        self.eof = False  # the client shut down its sending side
        self.t_accept = self._t_begin = 0.0
        self.scheme = fe.scheme  # X-Forwarded-Proto: b"https" on a TLS listener (listeners.Origin)
        self.added = b""  # header lines for every request (the client certificate's)
        self.special = _SPECIAL | fe.strip if fe.strip else _SPECIAL
        # Rules and routes (l7/pipeline.py), None for a frontend without: its heads are built
        # as they always were. The headers their conditions read are captured in on_header.
        self.pipeline = fe.pipeline
        self.capture = fe.capture
        self._seen: dict[bytes, list[bytes]] = {}
        if fe.capture:
            self.special = self.special | fe.capture
        self._new_request()

    def new_parser(self) -> httptools.HttpRequestParser:
        return httptools.HttpRequestParser(self)  # l7/lean.py starts with one without callbacks

    def _new_request(self) -> None:
        self._url = b""
        self._parts: list[bytes] = []
        self._xff: bytes | None = None
        self._connection: bytes | None = None
        self._upgrade: bytes | None = None
        self._chunked = False
        self._has_body = False

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        ctx = self.ctx
        fe = self.fe
        if not ctx.client_ip:  # else set from a PROXY header (listeners.Origin)
            peer = transport.get_extra_info("peername")
            if peer:
                ctx.client_ip, ctx.client_port = peer[0], peer[1]
        if fe.needs_dest:
            ctx.dest_ip = transport.get_extra_info("sockname")[0]
        fe.accepted()
        state = self.state
        state.conns.add(self)
        self.t_accept = now = state.now
        self.deadline = now + fe.t_http_request

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            tunnel.ex.bytes_in += len(data)  # accounted when the tunnel closes (tunnel_closed)
            # Traffic either way keeps both sides of a tunnel alive (one-way streams exist).
            now = self.state.now
            self.deadline = now + self.fe.t_client
            tunnel.deadline = now + self.fe.t_server
            return
        if self.fatal or self.closed:
            return
        self.began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_requested(data[exc.args[0]:])
            if self.fatal:
                return
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Reject):
                raise
            self._bad_request(exc.__context__.status)
            return
        except httptools.HttpParserError:
            self._bad_request(400)
            return
        if self.in_head:
            # The callbacks count what the parser handed over; a head that never ends (one
            # endless header value) sits in httptools' buffer, so bound the raw bytes too. The
            # piece where a head began is not counted: it may hold the previous request's body.
            if not self.began:
                self.head_raw += len(data)
                if self.head_raw > MAX_HEAD:
                    self._bad_request(400)
                    return
        elif self.parsing is not None and not self.paused & _UPSTREAM:
            self.deadline = self.state.now + self.fe.t_client
        if self.current is None and self.queue:
            self._start_next()
        if self.queue:
            self._pause(_PIPELINE)

    # --- httptools callbacks: build the head to forward ---------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = self.began = True
        self.head_size = self.head_raw = 0
        self._t_begin = self.state.loop.time()
        if self.current is None:  # a pipelined head waits its turn without a clock
            self.deadline = self.state.now + self.fe.t_http_request

    def on_url(self, url: bytes) -> None:
        self._url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            raise _Reject(400)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer after a chunked body: dropped, as the body is re-framed
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            raise _Reject(400)
        lname = name.lower()
        if lname in self.special:
            if lname in self.capture:  # a header a rule's condition reads
                seen = self._seen.get(lname)
                if seen is None:
                    self._seen[lname] = [value]
                else:
                    seen.append(value)
                if lname not in _SPECIAL and lname not in self.fe.strip:
                    self._parts += (name, b": ", value, b"\r\n")
                    return
            if lname == b"x-forwarded-for":
                self._xff = value if self._xff is None else self._xff + b", " + value
                return
            if lname == b"connection":
                self._connection = value.lower()
                return
            if lname == b"upgrade":
                self._upgrade = value
                return
            if lname == b"transfer-encoding":
                self._chunked = self._has_body = True
            elif lname == b"content-length":
                self._has_body = value != b"0"
            elif lname in _HOP_BY_HOP or self.fe.forwardfor:
                return  # hop-by-hop, or an X-Forwarded-Proto the proxy will set
            elif lname not in _SPECIAL:
                return  # a client certificate header: only the proxy sets it
        self._parts += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        parser = self.parser
        fe = self.fe
        method = parser.get_method()
        version = _VERSION.get(parser.get_http_version())
        if version is None:  # HTTP/0.9 (llhttp takes it) or an unknown version
            raise _Reject(400)
        if method == b"CONNECT":
            raise _Reject(405)  # no forward-proxy tunnels: answered after what came before
        keep_alive = parser.should_keep_alive()
        upgrade = self._upgrade is not None and parser.should_upgrade()
        parts = self._parts
        if self._connection is not None and self._connection not in (b"close", b"keep-alive"):
            parts = _drop_connection_tokens(parts, self._connection)
        pipeline = self.pipeline
        scheme = self.scheme
        if pipeline is not None:  # header rules, redirects, routes
            req = pipeline.run(Request(method, self._url, self._seen, self.ctx.client_ip, parts, keep_alive))
            self._seen = {}
            parts = req.parts
            if req.drop_xff:
                self._xff = None
            if req.sets_proto:
                scheme = None
        if fe.forwardfor:
            ip = self.ctx.client_ip.encode()
            parts += (b"x-forwarded-for: ", ip if self._xff is None else self._xff + b", " + ip, b"\r\n")
            if scheme is not None:
                parts += (b"x-forwarded-proto: ", scheme, b"\r\n")
        elif self._xff is not None:
            parts += (b"x-forwarded-for: ", self._xff, b"\r\n")
        if self.added:
            parts.append(self.added)
        if upgrade:
            parts += (b"connection: upgrade\r\nupgrade: ", self._upgrade, b"\r\n")
        elif version == b" HTTP/1.0\r\n":
            parts.append(b"connection: keep-alive\r\n")  # keep the server connection poolable
            # As HAProxy: an HTTP/1.0 client is answered, then closed, unless it asked for
            # keep-alive (llhttp's should_keep_alive says so). Closing one that asked while the
            # server's answer (to our keep-alive request) says keep-alive would race its reuse.
        ex = Exchange(b"".join((method, b" ", self._url, version, *parts, b"\r\n")),
                      keep_alive, method == b"HEAD", self._chunked, self._has_body, upgrade)
        ex.t_begin = self._t_begin
        ex.t_head = self.state.loop.time()
        if pipeline is not None:
            ex.backend = req.backend
            if req.reply is not None:
                ex.reply, ex.keep_alive, ex.status = req.reply, req.keep_alive, req.status
        # self._new_request(), inline (once per request)
        self._url = b""
        self._parts = []
        self._xff = self._connection = self._upgrade = None
        self._chunked = self._has_body = False
        self.in_head = False
        self.deadline = 0.0
        self.parsing = ex
        self.queue.append(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex.chunked:  # type: ignore[union-attr]
            self._send_body(ex, b"%x\r\n%b\r\n" % (len(body), body))  # type: ignore[arg-type]
        else:
            self._send_body(ex, body)  # type: ignore[arg-type]

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None:
            return
        self.parsing = None
        if ex.chunked:
            self._send_body(ex, b"0\r\n\r\n")
        ex.complete = True

    def _send_body(self, ex: Exchange, data: bytes) -> None:
        ex.bytes_in += len(data)
        conn = ex.conn
        if conn is not None:
            conn.transport.write(data)
            # The server timeout measures the server's inactivity: a body still flowing to it
            # is activity (HAProxy refreshes the read timeout on writes), or a slow upload longer
            # than `timeout server` would end in a 504. Not while we hold its response back.
            if not self.blocked:
                conn.deadline = self.state.now + self.fe.t_server
            return
        ex.pending.append(data)
        ex.pending_size += len(data)
        if ex.pending_size > MAX_PENDING_BODY:
            self._pause(_BODY)

    # --- dispatch -----------------------------------------------------------------------------

    def _start_next(self) -> None:
        while True:
            ex = self.queue.popleft()
            self.current = ex
            if not self.queue and self.paused & _PIPELINE:
                self._resume(_PIPELINE)
            if ex.reply is None:
                self._dispatch(ex, None)
                return
            # The proxy's own answer, in turn: a loop rather than recursion through
            # response_done, so a long pipeline of redirects cannot exhaust the stack.
            self.transport.write(ex.reply)
            ex.bytes_out += len(ex.reply)
            ex.response_started = True
            ex.t_resp = self.state.loop.time()
            if not self._ended(ex, False):
                return

    def _dispatch(self, ex: Exchange, avoid: Server | None) -> None:
        backend = ex.backend
        if backend is None:
            backend = ex.backend = self.backend
        ctx = self.ctx
        ctx.request = ex
        if backend.body_lookahead and _bodywait().hold(self, ex, backend):
            return  # url_param check_post: picked once the body's first bytes are in
        server = backend.pick(ctx, avoid)
        if server is None:
            self.upstream_failed(ex, 503)
            return
        if avoid is not None and server is not avoid:
            redispatched(self.fe, avoid)
        self._send_to(ex, server)

    def _send_to(self, ex: Exchange, server: Server) -> None:
        """ex goes to server: on an idle pooled connection, or a new one."""
        ex.backend.take(server)
        ex.server = server
        ctx = self.ctx
        # A connection that began with a PROXY header speaks for one client only.
        conn = self.fe.pool.acquire(server if not server.send_proxy else (server, ctx.client_ip, ctx.client_port))
        if conn is not None:
            conn.attach(self, ex)
        else:
            self.state.spawn(self._connect(ex, server))

    async def _connect(self, ex: Exchange, server: Server) -> None:
        fe = self.fe
        loop = self.state.loop
        started = loop.time()
        try:
            async with asyncio.timeout(fe.t_connect):
                conn = await open_server(loop, lambda: HttpUpstreamProtocol(fe, server),
                                         server, self.ctx, self.transport)
            if server.send_proxy:
                conn.key = (server, self.ctx.client_ip, self.ctx.client_port)
        except (OSError, TimeoutError):
            server.failures += 1
            connect_failed(fe, server, retrying=ex.tries < fe.retries and not self.closed)
            self._release_server(ex)
            if self.closed or self.current is not ex:
                return
            ex.tries += 1
            if ex.tries <= fe.retries:
                self._dispatch(ex, server)  # retry on another server when there is one
            else:
                self.upstream_failed(ex, 503)
            return
        ex.t_conn = loop.time() - started
        connected(fe, server, ex.t_conn)
        if self.closed or self.current is not ex:
            self._release_server(ex)
            fe.pool.release(conn)  # fresh and unused: worth keeping
            return
        conn.attach(self, ex)

    def retry(self, ex: Exchange) -> None:
        """A reused server connection died before answering: send the request again."""
        server = ex.server
        self._release_server(ex)
        if not self.closed:
            self._dispatch(ex, server)

    def _release_server(self, ex: Exchange) -> None:
        if ex.server is not None:
            ex.backend.drop(ex.server, self.ctx)
            ex.last_server = ex.server
            ex.server = None

    # --- endings ------------------------------------------------------------------------------

    def response_done(self, ex: Exchange, close: bool) -> None:
        """The server side finished forwarding ex's response."""
        if self._ended(ex, close):
            self._start_next()

    def _ended(self, ex: Exchange, close: bool) -> bool:
        """ex was answered: account for it and close or wait for the next request. True when a
        queued request is to start now."""
        http_done(self, ex, ex.status, "--", self.state.loop.time())
        server = ex.server
        if server is not None:  # _release_server, inline: the backend that picked it (a route's)
            ex.backend.drop(server, self.ctx)
            ex.last_server = server
            ex.server = None
        self.current = None
        if self.closed:
            return False
        # A server connection paused for this exchange (a slow upload) no longer holds the
        # client back; left set, the flag would keep the client paused for good.
        if self.paused & _UPSTREAM:
            self._resume(_UPSTREAM)
        if close or not ex.keep_alive or not ex.complete or ex.upgrade or self.state.draining or self.fe.retired:
            self._close()
            return False
        if self.fe.retired and not self.migrate():
            self._close()
            return False
        if self.queue:
            return True
        elif self.fatal:
            http_done(self, None, self.fatal, "CR", self.state.loop.time())
            self._reject(self.fatal)  # the requests before the bad one are answered: now it
        elif self.eof:
            self._close()  # a half-closed client sends nothing more: do not wait for it
        else:
            self.deadline = self.state.now + self.fe.t_keep_alive
        return False

    def closes_after(self, ex: Exchange) -> bool:
        """This client connection closes once ex's response is sent (the tests response_done
        makes, known when the response head is)."""
        if not ex.complete:
            ex.keep_alive = False  # told close while the body still comes: closed even if it ends
            return True
        # Not when a refused request comes next (self.fatal): its error answer says close
        # itself, and a client told close before it would not read it (llhttp refuses to).
        return (not ex.keep_alive or ex.upgrade or self.state.draining or self.fe.retired
                or (self.eof and not self.queue))

    def upstream_failed(self, ex: Exchange, status: int) -> None:
        """No response can come for ex: answer with status if the client has seen nothing of it."""
        if self.closed:
            pass  # connection_lost has accounted for it
        elif ex.response_started:
            http_done(self, ex, ex.status, "SD", self.state.loop.time())
        else:
            ex.bytes_out += len(ERROR[status])
            http_done(self, ex, status, _TERM.get(status, "SH"), self.state.loop.time())
        self._release_server(ex)
        if self.current is ex:
            self.current = None
        if self.closed:
            return
        if ex.response_started:
            self.transport.abort()
            return
        self._reject(status)

    def _bad_request(self, status: int) -> None:
        """The client sent something we refuse. Nothing more is parsed (what comes is read and
        dropped); the requests queued before the bad one are still answered in order, then the
        error, then the connection closes."""
        self.fatal = status  # from now on data_received discards what comes
        self.in_head = False
        ex = self.parsing
        if ex is not None:  # broken inside a body: that request cannot be completed
            self.parsing = None
            if ex is not self.current:
                self.queue.pop()  # the last one queued: never sent anywhere
            elif ex.response_started:
                self.transport.abort()
                return
            else:
                self._abandon(ex)
        if self.current is None:
            if self.queue:
                self._start_next()
            else:
                http_done(self, None, status, "CR", self.state.loop.time())
                self._reject(status)

    def _abandon(self, ex: Exchange) -> None:
        """Give up on the exchange in flight: its server connection cannot be reused."""
        conn = ex.conn
        if conn is not None:
            conn.client = conn.ex = None
            ex.conn = None
            conn.transport.abort()
        self._release_server(ex)
        self.current = None

    def _reject(self, status: int) -> None:
        """Answer with one of the proxy's own error responses, then close. Only when it is the
        turn of the request it answers: nothing else is in flight."""
        self.transport.write(ERROR[status])
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            # close() waits for the write buffer to drain: a client that never reads the end
            # of its response is given `timeout client`, then cut (see on_deadline).
            self.deadline = self.state.now + self.fe.t_client if self.blocked else 0.0
            self.transport.close()

    def migrate(self) -> bool:
        """After a reload, between two requests: serve the next ones with the frontend that
        replaced ours (nothing in flight refers to the old one). False when it is gone."""
        fe = self.fe.successor
        while fe is not None and fe.retired:
            fe = fe.successor
        if fe is None or fe.spec.mode != "http":
            return False
        self.fe.current -= 1
        fe.current += 1
        self.fe, self.backend = fe, fe.backend
        self.pipeline, self.capture = fe.pipeline, fe.capture
        self.special = _SPECIAL | fe.strip | fe.capture
        return True

    def idle(self) -> bool:
        """Between requests: safe to close when the engine drains."""
        return self.current is None and self.parsing is None and not self.in_head and self.tunnel is None

    def eof_received(self) -> bool:
        # The client is done sending; still answer what is in flight (no abortonclose).
        if self.tunnel is not None:
            return False  # closes this side; connection_lost closes the server side
        self.eof = True
        if self.current is None and not self.queue:
            self._close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = 0.0
        # The parser holds our bound callbacks: dropping it ends that reference cycle, so the
        # connection's objects are freed now rather than by the cyclic GC (which otherwise ran
        # every few dozen connections when each request has a connection of its own).
        self.parser = None
        self.state.conns.discard(self)
        self.fe.release()
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel = None
            tunnel.client = None
            tunnel.transport.close()
        ex = self.current
        if ex is not None:
            self.current = None
            conn = ex.conn
            if conn is not None:  # mid-exchange: that server connection cannot be reused
                conn.client = conn.ex = None
                ex.conn = None
                conn.transport.abort()
            if tunnel is None:  # a tunnel's exchange was accounted when it became one
                http_done(self, ex, ex.status, "CD", self.state.loop.time())
            else:
                tunnel_closed(self, ex)
            self._release_server(ex)
        self.queue.clear()

    def on_deadline(self) -> None:
        self.deadline = 0.0
        if self.closed:  # closing, but the client does not take the rest of the response
            self.transport.abort()
            return
        ex = self.current
        if ex is not None and not ex.response_started and self.parsing is ex:
            # The client stopped sending the request body: give up on the server side, 408.
            self.parsing = None
            http_done(self, ex, 408, "cD", self.state.loop.time())
            self._abandon(ex)
            self._reject(408)
        elif ex is None and self.in_head:
            http_done(self, None, 408, "cR", self.state.loop.time())
            self._reject(408)  # a request began but did not complete in time
        elif ex is None or self.tunnel is not None:
            self._close()  # idle keep-alive or idle tunnel
        else:
            self.transport.abort()  # a client that stopped reading its response

    # --- flow control -------------------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def resume_body(self) -> None:
        self._resume(_BODY)

    def pause_for_upstream(self) -> None:
        self._pause(_UPSTREAM)
        if self.tunnel is None and self.parsing is not None:
            self.deadline = 0.0  # the client is not late: we stopped reading it

    def resume_for_upstream(self) -> None:
        self._resume(_UPSTREAM)
        if self.tunnel is None and self.parsing is not None:
            self.deadline = self.state.now + self.fe.t_client

    def pause_writing(self) -> None:
        """The client reads slower than the server sends: stop reading from the server."""
        self.blocked = True
        ex = self.current
        target = self.tunnel or (ex.conn if ex is not None else None)
        if target is not None:
            target.transport.pause_reading()
            if self.tunnel is None:
                target.deadline = 0.0  # the server is not late: we stopped reading it
        self.deadline = self.state.now + self.fe.t_client  # the client must read in time

    def resume_writing(self) -> None:
        self.blocked = False
        ex = self.current
        target = self.tunnel or (ex.conn if ex is not None else None)
        if target is not None:
            target.transport.resume_reading()
            if self.tunnel is None:
                target.deadline = self.state.now + self.fe.t_server
        if self.closed:
            return  # keep the deadline pause_writing set: the rest must drain in time
        if self.tunnel is not None or self.parsing is not None:
            self.deadline = self.state.now + self.fe.t_client
        elif ex is not None:
            self.deadline = 0.0  # waiting on the server: its timeout runs, not the client's
        else:
            self.deadline = self.state.now + self.fe.t_keep_alive

    # --- upgrade (WebSocket): the exchange becomes a byte tunnel ------------------------------

    def _upgrade_requested(self, early: bytes) -> None:
        ex = self.queue[-1] if self.queue else self.current
        if ex is None or not ex.upgrade:
            self._bad_request(400)
            return
        ex.early = early
        self._pause(_UPGRADE)  # nothing more is HTTP until the server agrees

    def start_tunnel(self, conn: HttpUpstreamProtocol) -> None:
        ex = self.current
        self.tunnel = conn
        if ex is not None:
            tunnel_opened(self, ex, self.state.loop.time())
        self._release_server(ex)  # type: ignore[arg-type]
        if ex is not None and ex.early:
            conn.transport.write(ex.early)
        self.deadline = self.state.now + self.fe.t_client
        self._resume(_UPGRADE)


# HAProxy's termination state for the proxy's own error answers: who ended it, and when.
_TERM = {503: "SC", 502: "SH", 504: "sH"}


def _bodywait():
    from virtserve.engine.l7 import bodywait  # only for a backend that looks in bodies

    return bodywait


def _drop_connection_tokens(parts: list[bytes], connection: bytes) -> list[bytes]:
    """Remove the headers a Connection header names as hop-by-hop (rare: rebuilt slowly)."""
    named = {t.strip() for t in connection.split(b",")} - {b"close", b"keep-alive", b"upgrade", b""}
    kept: list[bytes] = []
    for i in range(0, len(parts), 4):
        if parts[i].lower() not in named:
            kept += parts[i:i + 4]
    return kept
