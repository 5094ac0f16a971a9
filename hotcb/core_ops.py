"""``CoreOps``: the ``core`` module, one more handler among the kernel's modules.

Its ops: pause, resume, stop, freeze/unfreeze, lock/unlock, cancel, reschedule, checkpoint and
rollback. It owns the run's pause and stop flags; the rest it changes through the objects that
own them (the freeze switch, the locks, the schedule, the snapshots), reached as the kernel's
public attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .actuators.actuator import ValueRefused
from .checkpoint import live_knob_values, restore_knobs
from .freeze import FreezeState
from .modules import ApplyContext
from .ops import HotOp

if TYPE_CHECKING:
    from .kernel import HotKernel

# Each core op's handler: a table, so a new op is one method and one row.
CORE_HANDLERS = {
    "pause": "_pause", "resume": "_resume", "stop": "_stop",
    "freeze": "_freeze", "unfreeze": "_freeze", "lock": "_lock", "unlock": "_lock",
    "cancel": "_cancel", "reschedule": "_reschedule",
    "checkpoint": "_checkpoint", "rollback": "_rollback",
}


class CoreOps:
    name = "core"

    def __init__(self, kernel: HotKernel) -> None:
        self.kernel = kernel
        self.paused = False
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True

    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        """Route a core op to its handler (one method per op, in ``CORE_HANDLERS``)."""
        handler = CORE_HANDLERS.get(op.op)
        if handler is None:
            raise ValueRefused(f"unknown core op {op.op!r}")
        return getattr(self, handler)(op, ctx)

    def _pause(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        old, self.paused = self.paused, True  # published at this step's end, after its metrics (kernel)
        return {"paused": {"old": old, "new": True}}

    def _resume(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        old, self.paused = self.paused, False
        self.kernel.publish_status()
        return {"paused": {"old": old, "new": False}}

    def _stop(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        self.stop_requested = True
        self.kernel.publish_status()
        return {"stop": True}

    def _freeze(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        p = op.params
        mode = "off" if op.op == "unfreeze" else p.get("mode", "prod")
        new = FreezeState(
            mode=mode, recipe_path=p.get("recipe_path"), overlay_path=p.get("overlay_path"),
            overlay=p.get("overlay") or [], cmd_id=op.cmd_id, source=op.source, actor=op.actor,
            reason=op.reason,
        )
        old = self.kernel.freeze.mode
        self.kernel.freeze_switch.set(new)
        if self.kernel.is_writer:
            self.kernel.watched.save_freeze(new)
        return {"mode": {"old": old, "new": mode}}

    def _lock(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        keys = op.params.get("keys") or ([op.id] if op.id else [])
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueRefused(f"core {op.op} needs params.keys (a list of knob keys)")
        state, locks = self.kernel.state, self.kernel.locks
        unknown = [k for k in keys if k not in state]
        if unknown:
            raise ValueRefused(f"unknown knobs {unknown} (known: {', '.join(sorted(state.keys()))})")
        for k in keys:
            if op.op == "lock":
                locks.lock(k, op.actor, ctx.step)
            else:
                locks.pop(k, None)
        locks.save(self.kernel.is_writer)
        return {"locks": sorted(locks)}

    def _cancel(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        target = op.params.get("cmd_id")
        victim = self.kernel.schedule.cancel(target)
        if victim is None:
            raise ValueRefused(f"no scheduled op with cmd_id {target!r}")
        self.kernel.commands.record(victim, ctx, "rejected", error=f"cancelled by {op.actor or op.source} ({op.cmd_id})")
        self.kernel.publish_schedule()
        return {"cancelled": target}

    def _reschedule(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        target, at = op.params.get("cmd_id"), op.params.get("at_step")
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueRefused("reschedule needs params.at_step, a non-negative integer")
        victim = self.kernel.schedule.get(target)
        if victim is None:
            raise ValueRefused(f"no scheduled op with cmd_id {target!r}")
        old = victim.at_step
        self.kernel.schedule.move(victim, at)
        self.kernel.publish_schedule()
        return {"cmd_id": target, "at_step": {"old": old, "new": at}}

    def _checkpoint(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        snapshots = self.kernel.snapshots
        snap = snapshots.take(ctx.step, live_knob_values(self.kernel.state), op.reason)
        return {"snapshot_step": snap.step, "snapshots": snapshots.steps()}

    def _rollback(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        to = op.params.get("step")
        snapshots = self.kernel.snapshots
        snap = snapshots.find(int(to) if to is not None else None)
        before = live_knob_values(self.kernel.state)  # "old": what the run used until now
        snapshots.restore(snap)
        restored = restore_knobs(self.kernel.state, snap.knobs, ctx.env, ctx.step, before=before)
        return {"restored_step": snap.step, "knobs": restored}
