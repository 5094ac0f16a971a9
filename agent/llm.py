"""The LLM autopilot: an OpenAI-compatible chat-completions tool-calling loop over the tool surface.

The model sees the tool surface's own schemas (``ToolSpec.openai_function()``) for a small set of
tools, and every call it makes goes through ``HotcbTools.call`` (source ``agent``, actor the model
name): the guard judges it and the kernel records it. Anything malformed (bad JSON, unknown tool,
absurd values) is refused, told to the model, and recorded; nothing raises out of ``wake``.

Transient API errors (429, 5xx, timeouts, connection errors) are retried with tenacity (the SDK's
own retries are off); when the API stays down, the rules autopilot runs instead until a probe
succeeds, and the switch is recorded in the AI state and as an alert. At the budget cap it stops
calling. Memory (usage, API health, the model's notes) lives in ``hotcb.ai.state.json``, written
through the tools' ``save_ai_state``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hotcb.mcp_server.registry import TOOLS, ToolError
from hotcb.prompts import load
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from hotcb.jsonl import dumps

from . import digest
from .budget import Budget
from .config import RulesConfig
from .rules import RulesAutopilot

log = logging.getLogger("hotcb.agent.llm")

# The tools the model gets: enough to observe and act, few enough to keep each request small
# (schemas are re-sent with every request). Alerts, recent changes and pending proposals come in
# the wake's digest, so read_ledger/list_alerts are left out (~350 tokens per request saved).
AI_TOOLS = ("get_status", "read_trends", "describe_actuators", "apply_op")
MAX_TOOL_RESULT_CHARS = 4000
MAX_NOTES = 20
MAX_REFUSALS = 50


def is_transient(e: BaseException) -> bool:
    import openai

    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                      openai.InternalServerError)):
        return True
    return isinstance(e, openai.APIStatusError) and (e.status_code >= 500 or e.status_code in (408, 409, 429))


class LLMAutopilot:
    """``LLMAutopilot(HotcbTools(run, source="agent", actor=model), api_key=..., model=...).tick()``."""

    def __init__(self, tools: Any, *, api_key: str | None, base_url: str | None = None, model: str = "gpt-4o-mini",
                 mode: str = "ai_auto", max_tool_calls: int = 6, max_rounds: int = 4, timeout_s: float = 60.0,
                 retries: int = 3, retry_wait_s: float = 1.0, probe_s: float = 60.0, budget: Budget | None = None,
                 rules: RulesConfig | None = None, fallback: Any = None, client: Any = None,
                 rule_tools: Any = None):
        if mode not in ("ai_auto", "ai_suggest"):
            raise ValueError("LLM mode is ai_auto or ai_suggest")
        self.tools = tools
        self.model = model
        self.mode = mode
        self.base_url = base_url
        self.max_tool_calls = max_tool_calls
        self.max_rounds = max_rounds
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.probe_s = probe_s
        self.budget = budget or Budget()
        self._client = client
        self._api_key = api_key or "none"  # ollama/vLLM accept any key; the SDK insists on one
        self._rules_cfg = rules
        self._fallback = fallback
        self._rule_tools = rule_tools  # the rules' own identity (source rule), e.g. over the same MCP server
        state = tools.load_ai_state()
        if state.get("model") == model:
            self.budget.restore(state.get("usage"))  # a restarted autopilot keeps its spend
        self.state: dict[str, Any] = {
            "model": model, "base_url": base_url, "mode": mode, "wakes": int(state.get("wakes", 0)),
            "reasonings": list(state.get("reasonings") or [])[-MAX_NOTES:],
            "refusals": list(state.get("refusals") or [])[-MAX_REFUSALS:],
            "api": {"state": "unknown"}, "last_wake": state.get("last_wake"),
            "budget_alerted": bool(state.get("budget_alerted")) and state.get("model") == model,
        }
        self._down_since: float | None = None
        self._last_alert_ts = 0.0
        self.tool_specs = [TOOLS[n].openai_function() for n in AI_TOOLS if n in TOOLS]

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0,
                                         timeout=self.timeout_s)
        return self._client

    def fallback(self) -> RulesAutopilot:
        if self._fallback is None:
            rule_tools = self._rule_tools
            if rule_tools is None:
                from hotcb.mcp_server.tools import HotcbTools

                # Rules act as themselves (source rule), not under the model's name.
                rule_tools = HotcbTools(self.tools.run.root, source="rule", actor="rules-fallback")
            self._fallback = RulesAutopilot(rule_tools, self._rules_cfg,
                                            mode="suggest" if self.mode == "ai_suggest" else "auto")
        return self._fallback

    def usage(self) -> dict[str, Any]:
        return self.budget.usage()

    def save(self) -> None:
        self.state.update(usage=self.budget.usage(), budget=self.budget.limits(),
                          budget_exhausted=self.budget.exhausted() is not None)
        try:
            self.tools.save_ai_state(self.state)
        except Exception as e:  # noqa: BLE001 - a disk error or an unreachable MCP server; the wake goes on
            log.warning("could not save the AI state: %s", e)

    def _alert(self, kind: str, message: str, severity: str = "warning") -> None:
        try:
            self.tools.record_alert(rule=f"autopilot_{kind}", kind=kind, message=message, severity=severity)
        except Exception as e:  # noqa: BLE001 - an alert that cannot be written is logged, no more
            log.warning("could not record alert: %s", e)

    def _refuse(self, kind: str, tool: str | None, detail: str) -> str:
        self.state["refusals"] = (self.state["refusals"] + [{"ts": time.time(), "kind": kind, "tool": tool,
                                                             "detail": detail[:300]}])[-MAX_REFUSALS:]
        return f"refused ({kind}): {detail}"

    # ------------------------------------------------------------------ one wake
    def tick(self) -> dict[str, Any]:
        return self.wake("cadence")

    def wake(self, why: str = "cadence", alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """One wake: a bounded tool-calling conversation, or the rules while the API is down or
        the budget is spent. Returns what happened. Never raises."""
        try:
            return self._wake(why, alerts or [])
        except Exception as e:  # noqa: BLE001 - the autopilot never takes training down
            log.warning("LLM wake failed: %s: %s", type(e).__name__, e)
            self.state["api"] = {**self.state.get("api", {}), "error": f"{type(e).__name__}: {e}"[:300]}
            self.save()
            return {"outcome": "error", "error": str(e)}

    def _wake(self, why: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        spent = self.budget.exhausted()
        if spent:
            if not self.state.get("budget_alerted"):
                self.state["budget_alerted"] = True
                self._alert("budget", f"LLM autopilot stopped calling {self.model}: {spent}; rules run instead")
            self.state["api"] = {**self.state["api"], "fallback": "rules (budget spent)"}
            self.fallback().tick()
            self.save()
            return {"outcome": "budget_exhausted", "reason": spent}
        if self._down_since is not None and time.monotonic() - self._down_since < self.probe_s:
            self.fallback().tick()  # the API is down: rules keep the run safe until the next probe
            return {"outcome": "fallback"}
        self.state["wakes"] += 1
        self.state["last_wake"] = time.time()
        notes = [r.get("text", "") for r in self.state["reasonings"]]
        system = load("autopilot_system").render() + "\n" + load(f"autopilot_{self.mode}").render()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": digest.build(self.tools, why=why, alerts=alerts, notes=notes)},
        ]
        calls_made, actions = 0, []
        for _ in range(self.max_rounds):
            if self.budget.exhausted():
                break
            resp = self._complete(messages)
            if resp is None:
                self.fallback().tick()
                self.save()
                return {"outcome": "api_down", "error": self.state["api"].get("error")}
            msg = resp.choices[0].message if getattr(resp, "choices", None) else None
            if msg is None:
                break
            tool_calls = list(getattr(msg, "tool_calls", None) or [])
            if not tool_calls:
                if msg.content:
                    self._note(msg.content)
                break
            messages.append({"role": "assistant", "content": msg.content or "", "tool_calls": [
                {"id": tc.id, "type": "function",
                 "function": {"name": tc.function.name, "arguments": tc.function.arguments or ""}}
                for tc in tool_calls]})
            for tc in tool_calls:
                if calls_made >= self.max_tool_calls:
                    result = self._refuse("limit", tc.function.name, f"at most {self.max_tool_calls} tool calls per wake")
                else:
                    calls_made += 1
                    result = self._run_tool(tc.function.name, tc.function.arguments, actions)
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": result[:MAX_TOOL_RESULT_CHARS]})
            if calls_made >= self.max_tool_calls:
                break
        self.save()
        return {"outcome": "ok", "tool_calls": calls_made, "actions": actions}

    def _note(self, text: str) -> None:
        step = None
        try:
            step = self.tools.status_doc().get("step")
        except Exception:  # noqa: BLE001
            pass
        self.state["reasonings"] = (self.state["reasonings"] + [{"ts": time.time(), "step": step,
                                                                 "text": text.strip()[:600]}])[-MAX_NOTES:]

    def _complete(self, messages: list[dict[str, Any]]) -> Any:
        """One chat completion with retries; None (and the API marked down) when it cannot be had."""
        import openai

        attempts = {"n": 0}

        def before(_: Any) -> None:
            attempts["n"] += 1
            if attempts["n"] > 1:
                self.state["api"] = {"state": "degraded", "error": self.state["api"].get("error"),
                                     "since": time.time()}

        try:
            for attempt in Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                                    wait=wait_exponential(multiplier=self.retry_wait_s, max=30 * self.retry_wait_s),
                                    retry=retry_if_exception(is_transient), before=before):
                with attempt:
                    try:
                        resp = self.client.chat.completions.create(
                            model=self.model, messages=messages, tools=self.tool_specs, tool_choice="auto")
                    except openai.APIError as e:
                        self.state["api"] = {**self.state["api"], "error": f"{type(e).__name__}: {e}"[:300]}
                        raise
        except Exception as e:  # noqa: BLE001 - any failure of the API is a fallback, never a crash
            was_down = self._down_since is not None
            self._down_since = time.monotonic()
            self.state["api"] = {"state": "down", "error": f"{type(e).__name__}: {e}"[:300], "since": time.time(),
                                 "fallback": "rules"}
            if not was_down:
                self._alert("api_down", f"LLM API unreachable ({type(e).__name__}); the rules autopilot runs "
                                        f"instead until it answers again", severity="critical")
            return None
        if self._down_since is not None:
            self._alert("api_up", f"LLM API answers again; {self.model} resumes", severity="info")
        self._down_since = None
        self.state["api"] = {"state": "ok", "since": time.time()} if attempts["n"] <= 1 else \
            {"state": "ok", "since": time.time(), "recovered_after_retries": attempts["n"] - 1}
        u = getattr(resp, "usage", None)
        self.budget.add(self.model, getattr(u, "prompt_tokens", 0) or 0, getattr(u, "completion_tokens", 0) or 0)
        return resp

    def _run_tool(self, name: str, raw_args: str | None, actions: list[dict[str, Any]]) -> str:
        if name not in AI_TOOLS:
            return self._refuse("unknown_tool", name, f"no tool {name!r}; tools: {', '.join(AI_TOOLS)}")
        try:
            args = json.loads(raw_args or "{}")
        except (ValueError, RecursionError) as e:
            return self._refuse("bad_json", name, f"arguments are not JSON: {e}")
        if not isinstance(args, dict):
            return self._refuse("bad_json", name, "arguments must be a JSON object")
        if name == "apply_op" and self.mode == "ai_suggest":
            op = {k: v for k, v in args.items() if k in ("module", "op", "params", "id", "target", "reason")}
            name, args = "propose_op", {"op": op, "reason": str(args.get("reason") or "proposed by the autopilot")}
        try:
            out = self.tools.call(name, args)
        except ToolError as e:
            # A guard refusal of apply_op is already in the ledger (the kernel records it).
            return self._refuse("tool_error", name, str(e))
        except ConnectionError as e:  # the MCP server (when the tools are remote) did not answer
            return self._refuse("unreachable", name, str(e))
        except Exception as e:  # noqa: BLE001 - a tool crash is reported to the model, not raised
            return self._refuse("tool_crash", name, f"{type(e).__name__}: {e}")
        if name in ("apply_op", "propose_op"):
            actions.append({"tool": name, "args": args, "result": {k: out.get(k) for k in
                                                                   ("cmd_id", "decision", "proposal_id", "status")}})
        return dumps(out)  # non-finite numbers as "nan"/"inf" strings: valid JSON for the model
