"""The runtime API on a UNIX socket, driven with HAProxy's commands; effects seen in traffic,
on the stats CSV and in the metrics; `virtserve ctl` as the client."""
import asyncio
import subprocess
import sys

import aiohttp
import pytest
from admin_helpers import admin_topology, stats_url

from virtserve.engine.admin.socket import send

pytestmark = pytest.mark.timeout(30)


async def ctl(path, command):
    return await asyncio.to_thread(send, str(path), command)


async def _traffic(lb, n, path="/"):
    async with aiohttp.ClientSession() as s:
        return [await (await s.get(lb.url + path)).text() for _ in range(n)]


async def test_show_commands(backends, balancer, tmp_path):
    web1, web2 = await backends("web1", "web2")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"page": False, "socket": str(sock)}))
    await _traffic(lb, 4)
    info = await ctl(sock, "show info")
    fields = dict(line.split(": ", 1) for line in info.strip().splitlines())
    assert fields["Name"] == "virtserve" and int(fields["CumConns"]) >= 1 and fields["CumReq"] == "4"
    stat = await ctl(sock, "show stat")
    assert stat.startswith("# pxname,svname,") and "\nvs,s1," in stat and "\nvs,BACKEND," in stat
    state = (await ctl(sock, "show servers state")).splitlines()
    assert state[0] == "1" and state[1].startswith("# be_id be_name srv_id srv_name srv_addr srv_op_state")
    assert state[2].split()[:8] == ["1", "vs", "1", "s1", "127.0.0.1", "2", "0", "1"]
    assert (await ctl(sock, "bogus")).startswith("Unknown command")
    # HAProxy's filters: {<iid>|<proxy>} <type mask: 1 frontends, 2 backends, 4 servers> <sid>
    def names(csv_text):
        return [line.split(",")[1] for line in csv_text.strip().splitlines()[1:]]

    assert names(await ctl(sock, "show stat vs 4 -1")) == ["s1", "s2"]
    assert names(await ctl(sock, "show stat -1 3 -1")) == ["FRONTEND", "BACKEND"]
    assert names(await ctl(sock, "show stat vs 4 2")) == ["s2"]
    assert names(await ctl(sock, "show stat 2 -1 -1")) == ["s1", "s2", "BACKEND"]  # the backend's iid
    assert names(await ctl(sock, "show stat nope -1 -1")) == []
    assert (await ctl(sock, "show stat vs x -1")).startswith("Invalid type 'x'")
    # two commands on one line, as HAProxy takes them
    both = await ctl(sock, "show info; show servers state")
    assert "Name: virtserve" in both and "# be_id" in both


async def test_drain_lets_established_finish_and_takes_no_new(backends, balancer, tmp_path):
    web1, web2 = await backends("web1", "web2")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"page": False, "socket": str(sock)}))
    async with aiohttp.ClientSession() as s:
        slow = asyncio.ensure_future(s.get(lb.url + "/slow/0.6"))  # rr: lands on s1
        async with asyncio.timeout(5):
            while lb.servers()[0]["active"] != 1:
                await asyncio.sleep(0.01)
        assert await ctl(sock, "set server vs/s1 state drain") == "\n"
        seen = await _traffic(lb, 6)
        resp = await slow
        assert resp.status == 200 and await resp.text() == "web1"  # the established one finished
    assert set(seen) == {"web2"}
    sess = await ctl(sock, "show sess")
    assert sess.endswith("\n")
    stat = await ctl(sock, "show stat")
    assert ",DRAIN,0," in [l for l in stat.splitlines() if l.startswith("vs,s1,")][0]
    await ctl(sock, "set server vs/s1 state ready")
    assert set(await _traffic(lb, 4)) == {"web1", "web2"}


async def test_weights_maint_and_enable(backends, balancer, tmp_path):
    web1, web2 = await backends("web1", "web2")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port, web2.port], scheduler="wrr", weights=[2, 2],
                                       stats={"page": False, "socket": str(sock)}))
    assert await ctl(sock, "set server vs/s1 weight 300") == "Weight must be between 0 and 256.\n\n"
    assert await ctl(sock, "set weight vs/s2 50%") == "\n"
    assert (await ctl(sock, "get weight vs/s2")).startswith("1 (initial 2)")
    await ctl(sock, "set server vs/s1 weight 3")
    seen = await _traffic(lb, 8)
    assert seen.count("web1") == 6 and seen.count("web2") == 2
    await ctl(sock, "disable server vs/s2")
    assert set(await _traffic(lb, 4)) == {"web1"}
    assert lb.servers()[1]["weight"] == 0
    await ctl(sock, "enable server vs/s2")
    assert "web2" in await _traffic(lb, 4)
    assert (await ctl(sock, "set server vs/nope weight 1")) == "No such server.\n\n"


