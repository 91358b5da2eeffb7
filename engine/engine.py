"""The Engine: builds the runtime objects from a frozen Config, binds the listeners, reloads a
new Config without loss, and stops gracefully. `async with Engine(config) as e:` serves until
the block ends."""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from virtserve.engine import rawpaths
from virtserve.engine.admin.inband import pages as inband_pages
from virtserve.engine.admin.plane import AdminPlane
from virtserve.engine.backend import Backend, backends_for
from virtserve.engine.config.model import BindSpec, Config, FrontendSpec
from virtserve.engine.frontend import Frontend, backends_used
from virtserve.engine.health import Health
from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.listeners import Listener, listening_socket
from virtserve.engine.state import EngineState
from virtserve.engine.upstream.pool import UpstreamPool

if TYPE_CHECKING:  # imported when used: IPVS and TLS cost start-up only to configs that use them
    from virtserve.engine.ipvs.director import Director

log = logging.getLogger("virtserve.engine")


def _kernel_director(config: Config, backends: dict[str, Backend], loop: Any) -> Director:
    from virtserve.engine.ipvs.director import Director  # only configs with forward = ipvs|auto

    return Director(config, backends, loop)

_PROTOCOLS: dict[str, Callable[[Frontend], asyncio.Protocol]] = {
    "http": HttpProxyProtocol,
    "tcp": TcpClientProtocol,
}


@dataclass
class _Bound:
    """One bind's open socket and the Listener that serves it."""

    frontend: str
    bind: BindSpec
    listener: Listener
    server: asyncio.base_events.Server


