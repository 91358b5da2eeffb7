"""Frontend maxconn: connections beyond it wait, unserved, until a slot frees (HAProxy)."""
import asyncio
import dataclasses

import aiohttp
import pytest
from helpers import topology
from l4helpers import hold, naming

pytestmark = pytest.mark.timeout(30)


def _with_maxconn(config, n):
    fe = dataclasses.replace(config.frontends[0], maxconn=n)
    return dataclasses.replace(config, frontends=(fe,))


async def test_tcp_connection_beyond_maxconn_waits_then_is_served_with_its_early_bytes(raw_server, balancer):
    server = await raw_server(naming("only"))
    lb = await balancer(_with_maxconn(topology([server.port], mode="tcp"), 2))
    first, second = await hold(lb), await hold(lb)
    reader, writer = await asyncio.open_connection(*lb.address)
    try:
        writer.write(b"hello\n")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await reader.readline()  # not served: the server never saw it
        assert server.connections == 2
        first.close()
        async with asyncio.timeout(5):
            assert await reader.readline() == b"only\n"
            assert await reader.readline() == b"hello\n"
        assert server.connections == 3
    finally:
        writer.close()
        second.close()


async def test_http_request_beyond_maxconn_is_answered_after_a_slot_frees(backends, balancer):
    (web,) = await backends("web")
    lb = await balancer(_with_maxconn(topology([web.port]), 1))
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        slow = asyncio.ensure_future(a.get(lb.url + "/slow/0.5", headers={"Connection": "close"}))
        await asyncio.sleep(0.1)
        waiting = asyncio.ensure_future(b.get(lb.url + "/"))
        await asyncio.sleep(0.2)
        assert not waiting.done() and web.requests == 1
        assert (await asyncio.wait_for(slow, 5)).status == 200
        response = await asyncio.wait_for(waiting, 5)
        assert response.status == 200 and await response.text() == "web"
    assert lb.engine.frontends["vs"].current == 0
