"""The warmup as an lr range test: a loss that turns up while the scheduler still raises lr says
the schedule's peak is too high.

A warmup sweeps lr from near 0 to the schedule's base, so every run that warms up performs an
lr range test for free: the loss falls while lr is small enough and, where the base is too
high, turns up as lr passes what the network can take (charlm at 30x its tuned AdamW lr: its
level falls to ~2.6 at step 30 of a 50-step warmup, at lr ~0.19, and climbs to 2.8-2.9 by the
warmup's end, where it stays, at the unigram loss, for the rest of the run; at the tuned lr and
at 10x it falls through the whole warmup). Waiting for that run to blow up, or for a probe to read
its stall as a slow start, loses the run: it is the schedule that is too high, and the warmup
has already measured by how much.

``WarmupWatch`` follows the loss's mean over its last ``points`` steps (the detector's slow
level lags a warmup's steep fall by tens of steps) while the scheduler raises lr and for a
window after (a rise that shows only after the last raise is still the warmup's): the lowest
mean and the lr there, and whether the mean has since climbed clearly above that low (by
``rise`` of it and ``noise_band`` standard errors, for ``persist`` steps in a row) while lr was
higher than at the low. Measured on charlm's ``none`` runs, 5 seeds: the mean's highest climb
above its warmup low was 0.3-4% at x0.1, x1, x2, x4 and x10 of the tuned lr, 6-31% at x30.

A loss that stops falling as lr rises has turned too, even when its climb stays in the noise: a
low made while the scheduler still raised lr and not regained for ``stall`` steps (the window
the watch keeps after the warmup), and for as many as the fall to it took, while lr went on past
it. Charlm x30 seed 1 (one machine) sat
at 2.7-2.8 from step 38 (lr 0.234) and its mean never climbed 5% over that low; it was raised
by the probe at step 108, blew up, and ended +38% over the tuned start. On the ``none`` runs (5
seeds) the longest such stall was 0-1 steps at x0.1, 1-3 at x1, 1-4 at x2, 2-19 at x10 and 34-44
at x30.

It says so once; ``hotcb.rescue.Rescue`` then rolls back to the newest healthy state trained
only at lrs the rule allows and cuts the schedule until its peak is ``range_rule`` of the lr at
the low (the range test's rule of thumb: a run trains well about an order of magnitude below
the lr where the loss stops falling), each cut a guarded rule op with the measurements in its
reason. Pure decisions here.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupWatchConfig:
    points: int = 10          # the mean over this many steps
    rise: float = 0.05        # this share above its warmup low ...
    noise_band: float = 3.0   # ... and this many standard errors of the mean above it ...
    persist: int = 5          # ... for this many steps in a row
    skip: int = 10            # the low counts from this many steps in (the first steps fall steeply)
    after: int = 30           # steps after the last raise of lr that still belong to the warmup
    stall: int = 30           # or a low made below the schedule's peak lr not regained in this many steps
    #                           (and in as many as the watch had seen before the low)
    range_rule: float = 0.1   # the schedule is cut until its peak lr is this share of the lr at the low
    no_warmup_after: int = 3  # no rise of lr in the first steps: no warmup to watch


@dataclass(frozen=True)
class Overshoot:
    """The warmup overshot: the loss's mean turned up from ``low`` (at ``low_lr``, step
    ``low_step``) to ``level`` at ``lr``, or (``stalled``) has not fallen below that low since."""

    low: float
    low_step: int
    low_lr: float
    level: float
    lr: float
    step: int
    stalled: bool = False

    def reason(self, range_rule: float) -> str:
        since = (f"has not fallen below it in the {self.step - self.low_step} steps since (now {self.level:.4g} at lr "
                 f"{self.lr:.4g}, step {self.step})" if self.stalled else
                 f"climbed to {self.level:.4g} at lr {self.lr:.4g} (step {self.step})")
        return (f"the warmup overshot: while the scheduler raised lr the loss's mean fell to {self.low:.4g} at lr "
                f"{self.low_lr:.4g} (step {self.low_step}) and {since}: the schedule's peak is too high for this run "
                f"(an lr range test: train at about {range_rule:g} x the lr where the loss turned, "
                f"{range_rule * self.low_lr:.4g})")


class WarmupWatch:
    """One per run: ``observe`` every step of the warmup; ``active`` while it still watches."""

    def __init__(self, config: WarmupWatchConfig | None = None):
        self.config = config or WarmupWatchConfig()
        self.active = True
        self.seen = 0
        self.recent: deque[float] = deque(maxlen=self.config.points)
        self.low: float | None = None
        self.low_step = 0
        self.low_lr = 0.0
        self.low_seen = 0  # the steps watched when the low was made
        self.over = 0

    def observe(self, step: int, loss: float, lr: float | None, rising_at: int | None) -> Overshoot | None:
        """One step's loss and lr; ``rising_at``: the last step the scheduler raised lr (None: not
        seen). Returns the overshoot once, when it is clear."""
        c = self.config
        if not self.active:
            return None
        self.seen += 1
        if math.isfinite(loss):
            self.recent.append(loss)
        if rising_at is None:
            if self.seen >= c.no_warmup_after:
                self.active = False  # lr does not rise: there is no warmup here
            return None
        if step - rising_at > c.after:
            self.active = False  # the warmup and its window are over
            return None
        n = len(self.recent)
        if lr is None or not lr > 0 or self.seen <= c.skip or n < c.points:
            return None
        level = sum(self.recent) / n
        if self.low is None or level < self.low:
            self.low, self.low_step, self.low_lr, self.over = level, step, lr, 0
            self.low_seen = self.seen
            return None
        sd = math.sqrt(sum((x - level) ** 2 for x in self.recent) / (n - 1))
        margin = max(c.rise * self.low, c.noise_band * sd / math.sqrt(n))
        self.over = self.over + 1 if level > self.low + margin and lr > self.low_lr else 0
        # A low made while lr still rose and not regained since, lr now past it: the loss stopped
        # falling as lr rose (a low at the peak lr is the run settling, never a stall). The stall
        # must last as long as the fall to the low took: a long warmup's slow late progress goes
        # tens of steps without a new low of a 10-step mean, and that is no overshoot.
        stalled = (self.seen - self.low_seen >= max(c.stall, self.low_seen)
                   and lr > self.low_lr * (1 + 1e-9))
        if self.over < c.persist and not stalled:
            return None
        self.active = False
        return Overshoot(low=self.low, low_step=self.low_step, low_lr=self.low_lr, level=level, lr=lr, step=step,
                         stalled=self.over < c.persist)
