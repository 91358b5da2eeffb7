"""What a Prometheus scraper costs the data path: l7-keepalive-small through one virtserve with
its stats listener on, measured with and without a scraper fetching /metrics every 100 ms.

    python -m benchmarks.scrape_cost [--pairs 30] [--duration 2] [--interval 0.1]
    python -m benchmarks -s scrape-cost            # the same, --runs pairs of --duration s

One proxy process serves both arms, so the only difference between them is the scraper. On a
machine whose two cores the load generator, the backends and other developers' work share,
requests/s moves by more than the effect from one run to the next, so the runs are many short
pairs, quiet and scraped back to back (in turn quiet first and scraped first: a drift within a
pair hits both arms alike). Each pair gives log(scraped / quiet); the report is the median of
those over the pairs with a 95% bootstrap interval (benchmarks/paired.py), for requests/s and
for requests per proxy CPU-second, and says whether the interval shows the 3% bound: "shown"
when scraping costs less than 3% even at the interval's worst end.

Also: the proxy CPU one scrape takes (read from /proc around scrapes of the idle proxy) as a
share of what the proxy spends under load. `--path /nope` scrapes a 404 instead: the stats
listener's bare HTTP cost, to tell the collector's part from aiohttp's.
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable

from . import proc
from .load import resolve_tool, run_load
from .paired import paired_effect
from .runners import BackendSet, VirtserveRunner, free_port

SCENARIO = "l7-keepalive-small"
LIMIT_PCT = 3.0  # issue 7: scraping every 100 ms changes requests/s by less than this


class StatsVirtserveRunner(VirtserveRunner):
    """virtserve with `[stats]` on its own loopback port (page and /metrics), as users run it."""

    def render_config(self, tmp: Any) -> str:
        self.stats_port = free_port(self.host)
        return super().render_config(tmp) + f'\n[stats]\nbind = "{self.host}:{self.stats_port}"\n'


class Scraper:
    """GET /metrics every `interval` seconds on one keep-alive connection, on a fixed schedule
    (a slow scrape delays the next one, never piles them up), in a thread of its own."""

    def __init__(self, host: str, port: int, interval: float, path: str = "/metrics") -> None:
        self.host, self.port, self.interval, self.path = host, port, interval, path
        self.latencies: list[float] = []
        self.sizes: list[int] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def scrape_once(self, conn: http.client.HTTPConnection) -> None:
        t0 = time.perf_counter()
        conn.request("GET", self.path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 and resp.status != 404:  # 404: the --path /nope comparison
            raise OSError(f"{self.path} answered {resp.status}")
        self.latencies.append(time.perf_counter() - t0)
        self.sizes.append(len(body))

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.scrape_once(conn)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            due += self.interval
            self._stop.wait(max(0.0, due - time.monotonic()))
        conn.close()


def cpu_per_scrape(proxy: StatsVirtserveRunner, path: str = "/metrics", n: int = 300) -> float:
    """The proxy's CPU seconds per /metrics scrape, read from /proc around `n` back-to-back
    scrapes of the idle proxy: what a scrape takes from the data path, free of the noise that
    other processes put into requests/s on a shared machine."""
    scraper = Scraper(proxy.host, proxy.stats_port, 0.0, path)
    conn = http.client.HTTPConnection(proxy.host, proxy.stats_port, timeout=5)
    try:
        scraper.scrape_once(conn)  # the first one builds the caches
        cpu0 = proc.tree_cpu_seconds(proxy.pids())
        for _ in range(n):
            scraper.scrape_once(conn)
        return (proc.tree_cpu_seconds(proxy.pids()) - cpu0) / n
    finally:
        conn.close()


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(*, runs: int = 30, duration: float = 2.0, warmup: float = 2.0, interval: float = 0.1,
        path: str = "/metrics", connections: int | None = None, python: str = sys.executable, backend: str = "auto",
        load_tool: str = "auto", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure `runs` pairs of runs; the report (a dict: the paired effects, medians, every run)."""
    from .scenarios import SCENARIOS, _measure, _median

    emit = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    scenario = SCENARIOS[SCENARIO]
    tool = resolve_tool(load_tool)
    spec = scenario.load_spec(duration, connections)
    arms = ("quiet", "scraped")
    pairs = max(1, runs)
    order = [arm for i in range(pairs) for arm in (arms if i % 2 == 0 else arms[::-1])]  # qs sq qs ...
    results: list[dict[str, Any]] = []
    scrapes: list[float] = []
    sizes: list[int] = []
    scrape_errors = 0
    with BackendSet(scenario.backends, size=scenario.body_size, python=python, kind=backend) as backends, \
            StatsVirtserveRunner(backends.addresses, mode=scenario.mode, python=python) as proxy:
        emit(f"scrape cost: {SCENARIO} through virtserve {proxy.url} with stats on "
             f"{proxy.host}:{proxy.stats_port}, {path} every {interval * 1000:g} ms in the scraped "
             f"runs; {pairs} pairs x 2 runs x {duration:g}s, {tool}, backends {backends.kind}")
        idle_cpu = cpu_per_scrape(proxy, path)
        emit(f"  one scrape costs the idle proxy {idle_cpu * 1000:.2f} ms of CPU")
        if warmup > 0:
            run_load(proxy.url, replace(spec, duration=warmup), tool=tool, python=python)
        for i, arm in enumerate(order):
            if arm == "scraped":
                with Scraper(proxy.host, proxy.stats_port, interval, path) as scraper:
                    m = _measure(proxy, backends, spec, tool, python)
                scrapes += scraper.latencies
                sizes += scraper.sizes
                scrape_errors += scraper.errors
                m["scrapes"] = len(scraper.latencies)
            else:
                m = _measure(proxy, backends, spec, tool, python)
            m.pop("latency_curve_us", None)
            m["cpu_us_per_req"] = m["proxy_cpu_s"] / m["requests"] * 1e6 if m["requests"] else None
            results.append({"arm": arm, "pair": i // 2 + 1, "run": i + 1, **m})
            emit(f"  pair {i // 2 + 1:>2} {arm:<8} {m['requests_per_s']:>9.0f} req/s  "
                 f"{(m['req_per_cpu_s'] or 0):>9.0f} req/CPU-s"
                 + (f"  {m['scrapes']} scrapes" if arm == "scraped" else "")
                 + (f"  errors {m['error_count']}" if m["error_count"] else ""))
    by_arm = {arm: [r for r in results if r["arm"] == arm] for arm in arms}  # in pair order
    med = {arm: {key: _median(r[key] for r in by_arm[arm])
                 for key in ("requests_per_s", "req_per_cpu_s", "cpu_us_per_req")} for arm in arms}
    effects = {key: paired_effect([r[key] or 0.0 for r in by_arm["quiet"]], [r[key] or 0.0 for r in by_arm["scraped"]])
               for key in ("requests_per_s", "req_per_cpu_s")}
    rps, per_cpu = effects["requests_per_s"], effects["req_per_cpu_s"]
    bound = rps.bound(LIMIT_PCT)
    report = {
        "scenario": SCENARIO, "path": path, "interval_s": interval, "duration_s": duration,
        "pairs": pairs, "runs_per_arm": pairs, "load_tool": tool, "backend_kind": backends.kind, "medians": med,
        # the median paired change and its 95% bootstrap interval
        "requests_per_s_change_pct": rps.median_pct, "req_per_cpu_s_change_pct": per_cpu.median_pct,
        "paired": {key: e.as_dict() for key, e in effects.items()},
        "limit_pct": LIMIT_PCT, "bound": bound, "within_limit": bound == "shown",
        "scrape_ms": {"count": len(scrapes), "median": _ms(statistics.median(scrapes)) if scrapes else None,
                      "p99": _ms(_pct(scrapes, 99)), "max": _ms(max(scrapes)) if scrapes else None,
                      "errors": scrape_errors},
        "metrics_bytes": statistics.median(sizes) if sizes else None,
        # the scrapes' share of the proxy's CPU under load, from the idle cost per scrape
        "cpu_per_scrape_ms": _ms(idle_cpu),
        "scrape_cpu_share_pct": (idle_cpu / interval) / _median(r["proxy_cpu_util"] for r in results) * 100
                                if any(r["proxy_cpu_util"] for r in results) else None,
        "runs": results,
    }
    spread = _spread([r["requests_per_s"] for r in results])
    emit(f"  req/s across all runs {spread}; median quiet {med['quiet']['requests_per_s'] or 0:.0f}, "
         f"scraped {med['scraped']['requests_per_s'] or 0:.0f}")
    emit(f"  proxy CPU per request: quiet {_us(med['quiet']['cpu_us_per_req'])}, scraped "
         f"{_us(med['scraped']['cpu_us_per_req'])}")
    emit(f"  paired change, median of {pairs} pairs [95% bootstrap CI]: requests/s {_effect(rps)}, "
         f"requests per proxy CPU-second {_effect(per_cpu)}")
    emit(f"  scrape median {report['scrape_ms']['median']} ms, p99 {report['scrape_ms']['p99']} ms, "
         f"{report['metrics_bytes']} bytes; scrapes take {_signed(report['scrape_cpu_share_pct'])[1:]} of "
         f"the proxy's CPU under load ({report['cpu_per_scrape_ms']} ms each)")
    emit(f"  the {LIMIT_PCT:g}% bound on the req/s change is {bound.upper()}: " + {
        "shown": f"even the interval's worst end ({rps.low_pct:+.2f}%) is above -{LIMIT_PCT:g}%",
        "exceeded": f"the whole interval is below -{LIMIT_PCT:g}%",
        "not shown": f"the interval reaches past -{LIMIT_PCT:g}%: run more pairs (--pairs)"}[bound])
    return report


def _effect(e: Any) -> str:
    return f"{e.median_pct:+.2f}% [{e.low_pct:+.2f}%, {e.high_pct:+.2f}%]"


def _spread(values: list[float]) -> str:
    vals = [v for v in values if v]
    if not vals:
        return "n/a"
    mid = statistics.median(vals)
    return f"{min(vals):.0f}..{max(vals):.0f} ({(min(vals) / mid - 1) * 100:+.0f}%..{(max(vals) / mid - 1) * 100:+.0f}% of the median)"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} us"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _signed(pct: float | None) -> str:
    return "n/a" if pct is None else f"{pct:+.2f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scrape_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", "--runs", "-n", type=int, default=30, help="pairs of runs, quiet and scraped "
                    "(default 30)")
    ap.add_argument("--duration", "-d", type=float, default=2.0, help="seconds per run (default 2)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (default 2)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between scrapes (default 0.1)")
    ap.add_argument("--path", default="/metrics", help="what the scraper fetches (default /metrics; "
                    "/nope: the stats listener's bare HTTP cost, for comparison)")
    ap.add_argument("--connections", "-c", type=int, default=None, help="load connections (default 50)")
    ap.add_argument("--backend", choices=("auto", "nginx", "builtin"), default="auto")
    ap.add_argument("--load-tool", choices=("auto", "wrk", "builtin"), default="auto")
    args = ap.parse_args(argv)
    report = run(runs=args.pairs, duration=args.duration, warmup=args.warmup, interval=args.interval,
                 path=args.path, connections=args.connections, backend=args.backend, load_tool=args.load_tool)
    return 0 if report["requests_per_s_change_pct"] is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
