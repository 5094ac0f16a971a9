"""Eval tasks: the data, the model and the default hyperparameters of each.

``cifar10`` is the real benchmark; ``digits`` (scikit-learn's bundled 8x8 digits, offline)
and ``synthetic`` (Gaussian clusters) run in seconds for quick checks and CI. Beyond
classifiers with SGD: ``charlm`` (a char-level transformer on the standard library's own
sources, AdamW with a linear warmup), ``regression`` (an MLP on scikit-learn's Friedman #1
generator, MSE) and ``fashion-mnist`` (a small CNN on Debian's Fashion-MNIST package). Every
task holds out a validation split from its training data: policies see validation metrics only,
and the reported score (accuracy, or held-out loss for ``charlm`` and ``regression``) is on the
untouched test split, so no policy can overfit what is scored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Start configurations: the learning rate every policy starts from, as a multiple of the task's
# default. No policy is credited for it (it is set before the first step, not as an op).
START_CONFIGS = {"default": 1.0, "lr_high": 4.0, "lr_low": 0.25}


def start_multiplier(start_config: str = "default", lr_scale: float | None = None) -> float:
    """The start lr as a multiple of the task's: ``lr_scale`` if given (``--lr-scale``), else the
    named start config's."""
    if lr_scale is not None:
        if not (lr_scale > 0 and math.isfinite(lr_scale)):
            raise ValueError(f"lr_scale must be a finite number > 0, got {lr_scale!r}")
        return float(lr_scale)
    return START_CONFIGS[start_config]


@dataclass
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    # What a model that learned nothing scores on the test split (loss tasks): the target's
    # variance (predict the mean) or the unigram cross-entropy. A broken run is scored no worse.
    baseline_loss: float | None = None


@dataclass
class Task:
    name: str
    load: Callable[[dict[str, Any]], Split]
    make_model: Callable[[], nn.Module]
    epochs: int
    batch_size: int
    lr: float
    classes: int = 10  # chance accuracy is 1 / classes
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    eval_every: int = 0  # steps between validation reports (0: once per epoch)
    controller_every: int = 10  # steps between policy ticks (>= the guard's cooldown)
    tune_horizon: int = 40
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    kind: str = "classify"  # or "lm" (per-position cross-entropy) or "regress" (MSE)
    optimizer: str = "sgd"  # or "adamw"
    warmup_steps: int = 0  # > 0: a torch LambdaLR linear warmup, then constant
    extra: dict[str, Any] = field(default_factory=dict)


