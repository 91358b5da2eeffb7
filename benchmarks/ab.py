"""Two versions of virtserve side by side, interleaved in one run, with HAProxy as the yardstick:
``python -m benchmarks.ab --base REV [--mode tcp|http] [--close] [--rounds 5] [--duration 3]``.

On a shared machine absolute rates move between runs; a change is judged by proxy CPU per
request of `base` (a git revision, laid out as the installed package would be) against this
checkout, measured in turns within one run. Start-up is timed the same way with --startup N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from . import proc
from .load import LoadSpec, run_load
from .runners import BackendSet, HAProxyRunner, Unavailable, VirtserveRunner, find_tool

REPO = Path(__file__).resolve().parent.parent


def checkout(rev: str, into: Path) -> Path:
    """`rev` of this repository as an importable `virtserve` package under ``into``: the value
    to put on PYTHONPATH. The folders are mapped as pyproject's package-dir maps them."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    tar_path = into / "rev.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        # Our own repository's archive; the "data" filter where this Python has it (3.11.4+).
        tar.extractall(src, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    dirs = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    root = into / "path"
    package = root / "virtserve"
    shutil.copytree(src / dirs["virtserve"], package)
    for name, folder in dirs.items():
        if name != "virtserve":  # "virtserve.engine" = "engine"
            (package / name.split(".", 1)[1]).symlink_to(src / folder, target_is_directory=True)
    # Bytecode, as an installed package has it (compileall ignores PYTHONDONTWRITEBYTECODE).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src), str(package)],
                   check=False, capture_output=True)
    return root


class BaseRunner(VirtserveRunner):
    """virtserve run from the base revision's package."""

    pythonpath = ""

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw["env"] = {**(kw.get("env") or {}), "PYTHONPATH": self.pythonpath}
        return super()._spawn(argv, **kw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git revision to compare this checkout with")
    p.add_argument("--mode", choices=("tcp", "http"), default="tcp")
    p.add_argument("--close", action="store_true", help="a new connection per request")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per turn")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--startup", type=int, default=0, metavar="N", help="also time N start-ups of each")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vsab-") as tmp:
        BaseRunner.pythonpath = str(checkout(args.base, Path(tmp)))
        kinds = {"base": BaseRunner, "this": VirtserveRunner}
        if find_tool("haproxy"):
            kinds["haproxy"] = HAProxyRunner
        cpu_per_req: dict[str, list[float]] = {name: [] for name in kinds}
        spec = LoadSpec(connections=args.connections, duration=args.duration, keepalive=not args.close)
        with BackendSet(2, kind="auto") as backends:
            runners = {name: cls(backends.addresses, mode=args.mode) for name, cls in kinds.items()}
            try:
                for r in runners.values():
                    r.start()
                    run_load(r.url, LoadSpec(connections=args.connections, duration=1.0,
                                             keepalive=not args.close))  # warm-up
                for rnd in range(args.rounds):
                    line = []
                    for name, r in runners.items():
                        before = proc.cpu_seconds(r.pid)
                        res = run_load(r.url, spec)
                        cpu = proc.cpu_seconds(r.pid) - before
                        cpu_per_req[name].append(cpu / max(res.requests, 1))
                        line.append(f"{name} {cpu_per_req[name][-1] * 1e6:.1f} us")
                    print(f"round {rnd + 1}: " + ", ".join(line), flush=True)
            finally:
                for r in runners.values():
                    r.stop()
            startup: dict[str, list[float]] = {name: [] for name in kinds}
            for _ in range(args.startup):
                for name, cls in kinds.items():
                    with cls(backends.addresses, mode=args.mode) as r:
                        startup[name].append((r.startup_s or 0) * 1000)
    med = {name: statistics.median(v) for name, v in cpu_per_req.items()}
    what = f"{args.mode}, {'a new connection per request' if args.close else 'keep-alive'}"
    print(f"\nproxy CPU per request, median of {args.rounds} ({what}):")
    for name, us in med.items():
        vs = f", {med['haproxy'] / us:.2f}x HAProxy's requests per CPU-second" if "haproxy" in med else ""
        print(f"  {name:8s} {us * 1e6:7.1f} us{vs}")
    print(f"  this / base: {med['base'] / med['this']:.2f}x requests per CPU-second")
    for name, ms in startup.items():
        if ms:
            print(f"  start-up {name}: median {statistics.median(ms):.0f} ms (min {min(ms):.0f})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unavailable as exc:
        print(f"benchmarks.ab: {exc}", file=sys.stderr)
        sys.exit(2)
