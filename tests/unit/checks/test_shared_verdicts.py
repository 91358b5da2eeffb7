"""A worker group's checker sends each server's verdict as data (virtserve/verdicts.py); a
worker that applies it must end in the state the checker's own backend is in."""
from __future__ import annotations

import json

import pytest

from virtserve import verdicts
from virtserve.checks.base import L7_STS, Result
from virtserve.checks.runner import apply_verdict
from virtserve.engine.backend import Backend
from virtserve.engine.config.model import BackendSpec, ServerSpec


def _pair(**spec) -> tuple[dict[str, Backend], dict[str, Backend]]:
    servers = (ServerSpec("s1", "127.0.0.1", 81, weight=10), ServerSpec("s2", "127.0.0.1", 82, weight=10))
    make = lambda: {"b": Backend(BackendSpec(name="b", servers=servers, **spec))}  # noqa: E731
    return make(), make()


def _state(backends: dict[str, Backend]) -> list[tuple]:
    return [(s.name, s.up, s.healthy, s.weight, s.drained, s.agent_pct, s.last_check)
            for b in backends.values() for s in b.servers]


def _send(checker: dict[str, Backend], worker: dict[str, Backend], name: str) -> bool:
    b = checker["b"]
    wire = json.loads(json.dumps(verdicts.encode(b, b.by_name[name])))  # what the channel carries
    return verdicts.apply(worker, wire, 0.0)


@pytest.mark.parametrize("quiescent", [False, True])
def test_a_worker_ends_where_the_checker_is(quiescent):
    checker, worker = _pair(quiescent=quiescent)
    b = checker["b"]
    s1 = b.by_name["s1"]
    down = Result(False, L7_STS, code=500, info="boom", duration=0.003)
    apply_verdict(b, s1, False, down, False, None, 0.0)
    assert _send(checker, worker, "s1")
    assert _state(worker) == _state(checker)
    assert worker["b"].by_name["s1"].weight == 0 if quiescent else not worker["b"].by_name["s1"].up
    assert worker["b"].healthy == 1

    # An agent's drain and weight percent, the server staying up: weight follows at once.
    apply_verdict(b, s1, True, Result(True, "Agent reports UP", weight_pct=50), False, 50, 1.0)
    apply_verdict(b, b.by_name["s2"], True, Result(True, "Agent reports DRAIN", drain=True), True, None, 1.0)
    assert _send(checker, worker, "s1") and _send(checker, worker, "s2")
    assert _state(worker) == _state(checker)
    assert [s.weight for s in worker["b"].servers] == [5, 0]


def test_a_server_the_worker_does_not_have_is_skipped():
    checker, worker = _pair()
    moved = Backend(BackendSpec(name="b", servers=(ServerSpec("s1", "127.0.0.1", 99),)))
    assert not _send({"b": moved}, worker, "s1")  # same name, another address: not the same server
    worker["b"].by_name.pop("s2")
    assert not _send(checker, worker, "s2")
    assert not verdicts.apply({}, verdicts.encode(checker["b"], checker["b"].servers[0]), 0.0)
