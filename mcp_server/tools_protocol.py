"""``Tools``: the tool surface as typed methods, one per tool of the catalog, each taking that
tool's input model and returning its output model; ``AutopilotTools`` adds what the autopilot's
process reads and writes besides tools.

Two implementations: ``HotcbTools`` runs the tools in process over a run directory, and
``agent.mcp_client.backend.McpTools`` calls them over MCP (the structured result validated into the same
output model). Both subclass ``Tools`` and supply only ``invoke``; the typed methods here are
the rest, so a caller written against ``Tools`` runs unchanged on either, and renaming a field of
an output model fails the type check at every reader instead of the autopilot at run time.

``tests/mcp_server/test_tool_catalog.py`` checks these methods against ``catalog.CATALOG``: every
tool, its input model and its output model, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from .registry import InvalidArguments
from .schemas import Empty
from .tools_alerts import Alert, AlertRulesInput, AlertRulesOutput, AlertsOutput, ListAlertsInput
from .tools_autopilot import AutopilotProcessInput, AutopilotProcessOutput
from .tools_autopilot_mode import AutopilotInput, AutopilotOutput
from .tools_knobs import ApplyOpInput, ApplyOpOutput, DescribeOutput, LockInput
from .tools_observe import (
    LedgerInput,
    LedgerOutput,
    MetricsInput,
    MetricsOutput,
    StatusOutput,
    TrendsInput,
    TrendsOutput,
)
from .tools_proposals import (
    DecideInput,
    DecideOutput,
    ListProposalsInput,
    Proposal,
    ProposalsOutput,
    ProposeInput,
)
from .tools_replay import ReplayInput, ReplayOutput, ScheduleInput, ScheduleOutput
from .tools_tune import TuneStatusInput, TuneStatusOutput

Out = TypeVar("Out", bound=BaseModel)
In = TypeVar("In", bound=BaseModel)
EMPTY = Empty()  # the input of the tools that take none


def tool_input(name: str, model: type[In], arguments: Mapping[str, Any] | None) -> In:
    """``arguments`` (data from a person, a model or a file) as tool ``name``'s input model; invalid
    ones raise the ``InvalidArguments`` the tool itself gives, never a pydantic error."""
    try:
        return model.model_validate(arguments or {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
        raise InvalidArguments(f"invalid arguments for {name}: {problems}") from None


class Tools(Protocol):
    """Every tool of the catalog as a method named after it. An implementation supplies
    ``invoke``; a refusal or invalid input raises ``ToolError`` whichever implementation runs."""

    def invoke(self, name: str, args: BaseModel, out: type[Out], *, actor: str | None = None) -> Out:
        """Run tool ``name`` with ``args`` (its input model); its result as ``out`` (its output model).
        ``actor`` names who asks for this one call (a rule's id); the source stays the caller's."""
        ...

    # ------------------------------------------------------------------ proposals and autopilot mode
    def propose_op(self, args: ProposeInput, *, actor: str | None = None) -> Proposal:
        return self.invoke("propose_op", args, Proposal, actor=actor)

    def list_proposals(self, args: ListProposalsInput, *, actor: str | None = None) -> ProposalsOutput:
        return self.invoke("list_proposals", args, ProposalsOutput, actor=actor)

    def decide_proposal(self, args: DecideInput, *, actor: str | None = None) -> DecideOutput:
        return self.invoke("decide_proposal", args, DecideOutput, actor=actor)

    def autopilot(self, args: AutopilotInput, *, actor: str | None = None) -> AutopilotOutput:
        return self.invoke("autopilot", args, AutopilotOutput, actor=actor)

    # ------------------------------------------------------------------ alerts, the autopilot's channel
    def list_alerts(self, args: ListAlertsInput, *, actor: str | None = None) -> AlertsOutput:
        return self.invoke("list_alerts", args, AlertsOutput, actor=actor)

    def set_alert_rules(self, args: AlertRulesInput, *, actor: str | None = None) -> AlertRulesOutput:
        return self.invoke("set_alert_rules", args, AlertRulesOutput, actor=actor)

    def autopilot_process(self, args: AutopilotProcessInput, *, actor: str | None = None) -> AutopilotProcessOutput:
        return self.invoke("autopilot_process", args, AutopilotProcessOutput, actor=actor)

    # ------------------------------------------------------------------ knobs
    def describe_actuators(self, args: Empty = EMPTY, *, actor: str | None = None) -> DescribeOutput:
        return self.invoke("describe_actuators", args, DescribeOutput, actor=actor)

    def apply_op(self, args: ApplyOpInput, *, actor: str | None = None) -> ApplyOpOutput:
        return self.invoke("apply_op", args, ApplyOpOutput, actor=actor)

    def lock_knobs(self, args: LockInput, *, actor: str | None = None) -> ApplyOpOutput:
        return self.invoke("lock_knobs", args, ApplyOpOutput, actor=actor)

    # ------------------------------------------------------------------ observing
    def get_status(self, args: Empty = EMPTY, *, actor: str | None = None) -> StatusOutput:
        return self.invoke("get_status", args, StatusOutput, actor=actor)

    def read_trends(self, args: TrendsInput, *, actor: str | None = None) -> TrendsOutput:
        return self.invoke("read_trends", args, TrendsOutput, actor=actor)

    def read_metrics(self, args: MetricsInput, *, actor: str | None = None) -> MetricsOutput:
        return self.invoke("read_metrics", args, MetricsOutput, actor=actor)

    def read_ledger(self, args: LedgerInput, *, actor: str | None = None) -> LedgerOutput:
        return self.invoke("read_ledger", args, LedgerOutput, actor=actor)

    # ------------------------------------------------------------------ replay, schedule, tune
    def replay(self, args: ReplayInput, *, actor: str | None = None) -> ReplayOutput:
        return self.invoke("replay", args, ReplayOutput, actor=actor)

    def schedule_op(self, args: ScheduleInput, *, actor: str | None = None) -> ScheduleOutput:
        return self.invoke("schedule_op", args, ScheduleOutput, actor=actor)

    def tune_status(self, args: TuneStatusInput, *, actor: str | None = None) -> TuneStatusOutput:
        return self.invoke("tune_status", args, TuneStatusOutput, actor=actor)


class AutopilotTools(Tools, Protocol):
    """``Tools`` plus what the autopilot's process reads and writes that is not a tool: the run's
    status file and liveness as the kernel wrote them, its alerts and the LLM's memory."""

    def status_doc(self) -> dict[str, Any]:
        """The status file as the kernel last wrote it ({} before it has)."""
        ...

    def liveness(self) -> dict[str, Any]:
        """``{"state": running|paused|stopped|dead|stale|absent, "reason": ...}``."""
        ...

    def record_alert(self, *, rule: str, kind: str, message: str, metric: str | None = None,
                     severity: str = "warning", value: Any = None, step: int | None = None) -> Alert:
        ...

    def load_ai_state(self) -> dict[str, Any]:
        ...

    def save_ai_state(self, state: dict[str, Any]) -> None:
        ...

    def call(self, name: str, arguments: dict[str, Any] | None = None, *, actor: str | None = None) -> dict[str, Any]:
        """Tool ``name`` by its name, for a caller that learns the name only at run time (the LLM's
        own tool calls); its output as the tool's JSON data. Everyone else calls the typed methods."""
        ...
