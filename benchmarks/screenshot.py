"""A headless Chromium screenshot of the stats page under load.

    python -m benchmarks.screenshot [--out docs/stats-page.png] [--load 8] [--window 1400,1000]

Starts three backends (nginx, else the built-in one) behind `virtserve run` with a demo-like
config: an HTTP frontend and backend of four servers with HTTP health checks (web4's port has
no listener, so it goes DOWN), a mode tcp `listen`, and the stats page in admin mode. wrk (or
the built-in generator) loads both; web3 is put into DRAIN through the runtime socket; then
Debian's chromium takes the picture while the load runs.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .load import LoadSpec, resolve_tool, run_load
from .runners import BackendSet, VirtserveRunner, find_tool, free_port

# As the machine notes say: no sandbox as root, no GPU, and none of the background traffic
# that a closed network refuses.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def chromium() -> str | None:
    return find_tool("chromium") or find_tool("chromium-browser")


class StatsDemoRunner(VirtserveRunner):
    """virtserve with the screenshot's config (see the module docstring)."""

    def __init__(self, backends: Any, tcp_port: int, **kw: Any) -> None:
        super().__init__(backends, **kw)
        self.tcp_port = tcp_port
        self.stats_port = 0
        self.socket = ""

    def render_config(self, tmp: Path) -> str:
        self.stats_port = free_port(self.host)
        self.socket = str(tmp / "admin.sock")
        (a, pa), (b, pb), (c, pc) = self.backends[:3]
        h = self.host
        return f"""\
[stats]
bind = "{h}:{self.stats_port}"
uri = "/stats"
admin = true
refresh = "5s"
socket = "{self.socket}"

[frontend.www]
bind = "{h}:{self.port}"
backend = "app"

[backend.app]
scheduler = "wrr"
check = {{ type = "http", request = "/", interval = "1s", timeout = "500ms" }}
servers = [
  {{ name = "web1", address = "{a}:{pa}", weight = 3, maxconn = 200 }},
  {{ name = "web2", address = "{b}:{pb}", weight = 2 }},
  {{ name = "web3", address = "{c}:{pc}", weight = 2 }},
  {{ name = "web4", address = "{h}:{free_port(h)}" }},
  {{ name = "sorry", address = "{a}:{pa}", backup = true, check = false }},
]

[listen.db]
bind = "{h}:{self.tcp_port}"
mode = "tcp"
scheduler = "lc"
servers = [ {{ name = "db1", address = "{a}:{pa}" }}, {{ name = "db2", address = "{b}:{pb}" }} ]
"""


def take(out: Path, *, load: float = 8.0, window: str = "1400,1000", backend: str = "auto",
         load_tool: str = "auto", python: str = sys.executable, log: Any = None) -> Path:
    emit = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    browser = chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    tool = resolve_tool(load_tool)
    from virtserve.engine.admin.socket import send

    with BackendSet(3, size=100, python=python, kind=backend) as backends, \
            StatsDemoRunner(backends.addresses, free_port(), python=python) as proxy, \
            tempfile.TemporaryDirectory(prefix="vs-shot-") as profile:
        emit(f"virtserve {proxy.url}, stats http://{proxy.host}:{proxy.stats_port}/stats, load {load:g}s ({tool})")
        loads = [threading.Thread(target=run_load, args=(url, LoadSpec(connections=n, duration=load)),
                                  kwargs={"tool": tool, "python": python}, daemon=True)
                 for url, n in ((proxy.url, 40), (f"http://{proxy.host}:{proxy.tcp_port}/", 8))]
        for t in loads:
            t.start()
        time.sleep(min(2.0, load / 4))
        send(proxy.socket, "set server app/web3 state drain")
        time.sleep(load / 2 - min(2.0, load / 4))
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
                f"--window-size={window}", f"http://{proxy.host}:{proxy.stats_port}/stats"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not out.exists():
            raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        for t in loads:
            t.join(load + 60)
    if shutil.which("optipng"):  # smaller file, same pixels
        subprocess.run(["optipng", "-quiet", "-o2", str(out)], check=False, timeout=120)
    emit(f"screenshot: {out} ({out.stat().st_size // 1024} KiB)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.screenshot", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/stats-page.png", help="PNG to write (default docs/stats-page.png)")
    ap.add_argument("--load", type=float, default=8.0, help="seconds of load; the picture is taken half way")
    ap.add_argument("--window", default="1400,1000", help="browser window WIDTH,HEIGHT (default 1400,1000)")
    ap.add_argument("--backend", choices=("auto", "nginx", "builtin"), default="auto")
    ap.add_argument("--load-tool", choices=("auto", "wrk", "builtin"), default="auto")
    args = ap.parse_args(argv)
    try:
        take(Path(args.out), load=args.load, window=args.window, backend=args.backend, load_tool=args.load_tool)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
