"""The autopilot process: follows the run's mode (``autopilot`` tool), evaluates alert rules, runs
the rules or the LLM, and stops when training ends.

The mode lives in ``hotcb.autopilot.json`` (set through the ``autopilot`` tool by a person, the
dashboard or ``hotcb autopilot --mode``), so switching it live needs no restart. The LLM wakes on
new alerts and rule findings and on a cadence of steps; without an API key the ai modes run the
rules and say so.

Where the tools live is a backend: ``LocalBackend`` (in-process ``HotcbTools``, the default) or
``McpBackend`` (``agent/mcp_tools.py``: a real MCP server over stdio or HTTP). Either way the
rules act as source ``rule`` (actor the rule id) and the LLM as ``agent`` (actor the model name).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from hotcb.mcp_server.tools import HotcbTools

from .alerts import AlertEvaluator
from .budget import Budget
from .config import RulesConfig
from .llm import env_number
from .rules import RulesAutopilot

log = logging.getLogger("hotcb.agent")


@dataclass
class AIOptions:
    api_key: str | None = field(default_factory=lambda: os.environ.get("HOTCB_AI_KEY"))
    base_url: str | None = field(default_factory=lambda: os.environ.get("HOTCB_AI_BASE_URL"))
    model: str = field(default_factory=lambda: os.environ.get("HOTCB_AI_MODEL") or "gpt-4o-mini")
    cadence_steps: int = field(default_factory=lambda: env_number("HOTCB_AI_CADENCE_STEPS", 200, int))
    min_gap_steps: int = field(default_factory=lambda: env_number("HOTCB_AI_MIN_GAP_STEPS", 0, int))
    max_tool_calls: int = 6
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    timeout_s: float = field(default_factory=lambda: env_number("HOTCB_AI_TIMEOUT", 60.0))
    max_rounds: int = field(default_factory=lambda: env_number("HOTCB_AI_MAX_ROUNDS", 4, int))
    max_completion_tokens: int | None = field(
        default_factory=lambda: env_number("HOTCB_AI_MAX_COMPLETION", 0, int) or None)


class ToolsBackend(Protocol):
    """Where the autopilot's tools come from: one tools object per identity."""

    def tools(self, source: str, actor: str | None) -> Any: ...

    def set_mode(self, mode: str, reason: str) -> None: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class LocalBackend:
    """In-process ``HotcbTools`` over the run directory."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = run_dir

    def tools(self, source: str, actor: str | None) -> HotcbTools:
        return HotcbTools(self.run_dir, source=source, actor=actor)

    def set_mode(self, mode: str, reason: str) -> None:
        # The person who started this process chose the mode.
        self.tools("human", "hotcb-autopilot").call("autopilot", {"action": "set", "mode": mode, "reason": reason})

    def describe(self) -> str:
        return str(self.run_dir)

    def close(self) -> None:
        pass


class Autopilot:
    def __init__(self, run_dir: str | os.PathLike[str], *, mode: str | None = None, rules: RulesConfig | None = None,
                 ai: AIOptions | None = None, interval_s: float = 1.0, exit_when_done: bool = True,
                 backend: ToolsBackend | None = None):
        self.run_dir = run_dir
        self.backend: ToolsBackend = backend or LocalBackend(run_dir)
        self.rules_cfg = rules or RulesConfig()
        self.ai = ai or AIOptions()
        self.interval_s = interval_s
        self.exit_when_done = exit_when_done
        self.reader = self.backend.tools("rule", "autopilot")
        if mode is not None:
            self.backend.set_mode(mode, "set at autopilot start")
        self.alerts = AlertEvaluator(self.backend.tools("rule", "alerts"))
        self._rules: dict[str, RulesAutopilot] = {}
        self._llm: Any = None
        self._noted_no_key = False
        self.stop_event = threading.Event()
        self.ticks = 0

    def mode(self) -> str:
        return self.reader.call("autopilot", {})["mode"]

    def rules(self, mode: str) -> RulesAutopilot:
        if mode not in self._rules:
            self._rules[mode] = RulesAutopilot(self.backend.tools("rule", "rules"), self.rules_cfg, mode=mode)
        return self._rules[mode]

    def llm(self, mode: str) -> Any:
        if self._llm is None or self._llm.mode != mode:
            from .llm import LLMAutopilot

            a = self.ai
            self._llm = LLMAutopilot(self.backend.tools("agent", a.model), api_key=a.api_key,
                                     base_url=a.base_url, model=a.model, mode=mode, max_tool_calls=a.max_tool_calls,
                                     timeout_s=a.timeout_s, max_rounds=a.max_rounds, cadence_steps=a.cadence_steps,
                                     min_gap_steps=a.min_gap_steps,
                                     max_completion_tokens=a.max_completion_tokens, rules=self.rules_cfg,
                                     budget=Budget(max_tokens=a.max_tokens, max_cost_usd=a.max_cost_usd),
                                     rule_tools=self.backend.tools("rule", "rules-fallback"),
                                     sensor=self.rules("sense_suggest" if mode == "ai_suggest" else "sense"))
        return self._llm

    def tick(self) -> dict[str, Any]:
        """One pass: alerts, then the current mode's controller. Never raises."""
        self.ticks += 1
        try:
            return self._tick()
        except Exception as e:
            log.warning("autopilot tick failed: %s: %s", type(e).__name__, e)
            return {"error": str(e)}

    def _tick(self) -> dict[str, Any]:
        mode = self.mode()
        self.alerts.tick()
        if mode not in ("auto", "ai_auto"):  # the kernel's rescue acts by itself only in the modes that act
            for pilot in self._rules.values():
                pilot.disable_rescue()
        if mode == "off":
            return {"mode": mode}
        if mode in ("auto", "suggest"):
            return {"mode": mode, "findings": len(self.rules(mode).tick())}
        rules_mode = "suggest" if mode == "ai_suggest" else "auto"
        if not self.ai.api_key and not self.ai.base_url:
            if not self._noted_no_key:
                self._noted_no_key = True
                self.reader.record_alert(rule="autopilot_no_key", kind="api_down", severity="warning",
                                         message=f"{mode} needs HOTCB_AI_KEY (or a base URL); the rules run instead")
            return {"mode": mode, "fallback": "rules", "findings": len(self.rules(rules_mode).tick())}
        # The rules sense (alerts) and keep the NaN safety net; the LLM wakes on their findings,
        # new alerts and its cadence, and decides the rest (LLMAutopilot.tick).
        return {"mode": mode, **self.llm(mode).tick()}

    def training_over(self) -> bool:
        """Training has ended (stopped or dead). False while that cannot be read (a server down)."""
        try:
            live = self.reader.liveness()
        except Exception as e:
            log.debug("liveness unavailable: %s", e)
            return False
        return live["state"] in ("stopped", "dead")

    def run(self) -> None:
        """Tick until stopped, or (``exit_when_done``) until training has ended."""
        seen_running = False
        while not self.stop_event.is_set():
            self.tick()
            if self.exit_when_done:
                over = self.training_over()
                seen_running = seen_running or not over
                if over and seen_running:
                    break
            self.stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        """Release the backend (an MCP session; a spawned server exits)."""
        self.backend.close()
