"""A real training process for tests: a small torch MLP regression, with the kernel.

    python tests/support/trainer.py --dir RUN --steps 100000 --sleep 0.01 [--seed 0]
        [--loss-weights] [--scheduler cosine] [--checkpoint-every 20] [--nan-at STEP]

It runs until ``max_steps`` or a ``core stop``; every step reports train_loss, val_loss.
``--nan-at`` makes the loss non-finite from that step on (until a rollback/lr cut) to test
divergence handling.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--scheduler", choices=["none", "cosine", "step"], default="none")
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--nan-at", type=int, default=-1)
    ap.add_argument("--plateau", action="store_true", help="report a flat val_loss")
    ap.add_argument("--callback-dir", default=None)
    ap.add_argument("--summary", default=None, help="write per-step losses and lrs as JSON here")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    w_true = torch.randn(8, 1, generator=g)
    x = torch.randn(512, 8, generator=g)
    y = x @ w_true + 0.1 * torch.randn(512, 1, generator=g)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=0.0)
    sched = None
    if args.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.steps, 1))
    elif args.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
    weights = {"mse_w": 1.0, "l1_w": 0.0}
    state = mutable_state(optimizer_actuators(opt, scheduler=sched) + loss_actuators(weights))
    kernel = HotKernel(args.dir, mutable_state=state, max_steps=args.steps,
                       checkpoint_every=args.checkpoint_every or None,
                       allowed_callback_dirs=[args.callback_dir] if args.callback_dir else None)
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    losses, lrs = [], []
    step = 0
    bg = torch.Generator().manual_seed(args.seed + 7)
    try:
        while not kernel.should_stop:
            idx = torch.randint(0, 448, (32,), generator=bg)
            pred = model(x[idx])
            mse = nn.functional.mse_loss(pred, y[idx])
            l1 = sum(p.abs().sum() for p in model.parameters())
            loss = weights["mse_w"] * mse + weights["l1_w"] * l1
            if 0 <= args.nan_at <= step and opt.param_groups[0]["lr"] > args.lr * 0.6:
                loss = loss * float("nan")
            opt.zero_grad()
            loss.backward()
            if math.isfinite(loss.item()):
                opt.step()
            if sched is not None:
                sched.step()
            step += 1
            with torch.no_grad():
                val = nn.functional.mse_loss(model(x[448:]), y[448:]).item()
            if args.plateau:
                val = 0.5 + 1e-4 * math.sin(step)
            losses.append(loss.item())
            lrs.append(opt.param_groups[0]["lr"])
            kernel.apply(env={"step": step, "epoch": step // 100, "optimizer": opt, "scheduler": sched,
                              "model": model,
                              "metrics": {"train_loss": loss.item(), "val_loss": val, "mse": mse.item(),
                                          "lr": opt.param_groups[0]["lr"]}},
                         events=["train_step_end"])
            if args.sleep:
                time.sleep(args.sleep)
    finally:
        kernel.close()
        if args.summary:
            with open(args.summary, "w") as f:
                json.dump({"losses": losses, "lrs": lrs, "steps": step}, f)


if __name__ == "__main__":
    main()
