"""PROXY protocol end to end: accept-proxy on binds (L7 and L4, plain and TLS), send-proxy and
send-proxy-v2 toward servers; real peers: HAProxy in front sending the header, nginx behind
receiving it."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from tlshelpers import client_context, free_port, haproxy, nginx

from virtserve.certs import LocalCA
from virtserve.engine.proxyproto import Incomplete, build_v1, build_v2, parse

pytestmark = pytest.mark.timeout(60)


def listen(ports, *, mode="http", accept_proxy=True, ssl=None, scheduler="rr", server_extra=None):
    bind = {"address": "127.0.0.1:0", "accept-proxy": accept_proxy}
    if ssl:
        bind["ssl"] = ssl
    return {"listen": {"vs": {
        "bind": [bind], "mode": mode, "forwardfor": mode == "http", "scheduler": scheduler,
        "timeout": {"handshake": "1s"},
        "servers": [{"address": f"127.0.0.1:{p}", **(server_extra or {})} for p in ports]}}}


async def _raw(port: int, data: bytes, *, local: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


GET_HEADERS = b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def _xff(response: bytes) -> str:
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    return dict((k.lower(), v) for k, v in body["headers"])["x-forwarded-for"]


async def test_accept_proxy_v1_and_v2_set_the_client_address(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(listen([web1.port]))
    port = lb.address[1]
    v1 = build_v1(("203.0.113.9", 5555), ("127.0.0.1", port))
    assert _xff(await _raw(port, v1 + GET_HEADERS)) == "203.0.113.9"
    v2 = build_v2(("2001:db8::7", 5555), ("::1", port))
    assert _xff(await _raw(port, v2 + GET_HEADERS)) == "2001:db8::7"
    # LOCAL (a proxy's own health check): the connection's address stands.
    assert _xff(await _raw(port, build_v2(None, None) + GET_HEADERS)) == "127.0.0.1"
    # Header and request in separate pieces.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in (v1[:7], v1[7:20], v1[20:] + GET_HEADERS[:10], GET_HEADERS[10:]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.02)
    async with asyncio.timeout(5):
        assert _xff(await reader.read(-1)) == "203.0.113.9"
    writer.close()


async def test_a_bad_or_missing_header_costs_that_connection_only(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(listen([web1.port]))
    port = lb.address[1]
    stalled = await asyncio.open_connection("127.0.0.1", port)
    stalled[1].write(b"PROXY TCP4 1.2.3.4")  # never finished
    assert await _raw(port, GET_HEADERS) == b""  # no header: closed, nothing answered
    assert await _raw(port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + GET_HEADERS) == b""
    assert await _raw(port, b"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + b"\0" * 12 + GET_HEADERS) == b""
    ok = await _raw(port, build_v1(("198.51.100.4", 1), ("127.0.0.1", port)) + GET_HEADERS)
    assert _xff(ok) == "198.51.100.4"
    async with asyncio.timeout(5):  # the handshake timeout (1 s) closes the stalled one
        assert await stalled[0].read(-1) == b""
    stalled[1].close()
    assert web1.requests == 1  # no refused connection reached a server


async def test_source_hashing_uses_the_header_address_in_tcp_mode(backends, balancer):
    servers = await backends("a", "b", "c", "d")
    lb = await balancer(listen([s.port for s in servers], mode="tcp", scheduler="sh"))
    port = lb.address[1]
    get = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    picks: dict[str, set[bytes]] = {}
    for client in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
        for _ in range(3):
            out = await _raw(port, build_v1((client, 40000), ("127.0.0.1", port)) + get)
            picks.setdefault(client, set()).add(out.rsplit(b"\r\n\r\n", 1)[1])
    assert all(len(names) == 1 for names in picks.values())  # each client sticks to a server
    assert len({n for names in picks.values() for n in names}) > 1  # by header address, not 127.0.0.1


async def test_send_proxy_v1_and_v2_toward_servers_l4_and_l7(raw_server, balancer):
    received: list[bytes] = []

    async def record(reader, writer):
        data = b""
        while True:  # the header first (v2 begins with CRLF CRLF), then a request head
            chunk = await reader.read(4096)
            if not chunk:
                return
            data += chunk
            try:
                if b"\r\n\r\n" in data[parse(data).length:]:
                    break
            except Incomplete:
                continue
        received.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server = await raw_server(record)
    for mode in ("http", "tcp"):
        for version in ("v1", "v2"):
            lb = await balancer(listen([server.port], mode=mode, accept_proxy=False,
                                       server_extra={"send-proxy": version}))
            out = await _raw(lb.address[1], GET_HEADERS, local="127.0.0.2")
            assert out.endswith(b"ok"), (mode, version, out)
            header = parse(received[-1])
            assert header.version == int(version[1])
            assert header.source[0] == "127.0.0.2" and header.destination == lb.address
            assert received[-1][header.length:].startswith(b"GET /headers HTTP/1.1\r\n")


async def test_send_proxy_connections_are_not_shared_between_clients(raw_server, balancer):
    connections: list[tuple[str, int]] = []

    async def keep_alive(reader, writer):
        data = b""
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                return
            data += chunk
            if not connections or data.startswith(b"PROXY"):
                header = parse(data)
                connections.append(header.source)
                data = data[header.length:]
            while b"\r\n\r\n" in data:
                _, data = data.split(b"\r\n\r\n", 1)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await raw_server(keep_alive)
    lb = await balancer(listen([server.port], accept_proxy=False, server_extra={"send-proxy": "v1"}))
    for local in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local, 0))) as s:
            for _ in range(2):
                async with s.get(f"{lb.url}/") as r:
                    assert await r.text() == "ok"
    # Each client connection got its own server connection with its own header; two
    # requests on one client connection reused it.
    assert [ip for ip, _ in connections] == ["127.0.0.2", "127.0.0.3", "127.0.0.2"]


# --- real peers -------------------------------------------------------------------------------


def haproxy_in_front(front: int, port: int, send: str):
    """HAProxy relaying TCP from `front` to virtserve, opening with a PROXY header."""
    return haproxy(f"""
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
listen front
    bind 127.0.0.1:{front}
    server vs 127.0.0.1:{port} {send}
