"""One tool call the model made: checked, sent through the tool surface, answered in text.

The model names the tool and writes its arguments, so both are hostile input: an unknown tool,
arguments that are not a JSON object, a call outside what the model is offered
(``offered_tools.check``), an op on a run that has ended, or a veto or a reason that is not the
model's own (``Stances``) is refused before anything is sent, recorded in the memory, and told to
the model. What is sent goes through ``tools.call`` (source ``agent``), where the guard judges it
and the kernel records it; under ``ai_suggest`` an op becomes a proposal. A change equal to the
knob's current value is not sent at all (and not counted as a refusal).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hotcb.agent.llm import offered_tools
from hotcb.agent.llm.memory import AiMemory
from hotcb.agent.llm.stance import Stances
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools_protocol import AutopilotTools

from hotcb.jsonl_write import dumps

AI_TOOLS = offered_tools.OFFERED

Knobs = dict[tuple[Any, Any], Any]  # (module, key) -> the value the model last saw


def canonical(raw: str | None) -> str:
    """A call's arguments in one spelling, so the same call twice is recognised."""
    try:
        return json.dumps(json.loads(raw or "{}"), sort_keys=True)
    except (ValueError, RecursionError):
        return raw or ""


class ToolCaller:
    """Runs the model's calls for one autopilot: ``ToolCaller(tools, memory, mode=..., scrub=...,
    run_over=...)``; ``run(...)`` returns the text the model is shown."""

    def __init__(self, tools: AutopilotTools, memory: AiMemory, *, mode: str, scrub: Callable[[str], str],
                 run_over: Callable[[], str | None]):
        self.tools = tools
        self.memory = memory
        self.mode = mode
        self.scrub = scrub
        self.run_over = run_over

    def refuse(self, kind: str, tool: str | None, detail: str, stances: Stances | None = None) -> str:
        """Record a refusal of the model's call; the text the model is shown. With ``stances``,
        a reason later in this wake that parrots it is no reason."""
        detail = self.scrub(detail)
        self.memory.refused(kind, tool, detail)
        out = f"refused ({kind}): {detail}"
        if stances is not None:
            stances.see(out)
        return out

    def count_op(self, out: dict[str, Any] | None) -> None:
        """An op the model sent: applied (or proposed) or refused (None: refused by the guard)."""
        stats = self.memory.stats
        decision = (out or {}).get("decision")
        if out is not None and (decision == "applied" or (decision is None and out.get("proposal_id"))):
            stats["ops_applied"] += 1  # a proposal, under ai_suggest, counts as the op it proposes
        elif decision not in ("queued", "pending"):
            stats["ops_refused"] += 1

    def run(self, name: str, raw_args: str | None, actions: list[dict[str, Any]],
            knobs: Knobs, stances: Stances, snapshots: int, *, rescue: bool) -> str:
        checked = self._checked(name, raw_args, knobs, stances, snapshots, rescue=rescue)
        if isinstance(checked, str):  # refused, or not sent: what the model is told
            return checked
        name, args, same = checked
        if name == "apply_op" and self.mode == "ai_suggest":
            op = {k: v for k, v in args.items() if k in ("module", "op", "params", "reason")}
            name, args = "propose_op", {"op": op, "reason": str(args.get("reason"))}
        out = self._send(name, args, stances)
        if isinstance(out, str):
            return out
        if name in ("apply_op", "propose_op"):
            actions.append({"tool": name, "args": args, "result": {k: out.get(k) for k in
                                                                   ("cmd_id", "decision", "proposal_id", "status")}})
            self.count_op(out)
            if out.get("decision") == "applied":
                for k, v in (args.get("params") or {}).items():
                    knobs[(args.get("module"), k)] = v  # a later op this wake compares against the new value
        note = f" (also not sent, unchanged: {', '.join(same)})" if same else ""
        return dumps(out) + note  # non-finite numbers as "nan"/"inf" strings: valid JSON for the model

    def _arguments(self, name: str, raw_args: str | None) -> dict[str, Any] | str:
        """The call's arguments as an object, or the refusal of a tool or text that is not one."""
        if name not in AI_TOOLS:
            return self.refuse("unknown_tool", name, f"no tool {name!r}; tools: {', '.join(AI_TOOLS)}")
        try:
            args = json.loads(raw_args or "{}")
        except (ValueError, RecursionError) as e:
            return self.refuse("bad_json", name, f"arguments are not JSON: {e}")
        if not isinstance(args, dict):
            return self.refuse("bad_json", name, "arguments must be a JSON object")
        return args

    def _checked(self, name: str, raw_args: str | None, knobs: Knobs, stances: Stances, snapshots: int, *,
                 rescue: bool) -> tuple[str, dict[str, Any], list[str]] | str:
        """The call as it will be sent (name, arguments with the stance's label on the reason, the
        knobs left out as unchanged), or the text of its early refusal: one per way it can be wrong,
        each recorded with its reason."""
        parsed = self._arguments(name, raw_args)
        if isinstance(parsed, str):
            return parsed
        refusal, args, same = offered_tools.check(name, parsed, knobs, snapshots, rescue=rescue)
        if same and refusal:
            self.memory.stats["unchanged"] += 1
            return f"not sent: {refusal}"
        if refusal:
            return self.refuse("not_offered", name, refusal, stances)
        if name != "apply_op":
            return name, args, same
        over = self.run_over()
        if over:
            return self.refuse("run_over", name, f"{over}: no op is sent to a run that has ended")
        veto = stances.refusal(args)
        if veto:
            self.memory.stats["ops_refused"] += 1
            stances.acted = True
            return self.refuse("veto_reason" if stances.vetoed(args) else "copied_reason", name, veto, stances)
        args["reason"] = stances.label(args)
        return name, args, same

    def _send(self, name: str, args: dict[str, Any], stances: Stances) -> dict[str, Any] | str:
        """What the tool answered, or the refusal the model is shown when it raised."""
        try:
            return self.tools.call(name, args)
        except ToolError as e:
            # A guard refusal of apply_op is already in the ledger (the kernel records it).
            if name in ("apply_op", "propose_op"):
                self.count_op(None)
            return self.refuse("tool_error", name, str(e), stances)
        except ConnectionError as e:  # the MCP server (when the tools are remote) did not answer
            return self.refuse("unreachable", name, str(e))
        except Exception as e:
            return self.refuse("tool_crash", name, f"{type(e).__name__}: {e}")
