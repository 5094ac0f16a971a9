"""Per-run accounting of the LLM autopilot's wakes, kept in the AI state.

So an ``ai`` result can never silently be a rules result: how many wakes the model was woken for,
how many it answered, how many fell back to the rules and why (``api_down``, ``budget``,
``model_error``), model errors, tool calls by how they came (native / written as text), changes
not sent because they equal the current value, and the model's stances on the rules' proposals.
"""

from __future__ import annotations

from typing import Any

COUNTS = ("wakes", "llm_wakes", "model_errors", "tool_calls_native", "tool_calls_text", "unchanged")
STANCES = ("endorse", "override", "veto")


def restore(prev: dict[str, Any] | None) -> dict[str, Any]:
    """Fresh stats, continuing from a saved state's (a restarted autopilot keeps counting)."""
    prev = prev if isinstance(prev, dict) else {}
    out: dict[str, Any] = {k: int(prev.get(k) or 0) for k in COUNTS}
    out["fallbacks"] = {str(k): int(v) for k, v in (prev.get("fallbacks") or {}).items()}
    out["stances"] = {k: int((prev.get("stances") or {}).get(k) or 0) for k in STANCES}
    return out


def fallback_total(stats: dict[str, Any]) -> int:
    return sum((stats.get("fallbacks") or {}).values())
