"""The metrics store's points are bounded across names (``point_budget``): a run logging tens of
thousands of names keeps the server's memory bounded, the names past the bound are counted and
said to be, and a normal run is answered exactly as with the full caps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools, metrics_seek, metrics_store
from hotcb.mcp_server.metrics_cursor import START
from hotcb.mcp_server.metrics_store import MetricsStore
from hotcb.mcp_server.point_budget import TOTAL_POINTS, Caps, PointBudget
from hotcb.mcp_server.tools_observe import MAX_SERIES, MetricsInput


def held(store: MetricsStore) -> int:
    return sum(len(s.steps) + len(s.h_steps) for s in store.series.values())


def write(path: Path, lines: list[dict], mode: str = "w") -> None:
    with open(path, mode) as f:
        f.writelines(json.dumps(rec) + "\n" for rec in lines)


def rotating(first: int, last: int, names: int, per_line: int, shift: int) -> list[dict]:
    """Steps ``first..last``; step i logs train_loss and ``per_line`` of ``names`` sample names,
    starting ``shift`` names further than the step before (wrapping)."""
    out = []
    for step in range(first, last + 1):
        start = (step - 1) * shift
        metrics = {"train_loss": 1.0 / step}
        metrics.update({f"s{(start + j) % names}": j / 8 for j in range(per_line)})
        out.append({"step": step, "metrics": metrics})
    return out


def test_the_caps_halve_together_down_to_a_floor() -> None:
    budget = PointBudget(5000, 2000)
    assert budget.caps(1) == budget.caps(TOTAL_POINTS // 12_000) == Caps(5000, 2000)  # 333 names in full
    assert budget.caps(TOTAL_POINTS // 12_000 + 1) == Caps(2500, 1000)
    assert budget.caps(budget.max_names) == budget.floor == Caps(32, 16)
    for names in (1, 400, 1000, 5000, 20_000, budget.max_names):
        assert names * budget.caps(names).points <= TOTAL_POINTS


def test_held_points_stay_in_the_budget_while_the_run_grows(tmp_path: Path) -> None:
    path = tmp_path / "hotcb.metrics.jsonl"
    path.touch()
    store = MetricsStore(path, total_points=100_000)
    for first in range(1, 201, 20):  # 1,000 names every step, read as a live run appends them
        write(path, rotating(first, first + 19, names=1000, per_line=1000, shift=0), mode="a")
        store.refresh()
        assert held(store) <= 100_000
    assert len(store.series) == 1001 and store.names_total() == 1001 and store.caps == Caps(39, 16)
    steps, values = store.get("s500").window(last_n=39)  # a held name still answers, exactly
    assert steps == [float(s) for s in range(162, 201)] and values == [500 / 8] * 39
    steps, _ = store.get("train_loss").downsampled(50)
    assert steps[0] == 1.0 and steps[-1] == 200.0  # the history still spans the run


def test_tens_of_thousands_of_names_are_bounded_and_counted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write(run / "hotcb.metrics.jsonl", rotating(1, 300, names=60_000, per_line=400, shift=200))
    tools = HotcbTools(run, source="agent", actor="pytest")
    out = tools.read_metrics(MetricsInput())
    store = tools.metrics
    limit = store.budget.max_names
    assert limit == TOTAL_POINTS // 80 == 50_000 and store.caps == Caps(32, 16)
    # train_loss, then s0, s1, ... in the order first logged: s49998 is the last one held
    assert len(store.series) == limit and "s49998" in store.series and "s49999" not in store.series
    assert store.names_total() == 60_001 and len(store.unheld) == 10_001 and store.unheld.exact
    assert held(store) <= limit * store.caps.points <= TOTAL_POINTS

    assert len(out.series) == MAX_SERIES and out.series_total == 60_001 and "10001 more names are counted" in out.metrics_bound
    loss = tools.read_metrics(MetricsInput(metrics=["train_loss"], last=32)).series["train_loss"]
    assert loss.steps == [float(s) for s in range(269, 301)] and loss.values == [1.0 / s for s in range(269, 301)]
    whole = tools.read_metrics(MetricsInput(metrics=["train_loss"], max_points=200)).series["train_loss"]
    assert whole.steps[0] == 1.0 and whole.steps[-1] == 300.0
    asked = tools.read_metrics(MetricsInput(metrics=["s59999", "s7", "nope"]))
    assert list(asked.series) == ["s7"] and asked.series_total == 2  # s59999 is counted, not held

    status = tools.get_status()
    assert status.metrics_total == 60_001 and "not held" in status.metrics_bound
    assert status.metrics[0] == "train_loss"
    # the file still has every name: a cursor read gives one the store left out
    found = tools.read_metrics(MetricsInput(since_cursor=START.token(), metrics=["s59999"], max_points=5000))
    assert found.series["s59999"].steps == [299.0, 300.0]


def test_a_seek_read_of_many_names_stays_in_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_store, "SEEK_ABOVE_BYTES", 10_000)
    monkeypatch.setattr(metrics_seek, "BACK_CHUNK_BYTES", 50_000)
    monkeypatch.setattr(metrics_seek, "TAIL_BUDGET_BYTES", 100_000)
    path = tmp_path / "hotcb.metrics.jsonl"
    write(path, rotating(1, 600, names=500, per_line=50, shift=25))  # 501 names: 250 fit 20,000 points
    store = MetricsStore(path, total_points=20_000)
    store.refresh()
    assert store.exact_from > 0 and held(store) <= 20_000  # it did seek
    assert len(store.series) == 250 and store.caps == store.budget.floor
    store.extend(["train_loss"], points=5000)
    assert held(store) <= 20_000
    steps, _ = store.get("train_loss").window(last_n=store.caps.recent)
    assert steps == [float(s) for s in range(601 - store.caps.recent, 601)]
    write(path, rotating(601, 700, names=500, per_line=50, shift=25), mode="a")
    store.refresh()
    assert held(store) <= 20_000 and store.last_step == 700


def test_a_small_long_run_is_answered_as_with_the_full_caps(tmp_path: Path) -> None:
    """5 names, 30,000 steps: the answers the full caps (5,000 recent, trimmed at 10,000; 2,000
    history, the stride doubling) give, worked out here from those caps."""
    run = tmp_path / "run"
    run.mkdir()
    names = [f"m{k}" for k in range(5)]
    write(run / "hotcb.metrics.jsonl",
          [{"step": s, "metrics": {n: s + k / 10 for k, n in enumerate(names)}} for s in range(1, 30_001)])
    tools = HotcbTools(run, source="agent", actor="pytest")

    last = tools.read_metrics(MetricsInput(last=5000)).series
    assert sorted(last) == names and last["m3"].steps == [float(s) for s in range(25_001, 30_001)]
    assert last["m3"].values == [s + 0.3 for s in range(25_001, 30_001)]
    since = tools.read_metrics(MetricsInput(since_step=21_000, max_points=5000)).series["m1"]
    assert since.steps == [float(s) for s in range(21_000, 30_001, 2)]  # 9,001 points thinned by 2

    # recent: trimmed to 5,000 at 10,001 points, then every 5,001 points: the last trim (at
    # 25,004) leaves steps 20,005..30,000. History: 30,000 points overfill 2,000 at stride 8, so
    # every 16th from the first (1,875 points); the merge takes those before the recent ones.
    recent = list(range(20_005, 30_001))
    merged = [float(s) for s in range(1, 20_005, 16)] + [float(s) for s in recent]
    k = math.ceil(len(merged) / 200)
    expected = merged[::k] + [merged[-1]]
    whole = tools.read_metrics(MetricsInput(max_points=200)).series["m0"]
    assert whole.steps == expected and whole.values == expected


def test_a_small_run_says_no_bound(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write(run / "hotcb.metrics.jsonl", [{"step": s, "metrics": {f"m{k}": 1.0 for k in range(300)}} for s in (1, 2)])
    tools = HotcbTools(run, source="agent", actor="pytest")
    assert tools.read_metrics(MetricsInput()).metrics_bound is None
    status = tools.get_status()
    assert status.metrics_bound is None and status.metrics_total == 300
    assert tools.metrics.caps == tools.metrics.budget.full
