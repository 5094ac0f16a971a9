"""hotcb.agent: the autopilot (rules and an LLM agent) acting only through the tool surface
(in-process, or as an MCP client: ``McpBackend``), plus ``launch`` (training in its own process,
the autopilot, optionally the dashboard). Its rooms: ``pilot`` (the loop), ``rules``, ``llm``,
``mcp_client`` and ``launcher``; ``cli`` adds the ``hotcb autopilot`` and ``hotcb launch`` commands.

Names resolve lazily so ``import hotcb.agent`` stays cheap and needs no openai until the LLM
autopilot is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "RulesAutopilot": "rules.sensors", "RulesConfig": "rules.config", "LLMAutopilot": "llm.tool_loop",
    "Budget": "llm.budget", "Autopilot": "pilot.autopilot", "launch": "launcher.launch",
    "LaunchHandle": "launcher.launch", "AlertEvaluator": "rules.alerts",
    "McpBackend": "mcp_client.backend", "McpTarget": "mcp_client.backend",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
