"""The rule-based autopilot: the sensor layer (plateau, divergence, overfitting, non-finite loss,
gradient spikes) and its actions, taken only through the tool surface.

Each rule is a small function of trend_math summaries; a firing rule yields a ``Finding``. In
``auto`` mode the finding's action goes to ``apply_op`` (source ``rule``, actor the rule id,
with a reason); in ``suggest`` mode to ``propose_op``. Every finding is also an alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hotcb.mcp_server.registry import ToolError

from .actions import Unresolvable, resolve
from .config import Action, RuleConfig, RulesConfig
from .observe import Observer

log = logging.getLogger("hotcb.agent.rules")


@dataclass
class Finding:
    rule: str
    metric: str
    message: str
    severity: str = "warning"
    action: Action | None = None
    rollback: bool = False
    value: Any = None
    outcome: list[str] = field(default_factory=list)


def _last(s: dict[str, Any]) -> Any:
    return s.get("last")


def check_non_finite(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any]) -> Finding | None:
    metric = cfg.metric or "train_loss"
    s = obs.summary(metric, cfg.window)
    if not s or s.get("trend") != "non_finite":  # trend_math: the latest value is NaN/inf
        return None
    snaps = status.get("snapshots") or []
    return Finding(name, metric, f"{metric} is non-finite ({s.get('non_finite')} of the last {s['n']} points)",
                   severity="critical", action=cfg.action, rollback=cfg.rollback and bool(snaps), value="nan")


def check_divergence(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any]) -> Finding | None:
    metric = cfg.metric or "train_loss"
    s = obs.summary(metric, cfg.window, diverge_factor=cfg.diverge_factor)
    if not s or s.get("n", 0) < min(cfg.window, 8) or s.get("trend") != "diverging":
        return None
    return Finding(name, metric, f"{metric} is diverging: {_last(s)} vs best {s.get('min')} in the window",
                   severity="critical", action=cfg.action, value=_last(s))


def check_plateau(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any]) -> Finding | None:
    metric = cfg.metric or "val_loss"
    s = obs.summary(metric, cfg.window, plateau_rel=cfg.plateau_rel)
    if not s or s.get("n", 0) < cfg.window or not s.get("plateau"):
        return None  # a full window only: early noise is not a plateau
    return Finding(name, metric, f"{metric} plateaued: {s.get('rel_change')} relative change over {s['n']} points "
                   f"(threshold {cfg.plateau_rel})", action=cfg.action, value=_last(s))


def check_overfitting(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any],
                      train_metric: str = "train_loss") -> Finding | None:
    val = cfg.metric or "val_loss"
    vs, vv = obs.window(val, cfg.window)
    ts, tv = obs.window(train_metric, cfg.window)
    if len(vs) < cfg.window or len(ts) < cfg.window:
        return None
    sv = obs.summary(val, cfg.window)
    st = obs.summary(train_metric, cfg.window)
    if not sv or not st or sv.get("trend") in ("non_finite", "diverging"):
        return None
    # The gap's growth across the window, from the two summaries' halves: val getting worse (or
    # flat) while train improves, by more than gap_growth of val's level.
    val_rel, train_rel = sv.get("rel_change") or 0.0, st.get("rel_change") or 0.0
    growth = train_rel - val_rel  # both are "improvement" fractions (positive = better)
    if not (train_rel > 0 and val_rel <= 0 and growth >= cfg.gap_growth):
        return None
    return Finding(name, val, f"overfitting: {train_metric} improved {train_rel:.3g} while {val} changed "
                   f"{-val_rel:+.3g} over the window", action=cfg.action, value=sv.get("last"))


def check_grad_spike(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any]) -> Finding | None:
    metric = cfg.metric or "grad_norm"
    s = obs.summary(metric, cfg.window)
    if not s or s.get("n", 0) < 8 or not isinstance(s.get("last"), float) or not s.get("mean"):
        return None
    if s["last"] <= cfg.spike_factor * s["mean"]:
        return None
    return Finding(name, metric, f"{metric} spiked to {s['last']} (window mean {s['mean']}, factor {cfg.spike_factor})",
                   action=cfg.action, value=s["last"])


CHECKS = {
    "non_finite": check_non_finite,  # first: a NaN explains a divergence, not the other way round
    "divergence": check_divergence,
    "plateau": check_plateau,
    "overfitting": check_overfitting,
    "grad_spike": check_grad_spike,
}


class RulesAutopilot:
    """``RulesAutopilot(HotcbTools(run, source="rule")).tick()``: one pass of every rule.

    Modes: ``auto`` applies, ``suggest`` proposes; under the LLM, ``sense`` / ``sense_suggest``
    only raise alerts (which wake the model), except the non-finite safety net, which applies /
    proposes its rollback and lr cut at once."""

    def __init__(self, tools: Any, config: RulesConfig | None = None, mode: str = "auto"):
        if mode not in ("auto", "suggest", "sense", "sense_suggest"):
            raise ValueError("rules mode is auto, suggest, sense or sense_suggest")
        self.tools = tools
        self.config = config or RulesConfig()
        self.mode = mode
        self.obs = Observer(tools)
        self.fired_at: dict[str, int] = {}  # rule -> step it last fired (its cooldown)
        self.findings: list[Finding] = []

    def _metrics(self) -> list[str]:
        names = {self.config.train_metric}
        names |= {c.metric for c in self.config.rules.values() if c.enabled and c.metric}
        return sorted(names)

    def tick(self) -> list[Finding]:
        """Evaluate every enabled rule once; act on those that fire. Never raises."""
        try:
            return self._tick()
        except Exception as e:  # the autopilot must never take anything down with it
            log.warning("rules tick failed: %s: %s", type(e).__name__, e)
            return []

    def _tick(self) -> list[Finding]:
        window = max(c.window for c in self.config.rules.values())
        self.obs.refresh(self._metrics(), window)
        step = self.obs.step
        if step is None:
            return []
        fired: list[Finding] = []
        for name, check in CHECKS.items():
            cfg = self.config.rules.get(name)
            if cfg is None or not cfg.enabled or step < cfg.warmup_steps:
                continue
            last = self.fired_at.get(name)
            if last is not None and step < last + cfg.cooldown_steps:
                continue
            kw = {"train_metric": self.config.train_metric} if name == "overfitting" else {}
            f = check(name, cfg, self.obs, self.obs.status, **kw)
            if f is None:
                continue
            prev = self.fired_at.get(name)
            self.fired_at[name] = step
            try:
                self.act(f, step)
            except ConnectionError:  # the tools (an MCP server) are unreachable: fire again when they answer
                if prev is None:
                    self.fired_at.pop(name, None)
                else:
                    self.fired_at[name] = prev
                raise
            fired.append(f)
            if name in ("non_finite", "divergence"):
                break  # one emergency action per tick; the others re-evaluate after it lands
        self.findings.extend(fired)
        return fired

    # ------------------------------------------------------------------ acting
    def _call(self, f: Finding, name: str, args: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.tools.call(name, args, actor=f.rule)
        except ToolError as e:
            f.outcome.append(f"{name} refused: {e}")
            return None

    def act(self, f: Finding, step: int) -> None:
        # "sense" (under the LLM): findings become alerts that wake the model; only the NaN
        # safety net still acts at once, since a non-finite run cannot wait for an API call.
        if self.mode.startswith("sense") and f.rule != "non_finite":
            f.outcome.append("alert only: the LLM autopilot decides")
        else:
            self._act(f)
        try:
            self.tools.record_alert(rule=f.rule, kind=f.rule, metric=f.metric, severity=f.severity, step=step,
                                    message=f"{f.message}" + (f" -> {'; '.join(f.outcome)}" if f.outcome else ""),
                                    value=f.value)
        except Exception as e:  # noqa: BLE001 - an unwritable alert must not stop the action
            log.warning("could not record alert: %s", e)

    def _act(self, f: Finding) -> None:
        if f.rollback:
            reason = f"rule {f.rule}: {f.message}; roll back to the last good snapshot"
            op = {"module": "core", "op": "rollback", "params": {}, "reason": reason}
            self._do(f, op, reason)
        if f.action is not None:
            try:
                op = resolve(f.action, self.tools.call("describe_actuators", {}))
            except (Unresolvable, ToolError) as e:
                f.outcome.append(f"no action: {e}")
            else:
                verb = "halve" if f.action.factor == 0.5 else f"x{f.action.factor:g}"
                reason = f"rule {f.rule}: {f.message}; {verb} {f.action.knob}"
                self._do(f, {**op, "reason": reason}, reason)

    def _do(self, f: Finding, op: dict[str, Any], reason: str) -> None:
        if self.mode in ("suggest", "sense_suggest"):
            res = self._call(f, "propose_op", {"op": op, "reason": reason})
            if res:
                f.outcome.append(f"proposed {op['module']}.{op['op']} {op.get('params')} ({res['proposal_id']})")
            return
        res = self._call(f, "apply_op", op)
        if res:
            f.outcome.append(f"{op['module']}.{op['op']} {op.get('params') or ''} {res['decision']}")
