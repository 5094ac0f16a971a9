"""The autopilot mode (off, suggest, auto, ai_suggest, ai_auto) and the LLM autopilot's memory.

Files (in the run directory, written only here):
- ``hotcb.autopilot.json``: the mode and who set it (atomic replace).
- ``hotcb.ai.state.json``: the LLM autopilot's memory; written through ``save_ai_state``, a
  method that is deliberately not a tool of ``HotcbTools`` (no MCP client should rewrite the
  agent's memory).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from hotcb.jsonl import read_json
from hotcb.jsonl_write import write_json_atomic
from hotcb.rundir import AI_STATE, AUTOPILOT
from hotcb.vocabulary import AutopilotMode, Source

from .registry import StrictInput, ToolError
from .tools_base import ToolGroup

Mode = Literal["off", "suggest", "auto", "ai_suggest", "ai_auto"]
MAX_REASONINGS_SHOWN = 5


class AutopilotInput(StrictInput):
    action: Literal["get", "set"] = "get"
    mode: Mode | None = Field(None, description="off, suggest, auto (rules), ai_suggest, ai_auto (LLM)")
    reason: str | None = None


class AIStateSummary(BaseModel):
    model: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = Field(0, description="the part of prompt_tokens served from a prompt cache")
    completion_tokens: int = 0
    tokens: int = Field(0, description="fresh tokens: prompt tokens not cached plus completion tokens")
    cost_usd: float = 0.0
    base_url: str | None = Field(None, description="the API's base URL, credentials redacted")
    budget: dict[str, Any] = {}
    budget_exhausted: bool = False
    api: str = Field("unknown", description="ok, degraded (retrying/falling back), down, or unknown")
    api_error: str | None = None
    fallback: str | None = Field(None, description="what runs instead while the API is down")
    last_wake: float | None = None
    reasonings: list[dict[str, Any]] = []
    refusals: int = 0
    stats: dict[str, Any] = Field(default_factory=dict, description=(
        "wakes, llm_wakes (answered by the model), fallbacks by reason (api_down, budget, model_error), "
        "model_errors, tool calls native/text, unchanged (not sent), stances on the rules' proposals"))


class AutopilotOutput(BaseModel):
    mode: Mode = "off"
    set_by: str | None = None
    set_source: str | None = None
    set_ts: float | None = None
    reason: str | None = None
    ai: AIStateSummary | None = None


class AutopilotModeTools(ToolGroup):
    def autopilot_doc(self) -> dict[str, Any]:
        doc = read_json(self.run.root / AUTOPILOT)
        return doc if isinstance(doc, dict) else {}

    def load_ai_state(self) -> dict[str, Any]:
        doc = read_json(self.run.root / AI_STATE)
        return doc if isinstance(doc, dict) else {}

    def save_ai_state(self, state: dict[str, Any]) -> None:
        """Not a tool: the LLM autopilot's memory, replaced atomically. Only the agent calls it."""
        write_json_atomic(self.run.root / AI_STATE, state)

    def ai_summary(self) -> AIStateSummary | None:
        st = self.load_ai_state()
        if not st:
            return None
        usage = st.get("usage") or {}
        api = st.get("api") or {}
        return AIStateSummary(
            model=st.get("model"), calls=int(usage.get("calls", 0)),
            prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)),
            cached_tokens=int(usage.get("cached_tokens", 0)), base_url=st.get("base_url"),
            stats=st.get("stats") if isinstance(st.get("stats"), dict) else {},
            tokens=int(usage.get("tokens", 0)), cost_usd=float(usage.get("cost_usd", 0.0)),
            budget=st.get("budget") or {}, budget_exhausted=bool(st.get("budget_exhausted")),
            api=str(api.get("state", "unknown")), api_error=api.get("error"), fallback=api.get("fallback"),
            last_wake=st.get("last_wake"), reasonings=list(st.get("reasonings") or [])[-MAX_REASONINGS_SHOWN:],
            refusals=len(st.get("refusals") or []),
        )

    def autopilot(self, args: AutopilotInput) -> AutopilotOutput:
        """Get (default) or set the autopilot mode: off, suggest (rules propose), auto (rules act),
        ai_suggest (LLM proposes), ai_auto (LLM acts). get also returns the LLM's state: model,
        calls, tokens, cost, budget, API health and its last reasonings. Only humans may set."""
        if args.action == "set":
            if args.mode is None:
                raise ToolError("set needs a mode: " + ", ".join(AutopilotMode.values()))
            if self.source != Source.HUMAN:
                # An agent must not grant itself more autonomy (or switch off a person's choice).
                raise ToolError(f"only a human may set the autopilot mode (this caller is {self.source!r})")
            doc = {"mode": args.mode, "set_by": self.current_actor() or self.source, "set_source": self.source,
                   "set_ts": time.time(), "reason": args.reason}
            write_json_atomic(self.run.root / AUTOPILOT, doc)
        doc = self.autopilot_doc()
        mode = doc.get("mode") if doc.get("mode") in AutopilotMode.values() else "off"
        return AutopilotOutput(mode=mode, set_by=doc.get("set_by"), set_source=doc.get("set_source"),
                               set_ts=doc.get("set_ts"), reason=doc.get("reason"), ai=self.ai_summary())
