"""The embeddable face of the engine.

    async with virtserve.serve(config) as lb:        # Config, dict (TOML-shaped) or path
        ... lb.url, lb.address, lb.servers("app") ...

    with virtserve.serve_blocking(config) as lb:     # the loop runs in a thread
        requests.get(lb.url)
"""
from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future
from typing import Any, Mapping

from virtserve.engine.config.model import Config
from virtserve.engine.config.validate import WEIGHT_MAX
from virtserve.engine.engine import Engine

ConfigLike = Config | Mapping[str, Any] | str | os.PathLike


def to_config(config: ConfigLike) -> Config:
    from virtserve import engine

    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return engine.config.parse_dict(config, source="<dict>")
    return engine.config.load(config)


class Balancer:
    """A running engine, as a test or an embedding program sees it."""

    def __init__(self, config: ConfigLike, *, reuse_port: bool = False) -> None:
        self.config = to_config(config)
        self.engine = Engine(self.config, reuse_port=reuse_port)

    async def start(self) -> Balancer:
        await self.engine.start()
        return self

    async def stop(self, grace: float | None = 0.0) -> None:
        await self.engine.drain(grace)
        await self.engine.close()

    async def reload(self, config: ConfigLike) -> None:
        """Serve a new config without dropping anything. A config that does not parse, validate
        or bind raises, and the old one keeps serving."""
        new = to_config(config)
        await self.engine.reload(new)
        self.config = new

    async def __aenter__(self) -> Balancer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        return self.engine.addresses

    @property
    def address(self) -> tuple[str, int]:
        """The first frontend's first bound (host, port)."""
        for addresses in self.engine.addresses.values():
            if addresses:
                return addresses[0]
        raise RuntimeError("the balancer has no listener")

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def servers(self, backend: str | None = None) -> list[dict[str, Any]]:
        """Live state of a backend's servers (the only backend when not named)."""
        backends = self.engine.backends
        if backend is None:
            if len(backends) != 1:
                raise ValueError(f"name one of the backends: {', '.join(backends)}")
            backend = next(iter(backends))
        return backends[backend].state()

    def set_server(self, backend: str, server: str, state: str | None = None,
                   weight: int | None = None) -> dict[str, Any]:
        """Steer a server live, as `set server B/S state|weight` on the runtime socket does.

        state: "ready", "drain" (no new connections or requests; those in flight finish) or
        "maint" (out of service). weight: the operator's weight, 0..256, in force once the
        server is ready. Returns the server's live state; unknown names raise KeyError, bad
        values ValueError, and nothing changes then."""
        b = self.engine.backends.get(backend)
        if b is None:
            raise KeyError(f"no backend {backend!r}; there are: {', '.join(self.engine.backends)}")
        s = b.by_name.get(server)
        if s is None:
            raise KeyError(f"no server {server!r} in backend {backend!r}; there are: {', '.join(b.by_name)}")
        admin = None
        if state is not None:
            admin = _ADMIN_STATES.get(state)
            if admin is None:
                raise ValueError(f"state must be one of {', '.join(_ADMIN_STATES)}, not {state!r}")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int)
                                   or not 0 <= weight <= WEIGHT_MAX):
            raise ValueError(f"weight must be a whole number from 0 to {WEIGHT_MAX}, not {weight!r}")
        if weight is not None:
            b.set_user_weight(s, weight)
        if admin is not None:
            b.set_admin(s, admin)
        return next(x for x in b.state() if x["name"] == s.name)


_ADMIN_STATES = {"ready": "", "drain": "drain", "maint": "maint"}


def serve(config: ConfigLike) -> Balancer:
    """An async context manager that runs a balancer for the block."""
    return Balancer(config)


class BlockingBalancer:
    """A Balancer whose event loop (uvloop) runs in a background thread, for synchronous code."""

    def __init__(self, config: ConfigLike) -> None:
        self.config = to_config(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lb: Balancer | None = None

    def start(self) -> BlockingBalancer:
        import uvloop

        started: Future[Balancer] = Future()
        self._loop = loop = uvloop.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)

            async def boot() -> None:
                try:
                    started.set_result(await Balancer(self.config).start())
                except BaseException as exc:
                    started.set_exception(exc)

            loop.run_until_complete(boot())
            if started.exception() is None:
                loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="virtserve", daemon=True)
        self._thread.start()
        self._lb = started.result(timeout=30)
        return self

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn(*args) (or await it, if it is a coroutine function) on the engine's loop."""
        assert self._loop is not None

        async def run() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    def stop(self, grace: float | None = 0.0) -> None:
        if self._lb is None or self._loop is None:
            return
        self.call(self._lb.stop, grace)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=30)
        self._lb = None

    def __enter__(self) -> BlockingBalancer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def engine(self) -> Engine:
        assert self._lb is not None
        return self._lb.engine

    @property
    def address(self) -> tuple[str, int]:
        return self.call(lambda: self._lb.address)  # type: ignore[union-attr]

    @property
    def addresses(self) -> dict[str, list[tuple[str, int]]]:
        return self.call(lambda: self._lb.addresses)  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return self.call(lambda: self._lb.url)  # type: ignore[union-attr]

    def servers(self, backend: str | None = None) -> list[dict[str, Any]]:
        return self.call(self._lb.servers, backend)  # type: ignore[union-attr]

    def reload(self, config: ConfigLike) -> None:
        self.call(self._lb.reload, config)  # type: ignore[union-attr]

    def set_server(self, backend: str, server: str, state: str | None = None,
                   weight: int | None = None) -> dict[str, Any]:
        """Balancer.set_server, run on the engine's loop."""
        return self.call(self._lb.set_server, backend, server, state, weight)  # type: ignore[union-attr]


def serve_blocking(config: ConfigLike) -> BlockingBalancer:
    """A context manager that runs a balancer in a background thread for the block."""
    return BlockingBalancer(config)
