"""``TuneSpace``: which knobs a trial may move, their live values, and the guard's say on them.

The recipe's knobs resolved against the live actuators and the guard (``resolve_space``), less
locked ones. A knob at exactly 0 has no ratio to step by: a trial may try the bottom of its
range only if the guard would let tune set it back to 0. Everything tune reads of the knobs
(values, last changes, groups, cooldowns, freeze) is read here, through a ``KnobHost``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optuna.distributions import FloatDistribution

from ..actuators.actuator import ValueRefused
from ..guard import check_knob_change, knob_limits
from .host import KnobHost
from .recipe import KnobSpace, TuneRecipe, resolve_space

NO_CHANGE = -(1 << 62)  # cooldown_end of knobs never changed


class TuneSpace:
    """The searchable knobs of a recipe and the live knobs they stand for."""

    def __init__(self, host: KnobHost):
        self._host = host

    def resolve(self, recipe: TuneRecipe) -> tuple[list[KnobSpace], list[str]]:
        """The knobs a trial may move, and why each other knob of the recipe may not."""
        h = self._host
        space, problems = resolve_space(recipe, h.state.describe_all(), h.guard)
        locked = [s.key for s in space if s.key in h.locks]
        return [s for s in space if s.key not in h.locks], problems + [f"{k}: locked" for k in locked]

    def frozen(self, space: list[KnobSpace]) -> str | None:
        """The freeze mode, when it would refuse tune's ``set_params`` on these knobs."""
        freeze = self._host.freeze
        if next((freeze.decision_for(s.group, "set_params", "tune") for s in space), None) is not None:
            return freeze.mode
        return None

    def zero_undo_refused(self, key: str, probe: float) -> str | None:
        """Why tune may not move ``key`` off 0: the guard would refuse setting it back to 0."""
        a = self._host.state.get(key)
        desc = {**a.describe(), "value": probe, "last_change_step": None}
        try:
            check_knob_change(desc, 0.0, source="tune", step=None, lock=None, config=self._host.guard)
        except ValueRefused as e:
            return (f"{key}: at 0, and the guard would refuse tune setting it back to 0 ({e}); lift the "
                    f"guard's ratio limit for it (per_knob {key}: max_rel_change: null) to let tune try it")
        return None

    # ------------------------------------------------------------------ live knobs
    def exists(self, key: str) -> bool:
        return self._host.state.get(key) is not None

    def value(self, key: str) -> float:
        return float(self._host.state.get(key).value)

    def values(self, keys: Iterable[str]) -> dict[str, float]:
        return {k: self.value(k) for k in keys}

    def read(self, key: str) -> float | None:
        """The knob's value as the run uses it now (read back), None when absent or not a number."""
        a = self._host.state.get(key)
        if a is None:
            return None
        a.refresh()
        return to_float(a.value)

    def scheduled(self, key: str) -> bool:
        """Whether a scheduler moves the knob between changes (the lr of ``optimizer_actuators(...,
        scheduler=...)``)."""
        a = self._host.state.get(key)
        return a is not None and a.companion is not None

    def undo_values(self, before: dict[str, float], trial: dict[str, float]) -> dict[str, float]:
        """The values that take a trial's change back while the schedule stays where it is now.

        A scheduled knob has gone on with the schedule since the trial set it: the trial's factor
        is divided out of the live value (setting the pre-trial value itself would move the whole
        schedule to that level, its position lost). Any other knob goes back to its pre-trial value.
        """
        out: dict[str, float] = {}
        for k, b in before.items():
            back = float(b)
            if self.scheduled(k):
                live, set_to = self.read(k), to_float(trial.get(k))
                if live is not None and set_to and math.isfinite(live * back / set_to):
                    back = live * back / set_to
            out[k] = back
        return out

    def ratio_allows(self, values: dict[str, float]) -> bool:
        """Whether the guard's ratio limit lets tune set these values now, from the live ones (the
        cooldown aside: a rollback waits for it anyway)."""
        for k, v in values.items():
            a = self._host.state.get(k)
            if a is None:
                continue
            a.refresh()
            try:
                check_knob_change({**a.describe(), "last_change_step": None}, v, source="tune", step=None, lock=None,
                                  config=self._host.guard)
            except ValueRefused:
                return False
        return True

    def last_change(self, key: str) -> int | None:
        """The step the knob last changed (None: never, or no such knob)."""
        a = self._host.state.get(key)
        return a.last_change_step if a is not None else None

    def marks(self, keys: Iterable[str]) -> dict[str, Any]:
        """Each existing knob's last change step: a trial is void if one moves under it."""
        return {k: self.last_change(k) for k in keys if self.exists(k)}

    def moved(self, marks: dict[str, Any]) -> list[str]:
        return [k for k, mark in marks.items() if not self.exists(k) or self.last_change(k) != mark]

    def newest_change(self, keys: Iterable[str]) -> int | None:
        return max((c for k in keys if (c := self.last_change(k)) is not None), default=None)

    def group(self, key: str) -> str:
        a = self._host.state.get(key)
        return a.group if a is not None else "opt"

    def cooldown_end(self, keys: Iterable[str]) -> int:
        """The first step at which the guard's cooldown lets tune change all of ``keys``."""
        end = NO_CHANGE
        for k in keys:
            a = self._host.state.get(k)
            if a is not None and a.last_change_step is not None:
                end = max(end, a.last_change_step + int(knob_limits(a.describe(), self._host.guard)[1] or 0))
        return end


def to_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def full_range(s: KnobSpace, value: float) -> FloatDistribution | None:
    """A distribution over the knob's whole range that also holds ``value``."""
    lo, hi = min(s.lo, value), max(s.hi, value)
    if s.log and lo <= 0:
        return None
    return FloatDistribution(lo, hi, log=s.log)


def full_ranges(space: list[KnobSpace], values: dict[str, float]) -> dict[str, FloatDistribution]:
    return {s.key: d for s in space if (d := full_range(s, values[s.key])) is not None}
