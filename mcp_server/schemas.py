"""Pydantic models shared by several tools (each tool's own input/output lives beside it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from hotcb.ledger import DECISIONS
from hotcb.ops import CB, CB_OPS, CORE, CORE_OPS, KNOB_OPS, RESCUE, RESCUE_OPS, TUNE, TUNE_OPS

from .registry import StrictInput

# The kernel's decisions (hotcb.ledger.Decision, the one list), plus the two a tool reports
# before one arrives.
Decision = Literal[(*DECISIONS, "queued", "pending")]  # type: ignore[valid-type]


# The modules with a handler of their own; any other identifier names a knob group (opt, loss,
# a custom group), which the run declares: an open set, so ``module`` is one of these or a name.
HANDLER_MODULES = (CB, TUNE, CORE, RESCUE)
HandlerModule = Literal[HANDLER_MODULES]  # type: ignore[valid-type]
MODULE_OPS: dict[str, tuple[str, ...]] = {CB: CB_OPS, TUNE: TUNE_OPS, CORE: CORE_OPS, RESCUE: RESCUE_OPS}
# Every op any module takes: a closed set (which module takes which, the kernel judges).
OPS = tuple(dict.fromkeys((*KNOB_OPS, *CB_OPS, *CORE_OPS, *TUNE_OPS, *RESCUE_OPS)))
OpName = Literal[OPS]  # type: ignore[valid-type]


class Empty(StrictInput):
    pass


class Change(BaseModel):
    old: Any = None
    new: Any = None


class CallbackInfo(BaseModel):
    id: str
    enabled: bool
    state: str
    type: str | None = None
    target: dict[str, Any] | None = None
    source_hash: str | None = None
    params: dict[str, Any] = {}
    errors: int = 0
    last_error: str | None = None


# One ledger line as the tools return it: the fields of hotcb.records.LedgerRecord (the one
# definition of what a ledger entry holds), each optional, in the record's order, ``extra`` left
# out. Written out so type checkers see the fields; tests/mcp_server/test_record_models.py holds
# it to the record.
class LedgerEntry(BaseModel):
    seq: int | None = None
    cmd_id: str | None = None
    step: int | None = None
    epoch: int | None = None
    event: str | None = None
    module: str | None = None
    op: str | None = None
    id: str | None = None
    source: str | None = None
    actor: str | None = None
    reason: str | None = None
    decision: str | None = None
    params: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    error: str | None = None
    wall_time: float | None = None


# A knob as describe_actuators returns it: the fields of hotcb.records.KnobSpec (the one
# definition of what a knob is), in the order the tool has always listed them; the tool always
# knows a knob's state and says "" for no description, and adds what the guard and the locks make
# of the knob. Held to KnobSpec by tests/mcp_server/test_record_models.py.
class ActuatorInfo(BaseModel):
    key: str
    module: str
    type: str
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    value: Any = None
    state: str
    label: str | None = None
    description: str = ""
    last_change_step: int | None = None
    locked_by: str | None = None
    cooldown_until_step: int | None = None
    max_rel_change: float | None = Field(None, description="per-op limit for non-human sources (x1/f..xf)")


class OpSpec(StrictInput):
    """One operation on the run (the shape ``apply_op`` and ``schedule_op`` accept)."""

    module: HandlerModule | str = Field(
        description=f"a knob group (opt, loss or a custom one) or {', '.join(HANDLER_MODULES)}")
    op: OpName = Field(description=f"{'/'.join(KNOB_OPS)} for knobs; "
                                   + "; ".join(f"{'/'.join(ops)} for {m}" for m, ops in MODULE_OPS.items()))
    params: dict[str, Any] = Field(default_factory=dict, description='e.g. {"lr": 0.0005}')
    id: str | None = Field(None, description="callback id for cb ops")
    target: dict[str, str] | None = Field(
        None, description='cb load only: {"kind": "module"|"python_file", "path": ..., "symbol": ...}')
    reason: str | None = Field(None, description="why; recorded in the ledger")

    @model_validator(mode="before")
    @classmethod
    def _known_op(cls, data: Any) -> Any:
        # Said before the Literal's own error, in the words the kernel uses, with the ops that fit.
        if isinstance(data, dict) and isinstance(data.get("op"), str) and data["op"] not in OPS:
            module = data.get("module")
            known = MODULE_OPS.get(module, KNOB_OPS) if isinstance(module, str) else OPS
            raise ValueError(f"unknown {module} op {data['op']!r}; known: {', '.join(known)}")
        return data
