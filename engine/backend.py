"""Runtime backend state: the one place a server's status, weight and load change.

Each change updates the Server, then tells the scheduler (and later the checks, stats and the
IPVS table) through its hook, so no one recomputes anything per pick.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from virtserve.engine.admin.counters import Counters
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers.base import Needs, PickContext, Scheduler, create

if TYPE_CHECKING:
    from virtserve.checks.base import Result

# Told of every health verdict change: (backend, server, up, result). Slow start, session
# shutdown, alerts (and the IPVS table) subscribe here.
Listener = Callable[["Backend", "Server", bool, "Result | None"], None]

log = logging.getLogger("virtserve.engine")


class Server:
    """A real server as the schedulers and the data path see it."""

    __slots__ = (
        "spec", "name", "address", "port", "backup", "maxconn", "index",
        "up", "weight", "active", "inactive", "total", "failures",
        "sched",  # a slot any scheduler may use for its own per-server data
        "admin", "uweight", "last_change", "counters",
        "ssl", "sni", "send_proxy",
        "healthy", "last_check", "drained", "agent_pct", "ramp",
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
        self.admin = ""  # "", "drain" or "maint": set by the operator (stats page, runtime API)
        self.uweight = spec.weight  # the weight the operator gave; `weight` is what is in force
        self.last_change = time.monotonic()  # of the status, for "time since last change"
        self.counters = Counters()
        self.ssl: Any = None  # an SSLContext when the server speaks TLS (set by the engine)
        self.sni = spec.ssl.sni if spec.ssl is not None else ""
        self.send_proxy = spec.send_proxy  # "", "v1" or "v2"
        self.healthy = True  # the checks' verdict (quiescent keeps `up` and sets weight 0)
        self.last_check: Result | None = None
        self.drained = False  # an agent said drain
        self.agent_pct: int | None = None  # an agent's weight percent
        self.ramp = 1.0  # slow start: the share of the weight given back so far

    @property
    def target_weight(self) -> int:
        """The weight this server should have now, from its config and what its agent said."""
        if not self.healthy or self.drained or self.admin:
            return 0
        weight = self.uweight
        if self.agent_pct is not None:
            weight = (weight * self.agent_pct + 99) // 100
        if self.ramp < 1.0 and weight:
            weight = max(1, int(weight * self.ramp + 0.999))
        return weight

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
        self.counters = carry_over.counters if carry_over else Counters()
        # ldirectord's fallback: serves only while every real server is down.
        self.fallback = Server(spec.fallback, len(self.servers)) if spec.fallback is not None else None
        self.fallback_scheduler = create("rr", [self.fallback], {}) if self.fallback is not None else None
        self.counting = _counting(self.scheduler, self.backup_scheduler)
        self.healthy = sum(1 for s in self.servers if s.healthy)  # servers the checks call up
        self.listeners: list[Listener] = []
        # What the data path must put in the PickContext (e.g. the local address, first bytes).
        self.needs: Needs = self.scheduler.needs | (self.backup_scheduler.needs if self.backup_scheduler else Needs.NOTHING)
        # Body bytes the L7 path lets in before a pick (url_param check_post), 0 for none.
        self.body_lookahead: int = getattr(self.scheduler, "post_lookahead", 0)
        self.persistence = make_persistence(spec, self.servers)
        if self.persistence is not None:
            self.needs |= Needs.ADDRESS
        # Told of every change of a server's weight in force, (backend, server): the IPVS table.
        self.weight_listeners: list[Callable[[Backend, Server], None]] = []
        # Counting (admin/accounting.py): removed servers' counters stay in the backend's
        # totals; the frontends that send here (more than one: each keeps its own totals).
        self.removed_counters: list[Counters] = []
        self.frontends: weakref.WeakSet[Any] = weakref.WeakSet()

    def _carry_over(self, old: Backend) -> None:
        """On reload: a server that stays (same name, address and port) keeps its state and
        counters; its in-flight work is still counted on the old object until it ends."""
        for s in self.servers:
            before = old.by_name.get(s.name)
            if before is not None and (before.address, before.port) == (s.address, s.port):
                s.up, s.total, s.failures = before.up, before.total, before.failures
                s.healthy, s.last_check, s.last_change = before.healthy, before.last_check, before.last_change
                s.admin, s.counters, s.drained, s.agent_pct = before.admin, before.counters, before.drained, before.agent_pct
                s.weight = s.target_weight

    def _scheduler_of(self, s: Server) -> Scheduler:
        if s.backup:
            return self.backup_scheduler  # type: ignore[return-value]
        return self.fallback_scheduler if s is self.fallback else self.scheduler  # type: ignore[return-value]

    def pick(self, ctx: PickContext, avoid: Server | None = None) -> Server | None:
        persistence = self.persistence
        if persistence is not None:
            s = persistence.pick(ctx, avoid)
            if s is not None:
                return s
        s = self.scheduler.pick(ctx, avoid) or self.pick_spare(ctx, avoid)
        if s is not None and persistence is not None:
            persistence.picked(ctx, s)
        return s

    def pick_spare(self, ctx: PickContext, avoid: Server | None) -> Server | None:
        """No active server: the backups (all with `allbackups`, else the first available, as
        HAProxy), then the fallback if every real server is down; None counted as no_server."""
        s = None
        if self.backup_scheduler is not None:
            if self.spec.allbackups:
                s = self.backup_scheduler.pick(ctx, avoid)
            else:
                # The first available backup in config order; `avoid` only if it is the last.
                spare = [b for b in self.backup_scheduler.servers if b.available]
                s = next((b for b in spare if b is not avoid), spare[0] if spare else None)
        if s is None and self.fallback is not None and not self.healthy:
            s = self.fallback
        if s is None:
            self.no_server += 1
        return s

    def take(self, s: Server) -> None:
        s.active += 1
        if s.active > s.counters.max_cur:
            s.counters.max_cur = s.active
        s.total += 1
        self.total += 1
        if self.counting:
            self._scheduler_of(s).take(s)

    def drop(self, s: Server, ctx: PickContext | None = None) -> None:
        s.active -= 1
        if self.counting:
            self._scheduler_of(s).drop(s)
        if self.persistence is not None and ctx is not None:
            self.persistence.dropped(ctx, s)

    def set_up(self, s: Server, up: bool, reason: str = "") -> None:
        if s.up == up:
            return
        s.up = up
        s.last_change = time.monotonic()
        if reason:  # set by hand; the checks log through set_status()
            log.warning("Server %s/%s is %s, reason: %s", self.name, s.name, "UP" if up else "DOWN", reason)
        sched = self._scheduler_of(s)
        sched.up(s) if up else sched.down(s)

    def set_status(self, s: Server, healthy: bool, result: Result | None = None, now: float = 0.0) -> None:
        """The checks' verdict on s changed: take it out (or to weight 0 with `quiescent`), or
        bring it back, log it as HAProxy does and tell the listeners."""
        s.last_check = result if result is not None else s.last_check
        if s.healthy == healthy:
            return
        s.healthy = healthy
        s.last_change = time.monotonic()
        self.healthy += 1 if healthy else -1
        if self.spec.quiescent:
            self.set_up(s, True)
            self.set_weight(s, s.target_weight)
        else:
            if healthy:
                self.set_weight(s, s.target_weight)
            self.set_up(s, healthy)
        log.warning("%s", self.status_line(s, result))
        if not healthy and not any(x.healthy for x in self.servers if x.backup == s.backup):
            log.error("%s %s has no server available!", "backend" if not s.backup else "backup of backend",
                      self.name)
        for listener in self.listeners:
            try:
                listener(self, s, healthy, result)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("state-change listener failed for %s/%s", self.name, s.name)

    def status_line(self, s: Server, result: Result | None) -> str:
        """`Server web/web1 is DOWN, reason: Layer7 wrong status, code: 500, check duration:
        3ms. 2 active and 0 backup servers left. 0 sessions active.`"""
        state = "UP" if s.healthy else "DOWN"
        what = f"Server {self.name}/{s.name}" if not s.backup else f"Backup Server {self.name}/{s.name}"
        reason = f", {result.describe()}" if result is not None else ""
        active = sum(1 for x in self.servers if x.healthy and not x.backup)
        backups = sum(1 for x in self.servers if x.healthy and x.backup)
        tail = "online" if s.healthy else "left"
        return (f"{what} is {state}{reason}. {active} active and {backups} backup servers {tail}."
                f" {s.active} sessions active.")

    def set_weight(self, s: Server, weight: int) -> None:
        if s.weight == weight:
            return
        s.weight = weight
        self._scheduler_of(s).weight(s)
        for listener in self.weight_listeners:
            listener(self, s)

    # --- operator changes (stats page, runtime API): no reload needed ------------------------

    def set_admin(self, s: Server, admin: str) -> None:
        """"" (ready), "drain" (no new work, current work finishes) or "maint" (out of
        service). Both drain and maint take the effective weight to 0 so no scheduler picks s;
        ready gives back the operator's weight."""
        if admin not in ("", "drain", "maint"):
            raise ValueError(f"unknown admin state {admin!r}")
        if s.admin == admin:
            return
        s.admin = admin
        s.last_change = time.monotonic()
        log.warning("Server %s/%s is %s", self.name, s.name, {"": "READY", "drain": "DRAIN", "maint": "MAINT"}[admin])
        self.set_weight(s, s.target_weight)

    def set_user_weight(self, s: Server, weight: int) -> None:
        """The operator's weight: in force at once unless s is drained or in maintenance."""
        s.uweight = weight
        self.set_weight(s, s.target_weight)

    def add_server(self, spec: ServerSpec, admin: str = "maint") -> Server:
        """A new server, told to its scheduler incrementally (no rebuild of the others)."""
        if spec.name in self.by_name:
            raise ValueError(f"server {self.name}/{spec.name} already exists")
        s = Server(spec, max((x.index for x in self.servers), default=-1) + 1)
        s.admin = admin
        if admin:
            s.weight = 0
        self.servers.append(s)
        self.by_name[s.name] = s
        self.healthy += s.healthy  # the count the fallback server follows
        if s.backup:
            if self.backup_scheduler is None:
                self.backup_scheduler = create(self.spec.scheduler, [s], self.spec.options)
                self.counting = _counting(self.scheduler, self.backup_scheduler)
                return s
        self._scheduler_of(s).add(s)
        return s

    def remove_server(self, s: Server) -> None:
        """Forget s; only once nothing is in flight on it (the caller checks `active`)."""
        self._scheduler_of(s).remove(s)
        self.servers.remove(s)
        self.healthy -= s.healthy
        self.removed_counters.append(s.counters)
        del self.by_name[s.name]

    def state(self) -> list[dict[str, Any]]:
        """Live server state for the embedding API."""
        return [
            {"name": s.name, "address": s.address, "port": s.port, "up": s.up, "weight": s.weight,
             "backup": s.backup, "active": s.active, "total": s.total, "failures": s.failures,
             "status": "UP" if s.healthy else "DOWN", "fallback": s is self.fallback,
             "check": s.last_check.as_dict() if s.last_check is not None else None,
             "last_change": s.last_change, "admin": s.admin or "ready"}
            for s in self.servers + ([self.fallback] if self.fallback is not None else [])
        ]


def backends_for(specs: Iterable[BackendSpec], old: dict[str, Backend]) -> dict[str, Backend]:
    """The runtime backends of a (re)loaded config: an unchanged one is kept as it is, a changed
    one is rebuilt carrying over the state of the servers that stay (health, counters)."""
    backends: dict[str, Backend] = {}
    for spec in specs:
        before = old.get(spec.name)
        backends[spec.name] = before if before is not None and before.spec == spec else Backend(spec, carry_over=before)
    return backends


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


def _counting(*schedulers: Scheduler | None) -> bool:
    """Whether a scheduler keeps per-server load (overrides take/drop): when none does (rr,
    wrr, hashes...), take and drop skip two calls each, once per request."""
    return any(type(x).take is not Scheduler.take or type(x).drop is not Scheduler.drop
               for x in schedulers if x is not None)
