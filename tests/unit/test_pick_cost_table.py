"""The pick-cost table the harness prints (`python -m benchmarks -s pick-cost`) comes from the
real schedulers: one row per algorithm asked for, a cost per size."""
from virtserve.benchmarks import pick_cost


def test_rows_time_the_real_schedulers_and_the_forced_scan():
    table = dict(pick_cost.rows([10, 100], picks=50, repeats=1, only="rr,wlc,wlc/scan"))
    assert set(table) == {"rr", "wlc", "wlc/scan"}
    assert all(len(cells) == 2 and all(ns > 0 for ns in cells) for cells in table.values())


def test_run_gives_the_harness_a_markdown_table(monkeypatch):
    monkeypatch.setattr(pick_cost, "rows", lambda sizes, picks, repeats: iter([("rr", [500.0, None, 700.0])]))
    out = pick_cost.run(quick=True)
    assert out["rows"] == [{"algorithm": "rr", "ns": [500.0, None, 700.0]}]
    assert "| rr | 500 | n/a | 700 |" in out["markdown"]
