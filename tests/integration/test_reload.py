"""Reload: a new config applies without losing a request; a bad one changes nothing."""
import asyncio
import dataclasses
import shutil
import signal
import socket
import sys

import aiohttp
import pytest
from helpers import topology

from virtserve.engine.config import ConfigError

pytestmark = pytest.mark.timeout(60)


def _listen(port_a: int, lb_port: int = 0, extra: str = "") -> dict:
    return {"listen": {"web": {"bind": f"127.0.0.1:{lb_port}", "servers": [{"name": "a", "address": f"127.0.0.1:{port_a}"}]}}}


async def test_reload_switches_servers_on_the_same_socket_and_in_flight_requests_finish(backends, balancer):
    one, two = await backends("one", "two")
    lb = await balancer(_listen(one.port))
    address = lb.address
    async with aiohttp.ClientSession() as s:
        in_flight = asyncio.ensure_future(s.get(lb.url + "/slow/0.5"))
        await asyncio.sleep(0.1)
        await lb.reload(_listen(two.port, lb_port=address[1]))
        assert lb.address == address
        assert await (await s.get(lb.url)).text() == "two"
        old = await asyncio.wait_for(in_flight, 5)
        assert old.status == 200 and await old.text() == "one"


async def test_servers_that_stay_keep_state_and_counters(backends, balancer):
    one, two = await backends("one", "two")
    config = topology([one.port])
    lb = await balancer(config)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            await (await s.get(lb.url)).read()
        backend = dataclasses.replace(config.backends[0], servers=config.backends[0].servers + (
            dataclasses.replace(config.backends[0].servers[0], name="s2", port=two.port),))
        await lb.reload(dataclasses.replace(config, backends=(backend,)))
        state = {s["name"]: s for s in lb.servers()}
        assert state["s1"]["total"] == 3 and state["s2"]["total"] == 0
        assert {await (await s.get(lb.url)).text() for _ in range(2)} == {"one", "two"}


async def test_a_config_that_does_not_validate_or_bind_changes_nothing(backends, balancer):
    (one,) = await backends("one")
    lb = await balancer(_listen(one.port))
    bad = _listen(one.port)
    bad["listen"]["web"]["scheduler"] = "nope"
    with pytest.raises(ConfigError):
        await lb.reload(bad)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        conflict = _listen(one.port)
        conflict["listen"]["other"] = {"bind": f"127.0.0.1:{taken.getsockname()[1]}",
                                       "servers": [{"address": f"127.0.0.1:{one.port}"}]}
        with pytest.raises(OSError):
            await lb.reload(conflict)
    finally:
        taken.close()
    assert list(lb.addresses) == ["web"]
    async with aiohttp.ClientSession() as s:
        assert await (await s.get(lb.url)).text() == "one"


async def test_listeners_open_and_close_with_the_config(backends, balancer):
    (one,) = await backends("one")
    lb = await balancer(_listen(one.port))
    both = _listen(one.port, lb_port=lb.address[1])
    both["listen"]["second"] = {"bind": "127.0.0.1:0", "servers": [{"address": f"127.0.0.1:{one.port}"}]}
    await lb.reload(both)
    host, port = lb.addresses["second"][0]
    async with aiohttp.ClientSession() as s:
        assert await (await s.get(f"http://{host}:{port}/")).text() == "one"
    await lb.reload(_listen(one.port, lb_port=lb.address[1]))
    assert "second" not in lb.addresses
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_reload_to_forward_auto_keeps_the_relay_where_the_kernel_cannot_serve(backends, balancer, caplog):
    # The kernel's side of a reload runs in tests/ipvs (ipvs-vm); here the decision and the socket.
    (one,) = await backends("one")
    relay = _listen(one.port)
    relay["listen"]["web"].update(mode="tcp", scheduler="roundrobin")
    lb = await balancer(relay)
    address = lb.address
    relay["listen"]["web"].update(bind=f"127.0.0.1:{address[1]}", forward="auto")
    with caplog.at_level("INFO", logger="virtserve.ipvs"):
        await lb.reload(relay)
    assert "frontend web: served by the userspace relay (forward = 'auto' but scheduler 'roundrobin'" in caplog.text
    assert lb.address == address
    async with aiohttp.ClientSession() as s:
        assert await (await s.get(lb.url)).text() == "one"


async def test_reloads_under_steady_load_lose_no_request(backends, balancer):
    one, two = await backends("one", "two")
    lb = await balancer(_listen(one.port))
    port = lb.address[1]
    done = {"ok": 0, "failed": 0}
    stop = asyncio.Event()

    async def client():
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                try:
                    async with s.get(lb.url) as r:
                        await r.read()
                        done["ok" if r.status == 200 else "failed"] += 1
                except aiohttp.ClientError:
                    done["failed"] += 1

    clients = [asyncio.ensure_future(client()) for _ in range(20)]
    for i in range(10):
        await asyncio.sleep(0.15)
        await lb.reload(_listen((one, two)[i % 2].port, lb_port=port))
    stop.set()
    await asyncio.wait_for(asyncio.gather(*clients), 10)
    assert done["failed"] == 0 and done["ok"] > 500


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
async def test_wrk_through_reloads_and_a_broken_config_sees_no_error(backends, balancer, tmp_path):
    one, two = await backends("one", "two")
    lb = await balancer(_listen(one.port))
    port = lb.address[1]
    wrk = await asyncio.create_subprocess_exec("wrk", "-t1", "-c20", "-d3s", lb.url + "/",
                                               stdout=asyncio.subprocess.PIPE)
    for i in range(8):
        await asyncio.sleep(0.25)
        if i == 4:
            with pytest.raises(ConfigError):
                await lb.reload({"listen": {"web": {"bind": f"127.0.0.1:{port}", "servers": [{"adress": "x"}]}}})
        else:
            await lb.reload(_listen((one, two)[i % 2].port, lb_port=port))
    out = (await asyncio.wait_for(wrk.communicate(), 20))[0].decode()
    requests = int(out.split(" requests in")[0].split()[-1])
    assert requests > 1000
    assert "Socket errors" not in out and "Non-2xx" not in out, out


async def test_sighup_and_watch_reload_the_file_and_a_broken_file_is_rejected(backends, tmp_path):
    one, two = await backends("one", "two")
    path = tmp_path / "lb.toml"

    def write(port: int, lb_port: int = 0) -> None:
        path.write_text(f'[listen.web]\nbind = "127.0.0.1:{lb_port}"\nservers = [{{ address = "127.0.0.1:{port}" }}]\n')

    write(one.port)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "virtserve", "run", "--watch", str(path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = []

    async def line_with(text: str) -> str:
        async with asyncio.timeout(10):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "".join(output)
                output.append(line)
                if text in line:
                    return line

    try:
        lb_port = int((await line_with("listening on")).rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{lb_port}/"
        async with aiohttp.ClientSession() as s:
            assert await (await s.get(url)).text() == "one"
            write(two.port, lb_port)
            proc.send_signal(signal.SIGHUP)
            await line_with("reloaded")
            assert await (await s.get(url)).text() == "two"
            path.write_text("[listen.web\n")  # broken: picked up by --watch
            await line_with("reload rejected")
            assert await (await s.get(url)).text() == "two"
            write(one.port, lb_port)
            await line_with("reloaded")
            assert await (await s.get(url)).text() == "one"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
