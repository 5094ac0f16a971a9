"""Tune's persistence: the Optuna study in ``RUN_DIR/hotcb.tune.journal`` and the trial records.

The study is created or loaded from the journal (JournalStorage, file backend), so a restarted
process continues it; trials a process left running are told failed once. The records are the
trials ``hotcb.tune.json`` lists (``TuneModule.snapshot`` publishes them).
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from ..actuators.actuator import ValueRefused
from .tune_recipe import TuneRecipe
from .tune_trial import ENDED, _Live

JOURNAL = "hotcb.tune.journal"
KEEP_RECORDS = 500  # trials kept in hotcb.tune.json (the journal keeps them all)


class StudyMixin:
    """``TuneModule``'s study and records (its state: ``TuneModule.__init__``)."""

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

    # ------------------------------------------------------------------ records
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
