"""The ``rules`` and ``ai`` policies: the autopilots of ``hotcb.agent``, one pass per tick.

The eval does not re-implement either: it builds the agent's own autopilot over a
``HotcbTools`` for the run directory (source ``rule`` / ``agent``) and calls one pass of it at
each tick. For ``ai`` with ``--ai-replies``, the agent's real OpenAI-compatible client talks to
a local recorded-replies server (``fake_llm``), the only stand-in, at the HTTP edge.
"""

from __future__ import annotations

import os
from typing import Any

from hotcb.agent.llm.tool_loop import LLMAutopilot
from hotcb.agent.rules.sensors import RulesAutopilot

from .policy_base import Policy


class RulesPolicy(Policy):
    name, source = "rules", "rule"

    def start(self, step: int) -> None:
        self.pilot = RulesAutopilot(self.tools("rules-autopilot"), mode="auto")
        # A tick at step 0, before training: the kernel's rescue is enabled before the first step,
        # so a start that diverges at steps 1-9 is caught as it blows up (not at the first tick).
        self.pilot.tick()

    def act(self, step: int) -> None:
        self.pilot.tick()


class AIPolicy(Policy):
    name, source = "ai", "agent"

    def start(self, step: int) -> None:
        self._server = None
        base_url = self.options.get("ai_base_url") or os.environ.get("HOTCB_AI_BASE_URL")
        key = os.environ.get("HOTCB_AI_KEY")
        if self.options.get("ai_replies"):
            from .fake_llm import RecordedLLM, load_replies

            self._server = RecordedLLM(load_replies(self.options["ai_replies"])).__enter__()
            base_url, key = self._server.base_url, "recorded"
        if not key and not base_url:
            raise RuntimeError("the ai policy needs HOTCB_AI_KEY or HOTCB_AI_BASE_URL "
                               "(or --ai-replies FILE for recorded replies)")
        model = self.options.get("ai_model") or os.environ.get("HOTCB_AI_MODEL") or "gpt-4o-mini"
        self.pilot = LLMAutopilot(self.tools(model), api_key=key, base_url=base_url, model=model, mode="ai_auto")
        self.pilot.floor.sensor().tick()  # its rules enable the kernel's rescue before the first step, as for rules

    def act(self, step: int) -> None:
        self.pilot.tick()

    def usage(self) -> dict[str, Any]:
        pilot = getattr(self, "pilot", None)
        u = pilot.usage() if pilot is not None else {}
        # the LLM's accounting: how many wakes the model answered, how many fell back
        # to the rules and why, so an ai row can never silently be a rules row.
        st = pilot.stats if pilot is not None else {}
        return {"llm_calls": int(u.get("calls", 0)), "tokens": int(u.get("tokens", 0)),
                "cost_usd": float(u.get("cost_usd", 0.0)), "prompt_tokens": int(u.get("prompt_tokens", 0)),
                "cached_tokens": int(u.get("cached_tokens", 0)),
                "completion_tokens": int(u.get("completion_tokens", 0)),
                "ai_wakes": int(st.get("wakes", 0)), "ai_llm_wakes": int(st.get("llm_wakes", 0)),
                "ai_fallbacks": dict(st.get("fallbacks") or {}), "ai_model_errors": int(st.get("model_errors", 0)),
                "ai_tool_calls": {"native": int(st.get("tool_calls_native", 0)),
                                  "text": int(st.get("tool_calls_text", 0))},
                "ai_unchanged": int(st.get("unchanged", 0)), "ai_stances": dict(st.get("stances") or {})}

    def close(self) -> None:
        if getattr(self, "_server", None) is not None:
            self._server.__exit__(None, None, None)
