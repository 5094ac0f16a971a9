"""The rescue's lr steps besides its rollbacks: the probe's way up and the descent's way down.

With the rescue's ``probe`` on: the probe (``hotcb.probe``) raises a start far too low, until it
settles (a rescue settles it); after a rescue of the run's own blow-up the descent
(``hotcb.descent``) cuts an lr still held up by the loss's noise floor, each cut measured; on a
run that never blew up and was never raised, the descent's test (one measured cut between 20%
and 60% of the run, undone unless the loss clearly drops) looks for an lr too high. Each step is
one guarded rule op (``hotcb.rule_lr_op``, actor ``probe`` or ``descent``), no cut below the
rescue's floor.

``hotcb.rescue.Rescue`` owns one ``LrSteps`` (over its probe and descent) and calls ``move`` at
the end of a full step.
"""

from __future__ import annotations

import math

from .descent import DescentState, LrDescent
from .divergence import LossDetector
from .lr_track import LrTrack
from .modules import ApplyContext
from .probe import LrProbe, ProbeState
from .rule_lr_op import RuleLrOp


class LrSteps:
    def __init__(self, probe: LrProbe, descent: LrDescent, lr_track: LrTrack, lr_op: RuleLrOp, floor_share: float):
        self.probe = probe
        self.descent = descent
        self.lr_track = lr_track
        self.lr_op = lr_op
        self.floor_share = floor_share  # the rescue's floor, as a share of the run's first lr (for reasons)

    def warming(self, step: int) -> bool:
        """The scheduler raised lr within the probe's window: a warmup (a slow loss is expected)."""
        return self.lr_track.warming(step, self.probe.config.window)

    def test_from(self, step: int, budget: int | None) -> int | None:
        """The first step after ``step`` at which ``move`` may arm the descent's test of a run that
        never blew up (None: none now); a quiet stretch of the rescue ends before it."""
        warm_end = self.lr_track.warm_end
        window = self.descent.test_window(budget, warm_end)
        if window is None or step + 1 - warm_end > window[1]:
            return None
        return max(step + 1, warm_end + math.ceil(window[0]))

    def move(self, ctx: ApplyContext, detector: LossDetector, budget: int | None, *, untouched: bool,
             floor: float | None) -> str | None:
        """The probe until it settles; after a rescue, the descent; on a run ``untouched`` (never
        blew up nor was raised), the descent's one test of an lr too high. ``budget``: the run's
        steps (None: not known); ``floor``: no cut below this lr (None: not known). Returns the
        rescue's last action when an lr step landed."""
        if self.probe.state is not ProbeState.SETTLED:
            return self._step(ctx, self.probe, "probe", detector, budget, floor)
        if untouched and self.descent.state is DescentState.IDLE:
            # One measured cut tests an lr too high.
            why = self.descent.test_due(ctx.step, budget, since=self.lr_track.warm_end)
            if why is not None:
                self.descent.arm(why, safe=False)
        if self.descent.state in (DescentState.WAITING, DescentState.TRIAL):
            return self._step(ctx, self.descent, "descent", detector, budget, floor)
        return None

    def _step(self, ctx: ApplyContext, stepper: LrProbe | LrDescent, actor: str, detector: LossDetector,
              budget: int | None, floor: float | None) -> str | None:
        """Ask the probe or the descent for an lr change and submit it (one guarded rule op)."""
        act, lr = self.lr_track.live()
        if act is None:
            stepper.settle(f"no {self.lr_op.knob} knob")
            return None
        if isinstance(stepper, LrProbe):
            if self.warming(ctx.step):
                stepper.hold()  # no raise while the scheduler warms lr up
                return None
            step = stepper.decide(ctx.step, lr, detector, budget, since=self.lr_track.warm_end)
        else:
            step = stepper.decide(ctx.step, lr, detector, budget)
        if step is None or lr is None:
            return None
        if step.factor < 1 and floor is not None and lr * step.factor < floor:
            stepper.settle(f"lr {lr:g} is at the rescue's floor ({self.floor_share:g} x the run's first lr: {floor:g})")
            return None
        entry = self.lr_op.send(act, lr * step.factor, ctx, actor=actor, reason=step.reason)
        if entry is None or entry.get("decision") != "applied":
            stepper.refused()  # held back by the guard (no refusal in the ledger) or refused: it measures again
            return None
        act.refresh()
        stepper.applied(float(act.value))
        return f"step {ctx.step}: {actor} {act.param_key} {lr:g} -> {act.value:g}"
