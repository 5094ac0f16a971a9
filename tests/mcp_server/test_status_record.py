"""The status file in one form (``StatusRecord``) and non-finite numbers in one codec, through the
tools a client calls: what a real kernel writes is read back whole; a hostile status file is
read field by field, never failing ``get_status``; metric lines the readers skip are counted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools

from hotcb.records import RescueStatus, StatusRecord
from tests.support.core_loop import Loop


def _run_with_non_finite_metrics(run_dir: Path) -> None:
    loop = Loop(run_dir)
    try:
        for _ in range(3):
            loop.step()
        weird = {"train_loss": 0.5, "grad_norm": math.inf, "neg_norm": -math.inf, "ratio": math.nan}
        loop.step({"metrics": weird})
    finally:
        loop.close()


def test_get_status_and_read_metrics_agree_on_non_finite_values(tmp_path: Path) -> None:
    _run_with_non_finite_metrics(tmp_path)
    tools = HotcbTools(tmp_path, source="agent", actor="pytest")
    last = tools.call("get_status", {})["last_metrics"]
    series = tools.call("read_metrics", {"metrics": ["grad_norm", "neg_norm", "ratio"]})["series"]
    for name, tagged in (("grad_norm", "inf"), ("neg_norm", "-inf"), ("ratio", "nan")):
        assert last[name] == tagged
        assert series[name]["values"][-1] == tagged
    assert last["train_loss"] == 0.5


def test_a_real_kernels_status_reads_back_whole(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    try:
        loop.run(3)
        written = loop.kernel.status()
    finally:
        loop.close()
    raw = json.loads((tmp_path / "hotcb.status.json").read_text())
    rec = StatusRecord.from_json(raw)
    assert rec.problems == [] and rec.extra == {}
    assert rec.to_json() == raw  # every field, in the kernel's order
    assert list(rec.to_json()) == list(written)
    assert isinstance(rec.rescue, RescueStatus) and rec.rescue.to_json() == raw["rescue"]
    assert rec.closed and rec.step == 3

    status = HotcbTools(tmp_path, source="agent", actor="pytest").get_status()
    assert status.step == 3 and status.liveness == "stopped" and status.status_problems == []
    assert status.rescue == rec.rescue


HOSTILE = [
    ({"step": 1e309, "pid": "x", "paused": "yes", "snapshots": [1, -2, "3", 4.0], "scheduled": "many",
      "rescue": {"enabled": 1, "verdict": ["healthy"], "rescues": 2}, "freeze_mode": 7},
     {"step", "pid", "paused", "snapshots", "scheduled", "rescue.enabled", "rescue.verdict", "freeze_mode"}),
    ({"step": 12, "rescue": "on", "replay": [1], "wall_time": "nan", "world_size": True}, {"rescue", "replay", "wall_time", "world_size"}),
    ([1, 2, 3], {"status"}),
    ("a string", {"status"}),
]


@pytest.mark.parametrize(("doc", "named"), HOSTILE)
def test_a_hostile_status_file_is_read_field_by_field(tmp_path: Path, doc: object, named: set[str]) -> None:
    (tmp_path / "hotcb.status.json").write_text(json.dumps(doc).replace("Infinity", "1e309"))
    tools = HotcbTools(tmp_path, source="agent", actor="pytest")
    out = tools.call("get_status", {})  # never a validation error
    problems = out["status_problems"]
    assert {p.split(":")[0] for p in problems} == named
    rec = StatusRecord.from_json(doc)
    if isinstance(doc, dict) and "snapshots" in doc:
        assert out["snapshots"] == [1, 4] and rec.snapshots == [1, 4]
        assert out["rescue"]["rescues"] == 2 and out["rescue"]["verdict"] is None
    if isinstance(doc, dict) and doc.get("step") == 12:
        assert out["step"] == 12 and out["rescue"] is None and rec.world_size == 1
    assert out["liveness"] in ("absent", "dead")
    tools.call("describe_actuators", {})  # the other readers of the status answer too
    tools.call("replay", {"action": "status"})
    tools.call("read_trends", {})


def test_metric_lines_the_readers_skip_are_counted_in_get_status(tmp_path: Path) -> None:
    lines = [json.dumps({"step": s, "metrics": {"loss": 1.0 / s}}) for s in range(1, 6)]
    lines += ['{"step": 1e309, "metrics": {"loss": 0.5}}', '{"step": -3, "metrics": {"loss": 0.5}}', "not json"]
    (tmp_path / "hotcb.metrics.jsonl").write_text("\n".join(lines) + "\n")
    tools = HotcbTools(tmp_path, source="agent", actor="pytest")
    out = tools.get_status()
    assert out.metrics_dropped_lines == 3 and out.last_metrics == {"loss": 0.2}
