"""Same servers, same order as HAProxy itself: real haproxy and virtserve in front of the same
naming backends, the same requests, the same answers. static-rr walks lb_map.c's slot order;
`balance uri` (map-based and consistent) sends each URI to the server HAProxy sends it to, which
checks the hash functions, the map's slot order and the ring's points together."""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess

import aiohttp
import pytest
from helpers import topology

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("haproxy") is None,
                                 reason="haproxy is not installed (apt-get install haproxy)")]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def haproxy(tmp_path, ports, weights, balance: str, hash_type: str = ""):
    """A real haproxy with these servers (s1, s2...) and this balance line; yields its URL."""
    port = free_port()
    lines = ["defaults", " mode http", " timeout connect 2s", " timeout client 5s", " timeout server 5s",
             "listen l", f" bind 127.0.0.1:{port}", f" balance {balance}"]
    if hash_type:
        lines.append(f" hash-type {hash_type}")
    lines += [f" server s{i + 1} 127.0.0.1:{p} weight {w}" for i, (p, w) in enumerate(zip(ports, weights))]
    cfg = tmp_path / f"h{port}.cfg"
    cfg.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(5)


async def names(url: str, paths) -> list[str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        out = []
        for p in paths:
            async with s.get(url + p) as r:
                out.append(await r.text())
        return out


@pytest.mark.parametrize("weights", [[4, 3, 2], [3, 1, 1], [5, 3, 2, 7], [2, 4, 6]])
async def test_static_rr_walks_haproxys_slot_order(backends, balancer, tmp_path, weights):
    web = await backends(*[f"s{i + 1}" for i in range(len(weights))])
    ports = [b.port for b in web]
    async with haproxy(tmp_path, ports, weights, "static-rr") as url:
        theirs = await names(url, ["/"] * (2 * sum(weights)))
    lb = await balancer(topology(ports, scheduler="static-rr", weights=weights))
    assert await names(lb.url, ["/"] * (2 * sum(weights))) == theirs


@pytest.mark.parametrize("hash_type", ["map-based", "consistent", "map-based djb2 avalanche", "consistent wt6"])
async def test_uri_hash_sends_each_uri_where_haproxy_does(backends, balancer, tmp_path, hash_type):
    weights = [1, 2, 3, 1]
    web = await backends(*[f"s{i + 1}" for i in range(len(weights))])
    ports = [b.port for b in web]
    paths = [f"/item/{i}?v={i * 7}" for i in range(60)]
    async with haproxy(tmp_path, ports, weights, "uri", hash_type) as url:
        theirs = await names(url, paths)
    lb = await balancer(topology(ports, scheduler="uri", weights=weights, options={"hash-type": hash_type}))
    ours = await names(lb.url, paths)
    assert len(set(theirs)) >= 3
    assert ours == theirs


async def names_from(url: str, ips) -> list[str]:
    out = []
    for ip in ips:
        connector = aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s, s.get(url + "/") as r:
            out.append(await r.text())
    return out


@pytest.mark.parametrize("hash_type", ["map-based", "consistent"])
async def test_source_sends_each_client_address_where_haproxy_does(backends, balancer, tmp_path, hash_type):
    weights = [2, 1, 3]
    web = await backends("s1", "s2", "s3")
    ports = [b.port for b in web]
    ips = [f"127.0.{i // 200}.{i % 200 + 2}" for i in range(0, 400, 13)]
    async with haproxy(tmp_path, ports, weights, "source", hash_type) as url:
        theirs = await names_from(url, ips)
    lb = await balancer(topology(ports, scheduler="source", weights=weights, options={"hash-type": hash_type}))
    assert len(set(theirs)) >= 2
    assert await names_from(lb.url, ips) == theirs


async def test_url_param_check_post_sends_each_form_where_haproxy_does(backends, balancer, tmp_path):
    web = await backends("s1", "s2", "s3")
    ports = [b.port for b in web]
    forms = [b"a=%d&user=u%d&b=2" % (i, i * 31) for i in range(30)]

    async def posted(url: str) -> list[str]:
        out = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for body in forms:
                async with s.post(url + "/echo", data=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                    assert await r.read() == body
                    out.append(r.headers["X-Backend"])
        return out

    async with haproxy(tmp_path, ports, [1, 1, 1], "url_param user check_post") as url:
        theirs = await posted(url)
    lb = await balancer(topology(ports, scheduler="url_param", options={"param": "user", "check-post": True}))
    assert len(set(theirs)) >= 2
    assert await posted(lb.url) == theirs
