"""Every algorithm through the real proxy: aiohttp backends that name themselves for L7, raw
naming servers for L4, distinct client addresses on 127.0.0.0/8 for the source-based ones,
real URIs, headers, RDP cookies and persistence cookies."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter

import aiohttp
import pytest
from helpers import topology
from l4helpers import active, hold, naming, wait_for

from virtserve.engine.config.model import Config, CookieSpec, PersistentSpec, StickSpec

pytestmark = pytest.mark.timeout(60)


def with_backend(cfg: Config, servers=None, **changes) -> Config:
    be = cfg.backends[0]
    if servers:
        changes["servers"] = tuple(dataclasses.replace(s, **servers[i]) for i, s in enumerate(be.servers))
    return dataclasses.replace(cfg, backends=(dataclasses.replace(be, **changes),))


async def names_of(lb, paths, headers=None, local_ip=None):
    connector = aiohttp.TCPConnector(local_addr=(local_ip, 0) if local_ip else None, force_close=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as s:
        out = []
        for p in paths:
            async with s.get(lb.url + p, headers=headers or {}) as r:
                out.append(await r.text())
        return out


async def three(backends):
    return await backends("s1", "s2", "s3")


# --- L7, algorithms that read nothing from the request -------------------------------------

@pytest.mark.parametrize("name,weights,expected", [
    ("roundrobin", [2, 1, 1], {"s1": 20, "s2": 10, "s3": 10}),
    ("static-rr", [2, 1, 1], {"s1": 20, "s2": 10, "s3": 10}),
    ("rr", [1, 1, 1], {"s1": 14, "s2": 13, "s3": 13}),
    ("wrr", [2, 1, 1], {"s1": 20, "s2": 10, "s3": 10}),
])
async def test_weighted_rotations(backends, balancer, name, weights, expected):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler=name, weights=weights))
    got = Counter(await names_of(lb, ["/"] * 40))
    assert got == expected


async def test_roundrobin_interleaves_smoothly(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="roundrobin", weights=[2, 1, 1]))
    got = await names_of(lb, ["/"] * 4)
    assert sorted(got) == ["s1", "s1", "s2", "s3"] and got[0] == "s1" and got[1] != "s1"


@pytest.mark.parametrize("name", ["lc", "wlc", "sed", "nq", "leastconn", "twos", "random", "lblc", "lblcr"])
async def test_least_loaded_family_spreads_concurrent_slow_requests(backends, balancer, name):
    """Requests held open at the servers: each new one goes to a server with fewer in flight."""
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler=name))
    async with aiohttp.ClientSession() as s:
        async def one():
            async with s.get(lb.url + "/slow/0.5") as r:
                return await r.text()
        got = Counter(await asyncio.gather(*(one() for _ in range(9))))
    if name in ("lblc", "lblcr"):
        # Locality: every request asked for the same destination address, so it stays on one
        # server until that one is overloaded (active > weight while another is idle), then grows.
        assert len(got) >= 2 and sum(got.values()) == 9
    elif name in ("twos", "random"):
        assert sum(got.values()) == 9 and max(got.values()) <= 6
    else:
        assert got == {"s1": 3, "s2": 3, "s3": 3}


@pytest.mark.parametrize("name,weights,want", [("fo", [1, 5, 2], "s2"), ("first", [1, 5, 2], "s1"),
                                                ("ovf", [1, 5, 2], "s2")])
async def test_failover_family(backends, balancer, name, weights, want):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler=name, weights=weights))
    assert set(await names_of(lb, ["/"] * 5)) == {want}
    be = lb.engine.backends["vs"]
    be.set_up(be.by_name[want], False)
    after = set(await names_of(lb, ["/"] * 3))
    assert want not in after and len(after) == 1


async def test_dh_goes_by_the_destination_address(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="dh"))
    got = set(await names_of(lb, ["/"] * 6))
    # ip_vs_dh.c: bucket (daddr * 2654435761) & 255 of 127.0.0.1, buckets dealt s1, s2, s3, ...
    bucket = (0x7F000001 * 2654435761) & 255
    assert got == {f"s{bucket % 3 + 1}"}


# --- L7 hashing ------------------------------------------------------------------------------

@pytest.mark.parametrize("hash_type", ["map-based", "consistent sdbm avalanche", "map-based djb2", "consistent wt6"])
async def test_uri_hash_sticks_per_path_and_spreads(backends, balancer, hash_type):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="uri", options={"hash-type": hash_type}))
    paths = [f"/item/{i}?q={i}" for i in range(30)]
    first = await names_of(lb, paths)
    again = await names_of(lb, [p.split("?")[0] + "?other" for p in paths])  # the query is not hashed
    assert first == again
    assert len(set(first)) >= 2


async def test_uri_depth_and_whole(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="uri", options={"depth": 1}))
    got = await names_of(lb, [f"/app/{i}" for i in range(10)])
    assert len(set(got)) == 1  # only "/app" is hashed
    lb2 = await balancer(topology([b.port for b in web], scheduler="uri", options={"whole": True}))
    got = await names_of(lb2, [f"/same?v={i}" for i in range(20)])
    assert len(set(got)) >= 2  # the query string is part of the key


async def test_url_param_sticks_and_falls_back_to_round_robin(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="url_param", options={"param": "user"}))
    users = [f"/x?a=1&user=u{i}" for i in range(20)]
    first = await names_of(lb, users)
    assert first == await names_of(lb, [f"/y?user=u{i}" for i in range(20)])
    assert len(set(first)) >= 2
    assert await names_of(lb, ["/none"] * 3) in (["s1", "s2", "s3"], ["s2", "s3", "s1"], ["s3", "s1", "s2"])


async def test_hdr_host_with_use_domain_only(backends, balancer):
    web = await three(backends)
    lb = await balancer(topology([b.port for b in web], scheduler="hdr",
                                 options={"header": "host", "use-domain-only": True}))
    got = set()
    for sub in ("www", "api", "img"):
        got |= set(await names_of(lb, ["/"] * 2, headers={"Host": f"{sub}.example.com"}))
    assert len(got) == 1  # only "example" is hashed
    spread = set()
    for i in range(12):
        spread |= set(await names_of(lb, ["/"], headers={"Host": f"www.site{i}.org"}))
    assert len(spread) >= 2


# --- L4: source-based and payload-based ----------------------------------------------------

async def start_named(raw_server, n):
    return [await raw_server(naming(f"s{i + 1}")) for i in range(n)]


@pytest.mark.parametrize("name,options", [("source", {}), ("source", {"hash-type": "consistent", "avalanche": True}),
                                          ("mh", {}), ("mh", {"mh-port": True, "mh-fallback": True}), ("sh", {})])
async def test_source_hashes_bind_each_client_address(raw_server, balancer, name, options):
    servers = await start_named(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler=name, options=options))
    sources = [f"127.0.0.{i}" for i in range(2, 32)]
    held = []
    placement = {}
    try:
        for ip in sources:
            h1 = await hold(lb, local_ip=ip)
            h2 = await hold(lb, local_ip=ip)
            held += [h1, h2]
            if not options.get("mh-port"):
                assert h1.name == h2.name, f"{ip} went to {h1.name} and {h2.name}"
            placement[ip] = h1.name
        assert len(set(placement.values())) >= 2
    finally:
        for h in held:
            h.close()


def rdp_request(user: str) -> bytes:
    cookie = f"Cookie: mstshash={user}\r\n".encode()
    x224 = bytes([6 + len(cookie), 0xE0, 0, 0, 0, 0, 0]) + cookie
    return bytes([3, 0]) + (4 + len(x224)).to_bytes(2, "big") + x224


async def test_rdp_cookie_holds_the_first_bytes_and_hashes_the_user(raw_server, balancer):
    servers = await start_named(raw_server, 3)
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="rdp-cookie"))
    host, port = lb.address

    async def connect(user):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(rdp_request(user))
        async with asyncio.timeout(5):
            name = (await reader.readline()).decode().strip()
            echoed = await reader.readexactly(len(rdp_request(user)))
        writer.close()
        assert echoed == rdp_request(user)  # the held bytes reached the server intact
        return name

    users = [f"user{i}" for i in range(15)]
    first = [await connect(u) for u in users]
    assert first == [await connect(u) for u in users]
    assert len(set(first)) >= 2


# --- persistence -----------------------------------------------------------------------------

async def get(lb, path="/", cookie=None, method="GET"):
    headers = {"Cookie": cookie} if cookie else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        async with s.request(method, lb.url + path, headers=headers) as r:
            return await r.text(), r.headers.getall("Set-Cookie", []), r.headers.get("Cache-Control")


async def test_cookie_insert_indirect_sticks_and_hides_the_cookie(backends, balancer):
    web = await three(backends)
    cfg = with_backend(topology([b.port for b in web]), redispatch=True,
                       cookie=CookieSpec("SRV", indirect=True, nocache=True, httponly=True),
                       servers=[{"cookie": "a"}, {"cookie": "b"}, {"cookie": "c"}])
    lb = await balancer(cfg)
    name, set_cookie, cache = await get(lb)
    value = {"s1": "a", "s2": "b", "s3": "c"}[name]
    assert set_cookie == [f"SRV={value}; path=/; HttpOnly"] and cache == "private"
    for _ in range(5):  # the cookie pins the server, and no new cookie is sent
        again, sc, _ = await get(lb, "/headers", cookie=f"SRV={value}; other=1")
        body = json.loads(again)
        assert body["backend"] == name and sc == []
        cookies = [v for k, v in body["headers"] if k.lower() == "cookie"]
        assert cookies == ["other=1"]  # indirect: the server never sees SRV
    # A bogus value is re-cookied; a down server's cookie is redispatched and re-cookied.
    _, sc, _ = await get(lb, cookie="SRV=zzz")
    assert len(sc) == 1
    be = lb.engine.backends["vs"]
    be.set_up(be.by_name[name], False)
    other, sc, _ = await get(lb, cookie=f"SRV={value}")
    assert other != name and sc and not sc[0].startswith(f"SRV={value};")


async def test_cookie_prefix_and_rewrite_edit_the_servers_cookie(backends, balancer, raw_server):
    async def app(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: JSESSIONID=xyz; Path=/\r\n\r\nok")
        await writer.drain()
        await reader.read()

    s = await raw_server(app)
    for mode, want in (("prefix", "JSESSIONID=web~xyz; Path=/"), ("rewrite", "JSESSIONID=web; Path=/")):
        cfg = with_backend(topology([s.port]), cookie=CookieSpec("JSESSIONID", mode=mode),
                           servers=[{"cookie": "web"}])
        lb = await balancer(cfg)
        _, sc, _ = await get(lb)
        assert sc == [want]


async def test_cookie_postonly_and_maxidle(backends, balancer):
    web = await three(backends)
    cfg = with_backend(topology([b.port for b in web]), cookie=CookieSpec("SRV", postonly=True))
    lb = await balancer(cfg)
    assert (await get(lb))[1] == []
    assert len((await get(lb, "/echo", method="POST"))[1]) == 1
    cfg = with_backend(topology([b.port for b in web]), cookie=CookieSpec("SRV", maxidle=60, maxlife=3600))
    lb = await balancer(cfg)
    name, sc, _ = await get(lb)
    value = sc[0].split(";")[0].split("=", 1)[1]
    assert value.count("|") == 2
    for _ in range(4):
        again, sc_again, _ = await get(lb, cookie=f"SRV={value}")
        assert again == name and sc_again == []  # fresh: neither moved nor re-cookied
    # Dates from 1970: idle and life exceeded, the cookie is ignored and a fresh one is set.
    srv = value.split("|")[0]
    _, sc2, _ = await get(lb, cookie=f"SRV={srv}|1|1")
    assert len(sc2) == 1 and "|1|1;" not in sc2[0]


@pytest.mark.parametrize("setting", [PersistentSpec(timeout=30, netmask=24), StickSpec(size=100, expire=30)])
async def test_source_persistence_over_round_robin(raw_server, balancer, setting):
    servers = await start_named(raw_server, 3)
    kind = "persistent" if isinstance(setting, PersistentSpec) else "stick"
    lb = await balancer(with_backend(topology([s.port for s in servers], mode="tcp", scheduler="rr"), **{kind: setting}))
    held = [await hold(lb, local_ip="127.0.0.2") for _ in range(4)]
    assert len({h.name for h in held}) == 1
    other = await hold(lb, local_ip="127.0.0.3")
    if kind == "persistent":  # /24: the same client network, the same server
        assert other.name == held[0].name
    else:
        assert other.name != held[0].name
    for h in held + [other]:
        h.close()
    await wait_for(lambda: all(v == 0 for v in active(lb).values()))
    # After the connections ended, the record holds until its timeout.
    assert (await hold(lb, local_ip="127.0.0.2")).name == held[0].name
    # A down server loses its clients to the scheduler.
    be = lb.engine.backends["vs"]
    be.set_up(be.by_name[held[0].name], False)
    assert (await hold(lb, local_ip="127.0.0.2")).name != held[0].name


# --- geo -----------------------------------------------------------------------------------

async def test_geo_sends_each_network_to_its_group(raw_server, balancer, tmp_path):
    servers = await start_named(raw_server, 3)
    nets = tmp_path / "nets.txt"
    nets.write_text("# network group\n127.0.0.3/32 b\n")
    options = {"networks": ("127.0.0.2/32=a",), "networks-file": str(nets), "group-a": ("s1",),
               "group-b": ("s2", "s3"), "inner": "rr"}
    lb = await balancer(topology([s.port for s in servers], mode="tcp", scheduler="geo", options=options))
    held = [await hold(lb, local_ip="127.0.0.2") for _ in range(3)]
    assert [h.name for h in held] == ["s1"] * 3
    held += [await hold(lb, local_ip="127.0.0.3") for _ in range(4)]
    assert [h.name for h in held[3:]] == ["s2", "s3", "s2", "s3"]  # rr inside group b
    held += [await hold(lb, local_ip="127.0.0.9") for _ in range(3)]
    assert {h.name for h in held[7:]} == {"s1", "s2", "s3"}  # unmatched: the default (every server)
    for h in held:
        h.close()
