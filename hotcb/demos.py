"""Demo training functions (``hotcb demo``): real torch models on an embedded, offline dataset.

No download: ``synthetic_images`` draws a deterministic 10-class image set in code (oriented
gratings with random phase and noise), hard enough that learning rate and loss weights matter.
Both functions follow the ``launch`` contract ``fn(run_dir=..., max_steps=...)`` and build their
own ``HotKernel``; they need only torch and hotcb core.

- ``classifier``: a small CNN; metrics train_loss, val_loss, val_acc, grad_norm, lr.
- ``golden``: a multi-task model (classify, reconstruct, predict the orientation) with three
  weighted loss terms as knobs (``cls_w``, ``recon_w``, ``aux_w``); metrics per term, per-head
  grad norms and accuracy, so each knob's effect is visible and explainable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from .rescue import rescue_of

SIZE = 16
CLASSES = 10


def synthetic_images(n: int, seed: int = 0, noise: float = 0.6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [n,1,16,16], labels [n], angles [n]): class k is a grating at angle k*pi/10."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    angles = labels.float() * math.pi / CLASSES + 0.05 * torch.randn(n, generator=g)
    freq = 0.6 + 0.3 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    coords = torch.arange(SIZE, dtype=torch.float32) - SIZE / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    proj = xx[None] * torch.cos(angles)[:, None, None] + yy[None] * torch.sin(angles)[:, None, None]
    img = torch.sin(freq[:, None, None] * proj + phase[:, None, None])
    img = img + noise * torch.randn(n, SIZE, SIZE, generator=g)
    return img[:, None], labels, angles


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [n, 256]


def _grad_norm(params: Any) -> float:
    sq = [float(p.grad.detach().pow(2).sum()) for p in params if p.grad is not None]
    return math.sqrt(sum(sq)) if sq else 0.0


def _loss_value(t: torch.Tensor) -> float:
    return float(t.detach())  # NaN stays NaN: the kernel records it, divergence must be seen


def classifier(run_dir: str, max_steps: int | None = None, *, seed: int = 0, lr: float = 0.05,
               batch: int = 64, eval_every: int = 10, checkpoint_every: int = 100) -> dict[str, Any]:
    max_steps = max_steps or 1000
    torch.manual_seed(seed)
    x, y, _ = synthetic_images(2500, seed)
    xtr, ytr, xva, yva = x[:2000], y[:2000], x[2000:], y[2000:]
    model = nn.Sequential(Encoder(), nn.Linear(256, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(opt)), max_steps=max_steps,
                       checkpoint_every=checkpoint_every)
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    rescue_of(kernel).configure(classes=CLASSES)  # the rescue knows chance (ln 10)
    bg = torch.Generator().manual_seed(seed + 1)
    step, last = 0, {}
    try:
        while step < max_steps and not kernel.should_stop:
            idx = torch.randint(0, len(xtr), (batch,), generator=bg)
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            gn = _grad_norm(model.parameters())
            if math.isfinite(loss.item()):
                opt.step()
            step += 1
            metrics = {"train_loss": _loss_value(loss), "grad_norm": gn, "lr": opt.param_groups[0]["lr"]}
            if step % eval_every == 0 or step == max_steps:
                with torch.no_grad():
                    out = model(xva)
                    last = {"val_loss": float(nn.functional.cross_entropy(out, yva)),
                            "val_acc": float((out.argmax(1) == yva).float().mean())}
                metrics.update(last)
            kernel.apply(env={"step": step, "epoch": step * batch // len(xtr), "optimizer": opt, "model": model,
                              "metrics": metrics}, events=["train_step_end"])
    finally:
        kernel.close()
    return {"steps": step, **last}


class MultiTask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.cls = nn.Linear(256, CLASSES)
        self.recon = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, SIZE * SIZE))
        self.aux = nn.Linear(256, 2)  # (cos 2a, sin 2a): the grating's orientation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.cls(h), self.recon(h).view(-1, 1, SIZE, SIZE), self.aux(h)


def golden(run_dir: str, max_steps: int | None = None, *, seed: int = 0, lr: float = 0.03, batch: int = 64,
           eval_every: int = 10, checkpoint_every: int = 100) -> dict[str, Any]:
    max_steps = max_steps or 1500
    torch.manual_seed(seed)
    x, y, a = synthetic_images(2500, seed)
    clean, _, _ = synthetic_images(2500, seed, noise=0.0)  # reconstruction target: denoise
    target_aux = torch.stack([torch.cos(2 * a), torch.sin(2 * a)], 1)
    tr, va = slice(0, 2000), slice(2000, 2500)
    model = MultiTask()
    opt = torch.optim.AdamW(model.parameters(), lr=lr * 0.1, weight_decay=1e-4)
    weights = {"cls_w": 1.0, "recon_w": 0.5, "aux_w": 0.5}
    state = mutable_state(optimizer_actuators(opt) + loss_actuators(weights))
    kernel = HotKernel(run_dir, mutable_state=state, max_steps=max_steps, checkpoint_every=checkpoint_every)
    kernel.register_state("model", model)
    kernel.register_state("optimizer", opt)
    rescue_of(kernel).configure(classes=CLASSES)  # the rescue knows chance (ln 10)
    bg = torch.Generator().manual_seed(seed + 1)
    step, last = 0, {}
    try:
        while step < max_steps and not kernel.should_stop:
            idx = torch.randint(0, 2000, (batch,), generator=bg)
            logits, rec, aux = model(x[tr][idx])
            l_cls = nn.functional.cross_entropy(logits, y[tr][idx])
            l_rec = nn.functional.mse_loss(rec, clean[tr][idx])
            l_aux = nn.functional.mse_loss(aux, target_aux[tr][idx])
            loss = weights["cls_w"] * l_cls + weights["recon_w"] * l_rec + weights["aux_w"] * l_aux
            opt.zero_grad()
            loss.backward()
            if math.isfinite(loss.item()):
                opt.step()
            step += 1
            metrics = {
                "train_loss": _loss_value(loss), "loss_cls": _loss_value(l_cls), "loss_recon": _loss_value(l_rec),
                "loss_aux": _loss_value(l_aux), "grad_norm": _grad_norm(model.parameters()),
                "grad_norm_encoder": _grad_norm(model.encoder.parameters()),
                "grad_norm_cls": _grad_norm(model.cls.parameters()),
                "grad_norm_recon": _grad_norm(model.recon.parameters()),
                "grad_norm_aux": _grad_norm(model.aux.parameters()),
                "train_acc": float((logits.argmax(1) == y[tr][idx]).float().mean()),
                "lr": opt.param_groups[0]["lr"],
            }
            if step % eval_every == 0 or step == max_steps:
                with torch.no_grad():
                    vl, vr, vx = model(x[va])
                    last = {"val_loss": float(nn.functional.cross_entropy(vl, y[va])),
                            "val_acc": float((vl.argmax(1) == y[va]).float().mean()),
                            "val_loss_recon": float(nn.functional.mse_loss(vr, clean[va])),
                            "val_loss_aux": float(nn.functional.mse_loss(vx, target_aux[va]))}
                metrics.update(last)
            kernel.apply(env={"step": step, "epoch": step * batch // 2000, "optimizer": opt, "model": model,
                              "metrics": metrics}, events=["train_step_end"])
    finally:
        kernel.close()
    return {"steps": step, **last}
