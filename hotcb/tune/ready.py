"""``Readiness``: the objective and its recent reports, which say when a trial may start.

A trial starts only when the objective has a quiet pre-change segment (``horizon`` steps since
the last change of a searched knob, plus ``settle``, with ``min_points`` finite reports, past the
guard's cooldown) and the recipe's risk limits still allow one; until then tune waits and says
why (the decisions: ``decide``). Where the kernel knows the run's length (``max_steps``),
no active trial starts unless it can be scored at least one horizon before the end, so the run's
last stretch trains on settled values.

The objective's first reports are kept (``start_level``): while the run is still in its first
descent from that level, learning on its own, no trial starts (it would cost the run the most
and be judged against the steepest trend).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from . import decide
from .readonly import ReadOnly
from .recipe import DEFAULT_OBJECTIVES, KnobSpace, TuneRecipe
from .score import Point
from .space import to_float


class Readiness:
    """The objective tune scores (once known) and each candidate's recent and first reports."""

    def __init__(self, objective: str | None):
        self._objective = objective
        self._windows: dict[str, deque[Point]] = {}
        self._first: dict[str, list[Point]] = {}  # each objective's first reports (start_level)

    objective: ReadOnly[str | None] = ReadOnly()

    def adopt(self, objective: str | None) -> None:
        """The objective a (re)opened study scores."""
        self._objective = objective

    def observe(self, metrics: Any, step: int, r: TuneRecipe) -> float | None:
        """Keep this step's reports of the objective (or, until it is known, of each candidate);
        returns the objective's value, if reported."""
        if not metrics or not isinstance(metrics, dict):
            return None
        names = (self._objective,) if self._objective else (r.objective,) if r.objective else DEFAULT_OBJECTIVES
        out = None
        for name in names:
            if name in metrics:
                v = to_float(metrics[name])
                if v is None:
                    continue
                win = self._windows.get(name)
                if win is None:
                    win = self._windows[name] = deque(maxlen=max(512, 4 * r.horizon))
                win.append((step, v))
                first = self._first.setdefault(name, [])
                if len(first) < r.min_points and math.isfinite(v):
                    first.append((step, v))
                if name == self._objective:
                    out = v
        return out

    def choose(self, r: TuneRecipe) -> str | None:
        """Until the objective is known: the first candidate reported. Returns it when it was
        chosen now (the study stores it), else None."""
        if self._objective is not None:
            return None
        self._objective = next((n for n in (r.objective, *DEFAULT_OBJECTIVES) if n and self._windows.get(n)), None)
        return self._objective

    def waiting_for(self, r: TuneRecipe) -> str:
        return "waiting for the objective metric " + (r.objective or "val_loss/train_loss")

    def points(self) -> list[Point]:
        """The objective's recent reports (empty until it is known)."""
        return list(self._windows.get(self._objective, ())) if self._objective else []

    def pre_segment(self, r: TuneRecipe, step: int, space: list[KnobSpace],
                    last_change: int | None) -> tuple[list[Point] | None, str, int]:
        assert self._objective is not None
        cooldown = max((s.cooldown for s in space), default=0)
        return decide.pre_segment(r, self._objective, self.points(), step, last_change, cooldown)

    def segment_before(self, r: TuneRecipe, at: int) -> tuple[list[Point] | None, str]:
        assert self._objective is not None
        return decide.segment_before(r, self._objective, self.points(), at)

    def start_level(self, r: TuneRecipe) -> float | None:
        """The objective's level when the run started (the mean of its first finite reports), if
        tune saw it from the run's first steps (a tune enabled late knows no start level)."""
        first = self._first.get(self._objective or "", [])
        if len(first) < r.min_points or first[0][0] > r.horizon:
            return None
        return sum(v for _, v in first) / len(first)
