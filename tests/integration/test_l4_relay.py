"""The L4 relay (mode tcp) end to end: bytes intact both ways, half-close, backpressure with
bounded buffers, idle timeouts. Raw asyncio servers behind a real balancer on loopback."""
import asyncio
import hashlib
import os
import socket
import time

import pytest
from helpers import topology
from l4helpers import (echo, hanging_port, held_toward_client, held_toward_server, hold_limit,
                       reading_client, reading_server, relay_conns, wait_for, wait_stalled)

from virtserve.engine.config.model import Timeouts
from virtserve.engine.l4 import rawrelay, relay

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True, params=["raw", "transport"])
def which_relay(request, monkeypatch):
    """Every test here runs on both relays: the raw one plain binds use, and the transport one
    that serves TLS and accept-proxy binds and what the raw one hands off."""
    monkeypatch.setattr(rawrelay, "enabled", request.param == "raw")
    return request.param

MB = 1 << 20


async def connect(lb):
    async with asyncio.timeout(5):
        return await asyncio.open_connection(*lb.address)


async def all_closed(lb):
    """Both sides of every relayed connection end, and the server counters come back to 0."""
    await wait_for(lambda: not relay_conns(lb) and all(s["active"] == 0 for s in lb.servers()))


# --- bytes intact --------------------------------------------------------------------------

async def test_echo_small_exchanges(raw_server, balancer):
    srv = await raw_server(echo)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    async with asyncio.timeout(5):
        for i in range(20):
            msg = f"message {i}\n".encode()
            writer.write(msg)
            assert await reader.readexactly(len(msg)) == msg
    writer.close()
    await all_closed(lb)


async def test_large_echo_both_directions_at_once(raw_server, balancer):
    srv = await raw_server(echo)
    lb = await balancer(topology([srv.port], mode="tcp"))
    payload = os.urandom(24 * MB)
    reader, writer = await connect(lb)

    async def send():
        view = memoryview(payload)
        for i in range(0, len(payload), MB):
            writer.write(view[i:i + MB])
            await writer.drain()
        writer.write_eof()

    async with asyncio.timeout(30):
        sender = asyncio.create_task(send())
        got = await reader.read(-1)  # the echo ends when our EOF went through and back
        await sender
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    writer.close()
    await all_closed(lb)


async def test_large_download(raw_server, balancer):
    payload = os.urandom(32 * MB)

    async def send_all(reader, writer):
        writer.write(payload)
        await writer.drain()

    srv = await raw_server(send_all)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    async with asyncio.timeout(30):
        got = await reader.read(-1)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    writer.close()
    await all_closed(lb)


async def test_large_upload(raw_server, balancer):
    payload = os.urandom(32 * MB)

    async def digest(reader, writer):
        h, n = hashlib.sha256(), 0
        while data := await reader.read(262144):
            h.update(data)
            n += len(data)
        writer.write(f"{n} {h.hexdigest()}".encode())
        await writer.drain()

    srv = await raw_server(digest)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    async with asyncio.timeout(30):
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await reader.read(-1)
    assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
    writer.close()
    await all_closed(lb)


# --- half-close ----------------------------------------------------------------------------

async def test_client_half_close_server_still_answers(raw_server, balancer):
    seen = {}

    async def answer_after_eof(reader, writer):
        data = await reader.read(-1)  # returns only once the client's FIN came through
        seen["request"] = data
        await asyncio.sleep(0.2)  # answer well after the EOF: the proxy must not have closed
        writer.write(b"answer to " + data)
        await writer.drain()

    srv = await raw_server(answer_after_eof)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    writer.write(b"question")
    writer.write_eof()  # shutdown(SHUT_WR)
    async with asyncio.timeout(5):
        got = await reader.read(-1)
    assert got == b"answer to question"
    assert seen["request"] == b"question"
    writer.close()
    await all_closed(lb)


async def test_server_half_close_client_keeps_sending(raw_server, balancer):
    received = asyncio.get_running_loop().create_future()

    async def banner_then_listen(reader, writer):
        writer.write(b"banner")
        writer.write_eof()  # the server is done talking, but keeps listening
        await writer.drain()
        received.set_result(await reader.read(-1))

    srv = await raw_server(banner_then_listen)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    async with asyncio.timeout(5):
        assert await reader.read(-1) == b"banner"  # the server's FIN reached us
        await asyncio.sleep(0.2)
        for i in range(5):  # the client's direction is still open
            writer.write(b"more %d;" % i)
            await writer.drain()
        writer.write_eof()
        assert await received == b"more 0;more 1;more 2;more 3;more 4;"
    writer.close()
    await all_closed(lb)


async def test_half_close_both_then_pair_closes(raw_server, balancer):
    """FIN both ways without either side closing its socket: the proxy closes the pair."""
    server_done = asyncio.Event()

    async def fin_and_wait(reader, writer):
        assert await reader.read(-1) == b"x"
        writer.write(b"y")
        writer.write_eof()
        await writer.drain()
        await server_done.wait()

    srv = await raw_server(fin_and_wait)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    writer.write(b"x")
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read(-1) == b"y"
    await all_closed(lb)
    server_done.set()
    writer.close()


