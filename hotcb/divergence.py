"""Divergence maths on a run's own loss scale: a robust running level, the noise around it, and
the verdicts drawn from them. Pure (no kernel, no files), written once: the in-kernel rescue
(``hotcb/rescue.py``) feeds it each step's loss, the rules autopilot (``agent/rules/sensors.py``) replays
a window of logged points through it, so both call the same thing a blow-up.

The level is an EMA of the loss and the noise an EMA of the absolute difference between
successive points (over sqrt 2: for independent minibatch noise the same scale as a deviation
from the mean), so a loss falling fast, whose points all sit below a lagging level, is not
mistaken for a noisy one: a blow-up right after a fast descent stays far outside the noise.
A point over the line counts its distance from the level instead. A point counts as *over* when it exceeds ``level + max(band x noise,
rel x |level|)``: far outside the run's own minibatch noise *and* a real fraction above its
level, so neither a noisy high-loss run nor a quiet converged one alarms on an unlucky batch.
A blow-up needs ``persist`` consecutive points over (a non-finite value is one at once), or the
level itself ``drift`` times (and two noise widths) above the lowest level the run reached (a
slow, noisy climb). Points
over the line enter the level clipped to the line, so a blow-up cannot drag the level up with
it, while a genuine change of scale is still adopted within a few dozen points.

Each task has a *chance* level where the user says it: ln(classes) for a classifier, or a
regression's ``baseline`` (the loss of predicting the mean: the target's variance for an MSE).
A level stuck there after the run had learned or blown up is a dead network (a classifier at
chance, a regressor collapsed to the mean); without either, nothing is called dead.

Before ``warmup`` points the noise is not yet measured: the line is ``early_rel`` above the
running mean, and a classifier whose mean loss so far *rose* ``early_rise`` above where it
began (its first loss or ln(classes)) is a blow-up too (a start that diverges from step 1 is chaotic, not a clean jump: spikes of 2-9x
between returns to chance; a healthy start's running mean never climbs above where it began).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from .trend import Line, fit_line

EARLY_POINTS = 5  # the run's early level: the mean of its first points
SQRT_HALF = math.sqrt(0.5)
QUIET_LOW = 3.0  # a quiet band's floor: this many noise widths below the level (and not below 0)
QUIET_MARGIN = 1 - 1e-9  # the band's bounds are held this far inside what the sums give (rounding)


class Verdict(str, Enum):
    WARMING = "warming"        # too few points to judge the noise
    HEALTHY = "healthy"
    SUSPECT = "suspect"        # over the line, not yet for ``persist`` points
    BLOWUP = "blowup"          # over the line for ``persist`` consecutive points
    NON_FINITE = "non_finite"  # NaN or inf
    CHANCE = "chance"          # a classifier's loss flat at ln(classes) after it had blown up or learned
    OVERSHOT = "overshot"      # the rescue's, not the detector's: a warmup's loss turned up as lr rose
    #                            (hotcb.warmup_watch), while the rescue rolls it back


def verdict_for_judge(verdict: str | None, world_size: int) -> str | None:
    """The detector's verdict as the judge may weigh it: None in a distributed run. Each rank's
    detector sees its own loss, so ranks may disagree, and a rule that hung on the verdict would
    let them decide the same op differently."""
    return None if world_size > 1 else verdict


@dataclass(frozen=True)
class DetectorConfig:
    alpha: float = 0.05       # weight of a new point in the level and noise EMAs (~ 20-40 point memory)
    warmup: int = 20          # points before the noise band is trusted
    band: float = 6.0         # over: above level + band x noise ...
    rel: float = 0.5          # ... and above level + rel x |level|
    early_rel: float = 1.0    # before warmup: above level + early_rel x |level|
    persist: int = 3          # consecutive points over the line make a blow-up
    drift: float = 3.0        # a slow blow-up: the level itself above drift x the lowest level reached
    #                           (and 2 noise above it: a converged loss near 0 moves by factors)
    confirm: int = 10         # consecutive healthy points that confirm a state as healthy
    classes: int | None = None  # known: "stuck at chance" is checked (loss near ln(classes))
    baseline: float | None = None  # a regression's chance: the loss of predicting the mean (var of the target)
    chance_window: int = 20   # points the level must sit at chance
    chance_tol: float = 0.1   # "at chance": within this fraction of ln(classes)
    probation_rel: float = 0.5  # before warmup after a rescue: points this far above the level (and outside
    #                             the noise the run had measured) are a blow-up
    probation_persist: int = 1  # ... when this many in a row are
    early_rise: float = 0.15  # a classifier before warmup: its mean so far this far above where it began
    above_chance: float = 0.03  # at chance for a window with the level this far above ln(C) and its start: dead


class LossDetector:
    """Feed one loss value per step with ``update``; read ``verdict``, ``level``, ``noise``."""

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self._chance: tuple[DetectorConfig, float | None] | None = None  # chance_level, for this config
        self.reset()

    def reset(self) -> None:
        """Forget the run's level (after a change of the loss's scale, e.g. a loss weight)."""
        self.level: float | None = None
        self.noise = 0.0
        self.prev: float | None = None  # the last point as it entered the level (clipped)
        self.n = 0
        self.over = 0           # consecutive points over the line (or non-finite)
        self.healthy_run = 0    # consecutive points judged healthy
        self.start: float | None = None
        self.peak = -math.inf   # the highest finite point seen
        self.best = math.inf    # the lowest level reached (after warmup)
        self.early: float | None = None  # the mean of the first EARLY_POINTS points
        self.at_chance = 0      # consecutive points with the level at chance (or worse than it and the start)
        self.verdict = Verdict.WARMING
        self.last: float | None = None
        self.raw_sum = 0.0      # the unclipped sum of the points before warmup (the early rise)
        self.probation = False  # set by the rescue after a rollback: the lr that blew up is known
        # Set with it, where that rollback did not land in a scheduler's warmup: a window at chance
        # on probation is then the cut lr's failure (in a warmup a slow loss is the schedule's).
        self.dead_on_probation = False

    def copy(self) -> LossDetector:
        """The detector as it stands (its fields are numbers and a frozen config: a shallow copy)."""
        out = LossDetector.__new__(LossDetector)
        out.__dict__.update(self.__dict__)
        return out

    # ------------------------------------------------------------------ the line
    def line(self) -> float:
        """The value above which a point counts as over."""
        if self.level is None:
            return math.inf
        c = self.config
        # The noise is not measured yet early: a loss ``early_rel`` above its running mean is over;
        # on probation the tighter line, widened to the noise the run itself measured so far.
        if self.n < c.warmup:
            if self.probation:
                noise = c.band * self.noise if self.n >= EARLY_POINTS else 0.0
                return self.level + max(c.probation_rel * abs(self.level), noise)
            return self.level + c.early_rel * abs(self.level)
        return self.level + max(c.rel * abs(self.level), c.band * self.noise)

    @property
    def chance_level(self) -> float | None:
        """The loss of a network that learned nothing: ln(classes), else the regression baseline."""
        c = self.config
        known = self._chance
        if known is not None and known[0] is c:  # read every step; a config is replaced, never changed
            return known[1]
        if c.classes and c.classes > 1:
            level: float | None = math.log(c.classes)
        else:
            b = c.baseline
            level = float(b) if isinstance(b, (int, float)) and math.isfinite(b) and b > 0 else None
        self._chance = (c, level)
        return level

    def chance_name(self) -> str:
        """How the chance level is written in a reason."""
        c = self.config
        return f"ln {c.classes}" if c.classes and c.classes > 1 else "the baseline (predicting the mean)"

    def confirmed(self) -> bool:
        """The last ``confirm`` points were healthy."""
        return self.healthy_run >= self.config.confirm

    def quiet_band(self, points: int) -> tuple[float, float] | None:
        """A range ``(lo, hi)`` of losses that each of the next ``points`` updates is certain to judge
        healthy, in any order (None: no such range: the run is not healthy now or still warming
        up, its level not above 0, or near a drift or chance). The rescue batches such points
        (``hotcb/quiet.py``).

        Why: each point x in [lo, hi] is under the line, so it enters the level and the noise as it
        is, and both are weighted means with the point's weight ``a`` at most ``max(1/(n+1), alpha)``
        (it shrinks as n grows), so at least ``keep = (1-a)^points`` of the old value is left in
        each. Over ``points`` points the level stays above ``low`` (at least ``keep`` of its
        distance above lo is left) and below ``top`` (at least ``keep`` of its distance below hi),
        the noise above ``keep`` of itself (a point adds a non-negative deviation), so every coming
        line is above ``hi``: no point is over, none persists. The lowest level stays at least
        ``min(best, low)`` and the level at most ``drift`` times it: no drift. The level stays off
        chance by more than its tolerance and below the worse-than-guessing line
        (``_counts_at_chance``): nothing counts at chance. Past warmup with no point
        over, each verdict is healthy."""
        c = self.config
        level, n = self.level, self.n
        # Probation changes the line and the persistence before warmup only: past it, nothing.
        if (self.verdict is not Verdict.HEALTHY or level is None or not level > 0
                or n < c.warmup or points < 1):
            return None
        a = max(1.0 / (n + 1), c.alpha)
        keep = (1.0 - a) ** points
        lo = max(0.0, level - QUIET_LOW * self.noise)
        low = (lo + (level - lo) * keep) * QUIET_MARGIN
        hi = (low + max(c.rel * low, c.band * self.noise * keep)) * QUIET_MARGIN
        top = level if hi <= level else (hi - (hi - level) * keep) / QUIET_MARGIN
        if not top <= c.drift * min(self.best, low) * QUIET_MARGIN:
            return None
        chance = self.chance_level
        if chance is not None:
            tol = c.chance_tol * chance
            worse = (1 + c.above_chance) * max(self.start, chance) if self.start is not None else math.inf
            below = top < (chance - tol) * QUIET_MARGIN
            between = low * QUIET_MARGIN > chance + tol and top < worse * QUIET_MARGIN
            if not (below or between):
                return None
        return lo, hi

    def update_quiet(self, points: list[float]) -> None:
        """``update`` for points inside a ``quiet_band`` (each one judged healthy there), in one
        call for the batch: the same arithmetic in the same order, without the tests such a point
        cannot meet (the rescue's quiet steps; ``tests/core/test_quiet_steps.py`` checks it field
        for field against ``update``)."""
        if not points:
            return
        c = self.config
        alpha, warmup = c.alpha, c.warmup
        level, noise, prev, n, peak, best = self.level, self.noise, self.prev, self.n, self.peak, self.best
        chance = self.chance_level
        at_chance = self.at_chance
        for x in points:
            if x > peak:
                peak = x
            a = 1.0 / (n + 1)
            if a < alpha:
                a = alpha
            if prev is None:
                prev = level
            noise += a * (abs(x - prev) * SQRT_HALF - noise)
            prev = x
            level += a * (x - level)
            n += 1
            if n >= warmup and level < best:
                best = level
            if n == EARLY_POINTS:
                self.early = level
            if chance is not None:
                at_chance = at_chance + 1 if self._counts_at_chance(level, chance) else 0
        self.level, self.noise, self.prev, self.n, self.peak, self.best = level, noise, prev, n, peak, best
        self.at_chance = at_chance
        self.last = points[-1]
        self.over = 0
        self.verdict = Verdict.HEALTHY
        self.healthy_run += len(points)

    # ------------------------------------------------------------------ one point
    def update(self, x: float) -> Verdict:
        c = self.config
        self.last = x
        if not math.isfinite(x):
            self.over += 1
            self.healthy_run = 0
            self.verdict = Verdict.NON_FINITE
            return self.verdict
        level = self.level
        if level is None:
            self.level, self.start, self.n = x, x, 1
            self.prev = x
            self.peak = x
            self.raw_sum = x
            self.verdict = Verdict.WARMING
            return self.verdict
        n, warmup, noise = self.n, c.warmup, self.noise
        if n < warmup:
            self.raw_sum += x
        line = self.line()
        over = x > line
        self.over = over_n = self.over + 1 if over else 0
        if x > self.peak:
            self.peak = x
        # Early on a running mean (the first points matter equally), then the EMA.
        a = 1.0 / (n + 1)
        if a < c.alpha:
            a = c.alpha
        clipped = line if x > line else x
        # A point over the line widens the noise by its distance from the level (as a MAD would), so
        # a genuine change of scale is still adopted within a few dozen points.
        prev = level if self.prev is None or over else self.prev
        noise += a * (abs(clipped - prev) * (1.0 if over else SQRT_HALF) - noise)
        self.noise = noise
        self.prev = clipped
        level += a * (clipped - level)
        self.level = level
        self.n = n = n + 1
        if n >= warmup and level < self.best:  # the early running mean swings with single points
            self.best = level
        if n == EARLY_POINTS:
            self.early = level
        self._track_chance()
        # Early: one more point, the noise unmeasured; on probation (the run just came back from
        # a blow-up at twice this lr) fewer points over the tighter line: that lr is on the edge.
        persist = c.persist if n > warmup else (c.probation_persist if self.probation else c.persist + 1)
        # Each test below is asked only where it can hold (drifted: past warmup; rose: up to it;
        # collapsed: a window at chance): the same verdicts, fewer calls on every step.
        if over_n >= persist:
            verdict = Verdict.BLOWUP
        elif self.drifted() if n > warmup else self.rose():
            verdict = Verdict.BLOWUP
        elif over:
            verdict = Verdict.SUSPECT
        elif self.at_chance >= c.chance_window and self.collapsed():
            verdict = Verdict.CHANCE
        else:
            verdict = Verdict.HEALTHY if n >= warmup else Verdict.WARMING
        self.verdict = verdict
        self.healthy_run = self.healthy_run + 1 if verdict is Verdict.HEALTHY or verdict is Verdict.WARMING else 0
        return verdict

    def drifted(self) -> bool:
        """A loss that climbs steadily, with noise growing as fast as it does, never jumps over the
        line; its level does leave the lowest level the run reached."""
        c = self.config
        return (self.n > c.warmup and self.level is not None and 0 < self.best < math.inf
                and self.level > c.drift * self.best and self.level > self.best + 2 * self.noise)

    def rose(self) -> bool:
        """A task with a chance level, before warmup: the mean of its points so far is
        ``early_rise`` above where it began (its first loss, before any step, or chance, whichever
        is higher): worse than guessing, and getting worse. Without one, a regression's first
        minibatch is too noisy a reference."""
        c = self.config
        chance = self.chance_level
        return (chance is not None and self.start is not None and EARLY_POINTS <= self.n <= c.warmup
                and self.raw_sum / self.n > (1 + c.early_rise) * max(self.start, chance))

    def dead(self) -> bool:
        """The level sits at chance after the loss blew up (a point above twice its start) or after
        it had learned (its level well below chance): a state not worth returning to, however
        quiet it looks (a classifier at chance, a regressor collapsed to predicting the mean)."""
        chance = self.chance_level
        return (chance is not None and self.level is not None and self.start is not None
                and abs(self.level - chance) <= self.config.chance_tol * chance
                and (self.peak > 2 * max(self.start, chance) or self.best < 0.7 * chance))

    def _track_chance(self) -> None:
        chance = self.chance_level
        if chance is None or self.level is None:
            return
        self.at_chance = self.at_chance + 1 if self._counts_at_chance(self.level, chance) else 0

    def _counts_at_chance(self, level: float, chance: float) -> bool:
        """Whether a level counts toward the window at chance: within its tolerance of chance, or
        above both chance and the run's start (worse than guessing, ``collapsed``'s third case),
        so a level that climbs through chance into worse keeps its count (synthetic x40 seed 3
        rose from 2.0 to 2.7 against ln 10 = 2.30 after its rescue; leaving the band at 2.53 had
        reset the count, so nothing called it dead and the descent cut its damaged state)."""
        c = self.config
        return (abs(level - chance) <= c.chance_tol * chance
                or (self.start is not None and level > (1 + c.above_chance) * max(self.start, chance)))

    def collapsed(self) -> bool:
        """Stuck at chance after the run had learned (its level fell well below chance) or blown
        up (a point above twice its start), or sitting above chance and above where it began, or
        on probation (a rescue rolled it back and cut lr, not into a scheduler's warmup:
        ``dead_on_probation``): a dead network, not a slow start (a start too slow to learn sits
        at or just below both; a rolled-back run's lr is half of one
        that blew up or collapsed, not too slow, so a window at chance again is the cut lr's
        failure: fashion-mnist at x8, rolled back to its start at x4, sat at chance for 40 points
        with spikes of 1.4x, learned to 65% and stalled there, 14 pp below the tuned start)."""
        return self.collapse_cause() is not None

    def collapse_cause(self) -> str | None:
        """Why ``collapsed`` holds, in words for a reason (None: it does not); the run's own
        history first, the probation only when nothing else says so."""
        chance = self.chance_level
        if chance is None or self.at_chance < self.config.chance_window or self.start is None or self.level is None:
            return None
        if self.best < 0.7 * chance:
            return "after it had learned"
        if self.peak > 2 * max(self.start, chance):
            return "after it had blown up"
        if self.level > (1 + self.config.above_chance) * max(self.start, chance):
            return f"above chance and its start ({self.start:.4g})"
        if self.probation and self.dead_on_probation:
            return "after a rescue (the cut lr does not learn either)"
        return None

    def stalled(self, share: float, quiet: float = 0.3) -> bool:
        """The level is still above ``share`` of its early level, and not above it, with little
        noise: a run that has hardly learned, smoothly (a too-high lr that stalls is noisy)."""
        return (self.early is not None and self.level is not None and self.early > 0
                and share * self.early < self.level <= self.early and self.noise < quiet * abs(self.level))

    def at_chance_since_start(self) -> bool:
        """Flat at chance for a window and never better: a start too slow (or too dead) to learn."""
        chance = self.chance_level
        return (chance is not None and self.at_chance >= self.config.chance_window
                and not self.collapsed())

    def worse_than_chance(self) -> bool:
        """A classifier whose level sits above ln(classes): worse than guessing (a dead or blown-up
        network, never a slow start, which sits at or just below it)."""
        chance = self.chance_level
        return chance is not None and self.level is not None and self.level > (1 + self.config.above_chance) * chance

    def why_broken(self) -> str | None:
        """Why nothing learned can be judged now (blown up, non-finite, at chance), else None:
        asked by tune before it accepts a trial."""
        if self.verdict in (Verdict.BLOWUP, Verdict.NON_FINITE, Verdict.CHANCE):
            return f"the run's divergence detector says {self.verdict.value} ({self.describe()})"
        if self.at_chance_since_start():
            return f"the run's loss sits at chance ({self.chance_name()}) since its start"
        return None

    def describe(self) -> str:
        lvl = "?" if self.level is None else f"{self.level:.4g}"
        return f"level {lvl}, noise {self.noise:.3g}, line {self.line():.4g}"

    def explain(self, verdict: Verdict, x: float) -> str:
        """Why ``verdict`` (an unhealthy one, just given for the loss ``x``), in the words of the
        test that gave it: the rescue's reason for its rollback."""
        c = self.config
        if verdict is Verdict.NON_FINITE:
            return f"loss is non-finite ({x})"
        if verdict is Verdict.CHANCE:
            return (f"loss level {self.level:.4g} at chance ({self.chance_name()} = {self.chance_level:.4g}) or above "
                    f"it for {self.at_chance} points {self.collapse_cause()}")
        if self.rose():
            return (f"the mean loss of the first {self.n} steps, {self.raw_sum / self.n:.4g}, rose above the loss "
                    f"at the start, {self.start:.4g} (a healthy start's falls)")
        if self.over >= (1 if self.probation and self.n <= c.warmup else c.persist):
            rule = (f"over = level + max({c.band:g} x noise, {c.rel:g} x level)" if self.n > c.warmup else
                    f"early, on probation after a blow-up: over = {1 + c.probation_rel:g} x level"
                    if self.probation else f"early: over = {1 + c.early_rel:g} x level")
            return f"loss {x:.4g} above the run's level for {self.over} steps ({self.describe()}; {rule})"
        return (f"loss level {self.level:.4g} climbed to {self.level / self.best:.3g}x its lowest level "
                f"{self.best:.4g} (noise {self.noise:.3g})")


def first_blowup(values: Iterable[float], config: DetectorConfig | None = None) -> tuple[int, LossDetector] | None:
    """Replay ``values`` through a fresh detector; the index of the first blow-up (or non-finite
    point) and the detector as it stood there, or None."""
    det = LossDetector(config)
    for i, v in enumerate(values):
        if det.update(v) in (Verdict.BLOWUP, Verdict.NON_FINITE):
            return i, det
    return None


def log_line(values: Iterable[float]) -> Line | None:
    """The least-squares line of log(value) on the point index over ``values`` (the positive,
    finite ones, indexed in order); None with fewer than 4. The probe and the descent fit it."""
    pts = [(i, math.log(v)) for i, v in enumerate(v for v in values if v > 0 and math.isfinite(v))]
    return fit_line(pts) if len(pts) >= 4 else None


def log_slope(values: list[float]) -> tuple[float, float]:
    """Least-squares slope of log(value) per point over ``values`` (positive, finite) and its
    standard error; (0, inf) when it cannot be fitted. The probe compares descent rates with it."""
    line = log_line(values)
    if line is None:
        return 0.0, math.inf
    return line.slope, math.sqrt(line.ss_resid / max(line.n - 2, 1) / line.sxx)
