"""The Engine: builds the runtime objects from a frozen Config, binds the listeners, and stops
gracefully. `async with Engine(config) as e:` serves until the block ends."""
from __future__ import annotations

import asyncio
import functools
import logging
import socket
from typing import Any, Callable

from virtserve.engine.backend import Backend
from virtserve.engine.config.model import BindSpec, Config, FrontendSpec
from virtserve.engine.frontend import Frontend
from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.state import EngineState
from virtserve.engine.upstream.pool import UpstreamPool

log = logging.getLogger("virtserve.engine")

_PROTOCOLS: dict[str, Callable[[Frontend], asyncio.Protocol]] = {
    "http": HttpProxyProtocol,
    "tcp": TcpClientProtocol,
}


class Engine:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state: EngineState | None = None
        self.backends: dict[str, Backend] = {}
        self.frontends: dict[str, Frontend] = {}
        self.pool: UpstreamPool | None = None
        self._listeners: dict[str, list[tuple[BindSpec, asyncio.base_events.Server]]] = {}
        self._stopped: asyncio.Event | None = None

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
        except BaseException:
            await self.close()
            raise

    async def reload(self, config: Config) -> None:
        """Serve `config` from now on, losing nothing: listeners whose binds stay keep their
        sockets, connections already open finish on the settings they started with, servers
        that stay keep their state and counters, new listeners open and removed ones close.
        If a new listener cannot bind, nothing changes and the error is raised."""
        if self.state is None:
            raise RuntimeError("the engine is not running")
        await self._apply(config)
        log.info("reloaded: %s", config.summary())

    async def _apply(self, config: Config) -> None:
        state, pool = self.state, self.pool
        assert state is not None and pool is not None
        backends: dict[str, Backend] = {}
        for spec in config.backends:
            old = self.backends.get(spec.name)
            if old is not None and old.spec == spec:
                backends[spec.name] = old
            else:
                backends[spec.name] = Backend(spec, carry_over=old)
        frontends: dict[str, Frontend] = {}
        for spec in config.frontends:
            old_fe = self.frontends.get(spec.name)
            backend = backends[spec.default_backend]
            if old_fe is not None and old_fe.spec == spec and old_fe.backend is backend:
                frontends[spec.name] = old_fe
            else:
                frontends[spec.name] = Frontend(spec, backend, state, pool, _PROTOCOLS[spec.mode])
        # Sockets: a bind that stays keeps its socket (its accept queue and port survive);
        # only then are the removed ones closed. Open everything new first, so a failed bind
        # changes nothing.
        kept: dict[str, list[tuple[BindSpec, asyncio.base_events.Server]]] = {}
        spare = {name: list(pairs) for name, pairs in self._listeners.items()}
        opened: list[asyncio.base_events.Server] = []
        try:
            for spec in config.frontends:
                pairs = kept[spec.name] = []
                for bind in spec.binds:
                    old_pair = next((p for p in spare.get(spec.name, ()) if _same_socket(p, bind)), None)
                    if old_pair is not None:
                        spare[spec.name].remove(old_pair)
                        pairs.append(old_pair)
                    else:
                        server = await self._bind(spec, bind)
                        opened.append(server)
                        pairs.append((bind, server))
        except BaseException:
            for server in opened:
                server.close()
            raise
        self.config = config
        for name, old_fe in self.frontends.items():
            if frontends.get(name) is not old_fe:
                old_fe.retired, old_fe.successor = True, frontends.get(name)
        self.backends, self.frontends, self._listeners = backends, frontends, kept
        for conn in list(state.conns):
            # Idle keep-alive connections move to the new settings now, the busy ones after
            # their response; those whose frontend is gone close.
            migrate = getattr(conn, "migrate", None)  # HTTP client connections
            if migrate is not None and conn.fe.retired and conn.idle() and not migrate():
                conn.transport.close()
        for pairs in spare.values():
            for _, server in pairs:
                server.close()
        for name, pairs in kept.items():
            mode = frontends[name].spec.mode
            for _, server in pairs:
                if server in opened:
                    for host, port in self._addresses([server]):
                        log.info("frontend %s (%s) listening on %s:%d", name, mode, host, port)

    def _accept(self, name: str) -> asyncio.Protocol:
        # Looked up at each accept, so a reload hands kept sockets to the new settings.
        return self.frontends[name].protocol()

    async def _bind(self, spec: FrontendSpec, bind: BindSpec) -> asyncio.base_events.Server:
        loop = asyncio.get_running_loop()
        try:
            return await loop.create_server(
                functools.partial(self._accept, spec.name), bind.address, bind.port,
                reuse_address=True, backlog=1024, family=_family(bind.address))
        except OSError as exc:
            where = f"{bind.where}: " if bind.where else ""
            raise OSError(exc.errno, f"{where}frontend {spec.name}: cannot bind "
                                     f"{bind.address}:{bind.port}: {exc.strerror}") from exc

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight work finish within `grace` seconds, then close the rest."""
        state = self.state
        if state is None:
            return
        grace = self.config.grace if grace is None else grace
        state.draining = True
        for pairs in self._listeners.values():
            for _, server in pairs:
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
        if not self.state.draining:
            await self.drain(grace=0)
        for pairs in self._listeners.values():
            for _, server in pairs:
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

    # --- what it serves -----------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        """Bound (host, port) per frontend: with port 0 in the config, the port the OS chose."""
        return {name: self._addresses([server for _, server in pairs]) for name, pairs in self._listeners.items()}

    @staticmethod
    def _addresses(servers: list[asyncio.base_events.Server]) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for server in servers for sock in server.sockets]


def _same_socket(pair: tuple[BindSpec, asyncio.base_events.Server], bind: BindSpec) -> bool:
    """Whether an open listener serves `bind`: the same spec, or the port the OS gave a port-0
    bind now named explicitly."""
    old, server = pair
    if old == bind:
        return True
    return bind.port != 0 and any(sock.getsockname()[:2] == (bind.address, bind.port) for sock in server.sockets)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET if address else socket.AF_UNSPEC
