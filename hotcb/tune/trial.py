"""``LiveTrial``: the trial in flight, one small object that owns its state.

A trial is *active* (tune applied it), *suggested* (tune published it; someone may apply it) or
*observed* (someone else changed a searched knob; tune scores it). It holds its values, the
pre-change segment it is judged against, the post-change reports so far, its deadlines, and its
record (the dict ``hotcb.tune.json`` lists, shared with ``StudyLog``): every change to any of
these goes through its methods.
"""

from __future__ import annotations

import math
from typing import Any

from .readonly import ReadOnly
from .recipe import TuneRecipe
from .score import Point, fit_trend

NEVER = 1 << 62
ENDED = "the training process ended during the trial"


class LiveTrial:
    """The trial in flight (``TuneModule.trial``)."""

    def __init__(self, number: int, kind: str, params: dict[str, float], before: dict[str, float],
                 record: dict[str, Any], pre: list[Point]):
        self._number, self._kind = number, kind  # kind: "active" | "suggested" | "observed"
        self._params, self._before, self._record = params, before, record
        self._pre: list[Point] = pre
        self._post: list[Point] = []
        self._change_step = -1  # -1: a suggestion nobody has applied yet
        self._pre_level = math.nan
        self._post_from = self._due = self._give_up = self._abort_from = self._expires = NEVER
        self._marks: dict[str, Any] = {}  # knob -> last_change_step when scoring began

    # ------------------------------------------------------------------ read-only
    number: ReadOnly[int] = ReadOnly()
    kind: ReadOnly[str] = ReadOnly()
    params: ReadOnly[dict[str, float]] = ReadOnly()
    before: ReadOnly[dict[str, float]] = ReadOnly()
    record: ReadOnly[dict[str, Any]] = ReadOnly()
    change_step: ReadOnly[int] = ReadOnly()

    @property
    def live_change(self) -> bool:
        """An active trial whose change was applied (it must be undone if it is not judged)."""
        return self._kind == "active" and self._change_step >= 0

    pre: ReadOnly[list[Point]] = ReadOnly()
    post: ReadOnly[list[Point]] = ReadOnly()
    pre_level: ReadOnly[float] = ReadOnly()
    post_from: ReadOnly[int] = ReadOnly()
    due: ReadOnly[int] = ReadOnly()
    give_up: ReadOnly[int] = ReadOnly()
    abort_from: ReadOnly[int] = ReadOnly()
    expires: ReadOnly[int] = ReadOnly()

    @property
    def marks(self) -> dict[str, Any]:
        return dict(self._marks)

    # ------------------------------------------------------------------ changes
    def expire_at(self, step: int) -> None:
        """A suggestion: ends unapplied at ``step``."""
        self._expires = step

    def begin(self, step: int, recipe: TuneRecipe, cooldown: int, marks: dict[str, Any]) -> None:
        """The change took effect at ``step``: set the post segment's window and the deadlines."""
        r = recipe
        self._change_step = step
        self._marks = dict(marks)
        self._post_from = step + r.settle_steps
        self._due = self._post_from + r.horizon
        self._give_up = self._post_from + 3 * r.horizon
        self._abort_from = step + max(r.settle_steps, cooldown, 1)
        self._pre_level = fit_trend(self._pre).at(self._post_from + r.horizon / 2)
        self._record["step_start"] = step

    def rejudge_against(self, pre: list[Point] | None) -> None:
        """An applied suggestion: judged against the segment before it was applied, when there is one."""
        self._pre = pre or self._pre

    def collect(self, points: Any) -> None:
        """Reports of the objective seen before this trial was begun, from its post window on."""
        self._post = [p for p in points if p[0] > self._post_from]

    def report_point(self, step: int, value: float | None) -> None:
        if value is not None and step > self._post_from:
            self._post.append((step, value))

    def note(self, **fields: Any) -> None:
        """Update the trial's record (``hotcb.tune.json``)."""
        self._record.update(**fields)

    def finish(self, step: int, **fields: Any) -> None:
        self._record.update(step_end=step, **fields)
        if self._record["accepted"] is None and fields.get("state") == "failed":
            self._record["accepted"] = False

    # ------------------------------------------------------------------ reports
    def report(self) -> dict[str, Any]:
        """``active_trial`` in ``hotcb.tune.json``."""
        return {"number": self._number, "kind": self._kind, "params": self._params, "before": self._before,
                "step_start": self._change_step if self._change_step >= 0 else None,
                "due_step": self._due if self._due < NEVER else None, "post_points": len(self._post),
                "expires_step": self._expires if self._expires < NEVER else None}

    def verdict(self, outcome: str) -> dict[str, Any]:
        """The params of the ``tune verdict`` ledger entry."""
        rec = self._record
        return {"trial": self._number, "outcome": outcome, "params": self._params, "before": self._before,
                "improvement": rec.get("improvement"), "pre_score": rec.get("pre_score"),
                "post_score": rec.get("post_score"), "weights_restored_to_step": rec.get("weights_restored")}
