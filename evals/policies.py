"""Policies under evaluation. Each acts on a run only through ``HotcbTools`` (the production
tool surface, so the production guard binds it), at the training loop's fixed step cadence.

    none     the start config, unchanged
    cosine   a fixed cosine lr schedule, issued as guarded lr ops (x0.5..x2 per op, cooldown)
    rules    the rules autopilot (hotcb.agent)
    tune     online Optuna search (the kernel's tune module, enabled by one op)
    ai       the LLM autopilot (hotcb.agent), over an OpenAI-compatible API
    replay   the best run's recipe, replayed through the replay tool
"""

from __future__ import annotations

import math
from typing import Any

from hotcb.mcp_server.tools_knobs import ApplyOpInput
from hotcb.mcp_server.tools_replay import ReplayInput

from .policy_base import Policy, PolicyContext

__all__ = ["POLICIES", "Policy", "PolicyContext", "make_policy"]

POLICIES = ("none", "cosine", "rules", "tune", "ai", "replay")


class NonePolicy(Policy):
    name = "none"


class CosinePolicy(Policy):
    """A cosine decay from the start lr to ``floor`` x start lr over the run, as lr ops. Each op is
    clipped to the guard's x0.5 per-op limit, so late in the run it can lag the curve a little.
    A task whose scheduler warms lr up is left to it: the cosine runs from the warmup's end."""

    name, source = "cosine", "rule"

    def start(self, step: int) -> None:
        self._tools = self.tools("cosine-schedule")
        self.floor = float(self.options.get("cosine_floor", 0.01))

    def target(self, step: int) -> float:
        assert self.ctx is not None
        warm = self.ctx.warmup_steps
        progress = min(1.0, max(0, step - warm) / max(1, self.ctx.total_steps - warm))
        return self.ctx.base_lr * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def act(self, step: int) -> None:
        assert self.ctx is not None
        if step <= self.ctx.warmup_steps:
            return  # the scheduler is still raising lr to the start lr
        knobs = self._tools.describe_actuators().actuators
        lr = next(a.value for a in knobs if a.key == "lr")
        ratio = min(2.0, max(0.5, self.target(step) / lr))
        if abs(ratio - 1) < 0.005:
            return
        self._tools.apply_op(ApplyOpInput(module="opt", op="set_params", params={"lr": lr * ratio},
                                          reason=f"cosine schedule at step {step}"))


class TunePolicy(Policy):
    """Enables the kernel's online Optuna search once; tune then acts inside the kernel."""

    name, source = "tune", "tune"

    def start(self, step: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        assert self.ctx is not None
        recipe = {"objective": "train_loss", "seed": self.ctx.seed, "horizon": self.ctx.tune_horizon,
                  "study_name": f"eval-{self.ctx.seed}", **self.options.get("tune_recipe", {})}
        tools = self.tools("eval")
        # The kernel's rescue acts from the first step, as for rules (a start that diverges is
        # rolled back and its lr cut before tune scores a trial on a broken network); its lr
        # probe stays off, since lr is tune's to search.
        tools.apply_op(ApplyOpInput(module="rescue", op="enable", params={"probe": False},
                                    reason="eval: the rescue under tune"), actor="rescue")
        tools.apply_op(ApplyOpInput(module="tune", op="enable", params={"mode": "active", "recipe": recipe},
                                    reason="eval: tune policy"))


class ReplayPolicy(Policy):
    """Replays a recipe (the best run's applied changes) step for step via the replay tool."""

    name, source = "replay", "replay"

    def start(self, step: int) -> None:
        recipe = self.options.get("recipe") or []
        if recipe:
            self.tools("eval-best-run").replay(ReplayInput(action="start", recipe=recipe,
                                                           reason="eval: replay the best run"))


def make_policy(name: str, options: dict[str, Any] | None = None) -> Policy:
    if name in ("rules", "ai"):
        from .agent_policies import AIPolicy, RulesPolicy

        return (RulesPolicy if name == "rules" else AIPolicy)(options)
    classes = {"none": NonePolicy, "cosine": CosinePolicy, "tune": TunePolicy, "replay": ReplayPolicy}
    if name not in classes:
        raise SystemExit(f"hotcb eval: unknown policy {name!r}; policies: {', '.join(POLICIES)}")
    return classes[name](options)
