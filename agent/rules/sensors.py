"""The rule-based autopilot: the sensor layer (plateau, divergence, overfitting, non-finite loss,
gradient spikes) and its actions, taken only through the tool surface.

Each rule is a small function of trend_math summaries; a firing rule yields a ``Finding``. In
``auto`` mode the finding's action goes to ``apply_op`` (source ``rule``, actor the rule id,
with a reason); in ``suggest`` mode to ``propose_op``. Every finding is also an alert.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from hotcb.agent.rules.actions import Unresolvable, resolve
from hotcb.agent.rules.config import Action, RuleConfig, RulesConfig
from hotcb.agent.rules.finish import Finisher
from hotcb.agent.rules.observe import Observer
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools_knobs import ApplyOpInput, ApplyOpOutput
from hotcb.mcp_server.tools_proposals import Proposal, ProposeInput
from hotcb.mcp_server.tools_protocol import AutopilotTools, tool_input

from hotcb import trend as trend_math
from hotcb.codec import tag
from hotcb.divergence import LossDetector, Verdict
from hotcb.recent_record import PROTECTIVE_RULES

log = logging.getLogger("hotcb.agent.rules.sensors")


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
    landed: int = 0      # ops applied (or proposed)
    refused: int = 0     # ops refused (guard, lock, freeze, kernel)
    refused_knobs: set[tuple[str, str]] = field(default_factory=set)
    retry_at: int | None = None  # all refused, a knob cooling down: the step the rule may retry


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
    """The window's points replayed through ``hotcb.divergence`` (the kernel's rescue uses the same
    detector every step): fires when the newest points are a blow-up on the run's own scale, i.e.
    ``persist`` points in a row far above the level and noise the window itself measured."""
    metric = cfg.metric or "train_loss"
    _, values = obs.window(metric, cfg.window)
    if len(values) < min(cfg.window, 8):
        return None
    det = LossDetector()
    verdicts = [det.update(v) for v in values]
    if verdicts[-1] is not Verdict.BLOWUP:
        return None  # a non-finite point is non_finite's business
    last = values[-1]
    return Finding(name, metric, f"{metric} is diverging: {last:.4g} over the run's line for {det.over} points "
                   f"({det.describe()})", severity="critical", action=cfg.action, value=trend_math.sig(last))


def check_plateau(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any]) -> Finding | None:
    metric = cfg.metric or "val_loss"
    window = obs.points_window(metric, cfg.window)
    s = obs.summary(metric, window, plateau_rel=cfg.plateau_rel)
    if not s or s.get("n", 0) < window or s.get("diverging") or s.get("trend") == "constant":
        return None  # a full window only: early noise is not a plateau
    gain = s.get("rel_change")
    # No improvement, as reduce-on-plateau means it: a window that got worse has not improved either.
    if not isinstance(gain, (int, float)) or gain >= cfg.plateau_rel:
        return None
    return Finding(name, metric, f"{metric} plateaued: {gain} relative improvement over {s['n']} points "
                   f"(threshold {cfg.plateau_rel})", action=cfg.action, value=_last(s))


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def check_overfitting(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any],
                      train_metric: str = "train_loss") -> Finding | None:
    """The val-train gap grew by ``gap_growth`` of val's level across the window, with train
    improving and val not. Halves are compared by their medians, over the step range of the last
    ``window`` val points (val is often logged less often than train)."""
    val = cfg.metric or "val_loss"
    vs, vv = obs.window(val, cfg.window)
    if len(vs) < max(cfg.window, 8) or not all(math.isfinite(v) for v in vv):
        return None  # a full window of finite values; non-finite values are non_finite's business
    ts, tv = obs.between(train_metric, vs[0], vs[-1])
    st = trend_math.summarize(train_metric, ts, tv) if ts else None
    if not st or st.get("trend") in ("non_finite", "diverging"):
        return None  # a diverging train loss is divergence's business, not a gap
    half = len(vs) // 2
    split = vs[half]
    t1 = [v for s, v in zip(ts, tv, strict=True) if s < split and math.isfinite(v)]
    t2 = [v for s, v in zip(ts, tv, strict=True) if s >= split and math.isfinite(v)]
    if len(t1) < 4 or len(t2) < 4:
        return None
    sign = -1.0 if trend_math.goal(val) == "max" else 1.0  # scores: the gap is train - val
    v1, v2, a1, a2 = _median(vv[:half]), _median(vv[half:]), _median(t1), _median(t2)
    level = max(abs(v1), 1e-12)
    train_gain = sign * (a1 - a2) / max(abs(a1), 1e-12)  # > 0: train improved
    val_gain = sign * (v1 - v2) / level                   # <= 0: val did not
    growth = sign * ((v2 - a2) - (v1 - a1)) / level       # the gap's growth, as a fraction of val
    if not (train_gain > 0 and val_gain <= 0 and growth >= cfg.gap_growth):
        return None
    return Finding(name, val, f"overfitting: {train_metric} improved {train_gain:.3g} while {val} worsened "
                   f"{-val_gain:.3g}; the gap grew {growth:.3g} of {val} over steps {int(vs[0])}-{int(vs[-1])} "
                   f"(threshold {cfg.gap_growth:g})", action=cfg.action, value=trend_math.sig(vv[-1]))


def check_grad_spike(name: str, cfg: RuleConfig, obs: Observer, status: dict[str, Any],
                     since: float | None = None) -> Finding | None:
    """A point above ``spike_factor`` x the mean of the ``window`` finite points before it.

    Every point logged since the last tick (``since``) is examined, not just the latest: a
    one-batch spike is rarely the last point when the tick reads. The first tick looks at the
    latest point only (an autopilot started late does not act on old spikes)."""
    metric = cfg.metric or "grad_norm"
    steps, values = obs.series.get(metric, ([], []))  # the tick read the window plus what arrived since
    if since is not None:
        start = next((i for i, s in enumerate(steps) if s > since), len(steps))
    else:
        start = len(steps) - 1
    best: tuple[float, float, float, float] | None = None  # (ratio, step, value, baseline)
    for i in range(max(start, 0), len(steps)):
        v = values[i]
        base = [x for x in values[max(0, i - cfg.window):i] if math.isfinite(x)]
        if not math.isfinite(v) or len(base) < 8:
            continue
        mean = sum(base) / len(base)
        if mean > 0 and v > cfg.spike_factor * mean and (best is None or v / mean > best[0]):
            best = (v / mean, steps[i], v, mean)
    if best is None:
        return None
    ratio, at, v, mean = best
    return Finding(name, metric, f"{metric} spiked to {v:.4g} at step {int(at)}: x{ratio:.3g} the mean "
                   f"{mean:.4g} of the {cfg.window} points before it (factor {cfg.spike_factor:g})",
                   action=cfg.action, value=trend_math.sig(v))


# The rules' protective actions: they act at once in every mode that acts, the LLM's included
# (``sense`` acts on them exactly as ``auto``), so no model, however slow or wrong, removes them.
# Named in core, where the judge asks a model that moves their change back for its own reason.
PROTECTIVE = PROTECTIVE_RULES
# What each sensing mode stands for, as the ledger should name it.
LLM_MODE_OF = {"sense": "ai_auto", "sense_suggest": "ai_suggest"}

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
    act on the ``PROTECTIVE`` rules exactly as ``auto`` / ``suggest`` (the safety floor) and only
    raise alerts for the others (which wake the model). ``tick(act_all=True)`` acts on every rule
    (the LLM is down, late or out of budget: the rules run as in ``auto``).

    Cooldowns: a rule that acted waits its ``cooldown_steps``. A rule whose every op was refused
    (the guard's knob cooldown, a human's lock, a freeze) has not acted: its alert says so and the
    ledger holds the refusal; when the refusal was the knob's cooldown it may fire again as soon
    as that cooldown ends, otherwise after its own cooldown."""

    def __init__(self, tools: AutopilotTools, config: RulesConfig | None = None, mode: str = "auto"):
        if mode not in ("auto", "suggest", "sense", "sense_suggest"):
            raise ValueError("rules mode is auto, suggest, sense or sense_suggest")
        self.tools = tools
        self.config = config or RulesConfig()
        self.mode = mode
        self.obs = Observer(tools)
        self.fired_at: dict[str, int] = {}  # rule -> step it last fired
        self.next_at: dict[str, int] = {}   # rule -> first step it may fire again (cooldown or retry)
        self.seen: dict[str, float] = {}    # rule -> last metric step it examined (grad_spike)
        self.retrying: set[str] = set()     # rules waiting for a knob's cooldown to retry a refused op
        self.acted: dict[str, int] = {}     # rule -> times its ops landed (max_actions)
        self.findings: list[Finding] = []
        self.rescue_enabled = False         # this autopilot enabled the kernel's rescue
        self.finish = Finisher()            # the cool-down over a run's last part (agent/rules/finish.py)
        self.act_all = False                # this tick, sensing modes act on every rule (the LLM is out)

    def _metrics(self) -> list[str]:
        names = {self.config.train_metric}
        names |= {c.metric for c in self.config.rules.values() if c.enabled and c.metric}
        return sorted(names)

    def tick(self, act_all: bool = False) -> list[Finding]:
        """Evaluate every enabled rule once; act on those that fire. Never raises."""
        self.act_all = act_all
        try:
            return self._tick()
        except Exception as e:  # the autopilot must never take anything down with it
            log.warning("rules tick failed: %s: %s", type(e).__name__, e)
            return []

    def _read_window(self) -> int:
        enabled = [(n, c) for n, c in self.config.rules.items() if c.enabled]
        # grad_spike examines every point since the last tick, each against the window before it.
        return max([c.window * 2 if n == "grad_spike" else c.window for n, c in enabled] or [1])

    def _mark_seen(self, name: str, cfg: RuleConfig) -> None:
        steps = self.obs.series.get(cfg.metric or "grad_norm", ([], []))[0] if name == "grad_spike" else []
        if steps:
            self.seen[name] = steps[-1]

    def rescue_acts(self) -> bool:
        """The kernel's rescue watches every step and acts (this autopilot or the script enabled it)."""
        return bool((self.obs.status.get("rescue") or {}).get("enabled"))

    def _sync_rescue(self) -> None:
        """In the modes that act, enable the kernel's rescue once (an op through the tool surface,
        so the guard, freeze mode and the ledger see it)."""
        if not self.config.rescue or self.mode not in ("auto", "sense") or self.rescue_enabled:
            return
        rescue = self.obs.status.get("rescue")
        if not isinstance(rescue, dict) or rescue.get("enabled"):
            return  # a kernel without a rescue, or one the script enabled itself
        try:
            self.tools.apply_op(tool_input("apply_op", ApplyOpInput, {
                "module": "rescue", "op": "enable", "params": {"probe": self.config.probe},
                "reason": f"autopilot mode {LLM_MODE_OF.get(self.mode, self.mode)}: the rescue rolls back blow-ups "
                          "in the kernel" + (" and probes a too-low lr" if self.config.probe else "")}), actor="rescue")
            self.rescue_enabled = True
            self.obs.status.setdefault("rescue", {})["enabled"] = True
        except ToolError as e:
            log.warning("could not enable the rescue: %s", e)

    def disable_rescue(self) -> None:
        """Undo ``_sync_rescue`` (the autopilot left a mode that acts)."""
        if not self.rescue_enabled:
            return
        try:
            self.tools.apply_op(tool_input("apply_op", ApplyOpInput, {
                "module": "rescue", "op": "disable", "reason": "autopilot left the modes that act"}), actor="rescue")
            self.rescue_enabled = False
        except ToolError as e:
            log.warning("could not disable the rescue: %s", e)

    def _due(self, name: str, cfg: RuleConfig, step: int) -> bool:
        """Whether rule ``name`` may look at the run now (enabled, not the rescue's, within its
        action budget, past its warmup and cooldown)."""
        if not cfg.enabled:
            return False
        if name in ("non_finite", "divergence") and self.rescue_acts():
            return False  # the rescue acts on it in the kernel, at the step, with a rollback
        if cfg.max_actions and self.acted.get(name, 0) >= cfg.max_actions:
            return False
        if step < cfg.warmup_steps or step < self.next_at.get(name, step):
            if name not in self.retrying:
                self._mark_seen(name, cfg)  # spikes during a warmup or cooldown are not acted on later
            return False
        return True

    def _fire(self, f: Finding, name: str, cfg: RuleConfig, step: int) -> None:
        prev = (self.fired_at.get(name), self.next_at.get(name))
        self.fired_at[name] = step
        self.next_at[name] = step + cfg.cooldown_steps
        try:
            self.act(f, step)
        except ConnectionError:  # the tools (an MCP server) are unreachable: fire again when they answer
            for d, v in zip((self.fired_at, self.next_at), prev, strict=True):
                if v is None:
                    d.pop(name, None)
                else:
                    d[name] = v
            raise
        if f.landed:
            self.acted[name] = self.acted.get(name, 0) + 1
        if f.retry_at is not None:
            self.next_at[name] = f.retry_at
            self.retrying.add(name)  # keep the finding's points: the retry re-examines them
        else:
            self.retrying.discard(name)
            self._mark_seen(name, cfg)

    def _tick(self) -> list[Finding]:
        self.obs.refresh(self._metrics(), self._read_window())
        step = self.obs.step
        if step is None:
            return []
        self._sync_rescue()
        fired: list[Finding] = []
        for name, check in CHECKS.items():
            cfg = self.config.rules.get(name)
            if cfg is None or not self._due(name, cfg, step):
                continue
            kw: dict[str, Any] = {}
            if name == "overfitting":
                kw["train_metric"] = self.config.train_metric
            elif name == "grad_spike":
                kw["since"] = self.seen.get(name)
            f = check(name, cfg, self.obs, self.obs.status, **kw)
            if f is None:
                self.retrying.discard(name)  # the condition cleared while it waited
                self._mark_seen(name, cfg)
                continue
            self._fire(f, name, cfg, step)
            fired.append(f)
            if name in ("non_finite", "divergence"):
                break  # one emergency action per tick; the others re-evaluate after it lands
        if not fired:  # a tick where a rule acted leaves the knobs to it (their cooldown would refuse the finish)
            # part of the floor: under the LLM the finish acts (sense) or proposes (sense_suggest) as in auto / suggest
            acting = {"sense": "auto", "sense_suggest": "suggest"}.get(self.mode, self.mode)
            self.finish.tick(self.tools, self.obs.status, acting, self.obs.series)
        self.findings.extend(fired)
        return fired

    # ------------------------------------------------------------------ acting
    def _propose(self, f: Finding, op: dict[str, Any], reason: str) -> Proposal | None:
        try:
            return self.tools.propose_op(tool_input("propose_op", ProposeInput, {"op": op, "reason": reason}),
                                         actor=f.rule)
        except ToolError as e:
            f.outcome.append(f"propose_op refused: {e}")
            return None

    def _apply(self, f: Finding, op: dict[str, Any]) -> ApplyOpOutput | None:
        try:
            return self.tools.apply_op(tool_input("apply_op", ApplyOpInput, op), actor=f.rule)
        except ToolError as e:
            f.outcome.append(f"apply_op refused: {e}")
            return None

    def act(self, f: Finding, step: int) -> None:
        # "sense" (under the LLM): the protective rules act at once, as in auto (a run cannot wait
        # for an API call); the others become alerts that wake the model.
        if self.mode.startswith("sense") and f.rule not in PROTECTIVE and not self.act_all:
            f.outcome.append("alert only: the LLM autopilot decides")
        else:
            self._act(f)
            if f.refused and not f.landed:
                self._plan_retry(f, step)
        try:
            self.tools.record_alert(rule=f.rule, kind=f.rule, metric=f.metric, severity=f.severity, step=step,
                                    message=f"{f.message}" + (f" -> {'; '.join(f.outcome)}" if f.outcome else ""),
                                    value=f.value)
        except Exception as e:
            log.warning("could not record alert: %s", e)

    def _can_rescue(self) -> bool:
        """The kernel has a rescue and state registered to roll back."""
        rescue = self.obs.status.get("rescue")
        return isinstance(rescue, dict) and bool(rescue.get("can_roll_back"))

    def _plan_retry(self, f: Finding, step: int) -> None:
        """Every op of ``f`` was refused. If a refused knob is only cooling down, retry when it may
        change again; otherwise (locked, frozen, ...) the rule's own cooldown stands."""
        cfg = self.config.rules[f.rule]
        until: list[int] = []
        try:
            knobs = self.tools.describe_actuators().actuators
        except ToolError:
            knobs = []
        for knob in knobs:
            if (knob.module, knob.key) not in f.refused_knobs or knob.locked_by:
                continue
            c = knob.cooldown_until_step  # the guard's own resolution, per-knob overrides included
            if isinstance(c, int) and c > step:
                until.append(c)
        if until and min(until) < step + cfg.cooldown_steps:
            f.retry_at = min(until)
            f.outcome.append(f"not applied: will retry at step {f.retry_at} when the knob's cooldown ends")
        else:
            f.outcome.append(f"not applied: will re-check after the rule's cooldown (step {step + cfg.cooldown_steps})")

    def _act(self, f: Finding) -> None:
        if f.rule == "divergence" and self.mode in ("suggest", "sense_suggest") and self._can_rescue():
            # What the rescue would do in auto: roll back and cut, one decision (a plain halving
            # would leave the blown-up weights in place).
            reason = (f"rule {f.rule}: {f.message}; roll back to the last healthy snapshot (else the run's first "
                      "state) and cut lr")
            self._do(f, {"module": "rescue", "op": "rollback", "params": {"cut": 0.5}, "reason": reason}, reason)
            return
        if f.rollback:
            reason = f"rule {f.rule}: {f.message}; roll back to the last good snapshot"
            op = {"module": "core", "op": "rollback", "params": {}, "reason": reason}
            self._do(f, op, reason)
        if f.action is not None:
            try:
                op = resolve(f.action, self.tools.describe_actuators().model_dump(mode="json"))
            except (Unresolvable, ToolError) as e:
                f.outcome.append(f"no action: {e}")
            else:
                verb = "halve" if f.action.factor == 0.5 else f"x{f.action.factor:g}"
                reason = f"rule {f.rule}: {f.message}; {verb} {f.action.knob}"
                self._do(f, {**op, "reason": reason}, reason)

    def _do(self, f: Finding, op: dict[str, Any], reason: str) -> None:
        propose = self.mode in ("suggest", "sense_suggest")
        if propose:
            proposal = self._propose(f, op, reason)
            if proposal is not None:
                f.outcome.append(f"proposed {op['module']}.{op['op']} {op.get('params')} ({proposal.proposal_id})")
            landed = proposal is not None
        else:
            steps, values = self.obs.series.get(f.metric) or ([], [])
            if steps:  # the reading it rests on: the kernel refuses one it never recorded itself
                op = {**op, "evidence": {"metric": f.metric, "step": int(steps[-1]), "value": tag(values[-1])}}
            applied = self._apply(f, op)
            if applied is not None:
                f.outcome.append(f"{op['module']}.{op['op']} {op.get('params') or ''} {applied.decision}")
            landed = applied is not None
        if landed:
            f.landed += 1
        else:
            f.refused += 1
            f.refused_knobs |= {(op["module"], k) for k in (op.get("params") or {})}
