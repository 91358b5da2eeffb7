"""The L4 (mode tcp) relay for plain binds: raw sockets on the engine's inner epoll
(engine/reactor.py), no uvloop transports.

A new connection per request was where Python lost most against HAProxy: two uvloop
transports per connection (getsockname, getpeername, io_uring submissions, Handles, futures)
plus the protocol callbacks. Here a connection is one object and two sockets, registered once
edge-triggered (IN|OUT|RDHUP), never modified:

- Accept: the listening socket's `_accept()` (an fd, no socket.socket object), kept blocking
  and read/written with MSG_DONTWAIT (no fcntl per connection).
- Connect: a SOCK_NONBLOCK socket, connect_ex; EPOLLOUT says it is done, EPOLLERR/EPOLLHUP
  that it failed (SO_ERROR read only then). The client is not read before: its bytes wait in
  its socket, which bounds them and keeps them for a retry on the next server.
- Relay: recv_into one buffer shared by the engine, send at once; what a send leaves is kept
  and that side's EPOLLOUT sends it, while the other side is not read (backpressure: at most
  one read per direction is held). A short read means the socket is drained (TCP), so no read
  ends in EAGAIN; with RDHUP seen, it also means the FIN is next (no read for the EOF).
- EOF one way becomes shutdown(SHUT_WR) the other way; both done, both sockets close.

The connection duck-types what the rest of the engine reads of TcpClientProtocol: `deadline`
and `on_deadline()` in `state.conns` (connect timeout with retries, idle timeouts), `fe`,
`ctx`, `server`, `backend`, `n_in`/`n_out` (live bytes), the accounting fields, and a
`transport` with close()/abort() (drain, shutdown-sessions).

What this path does not do is served by relay.py: a listener decides per bind (TLS,
accept-proxy) when it is opened and per frontend (payload inspection, servers with TLS or
send-proxy or a name to resolve, maxconn reached, a reload to mode http) at each accept, where
such a connection is handed to the loop as a transport (`handoff`).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
from _socket import socket as _rawsocket
from typing import TYPE_CHECKING, Any

from virtserve.engine.admin.accounting import connect_failed, connected, redispatched, tcp_done
from virtserve.engine.reactor import BUFSIZE, Reactor, reactor_of
from virtserve.engine.upstream.connect import Connecting
from virtserve.schedulers.base import PickContext

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend
    from virtserve.engine.listeners import Listener
    from virtserve.engine.state import EngineState

log = logging.getLogger("virtserve.engine")

# False (VIRTSERVE_RAWIO=0, as for rawio.py): plain L4 binds use relay.py, the transport relay
enabled = os.environ.get("VIRTSERVE_RAWIO", "1") != "0"

ACCEPT_BATCH = 64  # accepts per readiness of a listener (level-triggered: the rest come next)
ACCEPT_PAUSE = 0.1  # seconds a listener rests after accept failed for lack of resources

_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_OUT = select.EPOLLOUT
_HUP = select.EPOLLRDHUP | select.EPOLLHUP
_FAIL = select.EPOLLERR | select.EPOLLHUP
_DONTWAIT = socket.MSG_DONTWAIT
_NONBLOCK_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_INET, _INET6 = socket.AF_INET, socket.AF_INET6
_TCP, _NODELAY = socket.IPPROTO_TCP, socket.TCP_NODELAY
_WR = socket.SHUT_WR
_SOL_SOCKET, _SO_ERROR = socket.SOL_SOCKET, socket.SO_ERROR


def serves(bind: Any) -> bool:
    """Whether a bind's listener may be a raw one (the frontend is checked at each accept)."""
    return enabled and bind.ssl is None and not bind.accept_proxy


def eligible(fe: Frontend) -> bool:
    """Whether the raw relay serves this frontend's connections (else they are handed off)."""
    if fe.spec.mode != "tcp" or fe.needs_payload:
        return False
    for backend in fe.uses:
        for s in backend.servers:
            if s.ssl is not None or s.spec.ssl is not None or s.send_proxy or not _literal(s.address):
                return False
    return True


