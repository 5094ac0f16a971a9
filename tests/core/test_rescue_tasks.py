"""The rescue on tasks that are not classifiers, and under a scheduler's warmup: a regressor
collapsed to predicting the mean is dead (given its baseline), and the probe leaves a warmup be."""

from __future__ import annotations

import math

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


class NoisyRegression:
    """A Friedman #1 regression (MLP, SGD momentum, batch 32, target standardized) whose step loss
    is too noisy (~20% a point) for a 30-point window to show a slow fall; ``val_loss`` on a fixed
    held-out set every ``eval_every`` steps, as the README's loop logs it."""

    def __init__(self, run_dir, lr: float, seed: int = 0, max_steps: int = 600, eval_every: int | None = 25):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(2300, 10, generator=g)
        y = (10 * torch.sin(torch.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4]
             + torch.randn(2300, generator=g))
        x, y = (x - x.mean(0)) / x.std(0), ((y - y.mean()) / y.std()).unsqueeze(1)
        self.x, self.y, self.xv, self.yv = x[:2000], y[:2000], x[2000:], y[2000:]
        self.model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(self.opt)),
                                max_steps=max_steps)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        self.bg = torch.Generator().manual_seed(seed + 1)
        self.eval_every = eval_every
        self.step_no = 0

    def run(self, n: int) -> None:
        for _ in range(n):
            idx = torch.randint(0, len(self.x), (32,), generator=self.bg)
            loss = nn.functional.mse_loss(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step_no += 1
            metrics = {"train_loss": loss.item()}
            if self.eval_every and self.step_no % self.eval_every == 0:
                with torch.no_grad():
                    metrics["val_loss"] = nn.functional.mse_loss(self.model(self.xv), self.yv).item()
            self.kernel.apply(env={"step": self.step_no, "metrics": metrics})

    def ledger(self) -> list[dict]:
        return [e for e in read_all(self.kernel.run.ledger) if isinstance(e, dict)]


def _probe_raises(ledger: list[dict]) -> list[dict]:
    return [e for e in ledger if e.get("actor") == "probe" and e["decision"] == "applied"
            and e["payload"]["lr"]["new"] > e["payload"]["lr"]["old"]]


def test_a_noisy_regression_far_too_low_is_raised_on_its_held_out_loss(tmp_path):
    # lr 0.003, ~1/7 of what this net trains well at (0.02): after a fast first fall the loss creeps
    # down ~0.1%/step under ~20% minibatch noise. The held-out loss shows the creep; the probe
    # raises lr within the first third of the run, measures the raise on the held-out points
    # and keeps it when the fall sped up.
    run = NoisyRegression(tmp_path / "val", lr=0.003)
    rescue_of(run.kernel).configure(enabled=True, baseline=1.0)
    run.run(330)
    raises = _probe_raises(run.ledger())
    assert raises, [e.get("reason") for e in run.ledger()]
    assert raises[0]["step"] <= 210 and "held-out loss" in raises[0]["reason"]
    assert run.opt.param_groups[0]["lr"] >= 0.012  # raises kept
    assert not [e for e in run.ledger() if e.get("op") == "rollback"]
    run.kernel.close()

    # The same run logging no held-out loss: its step loss alone cannot show the creep, no raise.
    blind = NoisyRegression(tmp_path / "blind", lr=0.003, eval_every=None)
    rescue_of(blind.kernel).configure(enabled=True, baseline=1.0)
    blind.run(330)
    assert not _probe_raises(blind.ledger())
    blind.kernel.close()


def test_a_raise_undone_looks_again_only_where_a_held_out_loss_can_show_a_later_slow_fall():
    from hotcb.probe import LrProbe, ProbeState

    def judged(with_held: bool) -> LrProbe:
        probe = LrProbe()
        probe._raise(0.01, "test", step=30)  # one raise, its trial judged on a rate half the one before
        if with_held:
            probe.observe_held(25, 0.9)
        step = probe._verdict(0.005, lr=0.004, remaining=500, step=60)
        assert step is not None and step.factor == 0.5 and "did not speed descent" in step.reason
        return probe

    again = judged(with_held=True)
    assert again.state is ProbeState.WAITING and again.raised_at == 60 and "looking again" in again.history[-1]
    assert judged(with_held=False).state is ProbeState.SETTLED


def test_the_held_out_loss_speaks_only_where_the_step_loss_cannot_see_a_fall_that_fast():
    """A held-out creep of 0.1%/step: trusted when the step loss's window is too noisy to resolve
    such a fall (its standard error above that rate: minibatch noise), not when it could and does
    not show one clearly (a too-high lr falls slowly and visibly: raising it is the wrong way)."""
    from hotcb.probe import LrProbe

    def looked(step_se: float):
        probe = LrProbe()
        for i in range(4):
            probe.observe_held(145 + 15 * i, 0.5 * math.exp(-0.001 * 15 * i))
        det = LossDetector()
        for _ in range(40):
            det.update(0.5)
        return probe._look_held(200, det, left=400, rate=0.0005, se=step_se)

    blind = looked(step_se=0.005)  # the step loss's noise hides a 0.1%/step fall: the held-out points decide
    assert blind is not None and blind.factor == 2.0 and "held-out loss" in blind.reason
    assert looked(step_se=0.0004) is None  # the step loss could show it and shows 0.05%/step: no raise


def test_a_held_out_raise_that_held_the_rate_of_a_decelerating_curve_is_kept():
    """The held-out rate before a raise fell 8x over the window before it, at the same lr; the
    raise holds that rate where the old lr would have slowed further: kept, the probe settles.
    The same raise after a steady fall (no deceleration to beat) is undone, as before."""
    from hotcb.probe import LrProbe, ProbeState

    def trial(earlier_rate: float) -> tuple[LrProbe, object]:
        probe = LrProbe()
        level = math.log(0.5)
        for i, s in enumerate(range(25, 176, 25)):  # 25..175: the earlier window, then the base window
            probe.observe_held(s, math.exp(level))
            level -= 25 * (earlier_rate if i < 3 else 0.002)
        det = LossDetector()
        for _ in range(40):
            det.update(0.3)
        raised = probe._look_held(180, det, left=400, rate=0.0005, se=0.005)  # the step loss is blind
        assert raised is not None and raised.factor == 2.0 and "held-out loss" in raised.reason
        probe.applied(0.004)
        for s in range(200, 251, 25):  # the trial: 0.22%/step at twice the lr (not x1.4)
            probe.observe_held(s, math.exp(level))
            level -= 25 * 0.0022
        return probe, probe.decide(250, 0.004, det, max_steps=636)

    probe, step = trial(earlier_rate=0.016)
    assert step is None and probe.state is ProbeState.SETTLED and "held at" in probe.history[-1]
    probe, step = trial(earlier_rate=0.002)  # a steady fall: a rate 10% higher is no speed-up
    assert step is not None and step.factor == 0.5 and "did not speed descent" in step.reason
