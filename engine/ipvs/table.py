"""What the kernel's IPVS table holds, as plain frozen values (sans-IO).

A VirtualService is keyed by (af, protocol, address, port) or by (af, fwmark); its destinations by
(address, port). Stats carry the kernel's counters and its 2-second rate estimates.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field, replace

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}

# include/uapi/linux/ip_vs.h
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002  # set by the kernel, never by us
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008
SVC_F_SCHED2 = 0x0010
SVC_F_SCHED3 = 0x0020
# The per-scheduler meaning of the three flag bits (ipvsadm -b).
SCHED_FLAGS = {
    "sh": {"sh-fallback": SVC_F_SCHED1, "sh-port": SVC_F_SCHED2},
    "mh": {"mh-fallback": SVC_F_SCHED1, "mh-port": SVC_F_SCHED2},
}
SCHED_FLAG_MASK = SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3

# Forwarding methods (IP_VS_CONN_F_*) and the words ipvsadm prints for them.
FWD_MASQ, FWD_LOCAL, FWD_TUNNEL, FWD_ROUTE = 0, 1, 2, 3
FORWARD_METHODS = {"masq": FWD_MASQ, "gate": FWD_ROUTE, "ipip": FWD_TUNNEL}
FORWARD_WORDS = {FWD_MASQ: "Masq", FWD_LOCAL: "Local", FWD_TUNNEL: "Tunnel", FWD_ROUTE: "Route"}

# Schedulers the kernel has (modules ip_vs_<name>).
KERNEL_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")

STATE_MASTER, STATE_BACKUP = 1, 2


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters since the entry was made, and rates per second (the kernel's estimator)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True, slots=True)
class Destination:
    address: str
    port: int
    weight: int = 1
    forward: int = FWD_MASQ
    u_threshold: int = 0
    l_threshold: int = 0
    # Read back only; they take no part in equality so a read-back entry compares to a wanted one.
    active: int = field(default=0, compare=False)
    inactive: int = field(default=0, compare=False)
    persistent: int = field(default=0, compare=False)
    stats: Stats = field(default=Stats(), compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True, slots=True)
class VirtualService:
    protocol: int = socket.IPPROTO_TCP  # 0 for firewall-mark services
    address: str = ""
    port: int = 0
    fwmark: int = 0  # non-zero: a firewall-mark service (address and port unused)
    af: int = socket.AF_INET
    scheduler: str = "wlc"
    flags: int = 0  # SVC_F_* (PERSISTENT, ONEPACKET, SCHED1-3)
    timeout: int = 0  # persistence timeout, seconds
    netmask: int = 32  # persistence granularity as a prefix length (IPv4 /32, IPv6 /128 = none)
    stats: Stats = field(default=Stats(), compare=False)

    @property
    def key(self) -> tuple:
        if self.fwmark:
            return (self.af, "fwm", self.fwmark)
        return (self.af, self.protocol, ipaddress.ip_address(self.address).packed, self.port)

    @property
    def persistent(self) -> bool:
        return bool(self.flags & SVC_F_PERSISTENT)

    def describe(self) -> str:
        """`TCP 10.0.0.1:80` or `FWM 7`, as a log line names it."""
        if self.fwmark:
            return f"FWM {self.fwmark}" + (" IPv6" if self.af == socket.AF_INET6 else "")
        host = f"[{self.address}]" if self.af == socket.AF_INET6 else self.address
        return f"{PROTOCOL_NAMES.get(self.protocol, str(self.protocol)).upper()} {host}:{self.port}"

    def settings(self) -> VirtualService:
        """Only what `set service` changes (equality of two of these = nothing to update)."""
        return replace(self, stats=Stats())


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def sched_flags(scheduler: str, options: dict) -> int:
    """The SCHED1-3 bits for the options that name them (sh-port, mh-fallback, ...)."""
    names = SCHED_FLAGS.get(scheduler, {})
    return sum(bit for name, bit in names.items() if options.get(name))


def sched_flag_names(scheduler: str, flags: int) -> list[str]:
    """ipvsadm's words for the scheduler flags set, in its order (fallback, then port)."""
    names = SCHED_FLAGS.get(scheduler)
    if names is None:
        return [f"flag-{i + 1}" for i, bit in enumerate((SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3)) if flags & bit]
    return [name for name, bit in names.items() if flags & bit]


@dataclass(frozen=True, slots=True)
class KernelTimeouts:
    """`ipvsadm --set TCP TCPFIN UDP`; 0 leaves a value as it is."""

    tcp: int = 0
    tcpfin: int = 0
    udp: int = 0


@dataclass(frozen=True, slots=True)
class SyncDaemon:
    """The connection synchronisation daemon: a master sends its connection table on multicast,
    a backup director receives it, so a failover keeps the clients' connections."""

    state: str  # "master" | "backup"
    interface: str
    syncid: int = 0
    maxlen: int = 0  # 0: from the interface's MTU
    group: str = ""  # "" : 224.0.0.81
    port: int = 0  # 0: 8848
    ttl: int = 0  # 0: 1
