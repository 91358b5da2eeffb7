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
from typing import TYPE_CHECKING

from virtserve.schedulers.base import PickContext

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend

MAX_HELD = 64 * 1024  # client bytes held while connecting, before reading pauses


class TcpClientProtocol(asyncio.Protocol):
    __slots__ = ("fe", "state", "transport", "peer", "server", "held", "held_size", "deadline",
                 "eof", "closed", "tries", "ctx")

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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        fe = self.fe
        fe.current += 1
        fe.total += 1
        self.state.conns.add(self)
        peer = transport.get_extra_info("peername")
        if peer:
            self.ctx.client_ip, self.ctx.client_port = peer[0], peer[1]
        self.deadline = self.state.now + fe.t_connect + fe.t_client
        self._dispatch(None)

    def _dispatch(self, avoid: Server | None) -> None:
        backend = self.fe.backend
        server = backend.pick(self.ctx, avoid)
        if server is None:
            self.transport.abort()
            return
        backend.take(server)
        self.server = server
        self.state.spawn(self._connect(server))

    async def _connect(self, server: Server) -> None:
        fe = self.fe
        try:
            async with asyncio.timeout(fe.t_connect):
                _, peer = await self.state.loop.create_connection(
                    lambda: TcpServerProtocol(self), server.address, server.port)
        except (OSError, TimeoutError):
            server.failures += 1
            self._release_server()
            if self.closed:
                return
            self.tries += 1
            if self.tries <= fe.retries:
                self._dispatch(server)
            else:
                self.transport.abort()
            return
        if self.closed:
            peer.transport.close()
            return
        self.peer = peer
        if self.held:
            peer.transport.write(b"".join(self.held))
            self.held = []
            if self.held_size > MAX_HELD:
                self.transport.resume_reading()
            self.held_size = 0
        if self.eof:
            peer.transport.write_eof()
        self.deadline = self.state.now + fe.t_client

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None:
            peer.transport.write(data)
            self.deadline = self.state.now + self.fe.t_client
            return
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size > MAX_HELD:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None:
            if peer.eof:
                self.close()
                return False
            peer.transport.write_eof()
        return True  # keep our side open for what the server still sends

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()

    def on_deadline(self) -> None:
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
        self.fe.current -= 1
        self.state.conns.discard(self)
        self.close(abort=exc is not None)
        self._release_server()

    def _release_server(self) -> None:
        if self.server is not None:
            self.fe.backend.drop(self.server)
            self.server = None


class TcpServerProtocol(asyncio.Protocol):
    __slots__ = ("client", "transport", "eof")

    def __init__(self, client: TcpClientProtocol) -> None:
        self.client = client
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.eof = False  # the server sent FIN

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.transport.write(data)
        client.deadline = client.state.now + client.fe.t_server

    def eof_received(self) -> bool:
        self.eof = True
        client = self.client
        if client.eof:
            client.close()
            return False
        client.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close(abort=exc is not None)
