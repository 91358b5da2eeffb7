"""L7 request rewriting and upgrades end to end: X-Forwarded-For/-Proto, hop-by-hop headers,
and an Upgrade exchange (WebSocket, or any protocol) turned into a byte tunnel."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from helpers import topology

from rawhttp import RawClient, request

pytestmark = pytest.mark.timeout(30)


async def _headers_seen(lb, headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Send GET /headers with exactly these headers; what the backend received, by lower name."""
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/headers", headers=headers))
    r = await client.response()
    await client.close()
    assert r.status == 200
    seen: dict[str, list[str]] = {}
    for k, v in json.loads(r.body)["headers"]:
        seen.setdefault(k.lower(), []).append(v)
    return seen


async def test_forwardfor_appends_and_sets_proto(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], forwardfor=True))
    seen = await _headers_seen(lb, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.1"),
                                    ("X-Forwarded-Proto", "https"), ("X-Other", "kept")])
    assert seen["x-forwarded-for"] == ["203.0.113.7, 198.51.100.1, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]  # the client's claim replaced
    assert seen["x-other"] == ["kept"]
    assert seen["host"] == ["test"]
    seen = await _headers_seen(lb, [])
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]


async def test_forwardfor_with_aiohttp_client(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], forwardfor=True))
    async with aiohttp.ClientSession() as s:
        async with s.get(lb.url + "/headers", headers={"X-Forwarded-For": "10.1.2.3"}) as r:
            seen = dict((await r.json())["headers"])
    assert seen["X-Forwarded-For"] == "10.1.2.3, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"


async def test_without_forwardfor_headers_pass_unchanged(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    seen = await _headers_seen(lb, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert seen["x-forwarded-for"] == ["203.0.113.7"]
    assert seen["x-forwarded-proto"] == ["https"]


async def test_hop_by_hop_headers_not_forwarded(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], forwardfor=True))
    seen = await _headers_seen(lb, [
        ("Connection", "keep-alive, X-Secret, x-also-secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("X-Secret", "1"),
        ("X-Also-Secret", "2"),
        ("X-Public", "3"),
    ])
    for name in ("keep-alive", "proxy-connection", "te", "x-secret", "x-also-secret"):
        assert name not in seen, name
    assert "x-secret" not in " ".join(seen.get("connection", [])).lower()
    assert seen["x-public"] == ["3"]


async def test_request_line_and_header_values_preserved(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    seen = await _headers_seen(lb, [("X-Mixed-Case", "Value With  Spaces"), ("X-Empty", ""),
                                    ("X-Long", "v" * 8000)])
    assert seen["x-mixed-case"] == ["Value With  Spaces"]
    assert seen["x-empty"] == [""]
    assert seen["x-long"] == ["v" * 8000]


async def test_websocket_through_the_proxy(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    async with aiohttp.ClientSession() as s, asyncio.timeout(10):
        for expected in ("web1", "web2"):  # picked per upgrade request, like any other
            async with s.ws_connect(lb.url + "/ws") as ws:
                for i in range(5):
                    await ws.send_str(f"msg{i}")
                    assert await ws.receive_str() == f"{expected}:msg{i}"
                big = "z" * 1_000_000  # more than any socket buffer: flow control both ways
                await ws.send_str(big)
                assert await ws.receive_str() == f"{expected}:{big}"
        # Plain requests on the same session still work; tunnels were not pooled.
        async with s.get(lb.url + "/") as r:
            assert await r.text() == "web1"
    assert lb.engine.pool.idle_count() == 1
    async with asyncio.timeout(5):  # the tunnels' connections all went away
        while len(lb.engine.state.conns) > 1:
            await asyncio.sleep(0.02)
    assert all(s["active"] == 0 for s in lb.servers())


def tunnel_server(protocol: bytes = b"echo"):
    """Answers an Upgrade request with 101, then echoes raw bytes, upper-cased."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"\r\nupgrade: " + protocol in head.lower()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + protocol
                     + b"\r\nConnection: Upgrade\r\n\r\nhello from server\n")
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()

    return handle


async def test_upgrade_becomes_byte_tunnel_with_early_data(raw_server, balancer):
    srv = await raw_server(tunnel_server())
    lb = await balancer(topology([srv.port]))
    reader, writer = await asyncio.open_connection(*lb.address)
    # The client sends tunnel bytes right behind the request, before the 101.
    writer.write(request("GET", "/t", headers={"Connection": "Upgrade", "Upgrade": "echo"}) + b"early bytes\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await reader.readline() == b"hello from server\n"
        assert await reader.readline() == b"EARLY BYTES\n"
        writer.write(b"GET / HTTP/1.1\r\n\r\n")  # not HTTP any more: passed as it is
        assert await reader.readuntil(b"\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"
        writer.write_eof()
        assert await reader.read() == b""  # the server's close reaches the client
    writer.close()
    assert srv.connections == 1


async def test_refused_upgrade_is_a_normal_response(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/", headers={"Connection": "Upgrade", "Upgrade": "nonsense"}))
    r = await client.response()
    assert (r.status, r.body) == (200, b"web1")
    await client.close()
