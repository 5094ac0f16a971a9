"""The report's per-run account of the ``ai`` policy: how many wakes the
LLM answered, how many fell back to the rules and why, model errors, tool calls by how they came,
tokens (cached apart) and time, so an ``ai`` row can never silently be a rules row."""

from __future__ import annotations

from typing import Any

from .score import fmt, score

COLUMNS = ("seed", "test score", "wakes", "LLM answered", "fallbacks (why)", "model errors", "calls",
           "tool calls native/text", "unchanged", "stances e/o/v", "prompt tok (cached)", "completion tok",
           "interventions", "policy s", "wall s")


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in sorted((r for r in results["runs"] if r["policy"] == "ai"), key=lambda r: r["seed"]):
        fb = r.get("ai_fallbacks") or {}
        tc = r.get("ai_tool_calls") or {}
        st = r.get("ai_stances") or {}
        out.append([
            str(r["seed"]), fmt(score(r), r.get("goal", "max") == "max"), str(r.get("ai_wakes", 0)), str(r.get("ai_llm_wakes", 0)),
            (f"{sum(fb.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(fb.items())) + ")") if fb else "0",
            str(r.get("ai_model_errors", 0)), str(r.get("llm_calls", 0)),
            f"{tc.get('native', 0)}/{tc.get('text', 0)}", str(r.get("ai_unchanged", 0)),
            f"{st.get('endorse', 0)}/{st.get('override', 0)}/{st.get('veto', 0)}",
            f"{r.get('prompt_tokens', 0)} ({r.get('cached_tokens', 0)})", str(r.get("completion_tokens", 0)),
            str(r.get("interventions", 0)), f"{r.get('policy_s', 0.0):.0f}", f"{r.get('wall_s', 0.0):.0f}",
        ])
    return out


def section(results: dict[str, Any]) -> list[str]:
    """Markdown lines (empty without ai runs), with a warning where the rules acted for the LLM."""
    body = rows(results)
    if not body:
        return []
    lines = ["", "## The ai policy, per run", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", "Wakes: times the LLM was woken; LLM answered: wakes where the model replied at least once; "
              "fallbacks: wakes the rules handled instead (api_down, budget, model_error). Stances on the "
              "rules' proposals: endorse/override (in the op's ledger reason) / veto."]
    for r in results["runs"]:
        if r["policy"] == "ai" and r.get("ai_wakes", 0) and not r.get("ai_llm_wakes", 0):
            lines.append(f"\n**ai seed {r['seed']}: the LLM answered none of its {r['ai_wakes']} wakes; the rules "
                         f"acted instead ({r.get('ai_fallbacks')}). This row is a rules result.**")
    return lines
