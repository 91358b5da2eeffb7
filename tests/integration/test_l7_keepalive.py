"""L7 connection handling end to end: client keep-alive with a per-request scheduler pick, pooled
keep-alive connections to the servers, pipelining answered in order, Connection: close, HTTP/1.0,
HEAD and half-closed clients."""
from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import pytest
from helpers import topology
from rawhttp import RawClient, request

from virtserve.engine.config.model import Timeouts

pytestmark = pytest.mark.timeout(30)


def named_http(name: str):
    """A minimal keep-alive HTTP/1.1 server (for RawServer) answering NAME to every request, so a
    test can count the TCP connections the proxy opened (RawServer.connections)."""
    body = name.encode()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            writer.write(response)
            await writer.drain()

    return handle


async def test_keep_alive_picks_per_request_and_pools_server_connections(raw_server, balancer):
    s1, s2 = await raw_server(named_http("s1")), await raw_server(named_http("s2"))
    lb = await balancer(topology([s1.port, s2.port]))
    client = await RawClient.connect(*lb.address)
    names = []
    for _ in range(20):
        await client.send(request("GET", "/"))
        r = await client.response()
        assert r.status == 200
        names.append(r.body.decode())
    await client.close()
    assert names == ["s1", "s2"] * 10  # one client connection, balanced request by request
    assert (s1.connections, s2.connections) == (1, 1)  # and one pooled connection per server


async def test_concurrent_clients_share_pooled_server_connections(raw_server, balancer):
    s1, s2 = await raw_server(named_http("s1")), await raw_server(named_http("s2"))
    lb = await balancer(topology([s1.port, s2.port]))

    async def one_client() -> list[str]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            return [await (await s.get(lb.url + "/")).text() for _ in range(10)]

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(one_client() for _ in range(8)))
    names = [n for r in results for n in r]
    assert len(names) == 80 and names.count("s1") == names.count("s2") == 40
    # At most one server connection per request in flight; far fewer than requests.
    assert s1.connections + s2.connections <= 16
    assert lb.engine.pool.idle_count() == s1.connections + s2.connections  # all parked again


