"""One trial: ask -> apply -> score -> keep or roll back.

Ask Optuna within each knob's window of its live value, apply the values through the kernel
(``source: tune``: freeze, locks and the guard apply), collect the post-change segment, score it
against the pre-change trend, tell Optuna, then keep the change or set the knobs back; a
``tune verdict`` ledger entry tells each trial's story. ``_Live`` is the trial in flight.

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
import uuid
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from ..divergence import Verdict
from ..ops import TUNE, HotOp
from . import ApplyContext
from .tune_recipe import KnobSpace
from .tune_score import Point, fit_trend, score_change, worse_than
from .tune_space import _full

log = logging.getLogger("hotcb.tune")
NEVER = 1 << 62
ENDED = "the training process ended during the trial"


@dataclass
class _Live:
    """The trial in flight."""

    number: int
    kind: str  # "active" | "suggested" | "observed"
    otrial: Any
    params: dict[str, float]
    before: dict[str, float]
    record: dict[str, Any]
    change_step: int = -1  # -1: a suggestion nobody has applied yet
    pre: list[Point] = field(default_factory=list)
    post: list[Point] = field(default_factory=list)
    pre_level: float = math.nan
    post_from: int = NEVER
    due: int = NEVER
    give_up: int = NEVER
    abort_from: int = NEVER
    expires: int = NEVER
    marks: dict[str, Any] = field(default_factory=dict)  # knob -> last_change_step when scoring began


class TrialMixin:
    """``TuneModule``'s active trials (its state: ``TuneModule.__init__``)."""

    # ------------------------------------------------------------------ starting a trial
    def _maybe_start(self, ctx: ApplyContext) -> None:
        step, r = ctx.step, self.recipe
        stop = self._limits_reached(step)
        if stop:
            return self._wait(step, stop, NEVER)
        space, problems = self._space()
        if not space:
            return self._wait(step, "nothing to tune: " + ("; ".join(problems) or "no float knobs"), r.horizon)
        if self.mode == "active":
            frozen = next((self.kernel.freeze.decision_for(s.group, "set_params", "tune") for s in space), None)
            if frozen is not None:
                return self._wait(step, f"freeze mode {self.kernel.freeze.mode!r}: not applying", r.horizon)
        pre, why, wait = self._pre_segment(step, space)
        if pre is None:
            return self._wait(step, why, wait)
        if self.mode == "active":
            broken = self._broken(sum(v for _, v in pre) / len(pre))
            if broken is not None:  # nothing could be accepted: a trial would only cost the run
                return self._wait(step, f"no trial while {broken}", r.horizon)
            if self.still_starting(pre):
                return self._wait(step, f"no trial while the run is in its first descent ({self.objective} "
                                        f"within 10% of its start, {self.start_level():.4g}, and falling)", r.horizon)
        cur = {s.key: float(self.kernel.state.get(s.key).value) for s in space}
        dists = {}
        at_zero = []
        for s in space:
            w = s.window(cur[s.key])
            why = None
            if cur[s.key] == 0:  # "off": a trial tries the bottom of its range, if tune can undo that
                why = (f"{s.key}: at 0; give it a min > 0 in the recipe (the lowest value tune tries from 0)"
                       if w is None else self._zero_undo_refused(s.key, w[0]))
            if why:
                at_zero.append(why)
            elif w is not None:
                dists[s.key] = FloatDistribution(w[0], w[1], log=s.log)
        if problems + at_zero != self.skipped:
            self.skipped = problems + at_zero
            self._publish()
        if not dists:
            why = "; ".join(at_zero) if at_zero else "every knob sits at its bound"
            return self._wait(step, "no room to move: " + why, r.horizon)
        trend = fit_trend(pre)
        if self.anchor is None:
            self.anchor = trend.mean_y
        if not any(t.state == TrialState.COMPLETE for t in self.study.get_trials(deepcopy=False)):
            self._baseline(space, cur, step)
        otrial = self.study.ask(dists)
        params = {k: float(v) for k, v in otrial.params.items()}
        before = {k: cur[k] for k in params}
        rec = self._new_record(otrial.number, "active" if self.mode == "active" else "suggested", params, before, step)
        t = _Live(otrial.number, rec["kind"], otrial, params, before, rec, pre=pre)
        if self.mode == "suggest":
            t.expires = step + r.ttl_steps
            self.trial = t
            self._seen = {k: self.kernel.state.get(k).last_change_step for k in params}
            self.suggestions.append({"trial": t.number, "kind": "try", "params": params, "from": before,
                                     "step": step, "expires_step": t.expires, "status": "pending",
                                     "reason": f"tune trial {t.number} ({self.recipe.sampler})"})
            self.suggestions = self.suggestions[-50:]
            self.status = f"suggested trial {t.number}"
            self._publish()
            return
        rec["weights_step"] = self.weights.take(step)  # before the change: the weights to return to
        applied = self._apply(ctx, params, f"tune trial {t.number}: try " + _fmt(params, before))
        if applied is not True:
            self.weights.drop()
            self._apply(ctx, {k: before[k] for k in applied}, f"tune revert trial {t.number}: partly refused")
            self.study.tell(otrial.number, state=TrialState.FAIL)
            self._finish_record(t, step, state="failed", outcome="refused", reason=self.last_refusal)
            self.trial = None
            return self._wait(step, f"trial {t.number} refused: {self.last_refusal}", r.horizon)
        self._begin_post(t, step, space)

    def _begin_post(self, t: _Live, step: int, space: list[KnobSpace]) -> None:
        r = self.recipe
        t.change_step = step
        t.marks = {k: a.last_change_step for k in t.params if (a := self.kernel.state.get(k)) is not None}
        t.post_from = step + r.settle_steps
        t.due = t.post_from + r.horizon
        t.give_up = t.post_from + 3 * r.horizon
        t.abort_from = step + max(r.settle_steps, max((s.cooldown for s in space), default=0), 1)
        t.pre_level = fit_trend(t.pre).at(t.post_from + r.horizon / 2)
        t.record["step_start"] = step
        self.trial = t
        self.status = f"trial {t.number} running ({t.kind}) until step {t.due}"
        self._publish()

    def _baseline(self, space: list[KnobSpace], cur: dict[str, float], step: int) -> None:
        """Trial 0: the starting values at the anchor, so TPE knows where it started."""
        dists = {s.key: _full(s, cur[s.key]) for s in space if _full(s, cur[s.key]) is not None}
        frozen = optuna.trial.create_trial(params={k: cur[k] for k in dists}, distributions=dists,
                                           value=self.anchor, user_attrs={"kind": "baseline"})
        self.study.add_trial(frozen)
        number = self.study.trials[-1].number
        rec = self._new_record(number, "baseline", {k: cur[k] for k in dists}, {}, step)
        rec.update(state="complete", outcome="baseline", value=self.anchor, step_end=step, accepted=None)
        self.best = {"number": number, "params": rec["params"], "value": self.anchor, "improvement": 0.0}

    # ------------------------------------------------------------------ a trial in flight
    def _advance(self, ctx: ApplyContext, t: _Live, value: float | None, act: bool = True) -> None:
        step, r = ctx.step, self.recipe
        if value is not None and step > t.post_from:
            t.post.append((step, value))
        if t.kind == "active" and not act:  # its verdict may change knobs: only at a sync step
            return
        end = self.kernel.max_steps
        if t.kind == "active" and end is not None and step >= end:  # never leave an unscored change live
            return self._finish(ctx, t, unscorable=len(t.post) < r.min_points, at_end=True)
        if t.kind == "active" and r.risk.abort_worsening is not None and step >= t.abort_from and t.post and (
            any(not math.isfinite(v) for _, v in t.post)
            or (len(t.post) >= r.min_points and worse_than(t.pre_level, t.post, r.risk.abort_worsening, r.direction))
        ):
            return self._finish(ctx, t, aborted=True, why="aborted early by risk.abort_worsening; ")
        if t.kind == "active" and r.risk.abort_z is not None and step >= t.abort_from \
                and len(t.post) >= max(r.min_points, r.horizon // 4) and step < t.due:
            # A clearly worse trial costs the run every step it goes on: stop it as soon as the
            # evidence is in (a good trial cut short costs only the search a sample).
            s = score_change(t.pre, t.post, direction=r.direction, accept_z=r.accept_z)
            if s.improvement < -r.risk.abort_z * s.se:
                return self._finish(ctx, t, aborted=True, why=f"aborted early by risk.abort_z={r.risk.abort_z:g}; ")
        if step >= t.due and len(t.post) >= r.min_points:
            return self._finish(ctx, t)
        if step >= t.give_up:
            return self._finish(ctx, t, unscorable=True)

    def _finish(self, ctx: ApplyContext, t: _Live, aborted: bool = False, unscorable: bool = False,
                at_end: bool = False, why: str = "") -> None:
        step, r = ctx.step, self.recipe
        self.trial = None
        self.next_check = step + r.cooldown
        moved = [k for k, mark in t.marks.items()
                 if (a := self.kernel.state.get(k)) is None or a.last_change_step != mark]
        if moved:  # someone else changed a knob mid-trial: their change stands, the trial is void
            self.weights.drop()
            self.study.tell(t.number, state=TrialState.FAIL)
            self._finish_record(t, step, state="failed", outcome="interrupted",
                                reason=f"{', '.join(moved)} changed by another source during the trial")
            return self._publish()
        ending = f"the run ends at step {self.kernel.max_steps}; " if at_end else ""
        if unscorable:
            self.study.tell(t.number, state=TrialState.FAIL)
            why = ending + f"only {len(t.post)} reports of {self.objective} after the change"
            if t.kind == "active" and self._rollback(ctx, t, why) and r.risk.restore_weights != "never":
                self._restore_weights(ctx, t)  # unproven: back to where it started
            self.weights.drop()
            self._finish_record(t, step, state="failed", outcome="unscorable", reason=why)
            return self._publish()
        s = score_change(t.pre, t.post, direction=r.direction, accept_z=r.accept_z)
        broken = self._broken(s.post_score)
        sign = 1.0 if r.direction == "minimize" else -1.0
        anchor = self.anchor if self.anchor is not None else s.pre_score
        if math.isfinite(s.improvement):
            value = anchor - sign * s.improvement
        else:  # diverged: a large penalty so the sampler learns to stay away
            value = anchor + sign * 10.0 * max(abs(s.pre_score), 1e-3)
        self.study.tell(t.number, value)
        accepted = s.accepted and not aborted and broken is None
        reason = ending + why + s.reason
        if broken is not None:
            reason += f"; nothing is accepted while {broken}"
        t.record.update(pre_score=s.pre_score, post_score=s.post_score, improvement=s.improvement, se=s.se,
                        value=value, accepted=accepted)
        if t.kind == "active":
            rolled = False
            if accepted:
                self.anchor = value
                self.accepted += 1
                self.consecutive_rollbacks = 0
            else:
                rolled = self._rollback(ctx, t, reason)
                if rolled and (broken is not None and self.recipe.risk.restore_weights != "never"
                               or self._weights_wanted(t, s)):
                    self._restore_weights(ctx, t)  # on a broken run a trial cannot be judged: back
                self.rolled_back += int(rolled)
                self.consecutive_rollbacks += 1
                if not rolled:  # the trial's values stay live (e.g. a human locked a knob meanwhile)
                    self.anchor = value
            outcome = "accepted" if accepted else ("rolled_back" if rolled else "rollback_refused")
            t.record["rolled_back"] = rolled
            self._note(ctx, t, outcome, reason)
        else:  # the change stays live whoever made it; recommend undoing a bad one
            self.anchor = value
            outcome = "kept" if accepted else "worse"
            if t.kind == "suggested" and not accepted:
                self.suggestions.append({"trial": t.number, "kind": "rollback", "params": t.before,
                                         "step": step, "status": "pending",
                                         "reason": f"tune trial {t.number} did not help: {s.reason}"})
        if (accepted or t.kind != "active") and self._better(value):
            self.best = {"number": t.number, "params": t.params, "value": value, "improvement": s.improvement,
                         "step_end": step}
        self._finish_record(t, step, state="complete", outcome=outcome, reason=reason)
        self.status = f"trial {t.number} {outcome}"
        self.weights.drop()
        self._publish()

    def _broken(self, level: float) -> str | None:
        """Why no change may be accepted now: the run is diverging or at chance (else None)."""
        if not math.isfinite(level):
            return "the objective is not finite (the run is diverging)"
        det = getattr(self.kernel.modules.get("rescue"), "detector", None)  # the kernel's divergence detector
        if det is not None:
            if det.verdict in (Verdict.BLOWUP, Verdict.NON_FINITE, Verdict.CHANCE):
                return f"the run's divergence detector says {det.verdict.value} ({det.describe()})"
            if det.at_chance_since_start():
                return f"the run's loss sits at chance (ln {det.config.classes}) since its start"
        return None

    def _weights_wanted(self, t: _Live, s: Any) -> bool:
        """Whether a rejected trial's weights go back (``risk.restore_weights``). ``worse``: only
        when the trial left the network measurably worse than it found it (the objective after
        the change against its level just before the change, not projected): a trial that
        made progress, only less than the old setting would have, keeps what it gained, since
        the snapshot is further behind still."""
        mode = self.recipe.risk.restore_weights
        if mode == "never":
            return False
        if mode == "rejected" or not math.isfinite(s.post_score):
            return True
        sign = 1.0 if self.recipe.direction == "minimize" else -1.0
        tail = [v for _, v in t.pre[-max(self.recipe.min_points, len(t.pre) // 4):]]
        lost = sign * (s.post_score - sum(tail) / len(tail))  # against the level the snapshot holds
        return lost > self.recipe.accept_z * s.se

    def _restore_weights(self, ctx: ApplyContext, t: _Live) -> None:
        try:
            t.record["weights_restored"] = self.weights.restore(ctx.env, ctx.step)
        except Exception as e:  # the knobs are back; the weights stay as the trial left them
            t.record["weights_restored"] = None
            t.record["weights_error"] = f"{type(e).__name__}: {e}"
            log.warning("hotcb tune: restoring trial %s's weights failed: %s", t.number, e)

    def _better(self, value: float) -> bool:
        if self.best is None or not isinstance(self.best.get("value"), (int, float)):
            return True
        return value < self.best["value"] if self.recipe.direction == "minimize" else value > self.best["value"]

    def _rollback(self, ctx: ApplyContext, t: _Live, why: str) -> bool:
        done = self._apply(ctx, t.before, f"tune roll back trial {t.number}: {why}")
        return done is True

    # ------------------------------------------------------------------ applying through the kernel
    def _apply(self, ctx: ApplyContext, values: dict[str, float], reason: str) -> Any:
        """Set knobs as ``source: tune`` through the kernel (freeze + guard + ledger).

        Returns True when every group applied, else the keys that did apply (to undo them).
        Distributed: only inside rank 0's broadcast, and each op goes to the other ranks too.
        """
        if not self._can_apply():  # never on one rank alone: that would split the ranks
            self.last_refusal = "not at a sync step (distributed)"
            log.error("hotcb tune: a knob change outside a sync step was dropped: %s", reason)
            return []
        by_group: dict[str, dict[str, float]] = {}
        for k, v in values.items():
            a = self.kernel.state.get(k)
            by_group.setdefault(a.group if a is not None else "opt", {})[k] = v
        done: list[str] = []
        self.last_refusal = None
        for group, params in by_group.items():
            op = HotOp(module=group, op="set_params", params=params, source="tune",
                       actor=f"tune/{self.recipe.sampler}", reason=reason,
                       cmd_id=f"tune-{uuid.uuid4().hex[:16]}")
            entry = self.kernel.submit(op, ctx.env)
            if self.kernel.dist is not None:
                self._outbox.append({"module": group, "op": "set_params", "params": params, "actor": op.actor,
                                     "reason": reason, "cmd_id": op.cmd_id, "decision": entry.get("decision")})
            if entry.get("decision") == "applied":
                done.extend(params)
            else:
                self.last_refusal = f"{entry.get('decision')}: {entry.get('error')}"
        return True if len(done) == len(values) else done

    def _note(self, ctx: ApplyContext, t: _Live, outcome: str, reason: str) -> None:
        """A ledger entry for the verdict, so the ledger alone tells each trial's story."""
        params = {"trial": t.number, "outcome": outcome, "params": t.params, "before": t.before,
                  "improvement": t.record.get("improvement"), "pre_score": t.record.get("pre_score"),
                  "post_score": t.record.get("post_score"),
                  "weights_restored_to_step": t.record.get("weights_restored")}
        self.kernel.submit(HotOp(module=TUNE, op="verdict", params=params, source="tune",
                                 actor=f"tune/{self.recipe.sampler}", reason=f"tune trial {t.number} {outcome}: {reason}",
                                 cmd_id=f"tune-{uuid.uuid4().hex[:16]}"), ctx.env)


def _fmt(params: dict[str, float], before: dict[str, float]) -> str:
    return ", ".join(f"{k} {before.get(k, float('nan')):.4g} -> {v:.4g}" for k, v in params.items())
