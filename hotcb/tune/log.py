"""``StudyLog``: the search's history as ``hotcb.tune.json`` publishes it.

The trial records, the suggestions, the anchor (the anchored objective, see ``tune``), the
best trial and the counts of accepted and rolled back trials. Loaded back from the last
status file, so a restarted process continues the story; every change goes through a method.
"""

from __future__ import annotations

from typing import Any

from .decide import better
from .readonly import ReadOnly
from .trial import ENDED

KEEP_RECORDS = 500  # trials kept in hotcb.tune.json (the journal keeps them all)
KEEP_SUGGESTIONS = 50


class StudyLog:
    """Records, suggestions, anchor, best and counts (``hotcb.tune.json``)."""

    def __init__(self, saved: dict[str, Any]):
        self._records: list[dict[str, Any]] = [r for r in saved.get("trials") or [] if isinstance(r, dict)]
        self._suggestions: list[dict[str, Any]] = list(saved.get("suggestions") or [])
        self._accepted = int(saved.get("accepted") or 0)
        self._rolled_back = int(saved.get("rolled_back") or 0)
        self._best: dict[str, Any] | None = saved.get("best")
        self._anchor: float | None = saved.get("anchor")
        self._consecutive_rollbacks = 0

    records: ReadOnly[list[dict[str, Any]]] = ReadOnly()
    anchor: ReadOnly[float | None] = ReadOnly()
    consecutive_rollbacks: ReadOnly[int] = ReadOnly()

    def active_done(self) -> int:
        """Active trials that ended (``risk.max_trials`` counts them)."""
        return sum(1 for rec in self._records if rec.get("kind") == "active" and rec.get("state") != "running")

    def pending_undo(self) -> list[dict[str, Any]]:
        return [r for r in self._records if r.get("undo") == "pending"]

    def running(self) -> list[int]:
        """The trials the last process published as running."""
        return [rec["number"] for rec in self._records if rec.get("state") == "running"]

    # ------------------------------------------------------------------ records
    def new_record(self, number: int, kind: str, params: dict[str, float], before: dict[str, float],
                   step: int) -> dict[str, Any]:
        rec = {"number": number, "kind": kind, "params": params, "before": before, "pre_score": None,
               "post_score": None, "improvement": None, "se": None, "value": None, "accepted": None,
               "rolled_back": False, "step_start": step, "step_end": None, "state": "running",
               "outcome": None, "reason": None, "undo": None}
        self._records.append(rec)
        self._records = self._records[-KEEP_RECORDS:]
        return rec

    def baseline(self, number: int, params: dict[str, float], step: int) -> None:
        """Trial 0, the starting values, told the anchor: also the first best."""
        rec = self.new_record(number, "baseline", params, {}, step)
        rec.update(state="complete", outcome="baseline", value=self._anchor, step_end=step, accepted=None)
        self._best = {"number": number, "params": rec["params"], "value": self._anchor, "improvement": 0.0}

    def interrupted(self, number: int, restart: bool) -> None:
        """A trial a process left running can never be scored: failed; at a restart an active
        one's change may still be live (``undo: pending``)."""
        for rec in self._records:
            if rec.get("number") == number and rec.get("state") == "running":
                rec.update(state="failed", outcome="interrupted", accepted=False, reason=ENDED)
                if restart and rec.get("kind") == "active" and rec.get("undo") is None:
                    rec["undo"] = "pending"
                if rec.get("kind") == "suggested":
                    self.suggestion_status(number, "interrupted")

    # ------------------------------------------------------------------ suggestions
    def suggest(self, entry: dict[str, Any], trim: bool = True) -> None:
        """A suggestion for whoever sets the knobs (``trim``: keep the newest ``KEEP_SUGGESTIONS``)."""
        self._suggestions.append(entry)
        if trim:
            self._suggestions = self._suggestions[-KEEP_SUGGESTIONS:]

    def suggestion_status(self, number: int, status: str) -> None:
        for s in self._suggestions:
            if s.get("trial") == number and s.get("kind") == "try":
                s["status"] = status

    # ------------------------------------------------------------------ the anchor and the tally
    def anchor_at(self, level: float) -> None:
        """The first pre-change level anchors the scores (once per study)."""
        if self._anchor is None:
            self._anchor = level

    def new_study(self) -> None:
        self._anchor, self._best = None, None

    def reset_streak(self) -> None:
        self._consecutive_rollbacks = 0

    def accepted(self, value: float) -> None:
        self._anchor = value
        self._accepted += 1
        self._consecutive_rollbacks = 0

    def rejected(self, value: float, rolled: bool) -> None:
        self._rolled_back += int(rolled)
        self._consecutive_rollbacks += 1
        if not rolled:  # the trial's values stay live (e.g. a human locked a knob meanwhile)
            self._anchor = value

    def kept(self, value: float) -> None:
        """A change tune did not make stays live, judged good or not: the anchor follows it."""
        self._anchor = value

    def offer_best(self, number: int, params: dict[str, float], value: float, improvement: float, step: int,
                   direction: str) -> None:
        if better(value, self._best, direction):
            self._best = {"number": number, "params": params, "value": value, "improvement": improvement,
                          "step_end": step}

    def report(self) -> dict[str, Any]:
        """This part of ``hotcb.tune.json``."""
        return {"anchor": self._anchor, "trials": self._records, "accepted": self._accepted,
                "rolled_back": self._rolled_back, "best": self._best, "suggestions": self._suggestions}
