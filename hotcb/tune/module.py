"""``TuneModule``: online constrained hyperparameter search with Optuna, inside the training loop.

Each mutation is one Optuna trial over the live knobs:

    ask (TPE or random, within bounds and one guarded step of the live value)
    -> apply through the kernel like any other op (``source: tune``; the guard checks it)
    -> wait ``settle`` steps, collect ``horizon`` steps of the objective
    -> score against the pre-change segment's trend (``score``)
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

``TuneModule`` is the coordinator the kernel talks to (routed ops, the per-step entry, the
status file, close). It holds the kernel as a ``TuneHost`` and composes objects that own their
state, each given only what it needs:

    TuneStudy    study         the Optuna study in the journal
    StudyLog     log           trial records, suggestions, anchor, best, counts
    Readiness    ready         the objective's reports and the pre-change segment
    TuneSpace    space         the knobs a trial may move (locks, knobs at 0, the guard)
    TrialRunner  runner        the trial in flight (``LiveTrial``, trial): ask -> apply -> judge
    UndoQueue    undo          undoing a trial whose change outlived it (abandoned, or the process ended)
    Passive      passive       suggest and observe modes: scoring changes tune did not make itself
    DistSync     sync          torch.distributed: rank 0 decides, every rank applies at shared sync steps
    KnobWriter   writer        knob changes and verdicts, submitted through the kernel
    TuneStatus   status        the status line and the next check

(``decide`` holds the pure decisions, ``recipe`` validates the recipe, ``score``
scores a change, ``weights`` keeps a trial's starting weights, ``cli`` is the CLI; all in ``hotcb.tune``.)
"""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna  # noqa: F401  (hotcb[tune]: without optuna this import fails, the kernel names the extra)

from ..actuators.actuator import ValueRefused
from ..jsonl import read_json
from ..jsonl_write import write_json_atomic
from ..modules import ApplyContext
from ..ops import HotOp
from ..rundir import TUNE as TUNE_FILE
from .decide import next_sync
from .host import TuneHost
from .log import KEEP_RECORDS, StudyLog
from .passive import Passive
from .readonly import ReadOnly
from .ready import Readiness
from .recipe import MODES, TuneRecipe, parse_recipe
from .runner import TrialRunner, actor
from .space import TuneSpace
from .status import TuneStatus
from .study import JOURNAL, TuneStudy
from .sync import DistSync
from .trial import ENDED, NEVER, LiveTrial
from .undo import UndoQueue
from .weights import TrialWeights
from .writer import KnobWriter

__all__ = ["ENDED", "JOURNAL", "KEEP_RECORDS", "NEVER", "TuneModule"]  # as before the split

log = logging.getLogger("hotcb.tune")
RESCUE = "rescue"  # the kernel module whose divergence detector tune consults


