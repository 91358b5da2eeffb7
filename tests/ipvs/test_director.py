"""End to end in the guest kernel: real servers in network namespaces behind IPVS NAT services
that virtserve programs, reached through the virtual address.

1. Start: reconcile with a table that already holds services, checks take a failed server out and
   bring the fallback in, runtime weights, `virtserve ipvs list` equal to ipvsadm, cleanup.
2. Reload and quiescent: [ipvs] timeouts and sync daemon applied at start and on reload; a reload
   adds a destination, removes another and edits the scheduler and persistence in place (the
   service's counters survive), health carried over; quiescent servers go to weight 0, the
   fallback serves while all are down and leaves when one recovers; a reload the kernel refuses
   changes nothing.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import time

import pytest
from ipvshelpers import ipvsadm, sh

from virtserve.cli import main as virtserve_main
from virtserve.engine.config.model import ConfigError
from virtserve.engine.config.native import parse
from virtserve.engine.engine import Engine

pytestmark = pytest.mark.timeout(400)

VIP = "10.9.9.9"
# Each real server in its own namespace, on a veth pair of its own: (namespace, director side, server).
NETS = {"rs1": ("10.0.1.1", "10.0.1.2"), "rs2": ("10.0.2.1", "10.0.2.2"), "rs3": ("10.0.3.1", "10.0.3.2")}
RS1, RS2, RS3 = (NETS[n][1] for n in ("rs1", "rs2", "rs3"))
DIRECTOR = NETS["rs1"][0]


@pytest.fixture(scope="module")
def network():
    """The namespaces, made with one `ip -batch` each (a process costs in the emulated guest);
    the guest is thrown away after the run, so nothing is taken down."""
    root = ["link set lo up", f"addr add {VIP}/32 dev lo"]
    for ns, (director, _) in NETS.items():
        root += [f"netns add {ns}", f"link add d{ns} type veth peer name v{ns} netns {ns}",
                 f"addr add {director}/24 dev d{ns}", f"link set d{ns} up"]
    batches = [("ip -batch -", root)] + [
        (f"ip -n {ns} -batch -", [f"addr add {server}/24 dev v{ns}", f"link set v{ns} up", "link set lo up",
                                  f"route add default via {director}"]) for ns, (director, server) in NETS.items()]
    for command, lines in batches:
        subprocess.run(command, shell=True, check=True, timeout=30, input="\n".join(lines) + "\n", text=True)
    sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_quiescent_template=1")


class RealServer:
    """busybox httpd inside a namespace, answering with its name: started, killed, started again."""

    def __init__(self, ns: str, port: int, name: str, root) -> None:
        self.ns, self.port, self.name = ns, port, name
        self.docroot = root / name
        self.docroot.mkdir()
        (self.docroot / "index.html").write_text(name)
        self.proc: subprocess.Popen | None = None

    def start(self) -> RealServer:
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "busybox", "httpd", "-f",
                                      "-p", f"{NETS[self.ns][1]}:{self.port}", "-h", str(self.docroot)])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def servers(network, tmp_path):
    sh("ipvsadm -C")
    made: list[RealServer] = []

    def make(ns: str, port: int = 8080, name: str = "") -> RealServer:
        made.append(RealServer(ns, port, name or ns, tmp_path).start())
        return made[-1]

    yield make
    for server in made:
        server.stop()


async def fetch(host: str, port: int = 80) -> str:
    """The body a client gets through host:port (curl, a fresh connection), "" on failure. Run
    without blocking the loop: the engine's checks and the userspace relay share it."""
    proc = await asyncio.create_subprocess_exec("curl", "-s", "-m", "3", f"http://{host}:{port}/",
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    async with asyncio.timeout(10):
        out, _ = await proc.communicate()
    return out.decode()


async def until(predicate, what: str, limit: float = 60.0):
    """Poll kernel state (or what a client gets) until it holds."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; table:\n{ipvsadm('-Ln')}")
        await asyncio.sleep(0.2)


async def answers(host: str, *bodies: str) -> bool:
    return await fetch(host) in bodies


def table() -> str:
    return ipvsadm("-Ln")


def rows(port: int = 80) -> list[str]:
    """The service line of VIP:port and its destinations as `address forward weight` (the
    connection columns move with traffic), from ipvsadm."""
    out, inside = [], False
    for line in table().splitlines():
        if line.startswith(("TCP", "UDP", "FWM")):
            inside = line.split()[1] == f"{VIP}:{port}"
            if inside:
                out.append(" ".join(line.split()))
        elif inside and line.startswith("  ->"):
            out.append(" ".join(line.split()[1:4]))
    return out


def conns(port: int = 80) -> int:
    """The service's connection counter (ipvsadm -Ln --stats --exact): zero again if it were re-created."""
    for line in ipvsadm("-Ln", "--stats", "--exact").splitlines():
        if line.startswith("TCP") and line.split()[1] == f"{VIP}:{port}":
            return int(line.split()[2])
    raise AssertionError(f"no service {VIP}:{port}")


CONFIG = f"""
[listen.web]
bind = "{VIP}:80"
mode = "tcp"
forward = "ipvs"
scheduler = "wrr"
check = {{ type = "connect", interval = "0.3s", timeout = "1s", rise = 1, fall = 1 }}
fallback = {{ address = "{DIRECTOR}:8081", forward = "gate" }}
servers = [ {{ name = "rs1", address = "{RS1}:8080", u-threshold = 500, l-threshold = 400 }} ]

[listen.relay]
bind = "127.0.0.1:0"
mode = "tcp"
forward = "auto"
scheduler = "roundrobin"
servers = [ {{ address = "{RS1}:8080" }} ]
"""


async def test_nat_service_follows_checks_weights_and_reconciles(servers, caplog, capsys):
    caplog.set_level(logging.INFO, logger="virtserve.ipvs")
    # Someone else's service, and a stale copy of ours with a destination we do not want.
    sh(f"ipvsadm -A -t {VIP}:99 -s rr", f"ipvsadm -a -t {VIP}:99 -r {RS1}:99 -m",
       f"ipvsadm -A -t {VIP}:80 -s rr", f"ipvsadm -a -t {VIP}:80 -r 10.0.0.77:8080 -m")
    rs1 = servers("rs1")
    async with Engine(parse(CONFIG)) as engine:
        assert "frontend web: served by the kernel (IPVS)" in caplog.text
        assert "frontend relay: served by the userspace relay (forward = 'auto' but scheduler 'roundrobin'" in caplog.text
        assert engine.addresses["web"] == [] and engine.addresses["relay"]
        listed = table()
        assert f"TCP  {VIP}:80 wrr" in listed
        assert f"  -> {RS1}:8080" in listed and "10.0.0.77" not in listed  # reconciled
        assert f"TCP  {VIP}:99 rr" in listed  # not ours: untouched
        await until(lambda: answers(VIP, "rs1"), "the real server to answer through the VIP")

        # Through the userspace relay too (auto fell back): same real server.
        assert await fetch(*engine.addresses["relay"][0]) == "rs1"

        # Kernel counters reach the stats the page and metrics read.
        server = engine.backends["web"].by_name["rs1"]
        await until(lambda: server.total >= 1 and server.counters.bytes_out > 0, "kernel counters in the stats")

        # The server fails: out of the table (not quiescent), the fallback comes in.
        rs1.stop()
        await until(lambda: f"{RS1}:8080" not in table() and f"{DIRECTOR}:80 " in table(), "rs1 out, fallback in")
        assert "Route" in table()
        # It recovers: back in, the fallback leaves.
        rs1.start()
        await until(lambda: f"{RS1}:8080" in table() and f"{DIRECTOR}:80 " not in table(), "rs1 back, fallback out")
        await until(lambda: answers(VIP, "rs1"), "the real server to answer again")

        # A runtime weight change reaches the kernel; drain takes it to 0.
        backend = engine.backends["web"]
        backend.set_user_weight(server, 7)
        assert f"{RS1}:8080 Masq 7" in rows()
        backend.set_admin(server, "drain")
        assert f"{RS1}:8080 Masq 0" in rows()
        backend.set_admin(server, "")
        assert f"  -> {RS1}:8080                500        400 " in ipvsadm("-Ln", "--thresholds")

        # `virtserve ipvs list` agrees with ipvsadm, line for line (once the kernel's 2-second
        # summing of the counters has caught up with the last connections).
        def same(*flags: str) -> bool:
            capsys.readouterr()
            assert virtserve_main(["ipvs", "list", *flags]) == 0
            return capsys.readouterr().out.splitlines() == ipvsadm("-Ln", *flags).splitlines()

        await until(lambda: same() and same("--stats"), "virtserve ipvs list to equal ipvsadm -Ln", limit=10)
    after = table()
    assert f"TCP  {VIP}:99 rr" in after and f"{RS1}:99" in after  # still not ours
    # The service was there before us: it stays (as we set it), without the destination we added.
    assert f"TCP  {VIP}:80 wrr" in after and f"{RS1}:8080" not in after


def config(servers: str, *, scheduler: str = "wrr", extra: str = "", timeout: str = "901s",
           sync: str = '{ state = "master", interface = "lo", syncid = 5 }') -> str:
    return f"""
[ipvs]
timeout = {{ tcp = "{timeout}", tcpfin = "121s", udp = "301s" }}
sync = {sync}

[listen.web]
bind = "{VIP}:80"
mode = "tcp"
forward = "ipvs"
scheduler = "{scheduler}"
quiescent = true
check = {{ type = "connect", interval = "0.3s", timeout = "1s", rise = 1, fall = 1 }}
fallback = {{ name = "sorry", address = "{RS1}:8081" }}
servers = [ {servers} ]
{extra}"""


def server(name: str, address: str) -> str:
    return f'{{ name = "{name}", address = "{address}:8080" }}, '


async def test_reload_quiescent_fallback_and_director_settings(servers):
    timeouts_before, daemons_before = ipvsadm("-Ln", "--timeout"), ipvsadm("-Ln", "--daemon")
    rs1, rs2, rs3 = servers("rs1"), servers("rs2"), servers("rs3")
    servers("rs1", 8081, "sorry")
    old = f'{{ name = "old", address = "{RS3}:9" }}, '  # nothing listens there: down from the start
    async with Engine(parse(config(server("rs1", RS1) + server("rs2", RS2) + old))) as engine:
        # [ipvs] at start: ipvsadm --set and --start-daemon.
        assert ipvsadm("-Ln", "--timeout") == "Timeout (tcp tcpfin udp): 901 121 301\n"
        assert "master sync daemon (mcast=lo, syncid=5," in ipvsadm("-Ln", "--daemon")
        # Quiescent: failed servers stay in the table at weight 0.
        await until(lambda: f"{RS3}:9 Masq 0" in rows(), "the server nobody runs at weight 0")
        rs2.stop()
        await until(lambda: f"{RS2}:8080 Masq 0" in rows(), "rs2 at weight 0")
        assert rows() == [f"TCP {VIP}:80 wrr", f"{RS1}:8080 Masq 1", f"{RS2}:8080 Masq 0", f"{RS3}:9 Masq 0"]
        await until(lambda: answers(VIP, "rs1"), "traffic through the VIP")
        served = await until(conns, "the service's counters (summed every 2 s)")
        held = await asyncio.wait_for(asyncio.open_connection(VIP, 80), 10)  # to rs1, the only one up

        # Reload: rs3 joins, `old` leaves, rs2 stays and so does its health (down: weight 0 at
        # once); the scheduler and persistence change in place; new timeouts; master -> backup.
        await engine.reload(parse(config(server("rs1", RS1) + server("rs2", RS2) + server("rs3", RS3),
                                         scheduler="wlc", extra='persistent = { timeout = "300s" }', timeout="902s",
                                         sync='{ state = "backup", interface = "lo", syncid = 6 }')))
        assert rows() == [f"TCP {VIP}:80 wlc persistent 300", f"{RS1}:8080 Masq 1", f"{RS2}:8080 Masq 0",
                          f"{RS3}:8080 Masq 1"]
        assert conns() >= served  # edited, not deleted and added again
        # The client connected before the reload gets its answer after it: the edit kept the
        # kernel's connection.
        reader, writer = held
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"rs1")
        writer.close()
        assert ipvsadm("-Ln", "--timeout") == "Timeout (tcp tcpfin udp): 902 121 301\n"
        daemons = ipvsadm("-Ln", "--daemon")
        assert "backup sync daemon (mcast=lo, syncid=6," in daemons and "master" not in daemons
        assert await until(lambda: answers(VIP, "rs1", "rs3"), "traffic through the VIP after the reload")

        # All down: the fallback joins and answers through the VIP; one recovers: it leaves.
        rs1.stop()
        rs3.stop()
        await until(lambda: f"{RS1}:8081" in table(), "the fallback in the table")
        assert rows() == [f"TCP {VIP}:80 wlc persistent 300", f"{RS1}:8080 Masq 0", f"{RS1}:8081 Masq 1",
                          f"{RS2}:8080 Masq 0", f"{RS3}:8080 Masq 0"]
        await until(lambda: answers(VIP, "sorry"), "the fallback server through the VIP")
        rs2.start()
        await until(lambda: f"{RS1}:8081" not in table(), "the fallback out of the table")
        assert rows() == [f"TCP {VIP}:80 wlc persistent 300", f"{RS1}:8080 Masq 0", f"{RS2}:8080 Masq 1",
                          f"{RS3}:8080 Masq 0"]
        await until(lambda: answers(VIP, "rs2"), "the recovered server through the VIP")

        # A reload the kernel refuses (no such interface for the sync daemon) changes nothing,
        # though a new service and a scheduler edit came before it.
        before, daemons = rows(), ipvsadm("-Ln", "--daemon")
        bad = config(server("rs2", RS2), scheduler="rr", timeout="903s", sync='{ state = "master", interface = "nosuch0" }',
                     extra=f'\n[listen.more]\nbind = "{VIP}:81"\nmode = "tcp"\nforward = "ipvs"\n'
                           f'scheduler = "rr"\nservers = [ {{ address = "{RS2}:8080" }} ]\n')
        with pytest.raises(ConfigError) as refused:
            await engine.reload(parse(bad))
        assert "<string>:4" in str(refused.value) and "nosuch0" in str(refused.value)
        assert rows() == before and rows(81) == [] and ipvsadm("-Ln", "--daemon") == daemons
        assert ipvsadm("-Ln", "--timeout") == "Timeout (tcp tcpfin udp): 902 121 301\n"
        assert await fetch(VIP) == "rs2"
    # Stop: our service, timeouts and daemons go; the kernel is as we found it.
    assert f"{VIP}:80" not in table()
    assert ipvsadm("-Ln", "--timeout") == timeouts_before
    await until(lambda: ipvsadm("-Ln", "--daemon") == daemons_before, "the sync daemon to stop")
