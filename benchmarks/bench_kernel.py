"""Kernel overhead and command latency, measured side by side in one run.

    python benchmarks/bench_kernel.py [--calls 50000] [--train-steps 60] [--latency-cmds 40]

1. ``kernel.apply`` with no pending command, in a tight loop: median cost per call, and the
   ratio to one training step of a ~95k-parameter CNN on this machine (CIFAR-sized batch).
2. File activity of those calls: opens for reading / writing and stats, counted by wrapping
   ``open``/``os.open``/``os.stat``/``os.lstat`` (proves apply reads nothing when nothing changed).
3. Command latency: a writer thread appends commands at random moments into a 10 ms step loop;
   latency is the decision step minus the step running when the line was appended.
"""

from __future__ import annotations

import argparse
import builtins
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, 10),
    )


def train_step_cost(steps: int, batch: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = cnn()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 5:  # warm-up excluded
            times.append(time.perf_counter() - t0)
    return statistics.median(times), n_params


def kernel_for(run_dir: str) -> HotKernel:
    model = cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(opt) + loss_actuators({"aux_w": 1.0})))


def apply_cost(calls: int, batch: int = 1000) -> float:
    """Median per-call cost over batches of ``batch`` calls (a batch median resists noise)."""
    with tempfile.TemporaryDirectory() as d:
        k = kernel_for(d)
        env = {"step": 0}
        per_call = []
        step = 0
        for _ in range(calls // batch):
            t0 = time.perf_counter()
            for _ in range(batch):
                step += 1
                env["step"] = step
                k.apply(env=env)
            per_call.append((time.perf_counter() - t0) / batch)
        k.close()
    return statistics.median(per_call)


class FileActivity:
    """Counts opens (read / write) and stats while active, delegating to the real calls."""

    def __init__(self) -> None:
        self.read_opens = self.write_opens = self.stats = 0
        self._open, self._os_open, self._stat, self._lstat = builtins.open, os.open, os.stat, os.lstat

    def __enter__(self) -> FileActivity:
        def counting_open(file, mode="r", *a, **kw):
            if any(c in mode for c in "wax+"):
                self.write_opens += 1
            else:
                self.read_opens += 1
            return self._open(file, mode, *a, **kw)

        def counting_os_open(path, flags, *a, **kw):
            if flags & (os.O_WRONLY | os.O_RDWR):
                self.write_opens += 1
            else:
                self.read_opens += 1
            return self._os_open(path, flags, *a, **kw)

        def counting_stat(*a, **kw):
            self.stats += 1
            return self._stat(*a, **kw)

        def counting_lstat(*a, **kw):
            self.stats += 1
            return self._lstat(*a, **kw)

        builtins.open, os.open, os.stat, os.lstat = counting_open, counting_os_open, counting_stat, counting_lstat
        return self

    def __exit__(self, *exc) -> None:
        builtins.open, os.open, os.stat, os.lstat = self._open, self._os_open, self._stat, self._lstat


def file_activity(calls: int) -> tuple[FileActivity, float]:
    with tempfile.TemporaryDirectory() as d:
        k = kernel_for(d)
        k.apply(env={"step": 0})
        t0 = time.perf_counter()
        with FileActivity() as fa:
            for step in range(1, calls + 1):
                k.apply(env={"step": step})
        elapsed = time.perf_counter() - t0
        k.close()
    return fa, elapsed


def command_latency(n_cmds: int, step_s: float = 0.010) -> tuple[list[int], list[float]]:
    with tempfile.TemporaryDirectory() as d:
        k = kernel_for(d)
        sent: dict[str, tuple[int, float]] = {}
        current = {"step": 0}
        done = threading.Event()

        def writer() -> None:
            rng = random.Random(0)
            for i in range(n_cmds):
                time.sleep(rng.uniform(0.005, 0.045))
                rec = make_command("loss", "set_params", {"aux_w": 1.0 + (i % 5) * 0.1}, cmd_id=f"lat-{i}")
                sent[rec["cmd_id"]] = (current["step"], time.perf_counter())
                append_line(Path(d) / "hotcb.commands.jsonl", rec)
            done.set()

        th = threading.Thread(target=writer)
        th.start()
        decided_at: dict[str, float] = {}
        seen = 0
        step = 0
        while not done.is_set() or seen < n_cmds:
            t0 = time.perf_counter()
            step += 1
            current["step"] = step
            k.apply(env={"step": step})
            entries = read_all(Path(d) / "hotcb.applied.jsonl") if len(decided_at) < len(sent) else []
            for e in entries[seen:]:
                decided_at[e["cmd_id"]] = time.perf_counter()
            seen = max(seen, len(entries))
            time.sleep(max(0.0, step_s - (time.perf_counter() - t0)))
        th.join()
        ledger = {e["cmd_id"]: e for e in read_all(Path(d) / "hotcb.applied.jsonl")}
        k.close()
    steps = [ledger[c]["step"] - s for c, (s, _) in sent.items()]
    ms = [1000 * (decided_at[c] - t) for c, (_, t) in sent.items() if c in decided_at]
    return steps, ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50000)
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latency-cmds", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}")

    step_s, n_params = train_step_cost(args.train_steps, args.batch)
    apply_s = apply_cost(args.calls)
    step_s2, _ = train_step_cost(args.train_steps, args.batch)  # again, so a load change shows
    step_med = statistics.median([step_s, step_s2])
    print(f"CNN: {n_params} parameters, batch {args.batch}x3x32x32, median train step {step_med * 1e3:.2f} ms "
          f"(runs: {step_s * 1e3:.2f}, {step_s2 * 1e3:.2f})")
    print(f"kernel.apply, no pending command: median {apply_s * 1e6:.2f} us/call "
          f"= {100 * apply_s / step_med:.4f}% of a training step (goal < 20 us and < 0.5%)")

    fa, elapsed = file_activity(10000)
    print(f"file activity over 10000 idle apply calls ({elapsed:.2f} s): read opens {fa.read_opens}, "
          f"write opens {fa.write_opens} (status heartbeat every 0.5 s), stats {fa.stats}")

    steps, ms = command_latency(args.latency_cmds)
    hist = {k: steps.count(k) for k in sorted(set(steps))}
    print(f"command latency in a 10 ms step loop ({len(steps)} commands): steps append->decision "
          f"median {statistics.median(steps)}, max {max(steps)}, histogram {hist}; "
          f"wall median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")


if __name__ == "__main__":
    main()
