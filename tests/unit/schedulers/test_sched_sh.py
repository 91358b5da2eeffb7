"""sh: 256-bucket source hashing (ip_vs_sh.c): table layout, kernel hash, fallback, port, IPv6."""
from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.engine.backend import Backend, Server
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers import Needs, PickContext, create
from virtserve.schedulers.sh import TAB_SIZE, SourceHash, addr_fold, hash_32, hashkey


def servers(*weights, maxconn=0) -> list[Server]:
    return [Server(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=w, maxconn=maxconn), i)
            for i, w in enumerate(weights)]


def backend(*weights, **options) -> Backend:
    specs = tuple(ServerSpec(name=chr(65 + i), address=f"10.1.0.{i + 1}", port=80, weight=w)
                  for i, w in enumerate(weights))
    opts = tuple(sorted((k.replace("_", "-"), v) for k, v in options.items()))
    return Backend(BackendSpec(name="b", scheduler="sh", scheduler_options=opts, servers=specs))


def layout(sched) -> str:
    return "".join(s.name if s else "-" for s in sched._table)


def addr_in_bucket(bucket: int, avoid=()) -> str:
    for i in range(1, 1 << 20):
        ip = str(ipaddress.IPv4Address(i))
        if hashkey(ip) == bucket and ip not in avoid:
            return ip
    raise AssertionError("unreachable")


ipv4_st = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
ipv6_st = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))


def test_needs_the_address():
    assert SourceHash.needs == Needs.ADDRESS


def test_kernel_hash():
    # hash_32(v, 8) = (v * 0x61C88647 mod 2**32) >> 24 (include/linux/hash.h)
    assert hash_32(1, 8) == 0x61
    assert hashkey("0.0.0.0") == 0
    assert hashkey("0.0.0.1") == 0x61
    assert hashkey("1.0.0.0") == ((0x01000000 * 0x61C88647) & 0xFFFFFFFF) >> 24
    assert hashkey("0.0.0.0", 1) == 0x61  # port + addr


def test_ipv6_folds_the_four_words():
    assert addr_fold("::1") == 1
    assert addr_fold("1::") == 0x00010000
    assert hashkey("1::") == 0x86
    # XOR of the four 32-bit words: word order does not matter, and it can collide with IPv4.
    assert addr_fold("1:2:3:4:5:6:7:8") == addr_fold("7:8:5:6:3:4:1:2") == 0x00010002 ^ 0x00030004 ^ 0x00050006 ^ 0x00070008
    assert addr_fold("2001:db8::1") == addr_fold("32.1.13.185") == 0x20010DB9
    assert addr_fold("::ffff:192.0.2.7") == addr_fold("192.0.2.7")  # a dual-stack socket's IPv4 client
    assert addr_fold("fe80::1%eth0") == addr_fold("fe80::1")
    assert addr_fold("") == addr_fold("not an address") == 0


def test_table_layout_weights_consecutive_and_weight0_takes_one():
    sched = create("sh", servers(3, 1, 0))
    assert layout(sched)[:10] == "AAABCAAABC"
    assert Counter(layout(sched)) == {"A": 51 * 3 + 1, "B": 51, "C": 51}  # 256 = 51 * 5 + 1
    assert Counter(layout(create("sh", servers(200, 100)))) == {"A": 200, "B": 56}
    assert layout(create("sh", servers(256, 5))) == "A" * 256  # the end of the list gets nothing
    assert layout(create("sh", [])) == "-" * 256


def test_weight0_bucket_gives_none_or_fallback():
    sched = create("sh", servers(1, 0))  # A B A B ...: half the table is the weight-0 server's
    ip = addr_in_bucket(1)
    assert sched.pick(PickContext(ip)) is None
    fb = create("sh", servers(1, 0), {"sh-fallback": True})
    assert fb.pick(PickContext(ip)) is fb.servers[0]


@settings(deadline=None)
@given(st.one_of(ipv4_st, ipv6_st), st.integers(0, 65535), st.integers(0, 65535))
def test_same_address_same_server(ip, p1, p2):
    s = servers(1, 2, 3, 1)
    a, b = create("sh", s), create("sh", s)
    got = a.pick(PickContext(ip, p1))
    assert got is not None
    assert got is a.pick(PickContext(ip, p2)) is b.pick(PickContext(ip, p1))  # port ignored without sh-port
    assert got is a._table[hashkey(ip)]


