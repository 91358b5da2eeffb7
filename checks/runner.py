"""Runs the checks: one engine background task per checked server, never on the data path.

The N servers of a backend start their first check spread over the first interval (server i at
i * interval / N), so they are not probed in one burst; then each runs on a fixed period, so a
failure is seen within interval x fall + timeout. Every probe is bounded by its timeout.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from virtserve.checks import agent, connect, external, http, smtp, tcp
from virtserve.checks.base import (
    EXT_TOUT, FORCED_DOWN, FORCED_UP, L4_TOUT, L7_TOUT, AGENT_MAINT, HealthMachine, Result,
)
from virtserve.engine.config.model import CheckSpec

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.state import EngineState

log = logging.getLogger("virtserve.checks")

Probe = Callable[[str, int, CheckSpec], Awaitable[Result]]

PROBES: dict[str, Probe] = {
    "connect": connect.probe, "http": http.probe, "https": http.probe, "smtp": smtp.probe,
    "tcp": tcp.probe, "external": external.probe, "agent": agent.probe,
}
_TIMEOUT_REASON = {"connect": L4_TOUT, "external": EXT_TOUT}


class ServerCheck:
    """The check loop of one server: probe, feed the Health machine, apply its verdict."""

    def __init__(self, state: EngineState, backend: Backend, server: Server, spec: CheckSpec) -> None:
        self.state = state
        self.backend = backend
        self.server = server
        self.spec = spec
        self.probe = PROBES[spec.type]
        # A server that stays across a reload keeps its verdict: the machine starts from it.
        self.health = HealthMachine(spec.rise, spec.fall, state.loop.time, up=server.healthy)
        self.on_result: Callable[[Backend, Server], None] | None = None  # told after each verdict

    async def run(self, delay: float) -> None:
        loop = self.state.loop
        await asyncio.sleep(delay)
        next_at = loop.time()
        while True:
            self.apply(await self.check_once())
            next_at += self.spec.interval
            now = loop.time()
            if next_at < now:  # the probe took longer than the interval: no catching up
                next_at = now
            await asyncio.sleep(next_at - now)

    async def check_once(self) -> Result:
        spec, server, loop = self.spec, self.server, self.state.loop
        started = loop.time()
        try:
            async with asyncio.timeout(spec.probe_timeout):
                result = await self.probe(server.address, server.port, spec)
        except TimeoutError:
            result = Result(False, _TIMEOUT_REASON.get(spec.type, L7_TOUT))
        return dataclasses.replace(result, duration=loop.time() - started)

    def apply(self, result: Result) -> None:
        server, backend = self.server, self.backend
        drained, agent_pct = server.drained, server.agent_pct
        if self.spec.type == "agent":
            drained = result.drain
            if result.weight_pct is not None:
                agent_pct = result.weight_pct
        if result.reason == AGENT_MAINT:
            transition = self.health.force(False, result)
        else:
            transition = self.health.record(result)
        healthy = transition.up if transition is not None else server.healthy
        apply_verdict(backend, server, healthy, result, drained, agent_pct, self.state.loop.time())
        if self.on_result is not None:
            self.on_result(backend, server)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("check %s/%s: %s", backend.name, server.name, result.describe())


def apply_verdict(backend: Backend, server: Server, healthy: bool, result: Result | None,
                  drained: bool, agent_pct: int | None, now: float) -> None:
    """Put a check's verdict in force: the one path for local checks and for verdicts a worker
    receives from the group's checker (virtserve/groupcontrol.py), so both have the same effects."""
    server.drained, server.agent_pct = drained, agent_pct
    if healthy != server.healthy:
        backend.set_status(server, healthy, result, now)
    else:
        if result is not None:
            server.last_check = result
        if server.healthy:  # an agent's drain or weight takes effect at once
            backend.set_weight(server, server.target_weight)


class CheckRunner:
    """All the checks of one engine."""

    def __init__(self, state: EngineState, backends: dict[str, Backend]) -> None:
        self.state = state
        self.backends = backends
        self.checks: list[ServerCheck] = []
        self.tasks: list = []
        # Told of every verdict applied (backend, server): a worker group's checker shares them.
        self.on_result: Callable[[Backend, Server], None] | None = None

    def start(self) -> None:
        now = self.state.loop.time()
        for backend in self.backends.values():
            planned = [(s, backend.spec.check_of(s.spec)) for s in backend.servers]
            probed = [(s, spec) for s, spec in planned if spec is not None and spec.type in PROBES]
            for s, spec in planned:
                if spec is not None and spec.type == "off":
                    backend.set_status(s, False, Result(False, FORCED_DOWN), now)
                elif spec is not None and spec.type == "on":
                    s.last_check = Result(True, FORCED_UP)
                if spec is not None and spec.type in ("off", "on") and self.on_result is not None:
                    self.on_result(backend, s)
            for i, (s, spec) in enumerate(probed):
                check = ServerCheck(self.state, backend, s, spec)
                check.on_result = self.on_result
                self.checks.append(check)
                self.tasks.append(self.state.spawn(check.run(spec.interval * i / len(probed))))

    def watch(self, backend: Backend, server: Server) -> bool:
        """Start checking a server added at run time (`add server ... check`); False when its
        check is not a probe (none, on, off)."""
        spec = backend.spec.check_of(server.spec)
        if spec is None or spec.type not in PROBES:
            return False
        check = ServerCheck(self.state, backend, server, spec)
        self.checks.append(check)
        self.tasks.append(self.state.spawn(check.run(0.0)))
        return True

    def unwatch(self, server: Server) -> None:
        """Stop checking a server that goes away (`del server`)."""
        for i, check in enumerate(self.checks):
            if check.server is server:
                self.tasks.pop(i).cancel()
                del self.checks[i]
                return

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
