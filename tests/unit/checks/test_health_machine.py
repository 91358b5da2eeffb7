"""The rise/fall machine (sans-IO, clock injected) and the pure parts of the probes."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from virtserve.checks import agent, http
from virtserve.checks.base import L7_OK, L7_RSP, L7_STS, HealthMachine, Result
from virtserve.engine.config.model import CheckSpec

OK = Result(True, L7_OK, code=200)
BAD = Result(False, L7_STS, code=500)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_starts_up_and_falls_at_the_first_failure_as_haproxy():
    m = HealthMachine(rise=2, fall=3, clock=Clock())
    t = m.record(BAD)
    assert t is not None and t.up is False and t.result is BAD


def test_once_up_it_takes_fall_failures_to_go_down():
    clock = Clock()
    m = HealthMachine(rise=2, fall=3, clock=clock, up=False)
    assert m.record(OK) is None
    clock.t = 102.0
    t = m.record(OK)
    assert t is not None and t.up and t.at == 102.0 and t.since == 100.0
    assert m.record(BAD) is None
    assert m.record(BAD) is None
    t = m.record(BAD)
    assert t is not None and not t.up


def test_a_success_between_failures_resets_nothing_but_counts_one_back():
    m = HealthMachine(rise=2, fall=3, clock=Clock(), up=False)
    m.record(OK), m.record(OK)  # up, health at the top (4)
    assert m.record(BAD) is None  # 3
    assert m.record(OK) is None  # 4
    assert m.record(BAD) is None  # 3
    assert m.record(BAD) is None  # 2
    assert m.record(BAD).up is False  # type: ignore[union-attr]


def test_rise_successes_needed_to_come_back():
    m = HealthMachine(rise=3, fall=1, clock=Clock())
    assert m.record(BAD).up is False  # type: ignore[union-attr]
    assert m.record(OK) is None
    assert m.record(OK) is None
    assert m.record(OK).up is True  # type: ignore[union-attr]


def test_force_flips_at_once():
    m = HealthMachine(rise=2, fall=3, clock=Clock(), up=False)
    m.record(OK), m.record(OK)
    assert m.force(False, BAD).up is False  # type: ignore[union-attr]
    assert m.force(False, BAD) is None


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_verdict_follows_the_counter(rise, fall, outcomes):
    """Up after `rise` straight successes; down after `fall` straight failures; never
    flips without a run of at least one of the two."""
    m = HealthMachine(rise, fall, Clock(), up=False)
    run_ok = run_bad = 0
    for ok in outcomes:
        before = m.up
        t = m.record(OK if ok else BAD)
        run_ok, run_bad = (run_ok + 1, 0) if ok else (0, run_bad + 1)
        if run_ok >= rise:
            assert m.up
        if run_bad >= fall:
            assert not m.up
        assert (t is not None) == (m.up != before)


def test_result_describes_itself_in_haproxy_words():
    r = Result(False, L7_STS, code=500, info="Internal Server Error", duration=0.0031)
    assert r.describe() == 'reason: Layer7 wrong status, code: 500, info: "Internal Server Error", check duration: 3ms'


def test_http_judge_status_and_receive():
    spec = CheckSpec(type="http", receive="ok")
    assert http.judge(b"HTTP/1.1 200 OK\r\n\r\nall ok", spec).ok
    r = http.judge(b"HTTP/1.1 200 OK\r\n\r\nnope", spec)
    assert not r.ok and r.reason == L7_RSP and r.code == 200
    r = http.judge(b"HTTP/1.1 503 Service Unavailable\r\n\r\nok", spec)
    assert not r.ok and r.reason == L7_STS and r.code == 503
    assert http.judge(b"HTTP/1.1 503 x\r\n\r\n", CheckSpec(type="http", status=(503,))).ok
    assert not http.judge(b"SSH-2.0-OpenSSH\r\n", spec).ok


def test_agent_words():
    assert agent.parse("up 75%\n").weight_pct == 75
    r = agent.parse("drain\n")
    assert r.ok and r.drain
    assert not agent.parse("down # maintenance window\n").ok
    assert agent.parse("maint\n").reason == "Agent reports MAINT"
    assert not agent.parse("bogus\n").ok
    assert agent.parse("ready,100%\n").ok
