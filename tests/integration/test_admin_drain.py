"""Drain a server through each of the three ways an operator steers one live (the stats page's
admin form, the runtime socket, the embedding API), in mode http and mode tcp: the request or
connection already on it finishes, and new ones go to the other server."""
import asyncio

import aiohttp
import pytest
from admin_helpers import admin_topology, stats_url
from l4helpers import active, hold, naming, wait_for

from virtserve.engine.admin.socket import send

pytestmark = pytest.mark.timeout(30)

WAYS = ("form", "socket", "api")


def held_http(name: str, release: asyncio.Event):
    """An HTTP/1.1 server answering its name; a request for /hold waits for `release` first."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            if head.split(b" ", 2)[1] == b"/hold":
                await release.wait()
            body = name.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    return handle


def _config(ports, mode, way, tmp_path):
    stats = {"admin": True} if way == "form" else {"page": False}
    if way == "socket":
        stats["socket"] = str(tmp_path / "admin.sock")
    return admin_topology(ports, mode=mode, stats=stats)


async def _drain(lb, way, tmp_path):
    if way == "form":
        async with aiohttp.ClientSession() as s:
            async with s.post(stats_url(lb), data={"b": "vs", "s": "s1", "action": "drain"}) as r:
                assert r.status == 200 and "Action: DONE" in await r.text()
    elif way == "socket":
        answer = await asyncio.to_thread(send, str(tmp_path / "admin.sock"), "set server vs/s1 state drain")
        assert answer == "\n"
    else:
        assert lb.set_server("vs", "s1", state="drain")["admin"] == "drain"
    status = {s["name"]: s["admin"] for s in lb.servers()}
    assert status == {"s1": "drain", "s2": "ready"}


@pytest.mark.parametrize("way", WAYS)
async def test_http_drain_finishes_the_request_in_flight_and_sends_new_ones_elsewhere(
        raw_server, balancer, tmp_path, way):
    release = asyncio.Event()
    web1 = await raw_server(held_http("web1", release))
    web2 = await raw_server(held_http("web2", release))
    lb = await balancer(_config([web1.port, web2.port], "http", way, tmp_path))
    async with aiohttp.ClientSession() as long_client, aiohttp.ClientSession() as client:
        held = asyncio.ensure_future(long_client.get(lb.url + "/hold"))  # rr: s1 first
        await wait_for(lambda: active(lb)["s1"] == 1)
        await _drain(lb, way, tmp_path)
        seen = []
        for _ in range(6):
            async with client.get(lb.url + "/") as r:
                seen.append(await r.text())
        assert seen == ["web2"] * 6
        assert active(lb) == {"s1": 1, "s2": 0} and not held.done()  # still in flight on s1
        release.set()
        async with asyncio.timeout(5):
            resp = await held
        assert resp.status == 200 and await resp.text() == "web1"
    await wait_for(lambda: active(lb)["s1"] == 0)


@pytest.mark.parametrize("way", WAYS)
async def test_tcp_drain_keeps_the_established_connection_and_sends_new_ones_elsewhere(
        raw_server, balancer, tmp_path, way):
    srv1 = await raw_server(naming("s1"))
    srv2 = await raw_server(naming("s2"))
    lb = await balancer(_config([srv1.port, srv2.port], "tcp", way, tmp_path))
    established = await hold(lb)  # rr: s1 first
    assert established.name == "s1"
    await _drain(lb, way, tmp_path)
    new = [await hold(lb) for _ in range(4)]
    try:
        assert [h.name for h in new] == ["s2"] * 4
        assert active(lb) == {"s1": 1, "s2": 4}
        established.writer.write(b"still here\n")  # the drained server's connection still relays
        async with asyncio.timeout(5):
            assert await established.reader.readline() == b"still here\n"
    finally:
        established.close()
        for h in new:
            h.close()
    await wait_for(lambda: active(lb) == {"s1": 0, "s2": 0})
