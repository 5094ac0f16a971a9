"""Autopilot tools: proposals, the autopilot mode, alerts and alert rules.

The agent (rules or LLM) and the dashboard share these, so a proposal an agent makes is the
same record a person approves, and an approval applies through ``submit`` (the guard, the
ledger) with the proposal's original source and actor plus ``approved_by``.

Files (all in the run directory, written only here):
- ``hotcb.proposals.jsonl``: append-only; a proposal record, then status records; the latest
  record per ``proposal_id`` wins (so concurrent writers never rewrite each other's lines).
- ``hotcb.autopilot.json``: the mode and who set it (atomic replace).
- ``hotcb.alerts.jsonl``: alerts, append-only. ``hotcb.alerts.json``: user alert rules.
- ``hotcb.ai.state.json``: the LLM autopilot's memory; written through ``save_ai_state``, a
  method that is deliberately not a tool of ``HotcbTools`` (no MCP client should rewrite the
  agent's memory).

The autopilot as an MCP client: ``AutopilotProcessTools`` adds one tool, ``autopilot_process``
(record an alert, read/write the AI memory, say who the call acts as). It is not a base of
``HotcbTools``, so no ordinary server, the dashboard or the LLM ever sees it; only a server
started for the autopilot process (``hotcb mcp RUN --for-autopilot``) serves it. On such a
server a call may also name its identity in the request's ``_meta`` (``META_SOURCE`` = ``rule``
or ``agent``, never ``human``; ``META_ACTOR`` = the rule id or the model name), so the rules
and the LLM keep their own ledger labels over one connection, under the same guard.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from hotcb.jsonl import append_line, read_all, read_json, write_json_atomic
from hotcb.rundir import AI_STATE, ALERT_RULES, ALERTS, AUTOPILOT, PROPOSALS

from .registry import StrictInput, ToolError, tool
from .schemas import OpSpec
from .tools_base import ToolsBase

MODES = ("off", "suggest", "auto", "ai_suggest", "ai_auto")
Mode = Literal["off", "suggest", "auto", "ai_suggest", "ai_auto"]
ProposalStatus = Literal["pending", "approved", "rejected", "failed", "expired"]
AlertKind = Literal["threshold", "plateau", "spike", "non_finite"]
MAX_REASONINGS_SHOWN = 5
# Request ``_meta`` keys a --for-autopilot server reads: who one call acts as.
META_SOURCE = "hotcb/source"
META_ACTOR = "hotcb/actor"
AUTOPILOT_SOURCES = ("rule", "agent")  # identities the autopilot process may take; never human
MAX_AI_STATE_CHARS = 512_000


# ---------------------------------------------------------------------------------- models
class Proposal(BaseModel):
    proposal_id: str
    ts: float
    step: int | None = None
    source: str
    actor: str | None = None
    op: OpSpec
    reason: str
    status: ProposalStatus = "pending"
    decided_by: str | None = None
    decided_ts: float | None = None
    note: str | None = None
    cmd_id: str | None = Field(None, description="the command an approval wrote")
    decision: str | None = Field(None, description="the kernel's ledger decision for that command")
    error: str | None = None


class ProposeInput(StrictInput):
    op: OpSpec = Field(description="the op to propose (same shape as apply_op)")
    reason: str = Field(min_length=1, max_length=2000, description="why; a human reads this before approving")


class ListProposalsInput(StrictInput):
    status: Literal["pending", "all"] = "pending"
    last: int = Field(20, ge=1, le=1000)


class ProposalsOutput(BaseModel):
    total: int
    pending: int
    proposals: list[Proposal]


class DecideInput(StrictInput):
    proposal_id: str
    decision: Literal["approve", "reject"]
    note: str | None = Field(None, max_length=2000)
    wait_s: float | None = Field(None, ge=0, le=120, description="seconds to wait for the kernel's decision")


class DecideOutput(BaseModel):
    proposal: Proposal
    applied: dict[str, Any] | None = Field(None, description="apply_op's result for an approval")


class AutopilotInput(StrictInput):
    action: Literal["get", "set"] = "get"
    mode: Mode | None = Field(None, description="off, suggest, auto (rules), ai_suggest, ai_auto (LLM)")
    reason: str | None = None


class AIStateSummary(BaseModel):
    model: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    budget: dict[str, Any] = {}
    budget_exhausted: bool = False
    api: str = Field("unknown", description="ok, degraded (retrying/falling back), down, or unknown")
    api_error: str | None = None
    fallback: str | None = Field(None, description="what runs instead while the API is down")
    last_wake: float | None = None
    reasonings: list[dict[str, Any]] = []
    refusals: int = 0


class AutopilotOutput(BaseModel):
    mode: Mode = "off"
    set_by: str | None = None
    set_source: str | None = None
    set_ts: float | None = None
    reason: str | None = None
    ai: AIStateSummary | None = None


class ListAlertsInput(StrictInput):
    last: int = Field(20, ge=1, le=1000)
    since_ts: float | None = None


class Alert(BaseModel):
    alert_id: str
    ts: float
    step: int | None = None
    rule: str
    kind: str
    metric: str | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str
    value: Any = None
    source: str | None = None
    actor: str | None = None


class AlertsOutput(BaseModel):
    total: int
    alerts: list[Alert]


class AlertRule(StrictInput):
    """One user alert: notifies, never acts."""

    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: AlertKind
    metric: str = Field(min_length=1, max_length=200)
    above: float | None = Field(None, description="threshold: alert when the last value is above this")
    below: float | None = Field(None, description="threshold: alert when the last value is below this")
    window: int = Field(50, ge=8, le=20000, description="points considered (plateau, spike)")
    plateau_rel: float = Field(0.01, gt=0, le=1, description="plateau: relative improvement below this")
    spike_factor: float = Field(3.0, gt=1, le=1e6, description="spike: last value above factor x window median")
    cooldown_steps: int = Field(100, ge=0, le=10_000_000)
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True

    @field_validator("above", "below")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("thresholds must be finite")
        return v


class AlertRulesInput(StrictInput):
    rules: list[AlertRule] | None = Field(None, description="the new rule set; omit to read the current one")
    replace: bool = Field(True, description="replace the rule set (true) or add/overwrite by id (false)")


class AlertRulesOutput(BaseModel):
    rules: list[AlertRule]
    set_by: str | None = None
    set_ts: float | None = None


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


# ---------------------------------------------------------------------------------- tools
class AutopilotTools(ToolsBase):
    # -- proposals ------------------------------------------------------------------------
    def _proposals(self) -> tuple[list[str], dict[str, Proposal]]:
        """Proposal ids in first-seen order, and each one's latest record (folded)."""
        order: list[str] = []
        latest: dict[str, dict[str, Any]] = {}
        for rec in read_all(self.run.root / PROPOSALS):
            if not isinstance(rec, dict) or not isinstance(rec.get("proposal_id"), str):
                continue
            pid = rec["proposal_id"]
            if pid not in latest:
                if "op" not in rec:
                    continue  # a status record for a proposal we never saw: ignore
                order.append(pid)
                latest[pid] = dict(rec)
            else:
                latest[pid].update({k: v for k, v in rec.items() if k != "op"})
        out: dict[str, Proposal] = {}
        for pid in order:
            try:
                out[pid] = Proposal.model_validate(latest[pid])
            except ValueError:
                continue  # a malformed line never breaks the listing
        return order, out

    @tool(ProposeInput, Proposal, read_only=False, title="Propose an op")
    def propose_op(self, args: ProposeInput) -> Proposal:
        """Propose an op for a human to approve instead of applying it (suggest modes). The guard's
        immediate checks run now so hopeless proposals are refused early; approval applies it later
        with your source and actor. Always give the reason a person needs to decide."""
        refusal = self.check_op(args.op, self.source)
        if refusal:
            raise ToolError(f"refused: {refusal}")
        op = args.op.model_copy(update={"reason": args.op.reason or args.reason})
        p = Proposal(proposal_id=uuid.uuid4().hex[:12], ts=time.time(), step=self.status_doc().get("step"),
                     source=self.source, actor=self.current_actor(), op=op, reason=args.reason)
        append_line(self.run.root / PROPOSALS, p.model_dump(mode="json", exclude_none=True))
        return p

    @tool(ListProposalsInput, ProposalsOutput, read_only=True, idempotent=True, title="List proposals")
    def list_proposals(self, args: ListProposalsInput) -> ProposalsOutput:
        """Proposals made by agents and rules: pending ones (default) or all, newest last."""
        order, props = self._proposals()
        rows = [props[p] for p in order if p in props]
        pending = [p for p in rows if p.status == "pending"]
        chosen = pending if args.status == "pending" else rows
        return ProposalsOutput(total=len(rows), pending=len(pending), proposals=chosen[-args.last:])

    @tool(DecideInput, DecideOutput, read_only=False, destructive=True, human_only=True, title="Decide a proposal")
    def decide_proposal(self, args: DecideInput) -> DecideOutput:
        """Humans only: approve (applies the op through the guard, recorded with the proposer as
        source/actor and you as approved_by) or reject (with a note) a pending proposal."""
        _, props = self._proposals()
        p = props.get(args.proposal_id)
        if p is None:
            raise ToolError(f"no proposal {args.proposal_id!r}")
        if p.status != "pending":
            raise ToolError(f"proposal {args.proposal_id} is already {p.status}")
        who = self.current_actor() or self.source
        base = {"proposal_id": p.proposal_id, "decided_by": who, "decided_ts": time.time(), "note": args.note}
        if args.decision == "reject":
            rec = {**base, "status": "rejected"}
            append_line(self.run.root / PROPOSALS, rec)
            return DecideOutput(proposal=p.model_copy(update=rec))
        # Record the approval before applying: if we die while waiting, the intent is on file
        # and the command (written by submit) is exactly-once in the kernel anyway.
        append_line(self.run.root / PROPOSALS, {**base, "status": "approved"})
        try:
            res = self.submit(p.op, source=p.source, actor=p.actor, wait_s=args.wait_s,
                              extra={"approved_by": who, "proposal_id": p.proposal_id})
        except ToolError as e:
            rec = {**base, "status": "failed", "error": str(e)}
            append_line(self.run.root / PROPOSALS, rec)
            raise ToolError(f"approved, but the op was not applied: {e}") from None
        rec = {**base, "status": "approved", "cmd_id": res["cmd_id"], "decision": res["decision"]}
        append_line(self.run.root / PROPOSALS, rec)
        applied = {**res, "changes": {k: (v.model_dump() if isinstance(v, BaseModel) else v)
                                      for k, v in (res.get("changes") or {}).items()}}
        return DecideOutput(proposal=p.model_copy(update=rec), applied=applied)

    # -- autopilot mode and AI state ------------------------------------------------------
    def autopilot_doc(self) -> dict[str, Any]:
        doc = read_json(self.run.root / AUTOPILOT)
        return doc if isinstance(doc, dict) else {}

    def load_ai_state(self) -> dict[str, Any]:
        doc = read_json(self.run.root / AI_STATE)
        return doc if isinstance(doc, dict) else {}

    def save_ai_state(self, state: dict[str, Any]) -> None:
        """Not a tool: the LLM autopilot's memory, replaced atomically. Only the agent calls it."""
        write_json_atomic(self.run.root / AI_STATE, state)

    def ai_summary(self) -> AIStateSummary | None:
        st = self.load_ai_state()
        if not st:
            return None
        usage = st.get("usage") or {}
        api = st.get("api") or {}
        return AIStateSummary(
            model=st.get("model"), calls=int(usage.get("calls", 0)),
            prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)),
            tokens=int(usage.get("tokens", 0)), cost_usd=float(usage.get("cost_usd", 0.0)),
            budget=st.get("budget") or {}, budget_exhausted=bool(st.get("budget_exhausted")),
            api=str(api.get("state", "unknown")), api_error=api.get("error"), fallback=api.get("fallback"),
            last_wake=st.get("last_wake"), reasonings=list(st.get("reasonings") or [])[-MAX_REASONINGS_SHOWN:],
            refusals=len(st.get("refusals") or []),
        )

    @tool(AutopilotInput, AutopilotOutput, read_only=False, idempotent=True, title="Autopilot mode")
    def autopilot(self, args: AutopilotInput) -> AutopilotOutput:
        """Get (default) or set the autopilot mode: off, suggest (rules propose), auto (rules act),
        ai_suggest (LLM proposes), ai_auto (LLM acts). get also returns the LLM's state: model,
        calls, tokens, cost, budget, API health and its last reasonings. Only humans may set."""
        if args.action == "set":
            if args.mode is None:
                raise ToolError("set needs a mode: " + ", ".join(MODES))
            if self.source != "human":
                # An agent must not grant itself more autonomy (or switch off a person's choice).
                raise ToolError(f"only a human may set the autopilot mode (this caller is {self.source!r})")
            doc = {"mode": args.mode, "set_by": self.current_actor() or self.source, "set_source": self.source,
                   "set_ts": time.time(), "reason": args.reason}
            write_json_atomic(self.run.root / AUTOPILOT, doc)
        doc = self.autopilot_doc()
        mode = doc.get("mode") if doc.get("mode") in MODES else "off"
        return AutopilotOutput(mode=mode, set_by=doc.get("set_by"), set_source=doc.get("set_source"),
                               set_ts=doc.get("set_ts"), reason=doc.get("reason"), ai=self.ai_summary())

    # -- alerts ---------------------------------------------------------------------------
    def record_alert(self, *, rule: str, kind: str, message: str, metric: str | None = None,
                     severity: str = "warning", value: Any = None, step: int | None = None) -> Alert:
        """Not a tool: the autopilot process (rules, alert rules, API health) records alerts here."""
        a = Alert(alert_id=uuid.uuid4().hex[:12], ts=time.time(),
                  step=step if step is not None else self.status_doc().get("step"), rule=rule, kind=kind,
                  metric=metric, severity=severity, message=message, value=value, source=self.source,  # type: ignore[arg-type]
                  actor=self.current_actor())
        append_line(self.run.root / ALERTS, a.model_dump(mode="json"))
        return a

    @tool(ListAlertsInput, AlertsOutput, read_only=True, idempotent=True, title="List alerts")
    def list_alerts(self, args: ListAlertsInput) -> AlertsOutput:
        """Alerts raised on this run (rules, user alert rules, autopilot API health), newest last."""
        rows = []
        for rec in read_all(self.run.root / ALERTS):
            if not isinstance(rec, dict):
                continue
            try:
                rows.append(Alert.model_validate(rec))
            except ValueError:
                continue
        total = len(rows)
        if args.since_ts is not None:
            rows = [a for a in rows if a.ts > args.since_ts]
        return AlertsOutput(total=total, alerts=rows[-args.last:])

    def alert_rules(self) -> AlertRulesOutput:
        doc = read_json(self.run.root / ALERT_RULES)
        doc = doc if isinstance(doc, dict) else {}
        rules = []
        for r in doc.get("rules") or []:
            try:
                rules.append(AlertRule.model_validate(r))
            except ValueError:
                continue  # a hand-edited bad rule is skipped, never fatal
        return AlertRulesOutput(rules=rules, set_by=doc.get("set_by"), set_ts=doc.get("set_ts"))

    @tool(AlertRulesInput, AlertRulesOutput, read_only=False, idempotent=True, title="Alert rules")
    def set_alert_rules(self, args: AlertRulesInput) -> AlertRulesOutput:
        """Read (no rules given) or set alert rules on any metric: threshold (above/below), plateau,
        spike (last value above spike_factor x the window median), non_finite. Alerts notify; they
        never change the run."""
        if args.rules is None:
            return self.alert_rules()
        for r in args.rules:
            if r.kind == "threshold" and r.above is None and r.below is None:
                raise ToolError(f"threshold rule {r.id!r} needs above or below")
        rules = {} if args.replace else {r.id: r for r in self.alert_rules().rules}
        rules.update({r.id: r for r in args.rules})
        doc = {"rules": [r.model_dump(mode="json") for r in rules.values()],
               "set_by": self.current_actor() or self.source, "set_ts": time.time()}
        write_json_atomic(self.run.root / ALERT_RULES, doc)
        return self.alert_rules()