def _literal(address: str) -> bool:
    try:
        socket.inet_pton(_INET6 if ":" in address else _INET, address)
    except OSError:
        return False
    return True


class RawServer:
    """A plain bind's listening socket on the reactor; for the engine, an asyncio.Server
    (close, wait_closed, sockets)."""

    def __init__(self, state: EngineState, sock: socket.socket, listener: Listener) -> None:
        self.state = state
        self.listener = listener
        self.reactor = reactor_of(state)
        self.sock = sock
        sock.setblocking(False)
        # Accepted sockets inherit TCP_NODELAY from the listener (Linux): no setsockopt each.
        sock.setsockopt(_TCP, _NODELAY, 1)
        sock.listen(1024)
        self.family = sock.family
        self.fe: Frontend | None = None  # the frontend `raw` was decided for
        self.raw = False
        self.closed = False
        # The level-triggered listener: a batch left unaccepted is reported again.
        self.reactor.add(sock.fileno(), self._on_accept, select.EPOLLIN)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self.closed else (self.sock,)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reactor.discard(self.sock)

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return not self.closed

    def _resume(self) -> None:
        if not self.closed:
            self.reactor.epoll.modify(self.sock.fileno(), select.EPOLLIN)

    def _on_accept(self, _events: int) -> None:
        fe = self.listener.fe
        if fe is not self.fe:  # first accept, or a reload retargeted the bind
            self.fe, self.raw = fe, eligible(fe)
        accept = self.sock._accept
        family = self.family
        for _ in range(ACCEPT_BATCH):
            try:
                fd, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                # EMFILE, ENFILE, ENOBUFS...: the listener stays ready and would be reported
                # at every turn of the loop; rest it a while (HAProxy pauses it too).
                log.warning("frontend %s: accept failed, pausing the listener %.1f s: %s",
                            fe.name, ACCEPT_PAUSE, exc)
                self.reactor.epoll.modify(self.sock.fileno(), 0)
                self.state.loop.call_later(ACCEPT_PAUSE, self._resume)
                return
            if not self.raw or (fe.maxconn and (fe.current >= fe.maxconn or fe.waiting)):
                handoff(self.state.loop, self.listener, socket.socket(family, socket.SOCK_STREAM, 0, fd))
                continue
            RawConn(fe, self.reactor, _rawsocket(family, socket.SOCK_STREAM, 0, fd), addr)


