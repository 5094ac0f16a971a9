"""Tools that read and change knobs: describe_actuators, apply_op, lock_knobs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from hotcb.guard import GuardConfig, knob_limits
from hotcb.ops import CORE

from .registry import StrictInput
from .schemas import ActuatorInfo, CallbackInfo, Change, Decision, Empty, OpSpec
from .tools_base import ToolGroup


class DescribeOutput(BaseModel):
    step: int | None = None
    liveness: str
    actuators: list[ActuatorInfo]
    callbacks: list[CallbackInfo]
    modules: list[str] = []
    freeze_mode: str | None = None
    guard: dict[str, Any] = Field(default_factory=dict, description="limits for non-human sources")


class EvidenceSpec(StrictInput):
    metric: str = Field(min_length=1, max_length=200)
    step: int = Field(ge=0)
    value: float | Literal["nan", "inf", "-inf"]


class ApplyOpInput(OpSpec):
    wait_s: float | None = Field(None, ge=0, le=120, description="seconds to wait for the kernel's decision")
    lock: bool = Field(False, description="humans only: lock the knobs against agents, rules and tune")
    evidence: EvidenceSpec | None = Field(
        None, description="the metric reading the op rests on; the kernel refuses one it never recorded")


class ApplyOpOutput(BaseModel):
    cmd_id: str
    decision: Decision
    step: int | None = None
    changes: dict[str, Change] = {}
    error: str | None = None
    liveness: str | None = None
    message: str | None = None


class LockInput(StrictInput):
    keys: list[str] = Field(min_length=1)
    lock: bool = True
    reason: str | None = None


class KnobTools(ToolGroup):
    def describe_actuators(self, args: Empty) -> DescribeOutput:
        """Every knob of the run (key, module, type, bounds or choices, live value, state, last change
        step, lock holder, cooldown) and the callbacks loaded. Call this before apply_op."""
        doc = self.actuators_doc()
        status = self.status()
        guard = GuardConfig.from_dict(doc.get("guard"))
        locks = doc.get("locks") or {}
        acts = []
        for a in doc.get("actuators", []):
            factor, cooldown = knob_limits(a, guard)  # what the guard will apply, overrides included
            last = a.get("last_change_step")
            acts.append(ActuatorInfo(
                **{k: a.get(k) for k in ("key", "module", "type", "min", "max", "choices", "value", "state",
                                         "label", "last_change_step")},
                description=a.get("description") or "",
                locked_by=(locks.get(a["key"]) or {}).get("actor") if a["key"] in locks else None,
                cooldown_until_step=(last + cooldown) if last is not None and cooldown else None,
                max_rel_change=factor,
            ))
        return DescribeOutput(
            step=status.step if status.step is not None else doc.get("step"), liveness=self.liveness()["state"], actuators=acts,
            callbacks=[CallbackInfo(**c) for c in doc.get("callbacks", [])], modules=doc.get("modules", []),
            freeze_mode=status.freeze_mode, guard=guard.to_dict(),
        )

    def apply_op(self, args: ApplyOpInput) -> ApplyOpOutput:
        """Change the running training job: set knobs (module opt/loss/custom, op set_params, params
        {key: value}), manage callbacks (module cb), or lifecycle (module core: pause, resume,
        checkpoint, rollback). The guard checks it first (finite, in bounds, at most the guard's ratio per op
        for agents, cooldown, locks, freeze); then it waits for the kernel's ledger decision and returns
        old and new values. Refusals come back as errors with the reason. Always give a reason."""
        spec = OpSpec(**args.model_dump(include=set(OpSpec.model_fields)))
        extra = {"evidence": args.evidence.model_dump()} if args.evidence is not None else None
        return ApplyOpOutput(**self.submit(spec, wait_s=args.wait_s, lock=args.lock, extra=extra))

    def lock_knobs(self, args: LockInput) -> ApplyOpOutput:
        """Humans only: lock (or unlock) knobs so agents, rules and tune cannot change them."""
        spec = OpSpec(module=CORE, op="lock" if args.lock else "unlock", params={"keys": args.keys},
                      reason=args.reason)
        return ApplyOpOutput(**self.submit(spec))