""")


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
async def test_haproxy_in_front_sends_the_client_address(backends, balancer, send):
    (web1,) = await backends("web1")
    lb = await balancer(listen([web1.port]))
    front = free_port()
    peer = await haproxy_in_front(front, lb.address[1], send).start()
    try:
        out = await _raw(front, GET_HEADERS, local="127.0.0.5")
        assert _xff(out) == "127.0.0.5"
    finally:
        peer.stop()


async def test_haproxy_in_front_of_a_tls_listener_with_accept_proxy(backends, balancer, tmp_path):
    ca = LocalCA.load_or_create(tmp_path)
    site = ca.issue(["127.0.0.1"], tmp_path / "site.pem")
    (web1,) = await backends("web1")
    lb = await balancer(listen([web1.port], ssl={"crt": str(site)}))
    front = free_port()
    peer = await haproxy_in_front(front, lb.address[1], "send-proxy-v2").start()
    try:
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.6", 0))
        async with aiohttp.ClientSession(connector=connector) as s:
            async with s.get(f"https://127.0.0.1:{front}/headers", ssl=client_context(ca)) as r:
                seen = dict((k.lower(), v) for k, v in (await r.json())["headers"])
        assert seen["x-forwarded-for"] == "127.0.0.6" and seen["x-forwarded-proto"] == "https"
    finally:
        peer.stop()


@pytest.mark.parametrize("mode", ["http", "tcp"])
@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_nginx_behind_receives_the_client_address(balancer, mode, version):
    port = free_port()
    peer = await nginx(f"""
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{ return 200 "addr=$proxy_protocol_addr port=$proxy_protocol_port\\n"; }}
    }}
""").start()
    try:
        lb = await balancer(listen([port], mode=mode, accept_proxy=False, server_extra={"send-proxy": version}))
        out = await _raw(lb.address[1], b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                         local="127.0.0.7")
        assert b"200 OK" in out and b"addr=127.0.0.7 port=" in out, out
    finally:
        peer.stop()
