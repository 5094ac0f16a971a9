"""The autopilot process: follows the run's mode (``autopilot`` tool), evaluates alert rules, runs
the rules or the LLM, and stops when training ends.

The mode lives in ``hotcb.autopilot.json`` (set through the ``autopilot`` tool by a person, the
dashboard or ``hotcb autopilot --mode``), so switching it live needs no restart. The LLM wakes on
new alerts and rule findings and on a cadence of steps; without an API key the ai modes run the
rules and say so.

Where the tools live is a backend: ``LocalBackend`` (in-process ``HotcbTools``, the default) or
``McpBackend`` (``agent/mcp_client/backend.py``: a real MCP server over stdio or HTTP). Either way the
rules act as source ``rule`` (actor the rule id) and the LLM as ``agent`` (actor the model name).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from hotcb.agent.llm.budget import Budget
from hotcb.agent.llm.env_number import env_number
from hotcb.agent.rules.alerts import AlertEvaluator
from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.sensors import RulesAutopilot
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_autopilot_mode import AutopilotInput
from hotcb.mcp_server.tools_protocol import AutopilotTools, tool_input

from hotcb.vocabulary import Source

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
    # The whole wake (every request and tool call): past it the model is out and the rules act.
    wake_deadline_s: float = field(default_factory=lambda: env_number("HOTCB_AI_WAKE_DEADLINE", 300.0))
    max_rounds: int = field(default_factory=lambda: env_number("HOTCB_AI_MAX_ROUNDS", 4, int))
    max_completion_tokens: int | None = field(
        default_factory=lambda: env_number("HOTCB_AI_MAX_COMPLETION", 0, int) or None)


class ToolsBackend(Protocol):
    """Where the autopilot's tools come from: one tools object per identity."""

    def tools(self, source: str, actor: str | None) -> AutopilotTools: ...

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
        self.tools(Source.HUMAN, "hotcb-autopilot").autopilot(tool_input("autopilot", AutopilotInput, {
            "action": "set", "mode": mode, "reason": reason}))

    def describe(self) -> str:
        return str(self.run_dir)

    def close(self) -> None:
        pass


def wake_line(model: str, out: dict[str, Any]) -> str:
    """``LLM wake 3: waiting for qwen (round 2, ~1830 prompt tokens sent, 212 tokens so far, 41 s)``."""
    if out.get("wake") == "started":
        return f"LLM wake: {model} woken ({out.get('why')})"
    late = " -- past the wake deadline: the rules act" if out.get("late") else ""
    return (f"LLM wake {out.get('wake_no', '?')}: {out.get('doing', 'starting')} ({model}; round {out.get('round', 0)}, "
            f"~{out.get('prompt_tokens_est', 0)} prompt tokens sent, {out.get('tokens', 0)} tokens so far, "
            f"{out.get('seconds', 0):.0f} s){late}")


def _outcome(r: dict[str, Any]) -> str:
    bits = [str(r.get("outcome", "?"))]
    if r.get("tool_calls"):
        bits.append(f"{r['tool_calls']} tool calls")
    if r.get("actions"):
        bits.append(f"{len(r['actions'])} ops sent")
    if r.get("error"):
        bits.append(str(r["error"])[:120])
    return ", ".join(bits)


class Autopilot:
    LIVE_EVERY_S = 10.0  # a log (not a terminal) gets a running wake's line this often

    def __init__(self, run_dir: str | os.PathLike[str], *, mode: str | None = None, rules: RulesConfig | None = None,
                 ai: AIOptions | None = None, interval_s: float = 1.0, exit_when_done: bool = True,
                 backend: ToolsBackend | None = None, live: TextIO | None = sys.stderr):
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
        self.live = live  # one line per running LLM wake (None: quiet)
        self._live_at = 0.0
        self._showing = False

    def mode(self) -> str:
        return self.reader.autopilot(AutopilotInput()).mode

    def rules(self, mode: str) -> RulesAutopilot:
        if mode not in self._rules:
            self._rules[mode] = RulesAutopilot(self.backend.tools("rule", "rules"), self.rules_cfg, mode=mode)
        return self._rules[mode]

    def llm(self, mode: str) -> Any:
        if self._llm is None or self._llm.mode != mode:
            from hotcb.agent.llm.tool_loop import LLMAutopilot

            a = self.ai
            self._llm = LLMAutopilot(self.backend.tools("agent", a.model), api_key=a.api_key,
                                     base_url=a.base_url, model=a.model, mode=mode, max_tool_calls=a.max_tool_calls,
                                     timeout_s=a.timeout_s, max_rounds=a.max_rounds, cadence_steps=a.cadence_steps,
                                     min_gap_steps=a.min_gap_steps, wake_deadline_s=a.wake_deadline_s,
                                     background=True,
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
        # The rules keep the safety floor (their protective actions, as in auto); the LLM wakes in
        # a worker on their findings, new alerts and its cadence, and acts above them.
        out = {"mode": mode, **self.llm(mode).tick()}
        self._show(out)
        return out

    def _show(self, out: dict[str, Any]) -> None:
        """The live line of a running wake: a terminal redraws it; a log gets one every few seconds;
        when the wake is over, one line says how it ended."""
        if self.live is None:
            return
        tty = getattr(self.live, "isatty", lambda: False)()
        if out.get("wake") not in ("running", "started"):
            if self._showing and self._llm is not None and not self._llm.busy():
                self._showing = False
                self._write(f"LLM wake over: {_outcome(self._llm.last_result)}", tty, end=True)
            return
        now = time.monotonic()
        if not tty and now - self._live_at < self.LIVE_EVERY_S and out.get("wake") == "running":
            return
        self._live_at, self._showing = now, True
        self._write(wake_line(self.ai.model, out), tty, end=not tty)

    def _write(self, text: str, tty: bool, end: bool) -> None:
        try:
            self.live.write(("\r\x1b[2K" if tty else "") + text + ("\n" if end else ""))  # type: ignore[union-attr]
            self.live.flush()  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):  # a closed terminal is no reason to stop
            self.live = None

    def once(self) -> dict[str, Any]:
        """One tick (``--once``); a wake it started runs to its end (or its deadline), and says how."""
        out = self.tick()
        if out.get("wake") == "started":
            self.finish(self.ai.wake_deadline_s + 5)
            out["wake"] = self.last_wake()
        return out

    def last_wake(self) -> dict[str, Any]:
        """How the LLM's last finished wake ended ({} when none did)."""
        return dict(self._llm.last_result) if self._llm is not None else {}

    def finish(self, timeout_s: float = 5.0) -> None:
        """Training ended: give a running wake a moment (its late ops are refused as the run is over)."""
        if self._llm is not None:
            self._llm.join(timeout_s)

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
        self.finish()

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        """Release the backend (an MCP session; a spawned server exits)."""
        self.backend.close()
