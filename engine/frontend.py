"""Runtime frontend: what a client connection needs from its listener, resolved once from the
config so the data path reads plain attributes; and the frontend's `maxconn` admission."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Mapping

from virtserve.engine.admin.counters import Counters
from virtserve.engine.config.model import FrontendSpec
from virtserve.engine.l7.lean import choose as choose_protocol
from virtserve.engine.l7.pipeline import Pipeline
from virtserve.engine.l7.stages import build as build_stages
from virtserve.schedulers.base import Needs

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend
    from virtserve.engine.listeners import Origin
    from virtserve.engine.state import EngineState
    from virtserve.engine.upstream.pool import UpstreamPool

MAX_WAITING_BYTES = 64 * 1024  # what a waiting client may send before reading pauses for good


class Frontend:
    def __init__(self, spec: FrontendSpec, backend: Backend, state: EngineState, pool: UpstreamPool,
                 protocol: Callable[[Frontend], asyncio.Protocol],
                 backends: Mapping[str, Backend] | None = None,
                 stats_page: Callable[[Any], Any] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self.state = state
        self.pool = pool
        self._protocol = protocol
        ft, bt = spec.timeouts, backend.spec.timeouts
        self.t_client = ft.client
        self.t_http_request = ft.http_request
        self.t_keep_alive = ft.keep_alive
        self.t_connect = bt.connect
        self.t_server = bt.server
        self.retries = backend.spec.retries
        self.forwardfor = spec.forwardfor or backend.spec.forwardfor
        self.maxconn = spec.maxconn
        self.scheme = b"http"
        self.t_handshake = ft.handshake
        # Request headers the proxy sets from client certificates: a client's own are dropped.
        self.strip = frozenset(
            name.lower().encode() for bind in spec.binds if bind.ssl is not None
            for name in (bind.ssl.client_subject_header, bind.ssl.client_verify_header) if name)
        self.current = 0  # client connections being served now
        self.total = 0  # client connections served
        self.waiting: deque[WaitingProtocol] = deque()  # accepted beyond maxconn
        self.counters = Counters()
        self.log: Any = None  # an AccessLog when logging is on: the data path tests `is not None`
        self.retired = False  # a reload replaced or removed it: connections move on or close
        self.successor: Frontend | None = None  # what replaced it (same name), if anything
        # Rules and routes compiled once; None when there are none (the plain data path).
        self.pipeline: Pipeline | None = None
        self.capture: frozenset[bytes] = frozenset()  # request headers the conditions read
        self.uses = backends_used(spec, backend, backends or {})
        self.needs = backend.needs  # what any backend it may route to needs in the PickContext
        if spec.rules or spec.routes:
            self.pipeline = Pipeline(spec.rules, spec.routes, backends or {})
            self.capture = self.pipeline.capture
            for used in self.uses:
                self.needs |= used.needs
        # In-band stats, the backends' rules, httpclose (l7/stages.py): None when there are none.
        stages = build_stages(spec, self.pipeline, backend, self.uses, stats_page) if spec.mode == "http" else None
        if stages is not None:
            self.pipeline, self.capture = stages, stages.capture  # type: ignore[assignment]
        # Requests are counted per server and summed when read; a backend that several
        # frontends share, or a frontend that routes to several backends, cannot be summed that
        # way, so those frontends count their own totals too.
        self.tally = self.pipeline is not None
        # What the connections must give the scheduler, as plain booleans: enum.Flag tests
        # cost two Python calls each, once per connection.
        self.needs_dest = bool(self.needs & Needs.DEST)
        self.needs_payload = bool(self.needs & Needs.PAYLOAD)
        # The common case's lean client protocol, when nothing reads a request header.
        self._protocol = choose_protocol(self, protocol)
        backend.frontends.add(self)
        if len(backend.frontends) > 1:
            for fe in backend.frontends:
                fe.tally = True

    def protocol(self) -> asyncio.Protocol:
        """The listener's protocol factory. Beyond maxconn a connection is accepted but not
        served until another ends (HAProxy leaves it in the accept queue: same effect)."""
        if self.maxconn and (self.current >= self.maxconn or self.waiting):
            return WaitingProtocol(self)
        return self._protocol(self)

    def protocol_for(self, origin: Origin) -> asyncio.Protocol:
        """The factory after a listener stage (TLS, PROXY header): the same, with what it learned."""
        if self.maxconn and (self.current >= self.maxconn or self.waiting):
            return WaitingProtocol(self, origin)
        return origin.make(self)

    def accepted(self) -> None:
        """A connection is served: counted, and the frontend's peak follows."""
        self.current += 1
        self.total += 1
        counters = self.counters
        if self.current > counters.max_cur:
            counters.max_cur = self.current

    def release(self) -> None:
        """A served connection ended: admit the longest-waiting one."""
        self.current -= 1
        waiting = self.waiting
        while waiting and self.current < self.maxconn:
            conn = waiting.popleft()
            conn.admit(conn.origin.make(self) if conn.origin is not None else self._protocol(self))


def backends_used(spec: FrontendSpec, default: Backend, backends: Mapping[str, Backend]) -> tuple[Backend, ...]:
    """The default backend, then those the routes name: a reload keeps a frontend only when
    these are the same objects."""
    return (default, *(backends[route.backend] for route in spec.routes))


class WaitingProtocol(asyncio.Protocol):
    """A connection accepted beyond the frontend's maxconn: not read, not answered, until a slot
    frees; then its transport moves to the real protocol with whatever arrived meanwhile."""

    __slots__ = ("fe", "transport", "early", "early_size", "eof", "deadline", "gone", "origin")

    def __init__(self, fe: Frontend, origin: Origin | None = None) -> None:
        self.fe = fe
        self.origin = origin
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.early: list[bytes] = []
        self.early_size = 0
        self.eof = False
        self.deadline = 0.0
        self.gone = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.pause_reading()
        self.fe.waiting.append(self)
        self.fe.state.conns.add(self)
        self.deadline = self.fe.state.now + self.fe.t_client

    def data_received(self, data: bytes) -> None:
        # uvloop may deliver bytes already read despite pause_reading(): keep them for later.
        self.early.append(data)
        self.early_size += len(data)
        if self.early_size > MAX_WAITING_BYTES:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def idle(self) -> bool:
        return True  # never served: closed at once when the engine drains

    def on_deadline(self) -> None:
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.fe.state.conns.discard(self)
        if self in self.fe.waiting:
            self.fe.waiting.remove(self)

    def admit(self, protocol: asyncio.Protocol) -> None:
        self.fe.state.conns.discard(self)
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for data in self.early:
            protocol.data_received(data)
        if self.eof and not protocol.eof_received():
            transport.close()
        elif not transport.is_closing():
            transport.resume_reading()
