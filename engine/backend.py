"""Runtime backend state: the one place a server's status, weight and load change.

Each change updates the Server, then tells the scheduler (and later the checks, stats and the
IPVS table) through its hook, so no one recomputes anything per pick.
"""
from __future__ import annotations

import logging
from typing import Any

from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers.base import Needs, PickContext, Scheduler, create

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

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.servers = [Server(s, i) for i, s in enumerate(spec.servers)]
        self.by_name = {s.name: s for s in self.servers}
        options = spec.options
        self.scheduler: Scheduler = create(spec.scheduler, [s for s in self.servers if not s.backup], options)
        backups = [s for s in self.servers if s.backup]
        self.backup_scheduler: Scheduler | None = create(spec.scheduler, backups, options) if backups else None
        self.total = 0  # work ever assigned
        self.no_server = 0  # picks that found no server
        # What the data path must put in the PickContext (e.g. the local address, first bytes).
        self.needs: Needs = self.scheduler.needs | (self.backup_scheduler.needs if self.backup_scheduler else Needs.NOTHING)
        self.persistence = make_persistence(spec, self.servers)
        if self.persistence is not None:
            self.needs |= Needs.ADDRESS

    def _scheduler_of(self, s: Server) -> Scheduler:
        return self.backup_scheduler if s.backup else self.scheduler  # type: ignore[return-value]

    def pick(self, ctx: PickContext, avoid: Server | None = None) -> Server | None:
        persistence = self.persistence
        if persistence is not None:
            s = persistence.pick(ctx, avoid)
            if s is not None:
                return s
        s = self.scheduler.pick(ctx, avoid)
        if s is None and self.backup_scheduler is not None:
            s = self.backup_scheduler.pick(ctx, avoid)
        if s is None:
            self.no_server += 1
        elif persistence is not None:
            persistence.picked(ctx, s)
        return s

    def take(self, s: Server) -> None:
        s.active += 1
        s.total += 1
        self.total += 1
        self._scheduler_of(s).take(s)

    def drop(self, s: Server, ctx: PickContext | None = None) -> None:
        s.active -= 1
        self._scheduler_of(s).drop(s)
        if self.persistence is not None and ctx is not None:
            self.persistence.dropped(ctx, s)

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


def make_persistence(spec: BackendSpec, servers: list[Server]) -> Any:
    """The persistence layer the backend's config asks for, or None (then picks cost nothing more)."""
    from virtserve.engine.persist import CookiePersistence, SourcePersistence

    if spec.cookie is not None:
        return CookiePersistence(spec.cookie, servers, spec.redispatch)
    if spec.persistent is not None:
        p = spec.persistent
        return SourcePersistence(p.timeout, bits4=p.netmask, bits6=p.netmask6, redispatch=spec.redispatch)
    if spec.stick is not None:
        return SourcePersistence(spec.stick.expire, size=spec.stick.size, redispatch=spec.redispatch)
    return None
