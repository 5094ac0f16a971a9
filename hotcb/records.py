"""The typed records that cross layers: a metric record, a ledger entry, a knob description, the
kernel's status.

Core builds them (``MetricsCollector``, ``Ledger``, ``HotcbActuator.describe``); the tool
surface, the dashboard and the agent parse run files into them instead of poking dicts. Each
has one JSON form, ``to_json()``/``from_json()``, with non-finite numbers going through
``hotcb.codec`` only, so the on-disk formats are the ones written before these types existed.
The status file is ``StatusRecord``. (The command is ``hotcb.ops.HotOp``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeGuard, TypeVar

from .codec import decode_number, encode, json_number
from .divergence import verdict_for_judge

T = TypeVar("T")

# Modules whose set_params are not knob changes: callbacks' own params, core and tune commands.
NOT_KNOBS = ("cb", "core", "tune")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
        return cls(step=step, metrics=metrics, epoch=_int(value.get("epoch")), wall_time=json_number(value.get("wall_time")))


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
            error=_str(value.get("error")), wall_time=json_number(value.get("wall_time")),
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


class _Bad(ValueError):
    """A status field whose value is not of its kind (the reader drops it and says why)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any) -> int:
    """A count, step, rank or pid: a whole number in ``[0, 2**53]`` (``5.0`` reads as 5)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STEP:
        return value
    raise _Bad(f"not a whole number in [0, 2**53]: {_show(value)}")


def _finite(value: Any) -> float:
    v = decode_number(value) if not isinstance(value, bool) else None
    if v is None or not math.isfinite(v):
        raise _Bad(f"not a finite number: {_show(value)}")
    return v


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Bad(f"not true/false: {_show(value)}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Bad(f"not a string: {_show(value)}")


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _Bad(f"not an object: {_show(value)}")


class _Fields:
    """Reads the fields of one JSON object, each by its kind; a value of the wrong kind is left
    at its default and the reason kept in ``problems`` (a hostile file never stops a reader)."""

    def __init__(self, doc: dict[str, Any], prefix: str = ""):
        self.doc = doc
        self.prefix = prefix
        self.problems: list[str] = []

    def get(self, key: str, kind: Callable[[Any], T], default: T) -> T:
        value = self.doc.get(key)
        if value is None:
            return default  # absent or null: an older writer, or nothing to say
        try:
            return kind(value)
        except _Bad as e:
            self.problems.append(f"{self.prefix}{key}: {e}")
            return default

    def steps(self, key: str) -> list[int]:
        values: list[Any] = self.get(key, _list, [])
        good = [v for v in values if _is_whole(v)]
        if len(good) != len(values):
            self.problems.append(f"{self.prefix}{key}: {len(values) - len(good)} value(s) not steps, left out")
        return [int(v) for v in good]


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    raise _Bad(f"not a list: {_show(value)}")


def _is_whole(value: Any) -> bool:
    try:
        _whole(value)
    except _Bad:
        return False
    return True


@dataclass(frozen=True)
class RescueStatus:
    """The rescue section of the status file (``Rescue.status``): whether it is on, the loss
    detector's verdict (a ``hotcb.divergence.Verdict`` value), the loss's level and noise, the
    rollbacks so far, the lr probe's and descent's states and the last thing it did."""

    enabled: bool = False  # the fields in the order the status file has always held them
    verdict: str | None = None
    level: float | None = None
    noise: float | None = None
    rescues: int = 0
    probe: str | None = None
    descent: str | None = None
    last_action: str | None = None
    can_roll_back: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> tuple[RescueStatus, list[str]]:
        """The section and the problems found reading it (fields left at their defaults)."""
        f = _Fields(doc, "rescue.")
        rec = cls(enabled=f.get("enabled", _flag, False), verdict=f.get("verdict", _text, None),
                  level=f.get("level", _finite, None), noise=f.get("noise", _finite, None),
                  rescues=f.get("rescues", _whole, 0), probe=f.get("probe", _text, None),
                  descent=f.get("descent", _text, None), last_action=f.get("last_action", _text, None),
                  can_roll_back=f.get("can_roll_back", _flag, False))
        return rec, f.problems


@dataclass(frozen=True)
class StatusRecord:
    """``hotcb.status.json``: the kernel's heartbeat (``HotKernel.status``), read by every
    controller (the tool surface, ``hotcb status``, liveness, the judge's early view).

    ``from_json`` never raises: the run directory is hostile input, so a field of the wrong kind
    (``"step": 1e309``, a string where a count goes) is left at its default and named in
    ``problems``; keys this reader does not know travel in ``extra``. ``to_json`` writes the
    fields in the order the kernel writes them (``problems`` is the reader's, never written)."""

    pid: int | None = None
    host: str | None = None
    session: str | None = None
    step: int | None = None
    epoch: int | None = None
    wall_time: float | None = None
    started_at: float | None = None
    paused: bool = False
    stop_requested: bool = False
    closed: bool = False
    freeze_mode: str | None = None
    freeze_source: str | None = None
    steps_per_s: float | None = None
    replay: dict[str, Any] | None = None  # the replay player's progress (``RecipePlayer.status``)
    scheduled: int = 0
    commands_file_resets: int = 0
    internal_errors: int = 0
    last_internal_error: str | None = None
    max_steps: int | None = None
    snapshots: list[int] = field(default_factory=list)  # steps of the in-memory snapshots
    rank: int = 0
    world_size: int = 1
    heartbeat_interval_s: float | None = None
    rescue: RescueStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "problems")}
        out["snapshots"] = list(self.snapshots)
        out["rescue"] = self.rescue.to_json() if self.rescue else None
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @property
    def run_verdict(self) -> str | None:
        """The rescue's verdict as the kernel published it, as the judge may weigh it."""
        return verdict_for_judge(self.rescue.verdict if self.rescue else None, self.world_size)

    @classmethod
    def from_json(cls, value: Any) -> StatusRecord:
        if value is None:
            return cls()  # no status file yet: no training process has started
        if not isinstance(value, dict):
            return cls(problems=[f"status: not an object: {_show(value)}"])
        f = _Fields(value)
        rescue_doc = f.get("rescue", _object, None)
        rescue, rescue_problems = RescueStatus.parse(rescue_doc) if rescue_doc is not None else (None, [])
        known = {x.name for x in fields(cls)} - {"extra", "problems"}
        rec = cls(
            pid=f.get("pid", _whole, None), host=f.get("host", _text, None), session=f.get("session", _text, None),
            step=f.get("step", _whole, None), epoch=f.get("epoch", _whole, None),
            wall_time=f.get("wall_time", _finite, None), started_at=f.get("started_at", _finite, None),
            paused=f.get("paused", _flag, False), stop_requested=f.get("stop_requested", _flag, False),
            closed=f.get("closed", _flag, False), freeze_mode=f.get("freeze_mode", _text, None),
            freeze_source=f.get("freeze_source", _text, None), steps_per_s=f.get("steps_per_s", _finite, None),
            replay=f.get("replay", _object, None), scheduled=f.get("scheduled", _whole, 0),
            commands_file_resets=f.get("commands_file_resets", _whole, 0),
            internal_errors=f.get("internal_errors", _whole, 0),
            last_internal_error=f.get("last_internal_error", _text, None), max_steps=f.get("max_steps", _whole, None),
            snapshots=f.steps("snapshots"), rank=f.get("rank", _whole, 0), world_size=f.get("world_size", _whole, 1),
            heartbeat_interval_s=f.get("heartbeat_interval_s", _finite, None), rescue=rescue,
            extra={k: v for k, v in value.items() if k not in known})
        return replace(rec, problems=f.problems + rescue_problems)
