"""Requests/s through kernel IPVS NAT vs virtserve's userspace L4 relay vs HAProxy mode tcp, all in
the same guest (ipvs-vm) in front of the same nginx in a network namespace, loaded by wrk.

    ipvs-vm -- /path/to/venv/bin/python -m virtserve.benchmarks.ipvs [--duration 5] [--connections 16]

Runs as root inside the throw-away VM only (it makes namespaces, addresses and IPVS services).
Under emulation (no KVM) every number is low and Python pays ~20x: compare the ratios, which is
what the closing note reports. Each target is measured with keep-alive and with a new
connection per request (Connection: close), where the kernel's per-connection work shows.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

VIP, RS, DIRECTOR = "10.9.9.9", "10.0.0.2", "10.0.0.1"
TARGETS = {"ipvs-nat": (VIP, 80), "virtserve-l4": (DIRECTOR, 8090), "haproxy-tcp": (DIRECTOR, 8091)}

NGINX = f"""worker_processes 1; daemon off; pid {{tmp}}/nginx.pid; error_log {{tmp}}/error.log;
events {{{{ worker_connections 4096; }}}}
http {{{{ access_log off; client_body_temp_path {{tmp}}; proxy_temp_path {{tmp}}; fastcgi_temp_path {{tmp}};
  uwsgi_temp_path {{tmp}}; scgi_temp_path {{tmp}};
  server {{{{ listen {RS}:8080 backlog=4096; keepalive_requests 1000000; location / {{{{ return 200 "ok\\n"; }}}} }}}} }}}}
"""
HAPROXY = f"""global
  maxconn 20000
defaults
  mode tcp
  timeout connect 5s
  timeout client 50s
  timeout server 50s
listen relay
  bind {DIRECTOR}:8091
  server rs {RS}:8080
"""
VIRTSERVE = f"""[listen.relay]
bind = "{DIRECTOR}:8090"
mode = "tcp"
servers = [ {{ address = "{RS}:8080" }} ]
"""


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def network() -> None:
    for command in ("ip link set lo up", "ip netns add rs", "ip link add vd type veth peer name vr",
                    "ip link set vr netns rs", f"ip addr add {DIRECTOR}/24 dev vd", "ip link set vd up",
                    f"ip netns exec rs ip addr add {RS}/24 dev vr", "ip netns exec rs ip link set vr up",
                    "ip netns exec rs ip link set lo up", f"ip netns exec rs ip route add default via {DIRECTOR}",
                    f"ip addr add {VIP}/32 dev lo", "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1"):
        sh(command)


def wait_port(host: str, port: int, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {host}:{port}")


def wrk(host: str, port: int, duration: float, connections: int, close: bool) -> float:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", f"http://{host}:{port}/"]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk said:\n{out}")
    return float(match[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtserve.benchmarks.ipvs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not os.path.exists("/proc/net/ip_vs"):
        print("run inside ipvs-vm: needs root and the kernel's IPVS", file=sys.stderr)
        return 2
    for tool in ("nginx", "haproxy", "wrk"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"{tool} is missing", file=sys.stderr)
            return 2
    from virtserve.engine.ipvs.client import IpvsClient
    from virtserve.engine.ipvs.table import Destination, VirtualService

    tmp = tempfile.mkdtemp(prefix="ipvsbench-")
    procs: list[subprocess.Popen] = []
    network()
    try:
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(NGINX.format(tmp=tmp))
        with open(f"{tmp}/haproxy.cfg", "w") as f:
            f.write(HAPROXY)
        with open(f"{tmp}/virtserve.toml", "w") as f:
            f.write(VIRTSERVE)
        procs.append(subprocess.Popen(["ip", "netns", "exec", "rs", "nginx", "-c", f"{tmp}/nginx.conf"]))
        procs.append(subprocess.Popen(["haproxy", "-f", f"{tmp}/haproxy.cfg"]))
        procs.append(subprocess.Popen([sys.executable, "-m", "virtserve", "run", f"{tmp}/virtserve.toml"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with IpvsClient() as ipvs:
            svc = VirtualService(socket.IPPROTO_TCP, VIP, 80, scheduler="wrr")
            ipvs.add_service(svc)
            ipvs.add_dest(svc, Destination(RS, 8080))
            for host, port in [(RS, 8080), *TARGETS.values()]:
                wait_port(host, port)
            results: dict[str, dict[str, float]] = {}
            for close in (False, True):
                label = "close" if close else "keepalive"
                for name, (host, port) in TARGETS.items():
                    wrk(host, port, 1, args.connections, close)  # warm up
                    results.setdefault(name, {})[label] = wrk(host, port, args.duration, args.connections, close)
            ipvs.flush()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run("ip netns del rs; ip link del vd", shell=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'target':<14} {'keepalive req/s':>16} {'close req/s':>12}")
    for name, row in results.items():
        print(f"{name:<14} {row['keepalive']:>16.0f} {row['close']:>12.0f}")
    base = results["ipvs-nat"]
    for other in ("virtserve-l4", "haproxy-tcp"):
        print(f"ipvs-nat / {other}: keepalive {base['keepalive'] / results[other]['keepalive']:.2f}x, "
              f"close {base['close'] / results[other]['close']:.2f}x")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
