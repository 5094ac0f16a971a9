"""``Intents``: a durable mark that a command's handler has started (``hotcb.intents.jsonl``).

At most once for side effects, exactly once for decisions: the kernel appends (and fsyncs) an
intent before a command's handler runs, and writes the ledger decision right after it. A process
killed in between leaves an intent without a decision; the next kernel on the run records that
command ``interrupted`` (with what the intent says) instead of running its handler again -- a
callback whose constructor wrote a file writes it once. Once every intent has its decision the
file is emptied (at start-up, under the run lock).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .jsonl import JsonlTail, open_nofollow
from .jsonl_write import dumps

if TYPE_CHECKING:
    from .ledger import Ledger
    from .modules import ApplyContext
    from .ops import HotOp

MAX_INTENT_PARAMS = 8 << 10  # params larger than this are kept as their size only
COMPACT_BYTES = 1 << 20  # the file is emptied past this size, at a moment every intent is decided
INTERRUPTED_REASON = ("the training process ended while this command was being applied (its handler had "
                      "started, no decision was written); not run again, so it may have taken partial effect")


@dataclass(frozen=True)
class Intent:
    """What was known of a command when its handler started."""

    cmd_id: str
    fields: dict[str, Any]

    @classmethod
    def of(cls, op: HotOp, ctx: ApplyContext) -> Intent:
        params: Any = op.params
        try:
            if len(dumps(params)) > MAX_INTENT_PARAMS:
                params = {"truncated": True, "bytes": len(dumps(params))}
        except (ValueError, TypeError, RecursionError):
            params = {"truncated": True}
        return cls(op.cmd_id, {
            "cmd_id": op.cmd_id, "module": op.module, "op": op.op, "id": op.id, "source": str(op.source),
            "actor": op.actor, "reason": op.reason, "params": params, "step": ctx.step, "epoch": ctx.epoch,
            "event": ctx.event, "wall_time": time.time(),
            "target": op.target.to_dict() if op.target is not None else None,
        })


class Intents:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def read(self) -> list[Intent]:
        """The intents on file (one per cmd_id, the last one kept); unreadable lines are skipped."""
        out: dict[str, Intent] = {}
        try:
            for v in JsonlTail(self.path).all_values():
                if isinstance(v, dict) and isinstance(v.get("cmd_id"), str):
                    out[v["cmd_id"]] = Intent(v["cmd_id"], v)
        except OSError:
            return []
        return list(out.values())

    def begin(self, op: HotOp, ctx: ApplyContext) -> None:
        """Append and fsync the intent for ``op``; an ``OSError`` means the handler must not run."""
        data = (dumps(Intent.of(op, ctx).fields) + "\n").encode("utf-8")
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def recover(self, ledger: Ledger, intents: list[Intent]) -> list[str]:
        """Record ``interrupted`` for each intent without a decision; empty the file once all are
        decided. Returns the cmd_ids recorded."""
        done = []
        for intent in intents:
            if ledger.has(intent.cmd_id):
                continue
            f = intent.fields

            def s(key: str, f: dict[str, Any] = f) -> Any:
                v = f.get(key)
                return v if isinstance(v, (str, type(None))) else repr(v)

            step, epoch = f.get("step"), f.get("epoch")
            ledger.record(
                cmd_id=intent.cmd_id, module=s("module"), op=s("op"), decision="interrupted",
                step=step if isinstance(step, int) and not isinstance(step, bool) else None,
                epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
                event=s("event"), id=s("id"), source=s("source"), actor=s("actor"), reason=s("reason"),
                params=f.get("params") if isinstance(f.get("params"), dict) else None, error=INTERRUPTED_REASON,
                extra={"intent": {"wall_time": f.get("wall_time"), "target": f.get("target")}},
            )
            done.append(intent.cmd_id)
        if not ledger.pending:
            self.clear()
        return done

    def compact(self) -> None:
        """Empty a file grown past ``COMPACT_BYTES``; call only when every intent on it has its
        decision written (none in flight, no ledger entry held)."""
        try:
            if os.lstat(self.path).st_size > COMPACT_BYTES:
                self.clear()
        except OSError:
            pass

    def clear(self) -> None:
        try:
            fd = open_nofollow(self.path, os.O_WRONLY)
        except OSError:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)
