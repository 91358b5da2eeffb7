"""PNG plots of a benchmark report: throughput bars and latency percentile curves (matplotlib).

matplotlib is optional (the ``bench`` extra: ``pip install 'virtserve[bench]'``); without it the
report says so and everything else is written as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plots"]

_COLORS = {"virtserve": "#1f77b4", "haproxy": "#d62728", "nginx": "#2ca02c", "direct": "#7f7f7f"}


def write_plots(report: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Any]:
    """Write ``STEM-throughput.png`` and ``STEM-latency.png``; {"files": [...], "notes": [...]}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {"files": [], "notes": ["plots skipped: matplotlib is not installed "
                                       "(pip install 'virtserve[bench]')"]}
    results = [r for r in report.get("results", []) if r.get("summary")]
    if not results:
        return {"files": [], "notes": []}
    files = [str(_throughput(plt, results, report, out_dir / f"{stem}-throughput.png")),
             str(_latency(plt, results, out_dir / f"{stem}-latency.png"))]
    return {"files": files, "notes": [f"plots: {', '.join(files)}"]}


def _targets(results: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        for t in r["summary"]:
            if t not in seen:
                seen.append(t)
    return seen


def _throughput(plt, results, report, path: Path) -> Path:
    targets = _targets(results)
    names = [r["scenario"]["name"] for r in results]
    fig, axes = plt.subplots(2, 1, figsize=(min(18, max(8, 1.1 * len(names) * len(targets) / 2)), 8),
                             sharex=True)
    width = 0.8 / max(1, len(targets))
    for ax, key, label in ((axes[0], "req_per_cpu_s", "requests per proxy CPU-second"),
                           (axes[1], "requests_per_s", "requests per second")):
        for i, t in enumerate(targets):
            xs, ys = [], []
            for j, r in enumerate(results):
                v = r["summary"].get(t, {}).get(key)
                if v:
                    xs.append(j + (i - (len(targets) - 1) / 2) * width)
                    ys.append(v)
            base, twin = t.split("@")[0], "@" in t  # "haproxy@1w": the one-worker twin, paler
            ax.bar(xs, ys, width, label=t, color=_COLORS.get(base), alpha=0.5 if twin else 1.0,
                   hatch="//" if twin else None)
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[1].set_xticks(range(len(names)))
    axes[1].set_xticklabels(names, rotation=30, ha="right", fontsize="small")
    m = report.get("machine", {})
    axes[0].set_title(f"medians, {m.get('cores', '?')} cores ({m.get('cpu_model', '?')}); "
                      "direct: the backend alone", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _median_curve(runs: list[dict[str, Any]]) -> list[list[float]]:
    """The curve of the run with the median p99 (a real run's shape, not a blend)."""
    ok = sorted((r for r in runs if r.get("latency_curve_us")),
                key=lambda r: r["latency_us"].get("p99", 0))
    return ok[len(ok) // 2]["latency_curve_us"] if ok else []


def _latency(plt, results, path: Path) -> Path:
    n = len(results)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for k, res in enumerate(results):
        ax = axes[k // cols][k % cols]
        for t in res["summary"]:
            curve = [(p, us) for p, us in _median_curve(
                [r for r in res["runs"] if r.get("target") == t and "error" not in r]) if p < 100]
            if not curve:
                continue
            # x: 1/(1-p) on a log axis spreads the tail (90, 99, 99.9 ...) evenly.
            xs = [1 / (1 - p / 100) for p, _ in curve]
            ax.plot(xs, [us / 1000 for _, us in curve], marker=".", label=t, color=_COLORS.get(t.split("@")[0]),
                    linestyle="--" if "@" in t else "-")
        ax.set_xscale("log")
        ticks = [1, 2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"], fontsize="x-small")
        ax.set_ylabel("latency ms")
        ax.set_title(res["scenario"]["name"], fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("latency by percentile (median run)", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