class AutopilotProcessTools(AutopilotTools):
    """The autopilot process's own channel over MCP (``hotcb mcp --for-autopilot``). Not a base
    of ``HotcbTools``: ordinary servers, the dashboard and the LLM never see this tool."""

    @tool(AutopilotProcessInput, AutopilotProcessOutput, read_only=False, title="Autopilot process channel")
    def autopilot_process(self, args: AutopilotProcessInput) -> AutopilotProcessOutput:
        """For the hotcb autopilot process only (servers started with --for-autopilot): record an
        alert, read or write the LLM autopilot's memory, or report which identity a call acts as.
        Alerts notify and never change the run; the memory is written by the agent identity only."""
        if self.source not in AUTOPILOT_SOURCES:
            raise ToolError(f"autopilot_process is for the autopilot's own identities {AUTOPILOT_SOURCES} "
                            f"(this caller is {self.source!r})")
        out = AutopilotProcessOutput(action=args.action, source=self.source, actor=self.current_actor())
        if args.action == "record_alert":
            if args.alert is None:
                raise ToolError("record_alert needs alert {rule, kind, message, ...}")
            out.alert = self.record_alert(**args.alert.model_dump())
        elif args.action == "load_state":
            out.state = self.load_ai_state()
        elif args.action == "save_state":
            if args.state is None:
                raise ToolError("save_state needs state (the whole AI state object)")
            if self.source != "agent":
                raise ToolError(f"only the LLM autopilot (source 'agent') writes its memory; this call is {self.source!r}")
            self.save_ai_state(args.state)
        return out
