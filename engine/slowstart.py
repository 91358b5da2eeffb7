"""HAProxy `slowstart`: a server that comes back UP gets its weight back gradually over the
slowstart time, so a cold cache or JIT is not flooded at once. Not applied at start-up."""
from __future__ import annotations

from typing import TYPE_CHECKING

from virtserve.engine.state import TICK

if TYPE_CHECKING:
    from virtserve.checks.base import Result
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.state import EngineState

STEPS = 16  # weight updates per ramp: each is a scheduler event, so not one per tick


class SlowStart:
    """A state-change listener; ramps with call_later, no task."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    def __call__(self, backend: Backend, server: Server, up: bool, result: Result | None) -> None:
        duration = backend.spec.slowstart
        if not duration:
            return
        if not up:
            server.ramp = 1.0
            return
        started = self.state.loop.time()
        step = max(duration / STEPS, TICK)

        def advance() -> None:
            if not server.healthy:
                return  # down again: the next recovery starts its own ramp
            server.ramp = min(1.0, (self.state.loop.time() - started) / duration)
            backend.set_weight(server, server.target_weight)
            if server.ramp < 1.0:
                self.state.loop.call_later(step, advance)

        server.ramp = 0.0
        backend.set_weight(server, server.target_weight)
        self.state.loop.call_later(step, advance)
