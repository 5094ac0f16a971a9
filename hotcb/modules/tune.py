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

This file holds the module the kernel talks to (routed ops, the per-step entry, the status
file, close); the rest of ``TuneModule`` is one concept a file, mixed in:

    tune_study    the Optuna study in the journal, and the trial records
    tune_ready    the objective's reports, the pre-change segment, the limits on new trials
    tune_space    the knobs a trial may move (locks, knobs at 0, the guard)
    tune_trial    one active trial: ask -> apply -> score -> keep or roll back
    tune_undo     undoing a trial whose change outlived it (abandoned, or the process ended)
    tune_passive  suggest and observe modes: scoring changes tune did not make itself
    tune_sync     torch.distributed: rank 0 decides, every rank applies at shared sync steps

(``tune_recipe`` validates the recipe, ``tune_score`` scores a change, ``tune_cli`` is the CLI.)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import optuna  # noqa: F401  (hotcb[tune]: without optuna this import fails, the kernel names the extra)
from optuna.trial import TrialState

from ..actuators.actuator import ValueRefused
from ..jsonl import read_json, write_json_atomic
from ..ops import HotOp
from ..rundir import TUNE as TUNE_FILE
from . import ApplyContext
from .tune_passive import PassiveMixin
from .tune_ready import ReadyMixin
from .tune_recipe import MODES, KnobSpace, TuneRecipe, parse_recipe
from .tune_score import Point
from .tune_space import SpaceMixin
from .tune_study import JOURNAL, KEEP_RECORDS, StudyMixin
from .tune_sync import SyncMixin
from .tune_trial import ENDED, NEVER, TrialMixin, _Live
from .tune_undo import UndoMixin
from .tune_weights import TrialWeights

__all__ = ["ENDED", "JOURNAL", "KEEP_RECORDS", "NEVER", "TuneModule"]  # as before the split

log = logging.getLogger("hotcb.tune")


class TuneModule(StudyMixin, ReadyMixin, SpaceMixin, TrialMixin, UndoMixin, PassiveMixin, SyncMixin):
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
        self._first_reports: dict[str, list[Point]] = {}  # each objective's first reports (start_level)
        self.weights = TrialWeights(kernel)  # the trial in flight's starting weights (its own snapshot)
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

    # ------------------------------------------------------------------ the status file
    # (here, not in a mixin: tests spy on ``hotcb.modules.tune.write_json_atomic``)
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
            self.weights.drop()
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
