"""The ``core`` module's ops: pause, resume, stop, freeze/unfreeze, lock/unlock, cancel,
reschedule, checkpoint and rollback, and switching the freeze mode (which starts or stops a
recipe replay).

``CoreOps`` is mixed into ``HotKernel``; it works on the kernel's state (the attributes
declared below) and records through the kernel's ``_record``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .actuators.actuator import ValueRefused
from .actuators.state import MutableState
from .checkpoint import Snapshots, live_knob_values, restore_knobs
from .filewatch import FileWatch
from .freeze import FreezeState
from .judge import CodePolicy, View, judge_recipe
from .ledger import Ledger
from .modules import ApplyContext
from .ops import HotOp
from .recipe import RecipePlayer, apply_overlay, load_recipe, validate_recipe
from .rundir import RunDir

MAX_RECIPE_BYTES = 16 << 20
# Each core op's handler: a table, so a new op is one method and one row.
CORE_HANDLERS = {
    "pause": "_core_pause", "resume": "_core_resume", "stop": "_core_stop",
    "freeze": "_core_freeze", "unfreeze": "_core_freeze", "lock": "_core_lock", "unlock": "_core_lock",
    "cancel": "_core_cancel", "reschedule": "_core_reschedule",
    "checkpoint": "_core_checkpoint", "rollback": "_core_rollback",
}


class CoreOps:
    """Handles ``module == "core"`` ops for ``HotKernel`` (``_core``) and freeze switches."""

    run: RunDir
    state: MutableState
    ledger: Ledger
    snapshots: Snapshots
    is_writer: bool
    paused: bool
    stop_requested: bool
    freeze: FreezeState
    player: RecipePlayer | None
    locks: dict[str, dict[str, Any]]
    scheduled: dict[str, HotOp]
    _reschedules: dict[str, int]
    _freeze_watch: FileWatch
    code: CodePolicy

    def view(self, step: int | None = None) -> View: ...

    def _core(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        """Route a core op to its handler (one method per op, in ``CORE_HANDLERS``)."""
        handler = CORE_HANDLERS.get(op.op)
        if handler is None:
            raise ValueRefused(f"unknown core op {op.op!r}")
        return getattr(self, handler)(op, ctx)

    def _core_pause(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        old, self.paused = self.paused, True
        self._write_status(force=True)
        return {"paused": {"old": old, "new": True}}

    def _core_resume(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        old, self.paused = self.paused, False
        self._write_status(force=True)
        return {"paused": {"old": old, "new": False}}

    def _core_stop(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        self.stop_requested = True
        self._write_status(force=True)
        return {"stop": True}

    def _core_freeze(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        p = op.params
        mode = "off" if op.op == "unfreeze" else p.get("mode", "prod")
        new = FreezeState(
            mode=mode, recipe_path=p.get("recipe_path"), overlay_path=p.get("overlay_path"),
            overlay=p.get("overlay") or [], cmd_id=op.cmd_id, source=op.source, actor=op.actor,
            reason=op.reason,
        )
        old = self.freeze.mode
        self._set_freeze(new)
        if self.is_writer:
            new.save(self.run.freeze)
            self._freeze_watch.changed()  # our own write is not a new change
        return {"mode": {"old": old, "new": mode}}

    def _core_lock(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        keys = op.params.get("keys") or ([op.id] if op.id else [])
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueRefused(f"core {op.op} needs params.keys (a list of knob keys)")
        unknown = [k for k in keys if k not in self.state]
        if unknown:
            raise ValueRefused(f"unknown knobs {unknown} (known: {', '.join(sorted(self.state.keys()))})")
        for k in keys:
            if op.op == "lock":
                self.locks[k] = {"actor": op.actor or "human", "step": ctx.step, "ts": time.time()}
            else:
                self.locks.pop(k, None)
        self._save_locks()
        return {"locks": sorted(self.locks)}

    def _core_cancel(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        target = op.params.get("cmd_id")
        victim = self.scheduled.pop(target, None) if isinstance(target, str) else None
        if victim is None:
            raise ValueRefused(f"no scheduled op with cmd_id {target!r}")
        self._record(victim, ctx, "rejected", error=f"cancelled by {op.actor or op.source} ({op.cmd_id})")
        self._publish_schedule()
        return {"cancelled": target}

    def _core_reschedule(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        target, at = op.params.get("cmd_id"), op.params.get("at_step")
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueRefused("reschedule needs params.at_step, a non-negative integer")
        victim = self.scheduled.get(target) if isinstance(target, str) else None
        if victim is None:
            raise ValueRefused(f"no scheduled op with cmd_id {target!r}")
        old = victim.at_step
        victim.at_step = at
        self._reschedules[victim.cmd_id] = at
        self._publish_schedule()
        return {"cmd_id": target, "at_step": {"old": old, "new": at}}

    def _core_checkpoint(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        snap = self.snapshots.take(ctx.step, live_knob_values(self.state), op.reason)
        return {"snapshot_step": snap.step, "snapshots": self.snapshots.steps()}

    def _core_rollback(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        to = op.params.get("step")
        snap = self.snapshots.find(int(to) if to is not None else None)
        self.snapshots.restore(snap)
        restored = restore_knobs(self.state, snap.knobs, ctx.env, ctx.step)
        return {"restored_step": snap.step, "knobs": restored}

    def _recipe_file(self, given: str | None, what: str, from_code: bool = False) -> Path:
        # A path the training script itself gave (``HotKernel(freeze=...)``) is its author's;
        # one from a command or the freeze file must lie in the run directory or allowed dirs.
        path = Path(given or "").resolve() if from_code and given and Path(given).is_absolute() else self.code.place(given or "")
        if path is None:
            raise ValueRefused(f"{what} {given!r} is outside the run directory and the allowed directories")
        if not path.is_file():
            raise ValueRefused(f"{what} not found: {given}")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise ValueRefused(f"{what} {given} is larger than {MAX_RECIPE_BYTES >> 20} MiB")
        return path

    def _set_freeze(self, new: FreezeState, from_code: bool = False) -> None:
        """Switch freeze mode. A replay is validated whole before it starts -- every entry and
        overlay patch, by the judge, as the source that starts it -- or it does not start."""
        player = None
        if new.replaying:
            entries = load_recipe(self._recipe_file(new.recipe_path, "recipe", from_code))
            overlay = list(new.overlay)
            if new.overlay_path:
                overlay += load_recipe(self._recipe_file(new.overlay_path, "overlay", from_code))
            problems = validate_recipe(entries, "entry") + validate_recipe(overlay, "overlay entry", overlay=True)
            if new.mode == "replay_adjusted" and overlay:
                entries = apply_overlay(entries, overlay)
            problems += judge_recipe(entries, new.source, self.view())
            if problems:
                more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
                raise ValueRefused("recipe refused: " + "; ".join(problems[:5]) + more)
            player = RecipePlayer(entries)
            # A resumed run must not fire entries it already replayed.
            while not player.done and self.ledger.has(
                f"replay-{player.entries[player.position].get('cmd_id')}-{player.entries[player.position].get('step')}"
            ):
                player.position += 1
                player.fired += 1
        self.freeze = new
        self.player = player
        self._write_status(force=True)
