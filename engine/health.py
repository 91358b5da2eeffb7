"""Wires the health checks to their effects for one engine: the check runner feeds
Backend.set_status(); slow start, session shutdown and mail alerts listen to it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from virtserve.checks.alerts import Alerter
from virtserve.checks.runner import CheckRunner
from virtserve.engine.sessions import ShutdownSessions
from virtserve.engine.slowstart import SlowStart

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend
    from virtserve.engine.state import EngineState


class Health:
    def __init__(self, state: EngineState, backends: dict[str, Backend]) -> None:
        self.state = state
        self.runner = CheckRunner(state, backends)
        self.alerters: dict[str, Alerter] = {}
        slowstart, shutdown = SlowStart(state), ShutdownSessions(state)
        self._subscribed: list = [slowstart, shutdown]
        for backend in backends.values():
            backend.listeners += (slowstart, shutdown)
            if backend.spec.alert is not None:
                alerter = self.alerters[backend.name] = Alerter(state, backend, backend.spec.alert)
                backend.listeners.append(alerter)
                self._subscribed.append(alerter)

    def start(self) -> None:
        self.runner.start()
        # ldirectord's "starting" state lasts until every server has had its first check.
        first_round = max((c.spec.interval + c.spec.probe_timeout for c in self.runner.checks), default=0.0)
        self._phase = self.state.loop.call_later(first_round, self._running)

    def stop(self) -> None:
        """Stop every check (a reload starts a new Health for the new backends)."""
        self.runner.stop()
        self._phase.cancel()
        for backend in self.runner.backends.values():
            backend.listeners = [f for f in backend.listeners if f not in self._subscribed]

    def _running(self) -> None:
        for alerter in self.alerters.values():
            alerter.phase = "running"
