"""``TuneModule``: online constrained hyperparameter search with Optuna, inside the training loop.

Each mutation is one Optuna trial over the live knobs:

    ask (TPE or random, within bounds and one guarded step of the live value)
    -> apply through the kernel like any other op (``source: tune``; the guard checks it)
    -> wait ``settle`` steps, collect ``horizon`` steps of the objective
    -> score against the pre-change segment's trend (``tune_score``)
    -> tell Optuna the score -> keep, or roll back (set the knobs back, reason names the trial).

Scores are *anchored*: the first trial's pre-change level is the baseline (trial 0, the
starting values); an accepted change moves the anchor by its improvement. So every told value
estimates "the objective with these knob values, as of when tuning started", which TPE can
compare across trials although the loss itself keeps drifting as the model trains.

Modes: ``active`` applies trials; ``suggest`` publishes the asked trial as a suggestion and
scores it if someone applies it; ``observe`` scores every change others make. The study lives
in ``RUN_DIR/hotcb.tune.journal`` (Optuna JournalStorage), so a restarted process continues it.
The state the tool surface reads is published atomically to ``RUN_DIR/hotcb.tune.json``.
Nothing here raises into the training loop: every failure is recorded and training goes on.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from ..actuators.actuator import ValueRefused
from ..jsonl import read_json, write_json_atomic
from ..ops import TUNE, HotOp
from ..rundir import TUNE as TUNE_FILE
from . import ApplyContext
from .tune_recipe import DEFAULT_OBJECTIVES, MODES, KnobSpace, TuneRecipe, parse_recipe, resolve_space
from .tune_score import Point, fit_trend, score_change, worse_than

log = logging.getLogger("hotcb.tune")
JOURNAL = "hotcb.tune.journal"
KEEP_RECORDS = 500  # trials kept in hotcb.tune.json (the journal keeps them all)
NEVER = 1 << 62


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


class TuneModule:
    """Routed ops: ``tune enable|disable|set_recipe`` (and ``verdict``, its own ledger notes)."""

    def __init__(self, kernel: Any):
        self.kernel = kernel
        self.path = kernel.run.root / TUNE_FILE
        self.journal = kernel.run.file(JOURNAL)
        saved = read_json(self.path, {}) or {}
        saved = saved if isinstance(saved, dict) else {}
        self.mode: str = saved.get("mode") if saved.get("mode") in MODES else "off"
        try:
            self.recipe = parse_recipe(saved.get("recipe"))
        except ValueRefused:
            self.recipe = TuneRecipe()
        self.objective: str | None = saved.get("objective")
        self.records: list[dict[str, Any]] = [r for r in saved.get("trials") or [] if isinstance(r, dict)]
        self.suggestions: list[dict[str, Any]] = list(saved.get("suggestions") or [])
        self.accepted = int(saved.get("accepted") or 0)
        self.rolled_back = int(saved.get("rolled_back") or 0)
        self.best: dict[str, Any] | None = saved.get("best")
        self.anchor: float | None = saved.get("anchor")
        self.consecutive_rollbacks = 0
        self.study: Any = None
        self.trial: _Live | None = None
        self.windows: dict[str, deque[Point]] = {}
        self.next_check = 0
        self.status = "off"
        self.last_error: str | None = None
        self._seen: dict[str, Any] = {}  # observe/suggest: knob -> last_change_step (and value)
        self._space_cache: list[KnobSpace] = []
        self.last_refusal: str | None = None
        if self.mode != "off":
            try:
                self.study, self.objective = self._open_study(self.recipe)
                self._fail_stale()
                self.status = "resumed"
            except Exception as e:  # a study that cannot be reopened must not stop the run
                self._fail(e, "resuming the tune study")
                self.mode = "off"
            self._publish()

    # ------------------------------------------------------------------ routed ops
    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        p = op.params or {}
        if op.op == "verdict":
            if op.source != "tune":
                raise ValueRefused("tune verdicts are recorded by tune itself")
            return dict(p)
        if op.op == "disable" or (op.op == "enable" and p.get("mode") == "off"):
            old = self.mode
            self._abandon(ctx, f"tune disabled by {op.source}")
            self.mode, self.status = "off", "off"
            self._publish()
            return {"mode": {"old": old, "new": "off"}}
        if op.op == "enable":
            mode = p.get("mode", "active")
            if mode not in MODES:
                raise ValueRefused(f"tune mode must be one of {', '.join(MODES)}, got {mode!r}")
            recipe = parse_recipe(p["recipe"]) if "recipe" in p else self.recipe
            old = self.mode
            self._switch(recipe, ctx, f"tune mode {old} -> {mode}", force=mode != old)
            self.mode = mode
            self.status = "enabled"
            self._publish()
            return {"mode": {"old": old, "new": mode}, "study_name": recipe.study_name,
                    "objective": self.objective, "trials_in_study": len(self.study.trials)}
        if op.op == "set_recipe":
            recipe = parse_recipe(p["recipe"] if "recipe" in p else (p or None))
            self._switch(recipe, ctx, "tune recipe replaced")
            self._publish()
            return {"recipe": recipe.to_dict()}
        raise ValueRefused(f"unknown tune op {op.op!r} (use enable, disable, set_recipe)")

    def _switch(self, recipe: TuneRecipe, ctx: ApplyContext, reason: str, force: bool = False) -> None:
        """Adopt a recipe: open its study first, so a refusal changes nothing."""
        study, objective = self._open_study(recipe)
        new_study = self.study is None or recipe.study_name != self.recipe.study_name \
            or recipe.direction != self.recipe.direction
        if new_study or force:
            self._abandon(ctx, reason)
        if new_study:
            self.anchor, self.best = None, None
        self.study, self.objective, self.recipe = study, objective, recipe
        self._fail_stale()
        self.next_check = 0
        self.consecutive_rollbacks = 0
        self._seen = {}

    # ------------------------------------------------------------------ the study
    def _open_study(self, recipe: TuneRecipe) -> tuple[Any, str | None]:
        """The recipe's study (created or loaded from the journal) and the objective it scores."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(self.journal)))
            study = optuna.create_study(study_name=recipe.study_name, storage=storage,
                                        direction=recipe.direction, load_if_exists=True)
        if study.direction.name.lower() != recipe.direction:
            raise ValueRefused(f"study {recipe.study_name!r} is set to {study.direction.name.lower()}; "
                               f"set a new study_name to {recipe.direction}")
        stored = study.user_attrs.get("objective")
        if stored and recipe.objective and stored != recipe.objective:
            raise ValueRefused(f"study {recipe.study_name!r} scores {stored!r}; set a new study_name "
                               f"to tune {recipe.objective!r}")
        # A restarted process must not replay the same random proposals: offset the seed.
        seed = None if recipe.seed is None else recipe.seed + len(study.trials)
        if recipe.sampler == "random":
            study.sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=recipe.n_startup_trials)
        return study, stored or recipe.objective

    def _fail_stale(self) -> None:
        """Trials left running by a process that ended mid-trial can never be scored."""
        live = self.trial.number if self.trial is not None else None
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number != live:
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._update_record(t.number, state="failed", outcome="interrupted", accepted=False,
                                    reason="the training process ended during the trial")

    # ------------------------------------------------------------------ per step
    def on_step(self, ctx: ApplyContext) -> None:
        """Called by the kernel every step: cheap unless a trial or a check is due."""
        if self.mode == "off":
            return
        try:
            value = self._observe(ctx.env.get("metrics"), ctx.step)
            t = self.trial
            if t is not None:
                if t.change_step < 0:
                    self._watch_suggestion(ctx)
                else:
                    self._advance(ctx, t, value)
            elif self.mode == "observe":
                self._watch_changes(ctx)
            elif ctx.step >= self.next_check:
                self._maybe_start(ctx)
        except Exception as e:  # the run matters more than the search
            self._fail(e, "tune step", ctx)

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
                if name == self.objective:
                    out = v
        return out

    # ------------------------------------------------------------------ readiness
    def _space(self) -> tuple[list[KnobSpace], list[str]]:
        space, problems = resolve_space(self.recipe, self.kernel.state.describe_all(), self.kernel.guard)
        locked = [s.key for s in space if s.key in self.kernel.locks]
        return [s for s in space if s.key not in self.kernel.locks], problems + [f"{k}: locked" for k in locked]

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

    def _limits_reached(self) -> str | None:
        risk = self.recipe.risk
        done = sum(1 for rec in self.records if rec.get("kind") == "active" and rec.get("state") != "running")
        if risk.max_trials is not None and done >= risk.max_trials:
            return f"done: max_trials={risk.max_trials} reached"
        if risk.max_consecutive_rollbacks is not None and self.consecutive_rollbacks >= risk.max_consecutive_rollbacks:
            return f"stopped: {self.consecutive_rollbacks} consecutive rollbacks (risk.max_consecutive_rollbacks)"
        return None

    # ------------------------------------------------------------------ starting a trial
    def _maybe_start(self, ctx: ApplyContext) -> None:
        step, r = ctx.step, self.recipe
        stop = self._limits_reached()
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
        cur = {s.key: float(self.kernel.state.get(s.key).value) for s in space}
        dists = {}
        for s in space:
            w = s.window(cur[s.key])
            if w is not None:
                dists[s.key] = FloatDistribution(w[0], w[1], log=s.log)
        if not dists:
            return self._wait(step, "no room to move: every knob sits at its bound", r.horizon)
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
        applied = self._apply(ctx, params, f"tune trial {t.number}: try " + _fmt(params, before))
        if applied is not True:
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
    def _advance(self, ctx: ApplyContext, t: _Live, value: float | None) -> None:
        step, r = ctx.step, self.recipe
        if value is not None and step > t.post_from:
            t.post.append((step, value))
        if t.kind == "active" and r.risk.abort_worsening is not None and step >= t.abort_from and t.post and (
            not math.isfinite(t.post[-1][1])
            or (len(t.post) >= r.min_points and worse_than(t.pre_level, t.post, r.risk.abort_worsening, r.direction))
        ):
            return self._finish(ctx, t, aborted=True)
        if step >= t.due and len(t.post) >= r.min_points:
            return self._finish(ctx, t)
        if step >= t.give_up:
            return self._finish(ctx, t, unscorable=True)

    def _finish(self, ctx: ApplyContext, t: _Live, aborted: bool = False, unscorable: bool = False) -> None:
        step, r = ctx.step, self.recipe
        self.trial = None
        self.next_check = step + r.cooldown
        moved = [k for k, mark in t.marks.items()
                 if (a := self.kernel.state.get(k)) is None or a.last_change_step != mark]
        if moved:  # someone else changed a knob mid-trial: their change stands, the trial is void
            self.study.tell(t.number, state=TrialState.FAIL)
            self._finish_record(t, step, state="failed", outcome="interrupted",
                                reason=f"{', '.join(moved)} changed by another source during the trial")
            return self._publish()
        if unscorable:
            self.study.tell(t.number, state=TrialState.FAIL)
            why = f"only {len(t.post)} reports of {self.objective} after the change"
            if t.kind == "active":
                self._rollback(ctx, t, why)
            self._finish_record(t, step, state="failed", outcome="unscorable", reason=why)
            return self._publish()
        s = score_change(t.pre, t.post, direction=r.direction, accept_z=r.accept_z)
        sign = 1.0 if r.direction == "minimize" else -1.0
        anchor = self.anchor if self.anchor is not None else s.pre_score
        if math.isfinite(s.improvement):
            value = anchor - sign * s.improvement
        else:  # diverged: a large penalty so the sampler learns to stay away
            value = anchor + sign * 10.0 * max(abs(s.pre_score), 1e-3)
        self.study.tell(t.number, value)
        accepted = s.accepted and not aborted
        reason = ("aborted early by risk.abort_worsening; " if aborted else "") + s.reason
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
        self._publish()

    def _better(self, value: float) -> bool:
        if self.best is None or not isinstance(self.best.get("value"), (int, float)):
            return True
        return value < self.best["value"] if self.recipe.direction == "minimize" else value > self.best["value"]

    def _rollback(self, ctx: ApplyContext, t: _Live, why: str) -> bool:
        done = self._apply(ctx, t.before, f"tune roll back trial {t.number}: {why}")
        return done is True

    def _abandon(self, ctx: ApplyContext, why: str) -> None:
        """End the trial in flight unscored (mode change, disable, close); undo an active change."""
        t, self.trial = self.trial, None
        if t is None:
            return
        if self.study is not None:
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.kind == "active" and ctx is not None:
            self._rollback(ctx, t, why)
        self._finish_record(t, ctx.step if ctx else self.kernel.step, state="failed", outcome="abandoned", reason=why)

    # ------------------------------------------------------------------ suggest / observe
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

    # ------------------------------------------------------------------ applying through the kernel
    def _apply(self, ctx: ApplyContext, values: dict[str, float], reason: str) -> Any:
        """Set knobs as ``source: tune`` through the kernel (freeze + guard + ledger).

        Returns True when every group applied, else the keys that did apply (to undo them).
        """
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
            if entry.get("decision") == "applied":
                done.extend(params)
            else:
                self.last_refusal = f"{entry.get('decision')}: {entry.get('error')}"
        return True if len(done) == len(values) else done

    def _note(self, ctx: ApplyContext, t: _Live, outcome: str, reason: str) -> None:
        """A ledger entry for the verdict, so the ledger alone tells each trial's story."""
        params = {"trial": t.number, "outcome": outcome, "params": t.params, "before": t.before,
                  "improvement": t.record.get("improvement"), "pre_score": t.record.get("pre_score"),
                  "post_score": t.record.get("post_score")}
        self.kernel.submit(HotOp(module=TUNE, op="verdict", params=params, source="tune",
                                 actor=f"tune/{self.recipe.sampler}", reason=f"tune trial {t.number} {outcome}: {reason}",
                                 cmd_id=f"tune-{uuid.uuid4().hex[:16]}"), ctx.env)

    # ------------------------------------------------------------------ records and the status file
    def _new_record(self, number: int, kind: str, params: dict[str, float], before: dict[str, float],
                    step: int) -> dict[str, Any]:
        rec = {"number": number, "kind": kind, "params": params, "before": before, "pre_score": None,
               "post_score": None, "improvement": None, "se": None, "value": None, "accepted": None,
               "rolled_back": False, "step_start": step, "step_end": None, "state": "running",
               "outcome": None, "reason": None}
        self.records.append(rec)
        self.records = self.records[-KEEP_RECORDS:]
        return rec

    def _finish_record(self, t: _Live, step: int, **kw: Any) -> None:
        t.record.update(step_end=step, **kw)
        if t.record["accepted"] is None and kw.get("state") == "failed":
            t.record["accepted"] = False

    def _update_record(self, number: int, **kw: Any) -> None:
        for rec in self.records:
            if rec.get("number") == number and rec.get("state") == "running":
                rec.update(**kw)

    def snapshot(self) -> dict[str, Any]:
        """What ``hotcb.tune.json`` holds (the tool surface and ``hotcb tune status`` read it)."""
        t = self.trial
        active = None
        if t is not None:
            active = {"number": t.number, "kind": t.kind, "params": t.params, "before": t.before,
                      "step_start": t.change_step if t.change_step >= 0 else None,
                      "due_step": t.due if t.due < NEVER else None, "post_points": len(t.post),
                      "expires_step": t.expires if t.expires < NEVER else None}
        return {
            "mode": self.mode, "objective": self.objective or self.recipe.objective,
            "direction": self.recipe.direction, "sampler": self.recipe.sampler,
            "study_name": self.recipe.study_name, "journal": JOURNAL, "status": self.status,
            "step": self.kernel.step, "updated_at": time.time(), "anchor": self.anchor,
            "trials": self.records, "accepted": self.accepted, "rolled_back": self.rolled_back,
            "best": self.best, "active_trial": active, "suggestions": self.suggestions,
            "recipe": self.recipe.to_dict(), "last_error": self.last_error,
        }

    def _publish(self) -> None:
        if not self.kernel.is_writer:
            return
        try:
            write_json_atomic(self.path, self.snapshot())
        except OSError as e:
            log.warning("hotcb tune: cannot write %s: %s", self.path, e)

    def _fail(self, e: Exception, what: str, ctx: ApplyContext | None = None) -> None:
        self.last_error = f"{what}: {type(e).__name__}: {e}"
        log.exception("hotcb tune: %s failed (training continues)", what)
        if ctx is not None and self.trial is not None:
            try:  # best effort: undo an active change and close the trial
                self._abandon(ctx, f"tune error: {self.last_error}")
            except Exception:
                pass
        self.trial = None
        self.next_check = self.kernel.step + self.recipe.horizon
        try:
            self._publish()
        except Exception:
            pass

    def close(self) -> None:
        """End of the run: a trial in flight is recorded as failed (nothing more is applied)."""
        try:
            t, self.trial = self.trial, None
            if t is not None:
                if self.study is not None:
                    self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._finish_record(t, self.kernel.step, state="failed", outcome="interrupted",
                                    reason="the run ended during the trial")
            if self.mode != "off":
                self._publish()
        except Exception as e:
            log.warning("hotcb tune: close failed: %s", e)


def _to_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _full(s: KnobSpace, value: float) -> FloatDistribution | None:
    """A distribution over the knob's whole range that also holds ``value``."""
    lo, hi = min(s.lo, value), max(s.hi, value)
    if s.log and lo <= 0:
        return None
    return FloatDistribution(lo, hi, log=s.log)


def _fmt(params: dict[str, float], before: dict[str, float]) -> str:
    return ", ".join(f"{k} {before.get(k, float('nan')):.4g} -> {v:.4g}" for k, v in params.items())
