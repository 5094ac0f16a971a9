"""The finish: when the run's length is known (the kernel's ``max_steps``), cool lr down over the
last part of the run, as a warmup-stable-decay schedule does -- a few ledgered lr decisions, each
with its reason, source ``rule``, actor ``finish``.

The decay is linear from the live lr at the cool-down's start (``peak``) toward 0, held as a
staircase of ``stages`` equal steps (each stage at the line's value at its middle), so it costs
a handful of ledger entries, not one per tick. A decision never raises lr (a rescue's or a
human's lower lr stands) and never moves it by more than the guard allows per op; a stage the
guard's limit cut short is finished at the next tick.

``decide`` is a pure function of the step, the run's length, the live lr and a small state
object (Ray PBT's shape: the state owns what it remembers, the function decides); ``Finisher``
reads the live lr and sends the decision through the tool surface like every rule's op.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from hotcb.mcp_server.registry import ToolError

from .actions import Unresolvable, resolve
from .config import Action

log = logging.getLogger("hotcb.agent.finish")

ACTOR = "finish"


@dataclass(frozen=True)
class FinishConfig:
    enabled: bool = True
    start: float = 0.8  # the cool-down begins at this share of max_steps (the last 20%)
    stages: int = 6  # the staircase's steps (6: lr x0.92, 0.75, 0.58, 0.42, 0.25, 0.08 of the peak)
    floor: float = 0.0  # where the line ends, as a multiple of the peak
    slack: float = 1.05  # act only when the live lr is above the stage's target by more than this
    min_steps: int = 100  # shorter runs have no room for a cool-down


@dataclass
class FinishState:
    peak: float | None = None  # the live lr when the cool-down began
    began_at: int | None = None
    decisions: int = 0


@dataclass(frozen=True)
class FinishDecision:
    lr: float  # the stage's target (the op may stop short of it: the guard's per-op limit)
    stage: int
    progress: float
    reason: str


def stage_target(progress: float, cfg: FinishConfig) -> tuple[int, float]:
    """(stage 1..stages, its lr as a multiple of the peak) at ``progress`` (0..1) of the cool-down."""
    n = max(1, cfg.stages)
    k = min(n, int(progress * n) + 1)
    line = 1.0 - (k - 0.5) / n  # the linear decay's value at the stage's middle
    return k, cfg.floor + (1.0 - cfg.floor) * line


def decide(step: int, max_steps: int | None, lr: float | None, state: FinishState,
           cfg: FinishConfig) -> FinishDecision | None:
    """The lr this step should run at, when it is lower than the live one by more than the slack."""
    if not cfg.enabled or not isinstance(max_steps, int) or max_steps < cfg.min_steps:
        return None
    if lr is None or not (math.isfinite(lr) and lr > 0):
        return None
    begin = int(cfg.start * max_steps)
    if step < begin or step >= max_steps:
        return None
    if state.peak is None:
        state.peak, state.began_at = lr, step
    progress = (step - begin) / max(1, max_steps - begin)
    k, mult = stage_target(progress, cfg)
    target = state.peak * mult
    if lr <= target * cfg.slack:
        return None
    end = "0" if cfg.floor == 0 else f"{cfg.floor:g}x that lr"
    reason = (f"finish: the run ends at step {max_steps}; cooling lr down over its last {1 - cfg.start:.0%} "
              f"(from step {begin}, lr {state.peak:.4g} then) along a linear decay to {end}, stage "
              f"{k}/{cfg.stages}: target {target:.4g} ({mult:.2f}x the lr at the cool-down's start)")
    return FinishDecision(lr=target, stage=k, progress=progress, reason=reason)


class Finisher:
    """The finish's state and its one tool call per decision (source the tools', actor ``finish``)."""

    def __init__(self, config: FinishConfig | None = None):
        self.config = config or FinishConfig()
        self.state = FinishState()
        self.outcomes: list[str] = []

    def tick(self, tools: Any, status: dict[str, Any], mode: str) -> FinishDecision | None:
        """One look at the run; in ``auto`` an ``apply_op``, in ``suggest`` a ``propose_op``."""
        if mode not in ("auto", "suggest") or not self.config.enabled:
            return None
        step, max_steps = status.get("step"), status.get("max_steps")
        if not isinstance(step, int) or not isinstance(max_steps, int) or step < self.config.start * max_steps:
            return None  # not the cool-down yet: no tool call
        try:
            knobs = tools.call("describe_actuators", {})
        except ToolError as e:
            log.warning("finish: could not read the knobs: %s", e)
            return None
        lr = next((k.get("value") for k in knobs.get("actuators", []) if k.get("key") == "lr"), None)
        d = decide(step, max_steps, lr if isinstance(lr, (int, float)) else None, self.state, self.config)
        if d is None:
            return None
        try:
            op = resolve(Action(knob="lr", factor=d.lr / float(lr)), knobs)  # the guard's per-op limit, bounds
        except Unresolvable as e:
            self.outcomes.append(f"step {step}: no action: {e}")
            return None
        new = float(op["params"]["lr"])
        reason = f"{d.reason}; lr {lr:.4g} -> {new:.4g}" + (
            " (the guard's per-op limit: the rest at the next look)" if new > d.lr * 1.001 else "")
        op = {**op, "reason": reason}
        try:
            if mode == "suggest":
                tools.call("propose_op", {"op": op, "reason": reason}, actor=ACTOR)
            else:
                tools.call("apply_op", op, actor=ACTOR)
            self.state.decisions += 1
            self.outcomes.append(f"step {step}: lr {lr:.4g} -> {new:.4g}")
        except ToolError as e:  # refused (a lock, a freeze, the knob's cooldown): the ledger has it
            self.outcomes.append(f"step {step}: refused: {e}")
        return d
