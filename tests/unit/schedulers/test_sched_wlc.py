"""wlc: least (active * 256 + inactive) / weight by cross-multiplication, ties to the first (ip_vs_wlc.c)."""
from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.engine.backend import Server
from virtserve.engine.config.model import ServerSpec
from virtserve.schedulers import PickContext, create

CTX = PickContext("10.0.0.1", 1234)


def server(i, weight, active=0, inactive=0, up=True, maxconn=0) -> Server:
    s = Server(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=weight, maxconn=maxconn), i)
    s.active, s.inactive, s.up = active, inactive, up
    return s


def test_least_overhead_per_weight():
    # A: 256/1 = 256, B: 512/3 ~ 171 -> B
    a, b = server(0, 1, active=1), server(1, 3, active=2)
    assert create("wlc", [a, b]).pick(CTX) is b


def test_inactive_counts_one_active_counts_256():
    a, b = server(0, 1, active=1, inactive=0), server(1, 1, active=0, inactive=255)
    assert create("wlc", [a, b]).pick(CTX) is b  # 256 > 255
    b.inactive = 256
    assert create("wlc", [a, b]).pick(CTX) is a  # tie 256 == 256: the first


def test_ties_go_to_the_first_in_list_order():
    a, b, c = server(0, 2, active=2), server(1, 1, active=1), server(2, 4, active=4)  # all 256 per weight unit
    assert create("wlc", [a, b, c]).pick(CTX) is a
    assert create("wlc", [c, b, a]).pick(CTX) is c
    idle = [server(i, w) for i, w in enumerate((1, 5, 3))]
    assert create("wlc", idle).pick(CTX) is idle[0]  # all idle: 0 * w == 0 * w


def test_weight_zero_down_and_full_never_picked():
    a = server(0, 0)
    b = server(1, 5, up=False)
    c = server(2, 5, active=1, maxconn=1)
    d = server(3, 1, active=50)
    sched = create("wlc", [a, b, c, d])
    assert sched.pick(CTX) is d
    d.weight = 0
    assert sched.pick(CTX) is None


def test_take_and_drop_move_the_pick():
    a, b = server(0, 2), server(1, 1)
    sched = create("wlc", [a, b])
    got = []
    for _ in range(6):
        s = sched.pick(CTX)
        s.active += 1
        sched.take(s)
        got.append(s.name)
    assert got == ["A", "B", "A", "A", "B", "A"]
    assert (a.active, b.active) == (4, 2)


def test_avoid():
    a, b = server(0, 1), server(1, 1, active=3)
    sched = create("wlc", [a, b])
    assert sched.pick(CTX, avoid=a) is b
    b.up = False
    assert sched.pick(CTX, avoid=a) is a  # the only one: the caller decides


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 40), st.integers(0, 600), st.booleans()),
                max_size=8))
def test_matches_brute_force(specs):
    servers = [server(i, w, act, inact, up) for i, (w, act, inact, up) in enumerate(specs)]
    live = [s for s in servers if s.available]
    want = None
    if live:
        best = min(Fraction((s.active << 8) + s.inactive, s.weight) for s in live)
        want = next(s for s in live if Fraction((s.active << 8) + s.inactive, s.weight) == best)
    assert create("wlc", servers).pick(CTX) is want
