"""Fixtures for end-to-end tests: real backends on loopback and a balancer in front of them."""
from __future__ import annotations

from typing import Any

import pytest
from helpers import Backend, RawHandler, RawServer

from virtserve.api import Balancer


@pytest.fixture
async def backends():
    """Factory: `await backends("web1", "web2")` starts named aiohttp backends."""
    started: list[Backend] = []

    async def start(*names: str) -> list[Backend]:
        new = [await Backend(n).start() for n in names]
        started.extend(new)
        return new

    yield start
    for b in started:
        await b.stop()


@pytest.fixture
async def raw_server():
    """Factory: `await raw_server(handler)` starts a server running handler(reader, writer)."""
    started: list[RawServer] = []

    async def start(handler: RawHandler) -> RawServer:
        s = await RawServer(handler).start()
        started.append(s)
        return s

    yield start
    for s in started:
        await s.stop()


@pytest.fixture
async def balancer():
    """Factory: `await balancer(config)` starts a virtserve Balancer, stopped at teardown."""
    started: list[Balancer] = []

    async def start(config: Any) -> Balancer:
        lb = await Balancer(config).start()
        started.append(lb)
        return lb

    yield start
    for lb in started:
        await lb.stop()


@pytest.fixture
async def health_backends():
    """Factory: `await health_backends("web1", "web2")` starts HealthBackends (checkhelpers.py)."""
    from checkhelpers import HealthBackend

    started: list[HealthBackend] = []

    async def start(*names: str) -> list[HealthBackend]:
        new = [await HealthBackend(n).start() for n in names]
        started.extend(new)
        return new

    yield start
    for b in started:
        await b.stop()
