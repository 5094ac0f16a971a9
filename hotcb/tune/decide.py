"""Tune's decisions as pure functions: plain values in, a decision out (no kernel, no study).

Whether a trial may start (``limits_reached``, ``still_starting``, ``pre_segment``), whether a
trial in flight is stopped early (``early_abort``), what a scored trial tells the study
(``told_value``) and whether its weights go back (``weights_wanted``), which result is the best
(``better``), and the next step at which all ranks sync (``next_sync``).
"""

from __future__ import annotations

import math
from typing import Any

from .recipe import TuneRecipe
from .score import Point, Score, fit_trend, score_change, worse_than
from .trial import NEVER, LiveTrial


def _sign(direction: str) -> float:
    return 1.0 if direction == "minimize" else -1.0


def limits_reached(r: TuneRecipe, step: int, max_steps: int | None, active: bool, done_active: int,
                   consecutive_rollbacks: int) -> str | None:
    """Why no new trial may start (the run's end is near, or a risk limit is reached), else None."""
    if max_steps is not None and active:
        last = max_steps - r.settle_steps - 2 * r.horizon
        if step > last:
            return (f"done: no new trial this close to the run's end (max_steps {max_steps}; a trial must be "
                    f"scored one horizon before it, so the last one could start at step {max(last, 0)})")
    risk = r.risk
    if risk.max_trials is not None and done_active >= risk.max_trials:
        return f"done: max_trials={risk.max_trials} reached"
    if risk.max_consecutive_rollbacks is not None and consecutive_rollbacks >= risk.max_consecutive_rollbacks:
        return f"stopped: {consecutive_rollbacks} consecutive rollbacks (risk.max_consecutive_rollbacks)"
    return None


def still_starting(start: float | None, pre: list[Point], direction: str) -> bool:
    """Whether the run is still in its first descent: the objective within 10% of its start
    level ``start`` and improving on its own (a significant slope). A trial there costs the run
    the most and is judged against the steepest trend; tune waits until the run is under way.
    (Flat at the start level is another matter: a stuck run, which a trial may unstick.)"""
    if start is None or len(pre) < 2:
        return False
    trend = fit_trend(pre)
    sign = _sign(direction)
    gain = sign * (start - trend.mean_y)
    return gain < 0.1 * abs(start) and sign * trend.slope < 0


def pre_segment(r: TuneRecipe, objective: str, points: list[Point], step: int, last_change: int | None,
                cooldown: int) -> tuple[list[Point] | None, str, int]:
    """The pre-change segment ending at ``step`` from the objective's ``points``, or why not yet
    and how many steps to wait. ``last_change``: the newest change of a searched knob."""
    quiet_from = -NEVER if last_change is None else last_change + r.settle_steps
    if last_change is not None and step - last_change < cooldown:
        return None, f"guard cooldown until step {last_change + cooldown}", last_change + cooldown - step
    if step - quiet_from < r.horizon:
        return None, f"collecting a pre-change segment (until step {quiet_from + r.horizon})", \
            quiet_from + r.horizon - step
    points = [p for p in points if p[0] > quiet_from]
    recent = [p for p in points if p[0] > step - r.horizon]
    pre = recent if len(recent) >= r.min_points else points[-r.min_points:]
    if len(pre) < r.min_points:
        return None, f"waiting for {r.min_points} reports of {objective}", r.horizon
    if any(not math.isfinite(v) for _, v in pre):
        return None, f"{objective} is not finite; not tuning", r.horizon
    return pre, "", 0


def segment_before(r: TuneRecipe, objective: str, points: list[Point], at: int) -> tuple[list[Point] | None, str]:
    """The horizon before a change someone else made at step ``at``, or why it cannot be scored."""
    pre = [p for p in points if at - r.horizon < p[0] <= at]
    if len(pre) < r.min_points or any(not math.isfinite(v) for _, v in pre):
        return None, f"fewer than {r.min_points} finite reports of {objective} before it"
    return pre, ""


def early_abort(r: TuneRecipe, t: LiveTrial, step: int) -> str | None:
    """Why an active trial in flight stops now, before it is due (``risk``), else None."""
    if step < t.abort_from or not t.post:
        return None
    if r.risk.abort_worsening is not None and (
        any(not math.isfinite(v) for _, v in t.post)
        or (len(t.post) >= r.min_points and worse_than(t.pre_level, t.post, r.risk.abort_worsening, r.direction))
    ):
        return "aborted early by risk.abort_worsening; "
    if r.risk.abort_z is not None and len(t.post) >= max(r.min_points, r.horizon // 4) and step < t.due:
        # A clearly worse trial costs the run every step it goes on: stop it as soon as the
        # evidence is in (a good trial cut short costs only the search a sample).
        s = score_change(t.pre, t.post, direction=r.direction, accept_z=r.accept_z)
        if s.improvement < -r.risk.abort_z * s.se:
            return f"aborted early by risk.abort_z={r.risk.abort_z:g}; "
    return None


def told_value(anchor: float | None, s: Score, direction: str) -> float:
    """The anchored value the study is told: the anchor moved by the trial's improvement."""
    sign = _sign(direction)
    base = anchor if anchor is not None else s.pre_score
    if math.isfinite(s.improvement):
        return base - sign * s.improvement
    return base + sign * 10.0 * max(abs(s.pre_score), 1e-3)  # diverged: the sampler learns to stay away


def weights_wanted(r: TuneRecipe, pre: list[Point], s: Score) -> bool:
    """Whether a rejected trial's weights go back (``risk.restore_weights``). ``worse``: only
    when the trial left the network measurably worse than it found it (the objective after
    the change against its level just before the change, not projected): a trial that made
    progress, only less than the old setting would have, keeps what it gained, since the
    snapshot is further behind still."""
    mode = r.risk.restore_weights
    if mode == "never":
        return False
    if mode == "rejected" or not math.isfinite(s.post_score):
        return True
    tail = [v for _, v in pre[-max(r.min_points, len(pre) // 4):]]
    lost = _sign(r.direction) * (s.post_score - sum(tail) / len(tail))  # against the level the snapshot holds
    return lost > r.accept_z * s.se


def better(value: float, best: dict[str, Any] | None, direction: str) -> bool:
    """Whether ``value`` beats the best told value so far."""
    if best is None or not isinstance(best.get("value"), (int, float)):
        return True
    return value < best["value"] if direction == "minimize" else value > best["value"]


def next_sync(r: TuneRecipe, step: int, mode: str, t: LiveTrial | None, next_check: int,
              undo_ready: int | None) -> int:
    """Rank 0: the next step at which it may need to change a knob (a sync step).
    ``undo_ready``: when an undo is pending, the step its next attempt waits for."""
    beat = max(1, r.horizon)  # idle: picks up a mode change, a new recipe, the next check
    k = max(1, r.horizon // 10)  # during a trial: how often the risk limits are checked
    if undo_ready is not None:
        return max(step + 1, min(undo_ready, step + beat))
    if mode != "active" or (t is not None and (t.kind != "active" or t.change_step < 0)):
        return step + beat
    if t is None:
        return max(step + 1, min(next_check, step + beat))
    if step >= t.due:
        return max(step + 1, min(step + k, t.give_up))
    nxt = min(t.due, t.give_up)
    if r.risk.abort_worsening is not None:
        nxt = min(nxt, max(t.abort_from, step + k))
    return max(step + 1, nxt)