def _split_val(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int = 12345) -> tuple[torch.Tensor, ...]:
    """A fixed validation split (the same for every run: it is part of the task, not the seed)."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, tr = perm[:n_val], perm[n_val:]
    return x[tr], y[tr], x[val], y[val]


# ---------------------------------------------------------------------------- synthetic
@functools.lru_cache(maxsize=2)
def _synthetic(_: str = "") -> Split:
    g = torch.Generator().manual_seed(2024)
    dim, classes = 32, 10
    centers = torch.randn(classes, dim, generator=g) * 0.3  # overlapping clusters: accuracy well below 1

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=g)
        return centers[y] + torch.randn(n, dim, generator=g), y

    x, y = draw(4096 + 512)
    x_te, y_te = draw(1024)
    return Split(*_split_val(x, y, 512), x_te, y_te)


def _mlp(d_in: int, hidden: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, classes))


# ---------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=2)
def _digits(_: str = "") -> Split:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(7))
    x, y = x[perm], y[perm]
    x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:]
    return Split(*_split_val(x_tr, y_tr, 200), x_te, y_te)


# ---------------------------------------------------------------------------- cifar10
@functools.lru_cache(maxsize=1)
def _cifar(data_dir: str, do_download: bool) -> Split:
    from . import cifar10

    if do_download:
        cifar10.download(data_dir)
    raw = cifar10.load_cifar10(data_dir)
    x = cifar10.to_tensor(raw["x_train"])
    y = torch.from_numpy(raw["y_train"])
    x_te, y_te = cifar10.to_tensor(raw["x_test"]), torch.from_numpy(raw["y_test"])
    return Split(*_split_val(x, y, min(5000, len(x) // 10)), x_te, y_te)


def _cifar_model() -> nn.Module:
    from .cifar10 import FastNet

    return FastNet()


def _cifar_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    from .cifar10 import flip_and_translate

    return flip_and_translate(x, gen)


# ---------------------------------------------------------------------------- regression
@functools.lru_cache(maxsize=2)
def _regression(_: str = "") -> Split:
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=3000, n_features=10, noise=1.0, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    x_tr, y_tr, x_te, y_te = x[:2000], y[:2000], x[2000:], y[2000:]
    # Standardized on the training part: MSE in units of the target's variance (1.0: the mean).
    mx, sx, my, sy = x_tr.mean(0), x_tr.std(0), y_tr.mean(), y_tr.std()
    x_tr, x_te, y_tr, y_te = (x_tr - mx) / sx, (x_te - mx) / sx, (y_tr - my) / sy, (y_te - my) / sy
    split = Split(*_split_val(x_tr, y_tr, 300), x_te, y_te)
    split.baseline_loss = float(((y_te - split.y_train.mean()) ** 2).mean())
    return split


def _regression_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


# ---------------------------------------------------------------------------- charlm
CHARLM_CTX = 64


@functools.lru_cache(maxsize=1)
def _charlm(_: str = "") -> Split:
    from . import charlm

    x, y = charlm.windows(charlm.encode(charlm.corpus()), CHARLM_CTX)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(11))
    x, y = x[perm], y[perm]
    x_tr, y_tr, x_te, y_te = x[512:], y[512:], x[:512], y[:512]
    split = Split(*_split_val(x_tr, y_tr, 256), x_te, y_te)
    split.baseline_loss = charlm.unigram_loss(split.y_train, y_te)
    return split


def _charlm_model() -> nn.Module:
    from .charlm import CharLM

    return CharLM(ctx=CHARLM_CTX)


# ---------------------------------------------------------------------------- fashion-mnist
@functools.lru_cache(maxsize=1)
def _fashion(data_dir: str | None) -> Split:
    from . import fashion_mnist as fm

    raw = fm.load_fashion_mnist(data_dir)
    x, y = fm.to_tensor(raw["x_train"]), torch.from_numpy(raw["y_train"])
    # Fixed subsets (9,000 of the 60,000 training images, 5,000 of the 10,000 test images) keep a
    # run to seconds on one core.
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:9000]
    x_te, y_te = fm.to_tensor(raw["x_test"][:5000]), torch.from_numpy(raw["y_test"][:5000])
    return Split(*_split_val(x[keep], y[keep], min(1000, len(keep) // 5)), x_te, y_te)


def _fashion_model() -> nn.Module:
    from .fashion_mnist import small_cnn

    return small_cnn()


TASKS: dict[str, Task] = {
    "synthetic": Task("synthetic", lambda o: _synthetic(), lambda: _mlp(32, 64, 10), epochs=4, batch_size=64,
                      lr=0.05, eval_every=16, controller_every=10, tune_horizon=30),
    "digits": Task("digits", lambda o: _digits(), lambda: _mlp(64, 128, 10), epochs=12, batch_size=32,
                   lr=0.05, eval_every=25, controller_every=10, tune_horizon=40),
    "cifar10": Task("cifar10", lambda o: _cifar(str(o.get("data_dir") or "data"), bool(o.get("download"))),
                    _cifar_model, epochs=10, batch_size=512, lr=0.1, weight_decay=5e-4, label_smoothing=0.2,
                    eval_every=44, controller_every=22, tune_horizon=44, augment=_cifar_augment),
    "charlm": Task("charlm", lambda o: _charlm(), _charlm_model, epochs=3, batch_size=32, lr=1e-2, weight_decay=0.01,
                   eval_every=25, controller_every=10, tune_horizon=40, kind="lm", optimizer="adamw",
                   warmup_steps=50, classes=97),
    "regression": Task("regression", lambda o: _regression(), _regression_mlp, epochs=12, batch_size=32, lr=0.02,
                       weight_decay=0.0, eval_every=25, controller_every=10, tune_horizon=40, kind="regress",
                       classes=0),
    "fashion-mnist": Task("fashion-mnist", lambda o: _fashion(o.get("data_dir")), _fashion_model, epochs=3,
                          batch_size=64, lr=0.05, eval_every=50, controller_every=10, tune_horizon=40),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise SystemExit(f"hotcb eval: unknown task {name!r}; tasks: {', '.join(TASKS)}") from None
