"""rr: the next available server after a cursor (ip_vs_rr.c)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.engine.backend import Server
from virtserve.engine.config.model import ServerSpec
from virtserve.schedulers import PickContext, create

CTX = PickContext("10.0.0.1", 1234)


def servers(*weights) -> list[Server]:
    return [Server(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=w), i)
            for i, w in enumerate(weights)]


def seq(sched, n, avoid=None) -> str:
    return "".join(getattr(sched.pick(CTX, avoid), "name", "-") for _ in range(n))


def test_cycles_ignoring_weights():
    assert seq(create("rr", servers(5, 1, 2)), 6) == "ABCABC"


def test_skips_unavailable_and_keeps_its_place():
    s = servers(1, 1, 0, 1)
    sched = create("rr", s)
    assert seq(sched, 2) == "AB"
    s[3].up = False
    assert seq(sched, 2) == "AB"
    s[3].up = True
    assert seq(sched, 3) == "DAB"


def test_avoid():
    s = servers(1, 1, 1)
    sched = create("rr", s)
    assert seq(sched, 4, avoid=s[1]) == "ACAC"
    only = create("rr", servers(1, 0))
    assert only.pick(CTX, avoid=only.servers[0]) is only.servers[0]


@settings(deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=8), st.integers(0, 20))
def test_every_available_server_once_per_round(avail, start):
    s = servers(*(1 if a else 0 for a in avail))
    sched = create("rr", s)
    for _ in range(start):
        sched.pick(CTX)
    live = sum(avail)
    picks = [sched.pick(CTX) for _ in range(live)]
    assert sorted(p.index for p in picks if p) == [i for i, a in enumerate(avail) if a]
