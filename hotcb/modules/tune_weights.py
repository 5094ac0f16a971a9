"""The weights a trial started from, so a rejected trial cannot leave a wrecked network behind.

Knobs alone are not the run: a trial that pushed lr too far has already changed the weights (and
the optimizer's momentum buffers) by the time it is scored. ``TrialWeights`` takes a private
snapshot (one ``Snapshots`` of its own, never the kernel's ring, whose snapshots mean "healthy
points" to the rescue) of the state registered with the kernel (``kernel.register_state``: model,
optimizer, scheduler) right before a trial's change, and loads it back when the trial is undone.

Restoring an optimizer's state also restores its param groups (lr, momentum, ...); the live
knob values from just before the restore are re-imposed afterwards, so a knob someone else set
meanwhile is not silently undone by the load (``restore_knobs`` applies only those that differ).
Under torch.distributed each rank would have to restore at the same step; tune does not take
weights there (knobs are rolled back as before).
"""

from __future__ import annotations

import logging
from typing import Any

from ..checkpoint import Snapshot, Snapshots, live_knob_values, restore_knobs

log = logging.getLogger("hotcb.tune")


class TrialWeights:
    """One private snapshot of the registered training state, for the trial in flight."""

    def __init__(self, kernel: Any):
        self.kernel = kernel
        self._ring = Snapshots(keep=1)
        self._snap: Snapshot | None = None

    @property
    def available(self) -> bool:
        """Whether weights can be taken: state is registered and the run is single-process."""
        return bool(self.kernel.snapshots.objects) and self.kernel.dist is None

    @property
    def step(self) -> int | None:
        return self._snap.step if self._snap is not None else None

    def take(self, step: int) -> int | None:
        """Snapshot the registered state now; returns its step, or None when there is none to take."""
        self._snap = None
        if not self.available:
            return None
        self._ring.objects = self.kernel.snapshots.objects  # the same objects, registered once
        self._snap = self._ring.take(step, live_knob_values(self.kernel.state), "tune trial")
        return step

    def restore(self, env: dict[str, Any], step: int) -> int | None:
        """Load the trial's starting weights back; returns their step (None: nothing was taken)."""
        snap, self._snap = self._snap, None
        if snap is None:
            return None
        knobs = live_knob_values(self.kernel.state)  # as the rollback left them
        self._ring.restore(snap)
        restore_knobs(self.kernel.state, knobs, env, step)
        self._ring.snapshots.clear()
        return snap.step

    def drop(self) -> None:
        """The trial ended without needing its weights back: free the copy."""
        self._snap = None
        self._ring.snapshots.clear()
