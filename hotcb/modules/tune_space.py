"""The search space: which knobs a trial may move, and the guard's say on them.

The recipe's knobs resolved against the live actuators and the guard (``resolve_space``), less
locked ones. A knob at exactly 0 has no ratio to step by: a trial may try the bottom of its
range only if the guard would let tune set it back to 0.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import FloatDistribution

from ..actuators.actuator import ValueRefused
from ..guard import check_knob_change
from .tune_recipe import KnobSpace, resolve_space


class SpaceMixin:
    """``TuneModule``'s knob selection (its state: ``TuneModule.__init__``)."""

    def _space(self) -> tuple[list[KnobSpace], list[str]]:
        space, problems = resolve_space(self.recipe, self.kernel.state.describe_all(), self.kernel.guard)
        locked = [s.key for s in space if s.key in self.kernel.locks]
        return [s for s in space if s.key not in self.kernel.locks], problems + [f"{k}: locked" for k in locked]

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
