"""The admin plane of one engine: access log, stats page (+ metrics), runtime socket; started
after the listeners, closed before the engine's state goes."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtserve.engine.admin.access import AccessLog
    from virtserve.engine.admin.page import StatsApp
    from virtserve.engine.admin.socket import RuntimeSocket
    from virtserve.engine.engine import Engine

# The parts are imported when the config uses them: the stats page brings aiohttp.web and
# prometheus_client (about 150 ms and 40 MiB), which an embedded balancer without stats never needs.


class AdminPlane:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.log: AccessLog | None = None
        self.stats: StatsApp | None = None
        self.socket: RuntimeSocket | None = None

    async def start(self) -> None:
        e = self.engine
        config = e.config
        assert e.state is not None
        if config.log is not None:
            from virtserve.engine.admin.access import AccessLog

            self.log = AccessLog(config.log, e, e.state.loop)
            for fe in e.frontends.values():
                fe.log = self.log
        stats = config.stats
        if stats is not None and stats.bind is not None:
            from virtserve.engine.admin.page import StatsApp

            self.stats = StatsApp(e, stats)
            await self.stats.start()
        if stats is not None and stats.socket:
            from virtserve.engine.admin.runtime import Runtime
            from virtserve.engine.admin.socket import RuntimeSocket

            self.socket = RuntimeSocket(Runtime(e, stats.socket_level), stats.socket)
            await self.socket.start()

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
            self.socket = None
        if self.stats is not None:
            await self.stats.close()
            self.stats = None
        if self.log is not None:
            for fe in self.engine.frontends.values():
                fe.log = None
            self.log.close()
            self.log = None
