"""Which engine serves each L4 service, and what the kernel's table should hold for it (sans-IO).

The wanted destinations follow ldirectord: a server the checks call down leaves the table, or
stays at weight 0 with `quiescent`; the fallback server joins only while no real server is up and
leaves when one recovers; the weight in force (operator weight, drain/maint, agent, slow start)
is the kernel weight.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from virtserve.engine.config.model import BackendSpec, FrontendSpec, IpvsSpec, ServerSpec
from virtserve.engine.ipvs.table import (
    FORWARD_METHODS,
    FWD_MASQ,
    KERNEL_SCHEDULERS,
    PROTOCOLS,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    Destination,
    VirtualService,
    family_of,
    sched_flags,
)

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server

_DEFAULT_IPVS = IpvsSpec()


@dataclass(frozen=True, slots=True)
class Decision:
    frontend: str
    engine: str  # "ipvs" | "userspace"
    reason: str


def kernel_obstacles(frontend: FrontendSpec, backend: BackendSpec) -> list[str]:
    """Why the kernel cannot serve this service as configured (empty: it can)."""
    why = []
    if frontend.mode != "tcp" or backend.mode != "tcp":
        why.append("mode http needs the userspace proxy (IPVS forwards at layer 4)")
    if backend.scheduler not in KERNEL_SCHEDULERS:
        why.append(f"scheduler {backend.scheduler!r} has no kernel module (kernel: {', '.join(KERNEL_SCHEDULERS)})")
    fwm = (backend.ipvs or _DEFAULT_IPVS).protocol == "fwm"
    for bind in frontend.binds:
        if bind.ssl is not None or bind.accept_proxy:
            why.append(f"bind {bind.address}:{bind.port} terminates TLS or PROXY headers")
        if not fwm and (bind.port == 0 or _unspecified(bind.address)):
            why.append(f"bind {bind.address}:{bind.port}: a virtual service needs a concrete address and port")
    if frontend.maxconn:
        why.append("maxconn has no kernel equivalent (give servers u-threshold)")
    if backend.cookie is not None or backend.stick is not None:
        why.append("cookie/stick persistence is userspace-only (use persistent)")
    for server in backend.servers:
        if server.backup:
            why.append(f"server {server.name} is a backup (the kernel has only the fallback)")
        if server.ssl is not None or server.send_proxy:
            why.append(f"server {server.name} speaks TLS or PROXY")
    return why


def decide(frontend: FrontendSpec, backend: BackendSpec, kernel_error: str | None) -> Decision:
    """forward = userspace | ipvs | auto → who serves, and why (said at start)."""
    if frontend.forward == "userspace":
        return Decision(frontend.name, "userspace", "forward = 'userspace'")
    obstacles = kernel_obstacles(frontend, backend)
    if frontend.forward == "ipvs":
        if kernel_error:  # config validation already refused obstacles
            raise OSError(f"frontend {frontend.name}: forward = 'ipvs' but {kernel_error}")
        return Decision(frontend.name, "ipvs", "forward = 'ipvs'")
    if obstacles:
        return Decision(frontend.name, "userspace", "forward = 'auto' but " + "; ".join(obstacles))
    if kernel_error:
        return Decision(frontend.name, "userspace", f"forward = 'auto' but {kernel_error}")
    return Decision(frontend.name, "ipvs", "forward = 'auto' and the kernel has IPVS")


def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return True  # a name: IPVS needs an address


def services_of(frontend: FrontendSpec, backend: BackendSpec) -> list[VirtualService]:
    """One kernel service per bind (or one for a firewall mark)."""
    ipvs = backend.ipvs or _DEFAULT_IPVS
    options = backend.options
    flags = sched_flags(backend.scheduler, options)
    timeout, netmask = 0, None
    if backend.persistent is not None:
        flags |= SVC_F_PERSISTENT
        timeout = max(1, int(backend.persistent.timeout))
    if ipvs.one_packet:
        flags |= SVC_F_ONEPACKET

    def make(af: int, **key) -> VirtualService:
        mask = 128 if af == socket.AF_INET6 else 32
        if backend.persistent is not None:
            mask = backend.persistent.netmask6 if af == socket.AF_INET6 else backend.persistent.netmask
        return VirtualService(af=af, scheduler=backend.scheduler, flags=flags, timeout=timeout, netmask=mask, **key)

    if ipvs.protocol == "fwm":
        af = family_of(frontend.binds[0].address) if frontend.binds else socket.AF_INET
        return [make(af, protocol=0, fwmark=ipvs.fwmark)]
    del netmask
    return [make(family_of(b.address), protocol=PROTOCOLS[ipvs.protocol], address=b.address, port=b.port)
            for b in frontend.binds]


def destination(svc: VirtualService, spec: ServerSpec, weight: int) -> Destination:
    method = FORWARD_METHODS[spec.forward]
    # ipvsadm's rule: direct routing and tunnelling reach the real server on the service's port.
    port = spec.port if method == FWD_MASQ or svc.fwmark else svc.port
    return Destination(spec.address, port, weight=weight, forward=method,
                       u_threshold=spec.u_threshold, l_threshold=spec.l_threshold)


def wanted_destinations(svc: VirtualService, backend: Backend) -> list[Destination]:
    """ldirectord semantics over the live backend state (see the module docstring)."""
    dests = [destination(svc, s.spec, s.weight) for s in _in_table(backend.servers)]
    fallback = backend.fallback
    if fallback is not None and not any(s.healthy for s in backend.servers):
        dests.append(destination(svc, fallback.spec, max(fallback.spec.weight, 1)))
    return dests


def _in_table(servers: Iterable[Server]) -> Iterable[Server]:
    # `up` is False only for a server the checks took out without quiescent; quiescent and
    # drain/maint keep it up at weight 0.
    return (s for s in servers if s.up)
