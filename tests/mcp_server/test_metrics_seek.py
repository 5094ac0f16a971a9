"""The seek-based first read of a long metrics file gives the same answers as reading it whole.

The threshold is lowered so a file of a few thousand records takes the long-file path; the same
file read whole (threshold left high) is the reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools, metrics_seek, metrics_store

from hotcb.jsonl_write import append_lines
from tests.mcp_server.test_tools_trends import records


@pytest.fixture
def seek_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_store, "SEEK_ABOVE_BYTES", 10_000)
    monkeypatch.setattr(metrics_seek, "TAIL_BUDGET_BYTES", 400_000)
    monkeypatch.setattr(metrics_seek, "BACK_CHUNK_BYTES", 50_000)


def sparse_records(start: int, n: int) -> list[dict]:
    """records() plus an eval metric logged every 25 steps, on its own line after the step."""
    out = []
    for rec in records(start, n):
        out.append(rec)
        if rec["step"] % 25 == 0:
            out.append({"step": rec["step"], "metrics": {"eval_acc": 0.5 + rec["step"] / 1e5}})
    return out


def whole(run: Path) -> HotcbTools:
    tools = HotcbTools(run)
    tools.metrics.refresh()
    assert tools.metrics.tail.offset == (run / "hotcb.metrics.jsonl").stat().st_size
    return tools


def test_recent_reads_match_a_whole_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    append_lines(run / "hotcb.metrics.jsonl", sparse_records(1, 6000))
    ref = whole(run)
    calls = [("read_trends", {}), ("read_trends", {"metrics": ["eval_acc", "val_loss"], "window": 100}),
             ("read_metrics", {"since_step": 5500, "max_points": 5000}), ("get_status", {})]
    expected = [ref.call(name, args) for name, args in calls]
    monkeypatch.setattr(metrics_store, "SEEK_ABOVE_BYTES", 10_000)
    monkeypatch.setattr(metrics_seek, "BACK_CHUNK_BYTES", 50_000)
    monkeypatch.setattr(metrics_seek, "TAIL_BUDGET_BYTES", 600_000)
    seek = HotcbTools(run)
    got = [seek.call(name, args) for name, args in calls]
    assert 0 < seek.metrics.tail.offset and seek.metrics.get("train_loss").steps[0] > 1  # it did not read it all
    assert got == expected
    assert seek.metrics.records == ref.metrics.records


def test_history_spans_the_run_and_appends_are_read_incrementally(tmp_path: Path, seek_small: None) -> None:
    run = tmp_path / "run"
    run.mkdir()
    path = run / "hotcb.metrics.jsonl"
    append_lines(path, records(1, 8000))
    tools = HotcbTools(run)
    hist = tools.call("read_metrics", {"metrics": ["val_loss"], "max_points": 200})["series"]["val_loss"]
    assert hist["steps"][0] < 100 and hist["steps"][-1] == 8000 and 50 <= len(hist["steps"]) <= 200
    assert hist["steps"] == sorted(hist["steps"])
    size = path.stat().st_size
    assert tools.metrics.tail.offset == size
    append_lines(path, records(8001, 10))
    assert tools.metrics.refresh() == 10 and tools.metrics.tail.offset == path.stat().st_size
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [7811, 8010]
    assert tools.metrics.records == 8010 and tools.metrics.last_step == 8010


def test_a_replaced_or_rewritten_file_is_still_detected(tmp_path: Path, seek_small: None) -> None:
    run = tmp_path / "run"
    run.mkdir()
    path = run / "hotcb.metrics.jsonl"
    append_lines(path, records(1, 3000))
    tools = HotcbTools(run)
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [2801, 3000]
    path.unlink()  # a new run in the same directory, long at once: read again, by seek
    append_lines(path, records(10_001, 4000))
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [13_801, 14_000]
    assert tools.metrics.records == 4000
    with open(path, "r+b") as f:  # truncated and rewritten in place, longer than before: same inode
        f.truncate(0)
        f.seek(0)
    append_lines(path, records(50_001, 5000))
    assert os.stat(path).st_size > tools.metrics.tail.offset
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [54_801, 55_000]
    assert tools.metrics.records == 5000
    path.unlink()
    append_lines(path, records(1, 20))  # replaced by a short file: read whole, as before
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [1, 20]
    assert tools.metrics.records == 20


def test_a_partial_last_line_waits(tmp_path: Path, seek_small: None) -> None:
    run = tmp_path / "run"
    run.mkdir()
    path = run / "hotcb.metrics.jsonl"
    append_lines(path, records(1, 3000))
    with open(path, "ab") as f:
        f.write(b'{"step": 3001, "metrics": {"val_')
    tools = HotcbTools(run)
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [2801, 3000]
    with open(path, "ab") as f:
        f.write(b'loss": 0.5}}\n')
    assert tools.metrics.refresh() == 1 and tools.metrics.last_step == 3001
