"""The ledger, ``hotcb.applied.jsonl``: one decision per command, in order. Kernel-only writer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from .jsonl import JsonlTail, append_line

DECISIONS = ("applied", "rejected", "failed", "ignored_freeze", "ignored_replay")


class Ledger:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.cmd_ids: set[str] = set()
        self.seq = 0
        self.history: list[dict[str, Any]] = []  # applied entries that later logic replays
        for entry in JsonlTail(self.path).values():
            if isinstance(entry, dict):
                self._remember(entry)

    def _remember(self, entry: dict[str, Any]) -> None:
        if isinstance(entry.get("cmd_id"), str):
            self.cmd_ids.add(entry["cmd_id"])
        if isinstance(entry.get("seq"), int):
            self.seq = max(self.seq, entry["seq"])
        if entry.get("decision") == "applied" and entry.get("module") == "core":
            self.history.append(entry)

    def has(self, cmd_id: str) -> bool:
        return cmd_id in self.cmd_ids

    def record(
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
        assert decision in DECISIONS, decision
        self.seq += 1
        entry: dict[str, Any] = {
            "seq": self.seq, "cmd_id": cmd_id, "step": step, "epoch": epoch, "event": event,
            "module": module, "op": op, "id": id, "source": source, "actor": actor, "reason": reason,
            "decision": decision, "params": params or {}, "payload": payload or {}, "error": error,
            "wall_time": time.time(),
        }
        if extra:
            for k, v in extra.items():
                entry.setdefault(k, v)
        append_line(self.path, entry)
        self._remember(entry)
        return entry


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
