"""Plain HTTP binds served by the engine's own reactor (engine/rawio.py) instead of the loop's
transports: the transport's asyncio semantics on real loopback sockets (backpressure with
bounded memory, half-close, abort, connection_lost once), and the proxy around it (a TLS bind
beside a raw one, reload keeping the raw listener)."""
from __future__ import annotations

import asyncio
import socket
import ssl
import struct

import aiohttp
import pytest
from helpers import topology
from tlshelpers import client_context

from virtserve.certs import LocalCA
from virtserve.engine.rawio import RawServer, RawTransport, serve
from virtserve.engine.reactor import Reactor

pytestmark = pytest.mark.timeout(30)


class Recorder(asyncio.Protocol):
    """Records what the transport calls, in order."""

    def __init__(self, keep_open_on_eof: bool = True) -> None:
        self.calls: list[str] = []
        self.data = bytearray()
        self.transport: RawTransport | None = None
        self.keep_open_on_eof = keep_open_on_eof
        self.lost = asyncio.get_running_loop().create_future()
        self.got_data = asyncio.Event()
        self.resumed = asyncio.Event()

    def connection_made(self, transport):
        self.calls.append("made")
        self.transport = transport

    def data_received(self, data):
        self.calls.append("data")
        self.data += data
        self.got_data.set()

    def eof_received(self):
        self.calls.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self):
        self.calls.append("pause")

    def resume_writing(self):
        self.calls.append("resume")
        self.resumed.set()

    def connection_lost(self, exc):
        self.calls.append("lost")
        self.lost.set_result(exc)


@pytest.fixture
async def reactor_server():
    """Factory: a Reactor listening on 127.0.0.1 making a Recorder per connection: (server,
    the Recorders so far); both closed after."""
    made: list[tuple[Reactor, RawServer]] = []

    async def start(keep_open_on_eof: bool = True) -> tuple[RawServer, list[Recorder]]:
        reactor = Reactor(asyncio.get_running_loop())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        protocols: list[Recorder] = []
        server = serve(reactor, lambda: protocols.append(Recorder(keep_open_on_eof)) or protocols[-1], sock)
        made.append((reactor, server))
        return server, protocols

    yield start
    for reactor, server in made:
        server.close()
        reactor.close()


def _clients(lb) -> list:
    """The proxy's client connections (its server connections are in state.conns too)."""
    return [c for c in lb.engine.state.conns if isinstance(getattr(c, "transport", None), RawTransport)]


async def _accepted(protocols: list[Recorder], n: int = 1) -> None:
    """Wait (bounded) until the server has made n protocols."""
    async with asyncio.timeout(5):
        while len(protocols) < n:
            await asyncio.sleep(0.01)


async def _connect(server: RawServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server.sockets[0].getsockname())


async def test_transport_reads_writes_and_reports_the_peer(reactor_server):
    server, protocols = await reactor_server()
    reader, writer = await _connect(server)
    writer.write(b"ping")
    async with asyncio.timeout(5):
        while not protocols or not protocols[0].got_data.is_set():
            await asyncio.sleep(0.01)
    proto = protocols[0]
    transport = proto.transport
    assert bytes(proto.data) == b"ping"
    assert transport.get_extra_info("peername") == writer.get_extra_info("sockname")
    assert transport.get_extra_info("sockname") == writer.get_extra_info("peername")
    assert transport.get_extra_info("ssl_object") is None
    assert transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    transport.write(b"pong")
    async with asyncio.timeout(5):
        assert await reader.readexactly(4) == b"pong"
    transport.close()
    assert transport.is_closing()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed once the buffer drained
        assert await proto.lost is None
    assert proto.calls == ["made", "data", "lost"]
    transport.close()
    transport.abort()  # both harmless once closed: connection_lost came once
    await asyncio.sleep(0.05)
    assert proto.calls.count("lost") == 1
    writer.close()


