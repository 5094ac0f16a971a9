"""Snapshots reuse the tensors of the snapshot a new one evicts (``hotcb.state_copy``): the
ring and every kept snapshot's values are what fresh copies give, a restored model or
optimizer never shares a tensor with a kept snapshot (so its later in-place steps cannot change
one), and a snapshot whose tensors were reused can never be restored."""

from __future__ import annotations

import random
from collections import deque

import pytest
import torch
from torch import nn

from hotcb import state_copy
from hotcb.checkpoint import Snapshot, Snapshots
from hotcb.state_copy import to_cpu


@pytest.fixture(autouse=True)
def reuse_every_buffer(monkeypatch):
    """Small test models: every tensor reused, as a large model's are."""
    monkeypatch.setattr(state_copy, "MIN_REUSE_BYTES", 0)


def _setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, (e + 1) / 5))
    return model, opt, sched


def _train(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
           steps: int = 1) -> None:
    gen = model.__dict__.setdefault("_test_batches", torch.Generator().manual_seed(1))  # each model its own
    for _ in range(steps):
        x = torch.randn(16, 8, generator=gen)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _same(a, b) -> bool:
    """Equal structure and values, tensors bit for bit (same dtype, shape and strides)."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and a.stride() == b.stride() and torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class FreshCopies(Snapshots):
    """The ring as it was before buffers were reused: a fresh copy, then the eviction."""

    def take(self, step, knobs, reason=None, healthy=False):
        snap = self.capture(step, knobs, reason)
        snap.healthy = healthy
        self.snapshots = deque([s for s in self.snapshots if s.step != step])
        self.snapshots.append(snap)
        self._evict()
        return snap


def _ring(snaps: Snapshots) -> list[tuple[int, bool]]:
    return [(s.step, s.healthy) for s in snaps.snapshots]


@pytest.mark.parametrize("keep", [1, 2, 3, 4])
@pytest.mark.parametrize("large", [0, 1 << 20])  # every tensor reused; none (the test model's are small)
def test_reused_buffers_give_the_ring_and_values_of_fresh_copies(monkeypatch, keep: int, large: int):
    monkeypatch.setattr(state_copy, "MIN_REUSE_BYTES", large)
    rng = random.Random(keep)
    model, opt, sched = _setup()
    model2, opt2, sched2 = _setup()  # the same run, snapshotted with fresh copies
    new, old = Snapshots(keep=keep), FreshCopies(keep=keep)
    for s, (m, o, sc) in ((new, (model, opt, sched)), (old, (model2, opt2, sched2))):
        s.register("model", m)
        s.register("optimizer", o)
        s.register("scheduler", sc)
    start = new.capture(0, {"lr": 0.05}, "run start")  # held outside the ring, as the rescue's start is
    start_values = to_cpu(start.states)
    new.add_oldest(start)
    old.add_oldest(old.capture(0, {"lr": 0.05}, "run start"))
    step = 0
    for _ in range(300):
        _train(model, opt, sched)
        _train(model2, opt2, sched2)
        step += 1
        r = rng.random()
        if r < 0.45:
            at = step if rng.random() < 0.85 else rng.choice(new.steps() or [step])  # a step taken again too
            healthy = rng.random() < 0.3
            new.take(at, {"lr": opt.param_groups[0]["lr"]}, healthy=healthy)
            old.take(at, {"lr": opt2.param_groups[0]["lr"]}, healthy=healthy)
        elif r < 0.65:
            lo = rng.randint(max(0, step - 60), step)
            new.confirm(lo, step)
            old.confirm(lo, step)
        elif r < 0.70 and new.snapshots:
            to = rng.choice(new.steps())
            new.restore(next(s for s in new.snapshots if s.step == to))
            old.restore(next(s for s in old.snapshots if s.step == to))
            new.drop_after(to)
            old.drop_after(to)
        assert _ring(new) == _ring(old)
        for a, b in zip(new.snapshots, old.snapshots, strict=True):
            assert a.knobs == b.knobs and _same(a.states, b.states), a.step
        for name, t in model.state_dict().items():
            assert torch.equal(t, model2.state_dict()[name])  # the two runs never drifted apart
    assert _same(start.states, start_values)  # the start, never the ring's, was never written into


def test_a_take_that_evicts_writes_into_the_evicted_snapshots_tensors():
    model, opt, sched = _setup()
    snaps = Snapshots(keep=2)
    snaps.register("model", model)
    snaps.register("optimizer", opt)
    _train(model, opt, sched)
    first = snaps.take(1, {}, healthy=True)
    _train(model, opt, sched)
    snaps.take(2, {}, healthy=True)
    buffers = {t.data_ptr() for t in _tensors(first.states)}
    _train(model, opt, sched)
    third = snaps.take(3, {}, healthy=True)  # evicts step 1
    assert snaps.steps() == [2, 3]
    assert {t.data_ptr() for t in _tensors(third.states)} == buffers
    assert _same(third.states, to_cpu({"model": model.state_dict(), "optimizer": opt.state_dict()}))
    assert first.states is None
    with pytest.raises(RuntimeError, match="left the ring"):
        snaps.restore(first)  # its tensors are the step-3 snapshot's now


def test_a_restored_model_and_optimizer_share_no_tensor_with_a_kept_snapshot():
    model, opt, sched = _setup()
    snaps = Snapshots(keep=3)
    snaps.register("model", model)
    snaps.register("optimizer", opt)
    for step in range(1, 13):  # the ring turns over several times: buffers reused
        _train(model, opt, sched)
        snaps.take(step, {}, healthy=True)
    kept = {s.step: to_cpu(s.states) for s in snaps.snapshots}
    target = snaps.snapshots[0]
    snaps.restore(target)
    live = _tensors(model.state_dict()) + _tensors(opt.state_dict())
    assert live and any("momentum_buffer" in st for st in opt.state_dict()["state"].values())
    stored = {t.untyped_storage().data_ptr() for s in snaps.snapshots for t in _tensors(s.states)}
    assert not stored & {t.untyped_storage().data_ptr() for t in live}
    _train(model, opt, sched, steps=5)  # in-place optimizer steps on the restored state
    for s in snaps.snapshots:
        assert _same(s.states, kept[s.step]), s.step
    _train(model, opt, sched)
    snaps.take(13, {}, healthy=True)  # and a take after the restore reuses buffers, not live tensors
    for s in list(snaps.snapshots)[:-1]:
        assert _same(s.states, kept[s.step]), s.step


def test_a_snapshot_held_outside_the_ring_is_never_written_into():
    """A captured snapshot (the rescue's start, a tune trial's) may leave the ring and still be
    restored: its tensors are never lent."""
    model, opt, sched = _setup()
    snaps = Snapshots(keep=1)
    snaps.register("model", model)
    held = snaps.capture(0, {}, "run start")
    held.healthy = True
    values = to_cpu(held.states)
    snaps.add_oldest(held)
    for step in range(1, 6):
        _train(model, opt, sched)
        snaps.take(step, {}, healthy=True)
    assert all(s is not held for s in snaps.snapshots) and isinstance(held, Snapshot)
    assert _same(held.states, values)
    snaps.restore(held)
    assert _same(to_cpu(model.state_dict()), values["model"])
