"""State one engine shares with its connections: a coarse clock with one deadline sweeper,
the set of live connections, and the background tasks it owns. Nothing here is global,
so two engines in one process never see each other."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Protocol

log = logging.getLogger("virtserve.engine")

TICK = 0.1  # seconds: timeout granularity, and how often the sweeper runs


class Timed(Protocol):
    deadline: float  # loop time at which on_deadline() fires; 0 for none

    def on_deadline(self) -> None: ...


class EngineState:
    """Per-engine shared state.

    Connections set `deadline = state.now + timeout` (an attribute read, no call, no timer
    handle per request); one periodic sweep fires the expired ones, as HAProxy's expiry
    dates do. `now` lags real time by at most TICK."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time()
        self.conns: set[Timed] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.draining = False
        self._sweeper: asyncio.TimerHandle | None = None
        self.reactor: Any = None  # the raw relay's and rawio's inner epoll (reactor.py), made when first used

    def start(self) -> None:
        self._sweeper = self.loop.call_later(TICK, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self.tasks):
            task.cancel()
        if self.reactor is not None:
            self.reactor.close()
            self.reactor = None

    def _sweep(self) -> None:
        self.now = now = self.loop.time()
        for conn in [c for c in self.conns if 0.0 < c.deadline <= now]:
            try:
                conn.on_deadline()
            except Exception:  # one broken connection must not stop the sweeper
                log.exception("timeout handler failed for %r", conn)
        self._sweeper = self.loop.call_later(TICK, self._sweep)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work owned by the engine: kept referenced, cancelled on stop,
        and its errors logged rather than lost."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())
