"""wrr: the kernel's interleaved weighted round robin (ip_vs_wrr.c)."""
from __future__ import annotations

from math import gcd

from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.engine.backend import Backend, Server
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers import PickContext, create

CTX = PickContext("10.0.0.1", 1234)


def servers(*weights, maxconn=0) -> list[Server]:
    return [Server(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=w, maxconn=maxconn), i)
            for i, w in enumerate(weights)]


def backend(*weights, maxconn=()) -> Backend:
    specs = tuple(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=w,
                             maxconn=maxconn[i] if i < len(maxconn) else 0)
                  for i, w in enumerate(weights))
    return Backend(BackendSpec(name="b", scheduler="wrr", servers=specs))


def seq(sched, n, avoid=None) -> str:
    return "".join(getattr(sched.pick(CTX, avoid), "name", "-") for _ in range(n))


def test_weights_4_3_2():
    assert seq(create("wrr", servers(4, 3, 2)), 18) == "AABABCABC" * 2


def test_gcd_step():
    # di = 2, mw = 4 - 1 = 3: passes at cw 3 and 1.
    assert seq(create("wrr", servers(4, 2)), 6) == "AAB" * 2
    assert seq(create("wrr", servers(6, 4, 2)), 12) == "AABABC" * 2


def test_weight_zero_and_down_are_skipped():
    be = backend(2, 0, 1)
    assert seq(be.scheduler, 6) == "AACAAC"
    be.set_up(be.servers[0], False)
    assert seq(be.scheduler, 3) == "CCC"
    be.set_weight(be.servers[2], 0)
    assert be.scheduler.pick(CTX) is None


def test_full_server_is_skipped_but_counts_for_gcd():
    s = servers(2, 1, maxconn=1)
    sched = create("wrr", s)
    s[0].active = 1  # at maxconn: the kernel's OVERLOAD
    assert seq(sched, 3) == "BBB"
    assert (sched._di, sched._mw) == (1, 2)


def test_weight_change_recomputes_and_restarts_from_head():
    be = backend(1, 1)
    sched = be.scheduler
    assert seq(sched, 1) == "A"
    be.set_weight(be.servers[1], 3)  # di 1, mw 3; cw 1 <= mw stays; cursor back at the head
    assert (sched._di, sched._mw, sched._cw, sched._i) == (1, 3, 1, -1)
    assert seq(sched, 8) == "ABBB" * 2  # cw 1: A B, then cw 3: B, cw 2: B, and so on


def test_avoid():
    sched = create("wrr", servers(3, 1))
    assert seq(sched, 4, avoid=sched.servers[0]) == "BBBB"
    only = create("wrr", servers(3, 0))
    assert only.pick(CTX, avoid=only.servers[0]) is only.servers[0]


@settings(deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=6).filter(any))
def test_full_cycle_shares_equal_weights(weights):
    sched = create("wrr", servers(*weights))
    picks = [sched.pick(CTX).index for _ in range(sum(weights))]
    assert [picks.count(i) for i in range(len(weights))] == weights


# A literal transcription of ip_vs_wrr_schedule / ip_vs_wrr_dest_changed, index -1 being the list head.
class KernelWRR:
    def __init__(self, servers):
        self.servers = servers
        self.cw = 0
        self.changed()

    def changed(self):
        ws = [s.weight for s in self.servers if s.up]
        g = 0
        for w in ws:
            if w > 0:
                g = gcd(w, g) if g > 0 else w
        self.cl, self.di = -1, g or 1
        self.mw = max(ws, default=0) - (self.di - 1)
        if self.cw > self.mw or not self.cw:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def pick(self):
        if self.mw == 0:
            return None
        n, dest, stop = len(self.servers), self.cl, None
        last, last_pass, restarted = dest, False, False
        while True:
            for j in range(dest + 1, n):
                s = self.servers[j]
                if s.available and s.weight >= self.cw:
                    self.cl = j
                    return s
                if j == stop:
                    self.cl = j
                    return None
            dest = -1
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last == -1:
                    self.cl = -1
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last != -1:
                stop = last


@settings(max_examples=300, deadline=None)
@given(weights=st.lists(st.integers(0, 9), min_size=1, max_size=6),
       events=st.lists(st.one_of(
           st.tuples(st.just("pick"), st.integers(1, 12)),
           st.tuples(st.just("weight"), st.integers(0, 5), st.integers(0, 9)),
           st.tuples(st.just("up"), st.integers(0, 5), st.booleans()),
           st.tuples(st.just("load"), st.integers(0, 5), st.booleans()),
       ), max_size=25),
       maxconn=st.lists(st.sampled_from([0, 1]), max_size=6))
def test_matches_the_kernel_transcription(weights, events, maxconn):
    """Same picks as the kernel's own loop, across weight and up/down events; the incremental di/mw
    always equal a fresh computation and cw stays on the di grid."""
    be = backend(*weights, maxconn=maxconn)
    sched, ref = be.scheduler, KernelWRR(be.servers)
    for ev in events:
        if ev[0] == "pick":
            for _ in range(ev[1]):
                if not any(s.available for s in be.servers):
                    break  # the kernel's failure path leaves its cursor elsewhere: not compared
                assert sched.pick(CTX) is ref.pick()
        elif ev[0] == "load":  # fills or frees a maxconn-1 server: the kernel's OVERLOAD, no hook
            s = be.servers[ev[1] % len(weights)]
            if ev[2]:
                be.take(s)
            elif s.active:
                be.drop(s)
        else:
            s = be.servers[ev[1] % len(weights)]
            before = (s.weight, s.up)
            be.set_weight(s, ev[2]) if ev[0] == "weight" else be.set_up(s, ev[2])
            if (s.weight, s.up) != before:  # the Backend calls no hook for a no-op
                ref.changed()
        fresh = create("wrr", be.servers)
        assert (sched._di, sched._mw) == (fresh._di, fresh._mw) == (ref.di, ref.mw)
        if sched._mw > 0:
            assert 1 <= sched._cw <= sched._mw and (sched._cw - 1) % sched._di == 0
