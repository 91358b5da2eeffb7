"""What every health check shares: the Result a probe returns, and the rise/fall Health machine.

A probe is `async def probe(server, spec) -> Result` (one module per check type). The Health
machine is pure: no asyncio, the clock is passed in, so it is tested without waiting.

HAProxy's counter (src/check.c): `health` runs from 0 to rise + fall - 1 and the server is up
when health >= rise. A success counts up, a failure down; crossing rise marks the server up,
reaching 0 from the up side marks it down. A server starts up with health = rise: "up, but will
fall down at the first failure", so a dead server is found by the first check at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Reasons, in HAProxy's words (what its logs and stats page say).
L4_OK = "Layer4 check passed"
L4_CON = "Layer4 connection problem"
L4_TOUT = "Layer4 timeout"
L6_RSP = "Layer6 invalid response"  # TLS handshake failed
L7_OK = "Layer7 check passed"
L7_STS = "Layer7 wrong status"
L7_RSP = "Layer7 invalid response"
L7_TOUT = "Layer7 timeout"
EXT_OK = "External check passed"
EXT_ERR = "External check error"
EXT_TOUT = "External check timeout"
AGENT_UP = "Agent reports UP"
AGENT_DOWN = "Agent reports DOWN"
AGENT_MAINT = "Agent reports MAINT"
AGENT_DRAIN = "Agent reports DRAIN"
AGENT_RSP = "Agent invalid response"
FORCED_UP = "checktype on"
FORCED_DOWN = "checktype off"


@dataclass(frozen=True, slots=True)
class Result:
    """One probe's outcome. `code` is a status or exit code when there is one; `info` says more
    (an errno text, the unmatched pattern); `weight_pct` and `drain` come from an agent."""

    ok: bool
    reason: str
    code: int | None = None
    info: str = ""
    duration: float = 0.0  # seconds, set by the runner
    weight_pct: int | None = None
    drain: bool = False

    def describe(self) -> str:
        """HAProxy's wording: `reason: Layer7 wrong status, code: 500, info: "..."`."""
        text = f"reason: {self.reason}"
        if self.code is not None:
            text += f", code: {self.code}"
        if self.info:
            text += f', info: "{self.info}"'
        return text + f", check duration: {round(self.duration * 1000)}ms"

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "reason": self.reason, "code": self.code, "info": self.info,
                "duration_ms": round(self.duration * 1000, 1)}


@dataclass(frozen=True, slots=True)
class Transition:
    up: bool
    result: Result
    at: float  # clock time of the change
    since: float  # clock time of the previous change (or of the machine's start)


class HealthMachine:
    """Rise/fall for one server. `record(result)` returns a Transition when the verdict flips."""

    __slots__ = ("rise", "fall", "health", "up", "clock", "changed_at", "last", "checks", "failures")

    def __init__(self, rise: int, fall: int, clock: Callable[[], float], up: bool = True) -> None:
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.clock = clock
        self.up = up
        self.health = self.rise if up else 0
        self.changed_at = clock()
        self.last: Result | None = None
        self.checks = 0
        self.failures = 0

    def record(self, result: Result) -> Transition | None:
        self.last = result
        self.checks += 1
        top = self.rise + self.fall - 1
        if result.ok:
            if self.health < top:
                self.health += 1
            if not self.up and self.health >= self.rise:
                self.health = top  # HAProxy: once up, it takes `fall` failures to go down
                return self._flip(True, result)
            return None
        self.failures += 1
        if self.health > self.rise:
            self.health -= 1  # still up
            return None
        self.health = 0
        if self.up:
            return self._flip(False, result)
        return None

    def force(self, up: bool, result: Result) -> Transition | None:
        """Set the verdict at once (an agent's `maint`, checktype on/off)."""
        self.last = result
        self.health = self.rise + self.fall - 1 if up else 0
        if up != self.up:
            return self._flip(up, result)
        return None

    def _flip(self, up: bool, result: Result) -> Transition:
        now = self.clock()
        since, self.changed_at, self.up = self.changed_at, now, up
        return Transition(up, result, now, since)
