"""HAProxy's map (lb_map.c) and hash settings as HAProxy 2.6 has them, without sockets. The slot
orders below are what a real haproxy 2.6 answered with `balance static-rr` (the integration test
test_haproxy_same_picks.py asks it again when haproxy is installed)."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.schedulers.haproxy import EXACT_MAP_STEPS, smooth_map, weighted_map
from virtserve.schedulers.hashsched import hash_settings


@pytest.mark.parametrize("weights,order", [
    ([4, 3, 2], "ABABCAABC"),
    ([3, 1], "AAAB"),
    ([5, 3, 2, 7], "ABDADBADCDABDADCD"),
    ([4, 2], "AAB"),  # divided by their gcd: 2, 1
    ([1, 1, 1], "ABC"),
])
def test_slot_order_is_haproxys(weights, order):
    assert "".join(weighted_map("ABCD"[:len(weights)], weights)) == order


def test_a_later_weight_rounds_up_over_the_configured_gcd():
    # init_server_map divides by the gcd of the configured weights (4, 2 -> 2): a weight set
    # later to 3 counts ceil(3 / 2) = 2, as HAProxy's next_eweight.
    assert Counter(weighted_map("AB", [3, 2], gcd_of=[4, 2])) == {"A": 2, "B": 1}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=12))
def test_each_server_gets_its_weight_in_slots(weights):
    servers = [f"s{i}" for i in range(len(weights))]
    table = weighted_map(servers, weights)
    from math import gcd
    g = 0
    for w in weights:
        g = gcd(g, w)
    assert Counter(table) == {s: w // g for s, w in zip(servers, weights) if w}


def test_past_the_exact_fill_the_shares_stay():
    n = 1000
    weights = [1 + i % 4 for i in range(n)]
    assert n * sum(weights) > EXACT_MAP_STEPS
    table = weighted_map(list(range(n)), weights)
    assert table == smooth_map(list(range(n)), weights)
    assert Counter(table) == {i: w for i, w in enumerate(weights)}


@pytest.mark.parametrize("options,want", [
    ({}, ("map-based", "sdbm", False)),
    ({"hash-type": "consistent"}, ("consistent", "sdbm", True)),  # cfgparse: bare consistent avalanches
    ({"hash-type": "consistent sdbm"}, ("consistent", "sdbm", False)),
    ({"hash-type": "consistent", "hash-function": "djb2"}, ("consistent", "djb2", False)),
    ({"hash-type": "map-based djb2 avalanche"}, ("map-based", "djb2", True)),
])
def test_hash_settings_as_haproxy_parses_them(options, want):
    assert hash_settings(options) == want
