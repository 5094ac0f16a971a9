"""The weights a trial started from, so a rejected trial cannot leave a wrecked network behind.

Knobs alone are not the run: a trial that pushed lr too far has already changed the weights (and
the optimizer's momentum buffers) by the time it is scored. ``TrialWeights`` takes a private
snapshot (captured in memory, never put in the kernel's ring, whose snapshots mean "healthy
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

from ..checkpoint import Snapshot, live_knob_values, restore_knobs
from .host import WeightsHost

log = logging.getLogger("hotcb.tune")


class TrialWeights:
    """One private snapshot of the registered training state, for the trial in flight."""

    def __init__(self, host: WeightsHost):
        self._host = host
        self._snap: Snapshot | None = None

    @property
    def available(self) -> bool:
        """Whether weights can be taken: state is registered and the run is single-process."""
        return bool(self._host.snapshots.objects) and self._host.dist is None

    @property
    def step(self) -> int | None:
        return self._snap.step if self._snap is not None else None

    def take(self, step: int) -> int | None:
        """Snapshot the registered state now; returns its step, or None when there is none to take."""
        self._snap = None
        if not self.available:
            return None
        self._snap = self._host.snapshots.capture(step, live_knob_values(self._host.state), "tune trial")
        return step

    def restore(self, env: dict[str, Any], step: int) -> int | None:
        """Load the trial's starting weights back; returns their step (None: nothing was taken)."""
        snap, self._snap = self._snap, None
        if snap is None:
            return None
        knobs = live_knob_values(self._host.state)  # as the rollback left them
        self._host.snapshots.restore(snap)
        restore_knobs(self._host.state, knobs, env, step)
        return snap.step

    def drop(self) -> None:
        """The trial ended without needing its weights back: free the copy."""
        self._snap = None
