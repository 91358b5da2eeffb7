"""Worker scaling in the benchmark report: N workers against the one-worker twins run in the
same interleaved rounds, else against the 1-worker scenario."""
from virtserve.benchmarks.scenarios import ONE_WORKER, _with_one_worker_twins, SCENARIOS, scaling


def _result(name, workers, summary):
    return {"scenario": {"name": name, "workers": workers}, "summary": summary}


def _s(rps, rpc):
    return {"requests_per_s": rps, "req_per_cpu_s": rpc}


def test_n_worker_scenarios_run_one_worker_twins_of_each_proxy_but_not_of_direct():
    two = SCENARIOS["l7-keepalive-small-2w"]
    assert _with_one_worker_twins(["virtserve", "haproxy", "direct"], two) == [
        "virtserve", "haproxy", "direct", "virtserve" + ONE_WORKER, "haproxy" + ONE_WORKER]
    assert _with_one_worker_twins(["virtserve"], SCENARIOS["l7-keepalive-small"]) == ["virtserve"]


def test_scaling_prefers_the_twins_of_the_same_rounds_over_the_scenario_run_earlier():
    results = [
        _result("l7-close-small", 1, {"virtserve": _s(1000, 10_000)}),  # drifted: not used
        _result("l7-close-small-2w", 2, {"virtserve": _s(1800, 9000),
                                         "virtserve" + ONE_WORKER: _s(1000, 10_000)}),
    ]
    out = scaling(results)["l7-close-small-2w"]
    assert out["base"] == "1 worker, same rounds"
    assert out["targets"] == {"virtserve": {"requests_per_s": 1.8, "req_per_cpu_s": 0.9}}


def test_scaling_falls_back_to_the_one_worker_scenario():
    results = [_result("l7-keepalive-small", 1, {"haproxy": _s(500, 4000)}),
               _result("l7-keepalive-small-2w", 2, {"haproxy": _s(750, 4000)})]
    out = scaling(results)["l7-keepalive-small-2w"]
    assert out["base"] == "l7-keepalive-small"
    assert out["targets"]["haproxy"] == {"requests_per_s": 1.5, "req_per_cpu_s": 1.0}
    assert scaling([_result("l7-keepalive-small-2w", 2, {"haproxy": _s(750, 4000)})]) == {}