class Engine:
    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        self.config = config
        # SO_REUSEPORT on every listener: N worker processes bind the same address and the
        # kernel spreads new connections across them (`virtserve run --workers N`).
        self.reuse_port = reuse_port
        self.state: EngineState | None = None
        self.backends: dict[str, Backend] = {}
        self.frontends: dict[str, Frontend] = {}
        self.pool: UpstreamPool | None = None
        self.health: Health | None = None
        self.admin: AdminPlane | None = None
        self._bound: list[_Bound] = []
        self._stopped: asyncio.Event | None = None
        self.ipvs: Director | None = None  # programs the kernel for forward = ipvs|auto frontends
        self._in_kernel: set[str] = set()  # frontends the kernel serves: no listener
        # A worker of a group (virtserve/member.py, groupcontrol.py) gets both from the parent, which runs the
        # checks and the IPVS Director once for all workers.
        self.make_health: Callable[[EngineState, dict[str, Backend]], Health] = Health
        self.make_director: Callable[[Config, dict[str, Backend], Any], Director] = _kernel_director

    @property
    def listeners(self) -> list[Listener]:
        return [b.listener for b in self._bound]

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.state = state = EngineState(loop)
        state.start()
        self._stopped = asyncio.Event()
        idle = max((b.timeouts.keep_alive for b in self.config.backends), default=10.0)
        self.pool = UpstreamPool(state, idle_timeout=idle)
        try:
            await self._apply(self.config)
            self.admin = AdminPlane(self)
            await self.admin.start()
        except BaseException:
            await self.close()
            raise

    async def reload(self, config: Config) -> None:
        """Serve `config` from now on, losing nothing: binds that stay keep their sockets (and
        their accept queues), connections already open finish what they started on the old
        settings (keep-alive ones move to the new settings between requests), servers that stay
        keep their health, state and counters, new binds open and removed ones close. If a new
        bind cannot open, or the kernel refuses a change to
        its IPVS table (forward = ipvs|auto), nothing changes and the error is raised."""
        if self.state is None:
            raise RuntimeError("the engine is not running")
        await self._apply(config)
        for listener in self.listeners:  # "on reload": certificates whose files changed
            if listener.store is not None:
                listener.store.reload_if_changed()
        log.info("reloaded: %s", config.summary())

    async def _apply(self, config: Config) -> None:
        state, pool = self.state, self.pool
        assert state is not None and pool is not None
        backends = backends_for(config.backends, self.backends)
        frontends: dict[str, Frontend] = {}
        for spec in config.frontends:
            old_fe = self.frontends.get(spec.name)
            backend = backends[spec.default_backend]
            if old_fe is not None and old_fe.spec == spec and old_fe.uses == backends_used(spec, backend, backends):
                frontends[spec.name] = old_fe
            else:
                frontends[spec.name] = Frontend(spec, backend, state, pool, _PROTOCOLS[spec.mode], backends,
                                                stats_page=inband_pages(self))
        if self.ipvs is None and any(f.forward != "userspace" for f in config.frontends):
            self.ipvs = self.make_director(config, backends, state.loop)
        # The frontends the kernel serves: they bind nothing.
        in_kernel = self.ipvs.decide(config) if self.ipvs is not None else set()
        # Open everything new first, so that a bind that fails changes nothing.
        spare = list(self._bound)
        kept: list[_Bound] = []
        opened: list[_Bound] = []
        try:
            for spec in config.frontends:
                if spec.name in in_kernel:
                    continue  # the kernel forwards this service's packets: no userspace listener
                fe = frontends[spec.name]
                for bind in spec.binds:
                    old = next((b for b in spare if b.frontend == spec.name and _same_socket(b, bind)), None)
                    if old is not None:
                        spare.remove(old)
                        kept.append(old)
                    else:
                        bound = await self._open(fe, bind)
                        opened.append(bound)
                        kept.append(bound)
            if self.ipvs is not None:
                self.ipvs.apply(config, backends)  # the kernel's table: all or nothing
        except BaseException:
            for bound in opened:
                bound.listener.stop()
                bound.server.close()
            raise
        # Commit: from here on nothing fails.
        for backend in backends.values():
            if backend not in self.backends.values():
                for server in backend.servers:
                    if server.spec.ssl is not None:
                        from virtserve.engine.tls import client_context

                        server.ssl = client_context(server.spec.ssl)
        for name, old_fe in self.frontends.items():
            if frontends.get(name) is not old_fe:
                old_fe.retired, old_fe.successor = True, frontends.get(name)
        self.config, self._in_kernel = config, in_kernel
        changed = backends != self.backends
        self.backends, self.frontends, self._bound = backends, frontends, kept
        for bound in kept:
            bound.listener.retarget(frontends[bound.frontend])
        for bound in spare:
            bound.listener.stop()
            bound.server.close()
        if changed or self.health is None:
            if self.health is not None:
                self.health.stop()
            self.health = self.make_health(state, backends)
            self.health.start()
        for conn in list(state.conns):
            # Idle keep-alive connections move to the new settings now, the busy ones after
            # their response; those whose frontend is gone close.
            migrate = getattr(conn, "migrate", None)  # HTTP client connections
            if migrate is not None and conn.fe.retired and conn.idle() and not migrate():
                conn.transport.close()
        for bound in opened:
            for host, port in self._addresses([bound.server]):
                log.info("frontend %s (%s) listening on %s:%d", bound.frontend,
                         frontends[bound.frontend].spec.mode, host, port)

    async def _open(self, fe: Frontend, bind: BindSpec) -> _Bound:
        loop = asyncio.get_running_loop()
        listener = Listener(fe, bind)
        factory, tls = listener.server_args()
        try:
            sock = listening_socket(bind.address, bind.port, self.reuse_port)
            if sock is not None and fe.spec.mode == "tcp" and rawpaths.l4_raw(bind):
                try:  # plain L4: the raw relay, no uvloop transports (l4/rawrelay.py)
                    server = rawpaths.rawrelay.RawServer(self.state, sock, listener)  # type: ignore[union-attr, arg-type, assignment]
                except BaseException:
                    sock.close()
                    raise
            elif sock is not None:
                try:
                    if listener.raw:  # plain HTTP: client connections on the reactor (rawio.py)
                        server = rawpaths.rawio.serve(rawpaths.reactor_of(self.state), factory, sock,  # type: ignore[union-attr, misc]
                                                      backlog=1024)
                    else:
                        server = await loop.create_server(factory, sock=sock, backlog=1024, **tls)
                except BaseException:
                    sock.close()
                    raise
            else:
                server = await loop.create_server(
                    factory, bind.address, bind.port, reuse_address=True,
                    reuse_port=self.reuse_port or None, backlog=1024, family=_family(bind.address), **tls)
        except OSError as exc:
            listener.stop()
            where = f"{bind.where}: " if bind.where else ""
            raise OSError(exc.errno, f"{where}frontend {fe.name}: cannot bind "
                                     f"{bind.address}:{bind.port}: {exc.strerror}") from exc
        listener.start(loop)
        return _Bound(fe.name, bind, listener, server)

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight work finish within `grace` seconds, then close the rest."""
        state = self.state
        if state is None:
            return
        grace = self.config.grace if grace is None else grace
        state.draining = True
        for bound in self._bound:
            bound.server.close()
        for conn in list(state.conns):
            idle = getattr(conn, "idle", None)
            if idle is not None and idle():
                conn.transport.close()
        if self.pool is not None:
            self.pool.close()
        deadline = state.loop.time() + grace
        while state.conns and state.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(state.conns):
            conn.transport.abort()
        await asyncio.sleep(0)

    async def close(self) -> None:
        if self.state is None:
            return
        for bound in self._bound:
            bound.listener.stop()
        if not self.state.draining:
            await self.drain(grace=0)
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self.health is not None:
            self.health.stop()
            self.health = None
        if self.ipvs is not None:
            self.ipvs.close()
            self.ipvs = None
        for bound in self._bound:
            bound.server.close()
            await bound.server.wait_closed()
        self._bound.clear()
        self.state.stop()
        self.state = None
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def reload_certificates(self) -> int:
        """Read the TLS certificates again where their files changed (a reload does this too);
        the number of listeners now serving new ones. Handshakes in progress are not disturbed."""
        return sum(1 for listener in self.listeners
                   if listener.store is not None and listener.store.reload_if_changed())

    # --- what it serves -----------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """Bound (host, port) per frontend: with port 0 in the config, the port the OS chose."""
        out: dict[str, list[tuple[str, int]]] = {name: [] for name in self._in_kernel}
        for bound in self._bound:
            out.setdefault(bound.frontend, []).extend(self._addresses([bound.server]))
        return out

    @staticmethod
    def _addresses(servers: list[asyncio.base_events.Server]) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for server in servers for sock in server.sockets]


def _same_socket(bound: _Bound, bind: BindSpec) -> bool:
    """Whether an open socket serves `bind`: the same spec, or the port the OS gave a port-0
    bind now named explicitly (with the same TLS and PROXY settings)."""
    old = bound.bind
    if old == bind:
        return True
    if bind.port == 0 or (old.ssl, old.accept_proxy) != (bind.ssl, bind.accept_proxy):
        return False
    return any(sock.getsockname()[:2] == (bind.address, bind.port) for sock in bound.server.sockets)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET if address else socket.AF_UNSPEC
