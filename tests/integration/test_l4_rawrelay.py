"""The raw L4 relay (engine/l4/rawrelay.py) that plain mode tcp binds use: half-close both ways,
a server that closes first, resets, an IPv6 server, and what it hands to the transport relay
(accept-proxy and TLS binds beside it, servers it cannot reach itself, a reload to mode
http on the same socket). Real sockets on loopback. test_l4_relay.py runs on both relays."""
import asyncio
import json
import socket
import struct

import aiohttp
import pytest
from helpers import topology
from l4helpers import active, echo, relay_conns, wait_for

from virtserve.engine.config.model import Timeouts
from virtserve.engine.l4.rawrelay import RawConn, RawServer
from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.proxyproto import build_v1

pytestmark = pytest.mark.timeout(30)


async def connect(address, local=None):
    async with asyncio.timeout(5):
        return await asyncio.open_connection(*address, local_addr=(local, 0) if local else None)


async def all_closed(lb):
    await wait_for(lambda: not relay_conns(lb) and all(v == 0 for v in active(lb).values()))


def _listen(binds, ports, mode="tcp", **extra):
    return {"listen": {"vs": {"bind": binds, "mode": mode, "scheduler": "rr",
                              "servers": [{"address": f"127.0.0.1:{p}"} for p in ports], **extra}}}


async def test_plain_tcp_binds_are_served_by_the_raw_relay(raw_server, balancer):
    srv = await raw_server(echo)
    lb = await balancer(topology([srv.port], mode="tcp"))
    [bound] = lb.engine._bound
    assert isinstance(bound.server, RawServer)
    reader, writer = await connect(lb.address)
    writer.write(b"ping\n")
    async with asyncio.timeout(5):
        assert await reader.readline() == b"ping\n"
    [conn] = relay_conns(lb)
    assert isinstance(conn, RawConn)
    assert conn.ctx.client_ip == "127.0.0.1" and conn.n_in == 5 and conn.n_out == 5
    writer.close()
    await all_closed(lb)
    stats = {s["name"]: s for s in lb.servers()}
    assert stats["s1"]["active"] == 0


async def test_client_half_close_then_server_answers_and_closes(raw_server, balancer):
    """The client's FIN reaches the server while the answer still comes back (shutdown on the
    server side, not a close)."""

    async def count_then_answer(reader, writer):
        data = await reader.read(-1)  # to the client's EOF
        writer.write(b"got %d" % len(data))
        await writer.drain()

    srv = await raw_server(count_then_answer)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb.address)
    writer.write(b"x" * 100_000)
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read(-1) == b"got 100000"
    writer.close()
    await all_closed(lb)


async def test_server_half_close_then_client_still_sends(raw_server, balancer):
    """The server's FIN reaches the client, and what the client sends after it still reaches
    the server: a half-closed server is still read from... by being written to."""
    received = asyncio.get_running_loop().create_future()

    async def greet_then_listen(reader, writer):
        writer.write(b"hello")
        await writer.drain()
        writer.write_eof()
        received.set_result(await reader.read(-1))

    srv = await raw_server(greet_then_listen)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb.address)
    async with asyncio.timeout(5):
        assert await reader.read(-1) == b"hello"  # the server's FIN came through
        writer.write(b"after your FIN")
        writer.write_eof()
        assert await received == b"after your FIN"
    writer.close()
    await all_closed(lb)


async def test_server_closing_first_closes_the_client_and_frees_everything(raw_server, balancer):
    async def answer_and_close(reader, writer):
        await reader.readline()
        writer.write(b"bye\n")
        await writer.drain()
        writer.close()

    srv = await raw_server(answer_and_close)
    lb = await balancer(topology([srv.port], mode="tcp"))
    for _ in range(20):
        reader, writer = await connect(lb.address)
        writer.write(b"hi\n")
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b"bye\n"
        writer.close()
    await all_closed(lb)
    assert lb.engine.frontends["vs"].current == 0
    assert sum(s["total"] for s in lb.servers()) == 20


async def test_client_reset_mid_relay_closes_the_server_side(raw_server, balancer):
    server_saw_end = asyncio.get_running_loop().create_future()

    async def wait_end(reader, writer):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        server_saw_end.set_result(True)

    srv = await raw_server(wait_end)
    lb = await balancer(topology([srv.port], mode="tcp"))
    reader, writer = await connect(lb.address)
    writer.write(b"some bytes")
    await wait_for(lambda: relay_conns(lb) and relay_conns(lb)[0].n_in == 10)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST
    async with asyncio.timeout(5):
        assert await server_saw_end
    await all_closed(lb)


