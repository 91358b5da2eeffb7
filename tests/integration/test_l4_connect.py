"""The L4 relay's connect path: refused and hanging servers, connect timeout, retries on the
next server, and what the client sees when every attempt fails."""
import asyncio
import socket
import struct
import time

import pytest
from helpers import topology
from l4helpers import active, closed_port, hanging_port, hold, naming, relay_conns, wait_for

from virtserve.engine.config.model import Timeouts

pytestmark = pytest.mark.timeout(60)


async def closed_promptly(lb, within: float) -> float:
    """Connect and wait for the proxy to close on us; return how long that took."""
    start = time.monotonic()
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(*lb.address)
        try:
            assert await reader.read(-1) == b""
        except ConnectionResetError:
            pass  # an abort reaches the client as a reset
        finally:
            writer.close()
    return time.monotonic() - start


async def no_leftovers(lb):
    await wait_for(lambda: not relay_conns(lb) and all(v == 0 for v in active(lb).values()))


async def test_refused_server_is_retried_on_the_next(raw_server, balancer):
    good = await raw_server(naming("s2"))
    lb = await balancer(topology([closed_port(), good.port], mode="tcp", retries=3))
    held = []
    for _ in range(4):  # rr would alternate; every connection ends up on s2
        h = await hold(lb)
        assert h.name == "s2"
        held.append(h)
    servers = {s["name"]: s for s in lb.servers()}
    assert servers["s2"]["active"] == 4
    assert servers["s1"]["active"] == 0
    assert servers["s1"]["failures"] >= 1
    assert good.connections == 4
    for h in held:
        h.close()
    await no_leftovers(lb)


async def test_all_servers_refuse_client_is_closed_promptly(balancer):
    lb = await balancer(topology([closed_port(), closed_port()], mode="tcp", retries=3))
    assert await closed_promptly(lb, within=2) < 1.0
    servers = lb.servers()
    assert sum(s["failures"] for s in servers) == 4  # the first try and 3 retries
    assert all(s["failures"] >= 1 for s in servers)  # the retries went to the next server
    await no_leftovers(lb)


async def test_no_retries_means_one_attempt(balancer):
    lb = await balancer(topology([closed_port(), closed_port()], mode="tcp", retries=0))
    assert await closed_promptly(lb, within=2) < 1.0
    assert sum(s["failures"] for s in lb.servers()) == 1
    await no_leftovers(lb)


async def test_hanging_connect_times_out_and_moves_on(raw_server, balancer):
    good = await raw_server(naming("s2"))
    with hanging_port() as hang:
        lb = await balancer(topology([hang, good.port], mode="tcp", retries=1,
                                     timeouts=Timeouts(connect=0.3)))
        start = time.monotonic()
        h = await hold(lb)
        elapsed = time.monotonic() - start
    assert h.name == "s2"
    assert 0.25 <= elapsed < 2.0
    servers = {s["name"]: s for s in lb.servers()}
    assert servers["s1"]["failures"] == 1 and servers["s1"]["active"] == 0
    assert servers["s2"]["active"] == 1
    # The relay works after the retry.
    h.writer.write(b"hello")
    async with asyncio.timeout(2):
        assert await h.reader.readexactly(5) == b"hello"
    h.close()
    await no_leftovers(lb)


async def test_retries_outlast_a_short_client_timeout(raw_server, balancer):
    """Three hanging servers before a good one: each attempt gets its full connect timeout,
    even when the client timeout is shorter than all the attempts together."""
    good = await raw_server(naming("s4"))
    with hanging_port() as h1, hanging_port() as h2, hanging_port() as h3:
        lb = await balancer(topology([h1, h2, h3, good.port], mode="tcp", retries=3,
                                     timeouts=Timeouts(connect=0.3, client=0.2, server=0.2)))
        start = time.monotonic()
        h = await hold(lb)
        elapsed = time.monotonic() - start
    assert h.name == "s4"
    assert 0.85 <= elapsed < 3.0
    assert [s["failures"] for s in lb.servers()] == [1, 1, 1, 0]
    h.close()
    await no_leftovers(lb)


async def test_all_servers_hang_client_is_closed_after_the_retries(balancer):
    with hanging_port() as h1, hanging_port() as h2:
        lb = await balancer(topology([h1, h2], mode="tcp", retries=2,
                                     timeouts=Timeouts(connect=0.2)))
        elapsed = await closed_promptly(lb, within=3)
    assert 0.55 <= elapsed < 1.5  # three attempts of 0.2 s, then the client is closed
    assert [s["failures"] for s in lb.servers()] == [2, 1]
    await no_leftovers(lb)


async def test_client_reset_during_connect_frees_the_server(raw_server, balancer):
    good = await raw_server(naming("s2"))
    with hanging_port() as hang:
        lb = await balancer(topology([hang, good.port], mode="tcp", retries=1,
                                     timeouts=Timeouts(connect=0.4)))
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection(*lb.address)
        await wait_for(lambda: active(lb)["s1"] == 1)
        # Gone for good (RST) while the proxy is still connecting to s1. A FIN would not do:
        # it is a half-close, and the relay still serves a half-closed client.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        await no_leftovers(lb)
        await asyncio.sleep(0.6)  # the connect times out, and no retry is made for a gone client
    assert active(lb) == {"s1": 0, "s2": 0}
    assert good.connections == 0
    assert not relay_conns(lb)


async def test_client_fin_during_connect_still_reaches_the_server(raw_server, balancer):
    async def answer(reader, writer):
        writer.write(b"got " + await reader.read(-1))
        await writer.drain()

    good = await raw_server(answer)
    with hanging_port() as hang:
        lb = await balancer(topology([hang, good.port], mode="tcp", retries=1,
                                     timeouts=Timeouts(connect=0.3)))
        async with asyncio.timeout(3):
            reader, writer = await asyncio.open_connection(*lb.address)
            writer.write(b"request")
            writer.write_eof()
            assert await reader.read(-1) == b"got request"
    writer.close()
    await no_leftovers(lb)
