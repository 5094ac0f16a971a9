"""The autopilot process's own channel as an MCP client: ``autopilot_process``.

``AutopilotProcessTools`` is one tool, ``autopilot_process`` (record an alert, read/write the AI
memory, say who the call acts as). It is served only by a server started for the autopilot
process (``hotcb mcp RUN --for-autopilot``, ``HotcbTools(..., for_autopilot=True)``): no
ordinary server, the dashboard or the LLM ever sees it. On such a server a call may also name
its identity in the request's ``_meta`` (``META_SOURCE`` = ``rule`` or ``agent``, never
``human``; ``META_ACTOR`` = the rule id or the model name), so the rules and the LLM keep their
own ledger labels over one connection, under the same guard.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from hotcb.vocabulary import Source

from .registry import StrictInput, ToolError
from .tools_alerts import Alert, AlertTools
from .tools_autopilot_mode import AutopilotModeTools
from .tools_base import ToolContext, ToolGroup

# Request ``_meta`` keys a --for-autopilot server reads: who one call acts as.
META_SOURCE = "hotcb/source"
META_ACTOR = "hotcb/actor"
# Identities the autopilot *process* may act as over the tools: never human, and not tune,
# which acts inside the kernel (a ledger counts all three as the autopilot's actions).
AUTOPILOT_PROCESS_SOURCES = (Source.RULE.value, Source.AGENT.value)
MAX_AI_STATE_CHARS = 512_000


class AlertIn(StrictInput):
    """An alert the autopilot process records (a rule finding, an alert rule, API health)."""

    rule: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=80)
    message: str = Field(min_length=1, max_length=4000)
    metric: str | None = Field(None, max_length=200)
    severity: Literal["info", "warning", "critical"] = "warning"
    value: float | int | str | bool | None = None
    step: int | None = Field(None, ge=0)


class AutopilotProcessInput(StrictInput):
    action: Literal["whoami", "record_alert", "load_state", "save_state"] = Field(
        description="whoami: the identity this call acts as; record_alert: append an alert; "
                    "load_state / save_state: the LLM autopilot's memory (hotcb.ai.state.json)")
    alert: AlertIn | None = Field(None, description="record_alert: the alert")
    state: dict[str, Any] | None = Field(None, description="save_state: the whole new AI state")

    @field_validator("state")
    @classmethod
    def _small(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(json.dumps(v, default=str)) > MAX_AI_STATE_CHARS:
            raise ValueError(f"the AI state is limited to {MAX_AI_STATE_CHARS} characters of JSON")
        return v


class AutopilotProcessOutput(BaseModel):
    action: str
    source: str = Field(description="the source this call acted as")
    actor: str | None = None
    alert: Alert | None = None
    state: dict[str, Any] | None = None


class AutopilotProcessTools(ToolGroup):
    """The autopilot process's own channel over MCP (``hotcb mcp --for-autopilot``): it records
    through the alerts group and keeps the memory through the mode group of the same context."""

    def __init__(self, ctx: ToolContext, alerts: AlertTools, mode: AutopilotModeTools):
        super().__init__(ctx)
        self.alerts = alerts
        self.mode = mode

    def autopilot_process(self, args: AutopilotProcessInput) -> AutopilotProcessOutput:
        """For the hotcb autopilot process only (servers started with --for-autopilot): record an
        alert, read or write the LLM autopilot's memory, or report which identity a call acts as.
        Alerts notify and never change the run; the memory is written by the agent identity only."""
        if self.source not in AUTOPILOT_PROCESS_SOURCES:
            raise ToolError(f"autopilot_process is for the autopilot's own identities {AUTOPILOT_PROCESS_SOURCES} "
                            f"(this caller is {self.source!r})")
        out = AutopilotProcessOutput(action=args.action, source=self.source, actor=self.current_actor())
        if args.action == "record_alert":
            if args.alert is None:
                raise ToolError("record_alert needs alert {rule, kind, message, ...}")
            out.alert = self.alerts.record_alert(**args.alert.model_dump())
        elif args.action == "load_state":
            out.state = self.mode.load_ai_state()
        elif args.action == "save_state":
            if args.state is None:
                raise ToolError("save_state needs state (the whole AI state object)")
            if self.source != "agent":
                raise ToolError(f"only the LLM autopilot (source 'agent') writes its memory; this call is {self.source!r}")
            self.mode.save_ai_state(args.state)
        return out
