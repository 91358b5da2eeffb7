"""Runtime backend state: the one place a server's status, weight and load change.

Each change updates the Server, then tells the scheduler (and later the checks, stats and the
IPVS table) through its hook, so no one recomputes anything per pick.
"""
from __future__ import annotations

import logging
from typing import Any

from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers.base import PickContext, Scheduler, create

log = logging.getLogger("virtserve.engine")


class Server:
    """A real server as the schedulers and the data path see it."""

    __slots__ = (
        "spec", "name", "address", "port", "backup", "maxconn", "index",
        "up", "weight", "active", "inactive", "total", "failures",
        "sched",  # a slot any scheduler may use for its own per-server data
    )

    def __init__(self, spec: ServerSpec, index: int = 0) -> None:
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.port = spec.port
        self.backup = spec.backup
        self.maxconn = spec.maxconn
        self.index = index  # position in config order
        self.up = True
        self.weight = spec.weight  # effective weight: 0 means no new work
        self.active = 0  # connections (L4) or requests (L7) in flight
        self.inactive = 0  # IPVS's inactive connections; the userspace proxy has none
        self.total = 0  # connections or requests ever assigned
        self.failures = 0  # connect failures
        self.sched: Any = None

    @property
    def available(self) -> bool:
        """May take new work: up, weight > 0 and below maxconn (IPVS: not overloaded)."""
        return self.up and self.weight > 0 and (not self.maxconn or self.active < self.maxconn)

    def __repr__(self) -> str:
        state = "UP" if self.up else "DOWN"
        return f"<Server {self.name} {self.address}:{self.port} {state} w={self.weight} act={self.active}>"


class Backend:
    """A pool of real servers and the scheduler that spreads work over them.

    Backup servers get a scheduler of their own that is asked only when no active server is
    available (HAProxy `backup`)."""

    def __init__(self, spec: BackendSpec, carry_over: Backend | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.servers = [Server(s, i) for i, s in enumerate(spec.servers)]
        self.by_name = {s.name: s for s in self.servers}
        if carry_over is not None:  # before the schedulers are built: they read `up`
            self._carry_over(carry_over)
        options = spec.options
        self.scheduler: Scheduler = create(spec.scheduler, [s for s in self.servers if not s.backup], options)
        backups = [s for s in self.servers if s.backup]
        self.backup_scheduler: Scheduler | None = create(spec.scheduler, backups, options) if backups else None
        self.total = carry_over.total if carry_over else 0  # work ever assigned
        self.no_server = carry_over.no_server if carry_over else 0  # picks that found no server

    def _carry_over(self, old: Backend) -> None:
        """On reload: a server that stays (same name, address and port) keeps its state and
        counters; its in-flight work is still counted on the old object until it ends."""
        for s in self.servers:
            before = old.by_name.get(s.name)
            if before is not None and (before.address, before.port) == (s.address, s.port):
                s.up, s.total, s.failures = before.up, before.total, before.failures

    def _scheduler_of(self, s: Server) -> Scheduler:
        return self.backup_scheduler if s.backup else self.scheduler  # type: ignore[return-value]

    def pick(self, ctx: PickContext, avoid: Server | None = None) -> Server | None:
        s = self.scheduler.pick(ctx, avoid)
        if s is None and self.backup_scheduler is not None:
            s = self.backup_scheduler.pick(ctx, avoid)
        if s is None:
            self.no_server += 1
        return s

    def take(self, s: Server) -> None:
        s.active += 1
        s.total += 1
        self.total += 1
        self._scheduler_of(s).take(s)

    def drop(self, s: Server) -> None:
        s.active -= 1
        self._scheduler_of(s).drop(s)

    def set_up(self, s: Server, up: bool, reason: str = "") -> None:
        if s.up == up:
            return
        s.up = up
        log.warning("Server %s/%s is %s%s", self.name, s.name, "UP" if up else "DOWN",
                    f", reason: {reason}" if reason else "")
        sched = self._scheduler_of(s)
        sched.up(s) if up else sched.down(s)

    def set_weight(self, s: Server, weight: int) -> None:
        if s.weight == weight:
            return
        s.weight = weight
        self._scheduler_of(s).weight(s)

    def state(self) -> list[dict[str, Any]]:
        """Live server state for the embedding API."""
        return [
            {"name": s.name, "address": s.address, "port": s.port, "up": s.up, "weight": s.weight,
             "backup": s.backup, "active": s.active, "total": s.total, "failures": s.failures}
            for s in self.servers
        ]
