"""``Passive``: suggest and observe modes: scoring changes tune does not make itself.

``suggest`` publishes the asked trial as a suggestion (``TrialRunner.maybe_start``) and scores
it once someone applies it (the values match), or ends it expired or superseded; ``observe``
scores every change others make to the searched knobs. Either way the change stays live,
whoever made it. ``Passive`` owns what it has seen of the knobs (each one's last change and value).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..modules import ApplyContext
from .log import StudyLog
from .ready import Readiness
from .recipe import KnobSpace, TuneRecipe
from .runner import TrialRunner
from .score import Point, fit_trend
from .space import TuneSpace, full_ranges
from .status import TuneStatus
from .study import TuneStudy
from .trial import LiveTrial


class Passive:
    """Watches the searched knobs for changes others make, and starts scoring them."""

    def __init__(self, runner: TrialRunner, history: StudyLog, ready: Readiness, space: TuneSpace,
                 status: TuneStatus):
        self._runner, self._log, self._ready, self._space, self._status = runner, history, ready, space, status
        self._seen: dict[str, Any] = {}  # knob -> last_change_step (and knob + "\0value" -> value)
        self._space_cache: list[KnobSpace] = []

    def reset(self) -> None:
        self._seen = {}

    def track(self, keys: Iterable[str]) -> None:
        """A suggestion was published: watch its knobs from their last change on."""
        self._seen = {k: self._space.last_change(k) for k in keys}

    def undone(self, key: str, value: float) -> None:
        """Tune set ``key`` back (an undo): not a change for observe mode to score."""
        if key in self._seen:
            self._seen[key] = self._space.last_change(key)
            self._seen[key + "\0value"] = value

    def _changed(self, keys: Iterable[str]) -> int | None:
        """The step at which any of ``keys`` last changed, if that is newer than we saw."""
        newest = None
        for k in keys:
            last = self._space.last_change(k)
            if last != self._seen.get(k) and last is not None:
                newest = last if newest is None else max(newest, last)
        return newest

    # ------------------------------------------------------------------ suggest
    def watch_suggestion(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe, t: LiveTrial) -> None:
        changed = self._changed(t.params)
        if changed is None:
            if ctx.step >= t.expires:
                self._end_suggestion(study, t, ctx.step, "expired", f"not applied within {r.ttl_steps} steps")
            return
        live = self._space.values(t.params)
        if all(math.isclose(live[k], t.params[k], rel_tol=1e-6) for k in t.params):
            self._log.suggestion_status(t.number, "applied")
            self._start(study, r, t, changed)
        else:
            self._end_suggestion(study, t, ctx.step, "superseded", "the knobs were set to other values")

    def _end_suggestion(self, study: TuneStudy, t: LiveTrial, step: int, outcome: str, reason: str) -> None:
        self._runner.release()
        study.fail(t.number)
        self._log.suggestion_status(t.number, outcome)
        t.finish(step, state="failed", outcome=outcome, reason=reason)
        self._status.check_at(step)
        self._status.publish()

    # ------------------------------------------------------------------ observe
    def watch_changes(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe) -> None:
        """Observe mode: score every change of a searchable knob, whoever made it."""
        if self._status.due(ctx.step) or not self._seen:
            space, _ = self._space.resolve(r)
            self._space_cache = space
            for s in space:
                if s.key not in self._seen:
                    self._seen[s.key] = self._space.last_change(s.key)
                    self._seen[s.key + "\0value"] = self._space.value(s.key)
            self._status.check_at(ctx.step + r.horizon)
        space = self._space_cache
        keys = [s.key for s in space]
        at = self._changed(keys)
        if at is None:
            return
        before = {k: self._seen.get(k + "\0value", self._space.value(k)) for k in keys}
        params = self._space.values(keys)
        for k in keys:
            self._seen[k] = self._space.last_change(k)
            self._seen[k + "\0value"] = params[k]
        pre, why = self._segment_before(study, r, at)
        if pre is None:
            return self._status.say(f"change at step {at} not scored: {why}")
        self._log.anchor_at(fit_trend(pre).mean_y)
        if not study.has_complete():
            self._runner.baseline(study, space, before, at)
        dists = full_ranges(space, params)
        number, asked = study.ask(dists, enqueue={k: params[k] for k in dists})
        rec = self._log.new_record(number, "observed", dict(asked), before, at)
        self._start(study, r, LiveTrial(number, "observed", dict(asked), before, rec, pre), at, space)
        return None

    # ------------------------------------------------------------------ either
    def _start(self, study: TuneStudy, r: TuneRecipe, t: LiveTrial, at: int,
               space: list[KnobSpace] | None = None) -> None:
        """Score a change someone else made at step ``at`` (observe, or an applied suggestion)."""
        if space is None:
            space, _ = self._space.resolve(r)
        if t.kind == "suggested":
            t.rejudge_against(self._segment_before(study, r, at)[0])
        self._runner.begin(t, at, space, r)
        t.collect(self._ready.points())

    def _segment_before(self, study: TuneStudy, r: TuneRecipe, at: int) -> tuple[list[Point] | None, str]:
        why = self._runner.objective_pending(study, r)
        if why is not None:
            return None, why
        return self._ready.segment_before(r, at)
