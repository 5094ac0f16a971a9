"""The typed records keep the run files' formats: lines written before them read back, and what
they write is byte for byte what was written before (non-finite values as their tags)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hotcb.actuators.actuator import ActuatorType, HotcbActuator
from hotcb.collector import MetricsCollector
from hotcb.jsonl import read_all
from hotcb.jsonl_write import dumps
from hotcb.ledger import Ledger
from hotcb.records import KnobSpec, LedgerRecord, MetricRecord, StatusRecord

OLD_METRIC_LINE = '{"step":7,"epoch":0,"wall_time":1700000000.5,"metrics":{"loss":"nan","acc":0.5,"lr":"inf"}}'
OLD_LEDGER_LINE = ('{"seq":3,"cmd_id":"c3","step":40,"epoch":null,"event":null,"module":"opt","op":"set_params",'
                   '"id":null,"source":"agent","actor":"a","reason":"r","decision":"applied","params":{"lr":0.001},'
                   '"payload":{"lr":{"old":0.01,"new":0.001}},"error":null,"wall_time":1700000001.0,"rescue":{"level":2}}')


def test_an_old_metric_line_reads_back_and_writes_the_same_bytes() -> None:
    rec = MetricRecord.from_json(json.loads(OLD_METRIC_LINE))
    assert rec is not None and rec.step == 7 and rec.epoch == 0 and rec.wall_time == 1700000000.5
    assert math.isnan(rec.metrics["loss"]) and rec.metrics["lr"] == math.inf and rec.metrics["acc"] == 0.5
    assert dumps(rec.to_json()) == OLD_METRIC_LINE
    assert MetricRecord.from_json({"step": True, "metrics": {}}) is None  # not a record: skipped by readers
    assert MetricRecord.from_json({"step": 1, "metrics": {"x": "text", "y": 2}}).metrics == {"y": 2.0}


def test_the_collector_writes_metric_records(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    MetricsCollector(path).record(3, {"loss": float("-inf"), "n": 4, "skip": "text"}, epoch=1)
    (line,) = read_all(path)
    assert list(line) == ["step", "epoch", "wall_time", "metrics"]
    assert line["metrics"] == {"loss": "-inf", "n": 4.0}
    assert MetricRecord.from_json(line).metrics["loss"] == -math.inf


def test_a_ledger_entry_round_trips_with_its_extra_keys(tmp_path: Path) -> None:
    rec = LedgerRecord.from_json(json.loads(OLD_LEDGER_LINE))
    assert rec is not None and rec.extra == {"rescue": {"level": 2}}
    assert rec.knob_changes() == {"lr": (0.01, 0.001)}
    assert dumps(rec.to_json()) == OLD_LEDGER_LINE
    for module in ("cb", "core", "tune"):  # their set_params are not knob changes
        assert LedgerRecord(decision="applied", op="set_params", module=module, payload={"x": {"new": 1}}).knob_changes() == {}
    ledger = Ledger(tmp_path / "l.jsonl")
    ledger.record(cmd_id="c1", module="opt", op="set_params", decision="applied", extra={"note": 1})
    (written,) = read_all(tmp_path / "l.jsonl")
    assert list(written) == list(json.loads(OLD_LEDGER_LINE))[:-1] + ["note"]  # the key order of old files


def test_a_knob_describes_itself_as_a_knob_spec() -> None:
    a = HotcbActuator(group="opt", param_key="batch", type=ActuatorType.INT, min=1, max=64, value=8)
    spec = a.spec()
    assert isinstance(spec, KnobSpec) and spec.type == "int" and spec.value == 8
    assert a.describe() == spec.to_json() and list(a.describe())[:3] == ["key", "module", "type"]
    assert KnobSpec.from_json(a.describe()) == spec


def test_a_status_from_an_older_or_newer_writer_reads_back_without_loss() -> None:
    older = {"pid": 12, "step": 40, "paused": False, "snapshots": [10, 20]}  # fewer keys: defaults, no problem
    rec = StatusRecord.from_json(older)
    assert rec.problems == [] and rec.step == 40 and rec.snapshots == [10, 20] and rec.rescue is None
    assert rec.world_size == 1 and rec.run_verdict is None
    newer = {**rec.to_json(), "gpu": {"mem": 3}, "rescue": {"enabled": True, "verdict": "diverging", "level": "inf"}}
    rec = StatusRecord.from_json(newer)
    assert rec.extra == {"gpu": {"mem": 3}} and rec.to_json()["gpu"] == {"mem": 3}  # an unknown key travels on
    assert rec.rescue is not None and rec.rescue.verdict == "diverging" and rec.rescue.level is None
    assert rec.problems == ["rescue.level: not a finite number: 'inf'"]
    assert rec.run_verdict == "diverging"
    assert StatusRecord.from_json({**newer, "world_size": 2}).run_verdict is None  # a distributed run: no verdict
