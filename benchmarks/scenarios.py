"""Scenarios and the measurement loop.

A scenario fixes what the backends answer, the proxy mode and the load shape. The loop runs
every available target in front of the same backends, interleaved (A B C A B C ...), so slow
drift of the machine hits every target alike, and reads each proxy's CPU seconds from /proc
around each run: the fair figure is requests per proxy CPU-second.

``SCENARIOS`` is the matrix: L7 and L4, keep-alive and a new connection per request, small and
large bodies, TLS handshakes, two workers, and an open-loop latency run. The scheduler pick
cost is not a proxy run: it comes from ``benchmarks/pick_cost.py`` when that module exists.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import inspect
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import proc
from .load import LoadError, LoadSpec, resolve_tool, run_load
from .progress import Progress
from .runners import (
    RUNNERS,
    BackendSet,
    DirectRunner,
    ProxyRunner,
    StartError,
    Unavailable,
    VirtserveRunner,
    find_tool,
    backend_kind,
    make_runner,
    tool_version,
)

__all__ = [
    "Scenario",
    "SCENARIOS",
    "QUICK_SCENARIOS",
    "PICK_COST",
    "SCRAPE_COST",
    "pick_cost_module",
    "DEFAULT_TARGETS",
    "BenchOptions",
    "run_benchmarks",
    "run_scenario",
    "measure_startup",
    "summarize",
    "write_report",
]

SCHEMA_VERSION = 1
DEFAULT_TARGETS = ("virtserve", "haproxy", "nginx", "direct")
REFERENCE = "haproxy"  # ratios are reported against this target


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    mode: str = "http"  # proxy mode: "http" (L7) or "tcp" (L4)
    body_size: int = 100  # bytes in every backend response body
    backends: int = 2
    keepalive: bool = True  # client side; False: a new connection per request
    connections: int = 50
    path: str = "/"
    tls: bool = False  # clients speak TLS to the proxy; plain HTTP behind it
    workers: int = 1  # proxy processes (virtserve --workers, HAProxy nbthread, nginx workers)
    rate: float | None = None  # open loop at this many requests/s (built-in generator)
    quick: bool = False  # part of the --quick selection
    direct: bool = True  # run the "direct" target (no proxy) too

    def load_spec(self, duration: float, connections: int | None = None,
                  rate: float | None = None) -> LoadSpec:
        return LoadSpec(connections=connections or self.connections, duration=duration,
                        keepalive=self.keepalive, path=self.path, rate=rate or self.rate)


_SMALL = "100 B responses, 2 backends, round robin"
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("l7-keepalive-small", f"HTTP proxying, keep-alive clients, {_SMALL}", quick=True),
        Scenario("l7-close-small", f"HTTP proxying, a new client connection per request, {_SMALL}",
                 keepalive=False, quick=True),
        Scenario("l7-keepalive-64k", "HTTP proxying, keep-alive clients, 64 KiB responses",
                 body_size=64 * 1024, connections=20),
        Scenario("l7-keepalive-1m", "HTTP proxying, keep-alive clients, 1 MiB responses",
                 body_size=1024 * 1024, connections=10),
        Scenario("l4-keepalive-small", f"TCP relay, keep-alive clients, {_SMALL}", mode="tcp"),
        Scenario("l4-close-small", f"TCP relay, a new connection per request, {_SMALL}",
                 mode="tcp", keepalive=False, quick=True),
        Scenario("l4-bulk", "TCP relay, bulk throughput: 1 MiB responses over keep-alive",
                 mode="tcp", body_size=1024 * 1024, connections=10),
        Scenario("tls-handshake", "HTTPS termination, a full TLS handshake per request "
                 "(ECDSA P-256), 100 B responses", keepalive=False, tls=True, direct=False),
        Scenario("tls-keepalive-small", f"HTTPS termination, keep-alive clients, {_SMALL}",
                 tls=True, direct=False),
        Scenario("l7-keepalive-small-2w", f"as l7-keepalive-small with 2 workers/threads",
                 workers=2, direct=False),
        Scenario("l7-close-small-2w", f"as l7-close-small with 2 workers/threads",
                 keepalive=False, workers=2, direct=False),
        Scenario("l7-open-loop", "HTTP keep-alive at a fixed 5000 req/s (open loop, built-in "
                 "generator): latency without coordinated omission", rate=5000.0),
    )
}
QUICK_SCENARIOS = tuple(name for name, sc in SCENARIOS.items() if sc.quick)
PICK_COST = "pick-cost"  # not a proxy scenario: benchmarks/pick_cost.py when present
SCRAPE_COST = "scrape-cost"  # l7-keepalive-small with and without /metrics scrapes: scrape_cost.py


def pick_cost_module():
    """benchmarks/pick_cost.py (written separately) when it exists, else None."""
    try:
        return importlib.import_module(f"{__package__}.pick_cost")
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("pick_cost"):
            return None
        raise


@dataclass(slots=True)
class BenchOptions:
    scenarios: Sequence[str] = ("l7-keepalive-small",)
    targets: Sequence[str] = DEFAULT_TARGETS
    runs: int = 3
    duration: float = 5.0
    warmup: float = 2.0
    connections: int | None = None  # None: the scenario's own
    load_tool: str = "auto"  # "auto" | "wrk" | "builtin"
    startup_samples: int = 5  # 0 disables the start-up measurement
    startup_targets: Sequence[str] = ("virtserve", "haproxy", "nginx")
    out_dir: str | Path | None = "bench-results"  # None: write nothing
    python: str = sys.executable  # the interpreter that runs virtserve and the helpers
    log: Callable[[str], None] | None = None  # progress lines; default: stderr (+ a bar)
    backend: str = "auto"  # "auto" (nginx when installed) | "nginx" | "builtin"
    rate: float | None = None  # open loop for every scenario at this rate (req/s)
    plots: bool = True  # PNG plots next to the JSON (needs matplotlib)
    quick: bool = False
    progress: Progress | None = None  # set by run_benchmarks when ``log`` is None

    def emit(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)
        elif self.progress is not None:
            self.progress.log(msg)
        else:
            _stderr(msg)

    def step(self, label: str, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.step(label, n)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- one run


def _measure(runner: ProxyRunner, backends: BackendSet, spec: LoadSpec, tool: str,
             python: str) -> dict[str, Any]:
    pids = runner.pids()
    bpids = backends.pids()
    cpu0 = proc.tree_cpu_seconds(pids)
    bcpu0 = [proc.tree_cpu_seconds([p]) for p in bpids]
    t0 = time.monotonic()
    res = run_load(runner.url, spec, tool=tool, python=python)
    wall = time.monotonic() - t0
    cpu = proc.tree_cpu_seconds(pids) - cpu0
    bcpu = [proc.tree_cpu_seconds([p]) - c for p, c in zip(bpids, bcpu0)]
    return {
        "requests": res.requests,
        "duration_s": res.duration_s,
        "requests_per_s": res.requests_per_s,
        "bytes": res.bytes,
        "mb_per_s": res.bytes / res.duration_s / 1e6 if res.duration_s > 0 else None,
        "proxy_cpu_s": round(cpu, 4),
        "req_per_cpu_s": res.requests / cpu if cpu > 0 else None,
        "proxy_cpu_util": cpu / res.duration_s if res.duration_s > 0 else None,
        "backend_cpu_s": round(sum(bcpu), 4),
        # an uneven split shows a proxy that does not balance
        "backend_cpu_s_each": [round(c, 4) for c in bcpu],
        "wall_s": wall,
        "errors": res.errors,
        "error_count": res.error_count,
        "latency_us": res.latency_us,
        "latency_curve_us": res.latency_curve_us,
        "load_mode": res.mode,
        "tool": res.tool,
        "pids": pids,
    }


# ----------------------------------------------------------------------------- a scenario


def _bench_certificate(stack: contextlib.ExitStack) -> str:
    """A certificate for 127.0.0.1 from a throwaway local CA, removed with the run."""
    import tempfile

    from virtserve.certs import LocalCA

    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vsbench-tls-"))
    ca = LocalCA.load_or_create(tmp)
    return str(ca.issue(["127.0.0.1", "localhost"], Path(tmp) / "bench.pem"))


ONE_WORKER = "@1w"  # suffix of a target's one-worker twin, run in the N-worker scenarios


def _with_one_worker_twins(names: Iterable[str], scenario: Scenario) -> list[str]:
    """An N-worker scenario also runs each target with one worker, in the same interleaved
    rounds: scaling measured minutes apart on a shared machine measures the machine's drift."""
    names = list(names)
    if scenario.workers <= 1:
        return names
    return names + [n + ONE_WORKER for n in names if n != "direct"]


