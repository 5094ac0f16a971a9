"""Checkpoint and rollback in a plain torch loop: on-disk snapshots (kept K, found again after
a restart), rollback with an LR scheduler, and the kernel's own state for resume."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.client import send_command
from hotcb.ops import make_command
from tests.support.proc import read_jsonl


class Run:
    """A tiny regression run with a cosine schedule, an lr knob and a loss-weight knob."""

    def __init__(self, run_dir, **kernel_kw):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=40)
        self.weights = {"mse": 1.0}
        state = mutable_state(optimizer_actuators(self.opt, scheduler=self.sched) + loss_actuators(self.weights))
        self.kernel = HotKernel(run_dir, mutable_state=state, **kernel_kw)
        for name, obj in (("model", self.model), ("optimizer", self.opt), ("scheduler", self.sched)):
            self.kernel.register_state(name, obj)
        self.g = torch.Generator().manual_seed(1)
        self.step = 0

    def train(self, steps: int, commands: dict | None = None) -> dict[int, dict]:
        seen = {}
        for _ in range(steps):
            x = torch.randn(8, 4, generator=self.g)
            loss = self.weights["mse"] * nn.functional.mse_loss(self.model(x), x.sum(1, keepdim=True))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.sched.step()
            self.step += 1
            for rec in (commands or {}).get(self.step, []):
                send_command(self.kernel.run, rec)
            self.kernel.apply(env={"step": self.step, "optimizer": self.opt, "scheduler": self.sched})
            seen[self.step] = {"model": copy.deepcopy(self.model.state_dict()), "lr": self.opt.param_groups[0]["lr"],
                               "mse": self.weights["mse"], "sched": copy.deepcopy(self.sched.state_dict())}
        return seen


def same_state(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_on_disk_snapshots_keep_k_and_survive_a_restart(run_dir):
    run = Run(run_dir, checkpoint_every=5, keep_checkpoints=2, checkpoint_on_disk=True)
    seen = run.train(17)
    run.kernel.close()
    files = sorted(p.name for p in (run_dir / "hotcb.checkpoints").iterdir())
    assert files == ["step-000000010.pt", "step-000000015.pt"]  # the last K only, older ones deleted
    assert run.kernel.snapshots.steps() == [10, 15]

    # A new process finds them and can roll back to one it never took.
    run2 = Run(run_dir, checkpoint_on_disk=True, keep_checkpoints=2)
    assert run2.kernel.snapshots.steps() == [10, 15]
    run2.step = 17
    after = run2.train(1, {18: [make_command("core", "rollback", {"step": 12}, cmd_id="rb")]})
    run2.kernel.close()
    assert same_state(after[18]["model"], seen[10]["model"])
    assert after[18]["lr"] == seen[10]["lr"] and after[18]["sched"] == seen[10]["sched"]
    entry = next(e for e in read_jsonl(run_dir / "hotcb.applied.jsonl") if e["cmd_id"] == "rb")
    assert entry["decision"] == "applied" and entry["payload"]["restored_step"] == 10


def test_rollback_with_a_scheduler_is_bit_exact_and_keeps_the_schedule(run_dir):
    run = Run(run_dir)
    seen = run.train(12, {
        4: [make_command("core", "checkpoint", cmd_id="ck")],
        6: [make_command("opt", "set_params", {"lr": 0.05}), make_command("loss", "set_params", {"mse": 3.0})],
        10: [make_command("core", "rollback", cmd_id="rb")],
    })
    assert seen[9]["mse"] == 3.0 and not same_state(seen[9]["model"], seen[4]["model"])
    assert same_state(seen[10]["model"], seen[4]["model"])
    # The knobs come back exactly, and the schedule is the snapshot's (not rescaled by a stale value).
    assert seen[10]["lr"] == seen[4]["lr"] and seen[10]["mse"] == 1.0
    assert seen[10]["sched"] == seen[4]["sched"]
    # From there on the schedule follows the path it took from step 4.
    assert seen[11]["lr"] == seen[5]["lr"] and seen[11]["sched"] == seen[5]["sched"]
    run.kernel.close()


def test_rollback_without_a_snapshot_is_failed_not_raised(run_dir):
    run = Run(run_dir)
    run.train(3, {2: [make_command("core", "rollback", cmd_id="rb")]})
    run.kernel.close()
    entry = next(e for e in read_jsonl(run_dir / "hotcb.applied.jsonl") if e["cmd_id"] == "rb")
    assert entry["decision"] == "failed" and "no snapshot" in entry["error"]
    assert run.step == 3


def test_kernel_state_dict_round_trip_and_ledger_fallback(run_dir):
    run = Run(run_dir)
    run.train(6, {3: [make_command("loss", "set_params", {"mse": 0.25})]})
    saved = run.kernel.state_dict()
    run.kernel.close()
    assert saved["step"] == 6 and saved["knobs"]["mse"] == 0.25
    assert saved["knobs"]["lr"] == run.opt.param_groups[0]["lr"]  # the live lr, not the last one set

    for state in (saved, None):  # None: a checkpoint without hotcb state; the ledger serves
        fresh = Run(run_dir)
        changed = fresh.kernel.load_state_dict(state, env={"step": 6})
        assert fresh.weights["mse"] == 0.25 and changed["mse"] == {"old": 1.0, "new": 0.25}
        assert fresh.kernel.step == 6
        fresh.kernel.close()