async def test_aiohttp_backend_sees_pooled_connections(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    async with aiohttp.ClientSession() as s:
        for _ in range(10):
            async with s.get(lb.url + "/headers") as r:
                assert r.status == 200
                await r.json()
    assert web1.requests == web2.requests == 5
    assert lb.engine.pool.idle_count() == 2


async def test_pipelined_requests_answered_in_order(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(
        request("GET", "/")
        + request("POST", "/echo", body=b"first body")
        + request("GET", "/status/201")
        + request("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=b"5\r\nchunk\r\n3\r\ned!\r\n0\r\n\r\n")
        + request("GET", "/bytes/100000")
        + request("POST", "/echo", body=b"last")
    )
    got = [await client.response() for _ in range(6)]
    assert [r.status for r in got] == [200, 200, 201, 200, 200, 200]
    assert [r.body for r in got[:4]] == [b"web1", b"first body", b"web1", b"chunked!"]
    assert got[4].body == b"x" * 100000
    assert got[5].body == b"last"
    # Still open and usable afterwards.
    await client.send(request("GET", "/"))
    assert (await client.response()).body == b"web1"
    await client.close()
    assert web1.requests == 7


async def test_pipelined_responses_keep_order_across_servers(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    client = await RawClient.connect(*lb.address)
    # The first answer is slow, the second would be ready at once: order must still hold.
    await client.send(request("GET", "/slow/0.3") + request("GET", "/") + request("GET", "/"))
    bodies = [(await client.response()).body for _ in range(3)]
    assert bodies == [b"web1", b"web2", b"web1"]
    await client.close()


async def test_pipelined_request_with_body_split_across_sends(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    body = bytes(range(256)) * 1024  # 256 KiB: more than the proxy holds while connecting
    second = request("POST", "/echo", body=body)
    await client.send(request("GET", "/slow/0.2") + second[:1000])
    await asyncio.sleep(0.05)
    await client.send(second[1000:] + request("GET", "/"))
    got = [await client.response() for _ in range(3)]
    assert [r.body for r in got] == [b"web1", body, b"web1"]
    await client.close()


async def test_client_connection_close(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/", headers={"Connection": "close"}))
    r = await client.response()
    assert (r.status, r.body) == (200, b"web1")
    assert await client.closed(timeout=2)
    await client.close()
    # The server side is still pooled: the client's close is not forwarded.
    assert lb.engine.pool.idle_count() == 1


async def test_http10_request_answered_then_closed(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(b"GET / HTTP/1.0\r\n\r\n")
    r = await client.response()
    assert (r.status, r.body) == (200, b"web1")
    assert await client.closed(timeout=2)
    await client.close()


async def test_http10_keep_alive_when_asked(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(3):
        await client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = await client.response()
        assert (r.status, r.body) == (200, b"web1")
        assert r.header("Connection").lower() == "keep-alive"  # what the client is told
    await client.close()


async def test_http10_with_curl(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    for extra, connects in (([], "1 1"), (["-H", "Connection: keep-alive"], "1 0")):
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-0", *extra, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects} ",
            lb.url + "/", lb.url + "/", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err
        # Plain HTTP/1.0: a connection per request. Asking for keep-alive: one for both.
        codes = out.decode().split()
        assert codes[0::2] == ["200", "200"] and " ".join(codes[1::2]) == connects


async def test_head_then_get_on_one_connection(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(2):
        await client.send(request("HEAD", "/"))
        r = await client.head_response()
        assert r.status == 200 and r.header("Content-Length") == "4"  # announced, never sent
        await client.send(request("GET", "/bytes/7"))
        r = await client.response()
        assert (r.status, r.body) == (200, b"xxxxxxx")  # nothing stray in front of it
    await client.close()
    assert web1.requests == 4
    assert lb.engine.pool.idle_count() == 1  # the HEAD exchanges left the connection reusable


async def test_half_closed_client_is_answered_then_closed(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))  # keep-alive timeout 10 s
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/") + request("GET", "/status/202"))
    client.writer.write_eof()
    assert (await client.response()).body == b"web1"
    assert (await client.response()).status == 202
    assert await client.closed(timeout=2)  # not after the keep-alive timeout
    await client.close()


async def test_idle_keep_alive_client_closed_after_timeout(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], timeouts=Timeouts(keep_alive=0.3)))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    assert (await client.response()).status == 200
    assert await client.closed(timeout=3)
    await client.close()


async def test_many_pipelined_requests_in_one_send(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    client = await RawClient.connect(*lb.address)
    n = 300
    await client.send(b"".join(request("GET", f"/status/{200 + i % 7}") for i in range(n)))
    statuses = [(await client.response()).status for _ in range(n)]
    assert statuses == [200 + i % 7 for i in range(n)]
    await client.close()
    assert web1.requests == web2.requests == n // 2


async def test_server_connection_close_reaches_the_client(raw_server, balancer):
    """The server's `Connection: close` is forwarded as it is (responses pass as bytes), so the
    proxy does what the client was told: closes after that response. Not pooled either."""
    async def closes_each(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await raw_server(closes_each)
    lb = await balancer(topology([srv.port]))
    for _ in range(3):
        client = await RawClient.connect(*lb.address)
        await client.send(request("GET", "/"))
        r = await client.response()
        assert r.body == b"ok" and r.header("Connection") == "close"
        assert await client.closed(timeout=2)
        await client.close()
    assert srv.connections == 3 and lb.engine.pool.idle_count() == 0


async def test_http10_server_answer_without_keep_alive(raw_server, balancer):
    async def old_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold")
        await writer.drain()
        await reader.read(-1)  # leaves closing to the proxy

    srv = await raw_server(old_server)
    lb = await balancer(topology([srv.port]))
    async with aiohttp.ClientSession() as s, asyncio.timeout(5):
        for _ in range(3):
            async with s.get(lb.url + "/") as r:
                assert await r.text() == "old"
    assert srv.connections == 3


async def test_interim_and_bodiless_responses(raw_server, balancer):
    async def answers(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /hints "):
                writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints")
            elif head.startswith(b"GET /204 "):
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
            await writer.drain()

    srv = await raw_server(answers)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/hints"))
    assert (await client.response()).body == b"hints"
    await client.send(request("GET", "/204") + request("GET", "/304") + request("GET", "/hints"))
    assert [(await client.response()).status for _ in range(3)] == [204, 304, 200]
    await client.close()
    assert srv.connections == 1


async def test_client_leaving_mid_response_frees_the_server_side(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(request("GET", f"/bytes/{20 << 20}"))
    async with asyncio.timeout(5):
        await reader.readexactly(100_000)
    writer.close()  # gone mid-response
    async with asyncio.timeout(5):
        while lb.engine.state.conns:  # both sides closed; nothing parked mid-response
            await asyncio.sleep(0.02)
    assert lb.engine.pool.idle_count() == 0
    assert lb.servers()[0]["active"] == 0
    async with aiohttp.ClientSession() as s, asyncio.timeout(5):
        async with s.get(lb.url + "/") as r:
            assert await r.text() == "web1"
