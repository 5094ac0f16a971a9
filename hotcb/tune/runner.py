"""``TrialRunner``: one trial: ask -> apply -> score -> keep or roll back. It owns the trial in flight.

Ask Optuna within each knob's window of its live value, apply the values through the kernel
(``source: tune``: freeze, locks and the guard apply), collect the post-change segment, score it
against the pre-change trend, tell Optuna, then keep the change or set the knobs back; a
``tune verdict`` ledger entry tells each trial's story. Suggested and observed trials
(``passive`` starts them) are scored here too; their change stays live whoever made it.

A rejected trial may have hurt the weights, not only the knobs: the registered state is
snapshotted right before the change (``TrialWeights``) and loaded back with the knobs when the
trial is undone (``risk.restore_weights``: when the trial left the network worse than it found
it, the default; on every rejection; or never). Nothing is accepted, and no trial starts, while
the kernel's divergence detector says the run blew up, went non-finite or sits at chance; no
trial starts while the run is still in its first descent (``still_starting``); a change still
unscored at the run's last step (``max_steps``) is scored with what it has, or undone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from optuna.distributions import FloatDistribution

from ..modules import ApplyContext
from .decide import early_abort, limits_reached, still_starting, told_value, weights_wanted
from .log import StudyLog
from .readonly import ReadOnly
from .ready import Readiness
from .recipe import KnobSpace, TuneRecipe
from .score import Point, fit_trend, score_change
from .space import TuneSpace, full_ranges
from .status import TuneStatus
from .study import TuneStudy
from .trial import NEVER, LiveTrial
from .weights import TrialWeights
from .writer import KnobWriter

log = logging.getLogger("hotcb.tune")


def actor(r: TuneRecipe) -> str:
    return f"tune/{r.sampler}"


class TrialRunner:
    """Starts, advances and judges the trial in flight (``trial``; at most one)."""

    def __init__(self, history: StudyLog, ready: Readiness, space: TuneSpace, weights: TrialWeights,
                 writer: KnobWriter, status: TuneStatus, max_steps: Callable[[], int | None],
                 why_broken: Callable[[], str | None]):
        self._log, self._ready, self._space, self._weights = history, ready, space, weights
        self._writer, self._status = writer, status
        self._max_steps, self._why_broken = max_steps, why_broken  # the rescue's, asked when needed
        self._trial: LiveTrial | None = None

    trial: ReadOnly[LiveTrial | None] = ReadOnly()

    def release(self) -> LiveTrial | None:
        """End the trial in flight here (its caller settles it); its weights are not needed."""
        t, self._trial = self._trial, None
        self._weights.drop()
        return t

    # ------------------------------------------------------------------ starting a trial
    def objective_pending(self, study: TuneStudy, r: TuneRecipe) -> str | None:
        """Why the objective is not known yet (None: it is; chosen now, the study stores it)."""
        if self._ready.objective is None:
            chosen = self._ready.choose(r)
            if chosen is None:
                return self._ready.waiting_for(r)
            study.set_objective(chosen)
        return None

    def _pre_segment(self, study: TuneStudy, r: TuneRecipe, step: int,
                     space: list[KnobSpace]) -> tuple[list[Point] | None, str, int]:
        why = self.objective_pending(study, r)
        if why is not None:
            return None, why, 1
        return self._ready.pre_segment(r, step, space, self._space.newest_change(s.key for s in space))

    # complexity: each reason a trial may not start now returns it, in the order they are checked
    def maybe_start(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe, mode: str) -> LiveTrial | None:  # noqa: PLR0911
        """Start a trial if one may start now (``active``: applied; ``suggest``: published);
        else wait, saying why. Returns the trial started."""
        step, wait = ctx.step, self._status.wait
        stop = limits_reached(r, step, self._max_steps(), mode == "active", self._log.active_done(),
                              self._log.consecutive_rollbacks)
        if stop:
            return wait(step, stop, NEVER)
        space, problems = self._space.resolve(r)
        if not space:
            return wait(step, "nothing to tune: " + ("; ".join(problems) or "no float knobs"), r.horizon)
        if mode == "active" and (frozen := self._space.frozen(space)) is not None:
            return wait(step, f"freeze mode {frozen!r}: not applying", r.horizon)
        pre, why, steps = self._pre_segment(study, r, step, space)
        if pre is None:
            return wait(step, why, steps)
        if mode == "active":
            broken = self.broken(sum(v for _, v in pre) / len(pre))
            if broken is not None:  # nothing could be accepted: a trial would only cost the run
                return wait(step, f"no trial while {broken}", r.horizon)
            start = self._ready.start_level(r)
            if still_starting(start, pre, r.direction):
                return wait(step, f"no trial while the run is in its first descent ({self._ready.objective} "
                                  f"within 10% of its start, {start:.4g}, and falling)", r.horizon)
        cur = self._space.values(s.key for s in space)
        dists, at_zero = self._windows(space, cur)
        self._status.skipped(problems + at_zero)
        if not dists:
            why = "; ".join(at_zero) if at_zero else "every knob sits at its bound"
            return wait(step, "no room to move: " + why, r.horizon)
        self._log.anchor_at(fit_trend(pre).mean_y)
        if not study.has_complete():
            self.baseline(study, space, cur, step)
        number, asked = study.ask(dists)
        params = {k: float(v) for k, v in asked.items()}
        before = {k: cur[k] for k in params}
        kind = "active" if mode == "active" else "suggested"
        t = LiveTrial(number, kind, params, before, self._log.new_record(number, kind, params, before, step), pre)
        if mode == "suggest":
            t.expire_at(step + r.ttl_steps)
            self._trial = t
            self._log.suggest({"trial": number, "kind": "try", "params": params, "from": before, "step": step,
                               "expires_step": t.expires, "status": "pending",
                               "reason": f"tune trial {number} ({r.sampler})"})
            self._status.say(f"suggested trial {number}")
            return t
        t.note(weights_step=self._weights.take(step))  # before the change: the weights to return to
        applied = self._writer.apply(ctx, params, f"tune trial {number}: try " + _fmt(params, before), actor(r))
        if applied is not True:
            self._weights.drop()
            self._writer.apply(ctx, {k: before[k] for k in applied}, f"tune revert trial {number}: partly refused",
                               actor(r))
            study.fail(number)
            t.finish(step, state="failed", outcome="refused", reason=self._writer.last_refusal)
            return wait(step, f"trial {number} refused: {self._writer.last_refusal}", r.horizon)
        self.begin(t, step, space, r)
        return t

    def _windows(self, space: list[KnobSpace], cur: dict[str, float]) -> tuple[dict[str, FloatDistribution], list[str]]:
        """Each knob's window around its live value, and why each knob at 0 may not move."""
        dists, at_zero = {}, []
        for s in space:
            w = s.window(cur[s.key])
            why = None
            if cur[s.key] == 0:  # "off": a trial tries the bottom of its range, if tune can undo that
                why = (f"{s.key}: at 0; give it a min > 0 in the recipe (the lowest value tune tries from 0)"
                       if w is None else self._space.zero_undo_refused(s.key, w[0]))
            if why:
                at_zero.append(why)
            elif w is not None:
                dists[s.key] = FloatDistribution(w[0], w[1], log=s.log)
        return dists, at_zero

    def begin(self, t: LiveTrial, step: int, space: list[KnobSpace], r: TuneRecipe) -> None:
        """``t``'s change took effect at ``step``: it is the trial in flight, scored from now on."""
        t.begin(step, r, max((s.cooldown for s in space), default=0), self._space.marks(t.params))
        self._trial = t
        self._status.say(f"trial {t.number} running ({t.kind}) until step {t.due}")

    def baseline(self, study: TuneStudy, space: list[KnobSpace], cur: dict[str, float], step: int) -> None:
        """Trial 0: the starting values at the anchor, so TPE knows where it started."""
        dists = full_ranges(space, cur)
        params = {k: cur[k] for k in dists}
        self._log.baseline(study.add_baseline(params, dists, self._log.anchor), params, step)

    # ------------------------------------------------------------------ a trial in flight
    def advance(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe, value: float | None,
                act: bool = True) -> None:
        t, step = self._trial, ctx.step
        assert t is not None
        t.report_point(step, value)
        if t.kind != "active":
            return self._judge_when_due(ctx, study, r, t)
        if not act:  # its verdict may change knobs: only at a sync step
            return None
        end = self._max_steps()
        if end is not None and step >= end:  # never leave an unscored change live
            return self._finish(ctx, study, r, t, unscorable=len(t.post) < r.min_points, at_end=True)
        why = early_abort(r, t, step)
        if why is not None:
            return self._finish(ctx, study, r, t, aborted=True, why=why)
        return self._judge_when_due(ctx, study, r, t)

    def _judge_when_due(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe, t: LiveTrial) -> None:
        if ctx.step >= t.due and len(t.post) >= r.min_points:
            return self._finish(ctx, study, r, t)
        if ctx.step >= t.give_up:
            return self._finish(ctx, study, r, t, unscorable=True)
        return None

    def _finish(self, ctx: ApplyContext, study: TuneStudy, r: TuneRecipe, t: LiveTrial, aborted: bool = False,
                unscorable: bool = False, at_end: bool = False, why: str = "") -> None:
        step = ctx.step
        self._trial = None
        self._status.check_at(step + r.cooldown)
        moved = self._space.moved(t.marks)
        if moved:  # someone else changed a knob mid-trial: their change stands, the trial is void
            self._weights.drop()
            study.fail(t.number)
            t.finish(step, state="failed", outcome="interrupted",
                     reason=f"{', '.join(moved)} changed by another source during the trial")
            return self._status.publish()
        ending = f"the run ends at step {self._max_steps()}; " if at_end else ""
        if unscorable:
            study.fail(t.number)
            why = ending + f"only {len(t.post)} reports of {self._ready.objective} after the change"
            rewind = r.risk.restore_weights != "never"
            if t.kind == "active":
                self._rollback(ctx, r, t, why, rewind)  # unproven: back to where it started
            self._weights.drop()
            t.finish(step, state="failed", outcome="unscorable", reason=why)
            return self._status.publish()
        s = score_change(t.pre, t.post, direction=r.direction, accept_z=r.accept_z)
        broken = self.broken(s.post_score)
        value = told_value(self._log.anchor, s, r.direction)
        study.tell(t.number, value)
        accepted = s.accepted and not aborted and broken is None
        reason = ending + why + s.reason
        if broken is not None:
            reason += f"; nothing is accepted while {broken}"
        t.note(pre_score=s.pre_score, post_score=s.post_score, improvement=s.improvement, se=s.se, value=value,
               accepted=accepted)
        if t.kind == "active":
            rolled = False
            if accepted:
                self._log.accepted(value)
            else:
                # On a broken run a trial cannot be judged: its weights go back too.
                rewind = broken is not None and r.risk.restore_weights != "never" or weights_wanted(r, t.pre, s)
                rolled = self._rollback(ctx, r, t, reason, rewind)
                self._log.rejected(value, rolled)
            outcome = "accepted" if accepted else ("rolled_back" if rolled else "rollback_refused")
            t.note(rolled_back=rolled)
            self._writer.verdict(ctx, t.verdict(outcome), f"tune trial {t.number} {outcome}: {reason}", actor(r))
        else:  # the change stays live whoever made it; recommend undoing a bad one
            self._log.kept(value)
            outcome = "kept" if accepted else "worse"
            if t.kind == "suggested" and not accepted:
                self._log.suggest({"trial": t.number, "kind": "rollback", "params": t.before, "step": step,
                                   "status": "pending", "reason": f"tune trial {t.number} did not help: {s.reason}"},
                                  trim=False)
        if accepted or t.kind != "active":
            self._log.offer_best(t.number, t.params, value, s.improvement, step, r.direction)
        t.finish(step, state="complete", outcome=outcome, reason=reason)
        self._weights.drop()
        self._status.say(f"trial {t.number} {outcome}")
        return None

    def broken(self, level: float) -> str | None:
        """Why no change may be accepted now: the run is diverging or at chance (else None)."""
        if not math.isfinite(level):
            return "the objective is not finite (the run is diverging)"
        why = self._why_broken()  # the rescue's divergence detector (None: healthy, or no rescue)
        if why is not None:
            return why
        return None

    def _restore_weights(self, ctx: ApplyContext, t: LiveTrial) -> None:
        try:
            t.note(weights_restored=self._weights.restore(ctx.env, ctx.step))
        except Exception as e:  # the knobs are back; the weights stay as the trial left them
            t.note(weights_restored=None, weights_error=f"{type(e).__name__}: {e}")
            log.warning("hotcb tune: restoring trial %s's weights failed: %s", t.number, e)

    def _rollback(self, ctx: ApplyContext, r: TuneRecipe, t: LiveTrial, why: str, rewind: bool) -> bool:
        """Set the trial's knobs back, and with ``rewind`` load its starting weights (and the
        scheduler with them) after: the knobs then go back to their values at that point; else the
        run keeps its place in the schedule and only the trial's change is taken out of it.

        A schedule that moved lr since the trial began (a warmup) can put the pre-trial value
        further from the live one than the guard's ratio allows (charlm x10: a trial's x1.9 at step
        40 of a 50-step warmup, then the warmup's own rise, made the rewind 0.191 -> 0.082, x0.43,
        refused, and the trial's lr stayed). Then the trial's factor is taken out of the live lr
        (within the ratio, as the trial's own change was) and the weights still go back: the load
        re-imposes the knobs as the rollback left them, so the lr the ledger states is the lr run
        next, the schedule's level that much above its pre-trial one (the warmup's rise during the
        trial), and the reason says so."""
        rewinds = rewind and self._weights.step is not None
        outran = rewinds and not self._space.ratio_allows(t.before)
        if outran:
            why += ("; the schedule moved lr since the trial began and its pre-trial value is beyond the guard's "
                    "ratio from the live one: the trial's factor is taken out of the live lr, kept as the weights "
                    "go back")
        values = t.before if rewinds and not outran else self._space.undo_values(t.before, t.params)
        done = self._writer.apply(ctx, values, f"tune roll back trial {t.number}: {why}", actor(r)) is True
        if done and rewind:
            self._restore_weights(ctx, t)
        return done


def _fmt(params: dict[str, float], before: dict[str, float]) -> str:
    return ", ".join(f"{k} {before.get(k, float('nan')):.4g} -> {v:.4g}" for k, v in params.items())