async def test_slow_reader_pauses_the_writer_with_bounded_buffer_then_gets_everything(reactor_server):
    server, protocols = await reactor_server()
    client = socket.create_connection(server.sockets[0].getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    client.setblocking(False)
    await _accepted(protocols)
    proto = protocols[0]
    transport = proto.transport
    transport.set_write_buffer_limits(high=256 * 1024)
    chunk = bytes(range(256)) * 256  # 64 KiB
    total = 0
    # Write as a proxy does: until told to pause. The kernel's buffers fill, then ours.
    while "pause" not in proto.calls:
        transport.write(chunk)
        total += len(chunk)
        assert total < 64 * 1024 * 1024, "pause_writing never came"
        await asyncio.sleep(0)
    assert 256 * 1024 < transport.get_write_buffer_size() <= 256 * 1024 + len(chunk)
    transport.close()  # the buffered rest is still delivered, then the connection closes
    loop = asyncio.get_running_loop()
    received = bytearray()
    async with asyncio.timeout(20):
        while True:
            data = await loop.sock_recv(client, 65536)
            if not data:
                break
            received += data
    assert len(received) == total and received == chunk * (total // len(chunk))
    async with asyncio.timeout(5):
        assert await proto.lost is None
    assert proto.calls == ["made", "pause", "resume", "lost"]
    client.close()


async def test_client_half_close_is_eof_and_the_answer_still_arrives(reactor_server):
    server, protocols = await reactor_server(keep_open_on_eof=True)
    reader, writer = await _connect(server)
    writer.write(b"request")
    writer.write_eof()
    async with asyncio.timeout(5):
        while not protocols or "eof" not in protocols[0].calls:
            await asyncio.sleep(0.01)
    proto = protocols[0]
    assert proto.calls == ["made", "data", "eof"] and bytes(proto.data) == b"request"
    assert not proto.transport.is_closing()  # eof_received said True: half-open
    proto.transport.write(b"answer")
    assert proto.transport.can_write_eof()
    proto.transport.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b"answer"
    proto.transport.close()
    async with asyncio.timeout(5):
        await proto.lost
    writer.close()


async def test_eof_received_false_closes(reactor_server):
    server, protocols = await reactor_server(keep_open_on_eof=False)
    reader, writer = await _connect(server)
    writer.write_eof()
    await _accepted(protocols)
    async with asyncio.timeout(5):
        assert await protocols[0].lost is None
        assert await reader.read() == b""
    assert protocols[0].calls == ["made", "eof", "lost"]
    writer.close()


async def test_abort_drops_the_buffer_and_a_reset_peer_is_connection_lost_with_its_error(reactor_server):
    server, protocols = await reactor_server()
    client = socket.create_connection(server.sockets[0].getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await _accepted(protocols)
    proto = protocols[0]
    while not proto.transport.get_write_buffer_size():
        proto.transport.write(b"x" * 65536)
    proto.transport.abort()
    assert proto.transport.get_write_buffer_size() == 0
    async with asyncio.timeout(5):
        assert await proto.lost is None
    client.close()

    # A peer that resets (SO_LINGER 0): the transport's next write or read fails, once.
    second = socket.create_connection(server.sockets[0].getsockname())
    await _accepted(protocols, 2)
    second.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    second.close()
    async with asyncio.timeout(5):
        exc = await protocols[1].lost
    assert isinstance(exc, ConnectionResetError)
    assert protocols[1].calls == ["made", "lost"]


async def test_paused_reading_delivers_nothing_until_resumed(reactor_server):
    server, protocols = await reactor_server()
    reader, writer = await _connect(server)
    await _accepted(protocols)
    proto = protocols[0]
    proto.transport.pause_reading()
    assert not proto.transport.is_reading()
    writer.write(b"while paused")
    await writer.drain()
    await asyncio.sleep(0.2)
    assert proto.calls == ["made"]
    proto.transport.resume_reading()
    async with asyncio.timeout(5):
        await proto.got_data.wait()
    assert bytes(proto.data) == b"while paused"
    writer.close()


async def test_plain_http_binds_use_the_reactor_and_serve_keep_alive_and_close(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port], forwardfor=True))
    (bound,) = lb.engine._bound
    assert isinstance(bound.server, RawServer) and bound.listener.raw
    async with aiohttp.ClientSession() as s:
        for _ in range(4):  # keep-alive
            async with s.get(lb.url + "/headers") as r:
                assert r.status == 200
                assert dict((await r.json())["headers"])["X-Forwarded-For"] == "127.0.0.1"
        for _ in range(4):  # a connection per request
            async with s.get(lb.url + "/bytes/100000", headers={"Connection": "close"}) as r:
                assert r.status == 200 and len(await r.read()) == 100000
    assert web1.requests + web2.requests == 8


async def test_slow_client_through_the_proxy_holds_a_bounded_buffer(backends, balancer):
    (web,) = await backends("web")
    lb = await balancer(topology([web.port]))
    size = 32 * 1024 * 1024
    client = socket.create_connection(lb.address)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    client.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    client.setblocking(False)
    await asyncio.sleep(0.5)  # the client reads nothing meanwhile
    (conn,) = _clients(lb)
    assert conn.blocked  # pause_writing came: the server side is not read
    assert conn.transport.get_write_buffer_size() < 2 * 1024 * 1024  # not the 32 MiB
    loop = asyncio.get_running_loop()
    got = 0
    head = b""
    async with asyncio.timeout(20):
        while True:
            data = await loop.sock_recv(client, 1 << 20)
            if not data:
                break
            if not head:
                head = data[:data.find(b"\r\n\r\n") + 4]
                got -= len(head)
            got += len(data)
            if got == size:
                break
    assert head.startswith(b"HTTP/1.1 200") and got == size
    client.close()


async def test_tls_bind_beside_a_raw_bind(backends, balancer, tmp_path):
    (web,) = await backends("web")
    ca = LocalCA.load_or_create(tmp_path)
    ca.issue(["127.0.0.1"], tmp_path / "certs" / "default.pem")
    lb = await balancer({"listen": {"vs": {
        "bind": [{"address": "127.0.0.1:0", "ssl": {"crt": str(tmp_path / "certs")}},
                 {"address": "127.0.0.1:0"}], "forwardfor": True,
        "servers": [{"name": "s1", "address": f"127.0.0.1:{web.port}"}]}}})
    tls_bound, plain_bound = lb.engine._bound
    assert not isinstance(tls_bound.server, RawServer) and isinstance(plain_bound.server, RawServer)
    tls_port = tls_bound.server.sockets[0].getsockname()[1]
    plain_port = plain_bound.server.sockets[0].getsockname()[1]
    ctx: ssl.SSLContext = client_context(ca)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(f"https://127.0.0.1:{tls_port}/headers", ssl=ctx) as r:
                assert dict((await r.json())["headers"])["X-Forwarded-Proto"] == "https"
            async with s.get(f"http://127.0.0.1:{plain_port}/headers") as r:
                assert dict((await r.json())["headers"])["X-Forwarded-Proto"] == "http"
    assert web.requests == 6


async def test_reload_keeps_the_raw_listener_and_its_open_connections(backends, balancer):
    one, two = await backends("one", "two")

    def config(port: int, lb_port: int = 0, timeout: str = "30s", host: str = "127.0.0.1") -> dict:
        return {"listen": {"web": {"bind": f"{host}:{lb_port}", "timeout": {"client": timeout},
                                   "servers": [{"name": "a", "address": f"127.0.0.1:{port}"}]}}}

    lb = await balancer(config(one.port))
    (before,) = lb.engine._bound
    port = lb.address[1]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as old_client:
        async with old_client.get(lb.url + "/") as r:
            assert await r.text() == "one"
        in_flight = asyncio.ensure_future(old_client.get(lb.url + "/slow/0.5"))
        await asyncio.sleep(0.1)
        await lb.reload(config(two.port, port, timeout="20s"))
        (after,) = lb.engine._bound
        assert after.server is before.server and isinstance(after.server, RawServer)
        assert after.server.sockets and lb.address[1] == port
        async with asyncio.timeout(5):
            r = await in_flight
            assert r.status == 200 and await r.text() == "one"  # finished where it started
            r.release()
        async with aiohttp.ClientSession() as new_client:
            async with new_client.get(lb.url + "/") as r:
                assert await r.text() == "two"
        async with old_client.get(lb.url + "/") as r:  # the kept-alive connection moved over
            assert await r.text() == "two"
    await lb.reload(config(two.port, 0, host="127.0.0.2"))  # another bind: the old raw listener closes
    assert not before.server.sockets
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_a_client_reset_while_its_request_is_served_ends_cleanly(backends, balancer):
    # A whole request read at accept: the connection is not polled until the answer is
    # written (as HAProxy does), so the reset is seen then; nothing is left behind.
    (web,) = await backends("web")
    lb = await balancer(topology([web.port]))
    client = socket.create_connection(lb.address)
    client.sendall(b"GET /slow/0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.1)
    (conn,) = _clients(lb)
    assert conn.current is not None and not conn.transport.registered  # not polled meanwhile
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    async with asyncio.timeout(5):
        while _clients(lb):
            await asyncio.sleep(0.05)
    assert lb.engine.frontends["vs"].current == 0
    async with aiohttp.ClientSession() as s:  # and the proxy serves on
        async with s.get(lb.url + "/") as r:
            assert await r.text() == "web"
    assert web.requests == 2


async def test_a_protocol_that_raises_loses_its_connection_only(reactor_server):
    server, protocols = await reactor_server()
    errors: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        bad_reader, bad_writer = await _connect(server)
        good_reader, good_writer = await _connect(server)
        await _accepted(protocols, 2)

        def broken(data: bytes) -> None:
            raise ValueError("protocol bug")

        protocols[0].data_received = broken  # type: ignore[method-assign]
        bad_writer.write(b"boom")
        good_writer.write(b"fine")
        async with asyncio.timeout(5):
            assert isinstance(await protocols[0].lost, ValueError)
            assert await bad_reader.read() == b""  # closed by the proxy
            await protocols[1].got_data.wait()
        assert bytes(protocols[1].data) == b"fine" and not protocols[1].transport.is_closing()
        assert [str(c["exception"]) for c in errors] == ["protocol bug"]
    finally:
        loop.set_exception_handler(None)
    bad_writer.close()
    good_writer.close()


async def test_an_ipv6_plain_bind_is_raw_and_forwards_the_v6_client(backends, balancer):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    (web,) = await backends("web")
    lb = await balancer(topology([web.port], bind="::1", forwardfor=True))
    (bound,) = lb.engine._bound
    assert isinstance(bound.server, RawServer)
    async with aiohttp.ClientSession() as s:
        async with s.get(lb.url + "/headers") as r:
            assert dict((await r.json())["headers"])["X-Forwarded-For"] == "::1"
