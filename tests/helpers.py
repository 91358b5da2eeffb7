"""Test helpers: real backends on loopback, misbehaving servers, one-line topologies."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from aiohttp import web

from virtserve.api import Balancer
from virtserve.engine.config.model import BackendSpec, BindSpec, Config, FrontendSpec, ServerSpec, Timeouts


class Backend:
    """An aiohttp server on 127.0.0.1:0 that names itself in every answer.

    Routes: /            "NAME"                      /echo   the request body back (streamed)
            /headers     the request headers as JSON /bytes/N  N bytes, streamed in 64 KiB pieces
            /status/N    that status                  /slow/S  answers after S seconds
            /ws          WebSocket echo, prefixed with NAME
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.requests = 0
        self.peers: list[str] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> Backend:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/headers", self._headers)
        app.router.add_get("/bytes/{n}", self._bytes)
        app.router.add_route("*", "/status/{n}", self._status)
        app.router.add_get("/slow/{s}", self._slow)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._hello)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.requests += 1
        self.peers.append(request.remote or "")

    async def _hello(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text=self.name)

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        resp = web.StreamResponse(headers={"X-Backend": self.name})
        if request.content_length is not None:
            resp.content_length = request.content_length
        await resp.prepare(request)
        async for chunk in request.content.iter_chunked(65536):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def _headers(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"backend": self.name, "headers": [[k, v] for k, v in request.headers.items()]})

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        n = int(request.match_info["n"])
        resp = web.StreamResponse(headers={"X-Backend": self.name})
        resp.content_length = n
        await resp.prepare(request)
        piece = b"x" * 65536
        while n > 0:
            await resp.write(piece[: min(n, len(piece))])
            n -= len(piece)
        return resp

    async def _status(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=int(request.match_info["n"]), text=self.name)

    async def _slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await asyncio.sleep(float(request.match_info["s"]))
        return web.Response(text=self.name)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self._seen(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(f"{self.name}:{msg.data}")
        return ws


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A misbehaving server: the test supplies what it does with each connection."""

    def __init__(self, handler: RawHandler) -> None:
        self.handler = handler
        self.port = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


def topology(ports: list[int], *, mode: str = "http", scheduler: str = "rr", name: str = "vs",
             forwardfor: bool = False, timeouts: Timeouts = Timeouts(), retries: int = 3,
             weights: list[int] | None = None, bind: str = "127.0.0.1",
             options: dict[str, Any] | None = None) -> Config:
    """One virtual server on an ephemeral port in front of the given real-server ports."""
    servers = tuple(ServerSpec(f"s{i + 1}", "127.0.0.1", port, weight=(weights[i] if weights else 1))
                    for i, port in enumerate(ports))
    return Config(
        frontends=(FrontendSpec(name, (BindSpec(bind, 0),), name, mode=mode,  # type: ignore[arg-type]
                                timeouts=timeouts, forwardfor=forwardfor),),
        backends=(BackendSpec(name, mode=mode, scheduler=scheduler, servers=servers,  # type: ignore[arg-type]
                              timeouts=timeouts, retries=retries,
                              scheduler_options=tuple(sorted((options or {}).items()))),),
        grace=2.0,
    )


async def raw_exchange(host: str, port: int, data: bytes, *, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes, return what comes back until the proxy closes (bounded in time)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(-1) if read_until_close else await reader.read(65536)
    finally:
        writer.close()


def body_json(data: bytes) -> Any:
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


async def start_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve an aiohttp app on 127.0.0.1 (a free port): its runner (cleanup() stops it) and port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
