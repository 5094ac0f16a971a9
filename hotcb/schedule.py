"""``Schedule``: ops held for a later step or event (``at_step`` / ``at_event``), published to
``hotcb.schedule.json``. A ``core reschedule`` is remembered (from the ledger on restart) so the
command line, read again, keeps its new step."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .jsonl_write import write_json_atomic
from .ops import HotOp


class Schedule:
    def __init__(self, path: str | os.PathLike[str], history: Iterable[dict[str, Any]]) -> None:
        self.path = path
        self.ops: dict[str, HotOp] = {}
        self.moved: dict[str, int] = _reschedules(history)

    def __len__(self) -> int:
        return len(self.ops)

    def __contains__(self, cmd_id: object) -> bool:
        return cmd_id in self.ops

    def source_of(self, cmd_id: str) -> str | None:
        op = self.ops.get(cmd_id)
        return op.source if op is not None else None

    def hold(self, op: HotOp, step: int, events: list[str]) -> bool:
        """Keep ``op`` for later if its time has not come (a rescheduled op at its new step)."""
        if op.cmd_id in self.moved:
            op.at_step = self.moved[op.cmd_id]
        if (op.at_step is not None and op.at_step > step) or (op.at_event is not None and op.at_event not in events):
            self.ops[op.cmd_id] = op
            return True
        return False

    def take_due(self, step: int, events: list[str]) -> list[HotOp]:
        """The ops whose time has come, removed, earliest step first."""
        due = [op for op in self.ops.values()
               if (op.at_step is None or op.at_step <= step) and (op.at_event is None or op.at_event in events)]
        due.sort(key=lambda o: (o.at_step or 0))
        for op in due:
            del self.ops[op.cmd_id]
        return due

    def cancel(self, cmd_id: Any) -> HotOp | None:
        return self.ops.pop(cmd_id, None) if isinstance(cmd_id, str) else None

    def get(self, cmd_id: Any) -> HotOp | None:
        return self.ops.get(cmd_id) if isinstance(cmd_id, str) else None

    def move(self, op: HotOp, at_step: int) -> None:
        """Give a held op a new step (kept if its command line is read again)."""
        op.at_step = at_step
        self.moved[op.cmd_id] = at_step

    def publish(self, step: int, is_writer: bool) -> None:
        if is_writer:
            pending = sorted((op.to_command() for op in self.ops.values()),
                             key=lambda c: (c.get("at_step") or 0, c.get("ts") or 0))
            write_json_atomic(self.path, {"step": step, "pending": pending})


def _reschedules(history: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = {}
    for e in history:
        if e.get("op") == "reschedule":
            target = (e.get("payload") or {}).get("cmd_id")
            at = ((e.get("payload") or {}).get("at_step") or {}).get("new")
            if isinstance(target, str) and isinstance(at, int):
                out[target] = at
    return out
