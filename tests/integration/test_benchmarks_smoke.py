"""Smoke test of the benchmark harness: tiny runs, real processes, no assertions about speed.

Runs the harness programmatically against its built-in backend ("direct" target) and, when the
`virtserve run` CLI serves, against virtserve. Checks the JSON report, not the numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from virtserve.benchmarks import proc
from virtserve.benchmarks.load import parse_wrk_text
from virtserve.benchmarks.runners import BackendSet, probe_http
from virtserve.benchmarks.scenarios import BenchOptions, run_benchmarks


def _options(tmp_path, targets, **kw) -> BenchOptions:
    base = dict(
        targets=tuple(targets),
        runs=2,
        duration=0.5,
        warmup=0.0,
        load_tool="builtin",  # sub-second runs; wrk only does whole seconds
        connections=4,
        startup_samples=0,
        out_dir=tmp_path / "out",
        python=sys.executable,
        log=lambda msg: None,
    )
    base.update(kw)
    return BenchOptions(**base)


def _load_report(report: dict) -> dict:
    path = report["files"]["json"]
    assert os.path.exists(path)
    assert os.path.exists(report["files"]["markdown"])
    with open(path) as f:
        return json.load(f)


def _ok_runs(data: dict, target: str) -> list[dict]:
    (result,) = data["results"]
    assert result["scenario"]["name"] == "l7-keepalive-small"
    return [r for r in result["runs"] if r["target"] == target and "error" not in r]


@pytest.mark.timeout(60)
def test_direct_target_produces_runs(tmp_path):
    report = run_benchmarks(_options(tmp_path, ["direct"]))
    data = _load_report(report)
    runs = _ok_runs(data, "direct")
    assert len(runs) == 2, data["results"][0]["runs"]
    for r in runs:
        assert r["requests"] > 0
        assert r["requests_per_s"] > 0
        assert r["proxy_cpu_s"] >= 0
        assert r["error_count"] == 0
        assert set(r["latency_us"]) >= {"p50", "p99"}
    summary = data["results"][0]["summary"]["direct"]
    assert summary["runs"] == 2 and summary["requests_per_s"] > 0
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu_model"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in data["plots"]["notes"][0]
    else:
        assert len(data["plots"]["files"]) == 2
        assert all(open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for f in data["plots"]["files"])


@pytest.mark.timeout(60)
def test_virtserve_target_when_cli_serves(tmp_path):
    report = run_benchmarks(
        _options(tmp_path, ["virtserve"], runs=1, startup_samples=1,
                 startup_targets=("virtserve",))
    )
    data = _load_report(report)
    skipped = data["results"][0]["skipped"]
    if "virtserve" in skipped:
        pytest.skip("virtserve run CLI does not serve yet: " + skipped["virtserve"].splitlines()[0])
    runs = _ok_runs(data, "virtserve")
    assert runs and all(r["requests"] > 0 for r in runs), data["results"][0]["runs"]
    assert data["startup"]["virtserve"]["median_s"] > 0


@pytest.mark.timeout(30)
def test_backend_answers_and_proc_readings(tmp_path):
    with BackendSet(1, size=10) as backends:
        (server,) = backends.servers
        assert probe_http(server.host, server.port) == 200
        assert proc.tree_peak_rss_kib(backends.pids()) > 0
        assert proc.tree_cpu_seconds(backends.pids()) >= 0
    assert proc.read_stat(os.getpid()).pid == os.getpid()


def test_parse_wrk_text():
    text = """\
Running 2s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.33us  222.59us   4.97ms   91.34%
    Req/Sec   121.07k    16.80k  136.45k    80.00%
  Latency Distribution
     50%  350.00us
     75%  433.00us
     90%  609.00us
     99%    0.99ms
  240232 requests in 2.00s, 38.03MB read
  Non-2xx or 3xx responses: 3
