"""Every tool, once, in the order clients list them: name, group, input and output models,
annotations, profile and audience. The MCP binding, the dashboard API, the agent's function
schemas and docs/mcp.md's table are all generated from this list (``python -m
hotcb.mcp_server.tool_docs --write`` after changing it or a tool's docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .registry import ToolSpec
from .schemas import Empty
from .tools_alerts import AlertRulesInput, AlertRulesOutput, AlertsOutput, AlertTools, ListAlertsInput
from .tools_autopilot import AutopilotProcessInput, AutopilotProcessOutput, AutopilotProcessTools
from .tools_autopilot_mode import AutopilotInput, AutopilotModeTools, AutopilotOutput
from .tools_knobs import ApplyOpInput, ApplyOpOutput, DescribeOutput, KnobTools, LockInput
from .tools_observe import (
    LedgerInput,
    LedgerOutput,
    MetricsInput,
    MetricsOutput,
    ObserveTools,
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
    ProposalTools,
    ProposeInput,
)
from .tools_replay import ReplayInput, ReplayOutput, ReplayTools, ScheduleInput, ScheduleOutput
from .tools_tune import TuneStatusInput, TuneStatusOutput, TuneTools

CATALOG: tuple[ToolSpec, ...] = (
    ToolSpec("propose_op", ProposalTools, ProposeInput, Proposal, read_only=False, profile="control",
             title="Propose an op"),
    ToolSpec("list_proposals", ProposalTools, ListProposalsInput, ProposalsOutput, read_only=True,
             profile="observe", idempotent=True, title="List proposals"),
    ToolSpec("decide_proposal", ProposalTools, DecideInput, DecideOutput, read_only=False, profile="all",
             destructive=True, audience="human", title="Decide a proposal"),
    ToolSpec("autopilot", AutopilotModeTools, AutopilotInput, AutopilotOutput, read_only=False, profile="all",
             idempotent=True, title="Autopilot mode"),
    ToolSpec("list_alerts", AlertTools, ListAlertsInput, AlertsOutput, read_only=True, profile="observe",
             idempotent=True, title="List alerts"),
    # destructive: its default (replace) drops every rule not given
    ToolSpec("set_alert_rules", AlertTools, AlertRulesInput, AlertRulesOutput, read_only=False, profile="all",
             destructive=True, idempotent=True, title="Alert rules"),
    ToolSpec("autopilot_process", AutopilotProcessTools, AutopilotProcessInput, AutopilotProcessOutput,
             read_only=False, profile="all", audience="autopilot", title="Autopilot process channel"),
    ToolSpec("describe_actuators", KnobTools, Empty, DescribeOutput, read_only=True, profile="observe",
             idempotent=True, title="Describe knobs"),
    ToolSpec("apply_op", KnobTools, ApplyOpInput, ApplyOpOutput, read_only=False, profile="control",
             destructive=True, title="Apply an op"),
    ToolSpec("lock_knobs", KnobTools, LockInput, ApplyOpOutput, read_only=False, profile="all",
             audience="human", title="Lock knobs"),
    ToolSpec("get_status", ObserveTools, Empty, StatusOutput, read_only=True, profile="observe",
             idempotent=True, title="Run status"),
    ToolSpec("read_trends", ObserveTools, TrendsInput, TrendsOutput, read_only=True, profile="observe",
             idempotent=True, title="Read trends"),
    ToolSpec("read_metrics", ObserveTools, MetricsInput, MetricsOutput, read_only=True, profile="observe",
             idempotent=True, title="Read metrics"),
    ToolSpec("read_ledger", ObserveTools, LedgerInput, LedgerOutput, read_only=True, profile="observe",
             idempotent=True, title="Read the ledger"),
    ToolSpec("replay", ReplayTools, ReplayInput, ReplayOutput, read_only=False, profile="all",
             destructive=True, title="Replay recipes"),
    ToolSpec("schedule_op", ReplayTools, ScheduleInput, ScheduleOutput, read_only=False, profile="control",
             destructive=True, title="Schedule ops"),
    ToolSpec("tune_status", TuneTools, TuneStatusInput, TuneStatusOutput, read_only=True, profile="observe",
             idempotent=True, title="Tune status"),
)

TOOLS: Mapping[str, ToolSpec] = MappingProxyType({s.name: s for s in CATALOG})
if len(TOOLS) != len(CATALOG):
    raise RuntimeError("two tools of the catalog share a name")


def served(*, human: bool, for_autopilot: bool = False) -> list[ToolSpec]:
    """The tools a caller is served, in catalog order: people get theirs, the autopilot
    process's server its channel; everyone else the rest."""
    return [s for s in CATALOG
            if s.audience == "everyone" or (s.audience == "human" and human)
            or (s.audience == "autopilot" and for_autopilot)]
