"""Connecting: a coroutine driven to its end from future callbacks, without a Task (the L4
relay's connect). The relay's end-to-end tests cover uvloop's create_connection under it; these
cover what it never does there: bare yields, a cancel between two steps, a foreign awaitable."""
from __future__ import annotations

import asyncio

import pytest

from virtserve.engine.upstream.connect import Connecting

pytestmark = pytest.mark.timeout(10)


def _drive(coro):
    loop = asyncio.get_running_loop()
    ended: asyncio.Future = loop.create_future()
    attempt = Connecting(loop, coro, lambda exc: ended.set_result(exc))
    attempt.start()
    return attempt, ended


async def test_runs_through_futures_and_bare_yields_without_a_task():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    seen = []

    async def opening():
        seen.append(asyncio.current_task())  # the caller's task: no task of its own
        await asyncio.sleep(0)
        seen.append(await gate)

    caller = asyncio.current_task()
    attempt, ended = _drive(opening())
    assert seen == [caller] and not ended.done()
    loop.call_soon(gate.set_result, "connected")
    assert await asyncio.wait_for(ended, 5) is None
    assert seen == [caller, "connected"]


async def test_an_error_reaches_done():
    async def refused():
        await asyncio.sleep(0)
        raise ConnectionRefusedError(111, "refused")

    _, ended = _drive(refused())
    assert isinstance(await asyncio.wait_for(ended, 5), ConnectionRefusedError)


@pytest.mark.parametrize("between_steps", [False, True])
async def test_cancel_reaches_the_coroutine_which_cleans_up(between_steps):
    loop = asyncio.get_running_loop()
    cleaned = []

    async def hanging():
        try:
            await asyncio.sleep(0)
            await loop.create_future()  # a connect that never completes
        finally:
            cleaned.append(True)

    attempt, ended = _drive(hanging())
    if not between_steps:
        await asyncio.sleep(0.01)  # now waiting on the future
    attempt.cancel()
    assert isinstance(await asyncio.wait_for(ended, 5), asyncio.CancelledError)
    assert cleaned == [True]


async def test_an_awaitable_that_is_not_a_future_fails_the_attempt():
    class Odd:
        def __await__(self):
            yield "not a future"

    async def odd():
        await Odd()

    _, ended = _drive(odd())
    assert isinstance(await asyncio.wait_for(ended, 5), RuntimeError)