def _start_targets(stack: contextlib.ExitStack, names: Iterable[str], backends: BackendSet,
                   scenario: Scenario, opts: BenchOptions,
                   skipped: dict[str, str]) -> dict[str, ProxyRunner]:
    started: dict[str, ProxyRunner] = {}
    for target in names:
        name = target.removesuffix(ONE_WORKER)
        kw: dict[str, Any] = {"tls": scenario.tls,
                              "workers": 1 if target.endswith(ONE_WORKER) else scenario.workers}
        if name == "virtserve":
            kw["python"] = opts.python
        if scenario.tls:
            kw["tls"] = _bench_certificate(stack)
        try:
            if name == "direct" and not scenario.direct:
                raise Unavailable("not run here (no proxy: the same as in the 1-worker, "
                                  "plain-HTTP scenarios)" if not scenario.tls else
                                  "direct has no TLS: the backends speak plain HTTP")
            runner = make_runner(name, backends, mode=scenario.mode, **kw)
            stack.enter_context(runner)
        except Unavailable as e:
            skipped[target] = f"unavailable: {e}"
            opts.emit(f"  skip {target}: unavailable: {_first_line(str(e))}")
            continue
        except StartError as e:
            skipped[target] = f"failed to start: {e}" + (f"\n--- output ---\n{e.log}" if e.log else "")
            opts.emit(f"  skip {target}: failed to start: {_first_line(str(e))}")
            continue
        started[target] = runner
        extra = f" (ready in {runner.startup_s * 1000:.0f} ms)" if runner.startup_s else ""
        opts.emit(f"  {target}: {runner.url} pid {runner.pid}{extra}")
    return started


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


