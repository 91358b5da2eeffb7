"""`ipvsadm -Ln` output, line for line, from a read-back table (sans-IO).

Follows ipvsadm 1.31: services sorted by (fwmark, family, protocol, address, port) and
destinations by (address, port), each compared as the C code does (a signed 32-bit difference);
names cut at 33 and 28 columns for IPv4; large counters in K/M/G/T unless exact.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Iterable

from virtserve.engine.ipvs.table import (
    FORWARD_WORDS,
    SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
    SCHED_FLAG_MASK,
    Destination,
    KernelTimeouts,
    Stats,
    SyncDaemon,
    VirtualService,
    sched_flag_names,
)

Table = Iterable[tuple[VirtualService, Iterable[Destination]]]


def version_line(version: int, size: int) -> str:
    return f"IP Virtual Server version {version >> 16 & 0xFF}.{version >> 8 & 0xFF}.{version & 0xFF} (size={size})"


def render(table: Table, version: int, size: int, *, stats: bool = False, rate: bool = False,
           exact: bool = False) -> str:
    lines = [version_line(version, size)]
    if stats or rate:
        heads = ("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes") if stats else \
            ("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
        lines += ["%-33s %8s %8s %8s %8s %8s" % ("Prot LocalAddress:Port", *heads), "  -> RemoteAddress:Port"]
    else:
        lines += ["Prot LocalAddress:Port Scheduler Flags",
                  "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for svc, dests in sorted(table, key=functools.cmp_to_key(lambda a, b: _cmp_services(a[0], b[0]))):
        lines.append(_service_line(svc, stats, rate, exact))
        for dest in sorted(dests, key=functools.cmp_to_key(_cmp_dests)):
            lines.append(_dest_line(svc, dest, stats, rate, exact))
    return "\n".join(lines) + "\n"


def render_timeouts(t: KernelTimeouts) -> str:
    return f"Timeout (tcp tcpfin udp): {t.tcp} {t.tcpfin} {t.udp}\n"


def render_daemons(daemons: Iterable[SyncDaemon]) -> str:
    out = ""
    for d in sorted(daemons, key=lambda d: d.state != "master"):
        out += (f"{d.state} sync daemon (mcast={d.interface}, syncid={d.syncid}, maxlen={d.maxlen}, "
                f"group={d.group}, port={d.port}, ttl={d.ttl})\n")
    return out


def service_name(svc: VirtualService) -> str:
    if svc.fwmark:
        return f"FWM  {svc.fwmark}" + (" IPv6" if svc.af == socket.AF_INET6 else "")
    proto = "TCP" if svc.protocol == socket.IPPROTO_TCP else "UDP" if svc.protocol == socket.IPPROTO_UDP else "SCTP"
    name = f"{proto}  {_addrport(svc.af, svc.address, svc.port)}"
    return name if svc.af == socket.AF_INET6 else name[:33]


def _addrport(af: int, address: str, port: int) -> str:
    return f"[{address}]:{port}" if af == socket.AF_INET6 else f"{address}:{port}"


def _service_line(svc: VirtualService, stats: bool, rate: bool, exact: bool) -> str:
    name = service_name(svc)
    s = svc.stats
    if stats:
        return "%-33s" % name + _nums((s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes), exact)
    if rate:
        return "%-33s" % name + _nums((s.cps, s.inpps, s.outpps, s.inbps, s.outbps), exact)
    line = f"{name} {svc.scheduler}"
    if svc.flags & SCHED_FLAG_MASK:
        line += f" ({','.join(sched_flag_names(svc.scheduler, svc.flags))})"
    if svc.flags & SVC_F_PERSISTENT:
        line += f" persistent {svc.timeout}"
        if svc.af == socket.AF_INET and svc.netmask != 32:
            line += f" mask {ipaddress.IPv4Network(f'0.0.0.0/{svc.netmask}').netmask}"
        elif svc.af == socket.AF_INET6 and svc.netmask != 128:
            line += f" mask {svc.netmask}"
    if svc.flags & SVC_F_ONEPACKET:
        line += " ops"
    return line


def _dest_line(svc: VirtualService, d: Destination, stats: bool, rate: bool, exact: bool) -> str:
    name = _addrport(svc.af if ":" not in d.address else socket.AF_INET6, d.address, d.port)
    if svc.af != socket.AF_INET6:
        name = name[:28]
    s: Stats = d.stats
    if stats:
        return "  -> %-28s" % name + _nums((s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes), exact)
    if rate:
        return "  -> %-28s %8d %8d %8d" % (name, s.cps, s.inpps, s.outpps) + _nums((s.inbps, s.outbps), exact)
    return "  -> %-28s %-7s %-6d %-10d %-10d" % (name, FORWARD_WORDS.get(d.forward, "Unknown"), d.weight,
                                                 d.active, d.inactive)


def largenum(i: int, exact: bool = False) -> str:
    """ipvsadm's print_largenum."""
    if exact:
        text = str(i)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    for limit, div, unit in ((100_000_000, 1, ""), (1_000_000_000, 1000, "K"), (100_000_000_000, 10**6, "M"),
                             (100_000_000_000_000, 10**9, "G")):
        if i < limit:
            return f"{i // div:9d}" if not unit else f"{i // div:8d}{unit}"
    return f"{i // 10**12:8d}T"


def _nums(values: Iterable[int], exact: bool) -> str:
    return "".join(largenum(v, exact) for v in values)


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _addr_words(af: int, address: str) -> list[int]:
    packed = socket.inet_pton(af, address)
    return [int.from_bytes(packed[i:i + 4], "big") for i in range(0, len(packed), 4)]


def _cmp_services(a: VirtualService, b: VirtualService) -> int:
    # libipvs's ipvs_cmp_services: fwmark, family, protocol, address (signed differences), port.
    for x, y in ((a.fwmark, b.fwmark), (a.af, b.af), (a.protocol, b.protocol)):
        if x != y:
            return x - y
    if not a.fwmark:
        r = _cmp_words(_addr_words(a.af, a.address), _addr_words(b.af, b.address))
        if r:
            return r
    return a.port - b.port


def _cmp_words(a: list[int], b: list[int]) -> int:
    for wa, wb in zip(a, b):
        r = _int32(wa - wb)
        if r:
            return r
    return 0


def _cmp_dests(a: Destination, b: Destination) -> int:
    # libipvs's ipvs_cmp_dests: a signed difference of the addresses word by word, then the port.
    af_a, af_b = (socket.AF_INET6 if ":" in x.address else socket.AF_INET for x in (a, b))
    if af_a != af_b:
        return af_a - af_b
    r = _cmp_words(_addr_words(af_a, a.address), _addr_words(af_b, b.address))
    if r:
        return r
    return a.port - b.port
