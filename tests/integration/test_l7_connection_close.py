"""The proxy tells the client when it will close: a response it follows by closing the client
connection carries `connection: close` (inserted, or in place of the server's keep-alive), as
HAProxy does; keep-alive responses pass byte for byte."""
from __future__ import annotations

import asyncio
import shutil
import sys

import pytest
from helpers import topology
from rawhttp import RawClient, request

pytestmark = pytest.mark.timeout(60)

BODY = b"hello"


def nginx_like(*, extra: bytes = b""):
    """A keep-alive server that says `Connection: keep-alive`, as nginx does; it records the
    exact response bytes it sent."""
    response = (b"HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
                + extra + b"\r\n" + BODY)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()

    handle.response = response  # type: ignore[attr-defined]
    return handle


async def _head_of(client: RawClient) -> bytes:
    """The next response head's raw bytes (5-byte bodies follow)."""
    async with asyncio.timeout(5):
        head = await client.reader.readuntil(b"\r\n\r\n")
        await client.reader.readexactly(len(BODY))
    return head


def _connection_values(head: bytes) -> list[bytes]:
    return [line.split(b":", 1)[1].strip().lower() for line in head.split(b"\r\n")
            if line.lower().startswith(b"connection:")]


async def test_keep_alive_response_passes_unchanged(raw_server, balancer):
    handler = nginx_like()
    srv = await raw_server(handler)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(2):
        await client.send(request("GET", "/"))
        assert await _head_of(client) + BODY == handler.response
    await client.close()


@pytest.mark.parametrize("raw", [
    request("GET", "/", headers={"Connection": "close"}),
    request("GET", "/", headers={"Connection": "Close"}),
    b"GET / HTTP/1.0\r\n\r\n",
])
async def test_closing_client_is_told_close_in_place_of_keep_alive(raw_server, balancer, raw):
    srv = await raw_server(nginx_like(extra=b"X-After: 1\r\n"))
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(raw)
    head = await _head_of(client)
    assert _connection_values(head) == [b"close"]
    assert b"X-After: 1\r\n" in head and b"Server: raw\r\n" in head  # the rest untouched
    assert await client.closed(timeout=2)
    await client.close()


async def test_close_inserted_when_the_server_says_nothing(backends, balancer):
    (web1,) = await backends("web1")  # aiohttp: HTTP/1.1 keep-alive, no Connection header
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/", headers={"Connection": "close"}))
    r = await client.response()
    assert (r.status, r.body, r.keep_alive) == (200, b"web1", False)
    assert r.header_all("Connection") == ["close"]
    assert await client.closed(timeout=2)
    await client.close()
    assert lb.engine.pool.idle_count() == 1  # the server connection is still pooled


async def test_head_request_with_close(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("HEAD", "/", headers={"Connection": "close"}))
    r = await client.head_response()
    assert r.status == 200 and r.header("Content-Length") == "4" and r.header("Connection") == "close"
    assert await client.closed(timeout=2)
    await client.close()


async def test_pipelined_bad_request_answers_close_itself(raw_server, balancer):
    """The good requests before a refused one are answered as they are; the 400 says close (a
    client told close earlier would not read it: llhttp refuses data after `close`)."""
    srv = await raw_server(nginx_like())
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/") + request("GET", "/") + b"BAD\x01 / HTTP/1.1\r\n\r\n")
    for _ in range(2):
        assert _connection_values(await _head_of(client)) == [b"keep-alive"]
    r = await client.response()
    assert r.status == 400 and r.header("Connection") == "close"
    assert await client.closed(timeout=2)
    await client.close()


async def test_half_closed_client_told_close_on_its_last_response(raw_server, balancer):
    srv = await raw_server(nginx_like())
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    client.writer.write_eof()
    assert _connection_values(await _head_of(client)) == [b"close"]
    assert await client.closed(timeout=2)
    await client.close()


async def test_retired_frontend_and_draining_engine_tell_close(raw_server, balancer):
    srv = await raw_server(nginx_like())
    lb = await balancer(topology([srv.port]))
    (fe,) = lb.engine.frontends.values()
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    assert _connection_values(await _head_of(client)) == [b"keep-alive"]
    fe.retired = True  # what a reload does to a frontend it replaces
    await client.send(request("GET", "/"))
    assert _connection_values(await _head_of(client)) == [b"close"]
    assert await client.closed(timeout=2)
    await client.close()

    fe.retired = False
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    await _head_of(client)
    lb.engine.state.draining = True  # as Engine.drain sets it before waiting for in-flight work
    await client.send(request("GET", "/"))
    assert _connection_values(await _head_of(client)) == [b"close"]
    assert await client.closed(timeout=2)
    await client.close()
    lb.engine.state.draining = False


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_close_scenario_counts_no_errors(tmp_path):
    """wrk sends `Connection: close`; told so, it never writes a next request on a socket the
    proxy is closing (it counted a read error per request before)."""
    from virtserve.benchmarks.scenarios import BenchOptions, run_benchmarks

    report = run_benchmarks(BenchOptions(
        scenarios=("l7-close-small",), targets=("virtserve",), runs=1, duration=1.0, warmup=0.0,
        load_tool="wrk", backend="builtin", connections=8, startup_samples=0,
        out_dir=tmp_path, python=sys.executable, log=lambda msg: None, plots=False))
    (result,) = report["results"]
    runs = [r for r in result["runs"] if r["target"] == "virtserve" and "error" not in r]
    assert runs, result
    assert runs[0]["requests"] > 0 and runs[0]["error_count"] == 0, runs[0]


async def test_close_and_persistence_cookie_edit_the_same_head(raw_server, balancer):
    """Both head edits apply: the inserted Set-Cookie and the connection: close."""
    import dataclasses

    from virtserve.engine.config.model import CookieSpec

    srv = await raw_server(nginx_like())
    config = topology([srv.port])
    (backend,) = config.backends
    config = dataclasses.replace(config, backends=(dataclasses.replace(backend, cookie=CookieSpec("SRV")),))
    lb = await balancer(config)
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/", headers={"Connection": "close"}))
    head = await _head_of(client)
    assert _connection_values(head) == [b"close"]
    assert b"\r\nset-cookie: srv=s1" in head.lower()
    assert await client.closed(timeout=2)
    await client.close()