async def test_add_and_del_server_without_reload(backends, balancer, tmp_path):
    web1, web2, web3 = await backends("web1", "web2", "web3")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"socket": str(sock)}))
    assert await ctl(sock, f"add server vs/s3 127.0.0.1:{web3.port} weight 1") == "New server registered.\n\n"
    assert "web3" not in await _traffic(lb, 6)  # created in maintenance, as HAProxy does
    await ctl(sock, "enable server vs/s3")
    assert (await _traffic(lb, 6)).count("web3") == 2
    assert (await ctl(sock, "add server vs/s3 127.0.0.1:1")).startswith("Already exists")
    # shows on the page and in the metrics
    async with aiohttp.ClientSession() as s:
        assert ">s3<" in await (await s.get(stats_url(lb, "/"))).text()
        assert 'server="s3"' in await (await s.get(stats_url(lb, "/metrics"))).text()
    # del: refused while in service or busy; accepted once drained
    assert (await ctl(sock, "del server vs/s1")).startswith("Only servers in maintenance")
    async with aiohttp.ClientSession() as s:
        slow = None
        for _ in range(3):  # find the slot that lands on s1
            if lb.servers()[0]["active"]:
                break
            slow = asyncio.ensure_future(s.get(lb.url + "/slow/0.5"))
            await asyncio.sleep(0.1)
        await ctl(sock, "set server vs/s1 state maint")
        if lb.servers()[0]["active"]:
            assert (await ctl(sock, "del server vs/s1")).startswith("Server still has connections")
        async with asyncio.timeout(5):
            while lb.servers()[0]["active"]:
                await asyncio.sleep(0.02)
        if slow is not None:
            await slow
    assert await ctl(sock, "del server vs/s1") == "Server deleted.\n\n"
    assert [x["name"] for x in lb.servers()] == ["s2", "s3"]
    assert set(await _traffic(lb, 6)) == {"web2", "web3"}


async def test_set_maxconn_frontend(backends, balancer, tmp_path):
    (web1,) = await backends("web1")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port], stats={"page": False, "socket": str(sock)}))
    assert await ctl(sock, "set maxconn frontend vs 7") == "\n"
    assert lb.engine.frontends["vs"].maxconn == 7
    assert (await ctl(sock, "set maxconn frontend nope 7")) == "No such frontend.\n\n"


async def test_user_level_cannot_change(backends, balancer, tmp_path):
    (web1,) = await backends("web1")
    sock = tmp_path / "admin.sock"
    await balancer(admin_topology([web1.port], stats={"page": False, "socket": str(sock), "socket_level": "user"}))
    assert await ctl(sock, "set server vs/s1 state maint") == "Permission denied\n\n"
    assert "Name: virtserve" in await ctl(sock, "show info")


async def test_virtserve_ctl_cli(backends, balancer, tmp_path):
    web1, web2 = await backends("web1", "web2")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port, web2.port], stats={"page": False, "socket": str(sock)}))

    def run(*words):
        return subprocess.run([sys.executable, "-m", "virtserve", "ctl", str(sock), *words],
                              capture_output=True, text=True, timeout=20)

    done = await asyncio.to_thread(run, "set", "server", "vs/s2", "state", "maint")
    assert done.returncode == 0, done.stderr
    assert set(await _traffic(lb, 4)) == {"web1"}
    done = await asyncio.to_thread(run, "show stat")
    assert done.returncode == 0 and done.stdout.startswith("# pxname,svname")
    done = await asyncio.to_thread(run, "set", "server", "vs/zz", "state", "maint")
    assert done.returncode == 1 and "No such server." in done.stdout
    missing = subprocess.run([sys.executable, "-m", "virtserve", "ctl", str(tmp_path / "none.sock"), "show", "info"],
                             capture_output=True, text=True, timeout=20)
    assert missing.returncode == 1 and "none.sock" in missing.stderr


async def test_add_server_with_check_is_checked_and_del_stops_it(backends, balancer, tmp_path):
    from l4helpers import closed_port, wait_for

    web1, web2 = await backends("web1", "web2")
    sock = tmp_path / "admin.sock"
    lb = await balancer(admin_topology([web1.port], stats={"socket": str(sock)}))
    assert lb.engine.health.runner is None  # nothing was checked before
    dead = closed_port()
    assert await ctl(sock, f"add server vs/gone 127.0.0.1:{dead} check enabled") == "New server registered.\n\n"
    assert await ctl(sock, f"add server vs/live 127.0.0.1:{web2.port} check enabled") == "New server registered.\n\n"
    assert await ctl(sock, f"add server vs/plain 127.0.0.1:{dead} enabled") == "New server registered.\n\n"
    state = {s["name"]: s for s in lb.servers()}
    await wait_for(lambda: {s["name"]: s["status"] for s in lb.servers()}["gone"] == "DOWN")
    status = {s["name"]: s for s in lb.servers()}
    assert status["live"]["status"] == "UP" and status["live"]["check"]["ok"]
    assert status["plain"]["check"] is None and state["plain"]["status"] == "UP"  # no `check`: never probed
    assert "web2" in await _traffic(lb, 4)
    import csv
    import io
    stat = await ctl(sock, "show stat vs 4 -1")
    rows = {r["svname"]: r for r in csv.DictReader(io.StringIO(stat[2:]))}
    assert (rows["gone"]["status"], rows["gone"]["check_status"]) == ("DOWN", "L4CON")
    assert (rows["live"]["status"], rows["live"]["check_status"]) == ("UP", "L4OK")
    await ctl(sock, "set server vs/gone state maint")
    assert await ctl(sock, "del server vs/gone") == "Server deleted.\n\n"
    assert [c.server.name for c in lb.engine.health.runner.checks] == ["live"]
