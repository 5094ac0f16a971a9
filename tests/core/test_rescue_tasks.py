"""The rescue on tasks that are not classifiers, and under a scheduler's warmup: a regressor
collapsed to predicting the mean is dead (given its baseline), and the probe leaves a warmup be."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hotcb import HotKernel, mutable_state, optimizer_actuators
from hotcb.divergence import DetectorConfig, LossDetector
from hotcb.jsonl import read_all
from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop


class Regression:
    """The README's loop on a regression MLP (SGD momentum, MSE); ``kill()`` makes every hidden
    unit dead, so the net can only learn its output bias: it collapses to predicting the mean."""

    def __init__(self, run_dir, seed: int = 0):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(512, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
        self.baseline = float(self.y.var())  # the loss of predicting the mean
        self.model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.02, momentum=0.9)
        self.kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(self.opt)))
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        self.bg = torch.Generator().manual_seed(seed + 1)
        self.step_no = 0
        self.losses: list[float] = []

    def kill(self) -> None:
        with torch.no_grad():
            self.model[0].bias.fill_(-1e3)

    def run(self, n: int) -> None:
        for _ in range(n):
            idx = torch.randint(0, 512, (32,), generator=self.bg)
            loss = nn.functional.mse_loss(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step_no += 1
            self.losses.append(loss.item())
            self.kernel.apply(env={"step": self.step_no, "metrics": {"train_loss": loss.item()}})

    def ledger(self) -> list[dict]:
        return [e for e in read_all(self.kernel.run.ledger) if isinstance(e, dict)]


def test_a_regressor_collapsed_to_the_mean_is_dead_given_its_baseline(tmp_path):
    run = Regression(tmp_path / "a")
    rescue = rescue_of(run.kernel)
    rescue.configure(baseline=run.baseline)  # watching only: nothing acts
    run.run(200)
    assert rescue.detector.level < 0.3 * run.baseline and not rescue.detector.dead()  # it learned
    run.kill()
    run.run(250)
    assert rescue.detector.level == pytest.approx(run.baseline, rel=0.1)  # predicting the mean
    assert rescue.detector.dead()
    assert rescue.why_broken() is not None  # tune accepts nothing on it
    run.kernel.close()

    plain = Regression(tmp_path / "b")  # without a baseline nothing is called dead
    plain.run(200)
    plain.kill()
    plain.run(250)
    assert not rescue_of(plain.kernel).detector.dead()
    plain.kernel.close()


def test_the_detector_calls_a_learned_regressor_back_at_its_baseline_dead():
    det = LossDetector(DetectorConfig(baseline=4.0))
    for i in range(200):  # learns: 4 -> 0.4
        det.update(4.0 * 0.99 ** i + 0.4)
    for _ in range(150):  # collapsed to the mean, quietly (a blow-up first: the jump; then dead)
        det.update(4.0)
    assert det.dead() and det.collapsed()
    quiet = LossDetector(DetectorConfig(baseline=4.0))  # a slow start sitting at its baseline is not dead
    for _ in range(60):
        quiet.update(4.0)
    assert not quiet.dead()


def test_a_collapsed_regressor_is_rolled_back_to_a_snapshot_from_before_it_died(tmp_path):
    run = Regression(tmp_path)
    rescue_of(run.kernel).configure(enabled=True, baseline=run.baseline, probe=False)
    run.run(200)
    run.kill()
    killed_at = run.step_no
    run.run(100)
    rollbacks = [e for e in run.ledger() if e.get("module") == "rescue" and e.get("op") == "rollback"]
    assert rollbacks and rollbacks[0]["decision"] == "applied"
    assert all(e["payload"]["restored_step"] <= killed_at for e in rollbacks)  # never to a dead state
    assert sum(run.losses[-20:]) / 20 < 0.5 * run.baseline  # learning again
    run.kernel.close()


def test_no_probe_raise_while_the_scheduler_warms_lr_up(tmp_path):
    # The same too-low start: without a scheduler the probe raises lr within its first window;
    # under a 100-step linear warmup it waits for the warmup to end.
    plain = Loop(tmp_path / "plain", lr=0.005, max_steps=600)
    rescue_of(plain.kernel).configure(enabled=True, classes=2)
    plain.run(100)
    assert [e for e in plain.ledger() if e.get("actor") == "probe"]
    plain.close()

    loop = Loop(tmp_path / "warm", scheduler="warmup", warmup=100, lr=0.005, max_steps=600)
    rescue_of(loop.kernel).configure(enabled=True, classes=2)
    loop.run(130)
    assert not [e for e in loop.ledger() if e.get("actor") == "probe"]
    loop.close()
