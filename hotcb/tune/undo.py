"""``UndoQueue``: setting back trials whose change outlived them.

A trial whose change is live when it is abandoned, or when the process ends, leaves an *undo*
(the record's ``undo: pending``): tune sets its knobs back to the pre-trial values, through the
guard, as soon as it can, but only while the live values are still the trial's (after a
restart the live values come from the checkpoint or the ledger; tune re-applies nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..modules import ApplyContext
from .readonly import ReadOnly
from .space import TuneSpace, to_float
from .status import TuneStatus
from .trial import ENDED, NEVER
from .writer import KnobWriter


class UndoQueue:
    """The records whose change waits to be undone, why, and when the next attempt may run."""

    def __init__(self, space: TuneSpace, writer: KnobWriter, status: TuneStatus):
        self._space, self._writer, self._status = space, writer, status
        self._pending: list[dict[str, Any]] = []
        self._why: dict[int, str] = {}
        self._ready_step = -1  # the step the next undo attempt waits for (guard cooldown)

    def __bool__(self) -> bool:
        return bool(self._pending)

    ready_step: ReadOnly[int] = ReadOnly()

    def numbers(self) -> list[Any]:
        return [r.get("number") for r in self._pending]

    def load(self, records: list[dict[str, Any]]) -> None:
        """At a restart: the records the last process left ``undo: pending``."""
        self._pending = list(records)

    def add(self, record: dict[str, Any], number: int, why: str) -> None:
        record["undo"] = "pending"
        self._pending.append(record)
        self._why[number] = why

    def run(self, ctx: ApplyContext, actor: str, on_undone: Callable[[str, float], None]) -> None:
        """Set each pending trial's knobs back to its pre-trial values, while they still hold the
        trial's values: once the guard's cooldown allows it (a restore just changed them), one
        attempt; refused for another reason (a lock), the undo is left ``refused``.
        ``on_undone(key, value)``: a knob tune set back (observe mode must not score it)."""
        step, changed = ctx.step, False
        self._ready_step = NEVER
        for rec in list(self._pending):
            number, params, before = rec.get("number"), rec.get("params") or {}, rec.get("before") or {}
            live = {k: self._space.read(k) for k in before if self._space.exists(k)}
            todo = {k: float(before[k]) for k, v in live.items() if v is None or not _same(v, before[k])}
            if not todo or any(not self._still_the_trials(k, live[k], rec) for k in todo):
                # Back at the pre-trial values already, or someone set other values: nothing to undo.
                self._resolve(rec, "rolled_back" if rec.get("rolled_back") else "not_live")
                changed = True
                continue
            todo = self._space.undo_values(todo, params)
            ready = self._space.cooldown_end(todo)
            if step < ready:
                self._ready_step = min(self._ready_step, ready)
                news = self._status.set(f"rolling back trial {number} at step {ready} (guard cooldown)")
                changed = changed or news
                continue
            done = self._writer.apply(ctx, todo, f"tune roll back trial {number}: {self._why.get(number, ENDED)}",
                                      actor)
            if done is True:
                rec["rolled_back"] = True
                self._resolve(rec, "rolled_back")
            elif done:
                rec["rolled_back"] = True  # part of it; the rest at the next step
                self._ready_step = step + 1
            else:
                self._resolve(rec, "refused")
                rec["undo_error"] = self._writer.last_refusal
            for k in todo if done is True else (done or []):
                on_undone(k, todo[k])
            changed = True
        if changed:
            self._status.publish()

    def _still_the_trials(self, key: str, live: float | None, rec: dict[str, Any]) -> bool:
        """Whether the knob still holds the trial's change. A scheduled one has moved with the
        schedule since, so its value cannot tell: its last change must be the trial's."""
        if live is None:
            return False
        if self._space.scheduled(key):
            return rec.get("step_start") is not None and self._space.last_change(key) == rec.get("step_start")
        return _same(live, (rec.get("params") or {}).get(key, math.nan))

    def _resolve(self, rec: dict[str, Any], how: str) -> None:
        rec["undo"] = how
        self._pending = [r for r in self._pending if r is not rec]
        self._why.pop(rec.get("number"), None)
        if not self._pending:
            self._status.set(f"trial {rec.get('number')}: undo {how}")


def _same(a: float, b: Any) -> bool:
    b = to_float(b)
    return b is not None and (a == b or math.isclose(a, b, rel_tol=1e-6))
