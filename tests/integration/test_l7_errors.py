"""L7 errors end to end, as HAProxy gives them: 400 for malformed requests and smuggling shapes
(never forwarded), 408 request timeout, 502 invalid or truncated server response, 503 no server,
504 server timeout; retries on the next server; timeouts that must not strike while data flows."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from helpers import topology

from rawhttp import RawClient, Truncated, request
from virtserve.engine.config.model import Timeouts

pytestmark = pytest.mark.timeout(30)


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _error(lb, data: bytes, *, timeout: float = 5.0) -> tuple[int, bytes, bool]:
    """Send raw bytes; the status and body of the one response, and whether the proxy closed."""
    client = await RawClient.connect(*lb.address)
    await client.send(data)
    r = await client.response(timeout=timeout)
    closed = await client.closed(timeout=2)
    await client.close()
    return r.status, r.body, closed


MALFORMED = {
    "garbage request line": b"THIS IS NOT HTTP\r\n\r\n",
    "bad method token": b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "content-length and transfer-encoding": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding and content-length": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                            b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate differing content-length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                          b"Content-Length: 6\r\n\r\nhello!",
    "content-length list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: a\n\n",
    "transfer-encoding not chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx",
    "chunked twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "HTTP/0.9": b"GET /\r\n\r\n",
    "unknown version": b"GET / HTTP/1.7\r\nHost: a\r\n\r\n",
    "oversized head in one send": b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-H: v\r\n" * 6000 + b"\r\n",
    "oversized url": b"GET /" + b"u" * 70000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_request_400_then_close_never_forwarded(raw_server, balancer, data):
    async def never(reader, writer):  # any connection here is a failure
        await reader.read(65536)

    srv = await raw_server(never)
    lb = await balancer(topology([srv.port]))
    status, body, closed = await _error(lb, data)
    assert status == 400 and b"400 Bad request" in body and len(body) < 200
    assert closed
    assert srv.connections == 0


async def test_oversized_head_dribbled_is_400(raw_server, balancer):
    async def never(reader, writer):
        await reader.read(65536)

    srv = await raw_server(never)
    lb = await balancer(topology([srv.port]))
    loop = asyncio.get_running_loop()
    # A plain socket: after a failed send, what the proxy sent before closing is still readable
    # (an asyncio stream would raise the send error instead).
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, lb.address)
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
        try:
            for _ in range(100):  # 100 KiB of one header value, a KiB at a time, never ending
                await loop.sock_sendall(sock, b"v" * 1024)
                await asyncio.sleep(0.001)
        except OSError:
            pass  # the proxy answered and closed while we were still sending
        got = b""
        async with asyncio.timeout(5):
            try:
                while data := await loop.sock_recv(sock, 65536):
                    got += data
            except ConnectionResetError:
                pass
    assert got.startswith(b"HTTP/1.1 400 Bad request\r\n")
    assert srv.connections == 0


async def test_smuggling_after_a_valid_pipelined_request(backends, balancer):
    """The valid request before the bad one is answered first; the bad one is never forwarded."""
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/") + request("POST", "/echo", body=b"ok body")
                      + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await client.response()).body == b"web1"
    assert (await client.response()).body == b"ok body"
    assert (await client.response()).status == 400
    assert await client.closed()
    await client.close()
    assert web1.requests == 2


async def test_bad_chunk_mid_body_is_400_and_server_side_dropped(raw_server, balancer):
    got: list[bytes] = []

    async def handle(reader, writer):
        got.append(await reader.read(65536))
        await reader.read(65536)  # wait for the proxy to drop us

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    async with asyncio.timeout(5):
        while srv.connections == 0 or not got:
            await asyncio.sleep(0.01)
    await client.send(b"nonsense\r\n\r\n")
    r = await client.response()
    assert r.status == 400
    assert await client.closed()
    await client.close()
    assert lb.engine.pool.idle_count() == 0


async def test_connect_method_405(raw_server, balancer):
    async def never(reader, writer):
        await reader.read(65536)

    srv = await raw_server(never)
    lb = await balancer(topology([srv.port]))
    status, _, closed = await _error(lb, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert status == 405 and closed
    assert srv.connections == 0


async def test_request_timeout_408_on_a_stalled_head(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], timeouts=Timeouts(http_request=0.3)))
    client = await RawClient.connect(*lb.address)
    await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Half: ")
    r = await client.response(timeout=3)
    assert r.status == 408 and b"408 Request Time-out" in r.body
    assert await client.closed()
    await client.close()
    assert web1.requests == 0


async def test_request_timeout_408_on_the_second_request_of_a_connection(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], timeouts=Timeouts(http_request=0.3)))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    assert (await client.response()).status == 200
    await client.send(b"GET / HTTP/1.1\r\n")
    assert (await client.response(timeout=3)).status == 408
    await client.close()


async def test_stalled_request_body_408(raw_server, balancer):
    async def waits(reader, writer):
        await reader.read(-1)

    srv = await raw_server(waits)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(client=0.3)))
    client = await RawClient.connect(*lb.address)
    await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
    r = await client.response(timeout=3)
    assert r.status == 408
    assert await client.closed()
    await client.close()


def _server(response: bytes, *, then_close: bool = True):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        if not then_close:
            await reader.read(-1)

    return handle


async def test_garbage_server_response_502(raw_server, balancer):
    srv = await raw_server(_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    lb = await balancer(topology([srv.port]))
    status, body, closed = await _error(lb, request("GET", "/"))
    assert status == 502 and b"502 Bad Gateway" in body and closed


async def test_invalid_server_header_502(raw_server, balancer):
    srv = await raw_server(_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello", then_close=False))
    lb = await balancer(topology([srv.port]))
    status, _, closed = await _error(lb, request("GET", "/"))
    assert status == 502 and closed


async def test_endless_server_head_502(raw_server, balancer):
    sent = 0

    async def endless(reader, writer):
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        while sent < 10 * 1024 * 1024:
            writer.write(b"a" * 65536)
            sent += 65536
            await writer.drain()

    srv = await raw_server(endless)
    lb = await balancer(topology([srv.port]))
    status, _, closed = await _error(lb, request("GET", "/"))
    assert status == 502 and closed
    assert sent < 10 * 1024 * 1024  # cut off early: the head was not held without bound


async def test_server_closes_before_answering_502(raw_server, balancer):
    srv = await raw_server(_server(b""))
    lb = await balancer(topology([srv.port]))
    status, body, closed = await _error(lb, request("GET", "/"))
    assert status == 502 and closed


async def test_server_closes_mid_head_502(raw_server, balancer):
    srv = await raw_server(_server(b"HTTP/1.1 200 OK\r\nContent-Len"))
    lb = await balancer(topology([srv.port]))
    status, _, closed = await _error(lb, request("GET", "/"))
    assert status == 502 and closed


async def test_server_closes_mid_body_client_sees_truncation(raw_server, balancer):
    srv = await raw_server(_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 100))
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    with pytest.raises(Truncated) as info:
        await client.response(timeout=5)  # a close, not a hang and not a made-up ending
    assert info.value.status == 200 and info.value.received == 100
    await client.close()
    async with aiohttp.ClientSession() as s, asyncio.timeout(5):
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(lb.url + "/") as r:
                await r.read()
    assert lb.engine.pool.idle_count() == 0


async def test_server_closes_mid_chunked_body_client_sees_truncation(raw_server, balancer):
    srv = await raw_server(_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    with pytest.raises(Truncated):
        await client.response(timeout=5)
    await client.close()


async def test_close_delimited_response_forwarded_whole(raw_server, balancer):
    body = b"no length, ended by the close " * 1000
    srv = await raw_server(_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body))
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    r = await client.response()
    assert (r.status, r.body) == (200, body)
    await client.close()


async def test_close_delimited_response_with_a_long_head(raw_server, balancer):
    """The head arrives in several pieces: framing must be judged on the whole head."""
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 3000 + b"\r\n" + b"X-Note: content-length: 5\r\n\r\n"

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        for i in range(0, len(head), 500):
            writer.write(head[i:i + 500])
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"the body")

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("GET", "/"))
    r = await client.response()
    assert (r.status, r.body) == (200, b"the body")
    await client.close()


async def test_no_server_available_503(balancer):
    lb = await balancer(topology([_free_port(), _free_port()], retries=2))
    status, body, closed = await _error(lb, request("GET", "/"))
    assert status == 503 and b"503 Service Unavailable" in body and closed
    assert sum(s["failures"] for s in lb.servers()) == 3  # the first try and two retries
    assert all(s["active"] == 0 for s in lb.servers())


async def test_server_timeout_504(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], timeouts=Timeouts(server=0.3)))
    status, body, closed = await _error(lb, request("GET", "/slow/1"), timeout=3)
    assert status == 504 and b"504 Gateway Time-out" in body and closed
    assert lb.engine.pool.idle_count() == 0
    assert lb.servers()[0]["active"] == 0


async def test_unreachable_server_retried_on_the_next_one(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([_free_port(), web1.port]))
    async with aiohttp.ClientSession() as s, asyncio.timeout(10):
        for _ in range(6):
            async with s.get(lb.url + "/") as r:
                assert r.status == 200 and await r.text() == "web1"
    assert web1.requests == 6
    assert lb.servers()[0]["failures"] >= 1
    assert all(s["active"] == 0 for s in lb.servers())


async def test_server_closing_pooled_connections_is_retried(raw_server, balancer):
    """A server that closes each keep-alive connection right after answering: the proxy may
    pick a connection whose close it has not seen yet, and must retry, not answer 502."""
    async def one_per_connection(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await raw_server(one_per_connection)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(20):
        await client.send(request("GET", "/"))
        assert (await client.response()).body == b"ok"
    await client.close()


@pytest.mark.parametrize("junk", [b"JUNK", b"HTTP/1.1 204 No Content\r\nX-Injected: 1\r\n\r\n"],
                         ids=["junk", "a whole injected response"])
async def test_body_after_a_head_response_not_forwarded(raw_server, balancer, junk):
    """A server that sends a body after its response to HEAD: the client must not get it (as
    the start of its next response), and the connection carrying it must not be reused."""
    async def head_with_body(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            body = junk if head.startswith(b"HEAD") else b"good"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()

    srv = await raw_server(head_with_body)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(3):
        await client.send(request("HEAD", "/"))
        assert (await client.head_response()).header("Content-Length") == str(len(junk))
        await client.send(request("GET", "/"))
        r = await client.response()
        assert (r.status, r.body) == (200, b"good")
    await client.close()


async def test_slow_upload_does_not_trip_the_server_timeout(raw_server, balancer):
    """The server timeout is about the server's silence; a body still being sent to it keeps
    the exchange alive (as HAProxy refreshes the read timeout on writes)."""
    async def reads_then_answers(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(n)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await raw_server(reads_then_answers)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(server=0.4)))
    client = await RawClient.connect(*lb.address)
    await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    for _ in range(10):
        await asyncio.sleep(0.1)
        await client.send(b"x")
    assert (await client.response()).body == b"ok"
    await client.close()


async def test_one_way_tunnel_traffic_keeps_the_tunnel_open(raw_server, balancer):
    async def quiet_until_asked(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
        while line := await reader.readline():
            if line == b"ping\n":
                writer.write(b"pong\n")

    srv = await raw_server(quiet_until_asked)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(server=0.4, client=0.4)))
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(request("GET", "/", headers={"Connection": "Upgrade", "Upgrade": "x"}))
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        for _ in range(10):  # 1 s of client-to-server traffic only
            writer.write(b"tick\n")
            await asyncio.sleep(0.1)
        writer.write(b"ping\n")
        assert await reader.readline() == b"pong\n"
    writer.close()


async def test_all_servers_down_503(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    backend = lb.engine.backends["vs"]
    for server in backend.servers:
        backend.set_up(server, False, "test")
    status, body, closed = await _error(lb, request("GET", "/"))
    assert status == 503 and closed
    backend.set_up(backend.servers[1], True)
    async with aiohttp.ClientSession() as s, asyncio.timeout(5):
        async with s.get(lb.url + "/") as r:
            assert await r.text() == "web2"
    assert web1.requests == 0
