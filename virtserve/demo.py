"""`virtserve demo`: two local backends behind a round-robin virtual server.

Each backend answers any request with a body that names it, so `curl` shows the balancing."""
from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from aiohttp import web

from virtserve.api import Balancer


class DemoBackend:
    """A tiny real server on loopback that says who it is."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name, self.host, self.port = name, host, port
        self._runner: web.AppRunner | None = None

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text=f"Hello from {self.name} ({self.host}:{self.port}): "
                                 f"{request.method} {request.path_qs}\n")

    async def start(self) -> DemoBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._hello)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def demo_config(port: int, backends: list[DemoBackend], mode: str = "http",
                crt: str | None = None) -> dict[str, Any]:
    bind: Any = f"127.0.0.1:{port}"
    if crt is not None:
        bind = {"address": bind, "ssl": {"crt": crt, "alpn": ["http/1.1"] if mode == "http" else []}}
    return {
        "listen": {
            "demo": {
                "bind": bind,
                "mode": mode,
                "scheduler": "rr",
                "forwardfor": mode == "http",
                "servers": [{"name": b.name, "address": f"{b.host}:{b.port}"} for b in backends],
            }
        }
    }


async def run_demo(port: int = 8080, mode: str = "http", tls: bool = False,
                   cert_dir: str = "virtserve-certs") -> None:
    crt = ca = None
    if tls:
        from virtserve.certs import make_certs

        made = make_certs(cert_dir, ["localhost", "127.0.0.1"])
        crt, ca = str(made["server"]), made["ca"]
    backends = [await DemoBackend(name).start() for name in ("web1", "web2")]
    lb = await Balancer(demo_config(port, backends, mode, crt)).start()
    host, bound = lb.address
    scheme = "https" if tls else "http"
    print(f"virtserve demo: virtual server {host}:{bound} ({mode}{', TLS' if tls else ''}, round robin) in front of")
    for b in backends:
        print(f"  {b.name}  {b.host}:{b.port}")
    if tls:
        print(f"Certificates: {crt} (CA: {ca})")
        print(f"Try:  curl --cacert {ca} https://localhost:{bound}/   (twice: the backends alternate)")
    else:
        print(f"Try:  curl {scheme}://{host}:{bound}/   (run it twice: the backends alternate)")
    print("Stop: Ctrl-C (or SIGTERM)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("virtserve demo: stopping", flush=True)
        await lb.stop(grace=lb.config.grace)
        for b in backends:
            await b.stop()
