"""Per-run accounting of the LLM autopilot's wakes, kept in the AI state.

So an ``ai`` result can never silently be a rules result: how many wakes the model was woken for,
how many it answered, how many fell back to the rules and why (``api_down``, ``budget``,
``model_error``), model errors, wakes that ran past the wake deadline (``timed_out``), outages (the API went down or
too slow), tool calls by how they came (native / written as text), changes not sent because they
equal the current value, the model's ops applied and refused (by the judge, or before sending),
and the model's stances on the rules' actions and proposals (silence is ``silent``, never a veto).
"""

from __future__ import annotations

from typing import Any

COUNTS = ("wakes", "llm_wakes", "model_errors", "tool_calls_native", "tool_calls_text", "unchanged",
          "timed_out", "outages", "ops_applied", "ops_refused")
STANCES = ("endorse", "override", "veto", "silent")


def restore(prev: dict[str, Any] | None) -> dict[str, Any]:
    """Fresh stats, continuing from a saved state's (a restarted autopilot keeps counting)."""
    prev = prev if isinstance(prev, dict) else {}
    out: dict[str, Any] = {k: int(prev.get(k) or 0) for k in COUNTS}
    out["fallbacks"] = {str(k): int(v) for k, v in (prev.get("fallbacks") or {}).items()}
    out["stances"] = {k: int((prev.get("stances") or {}).get(k) or 0) for k in STANCES}
    return out


def fallback_total(stats: dict[str, Any]) -> int:
    return sum((stats.get("fallbacks") or {}).values())


def summary_line(stats: dict[str, Any]) -> str:
    """One line for a person: ``12 wakes: 9 answered, 2 timed out, 1 outage, ...``."""
    s = stats or {}
    fb = ", ".join(f"{k} {v}" for k, v in sorted((s.get("fallbacks") or {}).items())) or "none"
    return (f"{s.get('wakes', 0)} wakes: {s.get('llm_wakes', 0)} answered, {s.get('timed_out', 0)} timed out, "
            f"{s.get('outages', 0)} outages, {s.get('model_errors', 0)} model errors; model ops "
            f"{s.get('ops_applied', 0)} applied, {s.get('ops_refused', 0)} refused; rules fallbacks: {fb}")