# --- backpressure --------------------------------------------------------------------------

async def test_backpressure_server_floods_client_does_not_read(raw_server, balancer):
    total = 96 * MB
    chunk = b"\xab" * MB
    sent = [0]

    async def flood(reader, writer):
        while sent[0] < total:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)

    srv = await raw_server(flood)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)  # the client does not read yet
    await wait_stalled(lambda: sent[0])  # fails past 64 MB of the 96
    # The kernel buffers hold a few MB; the proxy must hold no more than its high-water mark
    # plus one read, and the server side must be paused.
    [conn] = relay_conns(lb)
    assert held_toward_client(conn) <= hold_limit(conn) + 512 * 1024
    assert conn.peer is not None and not reading_server(conn)
    assert held_toward_server(conn) == 0
    # Once the client reads, everything flows and arrives intact.
    got = 0
    async with asyncio.timeout(30):
        while data := await reader.read(MB):
            assert data.count(0xAB) == len(data)
            got += len(data)
    assert got == total
    writer.close()
    await all_closed(lb)


async def test_backpressure_client_floods_server_does_not_read(raw_server, balancer):
    total = 96 * MB
    chunk = b"\xcd" * MB
    go = asyncio.Event()

    async def late_reader(reader, writer):
        await go.wait()
        n = 0
        while data := await reader.read(MB):
            assert data.count(0xCD) == len(data)
            n += len(data)
        writer.write(str(n).encode())
        await writer.drain()

    srv = await raw_server(late_reader)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb)
    sent = [0]

    async def flood():
        while sent[0] < total:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)
        writer.write_eof()

    sender = asyncio.create_task(flood())
    try:
        await wait_stalled(lambda: sent[0])  # fails past 64 MB of the 96
        [conn] = relay_conns(lb)
        assert conn.peer is not None
        assert held_toward_server(conn) <= hold_limit(conn) + 512 * 1024
        assert not reading_client(conn)
        assert held_toward_client(conn) == 0
        go.set()
        async with asyncio.timeout(30):
            await sender
            assert await reader.read(-1) == str(total).encode()
    finally:
        go.set()
        sender.cancel()
    writer.close()
    await all_closed(lb)


async def test_many_slow_readers_stay_bounded(raw_server, balancer):
    """Memory per connection is bounded whatever the peers' speeds: 10 clients that never read
    from flooding servers leave at most about a high-water mark in each proxy buffer."""
    sent = [0]

    async def flood(reader, writer):
        chunk = b"z" * 262144
        while True:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)

    srv = await raw_server(flood)
    lb = await balancer(topology([srv.port], mode="tcp"))
    clients = [await connect(lb) for _ in range(10)]
    # The kernel's socket buffers along each path hold about 10 MB on loopback.
    await wait_stalled(lambda: sent[0], limit=10 * 32 * MB)
    conns = relay_conns(lb)
    assert len(conns) == 10
    for conn in conns:
        assert held_toward_client(conn) <= hold_limit(conn) + 512 * 1024
        assert not reading_server(conn)
    for _, w in clients:
        w.close()
    await all_closed(lb)


async def test_client_bytes_sent_while_connecting_are_held_and_delivered(raw_server, balancer):
    """More than the hold limit plus a FIN, sent before the server connection exists."""
    payload = os.urandom(3 * MB)

    async def digest(reader, writer):
        data = await reader.read(-1)
        writer.write(hashlib.sha256(data).hexdigest().encode())
        await writer.drain()

    srv = await raw_server(digest)
    with hanging_port() as hang:
        lb = await balancer(topology([hang, srv.port], mode="tcp", retries=1,
                                     timeouts=Timeouts(connect=0.3)))
        reader, writer = await connect(lb)
        writer.write(payload)
        writer.write_eof()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
    assert answer == hashlib.sha256(payload).hexdigest().encode()
    writer.close()
    await all_closed(lb)


