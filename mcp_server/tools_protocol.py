"""``Tools``: the tool surface as typed methods, one per tool of the catalog, each taking that
tool's input model and returning its output model; ``AutopilotTools`` adds what the autopilot's
process reads and writes besides tools.

Two implementations: ``HotcbTools`` runs the tools in process over a run directory, and
``agent.mcp_tools.McpTools`` calls them over MCP (the structured result validated into the same
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

    def invoke(self, name: str, args: BaseModel, out: type[Out]) -> Out:
        """Run tool ``name`` with ``args`` (its input model); its result as ``out`` (its output model)."""
        ...

    # ------------------------------------------------------------------ proposals and autopilot mode
    def propose_op(self, args: ProposeInput) -> Proposal:
        return self.invoke("propose_op", args, Proposal)

    def list_proposals(self, args: ListProposalsInput) -> ProposalsOutput:
        return self.invoke("list_proposals", args, ProposalsOutput)

    def decide_proposal(self, args: DecideInput) -> DecideOutput:
        return self.invoke("decide_proposal", args, DecideOutput)

    def autopilot(self, args: AutopilotInput) -> AutopilotOutput:
        return self.invoke("autopilot", args, AutopilotOutput)

    # ------------------------------------------------------------------ alerts, the autopilot's channel
    def list_alerts(self, args: ListAlertsInput) -> AlertsOutput:
        return self.invoke("list_alerts", args, AlertsOutput)

    def set_alert_rules(self, args: AlertRulesInput) -> AlertRulesOutput:
        return self.invoke("set_alert_rules", args, AlertRulesOutput)

    def autopilot_process(self, args: AutopilotProcessInput) -> AutopilotProcessOutput:
        return self.invoke("autopilot_process", args, AutopilotProcessOutput)

    # ------------------------------------------------------------------ knobs
    def describe_actuators(self, args: Empty = EMPTY) -> DescribeOutput:
        return self.invoke("describe_actuators", args, DescribeOutput)

    def apply_op(self, args: ApplyOpInput) -> ApplyOpOutput:
        return self.invoke("apply_op", args, ApplyOpOutput)

    def lock_knobs(self, args: LockInput) -> ApplyOpOutput:
        return self.invoke("lock_knobs", args, ApplyOpOutput)

    # ------------------------------------------------------------------ observing
    def get_status(self, args: Empty = EMPTY) -> StatusOutput:
        return self.invoke("get_status", args, StatusOutput)

    def read_trends(self, args: TrendsInput) -> TrendsOutput:
        return self.invoke("read_trends", args, TrendsOutput)

    def read_metrics(self, args: MetricsInput) -> MetricsOutput:
        return self.invoke("read_metrics", args, MetricsOutput)

    def read_ledger(self, args: LedgerInput) -> LedgerOutput:
        return self.invoke("read_ledger", args, LedgerOutput)

    # ------------------------------------------------------------------ replay, schedule, tune
    def replay(self, args: ReplayInput) -> ReplayOutput:
        return self.invoke("replay", args, ReplayOutput)

    def schedule_op(self, args: ScheduleInput) -> ScheduleOutput:
        return self.invoke("schedule_op", args, ScheduleOutput)

    def tune_status(self, args: TuneStatusInput) -> TuneStatusOutput:
        return self.invoke("tune_status", args, TuneStatusOutput)


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
