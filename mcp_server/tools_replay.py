"""Recipes and the future: replay (export, start, stop, status) and schedule_op."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from hotcb.freeze import FreezeState
from hotcb.jsonl import read_json
from hotcb.judge import judge_recipe
from hotcb.ops import CORE
from hotcb.recipe import export_recipe, validate_recipe, write_recipe
from hotcb.vocabulary import FreezeMode

from .registry import StrictInput, ToolError
from .schemas import OpSpec
from .tools_base import ToolGroup, acting_for, refusal_error

REPLAY_RECIPE = "hotcb.recipe.replay.jsonl"  # where a recipe given to `replay start` is stored
MAX_INLINE_RECIPE = 2000


class ReplayInput(StrictInput):
    action: Literal["export", "start", "stop", "status"]
    recipe: list[dict[str, Any]] | None = Field(
        None, description="start: recipe entries (as export returns them); default: this run's export")
    overlay: list[dict[str, Any]] | None = Field(
        None, description="start: patches; replaces the recipe's change of the same step+key, drop:true removes")
    reason: str | None = None


class ReplayOutput(BaseModel):
    action: str
    freeze_mode: str | None = None
    entries: int = 0
    recipe: list[dict[str, Any]] | None = None
    truncated: bool = False
    status: dict[str, Any] | None = None
    message: str | None = None


class ScheduleInput(StrictInput):
    action: Literal["add", "list", "move", "cancel"]
    op: OpSpec | None = Field(None, description="add: the op to apply later")
    at_step: int | None = Field(None, ge=0, description="add/move: the step at which it applies")
    at_event: str | None = Field(None, description="add: apply at the first kernel call with this event")
    cmd_id: str | None = Field(None, description="move/cancel: which scheduled op")
    reason: str | None = Field(None, description="move/cancel: why (agents must say why)")


class ScheduleOutput(BaseModel):
    action: str
    cmd_id: str | None = None
    at_step: int | None = None
    pending: list[dict[str, Any]] = []
    message: str | None = None


class ReplayTools(ToolGroup):
    def replay(self, args: ReplayInput) -> ReplayOutput:
        """Recipes: 'export' writes this run's applied changes as a replayable recipe and returns it;
        'start' replays a recipe (optionally with an overlay of patches) step for step, ignoring other
        knob changes meanwhile; 'stop' ends replay; 'status' reports progress."""
        if args.action == "export":
            entries = export_recipe(self.ledger_entries())
            write_recipe(self.run.recipe, entries)
            shown = entries[:MAX_INLINE_RECIPE]
            return ReplayOutput(action="export", entries=len(entries), recipe=shown,
                                truncated=len(shown) < len(entries), message=f"written to {self.run.recipe.name}")
        status = self.status()
        if args.action == "status":
            return ReplayOutput(action="status", freeze_mode=status.freeze_mode, status=status.replay)
        if args.action == "stop":
            if status.freeze_mode not in (FreezeMode.REPLAY, FreezeMode.REPLAY_ADJUSTED):
                # 'stop' ends a replay; it must not lift another freeze mode (prod) as a side effect.
                raise ToolError(f"no replay is running (freeze mode {status.freeze_mode!r}); nothing to stop")
            self._judge_freeze("unfreeze", "off", args.reason)
            state = FreezeState(mode="off", cmd_id=uuid.uuid4().hex, source=acting_for(self.source), actor=self.current_actor(),
                                reason=args.reason)
            state.save(self.run.freeze)
            return ReplayOutput(action="stop", freeze_mode="off", message="replay stops at the next safe point")
        entries = args.recipe if args.recipe is not None else export_recipe(self.ledger_entries())
        mode = (FreezeMode.REPLAY_ADJUSTED if args.overlay else FreezeMode.REPLAY).value
        self._judge_freeze("freeze", mode, args.reason)
        # The kernel validates the whole recipe again before it starts; asked here first so the
        # caller hears every problem now: structure, then what this caller may do at all.
        problems = validate_recipe(entries) + validate_recipe(args.overlay or [], "overlay entry", overlay=True)
        problems += judge_recipe([*entries, *(args.overlay or [])], acting_for(self.source), self.judge_view())
        if problems:
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ToolError("invalid recipe: " + "; ".join(problems[:5]) + more)
        write_recipe(self.run.file(REPLAY_RECIPE), entries)
        state = FreezeState(mode=mode, recipe_path=REPLAY_RECIPE, overlay=args.overlay or [],
                            cmd_id=uuid.uuid4().hex, source=acting_for(self.source), actor=self.current_actor(),
                            reason=args.reason)
        state.save(self.run.freeze)
        return ReplayOutput(action="start", freeze_mode=mode, entries=len(entries),
                            message="replay starts at the next safe point (entries already past fire late)")

    def _judge_freeze(self, op: str, mode: str, reason: str | None) -> None:
        """The judge's early word on the freeze a replay start/stop writes (the op path's check)."""
        refusal = self.check_op(OpSpec(module=CORE, op=op, params={"mode": mode}, reason=reason), self.source)
        if refusal is not None:
            raise refusal_error(refusal)

    def schedule_op(self, args: ScheduleInput) -> ScheduleOutput:
        """Ops at a future step: 'add' an op at_step (or at_event), 'list' pending ones, 'move' one to
        another step, 'cancel' one. Values are checked now and again by the guard when they fire;
        once applied they are part of the exported recipe."""
        if args.action == "list":
            doc = read_json(self.run.schedule, {}) or {}
            return ScheduleOutput(action="list", pending=doc.get("pending", []))
        if args.action == "add":
            if args.op is None or (args.at_step is None and args.at_event is None):
                raise ToolError("add needs op and at_step (or at_event)")
            out = self.submit(args.op, at_step=args.at_step, wait_s=0, extra={"at_event": args.at_event} if args.at_event else None)
            return ScheduleOutput(action="add", cmd_id=out["cmd_id"], at_step=args.at_step, message=out["message"])
        if not args.cmd_id:
            raise ToolError(f"{args.action} needs cmd_id (see action 'list')")
        if args.action == "move":
            if args.at_step is None:
                raise ToolError("move needs at_step")
            spec = OpSpec(module=CORE, op="reschedule", params={"cmd_id": args.cmd_id, "at_step": args.at_step},
                          reason=args.reason or f"schedule_op move {args.cmd_id} to step {args.at_step}")
        else:
            spec = OpSpec(module=CORE, op="cancel", params={"cmd_id": args.cmd_id},
                          reason=args.reason or f"schedule_op cancel {args.cmd_id}")
        out = self.submit(spec)
        return ScheduleOutput(action=args.action, cmd_id=args.cmd_id, at_step=args.at_step, message=out["decision"])
