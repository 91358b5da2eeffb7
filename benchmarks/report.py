"""Render a benchmark report (the dict from ``run_benchmarks``) as markdown.

Plots for the full matrix come later; they read the same JSON.
"""

from __future__ import annotations

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


def render_markdown(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    opts = report.get("options", {})
    lines: list[str] = []
    lines.append("# virtserve benchmark")
    lines.append("")
    lines.append(
        f"{m.get('cores', '?')} cores ({m.get('cpu_model', '?')}), kernel {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}; load: {report.get('load_tool', '?')}, "
        f"{opts.get('runs')} runs x {opts.get('duration_s')}s per target, interleaved, "
        f"medians. req/CPU-s = requests per proxy CPU-second (utime+stime from /proc)."
    )
    tools = {k: v for k, v in report.get("tools", {}).items() if v}
    if tools:
        lines.append("")
        lines.append("Tools: " + "; ".join(f"{v}" for v in tools.values()))
    for res in report.get("results", []):
        sc = res["scenario"]
        load = res.get("load", {})
        lines.append("")
        lines.append(f"## {sc['name']}")
        lines.append("")
        lines.append(f"{sc['description']}; {load.get('connections')} connections.")
        lines.append("")
        lines.append("| target | req/s | req/CPU-s | vs haproxy (req/CPU-s) | vs haproxy (req/s) "
                     "| proxy CPU | p50 ms | p99 ms | peak RSS MiB | runs | errors |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ratios = res.get("ratios", {})
        for target, s in res.get("summary", {}).items():
            r = ratios.get(f"{target}/haproxy", {})
            util = s.get("proxy_cpu_util")
            label = target + (" (backend CPU)" if target == "direct" else "")
            rss = res.get("targets", {}).get(target, {}).get("peak_rss_kib")
            lines.append(
                f"| {label} | {fmt_int(s.get('requests_per_s'))} | {fmt_int(s.get('req_per_cpu_s'))} "
                f"| {fmt_ratio(r.get('req_per_cpu_s')) if target != 'haproxy' else '1.00x'} "
                f"| {fmt_ratio(r.get('requests_per_s')) if target != 'haproxy' else '1.00x'} "
                f"| {'-' if util is None else f'{util * 100:.0f}%'} "
                f"| {_ms(s.get('latency_p50_us'))} | {_ms(s.get('latency_p99_us'))} "
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
            lines.append(f"- skipped {name}: {first}")
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
    files = report.get("files")
    if files:
        lines.append("")
        lines.append(f"Every run: `{files['json']}`")
    return "\n".join(lines) + "\n"
