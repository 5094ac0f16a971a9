"""The loop the README shows, against the same loop without hotcb, side by side in one process.

    python benchmarks/bench_loop.py [--blocks 60] [--block-steps 100] [--big-block-steps 6]

The hotcb loop is the README's: ``optimizer_actuators(opt, scheduler=sched)`` plus a loss weight,
model and optimizer registered, the rescue on (its detector, probe and healthy snapshots every
50 steps), metrics (``train_loss``, ``lr``) every step, ``kernel.apply`` after every step. The
bare loop is the same training step without any of it. Three steps: a regression MLP at two
widths (hidden 128: ~0.6 ms a step on a CPU core; hidden 256: ~1 ms) and a CNN (~50 ms). Blocks of each alternate (bare, hotcb, bare, ...) so that a
change of load hits both; the figure is the median over pairs of blocks of hotcb's extra time
per step, and its share of the bare step; beside it, the time spent inside ``kernel.apply``
itself (what hotcb runs on the step; the rest of the difference is the load's noise and the
caches and collector the extra work disturbs), and the same difference in the process's CPU
time (hotcb's background writers included), which a shared machine's run queue does not inflate:
time spent waiting for a core counts in wall-clock time only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.rescue import rescue_of

Step = Callable[[], float]


def mlp_task(seed: int = 0, hidden: int = 128) -> tuple[nn.Module, Step, torch.optim.Optimizer]:
    """A regression MLP, SGD with momentum, MSE: 0.5-1 ms a step on one core (by ``hidden``)."""
    torch.manual_seed(seed)
    x, w = torch.randn(4096, 32), torch.randn(32, 1)
    y = x @ w + 0.1 * torch.randn(4096, 1)
    model = nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)

    def step() -> float:
        idx = torch.randint(0, 4096, (64,), generator=g)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return model, step, opt


def wide_mlp_task(seed: int = 0) -> tuple[nn.Module, Step, torch.optim.Optimizer]:
    """The same regression MLP with hidden 256: about a millisecond a step on one core."""
    return mlp_task(seed, hidden=256)


def cnn_task(seed: int = 0, batch: int = 64) -> tuple[nn.Module, Step, torch.optim.Optimizer]:
    """A CNN on 32x32 images, about 50 ms a step on one core."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step() -> float:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return model, step, opt


class Bare:
    def __init__(self, make: Callable[[], tuple[nn.Module, Step, torch.optim.Optimizer]]):
        self.model, self.train, self.opt = make()
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: min(1.0, (e + 1) / 50))

    def step(self, i: int) -> None:
        self.train()
        self.sched.step()

    def close(self) -> None:
        pass


class WithHotcb(Bare):
    """The README's loop."""

    def __init__(self, make: Callable[[], tuple[nn.Module, Step, torch.optim.Optimizer]], run_dir: str):
        super().__init__(make)
        self.weights = {"aux_w": 1.0}
        state = mutable_state(optimizer_actuators(self.opt, scheduler=self.sched) + loss_actuators(self.weights))
        self.kernel = HotKernel(run_dir, mutable_state=state)
        self.kernel.register_state("model", self.model)
        self.kernel.register_state("optimizer", self.opt)
        rescue_of(self.kernel).configure(enabled=True)
        self.in_apply = 0.0  # seconds spent inside kernel.apply

    def step(self, i: int) -> None:
        loss = self.train()
        self.sched.step()
        t0 = time.perf_counter()
        self.kernel.apply(env={"step": i, "optimizer": self.opt, "scheduler": self.sched,
                               "metrics": {"train_loss": loss, "lr": self.opt.param_groups[0]["lr"]}},
                          events=["train_step_end"])
        self.in_apply += time.perf_counter() - t0

    def close(self) -> None:
        self.kernel.close()


def side_by_side(make: Callable[[], tuple[nn.Module, Step, torch.optim.Optimizer]], blocks: int,
                 steps: int) -> dict[str, float]:
    """Per step: the median bare and hotcb blocks, the median of hotcb's extra over pairs of
    blocks, the median time inside ``kernel.apply``; and the quietest block of each (a block the
    machine's other load left alone: its minimum), for the cost without other people's jobs."""
    with tempfile.TemporaryDirectory() as d:
        hot = WithHotcb(make, d)
        loops: dict[str, Bare] = {"bare": Bare(make), "hotcb": hot}
        done = {"bare": 0, "hotcb": 0}
        per: dict[str, list[float]] = {"bare": [], "hotcb": []}
        cpu: dict[str, list[float]] = {"bare": [], "hotcb": []}
        inside: list[float] = []
        for b in range(blocks + 1):
            for name in ("bare", "hotcb") if b % 2 == 0 else ("hotcb", "bare"):
                loop = loops[name]
                hot.in_apply = 0.0
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    done[name] += 1
                    loop.step(done[name])
                if b > 0:  # the first pair warms up (allocations, first snapshot, first files)
                    per[name].append((time.perf_counter() - t0) / steps)
                    cpu[name].append((time.process_time() - c0) / steps)
                    if name == "hotcb":
                        inside.append(hot.in_apply / steps)
        for loop in loops.values():
            loop.close()
    extra = [h - b for h, b in zip(per["hotcb"], per["bare"], strict=True)]
    cpu_extra = [h - b for h, b in zip(cpu["hotcb"], cpu["bare"], strict=True)]
    return {"bare": statistics.median(per["bare"]), "hotcb": statistics.median(per["hotcb"]),
            "extra": statistics.median(extra), "inside": statistics.median(inside),
            "bare_min": min(per["bare"]), "hotcb_min": min(per["hotcb"]), "inside_min": min(inside),
            "cpu_bare": statistics.median(cpu["bare"]), "cpu_extra": statistics.median(cpu_extra)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=60)
    ap.add_argument("--block-steps", type=int, default=100, help="steps per block of the MLP loops")
    ap.add_argument("--big-block-steps", type=int, default=6, help="steps per block of the ~50 ms loop")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print("| step | bare ms/step | hotcb ms/step | hotcb's extra ms/step (share of the bare step) "
          "| inside kernel.apply ms/step (share) | quietest blocks: bare, hotcb ms/step (share) "
          "| quietest: inside kernel.apply (share) | CPU time: bare ms/step, hotcb's extra (share) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, make, steps in (("MLP regression, hidden 128", mlp_task, args.block_steps),
                              ("MLP regression, hidden 256", wide_mlp_task, args.block_steps),
                              ("CNN 32x32", cnn_task, args.big_block_steps)):
        r = side_by_side(make, args.blocks, steps)
        bare, lo = r["bare"], r["bare_min"]
        print(f"| {name} | {bare * 1e3:.3f} | {r['hotcb'] * 1e3:.3f} | {r['extra'] * 1e3:.4f} "
              f"({100 * r['extra'] / bare:.2f}%) | {r['inside'] * 1e3:.4f} ({100 * r['inside'] / bare:.2f}%) "
              f"| {lo * 1e3:.3f}, {r['hotcb_min'] * 1e3:.3f} ({100 * (r['hotcb_min'] - lo) / lo:.2f}%) "
              f"| {r['inside_min'] * 1e3:.4f} ({100 * r['inside_min'] / lo:.2f}%) "
              f"| {r['cpu_bare'] * 1e3:.3f}, {r['cpu_extra'] * 1e3:.4f} ({100 * r['cpu_extra'] / r['cpu_bare']:.2f}%) |",
              flush=True)


if __name__ == "__main__":
    main()
