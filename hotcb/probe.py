"""The way up: an lr probe for a run whose loss falls far slower than it could.

In the small-lr regime the loss's rate of descent grows with lr (one SGD step lowers the loss by
about lr x |grad|^2), so doubling lr about doubles the rate; near a good lr it does not. The
probe measures that directly on the run: the rate of descent (slope of log loss per step) over a
window, then over a window at twice the lr. It keeps the raise when the rate grew by
``keep_ratio`` and tries again (up to ``max_raises``), otherwise it halves lr back and settles.
A blow-up during a trial is the rescue's: it rolls back to the snapshot taken just before the
raise (that snapshot restores the lr too) and the probe settles. It does not look while the
run's scheduler is still raising lr (a warmup: a slow loss is expected there; the rescue holds
it, and the share of the run it may start in counts from the warmup's end), nor at a loss
already near the floor the script gave (``loss_floor``): a loss that cannot fall much further
is not slow. Where the run logs a held-out loss (``val_loss``, a fixed set: no minibatch noise) at
least once a window, a window of the step loss too noisy to show its rate is measured on the
held-out points instead (a regression's batch-32 loss has ~20% noise a point: 30 points cannot
tell a fall of 0.1%/step from none, three held-out points can). A held-out trial on a curve that
was slowing (the window before the raise's base fell ``keep_ratio`` faster, at the same lr) is
kept when it held the rate: the old lr would have slowed further by then. Each raise or revert
is one guarded lr op (source ``rule``, actor ``probe``) with its measurements in the reason.

Pure decisions here; ``hotcb.rescue.Rescue`` owns the probe and ``hotcb.lr_steps`` submits what it
decides.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

from .divergence import LossDetector, log_slope
from .trend import fit_line


class ProbeState(str, Enum):
    WAITING = "waiting"   # for a confirmed healthy window that is still clearly improving
    TRIAL = "trial"       # lr raised; measuring the new rate
    SETTLED = "settled"   # done for this run


@dataclass(frozen=True)
class ProbeConfig:
    window: int = 30          # points per measurement
    factor: float = 2.0       # each raise (the guard's per-op limit binds it too)
    keep_ratio: float = 1.4   # keep a raise when the rate of descent grew at least this much
    max_raises: int = 4       # at most factor ** max_raises the starting lr
    min_t: float = 3.0        # "clearly improving": rate above min_t standard errors
    afford: float = 1.0       # "far too slow": at this rate the rest of the run lowers log(loss) by less
    #                           (a loss /2.7; asking more of a task whose loss has a high floor raised a tuned lr)
    assumed_remaining: int = 300  # steps left, for a run that does not say (no max_steps)
    stalled: float = 0.93     # or the level is still above this share of its early level (a tuned start
    #                           is at ~0.88 of it after 30 steps on synthetic, one 10x too low at ~0.98)
    start_within: float = 0.25  # a probe starts in this first share of the run or never
    quiet: float = 0.3        # "stalled" needs noise below this share of the level (a too-high lr is loud)
    loss_floor: float | None = None  # the lowest loss the task can reach, where the script knows it
    near_floor: float = 0.25  # "near its floor": the level within this share above loss_floor
    held_points: int = 3      # held-out points per measurement, when the step loss is too noisy
    held_start_within: float = 0.35  # the held-out measurement needs a few evaluations: a little later
    held_min_fall: float = 0.25  # and the held-out loss must be falling: at its rate the steps left lower
    #                              log(loss) by at least this (a flat one may sit on a too-high lr's noise
    #                              floor: synthetic x4's fell 0.04%/step, 0.08 over its last 196 steps)


@dataclass
class ProbeStep:
    """What the probe wants now: multiply lr by ``factor``, and why."""

    factor: float
    reason: str


class LrProbe:
    def __init__(self, config: ProbeConfig | None = None):
        self.config = config or ProbeConfig()
        self.state = ProbeState.WAITING
        self.values: deque[float] = deque(maxlen=self.config.window)
        self.raises = 0
        self.base_rate = 0.0
        self.expected_lr: float | None = None  # the lr the probe set (another actor moving it ends the trial)
        self.held: deque[tuple[int, float]] = deque(maxlen=4 * self.config.held_points)  # (step, held-out loss)
        self.held_trial = False  # the trial is judged on held-out points
        self.earlier_rate: float | None = None  # a held-out trial's: the rate the window before its base had
        self.raised_at = 0  # the step of the last raise
        self.history: list[str] = []

    def settle(self, why: str) -> None:
        if self.state is not ProbeState.SETTLED:
            self.state = ProbeState.SETTLED
            self.history.append(why)

    def observe(self, x: float) -> None:
        if math.isfinite(x) and x > 0:
            self.values.append(x)

    def observe_held(self, step: int, x: float) -> None:
        """A held-out loss (the same fixed set each time) at ``step``."""
        if math.isfinite(x) and x > 0:
            self.held.append((step, x))

    def _held_rate(self, after: int, window: int) -> tuple[float, int] | None:
        """(rate of descent per step, points) of log(held-out loss) over its points after step
        ``after``; None with fewer than ``held_points`` or when they are sparser than one a window
        (a rate over a long span would mix the run's phases)."""
        pts = [(s, math.log(v)) for s, v in self.held if s > after]
        if len(pts) < self.config.held_points or pts[-1][0] - pts[0][0] > (len(pts) - 1) * window:
            return None
        return -fit_line(pts).slope, len(pts)

    def hold(self) -> None:
        """The scheduler is warming lr up: those points measure no lr; measure from its end."""
        self.values.clear()

    def _rate(self) -> tuple[float, float]:
        slope, se = log_slope(list(self.values))
        return -slope, se  # > 0: the loss falls

    def decide(self, step: int, lr: float | None, det: LossDetector, max_steps: int | None,
               since: int = 0) -> ProbeStep | None:
        """Called once per step after ``observe``; returns the lr change to make, if any.
        ``since``: the step the run's lr warmup ended (0: none)."""
        c = self.config
        if self.state is ProbeState.SETTLED or lr is None or lr <= 0:
            return None
        if self.state is ProbeState.TRIAL and self.expected_lr is not None and not math.isclose(lr, self.expected_lr,
                                                                                                   rel_tol=1e-6):
            self.settle(f"lr moved to {lr:g} by someone else during the trial")
            return None
        remaining = (max_steps - step) if max_steps else None
        if self.state is ProbeState.TRIAL and self.held_trial:
            return self._judge_held(step, lr, remaining)
        if len(self.values) < c.window or not det.confirmed():
            return None
        if self.state is ProbeState.WAITING:
            return self._look(step, det, max_steps, remaining, since)
        return self._judge(step, lr, remaining)

    # complexity: each reason not to raise is its own early return, in the order a reader checks them
    def _look(self, step: int, det: LossDetector, max_steps: int | None,
              remaining: int | None, since: int = 0) -> ProbeStep | None:
        """WAITING: one look per window at whether the run is far too slow."""
        c = self.config
        rate, se = self._rate()
        self.values.clear()  # one look per window (a look every step would find a lucky moment)
        if remaining is not None and remaining < 3 * c.window:
            self.settle("too close to the end of the run to measure a raise")
            return None
        span = (max_steps - since) if max_steps else c.assumed_remaining
        if step - since > c.held_start_within * span or (step - since > c.start_within * span and not self.held):
            self.settle("not too slow in the first part of the run" + (f" after its warmup (to step {since})"
                                                                        if since else ""))
            return None
        floor = c.loss_floor
        if floor is not None and det.level is not None and det.level <= (1 + c.near_floor) * floor:
            self.settle(f"the loss {det.level:.4g} is near its floor {floor:g}: not slow")
            return None
        if det.worse_than_chance():
            return None  # worse than guessing: the rescue's to judge, never a slow start to speed up
        if det.early is not None and det.peak > 2 * det.early:
            self.settle(f"the loss spiked to {det.peak:.4g} (early level {det.early:.4g}): no raise")
            return None
        stuck = det.at_chance_since_start() or det.stalled(c.stalled, c.quiet)
        left = remaining if remaining is not None else c.assumed_remaining
        if not (stuck or (rate > 0 and rate > c.min_t * se)):
            # Too noisy to show a rate (or not falling): the held-out points, where the run logs them.
            return self._look_held(step, det, left, rate, se, since)
        late = step - since > c.start_within * span  # the held-out measurement alone may start later
        need = self._need(det)
        if late or (not stuck and rate * left >= need):  # else at this rate the run has the time it needs
            if late:
                self.settle("not too slow in the first part of the run" + (f" after its warmup (to step {since})"
                                                                            if since else ""))
            return None
        return self._raise(rate, f"loss still at {det.level:.4g}, {100 * det.level / det.early:.3g}% of its early "
                           f"level {det.early:.4g}" if stuck and det.early else
                           f"loss falls {100 * rate:.3g}%/step (±{100 * se:.2g}) over {c.window} points: "
                           f"at that rate the {left} steps left lower log(loss) by {rate * left:.2g} "
                           f"(< {need:.2g})", step=step)

    def _need(self, det: LossDetector) -> float:
        """What the run can still gain: log(loss) down by ``afford``, or half the way to a known floor."""
        c = self.config
        floor = c.loss_floor
        return c.afford if floor is None or det.level is None else min(c.afford, 0.5 * math.log(det.level / floor))

    def _look_held(self, step: int, det: LossDetector, left: int, rate: float, se: float,
                   since: int = 0) -> ProbeStep | None:
        """The step loss's window is too noisy to show its rate: measure it on the held-out loss's
        last points (none since the run's last raise)."""
        c = self.config
        after = max(self.raised_at, step - 2 * c.window - 1)
        held = self._held_rate(after, c.window)
        if held is None:
            return None
        hrate, n = held
        if se < hrate:
            # The step loss's window could have shown a fall this fast and does not show it clearly:
            # it is the better witness (a too-high lr falls slowly and visibly, charlm at x10), and
            # the held-out points are for a window too noisy to see such a fall at all.
            return None
        need = self._need(det)
        if hrate * left < c.held_min_fall or hrate * left >= need:
            return None  # flat (a noise floor, maybe a too-high lr's), or the run has the time it needs
        earlier = self._earlier_rate(after, max(self.raised_at, since))
        out = self._raise(hrate, f"the step loss's window is too noisy to show a rate ({100 * rate:.2g}%/step "
                          f"±{100 * se:.2g}); the held-out loss falls {100 * hrate:.3g}%/step over its last {n} "
                          f"points: at that rate the {left} steps left lower log(loss) by {hrate * left:.2g} "
                          f"(< {need:.2g})", step=step, held=True)
        self.earlier_rate = earlier
        return out

    def _earlier_rate(self, after: int, since: int) -> float | None:
        """The held-out rate over the ``held_points`` points before the window measured after step
        ``after`` (all at the same lr: after ``since``, the last raise or the warmup's end)."""
        n = self.config.held_points
        base = [s for s, _ in self.held if s > after]
        pts = [(s, math.log(v)) for s, v in self.held if since < s < (base[0] if base else after)][-n:]
        return -fit_line(pts).slope if len(pts) == n else None

    def _judge_held(self, step: int, lr: float, remaining: int | None) -> ProbeStep | None:
        """TRIAL on held-out points: judged on those a window after the raise (momentum builds up)."""
        c = self.config
        held = self._held_rate(self.raised_at + c.window // 2, c.window)
        if held is None:
            if step - self.raised_at > 4 * c.window:  # the run stopped logging it: keep what was measured
                self.settle(f"no held-out points to judge the raise to lr {lr:g}; kept")
            return None
        self.values.clear()
        return self._verdict(held[0], lr, remaining, step, held=True)

    def _judge(self, step: int, lr: float, remaining: int | None) -> ProbeStep | None:
        """TRIAL: the window now holds only points at the raised lr."""
        rate, _ = self._rate()
        return self._verdict(rate, lr, remaining, step)

    def _verdict(self, rate: float, lr: float, remaining: int | None, step: int = 0, held: bool = False) -> ProbeStep | None:
        """Keep the raise (and try another) when the rate grew ``keep_ratio``, else back and settle."""
        c = self.config
        on = " (held-out loss)" if held else ""
        earlier = self.earlier_rate if held else None
        if (rate > 0 and earlier is not None and c.keep_ratio * self.base_rate <= earlier
                and self.base_rate <= rate < c.keep_ratio * self.base_rate):
            # The rate before the raise was itself falling (by keep_ratio or more over the window
            # before it, at the same lr): the old lr would have fallen slower still by now, so a
            # raise that held the rate did speed descent (regression x0.1 seeds 4 and 8: 0.201 ->
            # 0.205%/step and 0.184 -> 0.185 against 0.108 and 0.131 for none over the same steps).
            # Kept, and no further raise on that evidence.
            self.settle(f"kept lr {lr:g}: the held-out rate held at {100 * rate:.3g}%/step (from "
                        f"{100 * self.base_rate:.3g}%) where at the old lr it had fallen from {100 * earlier:.3g}%")
            return None
        if rate > 0 and rate >= c.keep_ratio * self.base_rate:
            if self.raises < c.max_raises and (remaining is None or remaining >= 3 * c.window):
                return self._raise(rate, f"x{c.factor:g} lr raised the rate of descent{on} to {100 * rate:.3g}%/step "
                                   f"(from {100 * self.base_rate:.3g}%)", step=step, held=held)
            self.settle(f"kept lr {lr:g}: rate {100 * rate:.3g}%/step")
            return None
        self.expected_lr = lr / c.factor
        why = f"x{c.factor:g} lr gave {100 * rate:.3g}%/step vs {100 * self.base_rate:.3g}% before"
        if self.raises < c.max_raises and self.held:
            # One window judged it, against a rate from an earlier phase of a decelerating curve (a
            # stalled start's first fall): where a held-out loss can show a slow fall later, look
            # again within the probe's share of the run (max_raises raises in all).
            self.state = ProbeState.WAITING
            self.values.clear()
            self.raised_at = step  # the next look measures from the lr it goes back to
            self.history.append(why + "; looking again")
            after = "looking again later"
        else:
            self.settle(why)
            after = "settled"
        return ProbeStep(1 / c.factor, f"lr probe: x{c.factor:g} did not speed descent{on} ({100 * rate:.3g}%/step vs "
                         f"{100 * self.base_rate:.3g}% before, needs x{c.keep_ratio:g}); back to the previous lr, {after}")

    def _raise(self, rate: float, why: str, step: int = 0, held: bool = False) -> ProbeStep:
        c = self.config
        self.state = ProbeState.TRIAL
        self.held_trial = held
        self.raised_at = step
        self.base_rate = max(rate, 0.0)
        self.earlier_rate = None  # a raise after a kept one: its base was measured at another lr than any before
        self.raises += 1
        self.values.clear()
        return ProbeStep(c.factor, f"lr probe {self.raises}/{c.max_raises}: {why}; x{c.factor:g} lr to test a faster "
                         f"rate (a snapshot to return to is kept)")

    def applied(self, lr: float) -> None:
        """The probe's op landed: ``lr`` is now in force."""
        self.expected_lr = lr

    def refused(self) -> None:
        """The probe's op did not land: wait for another window."""
        if self.state is ProbeState.TRIAL:
            self.raises -= 1
            self.state = ProbeState.WAITING
        self.values.clear()
