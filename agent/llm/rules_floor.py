"""The safety floor under the model: the rules, sensing every tick, acting for the model when it is out.

Their protective rules act at once, as in ``auto``; while the model is out (or for a wake it
could not take part in) every rule acts. The sensor is also the fallback unless one is given,
so one rules state sees each finding and a rule never acts twice for it. One rules pass runs at
a time: the tick's and a background wake's fallback share the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.sensors import Finding, RulesAutopilot
from hotcb.mcp_server.tools_protocol import AutopilotTools


class RulesFloor:
    """``RulesFloor(tools, mode=..., cfg=..., rule_tools=..., sensor=..., fallback=...)``; ``tools``
    are the model's (used to find the run when no ``rule_tools`` are given)."""

    def __init__(self, tools: AutopilotTools, *, mode: str, cfg: RulesConfig | None,
                 rule_tools: AutopilotTools | None, sensor: RulesAutopilot | None, fallback: RulesAutopilot | None):
        self.tools = tools
        self.mode = mode
        self.cfg = cfg
        self.rule_tools = rule_tools  # the rules' own identity (source rule), e.g. over the same MCP server
        self._sensor = sensor
        self._fallback = fallback
        self._lock = threading.RLock()

    def _rules(self, mode: str, actor: str) -> RulesAutopilot:
        rule_tools = self.rule_tools
        if rule_tools is None:
            from hotcb.mcp_server.tools import HotcbTools

            # Rules act as themselves (source rule), not under the model's name.
            # No rule tools given: the autopilot runs in process, on HotcbTools.
            rule_tools = HotcbTools(cast(HotcbTools, self.tools).run.root, source="rule", actor=actor)
        return RulesAutopilot(rule_tools, self.cfg, mode=mode)

    def sensor(self) -> RulesAutopilot:
        if self._sensor is None:
            self._sensor = self._rules("sense_suggest" if self.mode == "ai_suggest" else "sense", "rules")
        return self._sensor

    def fallback(self) -> RulesAutopilot:
        """The rules that act while the model is out: the sensor itself, acting on every rule."""
        return self._fallback if self._fallback is not None else self.sensor()

    def sense(self, model_out: Callable[[], bool]) -> list[Finding]:
        """One rules pass under the model: its findings. Every rule acts when ``model_out()``, asked
        once the lock is held (a wake's fallback that held it may have just found the model out)."""
        with self._lock:
            return self.sensor().tick(act_all=model_out())

    def act_all(self) -> None:
        """The model is out for this wake: every rule acts."""
        with self._lock:
            self.fallback().tick(act_all=True)
