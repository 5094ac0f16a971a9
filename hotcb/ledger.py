"""The ledger, ``hotcb.applied.jsonl``: one decision per command, in order. Kernel-only writer.

Exactly once rests on it: the kernel skips a ``cmd_id`` it has a decision for, so the whole file
is read at start-up whatever its size. A stored entry is bounded (``MAX_ENTRY_BYTES``): a value
too large to keep is recorded as its digest and size, never echoed. An entry that cannot be
written (a full disk) is held and written again before anything else is decided.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from enum import Enum
from typing import Any

from .jsonl import JsonlTail, digest
from .jsonl_write import append_line, dumps
from .records import LedgerRecord


class Decision(str, Enum):
    """What the kernel decided for one command (the ledger's ``decision``)."""

    APPLIED = "applied"
    REJECTED = "rejected"  # validation or the judge refused it
    FAILED = "failed"  # it raised while applying
    IGNORED_FREEZE = "ignored_freeze"
    IGNORED_REPLAY = "ignored_replay"
    UNCHANGED = "unchanged"  # every value already in force: nothing applied, no cooldown started
    INTERRUPTED = "interrupted"  # its handler started, the process died before the decision (hotcb.intents)


DECISIONS = tuple(d.value for d in Decision)
MAX_ENTRY_BYTES = 64 << 10  # one ledger line at most; larger values are kept as digests
MAX_FIELD_BYTES = 8 << 10  # a single field (params, payload, a value) before it is digested
MAX_TEXT = 2000  # reasons and errors are cut here (an error may quote the value it refuses)


def _size(value: Any) -> int:
    try:
        return len(dumps(value))
    except (ValueError, TypeError, RecursionError):
        return MAX_ENTRY_BYTES + 1


def _digested(value: Any) -> Any:
    try:
        text = dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)[:MAX_ENTRY_BYTES]
    return {"digest": digest(text), "bytes": len(text), "truncated": True}


def _bounded(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as stored: long texts cut, fields too large to keep replaced by their digest."""
    for key in ("reason", "error", "raw"):
        if isinstance(entry.get(key), str) and len(entry[key]) > MAX_TEXT:
            entry[key] = entry[key][:MAX_TEXT] + f"... [{len(entry[key])} chars]"
    if _size(entry) <= MAX_ENTRY_BYTES:
        return entry
    for key, value in list(entry.items()):
        if isinstance(value, dict) and key in ("params", "payload"):
            entry[key] = {k: (_digested(v) if _size(v) > MAX_FIELD_BYTES else v) for k, v in value.items()}
        elif _size(value) > MAX_FIELD_BYTES:
            entry[key] = _digested(value)
    if _size(entry) > MAX_ENTRY_BYTES:  # many medium fields: keep the skeleton only
        for key in ("params", "payload"):
            if isinstance(entry.get(key), dict):
                entry[key] = _digested(entry[key])
    return entry


class Ledger:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.cmd_ids: set[str] = set()
        self.seq = 0
        self.history: list[dict[str, Any]] = []  # applied entries that later logic replays
        self.pending: list[dict[str, Any]] = []  # decided, not yet written (write failed)
        try:
            for entry in JsonlTail(self.path).all_values():
                if isinstance(entry, dict):
                    self._remember(entry)
        except OSError as e:  # a symlinked or unreadable ledger: nothing is decided until it is fixed
            self.write_error = f"{type(e).__name__}: {e}"

    def _remember(self, entry: dict[str, Any]) -> None:
        if isinstance(entry.get("cmd_id"), str):
            self.cmd_ids.add(entry["cmd_id"])
        if isinstance(entry.get("seq"), int):
            self.seq = max(self.seq, entry["seq"])
        if entry.get("decision") == "applied" and entry.get("module") == "core":
            self.history.append(entry)

    def has(self, cmd_id: str) -> bool:
        return cmd_id in self.cmd_ids

    # complexity: one keyword per ledger field: the entry's schema written out at its one writer
    def record(  # noqa: PLR0913
        self,
        *,
        cmd_id: str,
        module: str | None,
        op: str | None,
        decision: str,
        step: int | None = None,
        epoch: int | None = None,
        event: str | None = None,
        id: str | None = None,
        source: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        params: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        decision = Decision(decision).value
        self.seq += 1
        entry = _bounded(LedgerRecord(
            seq=self.seq, cmd_id=cmd_id, step=step, epoch=epoch, event=event, module=module, op=op, id=id,
            source=source, actor=actor, reason=reason, decision=decision, params=params or {},
            payload=payload or {}, error=error, wall_time=time.time(), extra=extra or {}).to_json())
        self._remember(entry)  # decided: never applied again in this process, written or not
        self.pending.append(entry)
        self.flush()
        return entry

    def flush(self) -> bool:
        """Write held entries in order; False (and kept) while the file cannot take them."""
        while self.pending:
            try:
                append_line(self.path, self.pending[0])
            except (OSError, ValueError, TypeError, RecursionError) as e:
                if not isinstance(e, OSError):  # cannot be serialised at all: keep its skeleton
                    self.pending[0] = {k: v for k, v in self.pending[0].items() if k not in ("params", "payload")}
                    continue
                self.write_error = f"{type(e).__name__}: {e}"
                return False
            self.pending.pop(0)
        self.write_error = None
        return True

    write_error: str | None = None


def filter_entries(
    entries: Iterable[Any],
    *,
    source: str | None = None,
    decision: str | None = None,
    module: str | None = None,
    cmd_id: str | None = None,
    since_step: int | None = None,
    until_step: int | None = None,
    since_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Ledger entries matching every filter given (the CLI and ``read_ledger`` share it).

    ``since_step``/``until_step`` bound the training step, both inclusive; an entry without an
    integer step is left out once either is given. ``since_seq`` keeps entries after that seq.
    """
    if since_step is not None and until_step is not None and since_step > until_step:
        raise ValueError(f"since_step ({since_step}) is after until_step ({until_step})")
    wanted = {k: v for k, v in (("source", source), ("decision", decision), ("module", module),
                                ("cmd_id", cmd_id)) if v}
    out = []
    for e in entries:
        if not isinstance(e, dict) or any(e.get(k) != v for k, v in wanted.items()):
            continue
        if since_step is not None or until_step is not None:
            step = e.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                continue
            if (since_step is not None and step < since_step) or (until_step is not None and step > until_step):
                continue
        if since_seq is not None and (e.get("seq") or 0) <= since_seq:
            continue
        out.append(e)
    return out
