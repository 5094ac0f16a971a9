"""What a run recently showed, and the knob changes it recently made, from its own records.

The judge's reason rule (``hotcb.judge``) needs two facts a model could not forge: the texts the
run put in front of whoever reads it -- ledger reasons, refusals, alert messages -- and the knob
changes it applied, with which of them were protective (the rescue's cut, the protective rules'
changes: ``PROTECTIVE_RULES``). Both come from the tails of ``hotcb.applied.jsonl`` (written by
the kernel alone) and ``hotcb.alerts.jsonl``: ``TAIL_BYTES`` of each, so the work is bounded
whatever the run's length. ``RecentRecordReader`` keeps the last read until either file changes,
and is asked only when an op the rule covers is judged, never on a plain training step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codec import json_number
from .jsonl import read_tail
from .ops import RESCUE
from .rundir import ALERTS, LEDGER
from .vocabulary import Source

# The rules whose changes are the safety floor: they act in every mode that acts, the LLM's too
# (the rules autopilot acts on these at once under the model; their ledger actor is the rule).
PROTECTIVE_RULES = ("non_finite", "divergence", "plateau")
TAIL_BYTES = 64 << 10  # of each file: about a hundred ledger decisions or alerts


@dataclass(frozen=True)
class ShownText:
    """A text the run showed: a ledger reason (written by ``source``/``actor``), a refusal or an
    alert message (``source`` None: no op's writer wrote those words)."""

    text: str
    source: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class KnobChange:
    """An applied change of one knob, as the ledger recorded it (``module``: the knob group, or
    ``rescue`` for the cut a rescue rollback made)."""

    seq: int
    step: int | None
    module: str
    key: str
    old: float
    new: float
    source: str | None
    actor: str | None
    protective: bool

    @property
    def direction(self) -> int:
        return (self.new > self.old) - (self.new < self.old)

    def describe(self) -> str:
        by = f"the {self.actor} rule" if self.actor in PROTECTIVE_RULES else f"the {self.actor or self.source}"
        return f"{by}'s {self.key} change {self.old:g} -> {self.new:g} at step {self.step}"


@dataclass(frozen=True)
class RecentRecord:
    texts: tuple[ShownText, ...] = ()
    changes: tuple[KnobChange, ...] = ()  # oldest first

    def shown_to(self, source: str | None, actor: str | None) -> list[str]:
        """The texts shown to the writer ``source``/``actor``: all but its own reasons."""
        return [t.text for t in self.texts
                if t.source is None or (t.source, t.actor) != (source, actor)]


def _is_protective(entry: dict[str, Any]) -> bool:
    if entry.get("source") != Source.RULE:
        return False
    if entry.get("module") == RESCUE:
        return entry.get("op") == "rollback"
    return entry.get("op") == "set_params" and entry.get("actor") in PROTECTIVE_RULES


def _changes(entry: dict[str, Any]) -> list[KnobChange]:
    """The knob changes an applied ledger entry made (its payload's ``{key: {old, new}}``)."""
    payload, seq, step = entry.get("payload"), entry.get("seq"), entry.get("step")
    if entry.get("decision") != "applied" or not isinstance(payload, dict) or not isinstance(seq, int):
        return []
    if entry.get("op") not in ("set_params", "rollback") or not isinstance(entry.get("module"), str):
        return []
    source, actor = entry.get("source"), entry.get("actor")
    protective = _is_protective(entry)
    out = []
    for key, moved in payload.items():
        if not isinstance(moved, dict):
            continue  # a rollback's restored_step, note
        old, new = json_number(moved.get("old")), json_number(moved.get("new"))
        if old is None or new is None or old == new:
            continue
        out.append(KnobChange(seq, step if isinstance(step, int) else None, entry["module"], str(key), old, new,
                              source if isinstance(source, str) else None,
                              actor if isinstance(actor, str) else None, protective))
    return out


def record_of(ledger: list[Any], alerts: list[Any]) -> RecentRecord:
    texts: list[ShownText] = []
    changes: list[KnobChange] = []
    for e in ledger:
        if not isinstance(e, dict):
            continue
        source, actor = e.get("source"), e.get("actor")
        if isinstance(e.get("reason"), str) and e["reason"]:
            texts.append(ShownText(e["reason"], source if isinstance(source, str) else None,
                                   actor if isinstance(actor, str) else None))
        if e.get("decision") != "applied" and isinstance(e.get("error"), str) and e["error"]:
            texts.append(ShownText(e["error"]))  # a refusal: shown to its writer too
        changes.extend(_changes(e))
    for a in alerts:
        if isinstance(a, dict) and isinstance(a.get("message"), str) and a["message"]:
            texts.append(ShownText(a["message"]))
    return RecentRecord(tuple(texts), tuple(changes))


def read_recent_record(root: str | os.PathLike[str]) -> RecentRecord:
    """The run's recent record from the tails of its ledger and alerts files."""
    root = Path(root)
    return record_of(read_tail(root / LEDGER, TAIL_BYTES), read_tail(root / ALERTS, TAIL_BYTES))


class RecentRecordReader:
    """``read_recent_record``, kept until the ledger or the alerts file changes (two ``lstat``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._key: tuple[Any, ...] | None = None
        self._record = RecentRecord()
        self.reads = 0  # how many times the files were read (a plain training step reads none)

    def _stamp(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in (LEDGER, ALERTS):
            try:
                st = os.lstat(self.root / name)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def __call__(self) -> RecentRecord:
        key = self._stamp()
        if key != self._key:
            self._record, self._key = read_recent_record(self.root), key
            self.reads += 1
        return self._record
