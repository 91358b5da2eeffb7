"""L7 bodies end to end: Content-Length and chunked bodies streamed both ways, large uploads and
downloads intact, and a client that stops reading holds the proxy's memory bounded (asserted on
the transports' buffers and read state, never on timing)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess

import aiohttp
import pytest
from helpers import topology

from rawhttp import RawClient, request
from virtserve.engine.config.model import Timeouts
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.l7.upstream import HttpUpstreamProtocol

pytestmark = pytest.mark.timeout(40)

MiB = 1 << 20
PAYLOAD = os.urandom(MiB) * 20  # 20 MiB, not compressible, repeating is fine


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_large_upload_content_length_echoed(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    async with aiohttp.ClientSession() as s, asyncio.timeout(20):
        async with s.post(lb.url + "/echo", data=PAYLOAD) as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(PAYLOAD))
            body = await r.read()
    assert len(body) == len(PAYLOAD) and _digest(body) == _digest(PAYLOAD)


async def test_large_upload_chunked_echoed_chunked(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))

    async def gen():
        for i in range(0, len(PAYLOAD), 300_000):  # odd piece size: chunks never align
            yield PAYLOAD[i:i + 300_000]

    async with aiohttp.ClientSession() as s, asyncio.timeout(20):
        async with s.post(lb.url + "/echo", data=gen()) as r:
            assert r.status == 200
            assert r.headers.get("Transfer-Encoding") == "chunked"  # the server's framing kept
            body = await r.read()
    assert _digest(body) == _digest(PAYLOAD)


async def test_curl_upload_with_expect_continue(backends, balancer, tmp_path):
    """curl sends `Expect: 100-continue` for a body this large: the interim 100 passes through."""
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    src, out = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(PAYLOAD[:5 * MiB])
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--fail", "-o", str(out), "-w", "%{http_code}", *extra,
            "--data-binary", f"@{src}", lb.url + "/echo", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        async with asyncio.timeout(20):
            stdout, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr
        assert stdout == b"200"
        assert _digest(out.read_bytes()) == _digest(PAYLOAD[:5 * MiB])


async def test_large_download_intact(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    n = 30 * MiB + 123
    async with aiohttp.ClientSession() as s, asyncio.timeout(20):
        async with s.get(lb.url + f"/bytes/{n}") as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(n)
            got = 0
            async for piece in r.content.iter_chunked(MiB):
                assert piece.count(b"x") == len(piece)
                got += len(piece)
    assert got == n


def chunked_server(pieces: list[bytes], trailer: bytes = b""):
    """A raw server answering each request with a chunked response made of exactly these chunks."""
    body = b"".join(b"%x;ext=1\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailer + b"\r\n"
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Raw: yes\r\n\r\n" + body

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            for i in range(0, len(response), 7):  # dribbled: framing must not depend on reads
                writer.write(response[i:i + 7])
            await writer.drain()

    return handle, response


async def test_chunked_response_passes_through(raw_server, balancer):
    handle, wire = chunked_server([b"hello ", b"chunked ", b"x" * 70000, b"world"], trailer=b"X-Sum: 1\r\n")
    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    for _ in range(2):  # and the connection stays usable after it
        await client.send(request("GET", "/"))
        r = await client.response()
        assert r.status == 200 and r.header("Transfer-Encoding") == "chunked"
        assert r.body == b"hello chunked " + b"x" * 70000 + b"world"
    await client.close()
    # Forwarded byte for byte (extensions, trailer and all): read it raw. The client asked to
    # close, so its head also says so (the one edit the proxy makes).
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(request("GET", "/", headers={"Connection": "close"}))
    async with asyncio.timeout(5):
        raw = await reader.read(-1)
    writer.close()
    assert raw == wire.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)
    assert srv.connections == 1


async def test_request_trailers_dropped_body_rechunked(raw_server, balancer):
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"0\r\n\r\n")
        seen.append(head + body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port]))
    client = await RawClient.connect(*lb.address)
    await client.send(request("POST", "/", headers={"Transfer-Encoding": "chunked"},
                              body=b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"))
    assert (await client.response()).body == b"ok"
    await client.close()
    head, body = seen[0].split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


def _proxy_sides(lb) -> tuple[HttpProxyProtocol, HttpUpstreamProtocol | None]:
    clients = [c for c in lb.engine.state.conns if isinstance(c, HttpProxyProtocol)]
    assert len(clients) == 1
    client = clients[0]
    ups = [c for c in lb.engine.state.conns if isinstance(c, HttpUpstreamProtocol) and c.client is client]
    return client, (ups[0] if ups else None)


async def _wait_paused(lb, timeout: float = 10.0) -> tuple[HttpProxyProtocol, HttpUpstreamProtocol]:
    async with asyncio.timeout(timeout):
        while True:
            client, up = _proxy_sides(lb)
            assert client.transport.get_write_buffer_size() < MiB  # not buffering it all
            if up is not None and not up.transport.is_reading():
                return client, up
            await asyncio.sleep(0.02)


async def _client_side(lb) -> HttpProxyProtocol:
    async with asyncio.timeout(5):
        while True:
            clients = [c for c in lb.engine.state.conns if isinstance(c, HttpProxyProtocol)]
            if clients:
                assert len(clients) == 1
                return clients[0]
            await asyncio.sleep(0.01)


def _shrink_send_buffer(proto: HttpProxyProtocol) -> None:
    """Make the proxy's kernel send buffer to the client tiny, as a slow network path would, so
    what the client does not read piles up in the transport where the test can see it."""
    proto.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def _small_rcvbuf_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def test_slow_reader_keeps_proxy_memory_bounded(backends, balancer):
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port]))
    sock = _small_rcvbuf_socket()
    await asyncio.get_running_loop().sock_connect(sock, lb.address)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request("GET", f"/bytes/{50 * MiB}"))  # and then read nothing
    client, up = await _wait_paused(lb)
    for _ in range(10):  # it stays so: the server side is not read while the client is full
        await asyncio.sleep(0.05)
        c2, up2 = _proxy_sides(lb)
        assert (c2, up2) == (client, up)
        assert client.transport.get_write_buffer_size() < MiB
        assert not up.transport.is_reading()
        assert up.transport.get_write_buffer_size() == 0
    writer.close()
    # The client goes away mid-response: the server connection is dropped, not pooled.
    async with asyncio.timeout(5):
        while up.transport is not None and not up.transport.is_closing():
            await asyncio.sleep(0.02)
    assert lb.engine.pool.idle_count() == 0


async def test_slow_reader_of_pipelined_responses_stays_bounded(raw_server, balancer):
    """The first response ends while the client's buffer is still full, and the second exchange
    starts then: its server connection must start paused, not read 50 MB into memory."""
    first = b"f" * 120_000
    second_started = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /first "):  # in one write: read by the proxy in one go
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(first), first))
                await writer.drain()
                continue
            second_started.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (50 * MiB))
            piece = b"s" * 65536
            for _ in range(50 * 16):
                writer.write(piece)
                await writer.drain()

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port]))
    sock = _small_rcvbuf_socket()
    await asyncio.get_running_loop().sock_connect(sock, lb.address)
    reader, writer = await asyncio.open_connection(sock=sock)
    client = await _client_side(lb)
    _shrink_send_buffer(client)
    writer.write(request("GET", "/first") + request("GET", "/second"))  # then read nothing
    async with asyncio.timeout(5):
        await second_started.wait()
    _, up = await _wait_paused(lb)
    for _ in range(10):
        await asyncio.sleep(0.05)
        assert client.transport.get_write_buffer_size() < MiB
        assert not up.transport.is_reading()
    writer.close()


async def test_pooled_connection_reads_again_after_a_slow_reader(raw_server, balancer):
    """A response that ends while the client's buffer is full must not park its server
    connection paused: the next request on it would never get its answer."""
    body = b"y" * 200_000
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)  # one write: the proxy tends to read it in one go
            await writer.drain()

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(server=3)))
    for _ in range(5):
        sock = _small_rcvbuf_socket()
        await asyncio.get_running_loop().sock_connect(sock, lb.address)
        reader, writer = await asyncio.open_connection(sock=sock)
        _shrink_send_buffer(await _client_side(lb))
        writer.write(request("GET", "/"))
        async with asyncio.timeout(5):
            while lb.engine.pool.idle_count() == 0:  # the whole response left the server side
                await asyncio.sleep(0.01)
            data = b""
            while len(data) < len(response):
                data += await reader.read(65536)
        assert data == response
        writer.close()
        parked = [c for c in lb.engine.state.conns if isinstance(c, HttpUpstreamProtocol) and c.client is None]
        assert parked and all(c.transport.is_reading() for c in parked)
    async with aiohttp.ClientSession() as s, asyncio.timeout(2):  # well under the 3 s server timeout
        async with s.get(lb.url + "/") as r:
            assert await r.read() == body
    assert srv.connections == 1


async def test_slow_reader_is_not_cut_by_the_server_timeout(backends, balancer):
    """While the client does not read, the server side is not read either: the server is not
    late, so its timeout must not strike (only the client's may)."""
    (web1,) = await backends("web1")
    lb = await balancer(topology([web1.port], timeouts=Timeouts(server=0.3, client=10)))
    sock = _small_rcvbuf_socket()
    await asyncio.get_running_loop().sock_connect(sock, lb.address)
    reader, writer = await asyncio.open_connection(sock=sock)  # reads at most 128 KiB ahead
    _shrink_send_buffer(await _client_side(lb))
    n = 4 * MiB
    writer.write(request("GET", f"/bytes/{n}"))
    await _wait_paused(lb)
    await asyncio.sleep(1.0)  # more than three server timeouts without reading a byte
    client = RawClient(reader, writer)
    r = await client.response(timeout=10)
    assert r.status == 200 and len(r.body) == n
    await client.close()


async def test_slow_server_reading_an_upload_is_not_a_client_timeout(raw_server, balancer):
    """While the server does not read the body, the client is not read either: the client
    is not late, so no 408."""
    n = 8 * MiB

    async def late_reader(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1.0)  # more than three client timeouts
        await reader.readexactly(n)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await raw_server(late_reader)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(client=0.3, server=10)))
    client = await RawClient.connect(*lb.address)
    client.writer.write(request("POST", "/", body=b"u" * n))
    r = await client.response(timeout=10)
    assert (r.status, r.body) == (200, b"ok")
    await client.close()


async def test_client_that_never_reads_the_end_is_cut_after_client_timeout(raw_server, balancer):
    """The whole response is in the proxy's buffer and the connection is closing (Connection:
    close), but the client never reads: after `timeout client` the proxy lets go of it."""
    body = b"e" * 110_000  # read by the proxy in one go, more than the kernel takes

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()
        await reader.read(-1)

    srv = await raw_server(handle)
    lb = await balancer(topology([srv.port], timeouts=Timeouts(client=0.3)))
    sock = _small_rcvbuf_socket()
    await asyncio.get_running_loop().sock_connect(sock, lb.address)
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)  # reads ahead 2 KiB
    client = await _client_side(lb)
    _shrink_send_buffer(client)
    writer.write(request("GET", "/", headers={"Connection": "close"}))
    async with asyncio.timeout(5):
        while not client.closed:  # the response is complete: the proxy is closing
            await asyncio.sleep(0.01)
        assert client.blocked and client.transport.get_write_buffer_size() > 0
        while client in lb.engine.state.conns:  # and then gone, though never read
            await asyncio.sleep(0.02)
    writer.close()
