"""What a connection meets between accept and its frontend's protocol, on binds that need it.

Plain binds have nothing here: the listener's factory is the frontend's own, and a connection
costs no extra step. A bind with `ssl` or `accept-proxy` gets a `ListenerProtocol` first:

- accept-proxy: the PROXY v1/v2 header is read (within `timeout handshake`), its source becomes
  the client address (forwardfor, source hashing, ACLs, logs); anything else closes the
  connection. Before TLS the header is read exactly, so the ClientHello stays in the socket for
  the TLS layer started next.
- ssl: the handshake is done by the event loop with a bounded time (ssl_handshake_timeout); then
  the scheme (X-Forwarded-Proto: https) and the client certificate headers are set.

Then the transport moves to the frontend's protocol, with an `Origin` holding what was learned.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Callable

from virtserve.engine import proxyproto, rawpaths
from virtserve.engine.config.model import BindSpec
from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.l7.redirect import RedirectProtocol

if TYPE_CHECKING:
    from virtserve.engine.frontend import Frontend
    from virtserve.engine.tls import CertStore

log = logging.getLogger("virtserve.engine")

_HEADER_ROOM = 16 + proxyproto.V2_MAX_PAYLOAD


def listening_socket(address: str, port: int, reuse_port: bool) -> socket.socket | None:
    """A bound socket for a literal IP address, made here instead of by loop.create_server:
    given a host, the loop resolves it on its thread pool (starting the pool's threads) and
    loads the idna codec first, milliseconds of start-up for an address that needs no
    resolving. None for a name or the empty (every address) host: the loop resolves those.
    The options are create_server's: SO_REUSEADDR, SO_REUSEPORT when asked, IPv6 only."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        socket.inet_pton(family, address)
    except OSError:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Origin:
    """What the listener learned about a connection before it is served."""

    __slots__ = ("client", "scheme", "headers", "http", "factory")

    def __init__(self, client: tuple[str, int] | None, scheme: bytes, headers: bytes, http: bool,
                 factory: Callable[[Frontend], Any]) -> None:
        self.client = client  # from a PROXY header; None: the socket's peer
        self.scheme = scheme
        self.headers = headers  # request header lines added for the servers
        self.http = http
        self.factory = factory  # the protocol class that serves the connection

    def make(self, fe: Frontend) -> Any:
        return self.apply(self.factory(fe))

    def apply(self, protocol: Any) -> Any:
        """Set on a frontend protocol before its connection_made."""
        client = self.client
        if client is not None:
            ctx = protocol.ctx
            ctx.client_ip, ctx.client_port = client
        if self.http:
            protocol.scheme = self.scheme
            protocol.added = self.headers
        return protocol


class Listener:
    """One bind's runtime: its TLS certificates and how its connections start."""

    def __init__(self, fe: Frontend, bind: BindSpec) -> None:
        self.bind = bind
        self.store: CertStore | None = None
        if bind.ssl is not None:  # the TLS module (and its datetime) only for TLS binds
            from virtserve.engine.tls import CertStore

            self.store = CertStore(bind.ssl)
        self.accept_proxy = bind.accept_proxy
        # Plain HTTP binds take their connections from the engine's reactor (rawio.py, reactor.py)
        # rather than from loop transports; decided once, the socket stays on it over reloads.
        self.raw = fe.spec.mode == "http" and rawpaths.http_raw(bind)
        self.retarget(fe)

    def retarget(self, fe: Frontend) -> None:
        """Serve new connections with `fe` (a reload kept this bind's socket, and its
        certificates, for the frontend's new settings)."""
        self.fe = fe
        self.http = http = fe.spec.mode == "http"
        # Plain binds of a frontend that redirects to https answer with the redirect.
        redirect = fe.spec.redirect is not None and self.bind.ssl is None
        self.factory: Callable[[Frontend], Any]  # the protocol class that serves a connection
        if redirect:
            self.factory = RedirectProtocol
        elif self.bind.ssl is not None:
            self.factory = TlsHttpProxyProtocol if http else TlsTcpClientProtocol
        else:
            self.factory = HttpProxyProtocol if http else TcpClientProtocol
        self.plain_factory: Callable[[], asyncio.BaseProtocol] = (
            (lambda: RedirectProtocol(fe)) if redirect else fe.protocol)

    def server_args(self) -> tuple[Callable[[], asyncio.BaseProtocol], dict[str, Any]]:
        """The protocol factory and the extra loop.create_server arguments of this bind."""
        if self.store is None and not self.accept_proxy:
            # Nothing in between: the frontend's own factory, looked up at each accept so that
            # a reload can hand the socket to the new frontend.
            return lambda: self.plain_factory(), {}
        factory = lambda: ListenerProtocol(self)  # noqa: E731
        if self.accept_proxy:
            return factory, {}  # TLS, if any, starts after the PROXY header
        # TLS only: the loop's own TLS on the listening socket, with a bounded handshake.
        return factory, {"ssl": self.store.context, "ssl_handshake_timeout": self.fe.t_handshake}  # type: ignore[union-attr]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.store is not None:
            self.store.watch(loop, self.bind.ssl.watch)  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.store is not None:
            self.store.stop()


class ListenerProtocol(asyncio.BufferedProtocol):
    __slots__ = ("listener", "state", "transport", "buf", "got", "want", "deadline", "client")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.state = listener.fe.state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf: bytearray | None = None
        self.got = 0
        self.want = 8  # header bytes asked for before the next parse (exact reads before TLS)
        self.deadline = 0.0
        self.client: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        if not self.listener.accept_proxy:
            self._serve(transport)  # TLS already done by the loop: serve at once
            return
        self.buf = bytearray(_HEADER_ROOM)
        self.state.conns.add(self)
        self.deadline = self.state.now + self.listener.fe.t_handshake

    def get_buffer(self, sizehint: int) -> memoryview:
        buf = self.buf
        if buf is None:  # refused, the transport not yet closed: what comes is dropped
            return memoryview(bytearray(4096))
        if self.listener.store is not None:  # take the header only; the ClientHello stays
            return memoryview(buf)[self.got:self.got + self.want]
        return memoryview(buf)[self.got:]

    def buffer_updated(self, nbytes: int) -> None:
        if self.buf is None:
            return
        self.got += nbytes
        try:
            header = proxyproto.parse(memoryview(self.buf)[:self.got])
        except proxyproto.Incomplete as more:
            self.want = more.missing
            if self.got + self.want > len(self.buf):
                self._refuse("PROXY header too long")
            return
        except proxyproto.ProxyProtocolError as exc:
            self._refuse(str(exc))
            return
        rest = bytes(self.buf[header.length:self.got])
        self.buf = None
        self.state.conns.discard(self)
        self.deadline = 0.0
        self.client = header.source
        if self.listener.store is None:
            self._serve(self.transport, rest)
        else:
            self.transport.pause_reading()
            self.state.spawn(self._start_tls())

    async def _start_tls(self) -> None:
        listener = self.listener
        transport = self.transport
        early = _Early()
        try:
            tls = await self.state.loop.start_tls(
                transport, early, listener.store.context, server_side=True,  # type: ignore[union-attr]
                ssl_handshake_timeout=listener.fe.t_handshake)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.TimeoutError, ConnectionError):
            transport.abort()
            return
        if tls is None or tls.is_closing():
            transport.abort()
            return
        self._serve(tls, b"".join(early.data), early.eof)  # type: ignore[arg-type]

    def _serve(self, transport: asyncio.Transport, rest: bytes = b"", eof: bool = False) -> None:
        listener = self.listener
        headers = b""
        if listener.store is not None and listener.http:
            from virtserve.engine.tls import client_cert_headers

            headers = client_cert_headers(listener.bind.ssl, transport.get_extra_info("ssl_object"))  # type: ignore[arg-type]
        scheme = b"https" if listener.store is not None else b"http"
        origin = Origin(self.client, scheme, headers, listener.http, listener.factory)
        protocol = origin.make(listener.fe) if listener.factory is RedirectProtocol else listener.fe.protocol_for(origin)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if rest:
            protocol.data_received(rest)  # type: ignore[attr-defined]
        if eof and not protocol.eof_received():  # type: ignore[attr-defined]
            transport.close()

    def _refuse(self, why: str) -> None:
        self.buf = None
        self.deadline = 0.0
        self.state.conns.discard(self)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("frontend %s: connection closed: %s", self.listener.fe.name, why)
        self.transport.abort()

    def eof_received(self) -> bool:
        self._refuse("closed before the PROXY header")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.conns.discard(self)
        self.deadline = 0.0

    def on_deadline(self) -> None:
        self._refuse("no PROXY header in time")

    def idle(self) -> bool:
        return True  # nothing served yet: closed at once when the engine drains


class _Early(asyncio.Protocol):
    """Holds what arrives between the end of a handshake and the hand-over (TLS 1.3 clients
    send their request right after their Finished message)."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True


# TLS cannot half-close: a client's close_notify ends the connection once what is written has
# been flushed (returning True from eof_received on TLS only earns a warning per connection).

class TlsHttpProxyProtocol(HttpProxyProtocol):
    __slots__ = ()

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class TlsTcpClientProtocol(TcpClientProtocol):
    __slots__ = ()

    def eof_received(self) -> bool:
        super().eof_received()
        return False
