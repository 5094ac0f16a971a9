"""The tune recipe: what online HPO may touch and how it judges a change.

Pure data and validation, no optuna: the CLI validates a recipe before writing the command,
and the kernel-side module validates it again when the command arrives (same function), so
both refuse a bad recipe with the same reason.

A recipe (YAML or JSON; every key optional)::

    objective: val_loss          # default: val_loss if the run reports it, else train_loss
    direction: minimize          # or maximize
    sampler: tpe                 # or random
    seed: 0
    horizon: 50                  # steps in each scored segment (before and after a change)
    settle: 10                   # steps after a change that are not scored (transient)
    cooldown: 0                  # extra steps between the end of one trial and the next
    max_rel_step: 2.0            # a trial moves a knob at most x0.5 .. x2 (the guard may be stricter)
    accept_z: 1.5                # keep a change only if it beats the trend by z standard errors
    actuators:                   # default: every FLOAT / LOG_FLOAT knob with bounds
      lr: {min: 1.0e-4, max: 0.3, scale: log, max_rel_step: 1.5}
    risk:
      abort_worsening: 0.5       # roll back early when the segment is 50% worse than the trend
      abort_z: 3.0               # ... or, from a quarter horizon on, worse than it by 3 standard errors
      max_trials: null
      max_consecutive_rollbacks: null
      restore_weights: worse     # a rejected trial's weights go back: worse (when it left the network
                                 # worse than it found it), rejected (always) or never (knobs only)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..actuators.actuator import ValueRefused
from ..guard import knob_limits
from ..vocabulary import TuneMode

MODES = TuneMode.values()
SAMPLERS = ("tpe", "random")
DIRECTIONS = ("minimize", "maximize")
SEARCHABLE_TYPES = ("float", "log_float")
DEFAULT_OBJECTIVES = ("val_loss", "train_loss")  # first one the run reports wins
RESTORE_WEIGHTS = ("worse", "rejected", "never")


@dataclass
class KnobRecipe:
    """Per-knob limits; ``None`` means: take it from the actuator (bounds) or the recipe."""

    min: float | None = None
    max: float | None = None
    scale: str | None = None  # "log" | "linear"
    max_rel_step: float | None = None


@dataclass
class RiskLimits:
    abort_worsening: float | None = 0.5
    abort_z: float | None = 3.0
    max_trials: int | None = None
    max_consecutive_rollbacks: int | None = None
    restore_weights: str = "worse"


@dataclass
class TuneRecipe:
    objective: str | None = None
    direction: str = "minimize"
    sampler: str = "tpe"
    seed: int | None = None
    n_startup_trials: int = 5
    horizon: int = 50
    settle: int | None = None  # None: horizon // 5
    cooldown: int = 0
    max_rel_step: float = 2.0
    accept_z: float = 1.5
    min_points: int = 5
    suggestion_ttl: int | None = None  # None: 4 * horizon
    study_name: str = "hotcb-tune"
    actuators: dict[str, KnobRecipe] | None = None
    risk: RiskLimits = field(default_factory=RiskLimits)

    @property
    def settle_steps(self) -> int:
        return self.horizon // 5 if self.settle is None else self.settle

    @property
    def ttl_steps(self) -> int:
        return 4 * self.horizon if self.suggestion_ttl is None else self.suggestion_ttl

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.actuators is not None:
            d["actuators"] = {k: {n: v for n, v in asdict(r).items() if v is not None} for k, r in self.actuators.items()}
        return d


def _num(d: dict[str, Any], key: str, *, lo: float | None = None, integer: bool = False,
         nullable: bool = False, strict_lo: bool = False) -> Any:
    v = d[key]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ValueRefused(f"tune recipe: {key} must be a finite number, got {v!r}")
    if integer and float(v) != int(v):
        raise ValueRefused(f"tune recipe: {key} must be an integer, got {v!r}")
    if lo is not None and (v <= lo if strict_lo else v < lo):
        raise ValueRefused(f"tune recipe: {key} must be {'>' if strict_lo else '>='} {lo:g}, got {v!r}")
    return int(v) if integer else float(v)


def _knob(key: str, spec: Any) -> KnobRecipe:
    if spec is None:
        return KnobRecipe()
    if not isinstance(spec, dict):
        raise ValueRefused(f"tune recipe: actuators.{key} must be a mapping (min, max, scale, max_rel_step)")
    unknown = set(spec) - {"min", "max", "scale", "max_rel_step"}
    if unknown:
        raise ValueRefused(f"tune recipe: actuators.{key} has unknown keys {sorted(unknown)}")
    r = KnobRecipe()
    for name in ("min", "max"):
        if spec.get(name) is not None:
            setattr(r, name, _num(spec, name))
    if spec.get("max_rel_step") is not None:
        r.max_rel_step = _num(spec, "max_rel_step", lo=1.0, strict_lo=True)
    if spec.get("scale") is not None:
        if spec["scale"] not in ("log", "linear"):
            raise ValueRefused(f"tune recipe: actuators.{key}.scale must be 'log' or 'linear'")
        r.scale = spec["scale"]
    if r.min is not None and r.max is not None and r.min >= r.max:
        raise ValueRefused(f"tune recipe: actuators.{key} needs min < max")
    if r.scale == "log" and r.min is not None and r.min <= 0:
        raise ValueRefused(f"tune recipe: actuators.{key} on a log scale needs min > 0")
    return r


_NUMBERS = (
    ("seed", {"integer": True, "nullable": True}), ("n_startup_trials", {"integer": True, "lo": 0}),
    ("horizon", {"integer": True, "lo": 2}), ("settle", {"integer": True, "lo": 0, "nullable": True}),
    ("cooldown", {"integer": True, "lo": 0}), ("max_rel_step", {"lo": 1.0, "strict_lo": True}),
    ("accept_z", {"lo": 0.0}), ("min_points", {"integer": True, "lo": 2}),
    ("suggestion_ttl", {"integer": True, "lo": 1, "nullable": True}),
)


def parse_recipe(raw: Any) -> TuneRecipe:
    """Validate a recipe mapping (``None`` = all defaults); raise ``ValueRefused`` with the reason."""
    if raw is None:
        return TuneRecipe()
    if not isinstance(raw, dict):
        raise ValueRefused(f"tune recipe must be a mapping, got {type(raw).__name__}")
    known = set(TuneRecipe.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueRefused(f"tune recipe: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    r = TuneRecipe()
    raw = _objective(raw, r)
    r.sampler = _choice(raw, "sampler", "tpe", SAMPLERS)
    for key, kw in _NUMBERS:
        if key in raw:
            setattr(r, key, _num(raw, key, **kw))
    if "study_name" in raw:
        if not isinstance(raw["study_name"], str) or not raw["study_name"]:
            raise ValueRefused("tune recipe: study_name must be a non-empty string")
        r.study_name = raw["study_name"]
    acts = raw.get("actuators")
    if acts is not None:
        r.actuators = _actuators(acts)
    if raw.get("risk") is not None:
        _risk(raw["risk"], r.risk)
    return r


def _choice(raw: dict[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(key, default)
    if value not in allowed:
        raise ValueRefused(f"tune recipe: {key} must be one of {allowed}")
    return value


def _objective(raw: dict[str, Any], r: TuneRecipe) -> dict[str, Any]:
    """Sets objective and direction; ``objective: {metric, direction}`` is the long form."""
    obj = raw.get("objective")
    if isinstance(obj, dict):
        raw = {**raw, "direction": obj.get("direction", raw.get("direction", "minimize"))}
        obj = obj.get("metric")
    if obj is not None and (not isinstance(obj, str) or not obj):
        raise ValueRefused("tune recipe: objective must be a metric name")
    r.objective = obj
    r.direction = _choice(raw, "direction", "minimize", DIRECTIONS)
    return raw


def _actuators(acts: Any) -> dict[str, KnobRecipe]:
    if isinstance(acts, list):
        acts = {k: None for k in acts}
    if not isinstance(acts, dict) or not acts or not all(isinstance(k, str) for k in acts):
        raise ValueRefused("tune recipe: actuators must be a non-empty list of keys or a mapping key -> limits")
    return {k: _knob(k, v) for k, v in acts.items()}


def _risk(risk: Any, out: RiskLimits) -> None:
    if not isinstance(risk, dict) or set(risk) - set(RiskLimits.__dataclass_fields__):
        raise ValueRefused(f"tune recipe: risk keys are {sorted(RiskLimits.__dataclass_fields__)}")
    for key in ("abort_worsening", "abort_z"):
        if key in risk:
            setattr(out, key, _num(risk, key, lo=0.0, strict_lo=True, nullable=True))
    for key in ("max_trials", "max_consecutive_rollbacks"):
        if key in risk:
            setattr(out, key, _num(risk, key, integer=True, lo=1, nullable=True))
    if "restore_weights" in risk:
        if risk["restore_weights"] not in RESTORE_WEIGHTS:
            raise ValueRefused(f"tune recipe: risk.restore_weights must be one of {RESTORE_WEIGHTS}")
        out.restore_weights = risk["restore_weights"]


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON recipe file into a mapping (validated by ``parse_recipe``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueRefused(f"cannot read tune recipe {path}: {e}") from None
    raw = {} if raw is None else raw
    parse_recipe(raw)
    return raw


# ---------------------------------------------------------------------------- search space
@dataclass
class KnobSpace:
    """One searchable knob, resolved against its live actuator and the guard."""

    key: str
    group: str
    lo: float
    hi: float
    log: bool
    max_step: float  # the largest ratio one trial may apply (<= the guard's limit)
    cooldown: int  # the guard's per-knob cooldown (steps)

    def window(self, value: float) -> tuple[float, float] | None:
        """The values one trial may try from ``value``: within bounds and ``max_step``.

        From 0 (a knob that is "off", e.g. weight_decay) there is no ratio to step by: a trial
        tries the bottom of the range, ``lo .. lo * max_step``, which needs ``lo > 0`` (on either
        scale). Whether tune may then put it back to 0 is the guard's call (``TuneModule``).

        A knob kept in [0, 1] and above 0.5 (momentum, an EMA decay) acts through ``1 - value``
        (momentum 0.9 -> 0.45 multiplies SGD's effective step by 5.5): it steps by the ratio on
        that complement, 0.9 -> 0.8 .. 0.95, which is also inside the guard's ratio on the value."""
        # A hair inside the step so float rounding never trips the guard's ratio check.
        s = 1.0 + (self.max_step - 1.0) * 0.999
        if 0.0 <= self.lo and self.hi <= 1.0 and 0.5 < value < 1.0 and not self.log:
            lo, hi = max(self.lo, 1.0 - (1.0 - value) * s), min(self.hi, 1.0 - (1.0 - value) / s)
        elif value > 0:
            lo, hi = max(self.lo, value / s), min(self.hi, value * s)
        elif value < 0:
            lo, hi = max(self.lo, value * s), min(self.hi, value / s)
        elif self.lo > 0:
            lo, hi = self.lo, min(self.hi, self.lo * s)
        else:  # 0 inside the range: no bottom to start from
            return None
        if self.log:
            lo = max(lo, self.lo) if self.lo > 0 else lo
        if not (lo < hi) or (self.log and lo <= 0):
            return None
        return lo, hi


def resolve_space(recipe: TuneRecipe, descs: list[dict[str, Any]], guard: Any) -> tuple[list[KnobSpace], list[str]]:
    """Searchable knobs and, for the recipe's knobs that cannot be searched, the reasons."""
    by_key = {d["key"]: d for d in descs}
    wanted = recipe.actuators if recipe.actuators is not None else {
        d["key"]: KnobRecipe() for d in descs
        if d.get("type") in SEARCHABLE_TYPES and d.get("min") is not None and d.get("max") is not None
    }
    out, problems = [], []
    for key, kr in wanted.items():
        d = by_key.get(key)
        if d is None:
            problems.append(f"{key}: no such knob")
            continue
        if d.get("type") not in SEARCHABLE_TYPES:
            problems.append(f"{key}: type {d.get('type')} is not searchable (float, log_float)")
            continue
        lo = max(x for x in (kr.min, d.get("min")) if x is not None) if (kr.min, d.get("min")) != (None, None) else None
        hi = min(x for x in (kr.max, d.get("max")) if x is not None) if (kr.max, d.get("max")) != (None, None) else None
        if lo is None or hi is None or not lo < hi:
            problems.append(f"{key}: needs finite bounds (min < max) from the actuator or the recipe")
            continue
        log = (kr.scale or ("log" if d.get("type") == "log_float" else "linear")) == "log"
        if log and lo <= 0:
            problems.append(f"{key}: a log scale needs min > 0")
            continue
        factor, cooldown = knob_limits(d, guard)  # the guard's own resolution (per_knob, knob, default)
        step = min(x for x in (kr.max_rel_step, recipe.max_rel_step, factor) if x is not None)
        out.append(KnobSpace(key, d.get("module", "opt"), float(lo), float(hi), log, step, int(cooldown or 0)))
    return out, problems