class TuneModule:
    """Routed ops: ``tune enable|disable|set_recipe`` (and ``verdict``, its own ledger notes)."""

    def __init__(self, kernel: TuneHost):
        self._host = kernel
        self._path = kernel.run.root / TUNE_FILE
        self._journal = kernel.run.file(JOURNAL)
        saved = read_json(self._path, {}) or {}
        saved = saved if isinstance(saved, dict) else {}
        self._mode: str = saved.get("mode") if saved.get("mode") in MODES else "off"
        try:
            self._recipe = parse_recipe(saved.get("recipe"))
        except ValueRefused:
            self._recipe = TuneRecipe()
        self._study: TuneStudy | None = None
        self._log = StudyLog(saved)
        self._ready = Readiness(saved.get("objective"))
        self._status = TuneStatus(self._publish)
        self._space = TuneSpace(kernel)
        self._sync = DistSync(kernel)
        self._writer = KnobWriter(kernel.submit, self._space, self._sync)
        self._undo = UndoQueue(self._space, self._writer, self._status)
        self._runner = TrialRunner(self._log, self._ready, self._space, TrialWeights(kernel), self._writer,
                                   self._status, max_steps=lambda: kernel.max_steps,
                                   why_broken=lambda: _why_broken(kernel.modules.get(RESCUE)))
        self._passive = Passive(self._runner, self._log, self._ready, self._space, self._status)
        # The study is reopened on the first step or op, when the process's rank is known
        # (Lightning/HF attach torch.distributed after the kernel is built).
        self._resumed = False

    # ------------------------------------------------------------------ read-only views
    mode: ReadOnly[str] = ReadOnly()
    recipe: ReadOnly[TuneRecipe] = ReadOnly()
    study: ReadOnly[TuneStudy | None] = ReadOnly()  # rank 0, once tuning; None elsewhere

    @property
    def objective(self) -> str | None:
        return self._ready.objective

    @property
    def trial(self) -> LiveTrial | None:
        return self._runner.trial

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._log.records

    @property
    def status(self) -> str:
        return self._status.text

    # ------------------------------------------------------------------ lifecycle
    def _leader(self) -> bool:
        """True on the process that decides: single-process, or rank 0."""
        return self._sync.rank == 0

    def _resume(self) -> None:
        """Once per process, on the deciding rank: reopen the study, settle what the last process
        left (trials it left running are told failed once; a change it left live is undone)."""
        self._resumed = True
        if not self._leader():
            return
        try:
            if self._mode != "off":
                self._study = TuneStudy.open(self._journal, self._recipe)
                self._ready.adopt(self._study.objective)
                self._fail_stale(self._study, restart=True)
                self._status.set("resumed")
            self._undo.load(self._log.pending_undo())
        except Exception as e:  # a study that cannot be reopened must not stop the run
            self._fail(e, "resuming the tune study")
            self._mode = "off"
        if self._mode != "off" or self._undo:
            self._publish()

    def _fail_stale(self, study: TuneStudy, restart: bool = False) -> None:
        """Trials left running by a process that ended mid-trial can never be scored: told
        failed (once: a finished trial is skipped). At a restart, an active trial's change may
        still be live: its record gets ``undo: pending``."""
        live = self.trial.number if self.trial is not None else None
        for number in study.running():
            if number != live:
                study.fail(number, once=True)
                self._log.interrupted(number, restart)
        if restart:  # records the last process published as running (e.g. it died after a tell)
            for number in self._log.running():
                if number != live:
                    self._log.interrupted(number, restart)

    # ------------------------------------------------------------------ routed ops
    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        p = op.params or {}
        if op.op == "verdict":  # tune's own record (the judge lets only tune write one)
            return dict(p)
        if op.op == "enable" and p.get("sync"):  # distributed: every rank starts syncing now
            self._sync.start()
            if not self._leader() and p.get("mode") in MODES:
                self._mode = p["mode"]
            return {"sync": p["sync"], "rank": self._sync.rank}
        if not self._leader():
            return self._follow_op(op)
        if not self._resumed:
            self._resume()
        if op.op == "disable" or (op.op == "enable" and p.get("mode") == "off"):
            old = self._mode
            self._abandon(ctx, f"tune disabled by {op.source}")
            self._mode = "off"
            self._status.say("off")
            return {"mode": {"old": old, "new": "off"}}
        if op.op == "enable":
            mode = p.get("mode", "active")
            if mode not in MODES:
                raise ValueRefused(f"tune mode must be one of {', '.join(MODES)}, got {mode!r}")
            recipe = parse_recipe(p["recipe"]) if "recipe" in p else self._recipe
            old = self._mode
            study = self._switch(recipe, ctx, f"tune mode {old} -> {mode}", force=mode != old)
            self._mode = mode
            self._status.say("enabled")
            return {"mode": {"old": old, "new": mode}, "study_name": recipe.study_name,
                    "objective": self._ready.objective, "trials_in_study": study.trial_count()}
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
            self._mode = "off"
        elif op.op == "enable":
            if p.get("mode", "active") not in MODES:
                raise ValueRefused(f"tune mode must be one of {', '.join(MODES)}, got {p.get('mode')!r}")
            self._recipe = parse_recipe(p["recipe"]) if "recipe" in p else self._recipe
            self._mode = p.get("mode", "active")
        elif op.op == "set_recipe":
            self._recipe = parse_recipe(p["recipe"] if "recipe" in p else (p or None))
        else:
            raise ValueRefused(f"unknown tune op {op.op!r} (use enable, disable, set_recipe)")
        return {"mode": self._mode, "decided_by_rank": 0}

    def _switch(self, recipe: TuneRecipe, ctx: ApplyContext, reason: str, force: bool = False) -> TuneStudy:
        """Adopt a recipe: open its study first, so a refusal changes nothing."""
        study = TuneStudy.open(self._journal, recipe)
        new_study = self._study is None or recipe.study_name != self._recipe.study_name \
            or recipe.direction != self._recipe.direction
        if new_study or force:
            self._abandon(ctx, reason)
        if new_study:
            self._log.new_study()
        self._study, self._recipe = study, recipe
        self._ready.adopt(study.objective)
        self._fail_stale(study)
        self._status.check_at(0)
        self._log.reset_streak()
        self._passive.reset()
        return study

    def _abandon(self, ctx: ApplyContext | None, why: str) -> None:
        """End the trial in flight unscored (mode change, disable, error); undo an active change
        (now, or at the next sync step when distributed). Its weights stay as they are."""
        t = self._runner.release()
        if t is None:
            return
        if self._study is not None:
            self._study.fail(t.number, once=True)
        t.finish(ctx.step if ctx else self._host.step, state="failed", outcome="abandoned", reason=why)
        if t.live_change:
            self._undo.add(t.record, t.number, why)
            if ctx is not None and self._sync.can_apply():
                self._undo.run(ctx, actor(self._recipe), self._passive.undone)

    # ------------------------------------------------------------------ per step
    def on_step(self, ctx: ApplyContext) -> None:
        """Called by the kernel every step: cheap unless a trial or a check is due."""
        dist = self._host.dist
        if dist is not None:
            return self._dist_step(ctx, dist.rank == 0)
        if not self._resumed:
            self._resume()
        if self._mode == "off" and not self._undo:
            return None
        return self._guarded_step(ctx, act=True)

    def _guarded_step(self, ctx: ApplyContext, act: bool) -> None:
        try:
            self._step(ctx, act)
        except Exception as e:  # the run matters more than the search
            self._fail(e, "tune step", ctx)

    def _step(self, ctx: ApplyContext, act: bool) -> None:
        """One step of the search. ``act`` False: observe only, change no knob (distributed,
        between sync steps); suggest and observe modes never change knobs, so they run anyway."""
        r = self._recipe
        value = self._ready.observe(ctx.env.get("metrics"), ctx.step, r)
        if self._undo:  # nothing new starts while a trial's change waits to be undone
            if act:
                self._undo.run(ctx, actor(r), self._passive.undone)
            return
        if self._mode == "off":
            return
        study = self._study
        assert study is not None  # tuning on the deciding rank: the study is open
        t = self._runner.trial
        if t is not None:
            if t.change_step < 0:
                self._passive.watch_suggestion(ctx, study, r, t)
            else:
                self._runner.advance(ctx, study, r, value, act)
        elif self._mode == "observe":
            self._passive.watch_changes(ctx, study, r)
        elif self._status.due(ctx.step) and (act or self._mode != "active"):
            started = self._runner.maybe_start(ctx, study, r, self._mode)
            if started is not None and started.kind == "suggested":
                self._passive.track(started.params)

    def _dist_step(self, ctx: ApplyContext, leader: bool) -> None:
        """Every rank: between sync steps only rank 0 observes; at a sync step all ranks enter
        one broadcast (same step on every rank: the previous broadcast named it)."""
        if leader and not self._resumed:
            self._resume()
        if not self._sync.due(ctx.step):
            if leader and (self._mode != "off" or self._undo):
                self._guarded_step(ctx, act=False)
                if not self._sync.booted:
                    self._sync.bootstrap(ctx.step, self._mode, self._recipe.horizon, self._fail)
            return
        try:
            ops = self._sync.exchange(ctx, (lambda: self._decide(ctx)) if leader else None)
        except Exception as e:  # a failed collective cannot be retried in step: stop tuning
            self._sync.stop()
            self._mode = "off"
            self._fail(e, "tune broadcast")
            return
        if not leader:
            error = self._sync.follow(ctx, ops)
            if error is not None:
                self._status.error(error)

    def _decide(self, ctx: ApplyContext) -> int:
        """Rank 0, inside the broadcast: decide and apply (``DistSync`` sends the ops); returns
        the next sync step."""
        if self._mode != "off" or self._undo:
            try:
                self._step(ctx, act=True)
            except Exception as e:
                try:
                    self._fail(e, "tune step", ctx)
                except Exception:
                    pass
        return next_sync(self._recipe, ctx.step, self._mode, self._runner.trial, self._status.next_check,
                         self._undo.ready_step if self._undo else None)

    # ------------------------------------------------------------------ the status file
    # (here: tests spy on ``hotcb.tune.module.write_json_atomic``)
    def snapshot(self) -> dict[str, Any]:
        """What ``hotcb.tune.json`` holds (the tool surface and ``hotcb tune status`` read it),
        assembled from what each part reports."""
        r, history, status, t = self._recipe, self._log.report(), self._status.report(), self._runner.trial
        return {
            "mode": self._mode, "objective": self._ready.objective or r.objective,
            "direction": r.direction, "sampler": r.sampler, "study_name": r.study_name, "journal": JOURNAL,
            "status": status["status"], "step": self._host.step, "updated_at": time.time(),
            "anchor": history["anchor"], "trials": history["trials"], "accepted": history["accepted"],
            "rolled_back": history["rolled_back"], "best": history["best"],
            "active_trial": t.report() if t is not None else None, "suggestions": history["suggestions"],
            "recipe": r.to_dict(), "last_error": status["last_error"], "skipped": status["skipped"],
            "pending_undo": self._undo.numbers(),
        }

    def _publish(self) -> None:
        if not self._host.is_writer:
            return
        try:
            write_json_atomic(self._path, self.snapshot())
        except OSError as e:
            log.warning("hotcb tune: cannot write %s: %s", self._path, e)

    def _fail(self, e: Exception, what: str, ctx: ApplyContext | None = None) -> None:
        error = f"{what}: {type(e).__name__}: {e}"
        self._status.error(error)
        log.exception("hotcb tune: %s failed (training continues)", what)
        if self._runner.trial is not None:
            try:  # best effort: close the trial, undo an active change (at once, or when it can)
                self._abandon(ctx, f"tune error: {error}")
            except Exception:
                pass
        self._runner.release()
        self._status.check_at(self._host.step + self._recipe.horizon)
        try:
            self._publish()
        except Exception:
            pass

    def close(self) -> None:
        """End of the run: a trial in flight is recorded as failed (nothing more is applied); a
        change of it that is live gets ``undo: pending``, for the next process on this run."""
        try:
            t = self._runner.release()
            if t is not None and self._leader():
                if self._study is not None:
                    self._study.fail(t.number, once=True)
                t.finish(self._host.step, state="failed", outcome="interrupted",
                         reason="the run ended during the trial")
                if t.live_change:
                    t.note(undo="pending")
            if self._resumed and (self._mode != "off" or self._undo):
                self._publish()
        except Exception as e:
            log.warning("hotcb tune: close failed: %s", e)


def _why_broken(rescue: Any) -> str | None:
    """The rescue module's reason the run cannot be judged now (None without a rescue)."""
    return rescue.why_broken() if rescue is not None else None

