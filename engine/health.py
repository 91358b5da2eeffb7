"""Wires the health checks to their effects for one engine: the check runner feeds
Backend.set_status(); slow start, session shutdown and mail alerts listen to it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtserve.engine.sessions import ShutdownSessions
from virtserve.engine.slowstart import SlowStart

if TYPE_CHECKING:
    from virtserve.checks.alerts import Alerter
    from virtserve.engine.backend import Backend
    from virtserve.engine.state import EngineState


class Health:
    """`local_checks=False`: a worker of a group whose checks run once in the parent (see
    virtserve/groupcontrol.py); verdicts arrive from there, and the alerts are mailed there."""

    def __init__(self, state: EngineState, backends: dict[str, Backend], local_checks: bool = True) -> None:
        self.state = state
        self.backends = backends
        self._phase: Any = None
        # The checks and the mail alerts (smtplib, email) are imported only when configured.
        self.runner: Any = None
        if local_checks and any(b.spec.check_of(s.spec) is not None for b in backends.values() for s in b.servers):
            from virtserve.checks.runner import CheckRunner

            self.runner = CheckRunner(state, backends)
        self.alerters: dict[str, Alerter] = {}
        slowstart, shutdown = SlowStart(state), ShutdownSessions(state)
        self._subscribed: list = [slowstart, shutdown]
        for backend in backends.values():
            backend.listeners += (slowstart, shutdown)
            if backend.spec.alert is not None and local_checks:
                from virtserve.checks.alerts import Alerter

                alerter = self.alerters[backend.name] = Alerter(state, backend, backend.spec.alert)
                backend.listeners.append(alerter)
                self._subscribed.append(alerter)

    def start(self) -> None:
        if self.runner is None:
            return
        self.runner.start()
        # ldirectord's "starting" state lasts until every server has had its first check.
        first_round = max((c.spec.interval + c.spec.probe_timeout for c in self.runner.checks), default=0.0)
        self._phase = self.state.loop.call_later(first_round, self._running)

    def stop(self) -> None:
        """Stop every check (a reload starts a new Health for the new backends)."""
        if self.runner is not None:
            self.runner.stop()
        if self._phase is not None:
            self._phase.cancel()
        for backend in self.backends.values():
            backend.listeners = [f for f in backend.listeners if f not in self._subscribed]

    def _running(self) -> None:
        for alerter in self.alerters.values():
            alerter.phase = "running"
