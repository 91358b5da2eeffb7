"""pytest fixtures shipped with virtserve (registered through the pytest11 entry point).

    def test_my_app(virtserve_lb):
        lb = virtserve_lb({"listen": {"web": {...}}})   # a running balancer, stopped after the test
        urllib.request.urlopen(lb.url)
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from virtserve.api import BlockingBalancer, ConfigLike


@pytest.fixture
def virtserve_lb() -> Iterator[Callable[[ConfigLike], BlockingBalancer]]:
    """A factory: each call starts a balancer in a background thread; all stop at teardown."""
    started: list[BlockingBalancer] = []

    def start(config: ConfigLike) -> BlockingBalancer:
        lb = BlockingBalancer(config).start()
        started.append(lb)
        return lb

    yield start
    for lb in reversed(started):
        lb.stop()
