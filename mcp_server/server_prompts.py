"""The MCP prompts of a server (``prompts/list``, ``prompts/get``), from ``hotcb.prompts``.

A prompt that does not exist, or arguments it cannot take, are the caller's error: JSON-RPC
-32602 (invalid params), as for an unknown resource.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, GetPromptResult, Prompt, PromptArgument, PromptMessage, TextContent

from hotcb import prompts as prompt_files
from hotcb.guard import GuardConfig, ratio_text

log = logging.getLogger("hotcb.mcp")


class ServedPrompts:
    """The prompts marked for MCP; ``guard()`` gives the run's GuardConfig in force, rendered
    into a prompt's {ratio_limit} (the defaults when None: a server with no run of its own)."""

    def __init__(self, guard: Callable[[], GuardConfig] | None = None):
        self.prompts = {p.name: p for p in prompt_files.latest().values() if p.mcp}
        self.guard = guard

    @staticmethod
    def _declared(p: prompt_files.Prompt) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in p.arguments if isinstance(a, dict) and a.get("name")}

    def list(self) -> list[Prompt]:
        return [Prompt(name=p.name, title=p.name.replace("_", " "), description=p.description,
                       arguments=[PromptArgument(name=n, description=a.get("description"),
                                                 required=bool(a.get("required")))
                                  for n, a in self._declared(p).items()])
                for p in self.prompts.values()]

    def get(self, name: str, arguments: dict[str, Any] | None) -> GetPromptResult:
        p = self.prompts.get(name)
        if p is None:
            known = ", ".join(sorted(self.prompts))
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name} (prompts: {known})",
                           data={"name": name})
        declared = self._declared(p)
        missing = {n for n, a in declared.items() if a.get("required")} - set(arguments or {})
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"Missing required arguments: {missing}", data={"name": name})
        # Optional arguments left out still read well: "Goal: not specified" rather than "{goal}".
        filled = {n: a.get("default", "not specified") for n, a in declared.items()}
        filled.update({k: v for k, v in (arguments or {}).items() if k in declared and v not in (None, "")})
        try:
            filled["ratio_limit"] = ratio_text(self.guard() if self.guard is not None else GuardConfig())
            text = p.render(**filled)
        except Exception as e:
            log.exception("prompt %s failed to render", name)
            raise MCPError(code=INVALID_PARAMS, message=f"Error rendering prompt {name}", data={"name": name}) from e
        return GetPromptResult(description=p.description,
                               messages=[PromptMessage(role="user", content=TextContent(type="text", text=text))])
