"""``TuneStudy``: the Optuna study in ``RUN_DIR/hotcb.tune.journal``.

Created or loaded from the journal (JournalStorage, file backend), so a restarted process
continues it. ``TuneStudy.open`` refuses a recipe the stored study contradicts (direction,
objective) before anything changes; the rest of tune talks to Optuna only through its methods.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from ..actuators.actuator import ValueRefused
from ..jsonl import not_regular
from .readonly import ReadOnly
from .recipe import TuneRecipe

JOURNAL = "hotcb.tune.journal"


class TuneStudy:
    """One recipe's study: ask, tell, the baseline trial, the trials a process left running."""

    def __init__(self, study: optuna.Study, objective: str | None):
        self._study, self._objective = study, objective

    @classmethod
    def open(cls, journal: Path, recipe: TuneRecipe) -> TuneStudy:
        """The recipe's study (created or loaded from the journal) and the objective it scores."""
        # Optuna opens the journal itself, following links and blocking on a FIFO: a run file
        # that is not a regular file is refused here, before it can hang the step.
        try:
            refusal = not_regular(journal.name, os.lstat(journal).st_mode)
        except FileNotFoundError:
            refusal = None
        if refusal is not None:
            raise ValueRefused(refusal.strerror or str(refusal))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
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
        return cls(study, stored or recipe.objective)

    objective: ReadOnly[str | None] = ReadOnly()  # stored in the study, else the recipe's; None: not chosen

    def trial_count(self) -> int:
        return len(self._study.trials)

    def set_objective(self, name: str) -> None:
        self._objective = name
        self._study.set_user_attr("objective", name)

    def has_complete(self) -> bool:
        return any(t.state == TrialState.COMPLETE for t in self._study.get_trials(deepcopy=False))

    def running(self) -> list[int]:
        return [t.number for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]

    def ask(self, dists: dict[str, BaseDistribution], enqueue: dict[str, float] | None = None) -> tuple[int, dict[str, Any]]:
        """A new trial within ``dists`` (``enqueue``: with these values): its number and params."""
        if enqueue is not None:
            self._study.enqueue_trial(enqueue)
        otrial = self._study.ask(dists)
        return otrial.number, dict(otrial.params)

    def tell(self, number: int, value: float) -> None:
        self._study.tell(number, value)

    def fail(self, number: int, once: bool = False) -> None:
        """Tell the trial failed (``once``: unless it is finished already)."""
        if once:
            self._study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self._study.tell(number, state=TrialState.FAIL)

    def add_baseline(self, params: dict[str, float], dists: dict[str, BaseDistribution], value: float | None) -> int:
        """Trial 0: the starting values at the anchor, so TPE knows where it started."""
        frozen = optuna.trial.create_trial(params=params, distributions=dists, value=value,
                                           user_attrs={"kind": "baseline"})
        self._study.add_trial(frozen)
        return self._study.trials[-1].number
