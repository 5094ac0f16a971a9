"""The typed records that cross layers: a metric record, a ledger entry, a knob description.

Core builds them (``MetricsCollector``, ``Ledger``, ``HotcbActuator.describe``); the tool
surface, the dashboard and the agent parse run files into them instead of poking dicts. Each
has one JSON form, ``to_json()``/``from_json()``, with non-finite numbers going through
``hotcb.codec`` only, so the on-disk formats are the ones written before these types existed.
(The command is ``hotcb.ops.HotOp``.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeGuard

from .codec import decode_number, encode

# Modules whose set_params are not knob changes: callbacks' own params, core and tune commands.
NOT_KNOBS = ("cb", "core", "tune")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


MAX_STEP = 2**53  # past this a float step no longer names one step


def is_step(value: Any) -> TypeGuard[int | float]:
    """A step a reader can index by: a finite number in ``[0, 2**53]`` (not a bool); a line with
    any other step (``1e309``, NaN, negative, a string) is not a record."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return 0 <= value <= MAX_STEP  # NaN compares false: refused too


@dataclass(frozen=True)
class MetricRecord:
    """One line of ``hotcb.metrics.jsonl``: the metrics logged at a step (values as floats,
    non-finite ones included: divergence must be seen)."""

    step: int | float
    metrics: dict[str, float]
    epoch: int | None = None
    wall_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "wall_time": self.wall_time, "metrics": encode(dict(self.metrics))}

    @classmethod
    def from_json(cls, value: Any) -> MetricRecord | None:
        """The record a parsed line holds; None for anything that is not one (skipped by readers).
        A value that is not a number (nor a non-finite tag) is left out."""
        if not isinstance(value, dict) or not isinstance(value.get("metrics"), dict):
            return None
        step: Any = value.get("step")
        if not is_step(step):
            return None
        metrics = {}
        for name, raw in value["metrics"].items():
            v = decode_number(raw)
            if v is not None:
                metrics[name] = v
        return cls(step=step, metrics=metrics, epoch=_int(value.get("epoch")), wall_time=_float(value.get("wall_time")))


@dataclass
class LedgerRecord:
    """One decision of the kernel, one line of ``hotcb.applied.jsonl``.

    ``decision`` is a ``hotcb.ledger.Decision`` value; ``payload`` holds, for an applied knob
    change, ``{key: {"old": ..., "new": ...}}``. Keys a writer adds beyond these (a rescue's
    details) travel in ``extra`` and are written flat, as before."""

    seq: int | None = None  # the fields in the order the ledger has always written them
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
    params: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_time: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_json(cls, value: Any) -> LedgerRecord | None:
        if not isinstance(value, dict):
            return None
        known = {f.name for f in fields(cls)} - {"extra"}
        params, payload = value.get("params"), value.get("payload")
        return cls(
            cmd_id=_str(value.get("cmd_id")), decision=_str(value.get("decision")), seq=_int(value.get("seq")),
            step=_int(value.get("step")), epoch=_int(value.get("epoch")), event=_str(value.get("event")),
            module=_str(value.get("module")), op=_str(value.get("op")), id=_str(value.get("id")),
            source=_str(value.get("source")), actor=_str(value.get("actor")), reason=_str(value.get("reason")),
            params=params if isinstance(params, dict) else {}, payload=payload if isinstance(payload, dict) else {},
            error=_str(value.get("error")), wall_time=_float(value.get("wall_time")),
            extra={k: v for k, v in value.items() if k not in known})

    @property
    def is_knob_change(self) -> bool:
        """The one definition of "an applied knob change" (the page gets ``NOT_KNOBS`` from the API)."""
        return self.decision == "applied" and self.op == "set_params" and self.module not in NOT_KNOBS

    def knob_changes(self) -> dict[str, tuple[Any, Any]]:
        """``{key: (old, new)}`` when this entry is an applied knob change, else empty."""
        if not self.is_knob_change:
            return {}
        return {k: (v.get("old"), v.get("new")) if isinstance(v, dict) else (None, v) for k, v in self.payload.items()}


@dataclass(frozen=True)
class KnobSpec:
    """A knob's description as the kernel publishes it (``describe_actuators``, the status file):
    its type (an ``ActuatorType`` value: "float", "int", "bool", "choice", "tuple"), bounds, the
    value in force and its state."""

    key: str  # the fields in the order ``describe_actuators`` has always listed them
    module: str
    type: str
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    label: str | None = None
    description: str | None = None
    value: Any = None
    state: str | None = None
    last_change_step: int | None = None
    metric: str | None = None
    max_rel_change: float | None = None
    cooldown_steps: int | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> KnobSpec | None:
        if not isinstance(value, dict) or not isinstance(value.get("key"), str):
            return None
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in value.items() if k in known}
        data.setdefault("module", "")
        data.setdefault("type", "float")
        return cls(**data)
