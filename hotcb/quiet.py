"""``QuietSteps``: a stretch of coming steps on which the rescue can do nothing but feed its
detector, so their losses are kept and fed to it in one batch.

On most steps of a healthy run the rescue's work is its detector's update and a few checks that
all come out "nothing to do" (no blow-up, no snapshot due, none to confirm, no lr move), yet it
costs tens of microseconds right after a training step (a ~1 ms step's budget for all of hotcb
is 50). After a full step the rescue works out how far that must stay so (``Rescue._open_quiet``):

- the detector gives a band of losses it is certain to judge healthy for the next
  ``QUIET_POINTS`` points, in any order (``LossDetector.quiet_band``, with the proof);
- the stretch ends before the next periodic snapshot, before a snapshot taken since the current
  healthy run would be confirmed, at the run's first step (a rollback there keeps its loss), and
  before the descent's test of an lr too high could arm.

A step in the stretch checks, in a few comparisons, that it is the step expected next, its loss a
float inside the band, the snapshot ring the same object (a snapshot taken meanwhile, by an op or
the kernel, ends the stretch) and the run's length unchanged; then its loss waits in ``points``.
Anything else ends the stretch: the points are fed to the detector in order, in one call
(``Rescue._fold``, ``LossDetector.update_quiet``). The rescue then stands as a full step at the
stretch's last step would leave it, so when this step follows that one the next stretch is
worked out from there, and this step is its first if its loss is inside the new band
(``Rescue._reopen``); else the step is a full one. Whatever reads the detector (the judge's
verdict, the status, tune, an op of the rescue or a knob change) reads it through
``Rescue.detector``, which feeds the points first: every reader sees the detector as a
step-by-step update leaves it, and every decision is taken at the same step with the same
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUIET_POINTS = 8  # at most this many steps in a stretch (the band narrows with its length)


@dataclass(slots=True)
class QuietSteps:
    metric: str            # the loss's name in the step's metrics
    lo: float              # a float loss in [lo, hi] is judged healthy by the detector
    hi: float
    next: int              # the step expected next (the steps must follow one another)
    until: int             # the first step that is a full one again
    ring: Any              # the snapshot ring as it was (``Snapshots.snapshots``; a take replaces it)
    max_steps: int | None  # the run's length as it was (the descent's test depends on it)
    points: list[float] = field(default_factory=list)  # the losses waiting for the detector

    def keep(self, step: int, x: Any, ring: Any, max_steps: int | None) -> bool:
        """Keep this step's loss when the step is the one expected next and inside the stretch,
        the loss a float inside the band, and the snapshot ring and the run's length as they
        were (False: the stretch ends here)."""
        if (step == self.next < self.until and type(x) is float and self.lo <= x <= self.hi
                and ring is self.ring and max_steps == self.max_steps):
            self.points.append(x)
            self.next += 1
            return True
        return False
