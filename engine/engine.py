"""The Engine: builds the runtime objects from a frozen Config, binds the listeners, and stops
gracefully. `async with Engine(config) as e:` serves until the block ends."""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from virtserve.engine.admin.plane import AdminPlane
from virtserve.engine.backend import Backend
from virtserve.engine.config.model import Config, FrontendSpec
from virtserve.engine.frontend import Frontend
from virtserve.engine.health import Health
from virtserve.engine.ipvs.director import Director
from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.listeners import Listener
from virtserve.engine.tls import client_context
from virtserve.engine.state import EngineState
from virtserve.engine.upstream.pool import UpstreamPool

log = logging.getLogger("virtserve.engine")

_PROTOCOLS: dict[str, Callable[[Frontend], asyncio.Protocol]] = {
    "http": HttpProxyProtocol,
    "tcp": TcpClientProtocol,
}


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
        self._listeners: dict[str, list[asyncio.base_events.Server]] = {}
        self._stopped: asyncio.Event | None = None
        self.admin: AdminPlane | None = None
        self.listeners: list[Listener] = []  # one per bind
        self.ipvs: Director | None = None  # programs the kernel for forward = ipvs|auto frontends

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.state = state = EngineState(loop)
        state.start()
        self._stopped = asyncio.Event()
        idle = max((b.timeouts.keep_alive for b in self.config.backends), default=10.0)
        self.pool = UpstreamPool(state, idle_timeout=idle)
        self.backends = {spec.name: Backend(spec) for spec in self.config.backends}
        for backend in self.backends.values():
            for server in backend.servers:
                if server.spec.ssl is not None:
                    server.ssl = client_context(server.spec.ssl)
        self.health = Health(state, self.backends)
        self.health.start()
        try:
            self.ipvs = Director(self.config, self.backends, loop)
            in_kernel = self.ipvs.start()
            for spec in self.config.frontends:
                fe = Frontend(spec, self.backends[spec.default_backend], state, self.pool, _PROTOCOLS[spec.mode])
                self.frontends[spec.name] = fe
                # The kernel forwards this service's packets: no userspace listener.
                self._listeners[spec.name] = [] if spec.name in in_kernel else await self._bind(spec, fe)
            self.admin = AdminPlane(self)
            await self.admin.start()
        except BaseException:
            await self.close()
            raise
        for name, servers in self._listeners.items():
            mode = self.frontends[name].spec.mode
            for host, port in self._addresses(servers):
                log.info("frontend %s (%s) listening on %s:%d", name, mode, host, port)

    async def _bind(self, spec: FrontendSpec, fe: Frontend) -> list[asyncio.base_events.Server]:
        loop = asyncio.get_running_loop()
        servers = []
        for bind in spec.binds:
            listener = Listener(fe, bind)
            factory, tls = listener.server_args()
            try:
                servers.append(await loop.create_server(
                    factory, bind.address, bind.port,
                    reuse_address=True, reuse_port=self.reuse_port or None, backlog=1024, family=_family(bind.address), **tls))
                self.listeners.append(listener)
                listener.start(loop)
            except OSError as exc:
                for server in servers:
                    server.close()
                where = f"{bind.where}: " if bind.where else ""
                raise OSError(exc.errno, f"{where}frontend {spec.name}: cannot bind "
                                         f"{bind.address}:{bind.port}: {exc.strerror}") from exc
        return servers

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight work finish within `grace` seconds, then close the rest."""
        state = self.state
        if state is None:
            return
        grace = self.config.grace if grace is None else grace
        state.draining = True
        for servers in self._listeners.values():
            for server in servers:
                server.close()
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
        for listener in self.listeners:
            listener.stop()
        self.listeners.clear()
        if not self.state.draining:
            await self.drain(grace=0)
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        if self.ipvs is not None:
            self.ipvs.close()
            self.ipvs = None
        for servers in self._listeners.values():
            for server in servers:
                server.close()
                await server.wait_closed()
        self.state.stop()
        self._listeners.clear()
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
        return {name: self._addresses(servers) for name, servers in self._listeners.items()}

    @staticmethod
    def _addresses(servers: list[asyncio.base_events.Server]) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for server in servers for sock in server.sockets]


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET if address else socket.AF_UNSPEC
