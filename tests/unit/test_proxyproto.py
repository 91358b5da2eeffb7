"""PROXY protocol v1/v2 parse and build: sans-IO, no sockets."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtserve.engine.proxyproto import (
    V2_SIGNATURE,
    Incomplete,
    ProxyProtocolError,
    build,
    build_v1,
    build_v2,
    parse,
)

pytestmark = pytest.mark.timeout(30)


def test_v1_tcp4_with_the_request_after_it():
    data = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n"
    h = parse(data)
    assert (h.version, h.source, h.destination) == (1, ("192.0.2.1", 56324), ("198.51.100.2", 443))
    assert data[h.length:] == b"GET / HTTP/1.1\r\n\r\n"


def test_v1_tcp6_and_unknown():
    h = parse(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n")
    assert h.source == ("2001:db8::1", 1) and h.destination == ("::1", 65535)
    h = parse(b"PROXY UNKNOWN ffff:f::1 1.2.3.4 1 2\r\n")
    assert h.source is None and h.length == 37


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          # bare LF
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",        # unknown protocol
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          # missing port
    b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",      # bad address
    b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",            # family mismatch
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",    # port out of range
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",       # leading zero
    b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",       # double space
    b"GET / HTTP/1.1\r\n\r\n",                    # no header at all
    b"PROXY " + b"x" * 120,                        # no CRLF within 107 bytes
])
def test_v1_refuses_malformed(line):
    with pytest.raises(ProxyProtocolError):
        parse(line)


def test_incomplete_gives_a_lower_bound_that_never_reads_past_the_header():
    for full in (build_v1(("10.0.0.1", 1234), ("10.0.0.2", 80)),
                 build_v2(("10.0.0.1", 1234), ("10.0.0.2", 80), ((0x05, b"abc"),)),
                 build_v2(("2001:db8::5", 9), ("2001:db8::6", 10))):
        got = b""
        while True:
            try:
                h = parse(got)
                break
            except Incomplete as more:
                assert more.missing >= 1
                got += full[len(got):len(got) + more.missing]
                assert len(got) <= len(full)  # reading what it asked never overshoots
        assert h.length == len(full) == len(got)


def test_v2_tcp4_with_tlvs_and_trailing_bytes():
    header = build_v2(("203.0.113.7", 40000), ("127.0.0.1", 8080), ((0x01, b"h2"), (0xE0, b"")))
    h = parse(header + b"\x16\x03\x01")
    assert h.version == 2 and h.length == len(header)
    assert h.source == ("203.0.113.7", 40000) and h.destination == ("127.0.0.1", 8080)
    assert h.tlvs == ((0x01, b"h2"), (0xE0, b""))


def test_v2_local_keeps_the_connection_address():
    h = parse(V2_SIGNATURE + b"\x20\x00\x00\x00")
    assert h.source is None and h.length == 16


def test_v2_unspec_family_with_proxy_command_is_accepted_without_address():
    h = parse(V2_SIGNATURE + b"\x21\x00\x00\x00")
    assert h.source is None


@pytest.mark.parametrize("data", [
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,        # version 1 in a v2 header
    V2_SIGNATURE + b"\x23\x11\x00\x0c" + b"\0" * 12,        # unknown command
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4,         # address block truncated
    V2_SIGNATURE + b"\x21\x11\xff\xff",                      # absurd length
    V2_SIGNATURE + b"\x21\x11\x00\x0e" + b"\0" * 12 + b"\x01\x00",  # TLV truncated
    b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",               # signature differs
])
def test_v2_refuses_malformed(data):
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_build_unknown_and_mixed_families():
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert build_v1(("1.2.3.4", 1), ("::1", 2)) == b"PROXY UNKNOWN\r\n"
    mixed = parse(build_v2(("1.2.3.4", 1), ("2001:db8::1", 2)))
    assert mixed.source == ("1.2.3.4", 1)  # v4-mapped shown as the IPv4 it is
    assert parse(build_v2(None, None)).source is None
    assert build("v2", ("1.2.3.4", 1), ("5.6.7.8", 2))[:12] == V2_SIGNATURE
    assert build("v1", ("::ffff:1.2.3.4", 1), ("5.6.7.8", 2)) == b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"


addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda a: ("4", str(a))),
    st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(lambda a: ("6", str(a))),
)
ports = st.integers(0, 65535)


@given(st.data())
def test_round_trip(data):
    family = data.draw(st.sampled_from([4, 6]))
    ip = st.ip_addresses(v=family)
    if family == 6:
        ip = ip.filter(lambda a: a.ipv4_mapped is None)
    src, dst = (str(data.draw(ip)), data.draw(ports)), (str(data.draw(ip)), data.draw(ports))
    for version in ("v1", "v2"):
        h = parse(build(version, src, dst) + b"rest")
        assert (h.source, h.destination) == (src, dst)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(blob):
    for data in (blob, b"PROXY " + blob, V2_SIGNATURE + blob):
        try:
            h = parse(data)
        except (Incomplete, ProxyProtocolError):
            continue
        assert 0 < h.length <= len(data)


def test_v2_length_field_is_what_bounds_the_header():
    body = struct.pack("!4s4sHH", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1, 2)
    with pytest.raises(Incomplete) as more:
        parse(V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 12) + body[:5])
    assert more.value.missing == 7
