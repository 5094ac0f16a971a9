"""The rescue's answer to an overshot warmup: roll back to a state the warmup allows, then cut
the schedule's peak.

The warmup watch (``hotcb.warmup_watch``) says once that the loss turned up while the scheduler
raised lr. The run goes back to the newest healthy state trained only at lrs the range test
allows (``RollbackTargets.trained_at_most``), lr cut, as a rescue rollback; then the peak cut
(``hotcb.peak_cut``) lowers the schedule, a guarded rule op at a time (``hotcb.rule_lr_op``),
until its peak is the range test's share of the lr at the low. While that rollback is submitted
the rescue's verdict is ``overshot``: the detector alone calls such a run healthy, and the judge
lets a rule roll back only a run that is not.

``hotcb.rescue.Rescue`` owns one ``OvershotWarmup`` and hands it the way it submits a rescue
rollback (which keeps the rescue's books).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .checkpoint import Snapshot
from .lr_track import LrTrack
from .modules import ApplyContext
from .peak_cut import PeakCut
from .rollback_target import RollbackTargets
from .rule_lr_op import RuleLrOp
from .warmup_watch import Overshoot


class OvershotWarmup:
    def __init__(self, peak_cut: PeakCut, targets: RollbackTargets, lr_track: LrTrack, lr_op: RuleLrOp,
                 rollback: Callable[[ApplyContext, Snapshot | None, str, float], dict[str, Any]], *, actor: str):
        self.peak_cut = peak_cut
        self.targets = targets
        self.lr_track = lr_track
        self.lr_op = lr_op
        self.rollback = rollback  # the rescue's: submit one rescue rollback and keep its books
        self.actor = actor  # the peak cut's ops are the rescue's
        self.rolling_back = False  # rolling back an overshot warmup, this step (the verdict is ``overshot``)

    def mind(self, ctx: ApplyContext, overshoot: Overshoot | None, x: float, *, spent: bool) -> bool:
        """An overshot warmup rolled back (True: this step's work is done; none once the rescue's
        rollbacks are ``spent``), or the schedule's next cut."""
        if overshoot is not None:
            if not spent:
                self._roll_back(ctx, overshoot, x)
            return True
        if self.peak_cut.active:
            self._cut_peak(ctx)
        return False

    def _roll_back(self, ctx: ApplyContext, over: Overshoot, x: float) -> None:
        """The warmup measured the schedule's peak as too high: back to the newest healthy state
        trained only at lrs the range test allows, lr cut, and then the schedule cut further
        (``_cut_peak``) until its peak is the range test's share of the lr at the low. A state
        from further into the warmup is no place to resume: charlm x30 rolled back to step 20 (lr
        0.126, 5x the rule's) and cut to the rule ended at 2.27-2.30 nats, where its first state,
        at the rule's lr, ends near the tuned start's."""
        snap = self.targets.trained_at_most(self.peak_cut.goal(over), over.low_step)
        if snap is None:
            return
        self.rolling_back = True
        try:
            entry = self.rollback(ctx, snap, over.reason(self.peak_cut.range_rule), x)
        finally:
            self.rolling_back = False
        if entry.get("decision") == "applied":
            self.peak_cut.arm(over)

    def _cut_peak(self, ctx: ApplyContext) -> None:
        """The peak cut's next cut of the schedule, as soon as the guard allows one (its cooldown:
        asked before, so a wait leaves no refusal behind)."""
        if self.lr_op.locked:
            self.peak_cut.settle()
            return
        act, lr = self.lr_track.live()
        cut = self.peak_cut.decide(lr, self.lr_track.schedule_base())
        if cut is None or act is None or lr is None:
            return
        entry = self.lr_op.send(act, lr * cut.factor, ctx, actor=self.actor, reason=cut.reason)
        if entry is not None and entry.get("decision") != "applied":
            self.peak_cut.settle()  # refused by the judge for another reason: the run keeps what it has
