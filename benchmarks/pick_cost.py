"""Pick cost per algorithm: median ns per pick (with the take/drop bookkeeping a proxy does) for
10, 1,000 and 100,000 servers.

    python -m virtserve.benchmarks.pick_cost [--sizes 10,1000,100000] [--picks 20000] [--only wlc,mh]

Each round picks, takes the server (the hooks run), and drops a connection picked earlier so
the load keeps moving; the median of `--repeats` runs of `--picks` rounds is reported. The
clock is the process's CPU time, not the wall clock: on a shared machine a run that waits for a
core is not charged for the wait.

Rows "NAME/scan" are the least-load family made to scan the whole list at every size (what the
kernel's O(n) loop costs in Python, `scan-below` set past the size); "NAME/heap" the heap at
every size. The plain row is what a user gets: the scan below 16 servers (12 for leastconn), the heap from there.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import deque

from virtserve.engine.backend import Backend
from virtserve.engine.config.model import BackendSpec, ServerSpec
from virtserve.schedulers import PickContext, names

OPTIONS = {"url_param": {"param": "id"}, "url-param": None, "hdr": {"header": "host"},
           "mh": {"table-size": 131071}}


class _Request:
    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


def contexts(n: int) -> list[PickContext]:
    out = []
    for i in range(n):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        head = b"GET /p/%d?id=%d HTTP/1.1\r\nHost: h%d.example.com\r\n\r\n" % (i, i, i)
        out.append(PickContext(ip, 1024 + i % 60000, request=_Request(head), dest_ip=ip,
                               payload=b"Cookie: mstshash=u%d\r\n" % i))
    return out


# The algorithms that choose between a scan and a heap by size (schedulers/heapsched.py).
SCAN_OR_HEAP = ("lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "leastconn", "first")
FORCED = {"scan": {"scan-below": 1 << 30}, "heap": {"scan-below": 0}}


def measure(name: str, servers: int, picks: int, repeats: int) -> float | None:
    name, _, mode = name.partition("/")
    options = OPTIONS.get(name, {})
    if options is None:
        return None  # an alias
    options = {**options, **FORCED.get(mode, {})}
    if mode == "scan":  # O(n) a pick: fewer rounds keep 100,000 servers to seconds
        picks = max(20, min(picks, 2_000_000 // servers))
    specs = tuple(ServerSpec(f"s{i}", f"10.{200 + (i >> 16)}.{i >> 8 & 255}.{i & 255}", 80,
                             weight=1 + i % 4) for i in range(servers))
    try:
        be = Backend(BackendSpec("b", scheduler=name, servers=specs,
                                 scheduler_options=tuple(sorted(options.items()))))
    except ValueError:
        return None
    ctxs = contexts(1024)
    runs = []
    for _ in range(repeats):
        inflight: deque = deque()
        pick, take, drop = be.pick, be.take, be.drop
        t0 = time.process_time_ns()
        for i in range(picks):
            s = pick(ctxs[i & 1023])
            if s is not None:
                take(s)
                inflight.append(s)
            if len(inflight) > 64:
                drop(inflight.popleft())
        runs.append((time.process_time_ns() - t0) / picks)
        while inflight:
            drop(inflight.popleft())
    return statistics.median(runs)


def rows(sizes: list[int], picks: int, repeats: int, only: str = "", forced: bool = True):
    """(algorithm, [median CPU ns per pick or None, one per size]) for every algorithm."""
    known = names() + ([f"{a}/{m}" for a in SCAN_OR_HEAP for m in FORCED] if forced else [])
    for name in sorted(known):
        if only and name not in only.split(","):
            continue
        cells = [measure(name, n, picks, repeats) for n in sizes]
        if all(c is None for c in cells) and OPTIONS.get(name, {}) is None:
            continue
        yield name, cells


def run(quick: bool = False, log=None) -> dict:
    """For the harness (`python -m benchmarks -s pick-cost`): the table as data and markdown."""
    sizes = [10, 1000, 100_000]
    picks, repeats = (2000, 3) if quick else (5000, 5)
    table = list(rows(sizes, picks, repeats))
    md = ["| algorithm | " + " | ".join(f"{n:,} servers" for n in sizes) + " |",
          "|---|" + "---:|" * len(sizes)]
    md += [f"| {name} | " + " | ".join("n/a" if ns is None else f"{ns:,.0f}" for ns in cells) + " |"
           for name, cells in table]
    md.append("")
    md.append(f"Median CPU ns per pick ({picks} picks x {repeats} repeats); NAME/scan: the kernel's "
              "O(n) scan, NAME/heap: the tree, each forced.")
    return {"sizes": sizes, "rows": [{"algorithm": n, "ns": c} for n, c in table], "markdown": "\n".join(md)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pick_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,1000,100000")
    ap.add_argument("--picks", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-forced", action="store_true", help="leave out the NAME/scan and NAME/heap rows")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"{'algorithm':<16}" + "".join(f"{n:>14,}" for n in sizes) + "   (median CPU ns per pick)")
    for name, cells in rows(sizes, args.picks, args.repeats, args.only, not args.no_forced):
        print(f"{name:<16}" + "".join(f"{ns:>14,.0f}" if ns is not None else f"{'n/a':>14}" for ns in cells),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
