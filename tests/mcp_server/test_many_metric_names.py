"""A run that logs thousands of metric names (a per-sample metric, careless or hostile): the
readers' replies carry a bounded number of series, the losses and accuracies first, say how many
names there are, and find any one by a substring."""

from __future__ import annotations

import json
from pathlib import Path

from hotcb.mcp_server import HotcbTools
from hotcb.mcp_server.tools_observe import MAX_SERIES, MetricsInput

from tests.dashboard.test_dashboard_proc import ServeProcess

NAMES = 5000


def write_run(run: Path, names: int = NAMES, steps: int = 3) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "hotcb.metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            metrics = {f"sample_{i:05d}": i / step for i in range(names)}
            metrics.update({"train_loss": 1.0 / step, "val_acc": 0.5, "zz_loss": 2.0 / step})
            f.write(json.dumps({"step": step, "metrics": metrics}) + "\n")


def test_read_metrics_and_get_status_are_bounded_in_names(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    tools = HotcbTools(tmp_path / "run", source="agent", actor="pytest")
    total = NAMES + 3
    out = tools.read_metrics(MetricsInput())
    assert len(out.series) == MAX_SERIES and out.series_total == total
    assert list(out.series)[:3] == ["train_loss", "zz_loss", "val_acc"]  # losses, then accuracies, then by name
    found = tools.read_metrics(MetricsInput(match="SAMPLE_0432"))  # case-insensitive substring
    assert sorted(found.series) == [f"sample_0432{d}" for d in range(10)] and found.series_total == 10
    every = tools.read_metrics(MetricsInput(metrics=[]))  # an empty list asks for every name, as before
    assert every.series_total == total and len(every.series) == MAX_SERIES
    assert len(found.series["sample_04321"].steps) == 3
    after = tools.read_metrics(MetricsInput(since_cursor=out.cursor))
    assert after.series == {}
    start = tools.read_metrics(MetricsInput(last=2, max_series=5))
    assert len(start.series) == 5 and start.series_total == total
    status = tools.get_status()
    assert len(status.metrics) == MAX_SERIES and len(status.last_metrics) == MAX_SERIES
    assert status.metrics_total == total and status.metrics[0] == "train_loss"


def test_a_cursor_read_of_many_names_is_bounded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, steps=1)
    tools = HotcbTools(run, source="agent", actor="pytest")
    first = tools.read_metrics(MetricsInput(max_points=2))
    write_run(run, steps=2)  # rewritten: the cursor reads it again from the start
    later = tools.read_metrics(MetricsInput(since_cursor=first.cursor, max_points=100))
    assert len(later.series) <= MAX_SERIES and later.series_total == NAMES + 3
    picked = tools.read_metrics(MetricsInput(since_cursor=first.cursor, match="sample_00007"))
    assert list(picked.series) == ["sample_00007"]


def test_the_dashboard_snapshot_is_bounded(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    with ServeProcess(tmp_path / "run") as srv:
        reply = srv.post("/api/tools/read_metrics", {"max_points": 10})
        assert reply.status_code == 200
        data = reply.json()
        assert len(data["series"]) == MAX_SERIES and data["series_total"] == NAMES + 3
        assert len(reply.content) < 200_000
