"""The metric line written by hand (``hotcb.metric_line``) is, byte for byte, the line ``json``
writes for the same record, line after line (each name's last text is reused), and anything it
does not format itself goes to ``json`` (the same line, or the same error)."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest

from hotcb import metric_line
from hotcb.codec import tag
from hotcb.metric_line import LINE_ENCODER, MetricLineEncoder

NAMES = ["train_loss", "lr", "opt/lr", "loss/aux_w", "val acc", 'quote"d', "back\\slash", "tab\tnew\nline",
         "ünï©ødé", "emoji 🙂", "\x00\x1f\x7f", "", "0", "null"]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e16, 1e-5, 1e-7, 123456789.0, 5e-324, -5e-324, 1.7976931348623157e308, 0.1]


def _float(rng: random.Random, last: float) -> float:
    pick = rng.random()
    if pick < 0.35:  # the previous line's value again (a knob's echo), or the other zero
        return -last if last == 0.0 and rng.random() < 0.5 else last
    if pick < 0.55:
        return rng.uniform(-10, 10)
    if pick < 0.7:  # any bit pattern: subnormals, huge, tiny, -0.0 and non-finite ones
        return struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
    if pick < 0.85:
        return rng.choice(SPECIAL)
    return rng.uniform(0, 1) * 10 ** rng.randint(-30, 30)


def test_the_line_is_the_json_line_byte_for_byte() -> None:
    rng = random.Random(0)
    enc = MetricLineEncoder()
    last: dict[str, float] = dict.fromkeys(NAMES, 0.0)
    for _ in range(30000):
        metrics = {}
        for name in rng.sample(NAMES, rng.randint(1, len(NAMES))):
            x = _float(rng, last[name])
            last[name] = x if math.isfinite(x) else last[name]
            metrics[name] = tag(x)  # as the collector writes it: non-finite values as their tags
        rec = {"step": rng.choice([0, 1, rng.randint(0, 10**12), -5]), "epoch": rng.choice([None, 0, 3, 10**20]),
               "wall_time": rng.uniform(1.6e9, 1.9e9), "metrics": metrics}
        assert enc.encode(rec) == LINE_ENCODER.encode(rec)


def test_a_zero_after_the_other_zero() -> None:
    enc = MetricLineEncoder()
    for x in (0.0, -0.0, -0.0, 0.0, 1.0, 1.0, -0.0):
        rec = {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"w": x}}
        assert enc.encode(rec) == LINE_ENCODER.encode(rec)


@pytest.mark.parametrize("rec", [
    {"step": True, "epoch": None, "wall_time": 1.0, "metrics": {"a": 1.0}},  # a bool step
    {"step": 1, "epoch": 1.5, "wall_time": 1.0, "metrics": {"a": 1.0}},  # a float epoch
    {"step": 1, "epoch": None, "wall_time": 1, "metrics": {"a": 1.0}},  # an int wall time
    {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"a": 2}},  # an int value
    {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"a": None}},
    {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {1: 1.0}},  # a key json turns into a string
    {"epoch": None, "step": 1, "wall_time": 1.0, "metrics": {"a": 1.0}},  # another field order
    {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"a": 1.0}, "more": 1},
    {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": []},
    [1, 2.5, "x"],
])
def test_other_records_go_to_json(rec: Any) -> None:
    assert MetricLineEncoder().encode(rec) == LINE_ENCODER.encode(rec)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_float_raises_as_json_does(bad: float) -> None:
    enc = MetricLineEncoder()
    enc.encode({"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"a": 1.0}})
    for rec in ({"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {"a": bad}},
                {"step": 1, "epoch": None, "wall_time": bad, "metrics": {"a": 1.0}}):
        with pytest.raises(ValueError):
            LINE_ENCODER.encode(rec)
        with pytest.raises(ValueError):
            enc.encode(rec)


def test_names_past_the_cache_go_to_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metric_line, "MAX_NAMES_CACHED", 2)
    enc = MetricLineEncoder()
    rec = {"step": 1, "epoch": None, "wall_time": 1.0, "metrics": {f"m{i}": float(i) for i in range(5)}}
    assert enc.encode(rec) == LINE_ENCODER.encode(rec)
    assert enc.encode(rec) == LINE_ENCODER.encode(rec)
    assert len(enc._names) == 2