async def test_backpressure_holds_for_bytes_held_while_connecting(balancer, monkeypatch):
    """The client floods from the first byte while the proxy is still connecting (a hanging
    first server, then a retry) toward a server that does not read. With small socket buffers
    the held bytes alone overfill the proxy's server-side write buffer; flushing them must not
    undo the pause that the full buffer asked for."""
    # Loopback's 64 KiB MSS gives a fresh socket megabytes of send buffer: shrink it so
    # the flush of the held bytes cannot all go to the kernel.
    if rawrelay.enabled:
        made = rawrelay.RawConn._connected

        def small_sndbuf(self):
            self.ssock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            made(self)

        monkeypatch.setattr(rawrelay.RawConn, "_connected", small_sndbuf)
    else:
        made = relay.TcpServerProtocol.connection_made

        def small_sndbuf(self, transport):
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            made(self, transport)

        monkeypatch.setattr(relay.TcpServerProtocol, "connection_made", small_sndbuf)

    go = asyncio.Event()

    async def late_reader(reader, writer):
        await go.wait()
        while await reader.read(MB):
            pass
        writer.close()

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited when accepted
    listener.bind(("127.0.0.1", 0))
    srv = await asyncio.start_server(late_reader, sock=listener)
    chunk = b"q" * MB
    sent = [0]
    try:
        with hanging_port() as hang:
            lb = await balancer(topology([hang, listener.getsockname()[1]], mode="tcp", retries=1,
                                         timeouts=Timeouts(connect=0.3)))
            reader, writer = await connect(lb)

            async def flood():
                while sent[0] < 96 * MB:
                    writer.write(chunk)
                    await writer.drain()
                    sent[0] += len(chunk)

            sender = asyncio.create_task(flood())
            try:
                await wait_for(lambda: relay_conns(lb) and relay_conns(lb)[0].peer is not None)
                await wait_stalled(lambda: sent[0])
                [conn] = relay_conns(lb)
                assert held_toward_server(conn) <= hold_limit(conn) + 512 * 1024
                assert not reading_client(conn)
            finally:
                go.set()
                sender.cancel()
        writer.close()
        await all_closed(lb)
    finally:
        srv.close()


class _SlowConnectLoop:
    """The engine's loop, except that create_connection returns 0.2 s after the connection
    is made: the connecting task resumes late, as on a busy loop."""

    def __init__(self, loop):
        self._loop = loop

    def __getattr__(self, name):
        return getattr(self._loop, name)

    async def create_connection(self, *args, **kwargs):
        result = await self._loop.create_connection(*args, **kwargs)
        await asyncio.sleep(0.2)
        return result


async def test_backpressure_from_the_first_server_bytes(raw_server, balancer):
    """A server that floods from the moment it accepts, a client that never reads, and the
    connecting task resuming late: the pause must reach the server side all the same."""
    sent = [0]

    async def flood(reader, writer):
        chunk = b"f" * 262144
        while True:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)

    srv = await raw_server(flood)
    lb = await balancer(topology([srv.port], mode="tcp"))
    lb.engine.state.loop = _SlowConnectLoop(lb.engine.state.loop)
    reader, writer = await connect(lb)
    await wait_stalled(lambda: sent[0])
    [conn] = relay_conns(lb)
    assert held_toward_client(conn) <= hold_limit(conn) + 512 * 1024
    assert not reading_server(conn)
    writer.close()
    await all_closed(lb)


# --- idle timeouts -------------------------------------------------------------------------

async def read_until_closed(reader):
    """b'' on FIN; the proxy aborts on timeout, which the client may see as a reset."""
    try:
        return await reader.read(-1)
    except ConnectionResetError:
        return b""


async def test_idle_connection_is_closed(raw_server, balancer):
    server_saw_close = asyncio.Event()

    async def echo_then_note(reader, writer):
        await echo(reader, writer)
        server_saw_close.set()

    srv = await raw_server(echo_then_note)
    lb = await balancer(topology([srv.port], mode="tcp",
                                 timeouts=Timeouts(connect=1, client=0.3, server=0.3)))
    reader, writer = await connect(lb)
    writer.write(b"ping")
    async with asyncio.timeout(2):
        assert await reader.readexactly(4) == b"ping"
    start = time.monotonic()
    async with asyncio.timeout(3):
        assert await read_until_closed(reader) == b""
        await server_saw_close.wait()
    assert 0.2 <= time.monotonic() - start < 1.5
    writer.close()
    await all_closed(lb)


async def test_idle_connection_that_never_spoke_is_closed(raw_server, balancer):
    srv = await raw_server(echo)
    lb = await balancer(topology([srv.port], mode="tcp",
                                 timeouts=Timeouts(connect=1, client=0.3, server=0.3)))
    reader, writer = await connect(lb)
    async with asyncio.timeout(3):
        assert await read_until_closed(reader) == b""
    writer.close()
    await all_closed(lb)


@pytest.mark.parametrize("talker", ["client", "server"])
async def test_traffic_keeps_the_connection_alive(raw_server, balancer, talker):
    """Data in either direction resets the idle timer: 1.2 s of 0.1 s ticks under 0.3 s timeouts."""

    async def ticker(reader, writer):
        if talker == "server":
            for _ in range(12):
                writer.write(b".")
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"end")
            await writer.drain()
        else:
            got = b""
            while not got.endswith(b"end"):
                data = await reader.read(100)
                if not data:
                    return
                got += data
            writer.write(got)
            await writer.drain()

    srv = await raw_server(ticker)
    lb = await balancer(topology([srv.port], mode="tcp",
                                 timeouts=Timeouts(connect=1, client=0.3, server=0.3)))
    reader, writer = await connect(lb)
    async with asyncio.timeout(5):
        if talker == "client":
            for _ in range(12):
                writer.write(b".")
                await writer.drain()
                await asyncio.sleep(0.1)
            writer.write(b"end")
        got = await reader.readuntil(b"end")
    assert got == b"." * 12 + b"end"
    writer.close()
    await all_closed(lb)
