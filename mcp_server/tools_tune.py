"""``tune_status``: what online HPO (``hotcb.tune``) is doing, read from ``hotcb.tune.json``.

Tune is *controlled* through ``apply_op`` (module ``tune``, ops enable/disable/set_recipe), so
the guard and the ledger see those changes like any other; this file only reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hotcb.jsonl import read_json
from hotcb.rundir import TUNE

from .registry import StrictInput
from .tools_base import ToolGroup


class TuneStatusInput(StrictInput):
    last: int = Field(10, ge=0, le=500, description="how many of the most recent trials to include")
    pending_only: bool = Field(True, description="suggestions: only those still awaiting a decision")


class TuneStatusOutput(BaseModel):
    mode: str = Field(description="off (tune not running in this run), suggest or active")
    status: str | None = None
    objective: str | None = None
    direction: str | None = None
    sampler: str | None = None
    step: int | None = None
    trials_total: int = 0
    trials: list[dict[str, Any]] = Field(default_factory=list, description="the most recent trials, oldest first")
    accepted: int = 0
    rolled_back: int = 0
    best: dict[str, Any] | None = None
    active_trial: dict[str, Any] | None = None
    suggestions: list[dict[str, Any]] = []
    last_error: str | None = None
    message: str | None = None


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else (len(v) if isinstance(v, list) else 0)


class TuneTools(ToolGroup):
    def tune_status(self, args: TuneStatusInput) -> TuneStatusOutput:
        """Online hyperparameter tuning: mode (off/suggest/active), objective and direction, sampler,
        the recent trials (params tried, score, accepted or rolled back), the best so far, the trial in
        progress and pending suggestions. Control tune with apply_op module 'tune' (enable, disable,
        set_recipe)."""
        doc = read_json(self.run.file(TUNE))
        if not isinstance(doc, dict):
            return TuneStatusOutput(mode="off", message="tune has not run in this run directory "
                                                         "(enable it with apply_op module 'tune' op 'enable')")
        trials = [t for t in doc.get("trials") or [] if isinstance(t, dict)]
        suggestions = [s for s in doc.get("suggestions") or [] if isinstance(s, dict)]
        if args.pending_only:
            suggestions = [s for s in suggestions if s.get("status") in (None, "pending")]
        best = doc.get("best")
        active = doc.get("active_trial")
        return TuneStatusOutput(
            mode=str(doc.get("mode") or "off"), status=doc.get("status"), objective=doc.get("objective"),
            direction=doc.get("direction"), sampler=doc.get("sampler"),
            step=doc.get("step") if isinstance(doc.get("step"), int) else None,
            trials_total=len(trials), trials=trials[-args.last:] if args.last else [],
            accepted=_int(doc.get("accepted")), rolled_back=_int(doc.get("rolled_back")),
            best=best if isinstance(best, dict) else None, active_trial=active if isinstance(active, dict) else None,
            suggestions=suggestions[-20:], last_error=doc.get("last_error"),
        )
