"""Quiet steps (hotcb/quiet.py): the rescue batches the losses of steps on which nothing but its
detector's update can happen. The promise is that nothing changes: the detector's band holds
for any points inside it, and a rescue with quiet stretches decides everything at the same step,
with the same numbers, as one that updates its detector at every step."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.divergence import DetectorConfig, LossDetector, Verdict
from hotcb.jsonl import read_all
from hotcb.quiet import QUIET_POINTS
from hotcb.rescue import Rescue, rescue_of

CONFIGS = [DetectorConfig(), DetectorConfig(classes=10), DetectorConfig(baseline=1.0),
           DetectorConfig(classes=2), DetectorConfig(alpha=0.2, warmup=5)]


def series(rng: random.Random, n: int) -> list[float]:
    """A loss with regimes: noisy descent, plateaus, a slow climb, spikes, blow-ups, non-finite points."""
    out, level = [], rng.uniform(0.05, 5.0)
    while len(out) < n:
        kind = rng.choices(["descend", "plateau", "climb", "spike", "blowup", "nan", "noisy", "drop"],
                           weights=[4, 4, 1, 1, 1, 1, 4, 1])[0]
        noise = rng.choice([0.01, 0.1, 0.3, 0.8])
        for _ in range(rng.randint(3, 120)):
            if kind == "descend":
                level *= rng.uniform(0.97, 1.0)
            elif kind == "climb":
                level *= rng.uniform(1.0, 1.06)
            elif kind == "drop":
                level *= 0.8
            v = level * max(0.0, 1 + noise * rng.gauss(0, 1))
            if kind == "spike" and rng.random() < 0.3:
                v = level * rng.uniform(2, 20)
            elif kind == "blowup":
                v = level * rng.uniform(5, 50)
            elif kind == "nan" and rng.random() < 0.2:
                v = rng.choice([math.nan, math.inf])
            elif kind == "noisy":
                v = level * rng.expovariate(1.0)  # a skewed minibatch loss
            out.append(v)
    return out[:n]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"classes{c.classes}-baseline{c.baseline}-alpha{c.alpha}")
def test_every_point_inside_a_quiet_band_is_judged_healthy_and_batched_exactly(config):
    rng = random.Random(hash(config) & 0xFFFF)
    bands = 0
    for _ in range(20):
        det = LossDetector(config)
        for i, x in enumerate(series(rng, 400)):
            det.update(x)
            if i % 7 == 3:
                det.probation = rng.random() < 0.1  # the rescue's flag after a rollback
            band = det.quiet_band(QUIET_POINTS)
            if band is None:
                continue
            bands += 1
            lo, hi = band
            assert 0 <= lo <= hi
            # The band's extremes and random points inside it, in every order the test tries.
            for points in ([lo] * QUIET_POINTS, [hi] * QUIET_POINTS, [lo, hi] * (QUIET_POINTS // 2),
                           [hi] * (QUIET_POINTS // 2) + [lo] * (QUIET_POINTS // 2),
                           [lo] * (QUIET_POINTS // 2) + [hi] * (QUIET_POINTS // 2),
                           [rng.uniform(lo, hi) for _ in range(QUIET_POINTS)]):
                probe, batch = det.copy(), det.copy()
                for p in points:
                    assert probe.update(p) is Verdict.HEALTHY, (config, det.__dict__, band, points)
                batch.update_quiet(points)  # the rescue's batch: the same detector, field for field
                assert batch.__dict__ == probe.__dict__, (config, det.__dict__, band, points)
    assert bands > 100  # the bands were tested, not skipped


class SeriesLoop:
    """A real kernel whose rescue watches a given loss series (the model is only there to be
    snapshotted and restored); ``quiet=False`` turns quiet stretches off for this kernel."""

    def __init__(self, run_dir, losses: list[float], quiet: bool, max_steps: int | None, classes: int | None,
                 warmup_lr: bool):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 2)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.sched = (torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: min(1.0, (e + 1) / 30))
                      if warmup_lr else None)
        self.weights = {"aux_w": 1.0}
        state = mutable_state(optimizer_actuators(self.opt, scheduler=self.sched) + loss_actuators(self.weights))
        self.kernel = HotKernel(run_dir, mutable_state=state, max_steps=max_steps, status_interval_s=3600)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        self.rescue = rescue_of(self.kernel)
        self.rescue.configure(enabled=True, classes=classes)
        if not quiet:
            self.rescue._open_quiet = lambda step: None  # every step a full one
        self.losses = losses

    def step(self, i: int) -> None:
        if self.sched is not None:
            self.sched.step()
        self.kernel.apply(env={"step": i, "optimizer": self.opt, "scheduler": self.sched,
                               "metrics": {"train_loss": self.losses[i - 1], "lr": self.opt.param_groups[0]["lr"]}})

    def seen(self) -> tuple:
        """What the rescue and the kernel hold after a step, without reading the detector."""
        r = self.rescue
        return ([(s.step, s.healthy) for s in self.kernel.snapshots.snapshots], r.rescues, r.last_snapshot_step,
                r.last_action, r.probe.state, r.descent.state, r.descent.tested, self.opt.param_groups[0]["lr"])


def decisions(run_dir) -> list[dict]:
    keep = ("step", "module", "op", "decision", "params", "payload", "reason", "source", "actor")
    return [{k: e.get(k) for k in keep} for e in read_all(run_dir / "hotcb.applied.jsonl")]


def alerts(run_dir) -> list[dict]:
    path = run_dir / "hotcb.alerts.jsonl"
    return [{k: e.get(k) for k in ("step", "kind", "message")} for e in read_all(path)] if path.exists() else []


@pytest.mark.filterwarnings("ignore:Detected call of")  # the series loop steps no optimizer
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 6, 7, 8])
def test_a_rescue_with_quiet_steps_decides_as_one_without(tmp_path, seed):
    rng = random.Random(seed)
    n = 700
    losses = series(rng, n) if seed % 3 else [2.0 * 0.999 ** i * rng.expovariate(1.0) + 0.1 for i in range(n)]
    kw = {"max_steps": n + 1 if seed % 2 == 0 else None, "classes": 10 if seed == 1 else None,
          "warmup_lr": seed in (2, 3)}
    a = SeriesLoop(tmp_path / "quiet", losses, quiet=True, **kw)
    b = SeriesLoop(tmp_path / "full", losses, quiet=False, **kw)
    quiet_steps = 0
    for i in range(1, n + 1):
        a.step(i)
        b.step(i)
        quiet_steps += a.rescue._quiet is not None and a.rescue._quiet.points != []
        assert a.seen() == b.seen(), i
        if i % 97 == 0:  # a reader mid-stretch sees the detector as step-by-step updates leave it
            assert a.rescue.detector.__dict__ == b.rescue.detector.__dict__, i
    a.kernel.close()
    b.kernel.close()
    assert a.rescue.detector.__dict__ == b.rescue.detector.__dict__
    assert decisions(tmp_path / "quiet") == decisions(tmp_path / "full")
    assert alerts(tmp_path / "quiet") == alerts(tmp_path / "full")
    assert quiet_steps > 50  # the stretches were taken
    if seed % 3 == 0:
        assert quiet_steps > n // 2  # a healthy run is mostly quiet


def test_a_reader_or_an_op_ends_a_stretch_and_sees_every_point(tmp_path):
    losses = [1.0 + 0.05 * ((i * 7919) % 13) / 13 for i in range(200)]
    loop = SeriesLoop(tmp_path, losses, quiet=True, max_steps=None, classes=None, warmup_lr=False)
    i = 0
    while loop.rescue._quiet is None or len(loop.rescue._quiet.points) < 3:
        i += 1
        loop.step(i)
    waiting = list(loop.rescue._quiet.points)
    det = loop.rescue.detector  # the property feeds the waiting points first
    assert loop.rescue._quiet is None and det.last == waiting[-1] and det.n == i
    assert isinstance(loop.rescue, Rescue)
    loop.kernel.close()
