"""The ``rules`` and ``ai`` policies: the autopilots of ``hotcb.agent``, one pass per tick.

The eval does not re-implement either: it builds the agent's own autopilot over a
``HotcbTools`` for the run directory (source ``rule`` / ``agent``) and calls one pass of it at
each tick. For ``ai`` with ``--ai-replies``, the agent's real OpenAI-compatible client talks to
a local recorded-replies server (``fake_llm``), the only stand-in, at the HTTP edge.
"""

from __future__ import annotations

import os
from typing import Any

from .policies import Policy

TICK_NAMES = ("tick", "step", "run_once", "wake", "once")


def _agent(name: str) -> Any:
    import importlib

    for mod in ("hotcb.agent", f"hotcb.agent.{name.lower()}", "hotcb.agent.rules", "hotcb.agent.llm",
                "hotcb.agent.autopilot"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        if hasattr(m, name):
            return getattr(m, name)
    raise RuntimeError(f"hotcb.agent has no {name} yet: the rules/ai policies need the agent layer "
                       "(pip install 'hotcb[agent]')")


def _tick(obj: Any, step: int) -> None:
    for name in TICK_NAMES:
        fn = getattr(obj, name, None)
        if callable(fn):
            fn()
            return
    raise RuntimeError(f"{type(obj).__name__} has none of {TICK_NAMES}")


class RulesPolicy(Policy):
    name, source = "rules", "rule"

    def start(self, step: int) -> None:
        self.pilot = _agent("RulesAutopilot")(self.tools("rules-autopilot"))

    def act(self, step: int) -> None:
        _tick(self.pilot, step)


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
        if not key:
            raise RuntimeError("the ai policy needs HOTCB_AI_KEY (or --ai-replies FILE for recorded replies)")
        model = self.options.get("ai_model") or os.environ.get("HOTCB_AI_MODEL") or "gpt-4o-mini"
        self.pilot = _agent("LLMAutopilot")(self.tools(model), api_key=key, base_url=base_url, model=model)

    def act(self, step: int) -> None:
        _tick(self.pilot, step)

    def usage(self) -> dict[str, Any]:
        pilot = getattr(self, "pilot", None)
        u = getattr(pilot, "usage", None)
        u = u() if callable(u) else (u or {})
        return {"llm_calls": int(u.get("calls", 0)), "tokens": int(u.get("tokens", 0)),
                "cost_usd": float(u.get("cost_usd", 0.0))}

    def close(self) -> None:
        if getattr(self, "_server", None) is not None:
            self._server.__exit__(None, None, None)
