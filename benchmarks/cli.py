"""Command line: ``python -m benchmarks`` (from the repo root), ``python -m virtserve.benchmarks``,
and later ``virtserve bench`` (which calls ``main(argv)``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Sequence

from .load import LoadError
from .report import render_markdown
from .runners import RUNNERS, Unavailable, backend_kind, find_tool
from .scenarios import (
    DEFAULT_TARGETS,
    PICK_COST,
    QUICK_SCENARIOS,
    SCENARIOS,
    SCRAPE_COST,
    BenchOptions,
    pick_cost_module,
    run_benchmarks,
)

__all__ = ["build_parser", "options_from_args", "main"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark virtserve against HAProxy, nginx and a direct connection "
                    "(requests per proxy CPU-second, interleaved runs, medians).",
    )
    p.add_argument("--scenarios", "--scenario", "-s", action="append", dest="scenarios",
                   type=_csv, metavar="A,B",
                   help="scenarios to run, comma-separated (repeatable; default: all, with "
                        f"--quick: {','.join(QUICK_SCENARIOS)}); --list shows them")
    p.add_argument("--targets", "-t", type=_csv, default=list(DEFAULT_TARGETS),
                   help=f"comma-separated targets (default {','.join(DEFAULT_TARGETS)}); "
                        "missing tools are skipped")
    p.add_argument("--runs", "-n", type=int, default=None, help="runs per target (default 3)")
    p.add_argument("--duration", "-d", type=float, default=None,
                   help="seconds per run (default 5; wrk rounds to whole seconds)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per target (default 2)")
    p.add_argument("--connections", "-c", type=int, default=None,
                   help="load connections (default: the scenario's, 50)")
    p.add_argument("--quick", action="store_true",
                   help=f"a one-minute look: {','.join(QUICK_SCENARIOS)}, 3 runs x 1 s, "
                        "1 s warm-up, 3 start-up samples")
    p.add_argument("--load-tool", choices=("auto", "wrk", "builtin"), default="auto",
                   help="load generator (auto: wrk when installed; open-loop runs always use "
                        "the built-in one)")
    p.add_argument("--backend", choices=("auto", "nginx", "builtin"), default="auto",
                   help="what serves behind the proxies (auto: nginx when installed)")
    p.add_argument("--rate", type=float, default=None, metavar="REQ_PER_S",
                   help="open loop: every scenario at this fixed request rate (built-in "
                        "generator; latency counted from when each request was due)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--startup-samples", type=int, default=None,
                   help="start-up measurements per proxy (default 5, --quick 3; 0 disables)")
    p.add_argument("--out", default="bench-results", help="directory for JSON and markdown "
                   "(default bench-results/)")
    p.add_argument("--no-out", action="store_true", help="write no files")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter that runs virtserve and the helpers (default: this one)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a requested target was skipped or a run failed")
    p.add_argument("--list", action="store_true", help="list scenarios and targets, then exit")
    return p


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    quick = args.quick
    chosen = [name for group in (args.scenarios or []) for name in group]
    if not chosen:
        chosen = list(QUICK_SCENARIOS) if quick else [*SCENARIOS, PICK_COST, SCRAPE_COST]
    known = [*SCENARIOS, PICK_COST, SCRAPE_COST]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(known)} (virtserve bench --list)")
    unknown = [t for t in args.targets if t not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown target {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(RUNNERS)}")
    if args.runs is not None and args.runs < 1:
        raise ValueError("--runs must be at least 1")
    return BenchOptions(
        scenarios=tuple(dict.fromkeys(chosen)),
        targets=tuple(args.targets),
        runs=args.runs if args.runs is not None else 3,
        duration=args.duration if args.duration is not None else (1.0 if quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        connections=args.connections,
        load_tool=args.load_tool,
        startup_samples=(args.startup_samples if args.startup_samples is not None
                         else (3 if quick else 5)),
        out_dir=None if args.no_out else args.out,
        python=args.python,
        backend=args.backend,
        rate=args.rate,
        plots=not args.no_plots,
        quick=quick,
    )


def print_list() -> None:
    """What --list shows: scenarios, targets and tools, each with whether it can run here."""
    print("scenarios (* = in --quick):")
    for s in SCENARIOS.values():
        print(f"  {'*' if s.quick else ' '} {s.name:<22} {s.description}")
    pick = "available" if pick_cost_module() else "unavailable: benchmarks/pick_cost.py is not present"
    print(f"    {PICK_COST:<22} scheduler pick cost ({pick})")
    print(f"    {SCRAPE_COST:<22} l7-keepalive-small through virtserve with and without a "
          "/metrics scrape every 100 ms")
    print("targets:")
    for name, cls in RUNNERS.items():
        why = cls.unavailable_reason()
        extra = ""
        if name == "nginx" and not why and cls.stream_module() is None:  # type: ignore[attr-defined]
            extra = " (HTTP only: no stream module for the L4 scenarios)"
        print(f"  {name:<10} {'available' + extra if not why else 'unavailable: ' + why}")
    wrk = find_tool("wrk")
    print("load generator: " + ("wrk (" + wrk + ")" if wrk else "built-in (wrk is not installed)")
          + "; open-loop runs: built-in")
    try:
        print(f"backends: {backend_kind('auto')}")
    except Unavailable as e:  # pragma: no cover - auto never raises
        print(f"backends: {e}")


def _sigterm_to_exit(signum, frame):  # let context managers stop the processes we started
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m benchmarks") -> int:
    parser = build_parser(prog)
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv[:1] == ["--"]:  # `virtserve bench -- --quick` passes the separator through
        argv = argv[1:]
    args = parser.parse_args(argv)
    if args.list:
        print_list()
        return 0
    try:
        opts = options_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        report = run_benchmarks(opts)
    except (ValueError, LoadError, Unavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print()
    print(render_markdown(report), end="")
    ok_runs = [r for res in report["results"] for r in res["runs"] if "error" not in r]
    if not ok_runs:
        return 1
    if args.strict:
        failed = [r for res in report["results"] for r in res["runs"] if "error" in r]
        skipped = [n for res in report["results"] for n in res["skipped"]]
        if failed or skipped:
            return 1
    return 0
