"""The ledger, ``hotcb.applied.jsonl``: one decision per command, in order. Kernel-only writer."""

from __future__ import annotations

import os
import time
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
