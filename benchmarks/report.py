"""Render a benchmark report (the dict from ``run_benchmarks``) as markdown: an overview of
every scenario against HAProxy, then one table per scenario, worker scaling, the scheduler pick
cost and start-up times. The PNG plots (plots.py) read the same dict.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_markdown", "fmt_int", "fmt_ratio"]


def fmt_int(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    return f"{v:.0f}"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _mib(kib: int | None) -> str:
    return "-" if not kib else f"{kib / 1024:.0f}"


def _overview(report: dict[str, Any]) -> list[str]:
    """One row per scenario: each target's req/CPU-s and virtserve's ratio against HAProxy."""
    results = report.get("results", [])
    if not results:
        return []
    targets: list[str] = []
    for res in results:
        targets += [t for t in res.get("summary", {}) if t not in targets]
    lines = ["", "## Overview: requests per proxy CPU-second (medians)", "",
             "| scenario | " + " | ".join(targets) + " | virtserve / haproxy | virtserve p99 ms "
             "| haproxy p99 ms |",
             "|---|" + "---:|" * (len(targets) + 3)]
    for res in results:
        summ = res.get("summary", {})
        cells = []
        for t in targets:
            s = summ.get(t)
            if s and s.get("req_per_cpu_s"):
                cells.append(fmt_int(s["req_per_cpu_s"]))
            elif t in res.get("skipped", {}):
                cells.append("n/a")
            else:
                cells.append("-")
        vh = res.get("ratios", {}).get("virtserve/haproxy", {})
        lines.append(f"| {res['scenario']['name']} | " + " | ".join(cells)
                     + f" | {fmt_ratio(vh.get('req_per_cpu_s'))}"
                     + f" | {_ms(summ.get('virtserve', {}).get('latency_p99_us'))}"
                     + f" | {_ms(summ.get('haproxy', {}).get('latency_p99_us'))} |")
    lines.append("")
    lines.append("n/a: the target could not run that scenario (reason under its table); "
                 "direct: the backend alone, its own CPU.")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    opts = report.get("options", {})
    lines: list[str] = []
    lines.append("# virtserve benchmark")
    lines.append("")
    lines.append(
        f"{m.get('cores', '?')} cores ({m.get('cpu_model', '?')}), kernel {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}; load: {report.get('load_tool', '?')}; backends: "
        f"{report.get('backend_kind', '?')}; {opts.get('runs')} runs x {opts.get('duration_s')}s "
        f"per target, interleaved, after a {opts.get('warmup_s')}s warm-up; medians. "
        f"req/CPU-s = requests per proxy CPU-second (utime+stime from /proc)."
    )
    tools = {k: v for k, v in report.get("tools", {}).items() if v}
    if tools:
        lines.append("")
        lines.append("Tools: " + "; ".join(f"{v}" for v in tools.values()))
    lines += _overview(report)
    for p in report.get("plots", {}).get("files", []):
        lines.append("")
        lines.append(f"![{p.rsplit('/', 1)[-1]}]({p.rsplit('/', 1)[-1]})")
    for res in report.get("results", []):
        sc = res["scenario"]
        load = res.get("load", {})
        lines.append("")
        lines.append(f"## {sc['name']}")
        lines.append("")
        shape = (f"open loop at {load['rate']:g} req/s over {load.get('connections')} connections"
                 if load.get("rate") else f"{load.get('connections')} connections")
        lines.append(f"{sc['description']}; {shape}.")
        lines.append("")
        lines.append("| target | req/s | MB/s | req/CPU-s | vs haproxy (req/CPU-s) | vs haproxy (req/s) "
                     "| proxy CPU | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | runs | errors |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ratios = res.get("ratios", {})
        for target, s in res.get("summary", {}).items():
            r = ratios.get(f"{target}/haproxy", {})
            util = s.get("proxy_cpu_util")
            label = target + (" (backend CPU)" if target == "direct" else "")
            rss = res.get("targets", {}).get(target, {}).get("peak_rss_kib")
            lines.append(
                f"| {label} | {fmt_int(s.get('requests_per_s'))} | {fmt_int(s.get('mb_per_s'))} "
                f"| {fmt_int(s.get('req_per_cpu_s'))} "
                f"| {fmt_ratio(r.get('req_per_cpu_s')) if target != 'haproxy' else '1.00x'} "
                f"| {fmt_ratio(r.get('requests_per_s')) if target != 'haproxy' else '1.00x'} "
                f"| {'-' if util is None else f'{util * 100:.0f}%'} "
                f"| {_ms(s.get('latency_p50_us'))} | {_ms(s.get('latency_p99_us'))} "
                f"| {_ms(s.get('latency_p99_9_us'))} "
                f"| {_mib(rss)} | {s.get('runs')}"
                f"{'+' + str(s['failed_runs']) + ' failed' if s.get('failed_runs') else ''} "
                f"| {s.get('errors')} |"
            )
        vh = ratios.get("virtserve/haproxy")
        if vh:
            lines.append("")
            lines.append(
                f"**virtserve / haproxy**: {fmt_ratio(vh.get('req_per_cpu_s'))} req per CPU-second, "
                f"{fmt_ratio(vh.get('requests_per_s'))} req/s."
            )
        for name, why in res.get("skipped", {}).items():
            first = why.strip().splitlines()[0] if why.strip() else why
            lines.append("")
            lines.append(f"- {name}: {first}")
    lines += _scaling(report.get("scaling", {}))
    lines += _pick_cost(report.get("pick_cost"))
    lines += _scrape_cost(report.get("scrape_cost"))
    su = report.get("startup", {})
    if su:
        lines.append("")
        lines.append("## Start-up to first accepted connection")
        lines.append("")
        lines.append("Spawn of the process to the first HTTP 200 through it.")
        lines.append("")
        lines.append("| target | median ms | min ms | max ms | samples |")
        lines.append("|---|---:|---:|---:|---:|")
        for name, s in su.items():
            if "error" in s:
                first = (s["error"] or "").strip().splitlines()
                lines.append(f"| {name} | failed: {first[0] if first else '?'} | | | |")
            else:
                lines.append(
                    f"| {name} | {s['median_s'] * 1000:.0f} | {s['min_s'] * 1000:.0f} "
                    f"| {s['max_s'] * 1000:.0f} | {len(s['samples_s'])} |"
                )
    lines += ["", "Latency: wrk's own distribution, or the built-in generator's HdrHistogram; "
              "open-loop runs count from when each request was due (no coordinated omission)."]
    files = report.get("files")
    if files:
        lines.append("")
        lines.append(f"Every run: `{files['json']}`")
    return "\n".join(lines) + "\n"


def _scaling(scaling: dict[str, Any]) -> list[str]:
    if not scaling:
        return []
    lines = ["", "## Worker scaling", "",
             "N workers (virtserve processes, HAProxy threads, nginx workers) against one, "
             "same run. On a machine whose cores the load generator shares, req/s is capped by "
             "the machine, not the proxy.", "",
             "| scenario | target | req/s N/1 | req/CPU-s N/1 |", "|---|---|---:|---:|"]
    for name, s in scaling.items():
        for target, r in s["targets"].items():
            lines.append(f"| {name} (vs {s['base']}) | {target} | {fmt_ratio(r['requests_per_s'])} "
                         f"| {fmt_ratio(r.get('req_per_cpu_s'))} |")
    return lines


def _pick_cost(pick: dict[str, Any] | None) -> list[str]:
    if not pick:
        return []
    lines = ["", "## Scheduler pick cost", ""]
    if "unavailable" in pick or "error" in pick:
        return lines + [f"- {'unavailable: ' + pick['unavailable'] if 'unavailable' in pick else 'failed: ' + pick['error']}"]
    result = pick.get("result")
    if isinstance(result, dict) and isinstance(result.get("markdown"), str):
        return lines + [result["markdown"].rstrip()]
    rows = result.get("rows") if isinstance(result, dict) else result
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
        return lines
    return lines + ["```json", json.dumps(result, indent=2, default=str), "```"]


def _scrape_cost(sc: dict[str, Any] | None) -> list[str]:
    if not sc:
        return []
    lines = ["", "## Cost of a /metrics scrape every "
             f"{sc.get('interval_s', 0.1) * 1000:g} ms", ""]
    if "error" in sc:
        return lines + [f"- failed: {sc['error']}"]
    med = sc["medians"]
    share = sc.get("scrape_cpu_share_pct")
    paired = sc.get("paired", {})
    lines += [f"{sc['scenario']} through one virtserve with stats on, {sc['runs_per_arm']} pairs of "
              f"{sc['duration_s']:g} s windows of one load, quiet and scraped back to back; the change is "
              "the median over the pairs of scraped / quiet, with its 95% bootstrap interval.", "",
              "| arm | req/s | req/CPU-s | proxy CPU us/req |", "|---|---:|---:|---:|"]
    for arm in ("quiet", "scraped"):
        m = med[arm]
        us = m.get("cpu_us_per_req")
        lines.append(f"| {arm} | {fmt_int(m['requests_per_s'])} | {fmt_int(m['req_per_cpu_s'])} | "
                     f"{'-' if us is None else f'{us:.1f}'} |")
    lines.append("")
    for key, what in (("requests_per_s", "req/s"), ("req_per_cpu_s", "req per proxy CPU-second")):
        e = paired.get(key)
        if e:
            lines.append(f"- {what}: {e['median_pct']:+.2f}% [{e['ci_low_pct']:+.2f}%, {e['ci_high_pct']:+.2f}%]")
    loaded, util = sc.get("loaded_cpu_per_scrape_ms"), sc.get("proxy_cpu_util")
    if loaded:
        lines.append(f"- under load one scrape costs the proxy {loaded[0]:.2f} ms of CPU [{loaded[1]:.2f}, "
                     f"{loaded[2]:.2f}]: {loaded[0] / sc['interval_s'] / 10:.2f}% of a core, what a CPU-bound "
                     f"proxy with a core to itself would lose in req/s (this one had "
                     f"{(util or 0) * 100:.0f}% of a core)")
    lines += [f"- the {sc['limit_pct']:g}% bound on the req/s change: {sc.get('bound', '-')}",
              f"- one scrape: {sc.get('cpu_per_scrape_ms')} ms of proxy CPU (idle), "
              f"{'-' if share is None else f'{share:.2f}%'} of the proxy's CPU under load; "
              f"latency median {sc['scrape_ms']['median']} ms, p99 {sc['scrape_ms']['p99']} ms; "
              f"{sc.get('metrics_bytes')} bytes"]
    return lines


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)
