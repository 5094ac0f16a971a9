"""The metrics collector's lines and its recent points are what they were when each point went
into its ring at its step, whatever a step logs: the points now wait and are folded into the
rings in batches (``hotcb.collector``), and a reader of ``recent`` or ``check`` sees every line
written so far."""

from __future__ import annotations

import json
import math
import random
from collections import deque
from typing import Any

import pytest
import torch

from hotcb.codec import tag
from hotcb.collector import RECENT_POINTS, MetricsCollector, to_number


class OneByOne(MetricsCollector):
    """The collector as it was: each point put in its ring as its line is made."""

    def record(self, step: int, metrics: dict[str, Any], epoch: int | None = None,
               force: bool = False) -> dict[str, Any] | None:
        if not force and step % self.every_n != 0:
            return None
        values: dict[str, float | str] = {}
        for name, value in metrics.items():
            if not (isinstance(name, str) and self._keep(name)):
                continue
            if type(value) is float and value - value == 0.0:
                values[name] = value
                continue
            v = to_number(value)
            if v is not None:
                values[name] = tag(v)
        if not values:
            return None
        rec = {"step": step, "epoch": epoch, "wall_time": 0.0, "metrics": values}
        self._out.append(rec)
        for name, v in values.items():
            ring = self.ring.get(name)
            if ring is None:
                ring = self.ring[name] = deque(maxlen=RECENT_POINTS)
            ring.append((step, v))
        return rec


def _value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice([rng.uniform(-5, 5), 1e308, -1e308, 0.0])
    return rng.choice([3, 0, True, False, math.nan, math.inf, -math.inf, "text", None, torch.tensor(2.5),
                       torch.tensor([1.0, 2.0]), 10**400])


def _step(rng: random.Random, names: list[str]) -> dict[Any, Any]:
    if rng.random() < 0.8:  # the common loop: the same names each step, floats and ints
        return {n: rng.choice([rng.uniform(0, 2), 7, 0.0]) for n in names}
    keys = rng.sample(names + ["other", "val_loss", 5], rng.randint(0, len(names) + 2))
    return {k: _value(rng) for k in keys}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("filters", [{}, {"whitelist": ["*loss*", "opt/*"]}, {"blacklist": ["lr"]}])
def test_lines_and_recent_points_are_the_loops(tmp_path, monkeypatch, seed: int, filters: dict[str, Any]):
    monkeypatch.setattr("hotcb.collector.time.time", lambda: 0.0)
    rng = random.Random(seed)
    names = ["train_loss", "lr", "opt/lr", "opt/weight_decay", "loss/aux_w"]
    new = MetricsCollector(tmp_path / "new.jsonl", **filters)
    old = OneByOne(tmp_path / "old.jsonl", **filters)
    old.ring = {}
    for step in range(1, 1500):
        metrics = _step(rng, names)
        try:
            want = old.record(step, dict(metrics))
        except OverflowError:  # an int too large for a float: the same error either way
            with pytest.raises(OverflowError):
                new.record(step, dict(metrics))
            continue
        got = new.record(step, dict(metrics))
        assert (got is None) == (want is None)
        if got is not None:
            assert json.dumps(got["metrics"]) == json.dumps(want["metrics"])
            assert all(type(a) is type(b) for a, b in zip(got["metrics"].values(), want["metrics"].values(),
                                                          strict=True))
        if rng.random() < 0.01:  # a reader in between: every line so far is in the rings
            assert {k: list(v) for k, v in new.recent.items()} == {k: list(v) for k, v in old.ring.items()}
    new.close()
    old.close()
    assert (tmp_path / "new.jsonl").read_text() == (tmp_path / "old.jsonl").read_text()
    assert {k: list(v) for k, v in new.recent.items()} == {k: list(v) for k, v in old.ring.items()}


def test_check_sees_the_step_just_written(tmp_path):
    c = MetricsCollector(tmp_path / "m.jsonl")
    for step in range(1, 10):
        c.record(step, {"train_loss": 1.0 / step, "opt/weight_decay": 0})
    assert c.check("train_loss", 9, 1.0 / 9) is None
    assert c.check("opt/weight_decay", 9, 0.0) is None
    assert c.check("train_loss", 9, 0.5) is not None
    c.close()
