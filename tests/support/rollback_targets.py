"""A ``RollbackTargets`` over a one-tensor state, with the run's first state held: for tests of
the rollback choice without a training loop."""

from __future__ import annotations

import torch

from hotcb.checkpoint import Snapshots
from hotcb.divergence import DetectorConfig, LossDetector
from hotcb.rollback_target import RollbackTargets


class Weight:
    """The smallest registered state: one tensor, restored by copy."""

    def __init__(self) -> None:
        self.w = torch.zeros(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"w": self.w}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        self.w = d["w"].clone()


def held_start(first_lr: float) -> tuple[Snapshots, RollbackTargets, LossDetector]:
    """A ring of 4 snapshots, the targets (knob ``lr``, blame 100 steps) holding the run's first
    state at ``first_lr``, and a classifier's detector (10 classes)."""
    snaps = Snapshots(keep=4)
    snaps.register("m", Weight())
    targets = RollbackTargets(snaps, "lr", blame_steps=100)
    det = LossDetector(DetectorConfig(classes=10))
    start = snaps.capture(0, {"lr": first_lr}, "run start")
    start.healthy = True
    snaps.add_oldest(start)
    targets.hold_start(start, det)
    return snaps, targets, det
