"""An in-process training loop with a real torch model and a real ``HotKernel``, for core tests.

Tests drive it step by step so that a command written "now" is read at a known safe point.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.filewatch import ring
from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command


class Loop:
    def __init__(self, run_dir: str | os.PathLike[str], seed: int = 0, scheduler: str | None = None,
                 lr: float = 0.05, warmup: int = 20, **kernel_kw: Any):
        torch.manual_seed(seed)
        self.run_dir = Path(run_dir)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(256, 1, 6, 6, generator=g)
        self.y = (self.x.mean(dim=(1, 2, 3)) > 0).long()
        self.model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 2))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        self.sched = None
        if scheduler == "step":
            self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=5, gamma=0.5)
        elif scheduler == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=40)
        elif scheduler == "warmup":  # linear warmup over ``warmup`` steps, then constant (a LambdaLR)
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: min(1.0, (e + 1) / warmup))
        self.weights = {"ce_w": 1.0, "l2_w": 0.0}
        self.state = mutable_state(optimizer_actuators(self.opt, scheduler=self.sched)
                                   + loss_actuators(self.weights))
        self.kernel = HotKernel(run_dir, mutable_state=self.state, **kernel_kw)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        self.bg = torch.Generator().manual_seed(seed + 1)
        self.step_no = 0
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.used_lrs: list[float] = []  # the lr each step's optimizer.step() ran with
        self.nan_loss = False  # tests flip it to feed a non-finite loss into the metrics

    def step(self, extra_env: dict[str, Any] | None = None) -> float:
        idx = torch.randint(0, len(self.x), (32,), generator=self.bg)
        logits = self.model(self.x[idx])
        ce = nn.functional.cross_entropy(logits, self.y[idx])
        l2 = sum((p ** 2).sum() for p in self.model.parameters())
        loss = self.weights["ce_w"] * ce + self.weights["l2_w"] * l2
        self.opt.zero_grad()
        loss.backward()
        self.used_lrs.append(self.opt.param_groups[0]["lr"])
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.step_no += 1
        value = float("nan") if self.nan_loss else loss.item()
        self.losses.append(loss.item())
        self.lrs.append(self.opt.param_groups[0]["lr"])
        env = {"step": self.step_no, "epoch": self.step_no // 50, "optimizer": self.opt,
               "scheduler": self.sched, "model": self.model, "loss": loss, "logits": logits,
               "metrics": {"train_loss": value, "ce": ce.item()}}
        env.update(extra_env or {})
        self.kernel.apply(env=env, events=["train_step_end"])
        assert math.isfinite(loss.item()) or self.nan_loss
        return loss.item()

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step()

    def send(self, module: str, op: str, params: dict[str, Any] | None = None, **kw: Any) -> str:
        rec = make_command(module, op, params, **kw)
        append_line(self.run_dir / "hotcb.commands.jsonl", rec)
        return rec["cmd_id"]

    def write_raw(self, text: str) -> None:
        """Raw bytes appended (not through hotcb's writer), then rung as hotcb's writer rings: the
        kernel looks at the file at its next step (unrung, the kernel looks at it within
        ``command_check_s``: tests/core/test_command_watch.py)."""
        path = self.run_dir / "hotcb.commands.jsonl"
        with open(path, "a") as f:
            f.write(text)
        ring(path)

    def metrics(self) -> list[dict[str, Any]]:
        """The metric lines recorded so far: the kernel writes them in batches off the step, so a
        reader in this process asks for the pending ones first (another process waits for them)."""
        self.kernel.flush_metrics()
        return [r for r in read_all(self.run_dir / "hotcb.metrics.jsonl") if isinstance(r, dict)]

    def ledger(self) -> list[dict[str, Any]]:
        return [e for e in read_all(self.run_dir / "hotcb.applied.jsonl") if isinstance(e, dict)]

    def decision(self, cmd_id: str) -> dict[str, Any]:
        hits = [e for e in self.ledger() if e.get("cmd_id") == cmd_id]
        assert len(hits) == 1, f"{cmd_id}: {len(hits)} ledger entries"
        return hits[0]

    def close(self) -> None:
        self.kernel.close()