def handoff(loop: asyncio.AbstractEventLoop, listener: Listener, sock: socket.socket) -> None:
    """Serve an accepted connection the transport way (relay.py, WaitingProtocol, HTTP)."""
    sock.setblocking(False)

    def done(exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("frontend %s: could not serve an accepted connection: %s", listener.fe.name, exc)
            sock.close()

    Connecting(loop, loop.connect_accepted_socket(lambda: listener.plain_factory(), sock), done).start()


class RawConn:
    """One relayed connection: the client socket, the server socket, what each side holds."""

    __slots__ = ("fe", "state", "reactor", "csock", "ssock", "peer", "server", "deadline",
                 "closed", "tries", "ctx", "t_accept", "t_connect", "n_in", "n_out",
                 "last_server", "term", "backend", "t_try",
                 "c_rd", "c_hup", "c_eof", "to_client", "s_rd", "s_hup", "s_eof", "to_server")

    def __init__(self, fe: Frontend, reactor: Reactor, csock: Any, addr: Any) -> None:
        """An accepted connection: counted, tracked, and its server connect started."""
        self.fe = fe
        state = self.state = fe.state
        self.reactor = reactor
        self.csock = csock
        self.ssock: Any = None
        self.peer: Any = None  # the server socket once connected (None while connecting)
        self.server: Server | None = None
        self.last_server: Server | None = None
        self.deadline = 0.0
        self.closed = False
        self.tries = 0
        ctx = self.ctx = PickContext(addr[0], addr[1])
        self.t_accept = self.t_try = state.loop.time()
        self.t_connect = 0.0
        self.n_in = self.n_out = 0
        self.term = "--"
        self.backend = fe.backend
        # Per side: readable (an edge not yet drained), its FIN seen (RDHUP/HUP), its EOF
        # read, and what could not yet be sent to it (a memoryview, or None).
        self.c_rd = self.c_hup = self.c_eof = False
        self.s_rd = self.s_hup = self.s_eof = False
        self.to_client: Any = None
        self.to_server: Any = None
        fe.accepted()
        state.conns.add(self)
        if fe.pipeline is not None:  # routes on the client address (mode tcp)
            self.backend = fe.pipeline.route_source(ctx.client_ip) or fe.backend
        if fe.needs_dest:
            ctx.dest_ip = csock.getsockname()[0]
        reactor.add(csock.fileno(), self._on_client)
        self._dispatch(None)

    @property
    def transport(self) -> RawConn:
        """What drain and shutdown-sessions call close()/abort() on."""
        return self

    # --- connect ----------------------------------------------------------------------------

    def _dispatch(self, avoid: Server | None) -> None:
        backend = self.backend
        server = backend.pick(self.ctx, avoid)
        if server is None:
            self.term = "SC"
            self.close(abort=True)
            return
        if avoid is not None and server is not avoid:
            redispatched(self.fe, avoid)
        backend.take(server)
        self.server = self.last_server = server
        self.deadline = self.state.now + self.fe.t_connect
        if avoid is not None:  # a retry (the first try started at accept)
            self.t_try = self.state.loop.time()
        address = server.address
        ssock = self.ssock = _rawsocket(_INET6 if ":" in address else _INET, _NONBLOCK_STREAM)
        ssock.setsockopt(_TCP, _NODELAY, 1)
        err = ssock.connect_ex((address, server.port))
        if err and err != errno.EINPROGRESS:
            self._connect_failed()
            return
        self.reactor.add(ssock.fileno(), self._on_server)

    def _connected(self) -> None:
        self.peer = self.ssock
        loop_now = self.t_connect = self.state.loop.time()
        connected(self.fe, self.server, loop_now - self.t_try)  # type: ignore[arg-type]
        self.deadline = self.state.now + self.fe.t_client

    def _connect_failed(self) -> None:
        """The attempt failed (refused, reset, timed out): the next server, or give up."""
        server = self.server
        assert server is not None
        ssock, self.ssock = self.ssock, None
        if ssock is not None:
            self.reactor.discard(ssock)
        server.failures += 1
        fe = self.fe
        connect_failed(fe, server, retrying=self.tries < fe.retries)
        self._release_server()
        self.tries += 1
        if self.tries <= fe.retries:
            self._dispatch(server)
        else:
            self.term = "SC"
            self.close(abort=True)

    # --- events -----------------------------------------------------------------------------

    def _on_client(self, events: int) -> None:
        if self.peer is None and events & _FAIL:  # reset while connecting: no one to connect for
            self._failed("CD")
            return
        if events & _IN:
            self.c_rd = True
            if events & _HUP:
                self.c_hup = True
        if events & _OUT and self.to_client is not None:
            self._flush_client()
            if self.closed:
                return
        if self.c_rd and self.peer is not None and self.to_server is None:
            self._pump_client()

    def _on_server(self, events: int) -> None:
        if self.peer is None:  # connecting
            if events & _FAIL and self.ssock.getsockopt(_SOL_SOCKET, _SO_ERROR):
                self._connect_failed()
                return
            if not events & (_OUT | _FAIL):  # (connected, then already closed: its reads say so)
                return
            self._connected()
            if self.c_rd:
                self._pump_client()
                if self.closed:
                    return
        if events & _IN:
            self.s_rd = True
            if events & _HUP:
                self.s_hup = True
        if events & _OUT and self.to_server is not None:
            self._flush_server()
            if self.closed:
                return
        if self.s_rd and self.to_client is None:
            self._pump_server()

    # --- client -> server -------------------------------------------------------------------

    def _pump_client(self) -> None:
        """Read the client and send to the server until drained, EOF, or the server is full."""
        reactor = self.reactor
        buf, view = reactor.buf, reactor.view
        csock, ssock = self.csock, self.ssock
        while True:
            try:
                n = csock.recv_into(buf, BUFSIZE, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                self.c_rd = False
                return
            except OSError:
                self._failed("CD")
                return
            if not n:
                self._client_eof()
                return
            self.n_in += n
            self.deadline = self.state.now + self.fe.t_client
            data = view[:n]
            try:
                sent = ssock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._failed("SD")
                return
            if sent < n:
                self.to_server = memoryview(bytes(data[sent:]))
                return  # c_rd stays: read again once the server side drains
            if n < BUFSIZE:  # a short read: the socket is drained
                if self.c_hup:  # and its FIN came with it
                    self._client_eof()
                else:
                    self.c_rd = False
                return

    def _flush_server(self) -> None:
        """Send what the server side holds; all of it sent, go on reading the client."""
        data = self.to_server
        try:
            sent = self.ssock.send(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._failed("SD")
            return
        if sent < len(data):
            self.to_server = data[sent:]
            return
        self.to_server = None
        if self.c_eof:  # the client's FIN waited for its last bytes
            self._shut_server()
        elif self.c_rd:
            self._pump_client()

    def _client_eof(self) -> None:
        self.c_rd = False
        self.c_eof = True
        if self.to_server is None:
            self._shut_server()

    def _shut_server(self) -> None:
        """Client to server is done: pass the FIN on, or close if the other way is done too."""
        if self.s_eof and self.to_client is None:
            self.close()
            return
        try:
            self.ssock.shutdown(_WR)
        except OSError:
            pass  # the server is gone: its own events say so

    # --- server -> client -------------------------------------------------------------------

    def _pump_server(self) -> None:
        reactor = self.reactor
        buf, view = reactor.buf, reactor.view
        csock, ssock = self.csock, self.ssock
        while True:
            try:
                n = ssock.recv_into(buf, BUFSIZE)
            except (BlockingIOError, InterruptedError):
                self.s_rd = False
                return
            except OSError:
                self._failed("SD")
                return
            if not n:
                self._server_eof()
                return
            self.n_out += n
            self.deadline = self.state.now + self.fe.t_server
            data = view[:n]
            try:
                sent = csock.send(data, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._failed("CD")
                return
            if sent < n:
                self.to_client = memoryview(bytes(data[sent:]))
                return
            if n < BUFSIZE:
                if self.s_hup:
                    self._server_eof()
                else:
                    self.s_rd = False
                return

    def _flush_client(self) -> None:
        data = self.to_client
        try:
            sent = self.csock.send(data, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._failed("CD")
            return
        if sent < len(data):
            self.to_client = data[sent:]
            return
        self.to_client = None
        if self.s_eof:  # the server's FIN waited for its last bytes
            self._shut_client()
        elif self.s_rd:
            self._pump_server()

    def _server_eof(self) -> None:
        self.s_rd = False
        self.s_eof = True
        if self.to_client is None:
            self._shut_client()

    def _shut_client(self) -> None:
        if self.c_eof and self.to_server is None:  # both ways done
            self.close()
            return
        try:
            self.csock.shutdown(_WR)
        except OSError:
            pass

    # --- end --------------------------------------------------------------------------------

    def _failed(self, term: str) -> None:
        if self.term == "--":
            self.term = term
        self.close(abort=True)

    def on_deadline(self) -> None:
        if self.closed:
            return
        if self.peer is None and self.ssock is not None:  # the connect timeout
            self.deadline = 0.0
            self._connect_failed()
            return
        self.term = "cD" if self.peer is not None else "sC"
        self.close(abort=True)

    def abort(self) -> None:
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        """Close both sides (what they still hold is dropped) and account the connection."""
        if self.closed:
            return
        self.closed = True
        self.deadline = 0.0
        reactor = self.reactor
        reactor.discard(self.csock)
        if self.ssock is not None:
            reactor.discard(self.ssock)
        self.to_client = self.to_server = None
        self.fe.release()
        self.state.conns.discard(self)
        tcp_done(self, self.server or self.last_server, self.term, self.state.loop.time())  # type: ignore[arg-type]
        self._release_server()

    def _release_server(self) -> None:
        if self.server is not None:
            self.backend.drop(self.server, self.ctx)
            self.server = None
