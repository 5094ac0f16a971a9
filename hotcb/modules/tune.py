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

Under ``torch.distributed`` rank 0 alone decides (study, journal, records, status file); the
other ranks follow. Knob changes happen only at *sync steps*, known to every rank in advance:
there all ranks enter one ``kernel.dist.broadcast``, rank 0 makes its decisions inside the
reader (applying them through the kernel), and every other rank applies the same ops, in the
same order, right after the broadcast. Each broadcast also names the next sync step (idle: one
per horizon; during a trial: the risk-check cadence, the due step and the give-up step).
The first sync step is set by a command rank 0 writes to the commands file (``tune enable``
with ``params.sync``): the kernel broadcasts it, so every rank has this module and starts at
the same step, however each rank came to have it (a collective entered by one rank would hang).

A trial whose change is live when it is abandoned, or when the process ends, leaves an *undo*
(the record's ``undo: pending``): tune sets its knobs back to the pre-trial values, through the
guard, as soon as it can, but only while the live values are still the trial's (after a
restart the live values come from the checkpoint or the ledger; tune re-applies nothing).
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
from ..guard import check_knob_change
from ..jsonl import append_line, read_json, write_json_atomic
from ..ops import TUNE, HotOp
from ..rundir import TUNE as TUNE_FILE
from . import ApplyContext
from .tune_recipe import (
    DEFAULT_OBJECTIVES,
    MODES,
    KnobSpace,
    TuneRecipe,
    _guard_limits,
    parse_recipe,
    resolve_space,
)
from .tune_score import Point, fit_trend, score_change, worse_than

