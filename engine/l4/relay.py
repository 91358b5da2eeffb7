"""The L4 (mode tcp) relay: two linked asyncio.Protocols, one per side, calling each other.

- Backpressure both ways: when one side's write buffer passes its high-water mark
  (pause_writing), reading from the other side stops until it drains (resume_writing).
- Half-close: a FIN from one side becomes shutdown(SHUT_WR) toward the other; the pair closes
  once both directions are done.
- Connect timeout, with retries on the next server; idle timeout on either side.
- Bytes a client sends before the server connection exists are held (bounded): on uvloop,
  pause_reading() in connection_made does not stop data_received from firing.
"""
from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from virtserve.engine.admin.accounting import connect_failed, connected, redispatched, tcp_done
from virtserve.engine.upstream.connect import Connecting, server_connection
from virtserve.schedulers.base import PickContext

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend

log = logging.getLogger("virtserve.engine")

MAX_HELD = 64 * 1024  # client bytes held while connecting, before reading pauses
INSPECT_DELAY = 5.0  # seconds to wait for the first bytes a scheduler reads (tcp-request inspect-delay)

# Reasons reading from the client is paused; reading resumes when none is left. Two sources
# must not undo each other: flushing the held bytes used to resume reading while the server
# side's write buffer was over its high-water mark, and that buffer then grew without bound.
_HELD, _FULL = 1, 2