def test_shares_follow_weights():
    sched = create("sh", servers(1, 2, 3))
    assert Counter(layout(sched)) == {"A": 43, "B": 86, "C": 127}
    rnd = random.Random(7)
    n = 40000
    got = Counter(sched.pick(PickContext(str(ipaddress.IPv4Address(rnd.getrandbits(32))))).name for _ in range(n))
    for name, w in zip("ABC", (1, 2, 3)):
        assert got[name] / n == pytest.approx(w / 6, abs=0.02)
    got6 = Counter(sched.pick(PickContext(str(ipaddress.IPv6Address(rnd.getrandbits(128))))).name for _ in range(n))
    for name, w in zip("ABC", (1, 2, 3)):
        assert got6[name] / n == pytest.approx(w / 6, abs=0.02)


def test_full_server_none_or_kernel_fallback_probe():
    s = servers(1, 1, 1, maxconn=1)
    plain, fb = create("sh", s), create("sh", s, {"sh-fallback": True})
    ip = addr_in_bucket(0)  # bucket 0 is A's
    assert plain.pick(PickContext(ip)) is fb.pick(PickContext(ip)) is s[0]
    s[0].active = 1  # full: the kernel's OVERLOAD
    assert plain.pick(PickContext(ip)) is None
    h = hashkey(ip)
    want = next(fb._table[(o + 2 * h) % TAB_SIZE] for o in range(TAB_SIZE)
                if fb._table[(o + 2 * h) % TAB_SIZE].available)  # ip_vs_sh_get_fallback's probe
    assert fb.pick(PickContext(ip)) is want is not s[0]
    s[1].active = s[2].active = 1
    assert fb.pick(PickContext(ip)) is None


def test_down_server_leaves_the_table():
    be = backend(1, 1, 1)
    be.set_up(be.servers[1], False)
    assert layout(be.scheduler) == "AC" * 128
    be.set_up(be.servers[1], True)
    assert layout(be.scheduler) == ("ABC" * 86)[:256]


def test_sh_port():
    plain, ported = backend(1, 1, 1), backend(1, 1, 1, sh_port=True)
    ip = "198.51.100.23"
    assert len({plain.pick(PickContext(ip, p)).name for p in range(1024, 1100)}) == 1
    seen = {ported.pick(PickContext(ip, p)).name for p in range(1024, 1100)}
    assert seen == {"A", "B", "C"}
    for p in (0, 1, 80, 65535):
        want = ported.scheduler._table[hash_32((p + addr_fold(ip)) & 0xFFFFFFFF, 8)]
        assert ported.pick(PickContext(ip, p)) is ported.pick(PickContext(ip, p)) is want
    assert ported.pick(PickContext(ip, 0)).name == plain.pick(PickContext(ip, 12345)).name  # port 0: no port


def test_avoid_is_never_returned():
    s = servers(1, 1)
    plain, fb = create("sh", s), create("sh", s, {"sh-fallback": True})
    ip = addr_in_bucket(0)
    assert plain.pick(PickContext(ip), avoid=s[0]) is None
    assert fb.pick(PickContext(ip), avoid=s[0]) is s[1]
    assert fb.pick(PickContext(ip), avoid=s[1]) is s[0]  # not its bucket: unaffected
    s[1].up = False  # (no hook: the table still holds B, unavailable)
    assert fb.pick(PickContext(ip), avoid=s[0]) is None


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.integers(0, 120), min_size=1, max_size=6),
       events=st.lists(st.tuples(st.sampled_from(["up", "down", "weight", "take", "drop"]),
                                 st.integers(0, 5), st.integers(0, 120)), max_size=30))
def test_table_always_equals_a_fresh_build(weights, events):
    be = backend(*weights)
    sched = be.scheduler
    for kind, i, w in events:
        s = be.servers[i % len(weights)]
        table = sched._table
        if kind == "up":
            be.set_up(s, True)
        elif kind == "down":
            be.set_up(s, False)
        elif kind == "weight":
            be.set_weight(s, w)
        elif kind == "take":
            be.take(s)
        elif s.active:
            be.drop(s)
        if kind in ("take", "drop"):
            assert sched._table is table  # no rebuild on load changes
        assert sched._table == create("sh", be.servers)._table
        up = [x for x in be.servers if x.up]
        assert set(sched._table) - {None} <= set(up)
        assert (None in sched._table) == (not up)
