"""``DistSync``: tune under ``torch.distributed``: rank 0 decides, every rank applies at shared sync steps.

Rank 0 alone decides (study, journal, records, status file); the other ranks follow.
Knob changes happen only at *sync steps*, known to every rank in advance:
there all ranks enter one ``kernel.dist.broadcast``, rank 0 makes its decisions inside the
reader (applying them through the kernel), and every other rank applies the same ops, in the
same order, right after the broadcast. Each broadcast also names the next sync step (idle: one
per horizon; during a trial: the risk-check cadence, the due step and the give-up step;
``decide.next_sync``). The first sync step is set by a command rank 0 writes to the
commands file (``tune enable`` with ``params.sync``): the kernel broadcasts it, so every rank
has ``TuneModule`` and starts at the same step, however each rank came to have it (a
collective entered by one rank would hang).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..jsonl_write import append_line
from ..modules import ApplyContext
from ..ops import TUNE, HotOp, Source
from .host import SyncHost
from .readonly import ReadOnly
from .trial import NEVER

log = logging.getLogger("hotcb.tune")


class DistSync:
    """The sync schedule, the sync command, and the ops rank 0 applied in the current sync."""

    def __init__(self, host: SyncHost):
        self._host = host
        # The next step at which every rank enters tune's broadcast; NEVER until the sync
        # command (the same step on every rank: the kernel broadcast it) sets it to -1.
        self._next = NEVER
        self._booted = False
        self._boot_id: str | None = None  # rank 0: the sync command it wrote
        self._boot_retry = 0
        self._syncing = False  # rank 0, inside the broadcast's reader: knob ops allowed
        self._outbox: list[dict[str, Any]] = []  # rank 0: ops applied in this sync, for the others

    @property
    def rank(self) -> int:
        dist = self._host.dist
        return dist.rank if dist is not None else 0

    booted: ReadOnly[bool] = ReadOnly()

    def start(self) -> None:
        """The sync command arrived (every rank, the same step): sync from this step on."""
        self._booted, self._next = True, -1

    def stop(self) -> None:
        """A failed collective cannot be retried in step: no more syncs."""
        self._next = NEVER

    def due(self, step: int) -> bool:
        return step >= self._next

    def can_apply(self) -> bool:
        return self._host.dist is None or self._syncing

    def send(self, op: HotOp, decision: Any) -> None:
        """An op rank 0 applied in this sync: the other ranks apply it too (and expect ``decision``)."""
        if self._host.dist is not None:
            self._outbox.append({"module": op.module, "op": op.op, "params": op.params, "actor": op.actor,
                                 "reason": op.reason, "cmd_id": op.cmd_id, "decision": decision})

    def bootstrap(self, step: int, mode: str, horizon: int, on_error: Callable[[Exception, str], None]) -> None:
        """Rank 0: write the sync command (once; again only if it was refused, e.g. by freeze)."""
        h = self._host
        try:
            if self._boot_id is not None and not (h.ledger.has(self._boot_id) and h.freeze.mode == "off"
                                                  and step >= self._boot_retry):
                return
        except Exception as e:
            return on_error(e, "checking tune's sync command")
        try:
            self._boot_id = f"tune-sync-{uuid.uuid4().hex[:16]}"
            self._boot_retry = step + max(10, horizon)
            append_line(h.run.commands, {
                "cmd_id": self._boot_id, "ts": time.time(), "module": TUNE, "op": "enable", "source": "tune",
                "actor": "tune", "params": {"mode": mode, "sync": self._boot_id},
                "reason": "tune: rank 0 decides for every rank, at steps all ranks share",
            })
        except Exception as e:
            on_error(e, "writing tune's sync command")

    def exchange(self, ctx: ApplyContext, decide: Callable[[], int] | None) -> list[dict[str, Any]]:
        """Every rank, at a sync step: one broadcast. Rank 0 (``decide`` given) decides inside it,
        ``decide`` applying ops and returning the next sync step; returns rank 0's ops.
        Raises what the collective raises (the caller stops tuning)."""
        payload = self._host.dist.broadcast((lambda: self._lead(ctx, decide)) if decide is not None else None)
        payload = payload if isinstance(payload, dict) else {}
        nxt = payload.get("next")
        self._next = nxt if isinstance(nxt, int) else ctx.step + 1
        return payload.get("ops") or []

    def _lead(self, ctx: ApplyContext, decide: Callable[[], int]) -> dict[str, Any]:
        """Never raises (an exception here would leave the other ranks waiting in the broadcast)."""
        self._outbox = []
        self._syncing = True
        try:
            nxt = decide()
        except Exception:
            nxt = ctx.step + 1
        finally:
            self._syncing = False
        ops, self._outbox = self._outbox, []
        return {"ops": ops, "next": int(nxt)}

    def follow(self, ctx: ApplyContext, ops: list[dict[str, Any]]) -> str | None:
        """A rank other than 0: apply rank 0's ops, in its order, through this rank's kernel.
        Returns the last error (an op decided otherwise here, or one that failed), if any."""
        error = None
        for d in ops:
            try:
                op = HotOp(module=d["module"], op=d["op"], params=dict(d["params"]), source=Source.TUNE,
                           actor=d.get("actor"), reason=d.get("reason"), cmd_id=d["cmd_id"])
                entry = self._host.submit(op, ctx.env)
                if entry.get("decision") != d.get("decision"):
                    error = (f"rank {self.rank}: {op.cmd_id} was {entry.get('decision')} "
                             f"here but {d.get('decision')} on rank 0 ({entry.get('error')})")
                    log.warning("hotcb tune: %s", error)
            except Exception as e:
                error = f"applying rank 0's tune op: {type(e).__name__}: {e}"
                log.exception("hotcb tune: applying rank 0's op failed (training continues)")
        return error
