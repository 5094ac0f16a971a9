"""Undo: setting back a trial whose change outlived it.

A trial whose change is live when it is abandoned, or when the process ends, leaves an *undo*
(the record's ``undo: pending``): tune sets its knobs back to the pre-trial values, through the
guard, as soon as it can, but only while the live values are still the trial's (after a
restart the live values come from the checkpoint or the ledger; tune re-applies nothing).
"""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState

from ..guard import knob_limits
from . import ApplyContext
from .tune_space import _to_float
from .tune_trial import ENDED, NEVER


class UndoMixin:
    """``TuneModule``'s undo bookkeeping (its state: ``TuneModule.__init__``)."""

    def _abandon(self, ctx: ApplyContext | None, why: str) -> None:
        """End the trial in flight unscored (mode change, disable, error); undo an active change
        (now, or at the next sync step when distributed)."""
        t, self.trial = self.trial, None
        self.weights.drop()  # abandoned, not judged: the weights stay as they are
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
                end = max(end, a.last_change_step + int(knob_limits(a.describe(), self.kernel.guard)[1] or 0))
        return end


def _same(a: float, b: Any) -> bool:
    b = _to_float(b)
    return b is not None and (a == b or math.isclose(a, b, rel_tol=1e-6))
