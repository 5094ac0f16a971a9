"""The autopilot process: follows the run's mode (``autopilot`` tool), evaluates alert rules, runs
the rules or the LLM, and stops when training ends.

The mode lives in ``hotcb.autopilot.json`` (set through the ``autopilot`` tool by a person, the
dashboard or ``hotcb autopilot --mode``), so switching it live needs no restart. The LLM wakes on
new alerts and rule findings and on a cadence of steps; without an API key the ai modes run the
rules and say so.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from hotcb.mcp_server.tools import HotcbTools

from .alerts import AlertEvaluator
from .budget import Budget
from .config import RulesConfig
from .rules import RulesAutopilot

log = logging.getLogger("hotcb.agent")


@dataclass
class AIOptions:
    api_key: str | None = field(default_factory=lambda: os.environ.get("HOTCB_AI_KEY"))
    base_url: str | None = field(default_factory=lambda: os.environ.get("HOTCB_AI_BASE_URL"))
    model: str = field(default_factory=lambda: os.environ.get("HOTCB_AI_MODEL") or "gpt-4o-mini")
    cadence_steps: int = 200
    max_tool_calls: int = 6
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    timeout_s: float = 60.0


class Autopilot:
    def __init__(self, run_dir: str | os.PathLike[str], *, mode: str | None = None, rules: RulesConfig | None = None,
                 ai: AIOptions | None = None, interval_s: float = 1.0, exit_when_done: bool = True):
        self.run_dir = run_dir
        self.rules_cfg = rules or RulesConfig()
        self.ai = ai or AIOptions()
        self.interval_s = interval_s
        self.exit_when_done = exit_when_done
        self.reader = HotcbTools(run_dir, source="rule", actor="autopilot")
        if mode is not None:  # the person who started this process chose the mode
            HotcbTools(run_dir, source="human", actor="hotcb-autopilot").call(
                "autopilot", {"action": "set", "mode": mode, "reason": "set at autopilot start"})
        self.alerts = AlertEvaluator(HotcbTools(run_dir, source="rule", actor="alerts"))
        self._rules: dict[str, RulesAutopilot] = {}
        self._llm: Any = None
        self._last_wake_step: int | None = None
        self._seen_alert_ts = 0.0
        self._noted_no_key = False
        self.stop_event = threading.Event()
        self.ticks = 0

    def mode(self) -> str:
        return self.reader.call("autopilot", {})["mode"]

    def rules(self, mode: str) -> RulesAutopilot:
        if mode not in self._rules:
            self._rules[mode] = RulesAutopilot(HotcbTools(self.run_dir, source="rule", actor="rules"), self.rules_cfg,
                                               mode=mode)
        return self._rules[mode]

    def llm(self, mode: str) -> Any:
        if self._llm is None or self._llm.mode != mode:
            from .llm import LLMAutopilot

            a = self.ai
            self._llm = LLMAutopilot(HotcbTools(self.run_dir, source="agent", actor=a.model), api_key=a.api_key,
                                     base_url=a.base_url, model=a.model, mode=mode, max_tool_calls=a.max_tool_calls,
                                     timeout_s=a.timeout_s, rules=self.rules_cfg,
                                     budget=Budget(max_tokens=a.max_tokens, max_cost_usd=a.max_cost_usd))
        return self._llm

    def tick(self) -> dict[str, Any]:
        """One pass: alerts, then the current mode's controller. Never raises."""
        self.ticks += 1
        try:
            return self._tick()
        except Exception as e:  # noqa: BLE001 - the autopilot never takes training down
            log.warning("autopilot tick failed: %s: %s", type(e).__name__, e)
            return {"error": str(e)}

    def _tick(self) -> dict[str, Any]:
        mode = self.mode()
        self.alerts.tick()
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
        # The rules sense (alerts) and keep the NaN safety net; the LLM decides the rest.
        self.rules("sense_suggest" if mode == "ai_suggest" else "sense").tick()
        # Wake the LLM on new alerts (its own, the rules', the user's) or every cadence_steps.
        new = self.reader.call("list_alerts", {"since_ts": self._seen_alert_ts, "last": 20})["alerts"]
        new = [a for a in new if not str(a.get("rule", "")).startswith("autopilot_")]
        if new:
            self._seen_alert_ts = max(a["ts"] for a in new)
        step = self.reader.status_doc().get("step")
        if step is None:
            return {"mode": mode, "waiting": "no training step yet"}
        due = self._last_wake_step is None or step >= self._last_wake_step + self.ai.cadence_steps
        if not (new or due):
            return {"mode": mode}
        self._last_wake_step = step
        why = "alerts: " + ", ".join(sorted({a["rule"] for a in new})) if new else f"cadence (every {self.ai.cadence_steps} steps)"
        return {"mode": mode, **self.llm(mode).wake(why, alerts=new)}

    def training_over(self) -> bool:
        live = self.reader.liveness()
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