Requests/sec: 120031.32
Transfer/sec:     19.00MB
"""
    r = parse_wrk_text(text)
    assert r.requests == 240232
    assert r.duration_s == pytest.approx(2.0)
    assert r.requests_per_s == pytest.approx(120031.32)
    assert r.latency_us["p50"] == pytest.approx(350.0)
    assert r.latency_us["p99"] == pytest.approx(990.0)
    assert r.latency_us["max"] == pytest.approx(4970.0)
    assert r.errors["status"] == 3


def _has(tool: str) -> bool:
    from virtserve.benchmarks.runners import find_tool

    return find_tool(tool) is not None


@pytest.mark.timeout(60)
def test_tls_scenario_reports_virtserve_unavailable_and_still_measures_haproxy(tmp_path):
    if not _has("haproxy"):
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    report = run_benchmarks(_options(tmp_path, ["virtserve", "haproxy"], runs=1,
                                     scenarios=("tls-handshake",)))
    (result,) = _load_report(report)["results"]
    haproxy_runs = [r for r in result["runs"] if r["target"] == "haproxy"]
    assert haproxy_runs and haproxy_runs[0]["requests"] > 0 and haproxy_runs[0]["error_count"] == 0
    if "virtserve" in result["skipped"]:  # until TLS listeners land: said, not crashed
        assert result["skipped"]["virtserve"].startswith(
            "unavailable: virtserve has no TLS listener yet")
        md = open(report["files"]["markdown"]).read()
        assert "virtserve: unavailable: virtserve has no TLS listener yet" in md


@pytest.mark.timeout(60)
def test_l4_scenario_and_open_loop_rate(tmp_path):
    report = run_benchmarks(_options(tmp_path, ["virtserve", "direct"], runs=1, duration=1.0,
                                     scenarios=("l4-close-small",), rate=300.0))
    (result,) = _load_report(report)["results"]
    assert result["scenario"]["mode"] == "tcp"
    runs = {r["target"]: r for r in result["runs"]}
    for target in ("virtserve", "direct"):
        r = runs[target]
        assert "error" not in r, r
        assert r["load_mode"] == "open-loop 300/s"
        # open loop: the request count follows the clock, not the server (300/s for 1 s)
        assert 200 <= r["requests"] <= 330, r["requests"]
        assert r["latency_curve_us"][-1][0] == 100.0


@pytest.mark.timeout(30)
def test_pick_cost_hook_reports_the_module_result(tmp_path, monkeypatch):
    import types

    fake = types.ModuleType("virtserve.benchmarks.pick_cost")
    seen = {}

    def run(quick=False):
        seen["quick"] = quick
        return [{"scheduler": "rr", "ns_per_pick": 120.0}]

    fake.run = run
    monkeypatch.setitem(sys.modules, "virtserve.benchmarks.pick_cost", fake)
    report = run_benchmarks(_options(tmp_path, ["direct"], scenarios=("pick-cost",), quick=True))
    assert seen == {"quick": True}
    assert report["pick_cost"] == {"result": [{"scheduler": "rr", "ns_per_pick": 120.0}]}
    assert "| rr | 120 |" in open(report["files"]["markdown"]).read()


@pytest.mark.timeout(90)
def test_scrape_cost_runs_both_arms_against_a_stats_enabled_virtserve(tmp_path):
    report = run_benchmarks(_options(tmp_path, ["direct"], scenarios=("scrape-cost",), runs=1))
    sc = _load_report(report)["scrape_cost"]
    assert "error" not in sc, sc
    arms = [(r["arm"], r.get("scrapes", 0)) for r in sc["runs"]]
    assert [a for a, _ in arms] == ["quiet", "scraped"]
    assert arms[0][1] == 0 and arms[1][1] >= 2  # /metrics answered in the scraped window only
    assert all(r["requests"] > 0 for r in sc["runs"]) and sc["load"]["error_count"] == 0
    assert sc["scrape_ms"]["errors"] == 0 and sc["metrics_bytes"] > 1000
    assert sc["cpu_per_scrape_ms"] > 0 and sc["requests_per_s_change_pct"] is not None
    paired = sc["paired"]["requests_per_s"]
    assert paired["pairs"] == 1 and paired["ci_low_pct"] <= paired["median_pct"] <= paired["ci_high_pct"]
    assert sc["bound"] in ("shown", "not shown", "exceeded") and sc["medians"]["quiet"]["cpu_us_per_req"] > 0
    assert "## Cost of a /metrics scrape every 100 ms" in open(report["files"]["markdown"]).read()


@pytest.mark.timeout(60)
def test_cli_list_and_clear_errors(tmp_path):
    import subprocess

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "virtserve", "bench", *args],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path)

    listed = bench("--list")
    assert listed.returncode == 0
    for name in ("l7-keepalive-small", "l7-close-small", "l7-keepalive-64k", "l4-bulk",
                 "tls-handshake", "l7-keepalive-small-2w", "pick-cost", "scrape-cost"):
        assert name in listed.stdout
    bad = bench("--scenarios", "l7-keepalive-small,nope")
    assert bad.returncode == 2 and "unknown scenario 'nope'" in bad.stderr
    assert "usage: virtserve bench" in bad.stderr


def test_progress_bar_draws_on_a_terminal_only():
    import io

    from virtserve.benchmarks.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(4, stream=stream)
        bar.step("a")
        bar.log("line")
        bar.step("b")
        bar.close()
    assert pipe.getvalue() == "line\n"
    assert "50%" in tty.getvalue() and "\r" in tty.getvalue() and "line\n" in tty.getvalue()


@pytest.mark.timeout(120)
def test_ab_checkout_runs_the_base_revision(tmp_path):
    """benchmarks.ab compares against a git revision laid out as the installed package: a
    `virtserve run` started with it imports that revision's engine, not this checkout's."""
    import shutil
    import subprocess

    from virtserve.benchmarks.ab import REPO, checkout

    if shutil.which("git") is None or subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                                    capture_output=True).returncode != 0:
        pytest.skip("needs git and a git checkout of virtserve")
    path = checkout("HEAD", tmp_path / "base")
    out = subprocess.run([sys.executable, "-c", "import virtserve.engine.l4.relay as r, virtserve.api as a;"
                          "print(r.__file__); print(a.__file__)"],
                         env={**os.environ, "PYTHONPATH": str(path)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert all(f.startswith(str(tmp_path / "base")) for f in out), out


def test_embedded_startup_measures_serve_to_first_answer():
    out = subprocess.run([sys.executable, "-m", "virtserve.benchmarks.embedded_startup"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "serve() to the first answered request, ms:" in out
    median = float(out.rsplit("median after the first:", 1)[1])
    assert median > 0