log = logging.getLogger("hotcb.tune")
JOURNAL = "hotcb.tune.journal"
KEEP_RECORDS = 500  # trials kept in hotcb.tune.json (the journal keeps them all)
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
        self.skipped: list[str] = []  # knobs the last trial could not move, and why
        # Trials whose change must be undone (records with undo == "pending"); see _try_undo.
        self._undo: list[dict[str, Any]] = []
        self._undo_why: dict[int, str] = {}
        self._undo_ready = -1  # the step the next undo attempt waits for (guard cooldown)
        # Distributed: the next step at which every rank enters tune's broadcast; NEVER until the
        # sync command (the same step on every rank: the kernel broadcast it) sets it to -1.
        self._next_sync = NEVER
        self._booted = False
        self._boot_id: str | None = None  # rank 0: the sync command it wrote
        self._boot_retry = 0
        self._syncing = False  # rank 0, inside the broadcast's reader: knob ops allowed
        self._outbox: list[dict[str, Any]] = []  # rank 0: ops applied in this sync, for the others
        # The study is reopened on the first step or op, when the process's rank is known
        # (Lightning/HF attach torch.distributed after the kernel is built).
        self._resumed = False

    def _leader(self) -> bool:
        """True on the process that decides: single-process, or rank 0."""
        dist = self.kernel.dist
        return dist is None or dist.rank == 0

    def _resume(self) -> None:
        """Once per process, on the deciding rank: reopen the study, settle what the last process
        left (trials it left running are told failed once; a change it left live is undone)."""
        self._resumed = True
        if not self._leader():
            return
        try:
            if self.mode != "off":
                self.study, self.objective = self._open_study(self.recipe)
                self._fail_stale(restart=True)
                self.status = "resumed"
            self._undo = [r for r in self.records if r.get("undo") == "pending"]
        except Exception as e:  # a study that cannot be reopened must not stop the run
            self._fail(e, "resuming the tune study")
            self.mode = "off"
        if self.mode != "off" or self._undo:
            self._publish()

    # ------------------------------------------------------------------ routed ops
    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        p = op.params or {}
        if op.op == "verdict":
            if op.source != "tune":
                raise ValueRefused("tune verdicts are recorded by tune itself")
            return dict(p)
        if op.op == "enable" and p.get("sync"):  # distributed: every rank starts syncing now
            if op.source != "tune":
                raise ValueRefused("tune's sync command is written by tune itself")
            self._booted, self._next_sync = True, -1
            if not self._leader() and p.get("mode") in MODES:
                self.mode = p["mode"]
            return {"sync": p["sync"], "rank": self.kernel.dist.rank if self.kernel.dist is not None else 0}
        if not self._leader():
            return self._follow_op(op)
        if not self._resumed:
            self._resume()
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

    def _follow_op(self, op: HotOp) -> dict[str, Any]:
        """A rank other than 0: validate like rank 0 (same refusals), keep the mode; no study.

        Its knob changes come from rank 0 through the broadcast, never from here.
        """
        p = op.params or {}
        if op.op == "disable" or (op.op == "enable" and p.get("mode") == "off"):
            self.mode = "off"
        elif op.op == "enable":
            if p.get("mode", "active") not in MODES:
                raise ValueRefused(f"tune mode must be one of {', '.join(MODES)}, got {p.get('mode')!r}")
            self.recipe = parse_recipe(p["recipe"]) if "recipe" in p else self.recipe
            self.mode = p.get("mode", "active")
        elif op.op == "set_recipe":
            self.recipe = parse_recipe(p["recipe"] if "recipe" in p else (p or None))
        else:
            raise ValueRefused(f"unknown tune op {op.op!r} (use enable, disable, set_recipe)")
        return {"mode": self.mode, "decided_by_rank": 0}

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

    def _fail_stale(self, restart: bool = False) -> None:
        """Trials left running by a process that ended mid-trial can never be scored: told
        failed (once: a finished trial is skipped). At a restart, an active trial's change may
        still be live: its record gets ``undo: pending``."""
        live = self.trial.number if self.trial is not None else None
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number != live:
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._interrupted(t.number, restart)
        if restart:  # records the last process published as running (e.g. it died after a tell)
            for rec in list(self.records):
                if rec.get("state") == "running" and rec.get("number") != live:
                    self._interrupted(rec["number"], restart)

    def _interrupted(self, number: int, restart: bool) -> None:
        for rec in self.records:
            if rec.get("number") == number and rec.get("state") == "running":
                rec.update(state="failed", outcome="interrupted", accepted=False, reason=ENDED)
                if restart and rec.get("kind") == "active" and rec.get("undo") is None:
                    rec["undo"] = "pending"
                if rec.get("kind") == "suggested":
                    self._set_suggestion_status(number, "interrupted")

    # ------------------------------------------------------------------ per step
    def on_step(self, ctx: ApplyContext) -> None:
        """Called by the kernel every step: cheap unless a trial or a check is due."""
        dist = self.kernel.dist
        if dist is not None:
            return self._dist_step(ctx, dist)
        if not self._resumed:
            self._resume()
        if self.mode == "off" and not self._undo:
            return
        self._guarded_step(ctx, act=True)

    def _guarded_step(self, ctx: ApplyContext, act: bool) -> None:
        try:
            self._step(ctx, act)
        except Exception as e:  # the run matters more than the search
            self._fail(e, "tune step", ctx)

    def _step(self, ctx: ApplyContext, act: bool) -> None:
        """One step of the search. ``act`` False: observe only, change no knob (distributed,
        between sync steps); suggest and observe modes never change knobs, so they run anyway."""
        value = self._observe(ctx.env.get("metrics"), ctx.step)
        if self._undo:  # nothing new starts while a trial's change waits to be undone
            if act:
                self._try_undo(ctx)
            return
        if self.mode == "off":
            return
        t = self.trial
        if t is not None:
            if t.change_step < 0:
                self._watch_suggestion(ctx)
            else:
                self._advance(ctx, t, value, act)
        elif self.mode == "observe":
            self._watch_changes(ctx)
        elif ctx.step >= self.next_check and (act or self.mode != "active"):
            self._maybe_start(ctx)

    # ------------------------------------------------------------------ distributed
    def _dist_step(self, ctx: ApplyContext, dist: Any) -> None:
        """Every rank: between sync steps only rank 0 observes; at a sync step all ranks enter
        one broadcast (same step on every rank: the previous broadcast named it)."""
        leader = dist.rank == 0
        if leader and not self._resumed:
            self._resume()
        if ctx.step < self._next_sync:
            if leader and (self.mode != "off" or self._undo):
                self._guarded_step(ctx, act=False)
                if not self._booted:
                    self._bootstrap(ctx)
            return
        try:
            payload = dist.broadcast((lambda: self._lead(ctx)) if leader else None)
        except Exception as e:  # a failed collective cannot be retried in step: stop tuning
            self._next_sync = NEVER
            self.mode = "off"
            self._fail(e, "tune broadcast")
            return
        payload = payload if isinstance(payload, dict) else {}
        nxt = payload.get("next")
        self._next_sync = nxt if isinstance(nxt, int) else ctx.step + 1
        if not leader:
            self._follow(ctx, payload.get("ops") or [])

    def _bootstrap(self, ctx: ApplyContext) -> None:
        """Rank 0: write the sync command (once; again only if it was refused, e.g. by freeze)."""
        try:
            if self._boot_id is not None and not (self.kernel.ledger.has(self._boot_id)
                                                  and self.kernel.freeze.mode == "off" and ctx.step >= self._boot_retry):
                return
        except Exception as e:
            return self._fail(e, "checking tune's sync command")
        try:
            self._boot_id = f"tune-sync-{uuid.uuid4().hex[:16]}"
            self._boot_retry = ctx.step + max(10, self.recipe.horizon)
            append_line(self.kernel.run.commands, {
                "cmd_id": self._boot_id, "ts": time.time(), "module": TUNE, "op": "enable", "source": "tune",
                "actor": "tune", "params": {"mode": self.mode, "sync": self._boot_id},
                "reason": "tune: rank 0 decides for every rank, at steps all ranks share",
            })
        except Exception as e:
            self._fail(e, "writing tune's sync command")

    def _lead(self, ctx: ApplyContext) -> dict[str, Any]:
        """Rank 0, inside the broadcast: decide and apply; return the ops and the next sync step.
        Never raises (an exception here would leave the other ranks waiting in the broadcast)."""
        self._outbox = []
        if self.mode != "off" or self._undo:
            self._syncing = True
            try:
                self._step(ctx, act=True)
            except Exception as e:
                try:
                    self._fail(e, "tune step", ctx)
                except Exception:
                    pass
            finally:
                self._syncing = False
        try:
            nxt = self._schedule(ctx.step)
        except Exception:
            nxt = ctx.step + 1
        ops, self._outbox = self._outbox, []
        return {"ops": ops, "next": int(nxt)}

    def _schedule(self, step: int) -> int:
        """Rank 0: the next step at which it may need to change a knob (a sync step)."""
        r = self.recipe
        beat = max(1, r.horizon)  # idle: picks up a mode change, a new recipe, the next check
        k = max(1, r.horizon // 10)  # during a trial: how often the risk limits are checked
        t = self.trial
        if self._undo:
            return max(step + 1, min(self._undo_ready, step + beat))
        if self.mode != "active" or (t is not None and (t.kind != "active" or t.change_step < 0)):
            return step + beat
        if t is None:
            return max(step + 1, min(self.next_check, step + beat))
        if step >= t.due:
            return max(step + 1, min(step + k, t.give_up))
        nxt = min(t.due, t.give_up)
        if r.risk.abort_worsening is not None:
            nxt = min(nxt, max(t.abort_from, step + k))
        return max(step + 1, nxt)

    def _follow(self, ctx: ApplyContext, ops: list[dict[str, Any]]) -> None:
        """A rank other than 0: apply rank 0's ops, in its order, through this rank's kernel."""
        for d in ops:
            try:
                op = HotOp(module=d["module"], op=d["op"], params=dict(d["params"]), source="tune",
                           actor=d.get("actor"), reason=d.get("reason"), cmd_id=d["cmd_id"])
                entry = self.kernel.submit(op, ctx.env)
                if entry.get("decision") != d.get("decision"):
                    self.last_error = (f"rank {self.kernel.dist.rank}: {op.cmd_id} was {entry.get('decision')} "
                                       f"here but {d.get('decision')} on rank 0 ({entry.get('error')})")
                    log.warning("hotcb tune: %s", self.last_error)
            except Exception as e:
                self.last_error = f"applying rank 0's tune op: {type(e).__name__}: {e}"
                log.exception("hotcb tune: applying rank 0's op failed (training continues)")

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
        applied = self._apply(ctx, params, f"tune trial {t.number}: try " + _fmt(params, before))
        if applied is not True:
            self._apply(ctx, {k: before[k] for k in applied}, f"tune revert trial {t.number}: partly refused")
            self.study.tell(otrial.number, state=TrialState.FAIL)
            self._finish_record(t, step, state="failed", outcome="refused", reason=self.last_refusal)
            self.trial = None
            return self._wait(step, f"trial {t.number} refused: {self.last_refusal}", r.horizon)
        self._begin_post(t, step, space)

    def _zero_undo_refused(self, key: str, probe: float) -> str | None:
        """Why tune may not move ``key`` off 0: the guard would refuse setting it back to 0."""
        a = self.kernel.state.get(key)
        desc = {**a.describe(), "value": probe, "last_change_step": None}
        try:
            check_knob_change(desc, 0.0, source="tune", step=None, lock=None, config=self.kernel.guard)
        except ValueRefused as e:
            return (f"{key}: at 0, and the guard would refuse tune setting it back to 0 ({e}); lift the "
                    f"guard's ratio limit for it (per_knob {key}: max_rel_change: null) to let tune try it")
        return None

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
        if t.kind == "active" and r.risk.abort_worsening is not None and step >= t.abort_from and t.post and (
            any(not math.isfinite(v) for _, v in t.post)
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

    def _abandon(self, ctx: ApplyContext | None, why: str) -> None:
        """End the trial in flight unscored (mode change, disable, error); undo an active change
        (now, or at the next sync step when distributed)."""
        t, self.trial = self.trial, None
        if t is None:
            return
        if self.study is not None:
            self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        self._finish_record(t, ctx.step if ctx else self.kernel.step, state="failed", outcome="abandoned", reason=why)
        if t.kind == "active" and t.change_step >= 0:
            t.record["undo"] = "pending"
            self._undo.append(t.record)
            self._undo_why[t.number] = why
            if ctx is not None and self._can_apply():
                self._try_undo(ctx)

    def _can_apply(self) -> bool:
        return self.kernel.dist is None or self._syncing

    def _try_undo(self, ctx: ApplyContext) -> None:
        """Set each pending trial's knobs back to its pre-trial values, while they still hold the
        trial's values: once the guard's cooldown allows it (a restore just changed them), one
        attempt; refused for another reason (a lock), the undo is left ``refused``."""
        step, changed = ctx.step, False
        self._undo_ready = NEVER
        for rec in list(self._undo):
            number, params, before = rec.get("number"), rec.get("params") or {}, rec.get("before") or {}
            live = {}
            for k in before:
                a = self.kernel.state.get(k)
                if a is not None:
                    a.refresh()
                    live[k] = _to_float(a.value)
            todo = {k: float(before[k]) for k, v in live.items() if v is None or not _same(v, before[k])}
            if not todo or any(live[k] is None or not _same(live[k], params.get(k, math.nan)) for k in todo):
                # Back at the pre-trial values already, or someone set other values: nothing to undo.
                self._resolve_undo(rec, "rolled_back" if rec.get("rolled_back") else "not_live")
                changed = True
                continue
            ready = self._cooldown_end(todo)
            if step < ready:
                self._undo_ready = min(self._undo_ready, ready)
                why = f"rolling back trial {number} at step {ready} (guard cooldown)"
                changed, self.status = changed or why != self.status, why
                continue
            done = self._apply(ctx, todo, f"tune roll back trial {number}: {self._undo_why.get(number, ENDED)}")
            if done is True:
                rec["rolled_back"] = True
                self._resolve_undo(rec, "rolled_back")
            elif done:
                rec["rolled_back"] = True  # part of it; the rest at the next step
                self._undo_ready = step + 1
            else:
                self._resolve_undo(rec, "refused")
                rec["undo_error"] = self.last_refusal
            for k in todo if done is True else (done or []):
                if k in self._seen:  # observe mode must not score tune's own undo
                    self._seen[k] = self.kernel.state.get(k).last_change_step
                    self._seen[k + "\0value"] = todo[k]
            changed = True
        if changed:
            self._publish()

    def _resolve_undo(self, rec: dict[str, Any], how: str) -> None:
        rec["undo"] = how
        self._undo = [r for r in self._undo if r is not rec]
        self._undo_why.pop(rec.get("number"), None)
        if not self._undo:
            self.status = f"trial {rec.get('number')}: undo {how}"

    def _cooldown_end(self, keys: Any) -> int:
        """The first step at which the guard's cooldown lets tune change all of ``keys``."""
        end = -NEVER
        for k in keys:
            a = self.kernel.state.get(k)
            if a is not None and a.last_change_step is not None:
                end = max(end, a.last_change_step + _guard_limits(a.describe(), self.kernel.guard)[1])
        return end

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
               "outcome": None, "reason": None, "undo": None}
        self.records.append(rec)
        self.records = self.records[-KEEP_RECORDS:]
        return rec

    def _finish_record(self, t: _Live, step: int, **kw: Any) -> None:
        t.record.update(step_end=step, **kw)
        if t.record["accepted"] is None and kw.get("state") == "failed":
            t.record["accepted"] = False

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
            "recipe": self.recipe.to_dict(), "last_error": self.last_error, "skipped": self.skipped,
            "pending_undo": [r.get("number") for r in self._undo],
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
        if self.trial is not None:
            try:  # best effort: close the trial, undo an active change (at once, or when it can)
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
        """End of the run: a trial in flight is recorded as failed (nothing more is applied); a
        change of it that is live gets ``undo: pending``, for the next process on this run."""
        try:
            t, self.trial = self.trial, None
            if t is not None and self._leader():
                if self.study is not None:
                    self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._finish_record(t, self.kernel.step, state="failed", outcome="interrupted",
                                    reason="the run ended during the trial")
                if t.kind == "active" and t.change_step >= 0:
                    t.record["undo"] = "pending"
            if self._resumed and (self.mode != "off" or self._undo):
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


def _same(a: float, b: Any) -> bool:
    b = _to_float(b)
    return b is not None and (a == b or math.isclose(a, b, rel_tol=1e-6))


def _full(s: KnobSpace, value: float) -> FloatDistribution | None:
    """A distribution over the knob's whole range that also holds ``value``."""
    lo, hi = min(s.lo, value), max(s.hi, value)
    if s.log and lo <= 0:
        return None
    return FloatDistribution(lo, hi, log=s.log)


def _fmt(params: dict[str, float], before: dict[str, float]) -> str:
    return ", ".join(f"{k} {before.get(k, float('nan')):.4g} -> {v:.4g}" for k, v in params.items())
