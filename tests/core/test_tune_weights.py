"""Tune cannot wreck a run: a rejected trial takes the weights back with the knobs (bit-exactly),
no trial starts too close to the run's end, none is left live at it, and nothing is accepted
while the run is at chance.

A real torch model and optimizer train in a real kernel (their state registered with it);
everything is seeded and step-indexed, so each test sees the same trials on every run.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
import torch
from torch import nn

from hotcb import HotKernel, HotOp, mutable_state, optimizer_actuators
from hotcb.actuators import HotcbActuator
from hotcb.jsonl import read_all

# Linear regression with a known curvature: the loss Hessian is 2 x^T x / n = 2 I (x has
# orthonormal columns scaled by sqrt(n)), so plain SGD on the full batch diverges above lr = 1.
N, D = 64, 8


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(N, D, generator=g))
    x = q * math.sqrt(N)
    w = torch.randn(D, 1, generator=g)
    return x, x @ w + 0.3 * torch.randn(N, 1, generator=g)


class RealRun:
    def __init__(self, run_dir: Path, lr: float, max_steps: int | None = None):
        torch.manual_seed(0)
        self.x, self.y = _data()
        self.model = nn.Linear(D, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.5)
        self.kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(self.opt)),
                                max_steps=max_steps)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        self.run_dir = run_dir
        self.step = 0

    def train_step(self) -> float:
        loss = nn.functional.mse_loss(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.step += 1
        return float(loss.item())

    def tune(self) -> Any:
        return self.kernel.modules["tune"]


def _state(run: RealRun) -> dict[str, Any]:
    return {"model": copy.deepcopy(run.model.state_dict()), "opt": copy.deepcopy(run.opt.state_dict())}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_rejected_trial_restores_the_weights_bit_exactly(run_dir: Path) -> None:
    # lr 0.55 trains well; every trial may only try lr 0.99..1.1 x 2 = past the divergence edge
    # (lr 1 at momentum 0.5 is already unstable): the loss climbs, the trial is aborted.
    run = RealRun(run_dir, lr=0.55)
    recipe = {"seed": 0, "horizon": 20, "settle": 2, "objective": "train_loss",
              "actuators": {"lr": {"min": 1.0, "max": 1.1}}}
    entry = run.kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": recipe},
                                    source="human", actor="test"))
    assert entry["decision"] == "applied", entry
    at_change: dict[int, dict[str, Any]] = {}
    restored: list[tuple[int, dict[str, Any]]] = []
    for _ in range(300):
        loss = run.train_step()
        run.kernel.apply(env={"step": run.step, "metrics": {"train_loss": loss}})
        t = run.tune().trial
        if t is not None and t.change_step == run.step:
            # The snapshot was taken inside this apply, before the lr change: the weights did not
            # move in between, so this copy is what the trial started from.
            at_change[t.number] = _state(run)
        for rec in run.tune().records:
            if rec.get("weights_restored") is not None and rec["number"] not in {n for n, _ in restored}:
                assert rec["step_end"] == run.step
                restored.append((rec["number"], _state(run)))
        if len(restored) >= 2:
            break
    run.kernel.close()
    assert len(restored) >= 2, run.tune().records
    for number, after in restored:
        before = at_change[number]
        assert _equal(after["model"], before["model"])  # every weight, bit for bit
        assert _equal(after["opt"]["state"], before["opt"]["state"])  # momentum buffers too
        assert after["opt"]["param_groups"][0]["lr"] == pytest.approx(0.55)
    # The ledger tells it: the trial, its rollback through the guard, the verdict naming the weights.
    ledger = read_all(run_dir / "hotcb.applied.jsonl")
    for number, _ in restored:
        verdict = next(e for e in ledger if e["module"] == "tune" and e["op"] == "verdict"
                       and e["params"]["trial"] == number)
        assert verdict["params"]["outcome"] == "rolled_back"
        rec = next(r for r in run.tune().records if r["number"] == number)
        assert verdict["params"]["weights_restored_to_step"] == rec["step_start"] == rec["weights_step"]
        back = [e for e in ledger if e["source"] == "tune" and e["op"] == "set_params"
                and e["reason"].startswith(f"tune roll back trial {number}:")]
        assert len(back) == 1 and back[0]["decision"] == "applied"
    # The kernel's own ring was not touched by tune's private snapshots.
    assert run.kernel.snapshots.steps() == []


def test_no_trial_starts_within_a_horizon_of_the_end_and_none_is_live_at_it(run_dir: Path) -> None:
    run = RealRun(run_dir, lr=0.05, max_steps=400)
    recipe = {"seed": 1, "horizon": 30, "settle": 5, "objective": "train_loss", "n_startup_trials": 2}
    run.kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": recipe},
                            source="human", actor="test"))
    while not run.kernel.should_stop:
        loss = run.train_step()
        run.kernel.apply(env={"step": run.step, "metrics": {"train_loss": loss}})
    assert run.step == 400
    st = json.loads((run_dir / "hotcb.tune.json").read_text())
    active = [r for r in st["trials"] if r["kind"] == "active"]
    assert len(active) >= 3
    last_start = 400 - 5 - 2 * 30
    assert all(r["step_start"] <= last_start for r in active)  # each could be scored a horizon before the end
    assert all(r["state"] != "running" for r in active) and st["active_trial"] is None
    assert st["status"].startswith("done: no new trial this close to the run's end")
    run.kernel.close()


def test_a_trial_live_at_the_last_step_is_scored_or_undone_there(run_dir: Path) -> None:
    # The run's length is learned late (the kernel's max_steps set mid-trial, as a shortened run
    # would): the trial still in flight at the last step is settled at that step, not left live.
    run = RealRun(run_dir, lr=0.05)
    recipe = {"seed": 2, "horizon": 40, "settle": 5, "objective": "train_loss"}
    run.kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": recipe},
                            source="human", actor="test"))
    while run.step < 1000:
        loss = run.train_step()
        run.kernel.apply(env={"step": run.step, "metrics": {"train_loss": loss}})
        t = run.tune().trial
        if t is not None and t.change_step >= 0 and run.step == t.change_step + 10:
            run.kernel.max_steps = run.step + 3
            break
    number = run.tune().trial.number
    while not run.kernel.should_stop:
        loss = run.train_step()
        run.kernel.apply(env={"step": run.step, "metrics": {"train_loss": loss}})
    rec = next(r for r in run.tune().records if r["number"] == number)
    assert rec["state"] != "running" and rec["step_end"] == run.step
    assert rec["reason"].startswith(f"the run ends at step {run.step}")
    if not rec["accepted"]:
        assert run.opt.param_groups[0]["lr"] == pytest.approx(rec["before"]["lr"])
    run.kernel.close()


def test_no_trial_while_the_run_is_at_chance_and_the_search_starts_once_it_learns(run_dir: Path) -> None:
    # A classifier (10 classes, told to the kernel's divergence detector) whose loss sits at chance,
    # ln 10, for 600 steps: no trial could be accepted there, so none starts. Then it learns.
    from hotcb.rescue import RESCUE

    rng = random.Random(0)
    lr = {"v": 0.1}
    act = HotcbActuator("lr", type="log_float", apply_fn=lambda v, env: lr.__setitem__("v", float(v)),
                        read_fn=lambda: lr["v"], min=1e-4, max=1.0, group="opt")
    kernel = HotKernel(run_dir, mutable_state=mutable_state([act]), max_steps=1400)
    kernel.modules[RESCUE].configure(classes=10)  # watching only: the rescue itself stays off
    kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": {
        "seed": 0, "horizon": 30, "settle": 5, "n_startup_trials": 2}}, source="human", actor="test"))
    statuses = set()
    for step in range(1, 1401):
        level = math.log(10) if step <= 600 else 1.0 - (0.1 if lr["v"] > 0.1 else 0.0)
        kernel.apply(env={"step": step, "metrics": {"train_loss": level + rng.gauss(0, 0.01)}})
        statuses.add(kernel.modules["tune"].status)
    kernel.close()
    trials = [r for r in kernel.modules["tune"].records if r["kind"] == "active"]
    assert any(s.startswith("no trial while the run's loss sits at chance") for s in statuses), statuses
    assert trials and all(r["step_start"] > 600 for r in trials)
    assert all(r["state"] != "running" for r in trials) and kernel.should_stop


def test_no_trial_while_the_run_is_in_its_first_descent(run_dir: Path) -> None:
    # The loss falls on its own from its start level 2.3 to 1.0 over the first 300 steps: tune
    # waits out that descent (a trial there costs the run the most), then searches.
    rng = random.Random(1)
    lr = {"v": 0.1}
    act = HotcbActuator("lr", type="log_float", apply_fn=lambda v, env: lr.__setitem__("v", float(v)),
                        read_fn=lambda: lr["v"], min=1e-4, max=1.0, group="opt")
    kernel = HotKernel(run_dir, mutable_state=mutable_state([act]), max_steps=900)
    kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": {
        "seed": 0, "horizon": 30, "settle": 5}}, source="human", actor="test"))
    statuses = set()
    for step in range(1, 901):
        level = 2.3 - 1.3 * min(1.0, step / 300)
        kernel.apply(env={"step": step, "metrics": {"train_loss": level + rng.gauss(0, 0.01)}})
        statuses.add(kernel.modules["tune"].status)
    kernel.close()
    trials = [r for r in kernel.modules["tune"].records if r["kind"] == "active"]
    assert any(s.startswith("no trial while the run is in its first descent") for s in statuses), statuses
    # 10% below the start (2.07) is reached at step ~53: the first trial comes after that, not at step 35.
    assert trials and min(r["step_start"] for r in trials) > 53
