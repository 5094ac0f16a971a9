"""The LLM autopilot's memory of one run, kept in ``hotcb.ai.state.json``.

What the model noted (``reasonings``), what of its was refused (``refusals``) and every tool call
it made (``calls``: the arguments and what became of them), the API's health, the wake count and
``wake_stats``. A restarted autopilot continues from the saved memory when it runs the same model
(its spend and counts carry on); the lists stay bounded. The memory holds what it is given: the
caller scrubs secrets out of every text first, and the whole document is redacted again where it
is written (``LLMAutopilot.save``), so no key or credential ever reaches the file.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hotcb.agent.llm import wake_stats

MAX_NOTES = 20
MAX_REFUSALS = 50
MAX_CALLS = 100
MAX_ARG_CHARS = 600
MAX_TOOL_CHARS = 80  # a tool name is the model's text: a call of a tool named by a megabyte keeps 80


def call_outcome(result: str) -> str:
    """What became of a tool call, from the text the model was shown: the refusal's kind, the
    op's decision, or ``ok``."""
    if result.startswith(("refused", "not sent")):
        return result.split(":", 1)[0]
    try:
        decision = json.loads(result.split(" (also not sent", 1)[0]).get("decision")
    except (ValueError, AttributeError):
        decision = None
    return decision or "ok"


class AiMemory:
    """``AiMemory(tools.load_ai_state(), model=..., base_url=..., mode=...)``; ``state`` is the
    document saved."""

    def __init__(self, saved: dict[str, Any], *, model: str, base_url: str | None, mode: str):
        self.same_model = saved.get("model") == model
        self.state: dict[str, Any] = {
            "model": model, "base_url": base_url, "mode": mode, "wakes": int(saved.get("wakes", 0)),
            "reasonings": list(saved.get("reasonings") or [])[-MAX_NOTES:],
            "refusals": list(saved.get("refusals") or [])[-MAX_REFUSALS:],
            "calls": list(saved.get("calls") or [])[-MAX_CALLS:],
            "api": {"state": "unknown"}, "last_wake": saved.get("last_wake"),
            "budget_alerted": bool(saved.get("budget_alerted")) and self.same_model,
            "stats": wake_stats.restore(saved.get("stats") if self.same_model else None),
        }

    @property
    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.state["stats"]
        return stats

    def notes(self) -> list[str]:
        return [str(r.get("text", "")) for r in self.state["reasonings"]]

    def refusals(self) -> list[dict[str, Any]]:
        refusals: list[dict[str, Any]] = self.state["refusals"]
        return refusals

    def woke(self) -> None:
        self.state["wakes"] += 1
        self.stats["wakes"] += 1
        self.state["last_wake"] = time.time()

    def refused(self, kind: str, tool: str | None, detail: str) -> None:
        self.state["refusals"] = (self.state["refusals"] + [{
            "ts": time.time(), "kind": kind, "tool": tool[:MAX_TOOL_CHARS] if tool is not None else None,
            "detail": detail[:300]}])[-MAX_REFUSALS:]

    def called(self, *, tool: str, via: str, arguments: str, result: str) -> None:
        self.state["calls"] = (self.state["calls"] + [{
            "ts": time.time(), "wake": self.stats["wakes"], "tool": tool[:MAX_TOOL_CHARS], "via": via,
            "arguments": arguments[:MAX_ARG_CHARS], "outcome": call_outcome(result),
            "detail": result[:200]}])[-MAX_CALLS:]

    def noted(self, text: str, step: Any) -> None:
        self.state["reasonings"] = (self.state["reasonings"] + [{"ts": time.time(), "step": step,
                                                                 "text": text.strip()[:600]}])[-MAX_NOTES:]

    def api(self, **fields: Any) -> None:
        """The API's health, replaced (``state``, ``since``, ``error``, ``fallback``...)."""
        self.state["api"] = fields

    def api_also(self, **fields: Any) -> None:
        """More about the API's health, kept with what is known."""
        self.state["api"] = {**self.state.get("api", {}), **fields}
