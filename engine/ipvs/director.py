"""The engine's side of IPVS: decides which frontends the kernel serves, programs their services,
keeps the destinations in step with the checks and the runtime API, and reads the kernel's
counters back into the servers' stats (what the stats page and the metrics show).

Ownership: the services of the config are ours. At start they are reconciled with whatever the
table already holds (so a restart is idempotent); other services are never touched. At stop the
services we created are deleted, and in services that were already there only the destinations
we added are removed.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import Config, ConfigError
from virtserve.engine.ipvs import plan, reconcile
from virtserve.engine.ipvs.table import Destination, KernelTimeouts, SyncDaemon, VirtualService

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.ipvs.client import IpvsClient

log = logging.getLogger("virtserve.ipvs")

STATS_INTERVAL = 2.0  # the kernel's estimator updates every 2 s


class Director:
    def __init__(self, config: Config, backends: dict[str, Backend], loop: Any = None) -> None:
        self.config = config
        self.backends = backends
        self.loop = loop
        self.client: IpvsClient | None = None
        self.decisions: dict[str, plan.Decision] = {}
        # backend name -> its services (key -> service) served by the kernel
        self.services: dict[str, dict[tuple, VirtualService]] = {}
        self.applied: dict[tuple, list[Destination]] = {}  # what the table holds for our services
        self.created: set[tuple] = set()  # services we added
        self.added_dests: dict[tuple, set[tuple[str, int]]] = {}  # in services that were there
        self.daemons: list[SyncDaemon] = []
        self.timeouts_before: KernelTimeouts | None = None
        self._timer: Any = None

    # --- start / stop ------------------------------------------------------------------------

    def start(self) -> set[str]:
        """Decide and program; the names of the frontends the kernel serves."""
        wants_kernel = [f for f in self.config.frontends if f.forward != "userspace"]
        kernel_error = None
        if wants_kernel:
            kernel_error = self._open()
        for frontend in self.config.frontends:
            backend = self.config.backend(frontend.default_backend)
            decision = plan.decide(frontend, backend, kernel_error)
            self.decisions[frontend.name] = decision
            if decision.engine == "ipvs":
                for svc in plan.services_of(frontend, backend):
                    self.services.setdefault(backend.name, {})[svc.key] = svc
            if frontend.forward != "userspace":
                log.info("frontend %s: served by %s (%s)", frontend.name,
                         "the kernel (IPVS)" if decision.engine == "ipvs" else "the userspace relay", decision.reason)
        if not self.services:
            self.close()
            return set()
        try:
            self._program()
        except Exception:
            self.close()
            raise
        for name in self.services:
            backend = self.backends[name]
            backend.listeners.append(self._on_status)
            backend.weight_listeners.append(self._on_weight)
        if self.loop is not None:
            self._timer = self.loop.call_later(STATS_INTERVAL, self._poll)
        return {name for name, d in self.decisions.items() if d.engine == "ipvs"}

    def _open(self) -> str | None:
        from virtserve.engine.ipvs.client import IpvsClient, IpvsUnavailable

        try:
            self.client = IpvsClient().open()
        except IpvsUnavailable as exc:
            return f"the kernel's IPVS is not usable here: {exc.strerror or exc}"
        except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
            return f"pyroute2 is missing ({exc})"
        return None

    def _program(self) -> None:
        client = self.client
        assert client is not None
        current = reconcile.index(client.table())
        wanted = []
        for name, services in self.services.items():
            for key, svc in services.items():
                wanted.append((svc, plan.wanted_destinations(svc, self.backends[name])))
                if key not in current:
                    self.created.add(key)
                else:
                    self.added_dests[key] = set()
                    log.info("IPVS service %s is already in the table: taking it over", svc.describe())
        for op in reconcile.diff(current, wanted):
            self._apply(op)
        for svc, dests in wanted:
            self.applied[svc.key] = dests
        ipvs = self.config.ipvs
        if ipvs is not None:
            if ipvs.tcp or ipvs.tcpfin or ipvs.udp:
                self.timeouts_before = client.timeouts()
                client.set_timeouts(KernelTimeouts(int(ipvs.tcp), int(ipvs.tcpfin), int(ipvs.udp)))
            running = {d.state for d in client.daemons()}
            for spec in ipvs.sync:
                daemon = SyncDaemon(spec.state, spec.interface, spec.syncid)
                if spec.state in running:
                    log.warning("IPVS %s sync daemon already runs: left as it is", spec.state)
                    continue
                try:
                    client.start_daemon(daemon)
                except OSError as exc:
                    raise ConfigError(spec.where, f"cannot start the IPVS {spec.state} sync daemon on "
                                                  f"{spec.interface}: {exc}") from None
                self.daemons.append(daemon)

    def _apply(self, op: reconcile.Op) -> None:
        assert self.client is not None
        log.debug("IPVS %s", op)
        getattr(self.client, op.verb)(op.service, *([op.dest] if op.dest is not None else []))
        if op.verb == "add_dest" and op.service.key in self.added_dests:
            self.added_dests[op.service.key].add(op.dest.key)  # type: ignore[union-attr]

    def close(self) -> None:
        """Remove what we added, and nothing else."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for name in self.services:
            backend = self.backends.get(name)
            if backend is not None:
                _discard(backend.listeners, self._on_status)
                _discard(backend.weight_listeners, self._on_weight)
        client = self.client
        if client is None:
            return
        try:
            for services in self.services.values():
                for key, svc in services.items():
                    if key in self.created:
                        _quietly(client.del_service, svc)
                    else:
                        for dest in self.applied.get(key, []):
                            if dest.key in self.added_dests.get(key, ()):
                                _quietly(client.del_dest, svc, dest)
            for daemon in self.daemons:
                _quietly(client.stop_daemon, daemon)
            if self.timeouts_before is not None:
                _quietly(client.set_timeouts, self.timeouts_before)
        finally:
            client.close()
            self.client = None
            self.services.clear()
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


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError as exc:
        log.warning("IPVS cleanup: %s%s: %s", fn.__name__, args, exc)
