"""The guard: the safety rules every knob change must pass, whoever asks.

Written once, here in core. The kernel enforces it on every command at apply time (so a raw
line appended by hand cannot bypass it); the tool surface evaluates the same function first
so a caller gets an immediate, clear refusal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .actuators.actuator import ActuatorType, ValueRefused, validate_value
from .vocabulary import Source

# Sources whose changes are a person's (or a person's recorded) intent: no rate limits.
TRUSTED_SOURCES = (Source.HUMAN.value, Source.YAML.value, Source.REPLAY.value)


class GuardRefusal(ValueRefused):
    """A change the guard refuses (it would be allowed to a different caller or later)."""


@dataclass
class GuardConfig:
    """Limits for non-human sources (agent, rule, tune).

    ``max_rel_change`` = 2.0 allows a knob to move within x0.5 .. x2 of its value per op.
    ``cooldown_steps`` is the minimum number of steps between two changes of one knob.
    ``per_knob`` overrides either per knob key, and ``allow_zero: true`` there lets a knob be set
    to exactly 0 (e.g. weight decay "off", a rollback to 0) while every other change keeps the
    ratio limit. A change *from* 0 has no ratio and is limited by the knob's bounds only.
    """

    max_rel_change: float = 2.0
    cooldown_steps: int = 10
    trusted_sources: tuple[str, ...] = TRUSTED_SOURCES
    per_knob: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trusted_sources"] = list(self.trusted_sources)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GuardConfig:
        if not d:
            return cls()
        return cls(
            max_rel_change=float(d.get("max_rel_change", 2.0)),
            cooldown_steps=int(d.get("cooldown_steps", 10)),
            trusted_sources=tuple(d.get("trusted_sources", TRUSTED_SOURCES)),
            per_knob=dict(d.get("per_knob", {})),
        )


def ratio_text(config: GuardConfig, factor: float | None = None) -> str:
    """The per-op limit as people read it ("x0.5..x2"), from the config in force, so prompts and
    instructions never state a stale number."""
    f = factor or config.max_rel_change
    return f"x{1 / f:.3g}..x{f:g}" if f else "no ratio limit"


def knob_limits(desc: dict[str, Any], config: GuardConfig) -> tuple[float | None, int]:
    """The per-op ratio limit and the cooldown that bind non-human changes of one knob: the
    guard's ``per_knob`` override first, then the knob's own, then the guard's defaults."""
    over = config.per_knob.get(desc.get("key", "?"), {})
    factor = over.get("max_rel_change", desc.get("max_rel_change") or config.max_rel_change)
    cooldown = over.get("cooldown_steps", desc.get("cooldown_steps"))
    return factor, config.cooldown_steps if cooldown is None else cooldown


def check_knob_change(
    desc: dict[str, Any],
    value: Any,
    *,
    source: str,
    step: int | None,
    lock: dict[str, Any] | None,
    config: GuardConfig,
) -> Any:
    """Return the coerced value if the change is allowed; raise ValueRefused/GuardRefusal."""
    key = desc.get("key", "?")
    new = validate_value(desc, value)
    if lock and source != Source.HUMAN:
        who = lock.get("actor") or "a human"
        raise GuardRefusal(f"{key} is locked by {who}; only a human can change it until it is unlocked")
    if source in config.trusted_sources:
        return new
    over = config.per_knob.get(key, {})
    factor, cooldown = knob_limits(desc, config)
    old = desc.get("value")
    kind = ActuatorType(desc.get("type", "float"))
    numeric = kind in (ActuatorType.FLOAT, ActuatorType.LOG_FLOAT, ActuatorType.INT)
    to_zero_allowed = float(new) == 0 and bool(over.get("allow_zero", desc.get("allow_zero"))) if numeric else False
    if (numeric and isinstance(old, (int, float)) and not isinstance(old, bool) and old != 0 and factor
            and not to_zero_allowed):
        ratio = float(new) / float(old)
        if ratio <= 0 or ratio > factor or ratio < 1.0 / factor:
            raise GuardRefusal(
                f"{key} {old:g} -> {float(new):g} is a x{ratio:.3g} change; {source} changes are limited "
                f"to x{1 / factor:.3g}..x{factor:g} per op"
            )
    last = desc.get("last_change_step")
    if cooldown and last is not None and step is not None and 0 <= step - last < cooldown:
        raise GuardRefusal(
            f"{key} changed at step {last}; {source} changes must wait {cooldown} steps (until step {last + cooldown})"
        )
    return new
