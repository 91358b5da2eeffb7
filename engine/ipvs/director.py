"""The engine's side of IPVS: decides which frontends the kernel serves, programs their services,
keeps the destinations in step with the checks and the runtime API, and reads the kernel's
counters back into the servers' stats (what the stats page and the metrics show).

Ownership: the services of the config are ours. At start they are reconciled with whatever the
table already holds (so a restart is idempotent); other services are never touched. At stop the
services we created are deleted, and in services that were already there only the destinations
we added are removed. A reload moves the table from the old config to the new one by difference
(a changed scheduler or persistence is an edit in place), all or nothing.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import Config, ConfigError, IpvsGlobalSpec
from virtserve.engine.ipvs import plan, reconcile
from virtserve.engine.ipvs.table import Destination, KernelTimeouts, SyncDaemon, VirtualService

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.ipvs.client import IpvsClient

log = logging.getLogger("virtserve.ipvs")

STATS_INTERVAL = 2.0  # the kernel's estimator updates every 2 s


class Director:
    """`decide(config)` says which frontends the kernel serves (no change to the table), then
    `apply(config, backends)` makes the table serve them: at start, and on each reload, where it
    changes only what differs (a service's scheduler or persistence by editing it in place, so
    the kernel's connections survive). If the kernel refuses a step, the table is put back as
    it was and the error raised. `close()` removes what we added. The Director needs nothing of
    the engine but the config and the live Backend objects: a process that serves no traffic can
    drive it alone."""

    def __init__(self, config: Config, backends: dict[str, Backend], loop: Any = None) -> None:
        self.config = config
        self.backends = backends
        self.loop = loop
        self.client: IpvsClient | None = None
        self.kernel_error: str | None = None  # why the kernel's IPVS cannot be used, once asked
        self.decisions: dict[str, plan.Decision] = {}
        # backend name -> its services (key -> service) served by the kernel
        self.services: dict[str, dict[tuple, VirtualService]] = {}
        self.applied: dict[tuple, list[Destination]] = {}  # what the table holds for our services
        self.created: set[tuple] = set()  # services we added
        self.added_dests: dict[tuple, set[tuple[str, int]]] = {}  # in services that were there
        self.daemons: list[SyncDaemon] = []  # the sync daemons we started
        self.timeouts_before: KernelTimeouts | None = None  # the kernel's, before we changed them
        self._attached: list[Backend] = []
        self._timer: Any = None

    # --- start / reload / stop ---------------------------------------------------------------

    def decide(self, config: Config) -> set[str]:
        """Which frontends of `config` the kernel would serve; the table is not touched. Raises
        OSError for forward = 'ipvs' where the kernel has no usable IPVS."""
        return {name for name, d in self._decisions(config, retry=True).items() if d.engine == "ipvs"}

    def _decisions(self, config: Config, retry: bool = False) -> dict[str, plan.Decision]:
        if self.client is None and any(f.forward != "userspace" for f in config.frontends) \
                and (retry or self.kernel_error is None):
            self.kernel_error = self._open()
        return {f.name: plan.decide(f, config.backend(f.default_backend), self.kernel_error)
                for f in config.frontends}

    def apply(self, config: Config, backends: dict[str, Backend]) -> None:
        """Make the kernel serve `config` with the state of `backends` (servers that stay keep
        their health: the engine carries it over). All or nothing."""
        decisions = self._decisions(config)
        services: dict[str, dict[tuple, VirtualService]] = {}
        for frontend in config.frontends:
            if decisions[frontend.name].engine == "ipvs":
                backend = config.backend(frontend.default_backend)
                for svc in plan.services_of(frontend, backend):
                    services.setdefault(backend.name, {})[svc.key] = svc
        before = (self.config, self.backends, self.services)
        if self.client is not None:
            try:
                self._transition(services, backends, config)
            except Exception:
                self._roll_back(*before, attempted=services)
                raise
        for frontend in config.frontends:
            d = decisions[frontend.name]
            if frontend.forward != "userspace" and self.decisions.get(frontend.name) != d:
                log.info("frontend %s: served by %s (%s)", frontend.name,
                         "the kernel (IPVS)" if d.engine == "ipvs" else "the userspace relay", d.reason)
        self.config, self.backends, self.services, self.decisions = config, backends, services, decisions
        self._attach()
        if self._timer is None and self.loop is not None and services:
            self._timer = self.loop.call_later(STATS_INTERVAL, self._poll)

    def _roll_back(self, config: Config, backends: dict[str, Backend],
                   services: dict[str, dict[tuple, VirtualService]],
                   attempted: dict[str, dict[tuple, VirtualService]]) -> None:
        try:
            self._transition(services, backends, config, attempted)
        except Exception as exc:  # the first error is the one to report
            log.error("IPVS: could not put the table back as it was: %s", exc)

    def _open(self) -> str | None:
        from virtserve.engine.ipvs.client import IpvsClient, IpvsUnavailable

        try:
            self.client = IpvsClient().open()
        except IpvsUnavailable as exc:
            return f"the kernel's IPVS is not usable here: {exc.strerror or exc}"
        except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
            return f"pyroute2 is missing ({exc})"
        return None

    def _transition(self, services: dict[str, dict[tuple, VirtualService]], backends: dict[str, Backend],
                    config: Config | None, attempted: dict[str, dict[tuple, VirtualService]] | None = None) -> None:
        """From what we hold now (and what a failed attempt may have added) to `services` (with
        the destinations `backends` call for) and the [ipvs] settings of `config` (None: none)."""
        client = self.client
        assert client is not None
        current = reconcile.index(client.table())
        held = {key: svc for group in (self.services, attempted or {}) for by_key in group.values()
                for key, svc in by_key.items()}
        wanted_keys = {key for by_key in services.values() for key in by_key}
        for key, svc in held.items():
            if key not in wanted_keys:
                self._release(svc, current)
        wanted = []
        for name, by_key in services.items():
            for key, svc in by_key.items():
                wanted.append((svc, plan.wanted_destinations(svc, backends[name])))
                if key not in current:
                    self.created.add(key)
                elif key not in self.created and key not in self.added_dests:
                    self.added_dests[key] = set()
                    log.info("IPVS service %s is already in the table: taking it over", svc.describe())
        for op in reconcile.diff(current, wanted):
            self._apply(op)
        for svc, dests in wanted:
            self.applied[svc.key] = dests
        ipvs = config.ipvs if config is not None and services else None
        self._set_timeouts(client, ipvs)
        self._set_daemons(client, ipvs)

    def _release(self, svc: VirtualService, current: reconcile.Table) -> None:
        """A service of ours the config no longer has: delete it if we made it, else take out
        only the destinations we added."""
        assert self.client is not None
        key = svc.key
        if key in self.created:
            if key in current:
                self._apply(reconcile.Op("del_service", svc))
            self.created.discard(key)
        else:
            added = self.added_dests.pop(key, set())
            for dest in current.get(key, (svc, []))[1]:
                if dest.key in added:
                    self._apply(reconcile.Op("del_dest", svc, dest))
        self.applied.pop(key, None)

    def _set_timeouts(self, client: IpvsClient, ipvs: IpvsGlobalSpec | None) -> None:
        want = (int(ipvs.tcp), int(ipvs.tcpfin), int(ipvs.udp)) if ipvs is not None else (0, 0, 0)
        if not any(want) and self.timeouts_before is None:
            return
        if self.timeouts_before is None:
            self.timeouts_before = client.timeouts()
        before = self.timeouts_before
        target = KernelTimeouts(*(w or b for w, b in zip(want, (before.tcp, before.tcpfin, before.udp))))
        if client.timeouts() != target:
            client.set_timeouts(target)
        if not any(want):
            self.timeouts_before = None  # the kernel's own values are back

    def _set_daemons(self, client: IpvsClient, ipvs: IpvsGlobalSpec | None) -> None:
        want = {s.state: (SyncDaemon(s.state, s.interface, s.syncid), s.where) for s in (ipvs.sync if ipvs else ())}
        for daemon in list(self.daemons):
            if want.get(daemon.state, (None,))[0] != daemon:
                client.stop_daemon(daemon)
                self.daemons.remove(daemon)
        ours = {d.state for d in self.daemons}
        running = None
        for state, (daemon, where) in want.items():
            if state in ours:
                continue
            if running is None:
                running = {d.state for d in client.daemons()}
            if state in running:
                log.warning("IPVS %s sync daemon already runs: left as it is", state)
                continue
            try:
                client.start_daemon(daemon)
            except OSError as exc:
                raise ConfigError(where, f"cannot start the IPVS {state} sync daemon on "
                                         f"{daemon.interface}: {exc}") from None
            self.daemons.append(daemon)

    def _apply(self, op: reconcile.Op) -> None:
        assert self.client is not None
        log.debug("IPVS %s", op)
        try:
            getattr(self.client, op.verb)(op.service, *([op.dest] if op.dest is not None else []))
        except OSError as exc:  # name the step the kernel refused
            raise OSError(exc.errno, f"IPVS {op}: {exc.strerror}") from None
        if op.verb == "add_dest" and op.service.key in self.added_dests:
            self.added_dests[op.service.key].add(op.dest.key)  # type: ignore[union-attr]

    def _attach(self) -> None:
        """Follow the checks and weights of the backends our services use (and no others)."""
        for backend in self._attached:
            _discard(backend.listeners, self._on_status)
            _discard(backend.weight_listeners, self._on_weight)
        self._attached = [self.backends[name] for name in self.services]
        for backend in self._attached:
            backend.listeners.append(self._on_status)
            backend.weight_listeners.append(self._on_weight)

    def close(self) -> None:
        """Remove what we added, and nothing else; a step the kernel refuses does not stop the rest."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        services, self.services = self.services, {}
        self._attach()
        client = self.client
        if client is None:
            return
        try:
            current = reconcile.index(client.table())
            steps = [(self._release, svc, current) for by_key in services.values() for svc in by_key.values()]
            for step in steps + [(self._set_timeouts, client, None), (self._set_daemons, client, None)]:
                try:
                    step[0](*step[1:])
                except OSError as exc:
                    log.warning("IPVS cleanup: %s", exc)
        finally:
            client.close()
            self.client = None
            self.created.clear()

    # --- following the backend ---------------------------------------------------------------

    def _on_status(self, backend: Backend, server: Server, healthy: bool, result: Any) -> None:
        self.sync(backend)

    def _on_weight(self, backend: Backend, server: Server) -> None:
        self.sync(backend)

    def sync(self, backend: Backend) -> None:
        """Bring the kernel's destinations of backend's services to what its state says."""
        services = self.services.get(backend.name)
        if not services or self.client is None:
            return
        for key, svc in services.items():
            want = plan.wanted_destinations(svc, backend)
            for op in reconcile.diff_dests(svc, self.applied.get(key, []), want):
                try:
                    self._apply(op)
                except OSError as exc:
                    log.error("IPVS %s failed: %s", op, exc)
            self.applied[key] = want

    # --- counters ----------------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            self.read_counters()
        except OSError as exc:
            log.warning("IPVS counters: %s", exc)
        if self.loop is not None and self.client is not None:
            self._timer = self.loop.call_later(STATS_INTERVAL, self._poll)

    def read_counters(self) -> None:
        """Kernel counters into the servers (active/inactive/total, bytes) and backends."""
        if self.client is None:
            return
        current = reconcile.index(self.client.table())
        for name, services in self.services.items():
            backend = self.backends[name]
            servers = backend.servers + ([backend.fallback] if backend.fallback is not None else [])
            sums: dict[int, list[int]] = {}
            total = 0
            for key in services:
                svc, dests = current.get(key, (None, []))
                total += svc.stats.conns if svc is not None else 0
                for dest in dests:
                    server = _server_of(servers, dest)
                    if server is not None:
                        row = sums.setdefault(id(server), [0, 0, 0, 0, 0])
                        for i, value in enumerate((dest.active, dest.inactive, dest.stats.conns,
                                                   dest.stats.inbytes, dest.stats.outbytes)):
                            row[i] += value
            for s in servers:
                active, inactive, conns, inbytes, outbytes = sums.get(id(s), [0, 0, 0, 0, 0])
                s.active, s.inactive, s.total = active, inactive, conns
                s.counters.bytes_in, s.counters.bytes_out = inbytes, outbytes
                s.counters.max_cur = max(s.counters.max_cur, active)
            backend.total = total

    def describe(self) -> list[str]:
        return [f"frontend {d.frontend}: {d.engine} ({d.reason})" for d in self.decisions.values()]


def _server_of(servers: list[Server], dest: Destination) -> Server | None:
    # Direct routing and tunnels put the service's port on the destination: then match by address.
    exact = next((s for s in servers if (s.address, s.port) == dest.key), None)
    return exact or next((s for s in servers if s.address == dest.address), None)


def _discard(items: list, item: Any) -> None:
    if item in items:
        items.remove(item)
