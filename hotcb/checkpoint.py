"""Snapshots of registered training state, for ``core checkpoint`` and ``core rollback``.

A snapshot holds deep copies (on CPU) of each registered object's ``state_dict()`` plus the
knob values; restoring loads them back and re-applies the knob values, because loading an
optimizer's state would otherwise silently reset lr to the snapshot's param groups only.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any


def _to_cpu(obj: Any) -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return copy.deepcopy(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class Snapshot:
    step: int
    states: dict[str, Any]
    knobs: dict[str, Any]
    reason: str | None = None


class Snapshots:
    def __init__(self, keep: int = 3):
        self.objects: dict[str, Any] = {}
        self.snapshots: deque[Snapshot] = deque(maxlen=max(1, keep))

    def register(self, name: str, obj: Any) -> None:
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"{name}: needs state_dict() and load_state_dict()")
        self.objects[name] = obj

    def take(self, step: int, knobs: dict[str, Any], reason: str | None = None) -> Snapshot:
        if not self.objects:
            raise RuntimeError("no state registered for checkpoints (kernel.register_state)")
        snap = Snapshot(step, {n: _to_cpu(o.state_dict()) for n, o in self.objects.items()}, dict(knobs), reason)
        self.snapshots.append(snap)
        return snap

    def find(self, step: int | None = None) -> Snapshot:
        if not self.snapshots:
            raise RuntimeError("no snapshot to roll back to")
        if step is None:
            return self.snapshots[-1]
        eligible = [s for s in self.snapshots if s.step <= step]
        if not eligible:
            have = [s.step for s in self.snapshots]
            raise RuntimeError(f"no snapshot at or before step {step} (have {have})")
        return eligible[-1]

    def restore(self, snap: Snapshot) -> None:
        for name, state in snap.states.items():
            obj = self.objects.get(name)
            if obj is not None:
                obj.load_state_dict(copy.deepcopy(state))

    def steps(self) -> list[int]:
        return [s.step for s in self.snapshots]
