"""``tune`` and a knob that sits at exactly 0 (weight_decay=0: "off").

A real SGD optimizer behind the real ``optimizer_actuators``; the model trains on real batches,
and the objective the loop reports is a known function of the live weight_decay (plus noise
and drift), so each test knows the right answer. From 0 a trial tries the bottom of the
recipe's range, and only when the guard would let tune put the knob back to 0.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

from hotcb import GuardConfig, HotKernel, HotOp, mutable_state, optimizer_actuators  # noqa: E402
from hotcb.jsonl import read_all  # noqa: E402

FAST = {"seed": 0, "horizon": 30, "settle": 5, "n_startup_trials": 4}
WD_LOG = {"weight_decay": {"min": 1e-4, "max": 0.1, "scale": "log"}}
# Lets non-human sources set weight_decay to exactly 0 (its rollback); every other change keeps
# the guard's ratio limit.
ALLOW_ZERO = GuardConfig(per_knob={"weight_decay": {"allow_zero": True}})


class WdRun:
    def __init__(self, run_dir: Path, objective: Any, guard: GuardConfig | None = None, seed: int = 0):
        torch.manual_seed(seed)
        self.net = torch.nn.Linear(8, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0)
        self.kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(self.opt)), guard=guard)
        self.run_dir, self.objective = Path(run_dir), objective
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.step = 0
        self.traj: list[float] = []

    @property
    def wd(self) -> float:
        return self.opt.param_groups[0]["weight_decay"]

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            x = torch.randn(16, 8, generator=self.gen)
            loss = torch.nn.functional.mse_loss(self.net(x), x.sum(1, keepdim=True))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            val = self.objective(self.wd) + math.exp(-self.step / 1500) + self.rng.gauss(0.0, 0.05)
            self.kernel.apply(env={"step": self.step, "optimizer": self.opt,
                                   "metrics": {"train_loss": loss.item(), "val_loss": val}})
            self.traj.append(self.wd)

    def enable(self, recipe: dict[str, Any]) -> None:
        e = self.kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": recipe},
                                     source="human", actor="test"))
        assert e["decision"] == "applied", e

    def state(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "hotcb.tune.json").read_text())

    def tune_sets(self) -> list[dict[str, Any]]:
        return [e for e in read_all(self.run_dir / "hotcb.applied.jsonl")
                if e["source"] == "tune" and e["op"] == "set_params"]


def test_off_is_best_each_try_from_zero_starts_at_the_bottom_and_is_rolled_back_to_exactly_zero(run_dir: Path) -> None:
    run = WdRun(run_dir, objective=lambda wd: 3000.0 * wd, guard=ALLOW_ZERO)  # any weight decay hurts
    run.kernel.max_steps = 800  # the run's length is known: no trial is left live at its end
    run.enable({**FAST, "actuators": WD_LOG})
    run.run(800)
    run.kernel.close()
    st = run.state()
    trials = [t for t in st["trials"] if t["kind"] == "active" and t["state"] == "complete"]
    assert len(trials) >= 5 and st["accepted"] == 0 and st["rolled_back"] == len(trials)
    assert st["last_error"] is None and st["skipped"] == []
    sets = run.tune_sets()
    assert all(e["decision"] == "applied" for e in sets)
    for t in trials:
        assert t["before"] == {"weight_decay": 0.0} and t["outcome"] == "rolled_back" and t["improvement"] < 0
        assert 1e-4 <= t["params"]["weight_decay"] <= 2e-4  # the bottom of the range, one step up
        tried = [e for e in sets if e["reason"].startswith(f"tune trial {t['number']}:")]
        back = [e for e in sets if e["reason"].startswith(f"tune roll back trial {t['number']}:")]
        assert [e["payload"]["weight_decay"]["old"] for e in tried] == [0.0]
        assert [e["payload"]["weight_decay"]["new"] for e in back] == [0.0]
        assert run.traj[t["step_end"] - 1] == 0.0  # back at exactly 0 after each trial
    # Every change of the live knob is one of these guard-checked tune entries.
    assert sum(1 for a, b in zip(run.traj, run.traj[1:], strict=False) if a != b) == len(sets)
    assert run.wd == 0.0


def test_on_is_better_the_first_try_is_kept_and_the_search_goes_on_from_there(run_dir: Path) -> None:
    def objective(wd: float) -> float:  # best at 1e-2; "off" is far worse
        return 0.5 * math.log10(max(wd, 1e-6) / 1e-2) ** 2

    run = WdRun(run_dir, objective=objective, guard=ALLOW_ZERO)
    run.enable({**FAST, "actuators": WD_LOG})
    run.run(1500)
    run.kernel.close()
    st = run.state()
    first = next(t for t in st["trials"] if t["kind"] == "active")
    assert first["before"] == {"weight_decay": 0.0} and first["outcome"] == "accepted"
    assert st["accepted"] >= 3 and run.wd > 1e-3  # it kept climbing toward 1e-2 from the bottom
    assert all(wd == 0.0 or 1e-4 <= wd <= 0.1 for wd in run.traj)


def test_without_a_way_back_to_zero_the_knob_is_left_alone_and_the_status_says_why(run_dir: Path) -> None:
    # The default guard limits a tune change to x0.5..x2: tune could never set it back to 0.
    run = WdRun(run_dir, objective=lambda wd: 3000.0 * wd)
    run.enable({**FAST, "actuators": WD_LOG})
    run.run(150)
    st = run.state()
    assert "weight_decay: at 0, and the guard would refuse" in st["status"]
    assert any("max_rel_change: null" in s for s in st["skipped"])
    # The actuator's own range starts at 0 (0..1): there is no bottom to start from.
    e = run.kernel.submit(HotOp(module="tune", op="set_recipe", params={"recipe": {**FAST, "actuators": ["weight_decay"]}},
                                source="human", actor="test"))
    assert e["decision"] == "applied", e
    run.run(100)
    st = run.state()
    assert "weight_decay: at 0; give it a min > 0" in st["status"]
    assert not run.tune_sets() and set(run.traj) == {0.0}
    run.kernel.close()
    out = subprocess.run([sys.executable, "-m", "hotcb.cli", "--dir", str(run_dir), "tune", "status"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "not searched: weight_decay: at 0; give it a min > 0" in out.stdout, out.stderr