def run_scenario(scenario: Scenario, opts: BenchOptions, *, tool: str,
                 on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start backends and targets, warm up, run interleaved rounds; the scenario's report."""
    spec = scenario.load_spec(opts.duration, opts.connections, opts.rate)
    warm = replace(spec, duration=opts.warmup)
    skipped: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    opts.emit(f"scenario {scenario.name}: {scenario.description}")
    opts.step(f"{scenario.name}: starting", 0)
    with BackendSet(scenario.backends, size=scenario.body_size, python=opts.python,
                    kind=opts.backend) as backends, \
            contextlib.ExitStack() as stack:
        opts.emit(f"  backends ({backends.kind}): "
                  + ", ".join(f"{h}:{p}" for h, p in backends.addresses))
        names = _with_one_worker_twins(opts.targets, scenario)
        targets = _start_targets(stack, names, backends, scenario, opts, skipped)
        if opts.progress is not None:  # units of targets that will not run, or run in addition
            opts.progress.add(-(len(opts.targets) - len(targets)) * _units_per_target(opts))
        described = {name: r.describe() for name, r in targets.items()}
        if opts.warmup > 0:
            for name, r in targets.items():
                opts.step(f"{scenario.name}: warm-up {name}", 0)
                try:
                    run_load(r.url, warm, tool=tool, python=opts.python)
                except LoadError as e:
                    opts.emit(f"  warm-up of {name} failed: {_first_line(str(e))}")
                opts.step(f"{scenario.name}: warm-up {name}")
        for rnd in range(opts.runs):
            for name, r in targets.items():
                opts.step(f"{scenario.name}: {name} round {rnd + 1}/{opts.runs}", 0)
                base = {"scenario": scenario.name, "target": name, "round": rnd + 1}
                if not r.alive and not isinstance(r, DirectRunner):
                    run = {**base, "error": f"{name} is no longer running"}
                else:
                    try:
                        run = {**base, **_measure(r, backends, spec, tool, opts.python)}
                    except LoadError as e:
                        run = {**base, "error": str(e)}
                runs.append(run)
                opts.emit("  " + _run_line(run))
                opts.step(f"{scenario.name}: {name} round {rnd + 1}/{opts.runs} done")
                if on_run:
                    on_run(run)
        for name, r in targets.items():
            try:
                described[name]["peak_rss_kib"] = proc.tree_peak_rss_kib(r.pids())
            except (OSError, RuntimeError):
                pass
        backends_desc = backends.describe()
    return {
        "scenario": asdict(scenario),
        "backend_kind": backends.kind,
        "load": asdict(spec),
        "warmup_s": opts.warmup,
        "backends": backends_desc,
        "targets": described,
        "skipped": skipped,
        "runs": runs,
        "summary": summarize(runs),
        "ratios": ratios(summarize(runs)),
    }


def _run_line(run: dict[str, Any]) -> str:
    head = f"round {run['round']} {run['target']:<10}"
    if "error" in run:
        return f"{head} ERROR {_first_line(run['error'])}"
    rpc = run["req_per_cpu_s"]
    return (f"{head} {run['requests_per_s']:>9.0f} req/s  "
            f"{(rpc or 0):>9.0f} req/CPU-s  cpu {run['proxy_cpu_s']:.2f}s  "
            f"p99 {run['latency_us'].get('p99', 0) / 1000:.2f} ms"
            + (f"  {run['mb_per_s']:.0f} MB/s" if (run.get("mb_per_s") or 0) >= 100 else "")
            + (f"  errors {run['error_count']}" if run["error_count"] else ""))


# ----------------------------------------------------------------------------- statistics


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians per target over its successful runs (in first-seen order)."""
    by_target: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, int] = {}
    for r in runs:
        by_target.setdefault(r["target"], [])
        if "error" in r:
            failed[r["target"]] = failed.get(r["target"], 0) + 1
        else:
            by_target[r["target"]].append(r)
    out: dict[str, dict[str, Any]] = {}
    for target, ok in by_target.items():
        rps = [r["requests_per_s"] for r in ok]
        rpc = [r["req_per_cpu_s"] for r in ok]
        out[target] = {
            "runs": len(ok),
            "failed_runs": failed.get(target, 0),
            "requests_per_s": _median(rps),
            "req_per_cpu_s": _median(rpc),
            "proxy_cpu_util": _median(r["proxy_cpu_util"] for r in ok),
            "latency_p50_us": _median(r["latency_us"].get("p50") for r in ok),
            "latency_p99_us": _median(r["latency_us"].get("p99") for r in ok),
            "latency_p99_9_us": _median(r["latency_us"].get("p99.9") for r in ok),
            "mb_per_s": _median(r.get("mb_per_s") for r in ok),
            "errors": sum(r["error_count"] for r in ok),
            "requests_per_s_range": [min(rps), max(rps)] if rps else None,
            "req_per_cpu_s_range": ([min(v for v in rpc if v), max(v for v in rpc if v)]
                                    if any(rpc) else None),
        }
    return out


def ratios(summary: dict[str, dict[str, Any]], reference: str = REFERENCE) -> dict[str, dict]:
    """Each target's medians divided by the reference target's ("virtserve/haproxy": ...)."""
    ref = summary.get(reference)
    out: dict[str, dict[str, float | None]] = {}
    if not ref:
        return out
    for target, s in summary.items():
        if target == reference:
            continue
        out[f"{target}/{reference}"] = {
            key: (s[key] / ref[key] if s.get(key) and ref.get(key) else None)
            for key in ("req_per_cpu_s", "requests_per_s")
        }
    return out


def _units_per_target(opts: BenchOptions) -> int:
    return opts.runs + (1 if opts.warmup > 0 else 0)


def scaling(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each N-worker scenario: per target, N workers / 1 worker, from the one-worker twins
    run in the same rounds, else from the 1-worker scenario when it ran too."""
    by_name = {r["scenario"]["name"]: r for r in results}
    out: dict[str, dict[str, Any]] = {}
    for name, res in by_name.items():
        workers = res["scenario"].get("workers", 1)
        if workers <= 1:
            continue
        summary = res["summary"]
        if any(t.endswith(ONE_WORKER) for t in summary):
            base_name, base_summary = "1 worker, same rounds", {
                t.removesuffix(ONE_WORKER): s for t, s in summary.items() if t.endswith(ONE_WORKER)}
        elif name.rsplit(f"-{workers}w", 1)[0] in by_name:
            base_name = name.rsplit(f"-{workers}w", 1)[0]
            base_summary = by_name[base_name]["summary"]
        else:
            continue
        per: dict[str, Any] = {}
        for target, s in summary.items():
            b = base_summary.get(target)
            if b and b.get("requests_per_s") and s.get("requests_per_s"):
                per[target] = {
                    "requests_per_s": s["requests_per_s"] / b["requests_per_s"],
                    "req_per_cpu_s": (s["req_per_cpu_s"] / b["req_per_cpu_s"]
                                      if s.get("req_per_cpu_s") and b.get("req_per_cpu_s") else None),
                }
        out[name] = {"base": base_name, "workers": workers, "targets": per}
    return out


def run_pick_cost(opts: BenchOptions) -> dict[str, Any]:
    """The scheduler pick-cost measurement from benchmarks/pick_cost.py, when it exists.

    The module provides ``run``; it is given the keyword arguments it
    accepts among ``quick`` and ``log`` and returns a dict or a list of rows, kept as they are.
    """
    mod = pick_cost_module()
    if mod is None:
        return {"unavailable": "benchmarks/pick_cost.py is not present"}
    fn = getattr(mod, "run", None)
    if fn is None:
        return {"unavailable": "benchmarks/pick_cost.py has no run() function"}
    offered = {"quick": opts.quick, "log": opts.emit}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in offered.items() if k in params}
    try:
        result = fn(**kwargs)
    except Exception as e:  # a broken measurement must not lose the proxy runs
        return {"error": f"{type(e).__name__}: {e}"}
    return {"result": result}


