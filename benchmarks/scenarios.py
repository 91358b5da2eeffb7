"""Scenarios and the measurement loop.

A scenario fixes what the backends answer, the proxy mode and the load shape. The loop runs
every available target in front of the same backends, interleaved (A B C A B C ...), so slow
drift of the machine hits every target alike, and reads each proxy's CPU seconds from /proc
around each run: the fair figure is requests per proxy CPU-second.

Only "l7-keepalive-small" exists now; the matrix (new connection per request, 64 KiB bodies,
L4, pipelining, ...) adds entries to ``SCENARIOS`` and, where needed, options to ``Scenario``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import proc
from .load import LoadError, LoadSpec, resolve_tool, run_load
from .runners import (
    RUNNERS,
    BackendSet,
    DirectRunner,
    ProxyRunner,
    StartError,
    Unavailable,
    VirtserveRunner,
    find_tool,
    make_runner,
    tool_version,
)

__all__ = [
    "Scenario",
    "SCENARIOS",
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
    tls: bool = False  # clients speak HTTPS to the proxy (a local CA's certificate)

    def load_spec(self, duration: float, connections: int | None = None) -> LoadSpec:
        return LoadSpec(connections=connections or self.connections, duration=duration,
                        keepalive=self.keepalive, path=self.path)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="l7-keepalive-small",
            description="HTTP proxying, keep-alive clients, 100 B responses, 2 backends, round robin",
        ),
        Scenario(
            name="tls-keepalive-small",
            description="HTTPS termination, keep-alive clients, 100 B responses, 2 plain backends",
            tls=True,
        ),
        Scenario(
            name="tls-handshake",
            description="HTTPS termination, a new connection (a full TLS handshake, ECDSA P-256) "
                        "per request: req/s = handshakes/s",
            tls=True, keepalive=False,
        ),
    )
}


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
    log: Callable[[str], None] | None = None  # progress lines; default: stderr

    def emit(self, msg: str) -> None:
        (self.log or _stderr)(msg)


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


def _start_targets(stack: contextlib.ExitStack, names: Iterable[str], backends: BackendSet,
                   scenario: Scenario, opts: BenchOptions,
                   skipped: dict[str, str]) -> dict[str, ProxyRunner]:
    started: dict[str, ProxyRunner] = {}
    for name in names:
        kw: dict[str, Any] = {}
        if name == "virtserve":
            kw["python"] = opts.python
        if scenario.tls:
            kw["tls"] = _bench_certificate(stack)
        try:
            runner = make_runner(name, backends, mode=scenario.mode, **kw)
            stack.enter_context(runner)
        except (Unavailable, StartError) as e:
            log = getattr(e, "log", "")
            skipped[name] = str(e) + (f"\n--- output ---\n{log}" if log else "")
            opts.emit(f"  skip {name}: {_first_line(str(e))}")
            continue
        started[name] = runner
        extra = f" (ready in {runner.startup_s * 1000:.0f} ms)" if runner.startup_s else ""
        opts.emit(f"  {name}: {runner.url} pid {runner.pid}{extra}")
    return started


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


def run_scenario(scenario: Scenario, opts: BenchOptions, *, tool: str,
                 on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start backends and targets, warm up, run interleaved rounds; the scenario's report."""
    spec = scenario.load_spec(opts.duration, opts.connections)
    warm = replace(spec, duration=opts.warmup)
    skipped: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    opts.emit(f"scenario {scenario.name}: {scenario.description}")
    with BackendSet(scenario.backends, size=scenario.body_size, python=opts.python) as backends, \
            contextlib.ExitStack() as stack:
        opts.emit("  backends: " + ", ".join(f"{h}:{p}" for h, p in backends.addresses))
        targets = _start_targets(stack, opts.targets, backends, scenario, opts, skipped)
        described = {name: r.describe() for name, r in targets.items()}
        if opts.warmup > 0:
            for name, r in targets.items():
                try:
                    run_load(r.url, warm, tool=tool, python=opts.python)
                except LoadError as e:
                    opts.emit(f"  warm-up of {name} failed: {_first_line(str(e))}")
        for rnd in range(opts.runs):
            for name, r in targets.items():
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


# ----------------------------------------------------------------------------- start-up


def measure_startup(targets: Sequence[str], samples: int, opts: BenchOptions) -> dict[str, Any]:
    """Seconds from spawning each proxy to the first HTTP 200 through it; median of ``samples``."""
    out: dict[str, Any] = {}
    if samples <= 0:
        return out
    with BackendSet(1, size=100, python=opts.python) as backends:
        for name in targets:
            if name not in RUNNERS or RUNNERS[name] is DirectRunner:
                continue
            kw: dict[str, Any] = {"python": opts.python} if name == "virtserve" else {}
            times: list[float] = []
            error = None
            for _ in range(samples):
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
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    for name in opts.targets:
        if name not in RUNNERS:
            raise ValueError(f"unknown target {name!r}; known: {', '.join(RUNNERS)}")
    if opts.runs < 1:
        raise ValueError("runs must be at least 1")
    tool = resolve_tool(opts.load_tool)
    started = _dt.datetime.now(_dt.timezone.utc)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "harness": "virtserve.benchmarks",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": proc.machine_facts().as_dict(),
        "tools": tool_versions(),
        "load_tool": tool,
        "options": {
            "scenarios": list(opts.scenarios),
            "targets": list(opts.targets),
            "runs": opts.runs,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "connections": opts.connections,
            "startup_samples": opts.startup_samples,
            "python": opts.python,
        },
        "results": [],
        "startup": {},
    }
    json_path = md_path = None
    if opts.out_dir is not None:
        out = Path(opts.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%d-%H%M%S")
        json_path = out / f"bench-{stamp}.json"
        md_path = out / f"bench-{stamp}.md"
        report["files"] = {"json": str(json_path), "markdown": str(md_path)}
    opts.emit(f"load generator: {tool}; {opts.runs} runs x {opts.duration:g}s per target, "
              f"warm-up {opts.warmup:g}s")

    live_runs: list[dict[str, Any]] = []
    current = {"scenario": None, "runs": live_runs}

    def checkpoint(run: dict[str, Any]) -> None:
        live_runs.append(run)
        if json_path is not None:
            partial = dict(report, results=[*report["results"], {**current, "partial": True}])
            _write_json(json_path, partial)

    for name in opts.scenarios:
        live_runs.clear()
        current["scenario"] = name
        result = run_scenario(SCENARIOS[name], opts, tool=tool, on_run=checkpoint)
        report["results"].append(result)
        if json_path is not None:
            _write_json(json_path, report)

    startup_targets = [t for t in opts.startup_targets if t in opts.targets]
    if opts.startup_samples > 0 and startup_targets:
        opts.emit(f"start-up to first accepted connection ({opts.startup_samples} samples)")
        report["startup"] = measure_startup(startup_targets, opts.startup_samples, opts)
    report["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if json_path is not None and md_path is not None:
        write_report(report, json_path, md_path)
    return report


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
