"""The L7 proxy end to end: real aiohttp backends, real aiohttp client."""
import aiohttp
import pytest
from helpers import topology

pytestmark = pytest.mark.timeout(30)


async def test_round_robin_alternates(backends, balancer):
    web1, web2 = await backends("web1", "web2")
    lb = await balancer(topology([web1.port, web2.port]))
    async with aiohttp.ClientSession() as s:
        names = [await (await s.get(lb.url + "/")).text() for _ in range(6)]
    assert names == ["web1", "web2"] * 3
