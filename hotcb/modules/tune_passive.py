"""Suggest and observe modes: scoring changes tune does not make itself.

``suggest`` publishes the asked trial as a suggestion and scores it once someone applies it
(the values match), or ends it expired or superseded; ``observe`` scores every change others
make to the searched knobs. Either way the change stays live, whoever made it.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState

from . import ApplyContext
from .tune_recipe import KnobSpace
from .tune_score import Point, fit_trend
from .tune_space import _full
from .tune_trial import _Live


class PassiveMixin:
    """``TuneModule``'s suggest and observe modes (its state: ``TuneModule.__init__``)."""

    def _watch_suggestion(self, ctx: ApplyContext) -> None:
        t = self.trial
        assert t is not None
        changed = self._changed(t.params)
        if changed is None:
            if ctx.step >= t.expires:
                self._end_suggestion(t, ctx.step, "expired", f"not applied within {self.recipe.ttl_steps} steps")
            return
        live = {k: self.kernel.state.get(k).value for k in t.params}
        if all(math.isclose(float(live[k]), t.params[k], rel_tol=1e-6) for k in t.params):
            self._set_suggestion_status(t.number, "applied")
            self._start_passive(ctx, t, changed)
        else:
            self._end_suggestion(t, ctx.step, "superseded", "the knobs were set to other values")

    def _end_suggestion(self, t: _Live, step: int, outcome: str, reason: str) -> None:
        self.trial = None
        self.study.tell(t.number, state=TrialState.FAIL)
        self._set_suggestion_status(t.number, outcome)
        self._finish_record(t, step, state="failed", outcome=outcome, reason=reason)
        self.next_check = step
        self._publish()

    def _set_suggestion_status(self, number: int, status: str) -> None:
        for s in self.suggestions:
            if s.get("trial") == number and s.get("kind") == "try":
                s["status"] = status

    def _changed(self, keys: Any) -> int | None:
        """The step at which any of ``keys`` last changed, if that is newer than we saw."""
        newest = None
        for k in keys:
            a = self.kernel.state.get(k)
            if a is not None and a.last_change_step != self._seen.get(k) and a.last_change_step is not None:
                newest = a.last_change_step if newest is None else max(newest, a.last_change_step)
        return newest

    def _watch_changes(self, ctx: ApplyContext) -> None:
        """Observe mode: score every change of a searchable knob, whoever made it."""
        if ctx.step >= self.next_check or not self._seen:
            space, _ = self._space()
            self._space_cache = space
            for s in space:
                if s.key not in self._seen:
                    a = self.kernel.state.get(s.key)
                    self._seen[s.key] = a.last_change_step
                    self._seen[s.key + "\0value"] = float(a.value)
            self.next_check = ctx.step + self.recipe.horizon
        space = self._space_cache
        keys = [s.key for s in space]
        at = self._changed(keys)
        if at is None:
            return
        before = {k: self._seen.get(k + "\0value", float(self.kernel.state.get(k).value)) for k in keys}
        params = {k: float(self.kernel.state.get(k).value) for k in keys}
        for k in keys:
            self._seen[k] = self.kernel.state.get(k).last_change_step
            self._seen[k + "\0value"] = params[k]
        pre, why, _ = self._pre_segment_before(at, space)
        if pre is None:
            self.status = f"change at step {at} not scored: {why}"
            return self._publish()
        if self.anchor is None:
            self.anchor = fit_trend(pre).mean_y
        if not any(t.state == TrialState.COMPLETE for t in self.study.get_trials(deepcopy=False)):
            self._baseline(space, before, at)
        dists = {s.key: _full(s, params[s.key]) for s in space if _full(s, params[s.key]) is not None}
        self.study.enqueue_trial({k: params[k] for k in dists})
        otrial = self.study.ask(dists)
        rec = self._new_record(otrial.number, "observed", dict(otrial.params), before, at)
        t = _Live(otrial.number, "observed", otrial, dict(otrial.params), before, rec, pre=pre)
        self._start_passive(ctx, t, at, space)

    def _start_passive(self, ctx: ApplyContext, t: _Live, at: int, space: list[KnobSpace] | None = None) -> None:
        """Score a change someone else made at step ``at`` (observe, or an applied suggestion)."""
        if space is None:
            space, _ = self._space()
        if t.kind == "suggested":
            pre, _, _ = self._pre_segment_before(at, space)
            t.pre = pre or t.pre
        self._begin_post(t, at, space)
        t.post = [p for p in self.windows.get(self.objective, ()) if p[0] > t.post_from]

    def _pre_segment_before(self, at: int, space: list[KnobSpace]) -> tuple[list[Point] | None, str, int]:
        if self.objective is None:
            pre, why, wait = self._pre_segment(at, [])  # decides the objective
            if self.objective is None:
                return None, why, wait
        r = self.recipe
        points = [p for p in self.windows.get(self.objective, ()) if at - r.horizon < p[0] <= at]
        if len(points) < r.min_points or any(not math.isfinite(v) for _, v in points):
            return None, f"fewer than {r.min_points} finite reports of {self.objective} before it", r.horizon
        return points, "", 0
