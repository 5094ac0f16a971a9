"""Rule thresholds, cooldowns and actions: defaults, overridable from a YAML or JSON file.

Plain data only: a rules file names metrics, numbers and knobs; nothing in it is evaluated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Action:
    """A relative knob change, resolved against the knob's live value when the rule fires."""

    knob: str = "lr"
    module: str | None = None  # None: whichever module publishes the knob (opt for lr)
    factor: float = 0.5

    @classmethod
    def parse(cls, d: dict[str, Any] | bool | None) -> Action | None:
        if d is None or d is False:
            return None  # "action: null" means alert only
        if not isinstance(d, dict):
            raise ValueError("action must be a mapping, null or false")
        return _build(cls, d, "action")


@dataclass(frozen=True)
class RuleConfig:
    enabled: bool = True
    metric: str | None = None        # the metric the rule watches (default per rule)
    window: int = 100                # points summarized by trend_math
    cooldown_steps: int = 200        # steps before the rule may fire again
    warmup_steps: int = 0            # no firing before this step
    plateau_rel: float = 0.01        # plateau: relative improvement across the window below this
    diverge_factor: float = 1.5      # divergence: value above best x factor and rising
    gap_growth: float = 0.1          # overfitting: val-train gap grew by this fraction of val
    spike_factor: float = 5.0        # gradient spike: a point above factor x the mean of the window before it
    rollback: bool = True            # non-finite: roll back to the last good snapshot when there is one
    max_actions: int = 0             # acts at most this many times a run (0: no limit)
    action: Action | None = field(default_factory=Action)


DEFAULT_RULES: dict[str, RuleConfig] = {
    # Plateau: a reduce-on-plateau that stops: each cut needs a full window of flat points after
    # the last, and three cuts a run at most (a long run must not be halved to the lr floor).
    "plateau": RuleConfig(metric="val_loss", window=100, cooldown_steps=200, warmup_steps=100, max_actions=3),
    # Divergence: hotcb.divergence's blow-up test (the kernel's rescue uses the same maths) over
    # the last ``window`` points. With the rescue on (auto modes) the rescue acts, in the kernel.
    "divergence": RuleConfig(metric="train_loss", window=60, cooldown_steps=30),
    "non_finite": RuleConfig(metric="train_loss", window=10, cooldown_steps=20),
    # Overfitting: the gap says "regularize", not "slow down", and the usual remedy (stop, keep the
    # best checkpoint) is no knob; doubling weight decay at every cooldown while the gap persists
    # compounds. Alert only unless configured (e.g. {knob: weight_decay, factor: 2}).
    "overfitting": RuleConfig(metric="val_loss", window=200, cooldown_steps=400, warmup_steps=200, action=None),
    # Gradient spike: one batch's event; a permanent lr cut per spike compounds (a healthy run near
    # convergence has heavy-tailed grad norms: the demo classifier shows 5x spikes). The damage a
    # spike does is divergence's and non_finite's to act on. Alert only unless configured.
    "grad_spike": RuleConfig(metric="grad_norm", window=50, cooldown_steps=100, action=None),
}


@dataclass(frozen=True)
class RulesConfig:
    train_metric: str = "train_loss"
    rules: dict[str, RuleConfig] = field(default_factory=lambda: dict(DEFAULT_RULES))
    # In the modes that act (auto, and the rules under ai_auto) enable the kernel's rescue
    # (hotcb/rescue.py): rollback + lr cut at the step of a blow-up, and the lr probe.
    rescue: bool = True
    probe: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RulesConfig:
        d = dict(d or {})
        unknown = set(d) - {"train_metric", "rules", "rescue", "probe"}
        if unknown:
            raise ValueError(f"rules config: unknown keys {sorted(unknown)}")
        rules = dict(DEFAULT_RULES)
        for name, over in (d.get("rules") or {}).items():
            if name not in DEFAULT_RULES:
                raise ValueError(f"rules config: unknown rule {name!r}; rules: {', '.join(DEFAULT_RULES)}")
            over = dict(over or {})
            if "action" in over:
                over["action"] = Action.parse(over["action"])
            rules[name] = replace(rules[name], **_checked(RuleConfig, over, f"rules.{name}"))
        for flag in ("rescue", "probe"):
            if not isinstance(d.get(flag, True), bool):
                raise ValueError(f"rules config: {flag} must be true or false")
        return cls(train_metric=str(d.get("train_metric", "train_loss")), rules=rules,
                   rescue=d.get("rescue", True), probe=d.get("probe", True))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> RulesConfig:
        if path is None:
            return cls()
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith(".json"):
            doc = json.loads(text)
        else:
            import yaml  # safe_load: data only, no tags, no code

            doc = yaml.safe_load(text)
        return cls.from_dict(doc)


def _checked(klass: type, d: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name: f for f in fields(klass)}
    out = {}
    for k, v in d.items():
        if k not in names:
            raise ValueError(f"{where}: unknown key {k!r}; keys: {', '.join(names)}")
        default = getattr(klass(), k) if k != "action" else None
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"{where}.{k}: expected true/false")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v < 0:
                raise ValueError(f"{where}.{k}: expected a non-negative number")
            v = type(default)(v)
        out[k] = v
    return out


def _build(klass: type[T], d: dict[str, Any], where: str) -> T:
    out = _checked(klass, d, where)
    if "factor" in out and not 0 < out["factor"] < 1e6:
        raise ValueError(f"{where}.factor must be positive")
    return klass(**out)
