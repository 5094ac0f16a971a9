"""One knob: ``HotcbActuator``, its value types, its state machine and value validation.

Validation lives here once: the kernel, the guard and the tool surface all call
``validate_value`` with an actuator description (``HotcbActuator.describe()``), so a value
refused in one place is refused in every place for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import Rejected
from ..records import KnobSpec


class ActuatorType(str, Enum):
    BOOL = "bool"
    FLOAT = "float"
    INT = "int"
    CHOICE = "choice"
    LOG_FLOAT = "log_float"
    TUPLE = "tuple"


class ActuatorState(str, Enum):
    INIT = "init"  # created, value not yet read from the run
    UNTOUCHED = "untouched"  # initialized, never changed
    UNVERIFIED = "unverified"  # changed, not yet confirmed by a read-back or metric
    VERIFIED = "verified"  # the run reports the new value
    DISABLED = "disabled"  # applying raised; no further changes


class ValueRefused(Rejected, ValueError):
    """A value that can never be applied to this knob (type, finiteness, bounds, choices)."""


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueRefused(f"{what} must be a number, got {value!r}") from None
        else:
            raise ValueRefused(f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueRefused(f"{what} must be finite, got {value!r}")
    return value


def _check_bounds(value: float, desc: dict[str, Any], what: str) -> None:
    lo, hi = desc.get("min"), desc.get("max")
    if lo is not None and value < lo:
        raise ValueRefused(f"{what}={value:g} is below its minimum {lo:g}")
    if hi is not None and value > hi:
        raise ValueRefused(f"{what}={value:g} is above its maximum {hi:g}")


# complexity: one branch per knob type, each with its own coercion and refusal
def validate_value(desc: dict[str, Any], value: Any) -> Any:  # noqa: C901
    """Coerce ``value`` to the knob's type and check it; raise ``ValueRefused`` with a reason."""
    key = desc.get("key", "value")
    kind = ActuatorType(desc.get("type", "float"))
    if kind is ActuatorType.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
            return value.lower() in ("true", "1", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueRefused(f"{key} must be true or false, got {value!r}")
    if kind is ActuatorType.CHOICE:
        choices = desc.get("choices") or []
        if value not in choices:
            raise ValueRefused(f"{key}={value!r} is not one of {choices}")
        return value
    if kind is ActuatorType.TUPLE:
        if not isinstance(value, (list, tuple)):
            raise ValueRefused(f"{key} must be a list of numbers, got {type(value).__name__}")
        cur = desc.get("value")
        if isinstance(cur, (list, tuple)) and len(cur) != len(value):
            raise ValueRefused(f"{key} needs {len(cur)} values, got {len(value)}")
        out = tuple(_finite_number(v, f"{key}[{i}]") for i, v in enumerate(value))
        for i, v in enumerate(out):
            _check_bounds(v, desc, f"{key}[{i}]")
        return out
    number = _finite_number(value, key)
    if kind is ActuatorType.INT:
        if number != int(number):
            raise ValueRefused(f"{key} must be an integer, got {value!r}")
        number = int(number)
    if kind is ActuatorType.LOG_FLOAT and number <= 0:
        raise ValueRefused(f"{key} must be positive (log scale), got {number:g}")
    _check_bounds(number, desc, key)
    return number


ApplyFn = Callable[[Any, dict[str, Any]], None]
ReadFn = Callable[[], Any]


@dataclass
class HotcbActuator:
    """A controllable parameter, mapped 1:1 to ``param_key``.

    ``apply_fn(value, env)`` changes the run; ``read_fn()`` reads the live value back (used to
    initialize and to verify). ``metric`` names a metric that reports the knob, when the run
    logs one; a matching report moves the knob to VERIFIED.
    """

    param_key: str
    type: ActuatorType = ActuatorType.FLOAT
    apply_fn: ApplyFn | None = None
    read_fn: ReadFn | None = None
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    label: str | None = None
    group: str = "custom"
    description: str = ""
    metric: str | None = None
    value: Any = None
    state: ActuatorState = ActuatorState.INIT
    last_change_step: int | None = None
    last_error: str | None = None
    # Optional per-knob overrides of the guard (None: the guard's defaults).
    max_rel_change: float | None = None
    cooldown_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # State the knob's value depends on (an lr scheduler): snapshotted and restored with the
    # registered state, so a rollback brings back the schedule along with the lr.
    companion: Any = None
    # Reads the value with its schedule taken out (an lr scheduler's base lr), so values from
    # different places in a schedule compare (None: nothing schedules this knob).
    base_fn: ReadFn | None = None

    def __post_init__(self) -> None:
        self.type = ActuatorType(self.type)
        if self.type is ActuatorType.LOG_FLOAT and self.min is not None and self.min <= 0:
            raise ValueError(f"{self.param_key}: log_float needs a positive minimum")

    # -- state machine -------------------------------------------------------------------
    def initialize(self) -> None:
        if self.read_fn is not None:
            try:
                self.value = _plain(self.read_fn())
            except Exception as e:  # a knob that cannot be read is still describable
                self.last_error = f"read failed: {e!r}"
        if self.state is ActuatorState.INIT:
            self.state = ActuatorState.UNTOUCHED

    def refresh(self) -> None:
        """Re-read the live value: a scheduler or the training code may have moved it since."""
        if self.read_fn is not None and self.state is not ActuatorState.DISABLED:
            try:
                v = self.read_fn()
                self.value = v if type(v) is float or type(v) is int else _plain(v)  # every step: the fast path
            except Exception as e:
                self.last_error = f"read failed: {e!r}"

    def schedule_base(self) -> float | None:
        """The knob's value without its schedule: what a scheduler multiplies, and what a change
        of the knob scales (None: no schedule, or it cannot be read)."""
        if self.base_fn is None:
            return None
        try:
            v = self.base_fn()
        except Exception:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            return None
        return float(v)

    @property
    def metric_key(self) -> str:
        """The name its value is echoed under in the metrics (``opt/lr``)."""
        return f"{self.group}/{self.param_key}"

    def spec(self) -> KnobSpec:
        """This knob's description as a typed record (``describe()`` is its JSON form)."""
        return KnobSpec(
            key=self.param_key, module=self.group, type=self.type.value, min=self.min, max=self.max,
            choices=self.choices, label=self.label or self.param_key, description=self.description,
            value=_plain(self.value), state=self.state.value, last_change_step=self.last_change_step,
            metric=self.metric, max_rel_change=self.max_rel_change, cooldown_steps=self.cooldown_steps,
            last_error=self.last_error)

    def describe(self) -> dict[str, Any]:
        return self.spec().to_json()

    def validate(self, value: Any) -> Any:
        return validate_value(self.describe(), value)

    def apply(self, value: Any, env: dict[str, Any], step: int | None) -> dict[str, Any]:
        """Validate and apply; returns ``{"old", "new"}``. Raises ValueRefused or the apply error."""
        if self.state is ActuatorState.DISABLED:
            raise ValueRefused(f"{self.param_key} is disabled ({self.last_error})")
        self.refresh()  # "old" is the live value, not the one cached at the last change
        new = self.validate(value)
        old = self.value
        if self.apply_fn is not None:
            try:
                self.apply_fn(new, env)
            except Exception as e:
                self.state = ActuatorState.DISABLED
                self.last_error = f"apply failed: {e!r}"
                raise
        self.value = new
        self.last_change_step = step
        self.state = ActuatorState.UNVERIFIED
        self.verify()
        return {"old": _plain(old), "new": _plain(new)}

    def verify(self, metrics: dict[str, Any] | None = None) -> bool:
        """Confirm the live value equals the set value, by metric report or read-back."""
        if self.state is not ActuatorState.UNVERIFIED:
            return self.state is ActuatorState.VERIFIED
        seen: Any = None
        if self.metric and metrics and self.metric in metrics:
            seen = metrics[self.metric]
        elif self.read_fn is not None and not self.metric:
            try:
                seen = self.read_fn()
            except Exception:
                return False
        if seen is not None and _same(seen, self.value):
            self.state = ActuatorState.VERIFIED
            return True
        return False


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        try:
            return v.item()
        except Exception:
            return v
    return v


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return a == b
