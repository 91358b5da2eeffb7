"""The IPVS generic-netlink messages (include/uapi/linux/ip_vs.h), built and read with pyroute2's
netlink classes, no socket (sans-IO).

pyroute2 0.9.7's own IPVS classes are not used for the message layout: its IPVSDest defaults to
direct routing, its "update" maps to delete, it has no daemon or timeout attributes, and addresses
decode through a family attribute the kernel may send after the address. Here addresses and the
netmask are raw bytes interpreted with the service's family, and every command has a builder.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

from pyroute2.netlink import genlmsg, nla

from virtserve.engine.ipvs.table import (
    Destination,
    KernelTimeouts,
    Stats,
    SyncDaemon,
    VirtualService,
    STATE_BACKUP,
    STATE_MASTER,
)

GENL_NAME = "IPVS"
GENL_VERSION = 1

CMD_NEW_SERVICE, CMD_SET_SERVICE, CMD_DEL_SERVICE, CMD_GET_SERVICE = 1, 2, 3, 4
CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST, CMD_GET_DEST = 5, 6, 7, 8
CMD_NEW_DAEMON, CMD_DEL_DAEMON, CMD_GET_DAEMON = 9, 10, 11
CMD_SET_CONFIG, CMD_GET_CONFIG = 12, 13
CMD_SET_INFO, CMD_GET_INFO = 14, 15
CMD_ZERO, CMD_FLUSH = 16, 17

_STATS = (
    ("IPVS_STATS_ATTR_CONNS", "conns"), ("IPVS_STATS_ATTR_INPKTS", "inpkts"),
    ("IPVS_STATS_ATTR_OUTPKTS", "outpkts"), ("IPVS_STATS_ATTR_INBYTES", "inbytes"),
    ("IPVS_STATS_ATTR_OUTBYTES", "outbytes"), ("IPVS_STATS_ATTR_CPS", "cps"),
    ("IPVS_STATS_ATTR_INPPS", "inpps"), ("IPVS_STATS_ATTR_OUTPPS", "outpps"),
    ("IPVS_STATS_ATTR_INBPS", "inbps"), ("IPVS_STATS_ATTR_OUTBPS", "outbps"),
)


class _stats(nla):
    nla_map = (("IPVS_STATS_ATTR_UNSPEC", "none"), ("IPVS_STATS_ATTR_CONNS", "uint32"),
               ("IPVS_STATS_ATTR_INPKTS", "uint32"), ("IPVS_STATS_ATTR_OUTPKTS", "uint32"),
               ("IPVS_STATS_ATTR_INBYTES", "uint64"), ("IPVS_STATS_ATTR_OUTBYTES", "uint64"),
               ("IPVS_STATS_ATTR_CPS", "uint32"), ("IPVS_STATS_ATTR_INPPS", "uint32"),
               ("IPVS_STATS_ATTR_OUTPPS", "uint32"), ("IPVS_STATS_ATTR_INBPS", "uint32"),
               ("IPVS_STATS_ATTR_OUTBPS", "uint32"))


class _stats64(nla):
    nla_map = (("IPVS_STATS_ATTR_UNSPEC", "none"),
               *((name, "uint64") for name, _ in _STATS), ("IPVS_STATS_ATTR_PAD", "none"))


class ipvs_msg(genlmsg):
    """Every command's message; replies to GET_SERVICE, GET_DEST, GET_DAEMON, GET_CONFIG."""

    prefix = "IPVS_CMD_ATTR_"
    nla_map = (
        ("IPVS_CMD_ATTR_UNSPEC", "none"),
        ("IPVS_CMD_ATTR_SERVICE", "service"),
        ("IPVS_CMD_ATTR_DEST", "dest"),
        ("IPVS_CMD_ATTR_DAEMON", "daemon"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    class service(nla):
        nla_map = (
            ("IPVS_SVC_ATTR_UNSPEC", "none"),
            ("IPVS_SVC_ATTR_AF", "uint16"),
            ("IPVS_SVC_ATTR_PROTOCOL", "uint16"),
            ("IPVS_SVC_ATTR_ADDR", "cdata"),
            ("IPVS_SVC_ATTR_PORT", "be16"),
            ("IPVS_SVC_ATTR_FWMARK", "uint32"),
            ("IPVS_SVC_ATTR_SCHED_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_FLAGS", "flags"),
            ("IPVS_SVC_ATTR_TIMEOUT", "uint32"),
            ("IPVS_SVC_ATTR_NETMASK", "cdata"),
            ("IPVS_SVC_ATTR_STATS", "stats"),
            ("IPVS_SVC_ATTR_PE_NAME", "asciiz"),
            ("IPVS_SVC_ATTR_STATS64", "stats64"),
        )

        class flags(nla):
            fields = (("flags", "I"), ("mask", "I"))

        stats = _stats
        stats64 = _stats64

    class dest(nla):
        nla_map = (
            ("IPVS_DEST_ATTR_UNSPEC", "none"),
            ("IPVS_DEST_ATTR_ADDR", "cdata"),
            ("IPVS_DEST_ATTR_PORT", "be16"),
            ("IPVS_DEST_ATTR_FWD_METHOD", "uint32"),
            ("IPVS_DEST_ATTR_WEIGHT", "uint32"),
            ("IPVS_DEST_ATTR_U_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_L_THRESH", "uint32"),
            ("IPVS_DEST_ATTR_ACTIVE_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_INACT_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_PERSIST_CONNS", "uint32"),
            ("IPVS_DEST_ATTR_STATS", "stats"),
            ("IPVS_DEST_ATTR_ADDR_FAMILY", "uint16"),
            ("IPVS_DEST_ATTR_STATS64", "stats64"),
            ("IPVS_DEST_ATTR_TUN_TYPE", "uint8"),
            ("IPVS_DEST_ATTR_TUN_PORT", "be16"),
            ("IPVS_DEST_ATTR_TUN_FLAGS", "uint16"),
        )

        stats = _stats
        stats64 = _stats64

    class daemon(nla):
        nla_map = (
            ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
            ("IPVS_DAEMON_ATTR_STATE", "uint32"),
            ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
            ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            ("IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_GROUP6", "cdata"),
            ("IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
            ("IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
        )


class ipvs_info_msg(genlmsg):
    """The reply to GET_INFO: its attributes reuse numbers 1 and 2 at the top level."""

    prefix = "IPVS_INFO_ATTR_"
    nla_map = (
        ("IPVS_INFO_ATTR_UNSPEC", "none"),
        ("IPVS_INFO_ATTR_VERSION", "uint32"),
        ("IPVS_INFO_ATTR_CONN_TAB_SIZE", "uint32"),
    )


# --- building ---------------------------------------------------------------------------------

def request(cmd: int, *attrs: tuple[str, Any], cls: type = ipvs_msg) -> genlmsg:
    msg = cls()
    msg["cmd"] = cmd
    msg["version"] = GENL_VERSION
    msg["attrs"] = list(attrs)
    return msg


def service_key_attrs(svc: VirtualService) -> list[tuple[str, Any]]:
    """The attributes that name a service: family + (fwmark | protocol, address, port)."""
    attrs: list[tuple[str, Any]] = [("IPVS_SVC_ATTR_AF", svc.af)]
    if svc.fwmark:
        attrs.append(("IPVS_SVC_ATTR_FWMARK", svc.fwmark))
    else:
        attrs += [("IPVS_SVC_ATTR_PROTOCOL", svc.protocol),
                  ("IPVS_SVC_ATTR_ADDR", _pack_addr(svc.af, svc.address)),
                  ("IPVS_SVC_ATTR_PORT", svc.port)]
    return attrs


def service_attrs(svc: VirtualService) -> list[tuple[str, Any]]:
    """Everything NEW_SERVICE and SET_SERVICE need (the kernel requires all of it for both)."""
    return service_key_attrs(svc) + [
        ("IPVS_SVC_ATTR_SCHED_NAME", svc.scheduler),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": svc.flags, "mask": 0xFFFFFFFF}),
        ("IPVS_SVC_ATTR_TIMEOUT", svc.timeout),
        ("IPVS_SVC_ATTR_NETMASK", _pack_netmask(svc.af, svc.netmask)),
    ]


def dest_attrs(svc: VirtualService, dest: Destination, *, key_only: bool = False) -> list[tuple[str, Any]]:
    af = _family(dest.address)
    attrs: list[tuple[str, Any]] = [
        ("IPVS_DEST_ATTR_ADDR", _pack_addr(af, dest.address)),
        ("IPVS_DEST_ATTR_PORT", dest.port),
    ]
    if af != svc.af:  # kernels before 3.18 reject the attribute; send it only when it matters
        attrs.append(("IPVS_DEST_ATTR_ADDR_FAMILY", af))
    if not key_only:
        attrs += [
            ("IPVS_DEST_ATTR_FWD_METHOD", dest.forward),
            ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
            ("IPVS_DEST_ATTR_U_THRESH", dest.u_threshold),
            ("IPVS_DEST_ATTR_L_THRESH", dest.l_threshold),
        ]
    return attrs


def service_request(cmd: int, svc: VirtualService) -> genlmsg:
    attrs = service_attrs(svc) if cmd in (CMD_NEW_SERVICE, CMD_SET_SERVICE) else service_key_attrs(svc)
    return request(cmd, ("IPVS_CMD_ATTR_SERVICE", {"attrs": attrs}))


def dest_request(cmd: int, svc: VirtualService, dest: Destination | None = None) -> genlmsg:
    parts = [("IPVS_CMD_ATTR_SERVICE", {"attrs": service_key_attrs(svc)})]
    if dest is not None:
        parts.append(("IPVS_CMD_ATTR_DEST", {"attrs": dest_attrs(svc, dest, key_only=cmd == CMD_DEL_DEST)}))
    return request(cmd, *parts)


def timeouts_request(timeouts: KernelTimeouts) -> genlmsg:
    return request(CMD_SET_CONFIG, ("IPVS_CMD_ATTR_TIMEOUT_TCP", timeouts.tcp),
                   ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", timeouts.tcpfin),
                   ("IPVS_CMD_ATTR_TIMEOUT_UDP", timeouts.udp))


def daemon_request(cmd: int, daemon: SyncDaemon) -> genlmsg:
    state = STATE_MASTER if daemon.state == "master" else STATE_BACKUP
    attrs: list[tuple[str, Any]] = [("IPVS_DAEMON_ATTR_STATE", state)]
    if cmd == CMD_NEW_DAEMON:
        attrs += [("IPVS_DAEMON_ATTR_MCAST_IFN", daemon.interface), ("IPVS_DAEMON_ATTR_SYNC_ID", daemon.syncid)]
        if daemon.maxlen:
            attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", daemon.maxlen))
        if daemon.group:
            af = _family(daemon.group)
            name = "IPVS_DAEMON_ATTR_MCAST_GROUP6" if af == socket.AF_INET6 else "IPVS_DAEMON_ATTR_MCAST_GROUP"
            attrs.append((name, _pack_addr(af, daemon.group)))
        if daemon.port:
            attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", daemon.port))
        if daemon.ttl:
            attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", daemon.ttl))
    return request(cmd, ("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs}))


# --- reading ----------------------------------------------------------------------------------

def parse_service(msg: genlmsg) -> VirtualService:
    s = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    af = s.get_attr("IPVS_SVC_ATTR_AF")
    flags = s.get_attr("IPVS_SVC_ATTR_FLAGS")
    fwmark = s.get_attr("IPVS_SVC_ATTR_FWMARK") or 0
    return VirtualService(
        protocol=0 if fwmark else s.get_attr("IPVS_SVC_ATTR_PROTOCOL") or 0,  # fwmark: not part of the key
        address="" if fwmark else _unpack_addr(af, s.get_attr("IPVS_SVC_ATTR_ADDR") or b""),
        port=0 if fwmark else s.get_attr("IPVS_SVC_ATTR_PORT") or 0,
        fwmark=fwmark,
        af=af,
        scheduler=s.get_attr("IPVS_SVC_ATTR_SCHED_NAME") or "",
        flags=(flags["flags"] if flags is not None else 0) & ~0x0002,  # not HASHED: kernel-internal
        timeout=s.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0,
        netmask=_unpack_netmask(af, s.get_attr("IPVS_SVC_ATTR_NETMASK")),
        stats=_parse_stats(s, "IPVS_SVC_ATTR_STATS64", "IPVS_SVC_ATTR_STATS"),
    )


def parse_dest(msg: genlmsg, svc_af: int) -> Destination:
    d = msg.get_attr("IPVS_CMD_ATTR_DEST")
    af = d.get_attr("IPVS_DEST_ATTR_ADDR_FAMILY") or svc_af
    return Destination(
        address=_unpack_addr(af, d.get_attr("IPVS_DEST_ATTR_ADDR")),
        port=d.get_attr("IPVS_DEST_ATTR_PORT") or 0,
        weight=d.get_attr("IPVS_DEST_ATTR_WEIGHT") or 0,
        forward=(d.get_attr("IPVS_DEST_ATTR_FWD_METHOD") or 0) & 0x7,
        u_threshold=d.get_attr("IPVS_DEST_ATTR_U_THRESH") or 0,
        l_threshold=d.get_attr("IPVS_DEST_ATTR_L_THRESH") or 0,
        active=d.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
        inactive=d.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0,
        persistent=d.get_attr("IPVS_DEST_ATTR_PERSIST_CONNS") or 0,
        stats=_parse_stats(d, "IPVS_DEST_ATTR_STATS64", "IPVS_DEST_ATTR_STATS"),
    )


def parse_daemon(msg: genlmsg) -> SyncDaemon | None:
    d = msg.get_attr("IPVS_CMD_ATTR_DAEMON")
    if d is None:
        return None
    state = d.get_attr("IPVS_DAEMON_ATTR_STATE") or 0
    group4, group6 = d.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP"), d.get_attr("IPVS_DAEMON_ATTR_MCAST_GROUP6")
    group = _unpack_addr(socket.AF_INET, group4) if group4 else _unpack_addr(socket.AF_INET6, group6) if group6 else ""
    return SyncDaemon(
        state="master" if state & STATE_MASTER else "backup",
        interface=d.get_attr("IPVS_DAEMON_ATTR_MCAST_IFN") or "",
        syncid=d.get_attr("IPVS_DAEMON_ATTR_SYNC_ID") or 0,
        maxlen=d.get_attr("IPVS_DAEMON_ATTR_SYNC_MAXLEN") or 0,
        group=group,
        port=d.get_attr("IPVS_DAEMON_ATTR_MCAST_PORT") or 0,
        ttl=d.get_attr("IPVS_DAEMON_ATTR_MCAST_TTL") or 0,
    )


def parse_timeouts(msg: genlmsg) -> KernelTimeouts:
    return KernelTimeouts(tcp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP") or 0,
                          tcpfin=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN") or 0,
                          udp=msg.get_attr("IPVS_CMD_ATTR_TIMEOUT_UDP") or 0)


def parse_info(msg: genlmsg) -> tuple[int, int]:
    """(version, connection table size); version 0x010201 is 1.2.1."""
    return msg.get_attr("IPVS_INFO_ATTR_VERSION") or 0, msg.get_attr("IPVS_INFO_ATTR_CONN_TAB_SIZE") or 0


def _parse_stats(n: nla, name64: str, name32: str) -> Stats:
    stats = n.get_attr(name64) or n.get_attr(name32)
    if stats is None:
        return Stats()
    return Stats(**{field: stats.get_attr(attr) or 0 for attr, field in _STATS})


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _pack_addr(af: int, address: str) -> bytes:
    # The kernel reads a union nf_inet_addr: 16 bytes for both families is what ipvsadm sends.
    return socket.inet_pton(af, address).ljust(16, b"\0")


def _unpack_addr(af: int, raw: bytes) -> str:
    size = 16 if af == socket.AF_INET6 else 4
    return socket.inet_ntop(af, bytes(raw[:size]).ljust(size, b"\0"))


def _pack_netmask(af: int, prefix: int) -> bytes:
    # IPv4: the mask in network order; IPv6: the prefix length as a host-order u32 (ipvsadm's way).
    if af == socket.AF_INET6:
        return struct.pack("=I", prefix)
    return ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask.packed


def _unpack_netmask(af: int, raw: bytes | None) -> int:
    if not raw:
        return 128 if af == socket.AF_INET6 else 32
    if af == socket.AF_INET6:
        return struct.unpack("=I", bytes(raw[:4]))[0]
    return ipaddress.IPv4Network(f"0.0.0.0/{socket.inet_ntoa(bytes(raw[:4]))}").prefixlen
