"""Before a trial: the objective's recent reports, the pre-change segment, the limits on new trials.

A trial starts only when the objective has a quiet pre-change segment (``horizon`` steps since
the last change of a searched knob, plus ``settle``, with ``min_points`` finite reports, past the
guard's cooldown) and the recipe's risk limits still allow one; until then tune waits and says why.
Where the kernel knows the run's length (``max_steps``), no active trial starts unless it can be
scored at least one horizon before the end, so the run's last stretch trains on settled values.

The objective's first reports are kept (``start_level``): while the run is still in its first
descent from that level, learning on its own, no trial starts (it would cost the run the most
and be judged against the steepest trend).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from .tune_recipe import DEFAULT_OBJECTIVES, KnobSpace
from .tune_score import Point, fit_trend
from .tune_space import _to_float
from .tune_trial import NEVER


class ReadyMixin:
    """``TuneModule``'s readiness checks (its state: ``TuneModule.__init__``)."""

    def _observe(self, metrics: Any, step: int) -> float | None:
        if not metrics or not isinstance(metrics, dict):
            return None
        names = (self.objective,) if self.objective else (self.recipe.objective,) if self.recipe.objective \
            else DEFAULT_OBJECTIVES
        out = None
        for name in names:
            if name in metrics:
                v = _to_float(metrics[name])
                if v is None:
                    continue
                win = self.windows.get(name)
                if win is None:
                    win = self.windows[name] = deque(maxlen=max(512, 4 * self.recipe.horizon))
                win.append((step, v))
                first = self._first_reports.setdefault(name, [])
                if len(first) < self.recipe.min_points and math.isfinite(v):
                    first.append((step, v))
                if name == self.objective:
                    out = v
        return out

    def _wait(self, step: int, why: str, steps: int) -> None:
        self.next_check = step + max(1, steps)
        if why != self.status:
            self.status = why
            self._publish()

    def _pre_segment(self, step: int, space: list[KnobSpace]) -> tuple[list[Point] | None, str, int]:
        """The pre-change segment ending at ``step``, or why not yet and how long to wait."""
        r = self.recipe
        if self.objective is None:
            self.objective = next((n for n in (r.objective, *DEFAULT_OBJECTIVES) if n and self.windows.get(n)), None)
            if self.objective is None:
                return None, "waiting for the objective metric " + (r.objective or "val_loss/train_loss"), 1
            self.study.set_user_attr("objective", self.objective)
        last = max((self.kernel.state.get(s.key).last_change_step for s in space
                    if self.kernel.state.get(s.key).last_change_step is not None), default=None)
        quiet_from = -NEVER if last is None else last + r.settle_steps
        if last is not None:
            cool = max(s.cooldown for s in space)
            if step - last < cool:
                return None, f"guard cooldown until step {last + cool}", last + cool - step
        if step - quiet_from < r.horizon:
            return None, f"collecting a pre-change segment (until step {quiet_from + r.horizon})", \
                quiet_from + r.horizon - step
        points = [p for p in self.windows.get(self.objective, ()) if p[0] > quiet_from]
        recent = [p for p in points if p[0] > step - r.horizon]
        pre = recent if len(recent) >= r.min_points else points[-r.min_points:]
        if len(pre) < r.min_points:
            return None, f"waiting for {r.min_points} reports of {self.objective}", r.horizon
        if any(not math.isfinite(v) for _, v in pre):
            return None, f"{self.objective} is not finite; not tuning", r.horizon
        return pre, "", 0

    def start_level(self) -> float | None:
        """The objective's level when the run started (the mean of its first finite reports), if
        tune saw it from the run's first steps (a tune enabled late knows no start level)."""
        first = self._first_reports.get(self.objective or "", [])
        if len(first) < self.recipe.min_points or first[0][0] > self.recipe.horizon:
            return None
        return sum(v for _, v in first) / len(first)

    def still_starting(self, pre: list[Point]) -> bool:
        """Whether the run is still in its first descent: the objective within 10% of its start
        level and improving on its own (a significant slope). A trial there costs the run the
        most and is judged against the steepest trend; tune waits until the run is under way.
        (Flat at the start level is another matter: a stuck run, which a trial may unstick.)"""
        start = self.start_level()
        if start is None or len(pre) < 2:
            return False
        trend = fit_trend(pre)
        sign = 1.0 if self.recipe.direction == "minimize" else -1.0
        gain = sign * (start - trend.mean_y)
        return gain < 0.1 * abs(start) and sign * trend.slope < 0

    def _limits_reached(self, step: int = 0) -> str | None:
        r = self.recipe
        end = self.kernel.max_steps
        if end is not None and self.mode == "active":
            last = end - r.settle_steps - 2 * r.horizon
            if step > last:
                return (f"done: no new trial this close to the run's end (max_steps {end}; a trial must be scored "
                        f"one horizon before it, so the last one could start at step {max(last, 0)})")
        risk = r.risk
        done = sum(1 for rec in self.records if rec.get("kind") == "active" and rec.get("state") != "running")
        if risk.max_trials is not None and done >= risk.max_trials:
            return f"done: max_trials={risk.max_trials} reached"
        if risk.max_consecutive_rollbacks is not None and self.consecutive_rollbacks >= risk.max_consecutive_rollbacks:
            return f"stopped: {self.consecutive_rollbacks} consecutive rollbacks (risk.max_consecutive_rollbacks)"
        return None
