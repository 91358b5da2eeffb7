"""Where L4 connections land: rr, wrr, wlc and sh (IPVS semantics) placing many concurrent,
held-open connections over raw servers that name themselves, and the live server counters."""
import asyncio

import pytest
from helpers import topology
from l4helpers import Held, active, hold, hold_many, landed, naming, relay_conns, wait_for

pytestmark = pytest.mark.timeout(60)


async def start_servers(raw_server, n):
    return [await raw_server(naming(f"s{i + 1}")) for i in range(n)]


async def close_all(lb, held: list[Held]):
    for h in held:
        h.close()
    await wait_for(lambda: not relay_conns(lb) and all(v == 0 for v in active(lb).values()))


# --- rr ------------------------------------------------------------------------------------

async def test_rr_spreads_held_connections_evenly(raw_server, balancer):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="rr"))
    held = await hold_many(lb, 60)
    assert landed(held) == {"s1": 20, "s2": 20, "s3": 20}
    # The live counters show them while they are held...
    assert active(lb) == {"s1": 20, "s2": 20, "s3": 20}
    assert [s["total"] for s in lb.servers()] == [20, 20, 20]
    assert [s.connections for s in servers] == [20, 20, 20]
    assert len(relay_conns(lb)) == 60
    # ...and 0 once the clients are gone.
    await close_all(lb, held)
    assert [s["total"] for s in lb.servers()] == [20, 20, 20]


async def test_rr_order(raw_server, balancer):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="rr"))
    held = [await hold(lb) for _ in range(7)]
    assert [h.name for h in held] == ["s1", "s2", "s3", "s1", "s2", "s3", "s1"]
    await close_all(lb, held)


# --- wrr -----------------------------------------------------------------------------------

async def test_wrr_follows_weights(raw_server, balancer):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="wrr",
                                 weights=[3, 2, 1]))
    held = await hold_many(lb, 60)
    assert landed(held) == {"s1": 30, "s2": 20, "s3": 10}
    assert active(lb) == {"s1": 30, "s2": 20, "s3": 10}
    await close_all(lb, held)


async def test_wrr_interleaves_like_ipvs(raw_server, balancer):
    # ip_vs_wrr.c: weights 4, 3, 2 give A A B A B C A B C.
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="wrr",
                                 weights=[4, 3, 2]))
    held = [await hold(lb) for _ in range(9)]
    assert "".join(h.name for h in held) == "s1s1s2s1s2s3s1s2s3"
    await close_all(lb, held)


# --- wlc -----------------------------------------------------------------------------------

async def test_wlc_sends_new_connections_to_the_least_loaded(raw_server, balancer):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="wlc"))
    first = [await hold(lb) for _ in range(4)]
    assert [h.name for h in first] == ["s1", "s2", "s3", "s1"]  # ties go to the first
    # Keep the two on s1 open, let the others go: s1 holds 2, s2 and s3 none.
    keep = [h for h in first if h.name == "s1"]
    for h in first:
        if h.name != "s1":
            h.close()
    await wait_for(lambda: active(lb) == {"s1": 2, "s2": 0, "s3": 0})
    new = [await hold(lb) for _ in range(4)]
    assert [h.name for h in new] == ["s2", "s3", "s2", "s3"]  # never s1 until the others catch up
    assert active(lb) == {"s1": 2, "s2": 2, "s3": 2}
    assert (await hold(lb)).name == "s1"  # level again: the tie goes to the first
    await close_all(lb, keep + new)


async def test_wlc_reads_the_load_live(raw_server, balancer):
    """Connections that end make room: the emptied server takes the next ones."""
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="wlc"))
    held = await hold_many(lb, 30)
    assert landed(held) == {"s1": 10, "s2": 10, "s3": 10}
    on_s3 = [h for h in held if h.name == "s3"]
    for h in on_s3:
        h.close()
    await wait_for(lambda: active(lb)["s3"] == 0)
    more = await hold_many(lb, 10)
    assert landed(more) == {"s3": 10}
    await close_all(lb, [h for h in held if h.name != "s3"] + more)


async def test_wlc_weighted_held_connections(raw_server, balancer):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="wlc",
                                 weights=[3, 2, 1]))
    held = await hold_many(lb, 60)
    assert landed(held) == {"s1": 30, "s2": 20, "s3": 10}
    assert active(lb) == {"s1": 30, "s2": 20, "s3": 10}
    await close_all(lb, held)


# --- sh ------------------------------------------------------------------------------------

def ipvs_sh_server(ip: str, weights: list[int]) -> str:
    """The server ip_vs_sh.c gives this source address, computed here from the kernel's
    definitions: bucket = hash_32(addr, 8) (GOLDEN_RATIO_32 = 0x61C88647), and the 256 buckets
    are dealt out in config order, `weight` consecutive buckets per server, round and round."""
    addr = int.from_bytes(bytes(int(x) for x in ip.split(".")), "big")
    bucket = ((addr * 0x61C88647) & 0xFFFFFFFF) >> 24
    pos = bucket % sum(weights)
    for i, w in enumerate(weights):
        if pos < w:
            return f"s{i + 1}"
        pos -= w
    raise AssertionError("unreachable")


@pytest.mark.parametrize("weights", [[1, 1, 1], [2, 1, 1]])
async def test_sh_binds_each_source_address_to_one_server(raw_server, balancer, weights):
    servers = await start_servers(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="sh",
                                 weights=weights))
    sources = [f"127.0.0.{i}" for i in range(2, 42)]  # 40 client addresses, all on loopback
    per_source = await asyncio.gather(*(hold_many(lb, 3, local_ip=ip) for ip in sources))
    held = [h for group in per_source for h in group]
    try:
        assert {c.ctx.client_ip for c in relay_conns(lb)} == set(sources)  # what sh hashed
        placement = {}
        for ip, group in zip(sources, per_source):
            names = {h.name for h in group}
            assert len(names) == 1, f"{ip} landed on {names}"
            placement[ip] = names.pop()
        assert placement == {ip: ipvs_sh_server(ip, weights) for ip in sources}
        # Many addresses spread over every server.
        spread = landed(held)
        assert set(spread) == {"s1", "s2", "s3"}
        assert active(lb) == spread
        # A second round of connections, after the first ones closed, lands the same way.
        await close_all(lb, held)
        held = []
        again = await asyncio.gather(*(hold(lb, local_ip=ip) for ip in sources[:10]))
        held = list(again)
        assert [h.name for h in again] == [placement[ip] for ip in sources[:10]]
    finally:
        await close_all(lb, held)