# ----------------------------------------------------------------------------- start-up


def measure_startup(targets: Sequence[str], samples: int, opts: BenchOptions) -> dict[str, Any]:
    """Seconds from spawning each proxy to the first HTTP 200 through it; median of ``samples``."""
    out: dict[str, Any] = {}
    if samples <= 0:
        return out
    with BackendSet(1, size=100, python=opts.python, kind=opts.backend) as backends:
        for name in targets:
            if name not in RUNNERS or RUNNERS[name] is DirectRunner:
                continue
            kw: dict[str, Any] = {"python": opts.python} if name == "virtserve" else {}
            times: list[float] = []
            error = None
            for _ in range(samples):
                opts.step(f"start-up {name}")
                try:
                    with make_runner(name, backends, mode="http", **kw) as r:
                        assert r.startup_s is not None
                        times.append(r.startup_s)
                except (Unavailable, StartError) as e:
                    error = str(e)
                    break
            if times:
                out[name] = {"samples_s": times, "median_s": statistics.median(times),
                             "min_s": min(times), "max_s": max(times)}
                opts.emit(f"  start-up {name}: median {statistics.median(times) * 1000:.0f} ms "
                          f"over {len(times)}")
            else:
                out[name] = {"error": error}
                opts.emit(f"  start-up {name}: skipped ({_first_line(error or '')})")
    return out


