"""``read_metrics``' record cursor: each point exactly once, whatever happens to the file.

A real trainer writes while a reader follows the cursor; files are cut, replaced and left with a
half-written line by hand, as a crashed or restarted writer leaves them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hotcb.mcp_server import HotcbTools, metrics_seek, metrics_store

from hotcb.collector import MetricsCollector
from hotcb.jsonl_write import append_lines
from tests.mcp_server.test_tools_trends import records
from tests.support.proc import Trainer, read_jsonl

METRICS = "hotcb.metrics.jsonl"


def follow(tools: HotcbTools, cursor: str, got: dict[str, list[float]], **args: Any) -> dict[str, Any]:
    """One cursor read, its points appended to ``got`` (steps by metric)."""
    out = tools.call("read_metrics", {"since_cursor": cursor, **args})
    for name, s in out["series"].items():
        got.setdefault(name, []).extend(s["steps"])
    return out


def test_points_logged_by_a_live_trainer_arrive_exactly_once(tmp_path: Path) -> None:
    trainer = Trainer(tmp_path / "run", steps=400, sleep=0.002)
    try:
        tools = HotcbTools(trainer.run_dir)
        trainer.wait_step(5)  # mid-run: the first read finds records, later ones find more
        out = tools.call("read_metrics", {"max_points": 5000})
        got = {name: list(s["steps"]) for name, s in out["series"].items()}
        cursor, reads = out["cursor"], 0
        while trainer.alive() or reads == 0:
            out = follow(tools, cursor, got, max_points=7)  # small batches: many reads mid-write
            assert not out["reset"]
            cursor, reads = out["cursor"], reads + 1
        out = follow(tools, cursor, got, max_points=5000)  # what the last steps wrote
        while out["more"]:
            out = follow(tools, out["cursor"], got, max_points=5000)
    finally:
        trainer.stop()
    assert reads > 3
    want: dict[str, list[float]] = {}
    for rec in read_jsonl(trainer.run_dir / METRICS):
        for name in rec["metrics"]:
            want.setdefault(name, []).append(float(rec["step"]))
    assert got == want  # every point, in file order: no gap, no duplicate
    assert out["records"] == len(read_jsonl(trainer.run_dir / METRICS))
    again = tools.call("read_metrics", {"since_cursor": out["cursor"]})
    assert again["series"] == {} and again["cursor"] == out["cursor"] and not again["more"]


def test_a_half_written_line_waits_until_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    col = MetricsCollector(path)
    col.record(1, {"loss": 1.0})
    tools = HotcbTools(tmp_path)
    first = tools.call("read_metrics", {})
    assert first["series"]["loss"]["steps"] == [1.0]
    with open(path, "ab") as f:
        f.write(b'{"step":2,"epoch":null,"wall_time":1.0,"metrics":{"loss":')  # the writer is mid-line
    half = tools.call("read_metrics", {"since_cursor": first["cursor"]})
    assert half["series"] == {} and half["cursor"] == first["cursor"]
    with open(path, "ab") as f:
        f.write(b'"nan"}}\n')
    whole = tools.call("read_metrics", {"since_cursor": half["cursor"]})
    assert whole["series"] == {"loss": {"steps": [2.0], "values": ["nan"]}}
    assert whole["records"] == 2 and not whole["reset"]


@pytest.mark.parametrize("how", ["truncated", "replaced", "removed"])
def test_a_truncated_or_replaced_file_resets_cleanly(tmp_path: Path, how: str) -> None:
    path = tmp_path / METRICS
    append_lines(path, records(1, 50))
    tools = HotcbTools(tmp_path)
    cursor = tools.call("read_metrics", {})["cursor"]
    if how == "truncated":  # cut and rewritten past the old offset: same inode, bigger file
        with open(path, "r+b") as f:
            f.truncate(0)
        append_lines(path, records(1000, 80))
    elif how == "replaced":  # a new run's file renamed over the old one
        append_lines(tmp_path / "new.jsonl", records(2000, 3))
        os.replace(tmp_path / "new.jsonl", path)
    else:
        path.unlink()
    out = tools.call("read_metrics", {"since_cursor": cursor, "metrics": ["train_loss"]})
    assert out["reset"]
    expected = {"truncated": list(range(1000, 1080)), "replaced": [2000, 2001, 2002], "removed": []}[how]
    assert out["series"].get("train_loss", {"steps": []})["steps"] == [float(s) for s in expected]
    assert out["records"] == len(expected)
    append_lines(path, records(5000, 2))  # after the reset the cursor follows the new file
    nxt = tools.call("read_metrics", {"since_cursor": out["cursor"], "metrics": ["train_loss"]})
    assert not nxt["reset"] and nxt["series"]["train_loss"]["steps"] == [5000.0, 5001.0]


def test_the_cursor_of_a_long_file_read_by_seek_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_store, "SEEK_ABOVE_BYTES", 10_000)
    monkeypatch.setattr(metrics_seek, "TAIL_BUDGET_BYTES", 400_000)
    monkeypatch.setattr(metrics_seek, "BACK_CHUNK_BYTES", 50_000)
    path = tmp_path / METRICS
    append_lines(path, records(1, 6000))
    tools = HotcbTools(tmp_path)
    snap = tools.call("read_metrics", {"last": 10, "metrics": ["val_loss"]})
    assert tools.metrics.exact_from > 0  # the long-file path: the head was never read whole
    assert snap["series"]["val_loss"]["steps"] == [float(s) for s in range(5991, 6001)]
    assert snap["records"] == 6000
    append_lines(path, records(6001, 25))
    got: dict[str, list[float]] = {}
    out = follow(tools, snap["cursor"], got, metrics=["val_loss"], max_points=10)
    while out["more"]:
        out = follow(tools, out["cursor"], got, metrics=["val_loss"], max_points=10)
    assert got == {"val_loss": [float(s) for s in range(6001, 6026)]} and out["records"] == 6025


def test_a_bad_cursor_or_two_windows_are_refused(tmp_path: Path) -> None:
    from hotcb.mcp_server.registry import ToolError

    tools = HotcbTools(tmp_path)
    with pytest.raises(ToolError, match="since_cursor"):
        tools.call("read_metrics", {"since_cursor": "../../etc/passwd"})
    with pytest.raises(ToolError, match="at most one of"):
        tools.call("read_metrics", {"since_step": 3, "last": 5})
    assert tools.call("read_metrics", {})["series"] == {}
