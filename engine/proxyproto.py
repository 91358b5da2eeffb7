"""PROXY protocol v1 (text) and v2 (binary) headers: parse and build, sans-IO.

The header a proxy in front sends before anything else, carrying the real client address
(haproxy.org/download/2.6/doc/proxy-protocol.txt). `parse` takes the bytes received so far and
returns the header with its length, raises `Incomplete` with a lower bound of the bytes still
missing (so a reader may take exactly the header off the socket and nothing after it), or
`ProxyProtocolError` for anything that is not a valid header.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's bound for a v1 line, CRLF included
V1_MIN = 15  # "PROXY UNKNOWN\r\n"
V2_MAX_PAYLOAD = 4096  # more than any address block plus the TLVs proxies send; a bound on memory

_V2_FAMILIES = {0x11: ("TCP4", 12), 0x21: ("TCP6", 36)}  # (family, address block size)
_V2_UNSPEC, _V2_LOCAL, _V2_PROXY = 0x00, 0x20, 0x21


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY header: the connection must be closed."""


class Incomplete(Exception):
    """More bytes are needed; `missing` is a lower bound (at least 1)."""

    def __init__(self, missing: int) -> None:
        super().__init__(missing)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    length: int  # bytes the header took
    # None when the header carries no address (v1 UNKNOWN, v2 LOCAL or an unsupported family):
    # the connection's own addresses stand.
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse(data: bytes | bytearray | memoryview) -> ProxyHeader:
    data = bytes(data)
    if not data:
        raise Incomplete(8)
    head = data[:12]
    if V2_SIGNATURE.startswith(head):
        return _parse_v2(data)
    if V1_PREFIX.startswith(data[:6]):
        return _parse_v1(data)
    raise ProxyProtocolError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyProtocolError("PROXY v1 line has no CRLF within 107 bytes")
        raise Incomplete(max(V1_MIN - len(data), 1 if data.endswith(b"\r") else 2))
    line = data[:end].decode("ascii", "replace")
    parts = line.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyProtocolError(f"bad PROXY v1 line {line!r}")
    proto = parts[1]
    if proto == "UNKNOWN":
        return ProxyHeader(1, end + 2)
    if proto not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyProtocolError(f"bad PROXY v1 line {line!r}")
    version = 4 if proto == "TCP4" else 6
    src, dst = _ip(parts[2], version), _ip(parts[3], version)
    return ProxyHeader(1, end + 2, (src, _port(parts[4])), (dst, _port(parts[5])))


def _ip(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"bad address {text!r} in PROXY header") from None
    if address.version != version:
        raise ProxyProtocolError(f"address {text!r} is not IPv{version}")
    return _show(address)


def _show(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A v4-mapped IPv6 address is the IPv4 client it stands for (X-Forwarded-For, ACLs)."""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"bad port {text!r} in PROXY header")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader:
    if len(data) < 16:
        if not data.startswith(V2_SIGNATURE[:len(data)]):
            raise ProxyProtocolError("not a PROXY protocol header")
        raise Incomplete(16 - len(data))
    if not data.startswith(V2_SIGNATURE):
        raise ProxyProtocolError("not a PROXY protocol header")
    ver_cmd, fam, size = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header with version {ver_cmd >> 4}")
    if ver_cmd not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyProtocolError(f"PROXY v2 header with unknown command {ver_cmd & 0xF}")
    if size > V2_MAX_PAYLOAD:
        raise ProxyProtocolError(f"PROXY v2 header of {size} bytes is too long")
    total = 16 + size
    if len(data) < total:
        raise Incomplete(total - len(data))
    if ver_cmd == _V2_LOCAL or fam not in _V2_FAMILIES:
        return ProxyHeader(2, total)  # LOCAL (the proxy's own check) or UNSPEC/UNIX: keep ours
    _, block = _V2_FAMILIES[fam]
    if size < block:
        raise ProxyProtocolError("PROXY v2 address block is truncated")
    if fam == 0x11:
        src, dst = str(ipaddress.IPv4Address(data[16:20])), str(ipaddress.IPv4Address(data[20:24]))
        ports = data[24:28]
    else:
        src, dst = _show(ipaddress.IPv6Address(data[16:32])), _show(ipaddress.IPv6Address(data[32:48]))
        ports = data[48:52]
    sport, dport = struct.unpack("!HH", ports)
    return ProxyHeader(2, total, (src, sport), (dst, dport), _tlvs(data[16 + block:total]))


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise ProxyProtocolError("PROXY v2 TLV is truncated")
        kind, size = data[pos], struct.unpack_from("!H", data, pos + 1)[0]
        if pos + 3 + size > len(data):
            raise ProxyProtocolError("PROXY v2 TLV is truncated")
        out.append((kind, data[pos + 3:pos + 3 + size]))
        pos += 3 + size
    return tuple(out)


# --- build ------------------------------------------------------------------------------------


def build_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """The v1 line; UNKNOWN when an address is missing or the two families differ."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src, dst = _address(source[0]), _address(destination[0])
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {proto} {src} {dst} {source[1]} {destination[1]}\r\n".encode("ascii")


def build_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None,
             tlvs: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """The v2 header: PROXY with a TCP4/TCP6 block, or LOCAL when an address is missing."""
    extra = b"".join(bytes((kind,)) + struct.pack("!H", len(value)) + value for kind, value in tlvs)
    if source is None or destination is None:
        return V2_SIGNATURE + bytes((_V2_LOCAL, _V2_UNSPEC)) + struct.pack("!H", len(extra)) + extra
    src, dst = _address(source[0]), _address(destination[0])
    if src.version != dst.version:  # one side v4-mapped: send both as IPv6
        src, dst = _v6(src), _v6(dst)
    fam = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return (V2_SIGNATURE + bytes((_V2_PROXY, fam)) + struct.pack("!H", len(block) + len(extra))
            + block + extra)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _v6(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)


def build(version: str, source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """`send-proxy` ("v1") or `send-proxy-v2` ("v2")."""
    return build_v2(source, destination) if version == "v2" else build_v1(source, destination)
