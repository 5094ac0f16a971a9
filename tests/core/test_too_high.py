"""The descent's test of a finite lr too high (hotcb/descent.py ``test_due``), through a real loop:
a run that never blew up, whose loss sits on the noise floor its lr makes, has its lr cut once
the test is due and keeps the cut (the loss drops at once); at a good lr the same cut does not
lower the loss clearly and is undone."""

from __future__ import annotations

import torch
from torch import nn

from hotcb import HotKernel, mutable_state, optimizer_actuators
from hotcb.jsonl import read_all
from hotcb.rescue import rescue_of

NOISE = 0.09  # the target's noise variance: the loss a perfect fit still has
BATCH = 128


class Linear:
    """A linear regression (SGD momentum, batch 128): at lr 0.6 its loss sits far above the noise
    floor (the lr's own noise: halving lr more than halves the loss at once), at lr 0.03 on it."""

    def __init__(self, run_dir, lr: float, max_steps: int = 400, seed: int = 0, batch: int = BATCH):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(2000, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + NOISE ** 0.5 * torch.randn(2000, 1, generator=g)
        self.model = nn.Linear(8, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(self.opt)),
                                max_steps=max_steps)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        rescue_of(self.kernel).configure(enabled=True, baseline=float(self.y.var()), loss_floor=NOISE)
        self.bg = torch.Generator().manual_seed(seed + 1)
        self.step_no = 0
        self.batch = batch

    def run(self, n: int) -> None:
        for _ in range(n):
            idx = torch.randint(0, len(self.x), (self.batch,), generator=self.bg)
            loss = nn.functional.mse_loss(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step_no += 1
            self.kernel.apply(env={"step": self.step_no, "metrics": {"train_loss": loss.item()}})

    def descent(self) -> list[dict]:
        return [e for e in read_all(self.kernel.run.ledger)
                if isinstance(e, dict) and e.get("actor") == "descent" and e["decision"] == "applied"]


def test_an_lr_on_its_noise_floor_is_cut_by_the_test_and_the_cut_kept(tmp_path):
    run = Linear(tmp_path / "high", lr=0.6)
    run.run(79)
    assert not run.descent()  # the test is due from 20% of the run (step 80), not before
    run.run(321)
    cuts = run.descent()
    assert cuts, [e.get("reason") for e in read_all(run.kernel.run.ledger)]
    first = cuts[0]
    assert first["source"] == "rule" and first["payload"]["lr"] == {"old": 0.6, "new": 0.3}
    assert "a test (the run never blew up)" in first["reason"] and "no longer falling fast" in first["reason"]
    assert "kept lr 0.3" in rescue_of(run.kernel).descent.history[1]  # the loss dropped at once: kept
    assert run.opt.param_groups[0]["lr"] <= 0.3  # (a next cut, not clearly better, may be undone)
    assert rescue_of(run.kernel).rescues == 0
    run.kernel.close()


def test_a_good_lr_is_cut_by_the_test_and_the_cut_undone(tmp_path):
    run = Linear(tmp_path / "good", lr=0.03)
    run.run(400)
    moves = [(e["payload"]["lr"]["old"], e["payload"]["lr"]["new"]) for e in run.descent()]
    assert moves == [(0.03, 0.015), (0.015, 0.03)], moves
    assert "did not lower the loss clearly" in run.descent()[-1]["reason"]
    assert run.opt.param_groups[0]["lr"] == 0.03
    # The finish reads the undone cut's window off the ledger and leaves it out of its look back.
    from hotcb.agent.rules.finish import Finisher
    from hotcb.mcp_server.tools import HotcbTools

    steps = tuple(e["step"] for e in run.descent())
    assert Finisher._undone(HotcbTools(tmp_path / "good"), 0, 400) == (steps,)
    assert not Finisher._cut_since(HotcbTools(tmp_path / "good"), 0, 400)
    run.kernel.close()
