"""After an overshot warmup: cut the schedule's peak, a guarded step at a time, to the range test's rule.

A warmup that overshoots (``hotcb.warmup_watch``) has measured the lr where the loss stopped
falling; a run trains well about ``range_rule`` (a tenth) of it. The rescue's rollback cuts lr
once (x``cut``), which leaves the schedule's peak far above that, and one op may not cut further
than the guard's per-op ratio allows (charlm x30, seeds 0 and 1: the loss turned at lr 0.234 of a
peak of 0.3; the rollback left 0.15, and three cuts took it to 0.075, 0.0375 and 0.0234). So
``PeakCut`` keeps the overshoot and, a step at a time, says the next cut: lr x ``cut`` (or less,
to land on the goal), until the schedule's base is at most ``range_rule`` x the lr at the low. A
change of a scheduled knob scales its schedule, so each cut lowers the peak by its factor. The
goal's lr also names where the rollback may go back to: a state trained only at lrs at or below
it.

Pure decisions here; ``hotcb.rescue.Rescue`` owns the peak cut and ``hotcb.overshot_warmup``
submits what it decides, each cut one guarded lr op (``hotcb.rule_lr_op``: source ``rule``, actor
``rescue``), asked of the guard first so that a wait for the knob's cooldown leaves no refusal in
the ledger.
"""

from __future__ import annotations

from .probe import ProbeStep
from .warmup_watch import Overshoot


class PeakCut:
    """One per run: ``arm`` it with an overshoot rolled back, then ``decide`` every step until it
    settles (``active`` while there is a peak to cut)."""

    def __init__(self, range_rule: float, cut: float):
        self.range_rule = range_rule  # the peak's goal: this share of the lr where the loss turned
        self.cut = cut  # each cut at most this factor (the guard's per-op limit binds it too)
        self.target: Overshoot | None = None  # the overshoot whose peak is being cut

    @property
    def active(self) -> bool:
        return self.target is not None

    def goal(self, over: Overshoot) -> float:
        """The lr the schedule's peak is cut to (and the highest a rollback's state was trained at)."""
        return self.range_rule * over.low_lr

    def arm(self, over: Overshoot) -> None:
        """The overshoot's rollback landed: cut the schedule toward its goal from the next step."""
        self.target = over

    def settle(self) -> None:
        """Nothing more to cut (there, no schedule, a locked knob, or a refusal the run keeps)."""
        self.target = None

    def decide(self, lr: float | None, base: float | None) -> ProbeStep | None:
        """The next cut of the knob at ``lr`` (live) whose schedule's base is ``base``; None when
        there is none to make (and then it settles)."""
        over = self.target
        if over is None:
            return None
        goal = self.goal(over)
        if lr is None or not lr > 0 or base is None or not base > goal * (1 + 1e-9):
            self.settle()  # there (or no schedule to cut)
            return None
        factor = max(self.cut, goal / base)
        return ProbeStep(factor, f"rescue: the warmup overshot at step {over.step} (the loss turned at lr "
                         f"{over.low_lr:.4g}, step {over.low_step}): the schedule's peak {base:.4g} -> "
                         f"{base * factor:.4g}, toward {goal:.4g} ({self.range_rule:g} x that lr)")