# ----------------------------------------------------------------------------- the whole run


def tool_versions() -> dict[str, str | None]:
    wrk = find_tool("wrk")
    return {
        "wrk": tool_version([wrk, "-v"]) if wrk else None,
        "haproxy": RUNNERS["haproxy"].version(),
        "nginx": RUNNERS["nginx"].version(),
        "virtserve": VirtserveRunner.version(),
    }


def run_benchmarks(opts: BenchOptions) -> dict[str, Any]:
    """Run every scenario in ``opts`` and the start-up measurement; the full report (a dict).

    With ``opts.out_dir`` set, the JSON is rewritten after every run (a crash keeps what was
    measured) and a markdown copy is written at the end; ``report["files"]`` lists them.
    """
    for name in opts.scenarios:
        if name not in SCENARIOS and name not in (PICK_COST, SCRAPE_COST):
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join([*SCENARIOS, PICK_COST, SCRAPE_COST])}")
    for name in opts.targets:
        if name not in RUNNERS:
            raise ValueError(f"unknown target {name!r}; known: {', '.join(RUNNERS)}")
    if opts.runs < 1:
        raise ValueError("runs must be at least 1")
    if opts.duration <= 0:
        raise ValueError("duration must be positive")
    if opts.rate is not None and opts.rate <= 0:
        raise ValueError("rate must be positive (requests per second)")
    tool = resolve_tool(opts.load_tool)
    backend = backend_kind(opts.backend)
    proxy_scenarios = [n for n in opts.scenarios if n in SCENARIOS]
    startup_targets = [t for t in opts.startup_targets if t in opts.targets]
    if opts.log is None and opts.progress is None:
        total = (len(proxy_scenarios) * len(opts.targets) * _units_per_target(opts)
                 + (opts.startup_samples * len(startup_targets)) + (PICK_COST in opts.scenarios)
                 + (SCRAPE_COST in opts.scenarios))
        opts.progress = own_bar = Progress(total)
    else:
        own_bar = None
    started = _dt.datetime.now(_dt.timezone.utc)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "harness": "virtserve.benchmarks",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": proc.machine_facts().as_dict(),
        "tools": tool_versions(),
        "load_tool": tool,
        "backend_kind": backend,
        "options": {
            "scenarios": list(opts.scenarios),
            "targets": list(opts.targets),
            "runs": opts.runs,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "connections": opts.connections,
            "startup_samples": opts.startup_samples,
            "python": opts.python,
            "rate": opts.rate,
            "quick": opts.quick,
        },
        "results": [],
        "startup": {},
    }
    json_path: Path | None = None
    md_path: Path | None = None
    if opts.out_dir is not None:
        out = Path(opts.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%d-%H%M%S")
        json_path = out / f"bench-{stamp}.json"
        md_path = out / f"bench-{stamp}.md"
        report["files"] = {"json": str(json_path), "markdown": str(md_path)}
    opts.emit(f"load generator: {tool}; backends: {backend}; {opts.runs} runs x "
              f"{opts.duration:g}s per target, interleaved, warm-up {opts.warmup:g}s")
    try:
        _run_all(report, opts, tool, proxy_scenarios, startup_targets, json_path, md_path)
    finally:
        if own_bar is not None:
            own_bar.close()
            opts.progress = None
    return report


def _run_all(report: dict[str, Any], opts: BenchOptions, tool: str, proxy_scenarios: list[str],
             startup_targets: list[str], json_path: Path | None, md_path: Path | None) -> None:
    live_runs: list[dict[str, Any]] = []
    current = {"scenario": None, "runs": live_runs}

    def checkpoint(run: dict[str, Any]) -> None:
        live_runs.append(run)
        if json_path is not None:
            partial = dict(report, results=[*report["results"], {**current, "partial": True}])
            _write_json(json_path, partial)

    for name in proxy_scenarios:
        live_runs.clear()
        current["scenario"] = name
        result = run_scenario(SCENARIOS[name], opts, tool=tool, on_run=checkpoint)
        report["results"].append(result)
        report["scaling"] = scaling(report["results"])
        if json_path is not None:
            _write_json(json_path, report)

    if PICK_COST in opts.scenarios:
        opts.emit("scheduler pick cost (benchmarks/pick_cost.py)")
        report["pick_cost"] = run_pick_cost(opts)
        opts.step("pick cost")
        if "unavailable" in report["pick_cost"]:
            opts.emit(f"  unavailable: {report['pick_cost']['unavailable']}")
    if SCRAPE_COST in opts.scenarios:
        from .scrape_cost import run as run_scrape_cost

        try:
            report["scrape_cost"] = run_scrape_cost(
                runs=opts.runs, duration=opts.duration, warmup=opts.warmup,
                connections=opts.connections, python=opts.python, backend=opts.backend,
                load_tool=tool, log=opts.emit)
        except (LoadError, StartError, Unavailable) as e:  # the other results stand
            report["scrape_cost"] = {"error": f"{type(e).__name__}: {e}"}
            opts.emit(f"  scrape cost failed: {_first_line(str(e))}")
        opts.step("scrape cost")
    if opts.startup_samples > 0 and startup_targets:
        opts.emit(f"start-up to first accepted connection ({opts.startup_samples} samples)")
        report["startup"] = measure_startup(startup_targets, opts.startup_samples, opts)
    report["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if json_path is not None and md_path is not None:
        if opts.plots:
            from .plots import write_plots

            report["plots"] = write_plots(report, json_path.parent, json_path.stem)
            for line in report["plots"].get("notes", []):
                opts.emit(line)
        write_report(report, json_path, md_path)


def _write_json(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)


def write_report(report: dict[str, Any], json_path: Path, md_path: Path) -> None:
    from .report import render_markdown

    _write_json(json_path, report)
    md_path.write_text(render_markdown(report))
    latest = json_path.parent / "latest.json"
    _write_json(latest, report)
