"""A plain PyTorch loop with hotcb: a small CNN on synthetic 8x8 images, controlled live.

    python examples/bare_torch.py --dir runs/bare --steps 300
    hotcb --dir runs/bare set lr=3e-3          # from another terminal, while it trains
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.rescue import rescue_of


def make_data(n: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    for c in range(4):  # each class lights up one quadrant
        r, k = divmod(c, 2)
        x[y == c, :, r * 4:(r + 1) * 4, k * 4:(k + 1) * 4] += 1.0
    return x, y


def train(run_dir: str, max_steps: int = 300, seed: int = 0, batch: int = 64) -> dict[str, float]:
    torch.manual_seed(seed)
    x, y = make_data(seed=seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    weights = {"ce_w": 1.0, "l2_w": 0.0}
    state = mutable_state(optimizer_actuators(opt) + loss_actuators(weights))
    kernel = HotKernel(run_dir, mutable_state=state, max_steps=max_steps)
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    rescue_of(kernel).configure(classes=4)  # the rescue (on in the autopilot's auto modes) knows chance
    g = torch.Generator().manual_seed(seed + 1)
    loss = torch.tensor(0.0)
    step = 0
    try:
        while not kernel.should_stop:
            idx = torch.randint(0, len(x), (batch,), generator=g)
            logits = model(x[idx])
            ce = nn.functional.cross_entropy(logits, y[idx])
            l2 = sum((p ** 2).sum() for p in model.parameters())
            loss = weights["ce_w"] * ce + weights["l2_w"] * l2
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            acc = (logits.argmax(1) == y[idx]).float().mean()
            kernel.apply(env={"step": step, "optimizer": opt, "model": model,
                              "metrics": {"train_loss": loss.item(), "ce": ce.item(), "acc": acc.item()}},
                         events=["train_step_end"])
    finally:
        kernel.close()
    return {"steps": step, "final_loss": float(loss.item())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="runs/bare")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(train(args.dir, args.steps, args.seed))


if __name__ == "__main__":
    main()