async def test_ipv6_server_through_the_raw_relay(balancer):
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def echo_and_close(reader, writer):
        await echo(reader, writer)
        writer.close()

    srv = await asyncio.start_server(echo_and_close, sock=listener)
    try:
        port = listener.getsockname()[1]
        lb = await balancer({"listen": {"vs": {"bind": "127.0.0.1:0", "mode": "tcp",
                                               "servers": [{"address": f"[::1]:{port}"}]}}})
        reader, writer = await connect(lb.address)
        writer.write(b"over v6\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"over v6\n"
        assert isinstance(relay_conns(lb)[0], RawConn)
        writer.close()
        await all_closed(lb)
    finally:
        srv.close()


async def test_accept_proxy_bind_beside_a_raw_bind(raw_server, balancer):
    """One frontend, two binds: the plain one relays raw, the accept-proxy one through the
    transport relay with the PROXY header's source as the client."""
    srv = await raw_server(echo)
    lb = await balancer(_listen([{"address": "127.0.0.1:0"},
                                 {"address": "127.0.0.1:0", "accept-proxy": True}], [srv.port]))
    plain, proxied = lb.addresses["vs"]
    r1, w1 = await connect(plain)
    r2, w2 = await connect(proxied)
    w1.write(b"plain\n")
    w2.write(build_v1(("203.0.113.7", 4444), proxied) + b"proxied\n")
    async with asyncio.timeout(5):
        assert await r1.readline() == b"plain\n"
        assert await r2.readline() == b"proxied\n"
    kinds = {type(c): c for c in relay_conns(lb)}
    assert set(kinds) == {RawConn, TcpClientProtocol}
    assert kinds[TcpClientProtocol].ctx.client_ip == "203.0.113.7"
    assert kinds[RawConn].ctx.client_ip == "127.0.0.1"
    w1.close()
    w2.close()
    await all_closed(lb)


async def test_send_proxy_servers_are_handed_to_the_transport_relay(balancer):
    """A server with send-proxy: the raw relay hands the connection off at accept, and the
    server gets the PROXY header with the client's address before the client's bytes."""
    got = asyncio.get_running_loop().create_future()

    async def first_line(reader, writer):
        got.set_result(await reader.readline())
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(first_line, "127.0.0.1", 0)
    try:
        port = srv.sockets[0].getsockname()[1]
        lb = await balancer({"listen": {"vs": {"bind": "127.0.0.1:0", "mode": "tcp", "servers": [
            {"address": f"127.0.0.1:{port}", "send-proxy": True}]}}})
        reader, writer = await connect(lb.address, local="127.0.0.3")
        writer.write(b"data\n")
        async with asyncio.timeout(5):
            assert (await got).startswith(b"PROXY TCP4 127.0.0.3 127.0.0.1 ")
            assert await reader.readline() == b"ok\n"
        assert isinstance(relay_conns(lb)[0], TcpClientProtocol)
        writer.close()
        await all_closed(lb)
    finally:
        srv.close()


async def test_reload_from_tcp_to_http_on_the_same_socket(backends, balancer):
    """A kept bind follows its frontend: after a reload to mode http, new connections are
    served as HTTP (the forwarded-for header says so), not relayed."""
    (web,) = await backends("web")
    config = _listen("127.0.0.1:0", [web.port])
    lb = await balancer(config)
    address = lb.address

    async def xff():
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{address[0]}:{address[1]}/headers") as r:
                headers = dict((k.lower(), v) for k, v in json.loads(await r.text())["headers"])
                return headers.get("x-forwarded-for")

    async with asyncio.timeout(10):
        assert await xff() is None  # relayed as bytes
        await lb.reload(_listen(f"127.0.0.1:{address[1]}", [web.port], mode="http", forwardfor=True))
        assert lb.address == address
        assert await xff() == "127.0.0.1"
        await lb.reload(config | {"listen": {"vs": _listen(f"127.0.0.1:{address[1]}", [web.port])["listen"]["vs"]}})
        assert await xff() is None


async def test_accept_out_of_fds_rests_the_listener_then_serves(raw_server, balancer, caplog):
    """accept() failing with EMFILE: a warning, the listener rests instead of being reported
    at every turn of the loop, and the waiting connection is served once fds are back."""
    import os
    import resource

    srv = await raw_server(echo)
    lb = await balancer(topology([srv.port], mode="tcp"))
    client = socket.socket()
    client.setblocking(False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(map(int, os.listdir("/proc/self/fd"))) + 16, hard))
    fillers = []
    try:
        with caplog.at_level("WARNING", logger="virtserve.engine"):
            try:
                while True:  # take every fd number left
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            try:
                client.connect(lb.address)
            except BlockingIOError:
                pass
            await wait_for(lambda: "accept failed, pausing the listener" in caplog.text)
            await asyncio.sleep(0.05)
        # Rested, not retried at every turn of the loop (which logs thousands of times).
        assert caplog.text.count("accept failed") == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    reader, writer = await asyncio.open_connection(sock=client)
    writer.write(b"served\n")
    async with asyncio.timeout(5):
        assert await reader.readline() == b"served\n"
    writer.close()
    await all_closed(lb)


async def test_server_that_closes_at_once_ends_the_connection_promptly(raw_server, balancer):
    """Accepted then closed by the server before anything moves: the client sees the end at
    once, not after the connect timeout."""

    async def close_at_once(reader, writer):
        writer.close()

    srv = await raw_server(close_at_once)
    lb = await balancer(topology([srv.port], mode="tcp", timeouts=Timeouts(connect=20.0)))
    for _ in range(5):
        reader, writer = await connect(lb.address)
        async with asyncio.timeout(3):
            try:
                assert await reader.read(-1) == b""
            except ConnectionResetError:
                pass
        writer.close()
    await all_closed(lb)
