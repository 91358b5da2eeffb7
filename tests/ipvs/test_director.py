"""End to end in the guest kernel: a real server in a network namespace behind an IPVS NAT service
that virtserve programs, reached through the virtual address, failing and recovering under the
health checks; runtime weights; reconcile with a table that already holds services; cleanup."""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import pytest
from ipvshelpers import ipvsadm, sh

from virtserve.engine.config.native import parse
from virtserve.engine.engine import Engine

pytestmark = pytest.mark.timeout(400)

VIP, RS, DIRECTOR = "10.9.9.9", "10.0.0.2", "10.0.0.1"

CONFIG = f"""
[listen.web]
bind = "{VIP}:80"
mode = "tcp"
forward = "ipvs"
scheduler = "wrr"
check = {{ type = "connect", interval = "0.3s", timeout = "1s", rise = 1, fall = 1 }}
fallback = {{ address = "{DIRECTOR}:8081", forward = "gate" }}
servers = [ {{ name = "rs1", address = "{RS}:8080", u-threshold = 500, l-threshold = 400 }} ]

[listen.relay]
bind = "127.0.0.1:0"
mode = "tcp"
forward = "auto"
scheduler = "roundrobin"
servers = [ {{ address = "{RS}:8080" }} ]
"""


@pytest.fixture
def network():
    sh("ip link set lo up", "ip netns add rs", "ip link add vd type veth peer name vr",
       "ip link set vr netns rs", f"ip addr add {DIRECTOR}/24 dev vd", "ip link set vd up",
       f"ip netns exec rs ip addr add {RS}/24 dev vr", "ip netns exec rs ip link set vr up",
       "ip netns exec rs ip link set lo up", f"ip netns exec rs ip route add default via {DIRECTOR}",
       f"ip addr add {VIP}/32 dev lo", "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1")
    yield
    subprocess.run("ipvsadm -C; ip netns del rs; ip link del vd", shell=True)


class RealServer:
    """python3 -m http.server inside the namespace: started, killed, started again."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", "rs", sys.executable, "-m", "http.server", "8080",
                                      "--bind", RS], cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


async def get(host: str, port: int) -> bytes:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        return data


async def until(predicate, what: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; table:\n{ipvsadm('-Ln')}")
        await asyncio.sleep(0.2)


def table() -> str:
    return ipvsadm("-Ln")


async def test_nat_service_follows_checks_weights_and_reconciles(network, caplog):
    caplog.set_level(logging.INFO, logger="virtserve.ipvs")
    # Someone else's service, and a stale copy of ours with a destination we do not want.
    sh(f"ipvsadm -A -t {VIP}:99 -s rr", f"ipvsadm -a -t {VIP}:99 -r {RS}:99 -m",
       f"ipvsadm -A -t {VIP}:80 -s rr", f"ipvsadm -a -t {VIP}:80 -r 10.0.0.77:8080 -m")
    server = RealServer()
    server.start()
    try:
        config = parse(CONFIG)
        async with Engine(config) as engine:
            assert "frontend web: served by the kernel (IPVS)" in caplog.text
            assert "frontend relay: served by the userspace relay (forward = 'auto' but scheduler 'roundrobin'" in caplog.text
            assert engine.addresses["web"] == [] and engine.addresses["relay"]
            listed = table()
            assert f"TCP  {VIP}:80 wrr" in listed
            assert f"  -> {RS}:8080" in listed and "10.0.0.77" not in listed  # reconciled
            assert f"TCP  {VIP}:99 rr" in listed  # not ours: untouched
            await until(lambda: b"200" in _try_get(VIP), "the real server to answer through the VIP")

            # Through the userspace relay too (auto fell back): same real server.
            host, port = engine.addresses["relay"][0]
            assert (await get(host, port)).startswith(b"HTTP/1.0 200")

            # Kernel counters reach the stats the page and metrics read.
            rs1 = engine.backends["web"].by_name["rs1"]
            await until(lambda: rs1.total >= 1 and rs1.counters.bytes_out > 0, "kernel counters in the stats")

            # The server fails: out of the table (not quiescent), the fallback comes in.
            server.stop()
            await until(lambda: f"{RS}:8080" not in table() and f"{DIRECTOR}:80 " in table(), "rs1 out, fallback in")
            assert "Route" in table()
            # It recovers: back in, the fallback leaves.
            server.start()
            await until(lambda: f"{RS}:8080" in table() and f"{DIRECTOR}:80 " not in table(), "rs1 back, fallback out")
            await until(lambda: b"200" in _try_get(VIP), "the real server to answer again")

            # A runtime weight change reaches the kernel; drain takes it to 0.
            backend = engine.backends["web"]
            backend.set_user_weight(rs1, 7)
            assert f"  -> {RS}:8080                Masq    7 " in table()
            backend.set_admin(rs1, "drain")
            assert f"  -> {RS}:8080                Masq    0 " in table()
            backend.set_admin(rs1, "")
            assert f"  -> {RS}:8080                500        400 " in ipvsadm("-Ln", "--thresholds")

            # `virtserve ipvs list` agrees with ipvsadm, line for line.
            for flags in ([], ["--stats"]):
                ours = subprocess.run([sys.executable, "-m", "virtserve", "ipvs", "list", *flags],
                                      capture_output=True, text=True, check=True, timeout=120).stdout
                assert ours.splitlines() == ipvsadm("-Ln", *flags).splitlines()
        after = table()
        assert f"TCP  {VIP}:99 rr" in after and f"{RS}:99" in after  # still not ours
        # The service was there before us: it stays (as we set it), without the destination we added.
        assert f"TCP  {VIP}:80 wrr" in after and f"{RS}:8080" not in after
    finally:
        server.stop()


def _try_get(host: str) -> bytes:
    try:
        out = subprocess.run(["curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host}/"],
                             capture_output=True, timeout=10)
        return out.stdout
    except subprocess.TimeoutExpired:
        return b""
