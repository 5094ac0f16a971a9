"""The way down after a rescue: cut an lr that still sits on the run's noise floor.

A rescue leaves lr at half of one that blew up: stable, but often still so high that the loss
is held up by the minibatch noise the lr amplifies (the "edge of stability"). There, a cut lowers
the loss at once; at a good lr it only slows the descent. Measured on the eval tasks (the same
seed with and without one halving, mean loss over the next 30 steps): synthetic at x10 of its
tuned lr -14% against no cut, digits at x6 -25%, synthetic at the tuned lr -1%.

So the descent measures it on the run. Once the loss has stopped falling fast at the lr that
held (a window of it falls less than ``min_drop``), it notes the log(loss) that window reached,
halves lr, lets ``settle`` points pass (momentum carries the old lr a while) and compares the
mean log(loss) of the next ``window`` points with it (with where the window's line puts them, when
the loss was still falling slowly: it would have fallen that far without the cut). Lower by ``min_drop`` and ``z`` standard
errors: the cut is kept and the next one measured (up to ``max_cuts``). Lower but within that:
one more window decides. Not lower: the first cut after a rescue is kept too (after a blow-up
the lower lr is the safe side) and the descent settles; a later one (the lr already a kept cut
below the rescue's) is undone unless the loss fell at least ``min_drop``. Clearly higher: the cut
is undone and it settles. A rescue rollback arms it.

The same measurement tests a run that never blew up (``test_due``): a finite lr far too high
falls slowly and never trips the detector (charlm's AdamW at x10 of its tuned lr: 0.1-0.2%/step,
noise 3% of the level, the same as at the tuned lr; regression's MSE at x8: ~25% a point at both),
so neither the noise nor the rate tells it from a good lr -- a cut does. Once in a run, between
``test_from`` and ``test_until`` of it (after the probe settled without a raise, with no rescue),
the descent is armed as a test: the same cut and the same window, but no "safe side" -- a cut the
loss does not clearly reward (at least ``min_drop`` and ``z`` standard errors below its trend) is
undone and the descent settles (a good lr's cut lowers the loss ~1% at once and then slows it).
A kept cut is followed by the next as after a rescue.

Pure decisions here; ``hotcb.rescue.Rescue`` owns the descent and ``hotcb.lr_steps`` submits what
it decides, each cut one guarded lr op (source ``rule``, actor ``descent``) with its measurements in the
reason.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

from .divergence import LossDetector, log_line
from .probe import ProbeStep
from .trend import Line


class DescentState(str, Enum):
    IDLE = "idle"         # no rescue yet: nothing to measure
    WAITING = "waiting"   # armed: waiting for a window at the lr in force that no longer falls fast
    TRIAL = "trial"       # lr cut: filling the window that judges it
    SETTLED = "settled"   # done for this run


@dataclass(frozen=True)
class DescentConfig:
    window: int = 20        # points per measurement
    settle: int = 10        # points after a cut before its window (momentum carries the old lr a while)
    factor: float = 0.5     # each cut (the guard's per-op limit binds it too)
    min_drop: float = 0.05  # keep going when the loss fell this share below where it was (the edge: 14-25%)
    z: float = 1.5          # ... and by this many standard errors (a wrong "go on" costs one more halving
    #                         of a run that blew up; stopping early leaves it near the edge)
    max_cuts: int = 4       # at most factor ** max_cuts of the lr the rescue left
    test_from: float = 0.2  # the test of a run that never blew up: armed from this share of the run
    test_until: float = 0.6  # ... until this one (its cut measured before the finish's cool-down)
    test_window: int = 40   # the test's line before its cut: a run still falling slowly keeps falling,
    #                         and a cut is credited only with the drop below that line carried ahead (20
    #                         points of regression's ~25% noise cannot place it: its cuts were credited
    #                         with the run's own progress and cascaded to x1/16)


def reached(trend: Line, count: int, ahead: float = 0.0) -> tuple[float, float]:
    """The log(loss) the window's line predicts ``ahead`` points past its end (its mean when the
    line rises) and the standard error of comparing a measured mean of ``count`` later points
    with it. A loss still falling (slower than ``min_drop`` a window) keeps falling without a cut:
    judged against the window's end, a cut of a slowly falling loss is always "lower" (regression
    x20 was cut four times, to x0.16 of its tuned lr). The line's own error, carried that far, is
    in the standard error: a short, noisy line widens the margin instead of deciding (after a
    blow-up the lower lr is the safe side, so an unclear cut is kept and the descent settles)."""
    x0 = trend.n - 1 + ahead if trend.slope < 0 else trend.mean_x
    resid_sd = math.sqrt(trend.ss_resid / max(trend.n - 2, 1))
    se = resid_sd * math.sqrt(1 / trend.n + (x0 - trend.mean_x) ** 2 / (trend.sxx or 1.0) + 1 / count)
    return trend.at(x0), se


class LrDescent:
    def __init__(self, config: DescentConfig | None = None):
        self.config = config or DescentConfig()
        self.state = DescentState.IDLE
        self.values: deque[float] = deque(maxlen=max(self.config.window, self.config.test_window))
        self.cuts = 0
        self.since_cut = 0  # points observed since the trial's cut
        self.judged: list[float] = []  # the trial's points after its settle
        self.extended = False  # an unclear trial gets one more window
        self.trend: Line | None = None
        self.expected_lr: float | None = None  # the lr the descent set (another actor moving it ends a trial)
        self.history: list[str] = []
        self.safe = True  # armed by a rescue: an unclear cut is kept (the lower lr is the safe side)
        self.tested = False  # the test of a run that never blew up was armed
        self.test_end: int | None = None  # the step its cuts end by (the finish's cool-down follows)
        self.kept_since_arm = 0  # cuts kept since the last arm: the safe side is the first cut's only

    def arm(self, why: str, safe: bool = True) -> None:
        """A rescue rolled back (``safe``: the lr now in force sits at most x2 below one that blew
        up), or the test of a run that never blew up (``test_due``) is due."""
        if (self.state is DescentState.SETTLED and self.safe) or self.cuts >= self.config.max_cuts:
            return
        if not safe:
            self.tested = True
        self.safe = safe
        self.kept_since_arm = 0
        self.state = DescentState.WAITING
        self.values.clear()
        self.trend = None
        self.history.append(why)

    def test_due(self, step: int, max_steps: int | None, since: int = 0) -> str | None:
        """Why to arm the test of a run that never blew up now (None: not now). ``since``: the
        step the run's lr warmup ended (0: none); the run's length must be known."""
        c = self.config
        window = self.test_window(max_steps, since)
        if window is None or not window[0] <= step - since <= window[1]:
            return None
        self.test_end = since + int(window[1])
        return (f"test at step {step} ({100 * c.test_from:.0f}-{100 * c.test_until:.0f}% of the run): a finite lr "
                "far too high falls slowly and never blows up; one measured cut tells it from a good lr")

    def test_window(self, max_steps: int | None, since: int = 0) -> tuple[float, float] | None:
        """The steps after ``since`` (from, until) within which ``test_due`` arms the test (None:
        it never will now: tested, armed, settled, or the run's length unknown)."""
        c = self.config
        if self.tested or self.state is not DescentState.IDLE or not max_steps or max_steps <= since:
            return None
        span = max_steps - since
        return c.test_from * span, c.test_until * span

    def settle(self, why: str) -> None:
        if self.state is not DescentState.SETTLED:
            self.state = DescentState.SETTLED
            self.history.append(why)

    def observing(self) -> bool:
        """Whether ``observe`` keeps a point now (the rescue skips the call otherwise)."""
        return self.state is DescentState.WAITING or self.state is DescentState.TRIAL

    def observe(self, x: float) -> None:
        if self.observing() and math.isfinite(x) and x > 0:
            self.values.append(x)
            self.since_cut += 1
            if self.state is DescentState.TRIAL and self.since_cut > self.config.settle:
                self.judged.append(x)

    def decide(self, step: int, lr: float | None, det: LossDetector, max_steps: int | None) -> ProbeStep | None:
        """Called once per step after ``observe``; returns the lr change to make, if any."""
        c = self.config
        if self.state not in (DescentState.WAITING, DescentState.TRIAL) or lr is None or lr <= 0:
            return None
        if self.state is DescentState.TRIAL and self.expected_lr is not None and not math.isclose(
                lr, self.expected_lr, rel_tol=1e-6):
            self.settle(f"lr moved to {lr:g} by someone else during the trial")
            return None
        if len(self.values) < (c.window if self.safe else c.test_window) or not det.confirmed():
            return None
        if det.at_chance or det.why_broken() is not None:
            return None  # a level at chance is a dead network's (the rescue's to judge), not a noise floor
        if self.state is DescentState.WAITING:
            return self._cut(step, lr, max_steps)
        if len(self.judged) < c.window * (2 if self.extended else 1):
            return None
        return self._judge(lr)

    def _cut(self, step: int, lr: float, max_steps: int | None) -> ProbeStep | None:
        """WAITING: once the loss has stopped falling fast at this lr, note its level and cut."""
        c = self.config
        if max_steps is not None and max_steps - step < c.window:
            self.settle("too close to the end of the run to measure a cut")
            return None
        if not self.safe and self.test_end is not None and step > self.test_end:
            self.settle(f"the test's share of the run ended at step {self.test_end}: no more cuts" if self.cuts else
                        f"the loss fell fast until the test's share of the run ended (step {self.test_end}): no cut")
            return None
        trend = log_line(list(self.values)[-(c.window if self.safe else c.test_window):])
        if trend is None or trend.slope * c.window < math.log(1 - c.min_drop):
            return None  # still falling fast at this lr: nothing to gain, nothing to measure against
        self.trend = trend
        self.values.clear()
        self.since_cut = 0
        self.judged = []
        self.extended = False
        self.state = DescentState.TRIAL
        self.expected_lr = lr * c.factor
        fell = 1 - math.exp(trend.slope * c.window)
        held = (f"after the rescue, lr {lr:g} held" if self.safe else
                f"a test (the run never blew up): at lr {lr:g} the loss " +
                (f"falls slowly ({100 * fell:.2g}% per {c.window} steps)" if fell >= 0 else
                 f"does not fall (its line rises {100 * -fell:.2g}% per {c.window} steps)"))
        kept = "" if self.safe else (f"; kept only if the loss drops at least {100 * c.min_drop:.3g}% below its "
                                     "trend, else undone")
        return ProbeStep(c.factor, f"lr descent {self.cuts + 1}/{c.max_cuts}: {held} "
                         f"(loss {math.exp(reached(trend, c.window)[0]):.4g}, no longer falling fast); "
                         f"x{c.factor:g} to test whether it sits on the loss's noise floor{kept}")

    def _judge(self, lr: float) -> ProbeStep | None:
        """TRIAL: the points at the cut lr (after its settle) against the level the loss had reached."""
        c = self.config
        assert self.trend is not None
        values = self.judged
        pred, se = reached(self.trend, len(values), c.settle + (len(values) + 1) / 2)
        got = sum(math.log(v) for v in values) / len(values)
        drop = 1 - math.exp(got - pred)  # > 0: the loss is below where it was
        margin = max(-math.log(1 - c.min_drop), c.z * se)
        said = (f"the loss after x{c.factor:g} is {100 * abs(drop):.3g}% {'below' if drop >= 0 else 'above'} where "
                f"it was{' heading' if self.trend.slope < 0 else ''} (a cut on the noise floor: "
                f"{100 * (1 - math.exp(-margin)):.3g}% below)")
        if got < pred and got >= pred - margin and not self.extended:
            self.extended = True  # lower, but within the noise: one more window decides
            self.history.append(f"unclear at lr {lr:g}: {said}; measuring {c.window} more points")
            return None
        self.values.clear()
        if got < pred - margin:
            self.cuts += 1
            self.kept_since_arm += 1
            if self.cuts >= c.max_cuts:
                self.settle(f"kept lr {lr:g}: {said}; {c.max_cuts} cuts made")
            else:
                self.state = DescentState.WAITING
                self.history.append(f"kept lr {lr:g}: {said}")
            return None
        # The safe side is the first cut's after a rescue (the lr it left is at most x2 below one
        # that blew up). After a kept cut the lr is x4 below it: a further cut that lowers the loss
        # by less than ``min_drop`` is undone (regression x8 seed 7: cut to x0.25 of the tuned lr
        # on a 3.7% drop against a 52% margin, and held there to the end).
        small = got > pred + math.log(1 - c.min_drop)
        if got > pred + margin or not self.safe or (self.kept_since_arm and small):
            worse = got > pred + margin
            self.settle(f"{said}: {'worse' if worse else 'not clearly better'}; back to lr {lr / c.factor:g}")
            self.expected_lr = lr / c.factor
            did = "made the loss worse" if worse else "did not lower the loss clearly"
            return ProbeStep(1 / c.factor, f"lr descent: x{c.factor:g} {did} ({said}); back to the previous lr, settled")
        self.cuts += 1
        self.settle(f"kept lr {lr:g}: {said}: not on the noise floor any more")
        return None

    def applied(self, lr: float) -> None:
        """The descent's op landed: ``lr`` is now in force."""
        self.expected_lr = lr

    def refused(self) -> None:
        """The descent's op did not land: measure again."""
        if self.state is DescentState.TRIAL:
            self.state = DescentState.WAITING
        self.values.clear()