class TcpClientProtocol(asyncio.Protocol):
    __slots__ = ("fe", "state", "transport", "peer", "server", "held", "held_size", "deadline",
                 "eof", "closed", "tries", "ctx", "paused",
                 "t_accept", "t_connect", "n_in", "n_out", "last_server", "term",
                 "inspecting", "backend", "connecting", "connect_expired", "t_try")

    def __init__(self, fe: Frontend) -> None:
        self.fe = fe
        self.state = fe.state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer: TcpServerProtocol | None = None
        self.server: Server | None = None
        self.held: list[bytes] = []
        self.held_size = 0
        self.deadline = 0.0
        self.eof = False  # the client sent FIN
        self.closed = False
        self.tries = 0
        self.ctx = PickContext()
        self.paused = 0  # _HELD | _FULL
        self.t_accept = self.t_connect = 0.0  # loop times, for the stats and the log
        self.n_in = self.n_out = 0  # bytes from the client, to the client
        self.last_server: Server | None = None
        self.term = "--"  # HAProxy's termination state, set where an ending is decided
        self.inspecting = False  # waiting for the first bytes before picking (rdp-cookie)
        self.backend = fe.backend  # or the one a route on the client address picks
        self.connecting: Connecting | None = None  # the connect attempt in flight
        self.connect_expired = False  # its deadline passed: the sweeper cancelled it
        self.t_try = 0.0  # loop time the attempt started

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        fe = self.fe
        fe.accepted()
        self.t_accept = self.state.loop.time()
        self.state.conns.add(self)
        if not self.ctx.client_ip:  # else set from a PROXY header (listeners.Origin)
            peer = transport.get_extra_info("peername")
            if peer:
                self.ctx.client_ip, self.ctx.client_port = peer[0], peer[1]
        if fe.pipeline is not None:  # routes on the client address (mode tcp)
            self.backend = fe.pipeline.route_source(self.ctx.client_ip) or fe.backend
        if fe.needs_dest:  # the union over the backends it may route to
            self.ctx.dest_ip = transport.get_extra_info("sockname")[0]
        if fe.needs_payload:
            self.inspecting = True
            self.deadline = self.state.now + min(INSPECT_DELAY, fe.t_client)
            return
        self._dispatch(None)

    def _inspected(self) -> None:
        """The first bytes are here (or will not come): pick with them."""
        self.inspecting = False
        self.ctx.payload = b"".join(self.held)
        self._dispatch(None)

    def _dispatch(self, avoid: Server | None) -> None:
        fe = self.fe
        backend = self.backend
        server = backend.pick(self.ctx, avoid)
        if server is None:
            self.term = "SC"
            self.transport.abort()
            return
        if avoid is not None and server is not avoid:
            redispatched(fe, avoid)
        backend.take(server)
        self.server = self.last_server = server
        # The connect timeout, renewed for each attempt, is this deadline (on_deadline cancels
        # the attempt): the engine's sweeper instead of an asyncio.timeout per connection,
        # which cost a timer handle, a context manager and two getpid() syscalls each.
        self.deadline = self.state.now + fe.t_connect
        loop = self.state.loop
        self.t_try = loop.time()
        attempt = self.connecting = Connecting(
            loop, server_connection(loop, partial(TcpServerProtocol, self), server, self.ctx, self.transport),
            self._connect_done)
        attempt.start()

    def _connect_done(self, exc: BaseException | None) -> None:
        """The attempt ended: connected (the pair is already linked, see _linked), failed,
        or cancelled by the connect timeout or by the client leaving."""
        self.connecting = None
        fe = self.fe
        server = self.last_server
        assert server is not None
        if exc is None:
            connected(fe, server, (self.t_connect or self.state.loop.time()) - self.t_try)
            return
        if not isinstance(exc, OSError):
            if not isinstance(exc, asyncio.CancelledError):  # a bug, not the server's failure
                log.error("connecting to server %s failed", server.name, exc_info=exc)
                self._release_server()
                self.term = "SC"
                self.transport.abort()
                return
            self.connect_expired = False
            if self.closed:  # the client left while connecting: not the server's failure
                self._release_server()
                return
        server.failures += 1
        connect_failed(fe, server, retrying=self.tries < fe.retries and not self.closed)
        self._release_server()
        if self.closed:
            return
        self.tries += 1
        if self.tries <= fe.retries:
            self._dispatch(server)
        else:
            self.term = "SC"
            self.transport.abort()

    def _linked(self, peer: TcpServerProtocol) -> None:
        """The server connection exists. Called from its connection_made, before any of its
        data_received: linked later (after create_connection returns), a pause_writing on the
        client side caused by early server bytes found no peer to pause, and was lost."""
        self.peer = peer
        self.t_connect = self.state.loop.time()
        if self.held:
            # Write first: this may pause (pause_writing -> _FULL) before _HELD is released.
            peer.transport.write(b"".join(self.held))
            self.held = []
            self.held_size = 0
        self._resume(_HELD)
        if self.eof:
            _write_eof(peer.transport)
        self.deadline = self.state.now + self.fe.t_client

    def _pause(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            # Not after a FIN: on uvloop, resuming a transport that saw EOF reports it again.
            if not self.paused and not self.eof:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.n_in += len(data)
        peer = self.peer
        if peer is not None:
            peer.transport.write(data)
            self.deadline = self.state.now + self.fe.t_client
            return
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size > MAX_HELD:
            self._pause(_HELD)
        if self.inspecting:
            self._inspected()

    def eof_received(self) -> bool:
        self.eof = True
        if self.inspecting:
            self._inspected()
        peer = self.peer
        if peer is not None:
            if peer.eof:
                self.close()
                return False
            _write_eof(peer.transport)
        return True  # keep our side open for what the server still sends

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and not peer.eof:
            peer.transport.resume_reading()

    def on_deadline(self) -> None:
        if self.inspecting:  # no first bytes in time: pick without them
            self._inspected()
            return
        if self.peer is None and self.connecting is not None and not self.closed:
            self.deadline = 0.0
            self.connect_expired = True  # the connect timeout: _connect retries or gives up
            self.connecting.cancel()
            return
        self.term = "cD" if self.peer is not None else "sC"
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self.deadline = 0.0
            self.transport.abort() if abort else self.transport.close()
        peer = self.peer
        if peer is not None and not peer.transport.is_closing():
            peer.transport.abort() if abort else peer.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fe.release()
        self.state.conns.discard(self)
        if exc is not None and self.term == "--":
            self.term = "CD"
        self.close(abort=exc is not None)
        connecting = self.connecting
        if connecting is not None and self.peer is None:  # nothing to connect for any more
            self.connect_expired = True
            connecting.cancel()
        tcp_done(self, self.server or self.last_server, self.term, self.state.loop.time())
        self._release_server()

    def _release_server(self) -> None:
        if self.server is not None:
            self.backend.drop(self.server, self.ctx)
            self.server = None


class TcpServerProtocol(asyncio.Protocol):
    __slots__ = ("client", "transport", "eof")

    def __init__(self, client: TcpClientProtocol) -> None:
        self.client = client
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.eof = False  # the server sent FIN

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        client = self.client
        if client.closed:  # the client left while we were connecting
            transport.close()
            return
        client._linked(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.transport.write(data)
        client.n_out += len(data)
        client.deadline = client.state.now + client.fe.t_server

    def eof_received(self) -> bool:
        self.eof = True
        client = self.client
        if client.eof:
            client.close()
            return False
        _write_eof(client.transport)
        return True

    def pause_writing(self) -> None:
        self.client._pause(_FULL)

    def resume_writing(self) -> None:
        self.client._resume(_FULL)

    def connection_lost(self, exc: Exception | None) -> None:
        client = self.client
        if exc is not None and client.term == "--":
            client.term = "SD"
        client.close(abort=exc is not None)


def _write_eof(transport: asyncio.Transport) -> None:
    """Half-close toward one side; TLS cannot, so a TLS side is closed once flushed."""
    if transport.can_write_eof():
        transport.write_eof()
    else:
        transport.close()
