"""A real training process for tests: a small torch MLP regression, with the kernel.

    python tests/support/trainer.py --dir RUN --steps 100000 --sleep 0.01 [--seed 0]
        [--loss-weights] [--scheduler cosine] [--checkpoint-every 20 [--on-disk]] [--nan-at STEP]
        [--overfit] [--weight-decay 1e-4] [--grad-norm] [--grad-spike-at 80,200]
        [--guard-cooldown STEPS] [--rescue] [--no-probe] [--rollback-dump DIR]

It runs until ``max_steps`` or a ``core stop``; every step reports train_loss, val_loss.
``--nan-at`` makes the loss non-finite from that step on (until a rollback/lr cut) to test
divergence handling.

``--overfit``: real memorisation: full-batch training of a wider MLP on 32 samples with noisy
targets; the train loss keeps falling while val_loss (clean held-out data) first falls, then
rises from about step 25 (deterministic for a seed).
``--grad-norm`` reports the real gradient norm (``grad_norm``, before the step);
``--grad-spike-at`` (implies it) multiplies that step's batch targets by ``--grad-spike-scale``,
so the real gradient spikes (x100+ the usual norm at scale 10) and the step's update is big.
``--guard-cooldown`` sets the guard's per-knob cooldown for non-human sources.
``--rescue`` enables the kernel's rescue from the script (``--no-probe``: without the lr probe);
``--rollback-dump DIR``: after each rescue rollback, the weights now and the weights this loop
itself kept at the step rolled back to go to ``DIR/rollback-N.pt`` (tests compare them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.guard import GuardConfig
from hotcb.rescue import rescue_of


def _steps(text: str) -> set[int]:
    return {int(x) for x in text.split(",") if x.strip()}


def _grad_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))


# complexity: the test trainer is a script read top to bottom (argparse flags -> loop)
def main(argv: list[str] | None = None) -> None:  # noqa: C901, PLR0912, PLR0915
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--scheduler", choices=["none", "cosine", "step"], default="none")
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--on-disk", action="store_true", help="snapshots as files in RUN/hotcb.checkpoints")
    ap.add_argument("--nan-at", type=int, default=-1)
    ap.add_argument("--plateau", action="store_true", help="report a flat val_loss")
    ap.add_argument("--callback-dir", default=None)
    ap.add_argument("--summary", default=None, help="write per-step losses and lrs as JSON here")
    # Additive flags (their defaults leave every run above unchanged).
    ap.add_argument("--overfit", action="store_true", help="memorise 32 noisy samples: val_loss rises")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--grad-norm", action="store_true", help="report grad_norm")
    ap.add_argument("--grad-spike-at", type=_steps, default=set(), help="comma-separated steps")
    ap.add_argument("--grad-spike-scale", type=float, default=10.0)
    ap.add_argument("--extra-metric", default=None, help="also log a metric of this name (e.g. a hostile one)")
    ap.add_argument("--guard-cooldown", type=int, default=None)
    ap.add_argument("--rescue", action="store_true")
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--rollback-dump", default=None)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    w_true = torch.randn(8, 1, generator=g)
    x = torch.randn(512, 8, generator=g)
    y = x @ w_true + 0.1 * torch.randn(512, 1, generator=g)
    if args.overfit:  # drawn after the data above, so every other run's numbers stay the same
        x_small = x[:32]
        y_small = y[:32] + 1.5 * torch.randn(32, 1, generator=g)
        model = nn.Sequential(nn.Linear(8, 256), nn.Tanh(), nn.Linear(256, 1))
    else:
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    sched = None
    if args.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(args.steps, 1))
    elif args.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
    weights = {"mse_w": 1.0, "l1_w": 0.0}
    state = mutable_state(optimizer_actuators(opt, scheduler=sched) + loss_actuators(weights))
    kernel = HotKernel(args.dir, mutable_state=state, max_steps=args.steps,
                       checkpoint_every=args.checkpoint_every or None, checkpoint_on_disk=args.on_disk,
                       guard=GuardConfig(cooldown_steps=args.guard_cooldown) if args.guard_cooldown is not None else None,
                       allowed_callback_dirs=[args.callback_dir] if args.callback_dir else None)
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    rescue = rescue_of(kernel)
    if args.rescue:
        rescue.configure(enabled=True, probe=not args.no_probe)
    kept: dict[int, dict[str, torch.Tensor]] = {}  # --rollback-dump: this loop's own copy of recent weights
    losses, lrs = [], []
    step = 0
    bg = torch.Generator().manual_seed(args.seed + 7)
    try:
        while not kernel.should_stop:
            idx = torch.randint(0, 448, (32,), generator=bg)
            xb, yb = (x_small, y_small) if args.overfit else (x[idx], y[idx])
            if step + 1 in args.grad_spike_at:
                yb = yb * args.grad_spike_scale
            pred = model(xb)
            mse = nn.functional.mse_loss(pred, yb)
            l1 = sum(p.abs().sum() for p in model.parameters())
            loss = weights["mse_w"] * mse + weights["l1_w"] * l1
            if 0 <= args.nan_at <= step and opt.param_groups[0]["lr"] > args.lr * 0.6:
                loss = loss * float("nan")
            opt.zero_grad()
            loss.backward()
            gnorm = _grad_norm(model) if args.grad_norm or args.grad_spike_at else None
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
            metrics = {"train_loss": loss.item(), "val_loss": val, "mse": mse.item(), "lr": opt.param_groups[0]["lr"]}
            if gnorm is not None:
                metrics["grad_norm"] = gnorm
            if args.extra_metric:
                metrics[args.extra_metric] = 1.0
            kernel.apply(env={"step": step, "epoch": step // 100, "optimizer": opt, "scheduler": sched,
                              "model": model, "metrics": metrics},
                         events=["train_step_end"])
            if args.rollback_dump:
                _dump_rollback(args.rollback_dump, rescue, model, kept, step)
            if args.sleep:
                time.sleep(args.sleep)
    finally:
        kernel.close()
        if args.summary:
            with open(args.summary, "w") as f:
                json.dump({"losses": losses, "lrs": lrs, "steps": step}, f)


def _dump_rollback(folder: str, rescue: Any, model: nn.Module, kept: dict[int, Any], step: int) -> None:
    if rescue.rescues > len([p for p in os.listdir(folder) if p.startswith("rollback-")]) and rescue.last_restored:
        torch.save({"restored_step": rescue.last_restored, "after": model.state_dict(),
                    "kept": kept.get(rescue.last_restored)},
                   os.path.join(folder, f"rollback-{rescue.rescues}.pt"))
    kept[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for old in [s for s in kept if s < step - 400]:
        del kept[old]


if __name__ == "__main__":
    main()
