"""Tune under ``torch.distributed``: rank 0 decides, every rank applies at shared sync steps.

Rank 0 alone decides (study, journal, records, status file); the other ranks follow.
Knob changes happen only at *sync steps*, known to every rank in advance:
there all ranks enter one ``kernel.dist.broadcast``, rank 0 makes its decisions inside the
reader (applying them through the kernel), and every other rank applies the same ops, in the
same order, right after the broadcast. Each broadcast also names the next sync step (idle: one
per horizon; during a trial: the risk-check cadence, the due step and the give-up step).
The first sync step is set by a command rank 0 writes to the commands file (``tune enable``
with ``params.sync``): the kernel broadcasts it, so every rank has ``TuneModule`` and starts at
the same step, however each rank came to have it (a collective entered by one rank would hang).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from ..jsonl import append_line
from ..ops import TUNE, HotOp
from . import ApplyContext
from .tune_trial import NEVER

log = logging.getLogger("hotcb.tune")


class SyncMixin:
    """``TuneModule``'s distributed steps (its state: ``TuneModule.__init__``)."""

    def _dist_step(self, ctx: ApplyContext, dist: Any) -> None:
        """Every rank: between sync steps only rank 0 observes; at a sync step all ranks enter
        one broadcast (same step on every rank: the previous broadcast named it)."""
        leader = dist.rank == 0
        if leader and not self._resumed:
            self._resume()
        if ctx.step < self._next_sync:
            if leader and (self.mode != "off" or self._undo):
                self._guarded_step(ctx, act=False)
                if not self._booted:
                    self._bootstrap(ctx)
            return
        try:
            payload = dist.broadcast((lambda: self._lead(ctx)) if leader else None)
        except Exception as e:  # a failed collective cannot be retried in step: stop tuning
            self._next_sync = NEVER
            self.mode = "off"
            self._fail(e, "tune broadcast")
            return
        payload = payload if isinstance(payload, dict) else {}
        nxt = payload.get("next")
        self._next_sync = nxt if isinstance(nxt, int) else ctx.step + 1
        if not leader:
            self._follow(ctx, payload.get("ops") or [])

    def _bootstrap(self, ctx: ApplyContext) -> None:
        """Rank 0: write the sync command (once; again only if it was refused, e.g. by freeze)."""
        try:
            if self._boot_id is not None and not (self.kernel.ledger.has(self._boot_id)
                                                  and self.kernel.freeze.mode == "off" and ctx.step >= self._boot_retry):
                return
        except Exception as e:
            return self._fail(e, "checking tune's sync command")
        try:
            self._boot_id = f"tune-sync-{uuid.uuid4().hex[:16]}"
            self._boot_retry = ctx.step + max(10, self.recipe.horizon)
            append_line(self.kernel.run.commands, {
                "cmd_id": self._boot_id, "ts": time.time(), "module": TUNE, "op": "enable", "source": "tune",
                "actor": "tune", "params": {"mode": self.mode, "sync": self._boot_id},
                "reason": "tune: rank 0 decides for every rank, at steps all ranks share",
            })
        except Exception as e:
            self._fail(e, "writing tune's sync command")

    def _lead(self, ctx: ApplyContext) -> dict[str, Any]:
        """Rank 0, inside the broadcast: decide and apply; return the ops and the next sync step.
        Never raises (an exception here would leave the other ranks waiting in the broadcast)."""
        self._outbox = []
        if self.mode != "off" or self._undo:
            self._syncing = True
            try:
                self._step(ctx, act=True)
            except Exception as e:
                try:
                    self._fail(e, "tune step", ctx)
                except Exception:
                    pass
            finally:
                self._syncing = False
        try:
            nxt = self._schedule(ctx.step)
        except Exception:
            nxt = ctx.step + 1
        ops, self._outbox = self._outbox, []
        return {"ops": ops, "next": int(nxt)}

    def _schedule(self, step: int) -> int:
        """Rank 0: the next step at which it may need to change a knob (a sync step)."""
        r = self.recipe
        beat = max(1, r.horizon)  # idle: picks up a mode change, a new recipe, the next check
        k = max(1, r.horizon // 10)  # during a trial: how often the risk limits are checked
        t = self.trial
        if self._undo:
            return max(step + 1, min(self._undo_ready, step + beat))
        if self.mode != "active" or (t is not None and (t.kind != "active" or t.change_step < 0)):
            return step + beat
        if t is None:
            return max(step + 1, min(self.next_check, step + beat))
        if step >= t.due:
            return max(step + 1, min(step + k, t.give_up))
        nxt = min(t.due, t.give_up)
        if r.risk.abort_worsening is not None:
            nxt = min(nxt, max(t.abort_from, step + k))
        return max(step + 1, nxt)

    def _follow(self, ctx: ApplyContext, ops: list[dict[str, Any]]) -> None:
        """A rank other than 0: apply rank 0's ops, in its order, through this rank's kernel."""
        for d in ops:
            try:
                op = HotOp(module=d["module"], op=d["op"], params=dict(d["params"]), source="tune",
                           actor=d.get("actor"), reason=d.get("reason"), cmd_id=d["cmd_id"])
                entry = self.kernel.submit(op, ctx.env)
                if entry.get("decision") != d.get("decision"):
                    self.last_error = (f"rank {self.kernel.dist.rank}: {op.cmd_id} was {entry.get('decision')} "
                                       f"here but {d.get('decision')} on rank 0 ({entry.get('error')})")
                    log.warning("hotcb tune: %s", self.last_error)
            except Exception as e:
                self.last_error = f"applying rank 0's tune op: {type(e).__name__}: {e}"
                log.exception("hotcb tune: applying rank 0's op failed (training continues)")

    def _can_apply(self) -> bool:
        return self.kernel.dist is None or self._syncing
