"""The base of every eval policy: what a policy is told about its run (``PolicyContext``) and
the hooks the training loop calls (``Policy``). Both policy files import this one, never each
other, so ``policies`` (the registry) may import ``agent_policies`` without a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hotcb.mcp_server.tools import HotcbTools


@dataclass
class PolicyContext:
    run_dir: str
    seed: int
    total_steps: int
    base_lr: float
    task: str
    tune_horizon: int
    controller_every: int
    warmup_steps: int = 0  # the task's scheduler warmup (a cosine schedule starts after it)


class Policy:
    name = "none"
    source = "agent"  # the ledger source whose applied knob changes count as this policy's interventions

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = dict(options or {})
        self.errors: list[str] = []
        self.ctx: PolicyContext | None = None

    def bind(self, ctx: PolicyContext) -> None:
        self.ctx = ctx

    def tools(self, actor: str, source: str | None = None, wait_s: float = 30.0) -> HotcbTools:
        from hotcb.mcp_server.tools import HotcbTools

        assert self.ctx is not None
        return HotcbTools(self.ctx.run_dir, source=source or self.source, actor=actor, wait_s=wait_s)

    def start(self, step: int) -> None:
        """Before the first training step."""

    def act(self, step: int) -> None:
        """Every ``controller_every`` steps."""

    def usage(self) -> dict[str, Any]:
        return {"llm_calls": 0, "tokens": 0, "cost_usd": 0.0}

    def close(self) -> None:
        pass
