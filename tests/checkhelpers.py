"""Helpers for health-check tests: a real server whose health the test changes at will."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from aiohttp import web


class HealthBackend:
    """An aiohttp server on 127.0.0.1 that names itself on every path, with /health answering
    `status` and `body` (or never answering while `hang` is set). stop() closes its port;
    start() again reopens the same port, as a restarted service would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.status = 200
        self.body = "ok"
        self.hang = False
        self.served = 0
        self.checks = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> HealthBackend:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._hello)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        self.checks += 1
        while self.hang:
            await asyncio.sleep(0.05)
        return web.Response(status=self.status, text=self.body)

    async def _hello(self, request: web.Request) -> web.Response:
        self.served += 1
        return web.Response(text=self.name)


async def wait_for(predicate: Callable[[], Any], timeout: float, step: float = 0.01) -> float:
    """Poll until predicate() is true; return the seconds it took (fails after timeout)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)
    return time.monotonic() - started


def status_of(lb: Any, name: str, backend: str | None = None) -> dict[str, Any]:
    return next(s for s in lb.servers(backend) if s["name"] == name)


def listen(ports: list[int], check: dict[str, Any] | None = None, mode: str = "http",
           servers: list[dict[str, Any]] | None = None, **backend: Any) -> dict[str, Any]:
    """A one-section config (TOML-shaped dict) with servers s1..sN on the given ports."""
    servers = servers or [{} for _ in ports]
    section: dict[str, Any] = {
        "bind": "127.0.0.1:0", "mode": mode, "retries": 3,
        "servers": [{"name": f"s{i + 1}", "address": f"127.0.0.1:{port}", **extra}
                    for i, (port, extra) in enumerate(zip(ports, servers))],
        **backend,
    }
    if check is not None:
        section["check"] = check
    return {"grace": "1s", "listen": {"vs": section}}


async def names(url: str, n: int) -> list[str]:
    """n sequential GET / through one keep-alive session: the answering backends' names (or
    the status, when it is not 200)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        out = []
        for _ in range(n):
            async with session.get(url + "/") as resp:
                out.append(await resp.text() if resp.status == 200 else str(resp.status))
        return out
