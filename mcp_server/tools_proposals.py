"""Proposals: an agent (rules or LLM) proposes an op, a person approves or rejects it.

The agent and the dashboard share these, so a proposal an agent makes is the same record a
person approves, and an approval applies through ``submit`` (the guard, the ledger) with the
proposal's original source and actor plus ``approved_by``.

File (in the run directory, written only here): ``hotcb.proposals.jsonl``: append-only; a
proposal record, then status records; the latest record per ``proposal_id`` wins (so
concurrent writers never rewrite each other's lines).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.rundir import PROPOSALS

from .registry import StrictInput, ToolError
from .schemas import OpSpec
from .tools_base import ToolGroup, refusal_error

ProposalStatus = Literal["pending", "approved", "rejected", "failed", "expired"]


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


class ProposalTools(ToolGroup):
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

    def propose_op(self, args: ProposeInput) -> Proposal:
        """Propose an op for a human to approve instead of applying it (suggest modes). The guard's
        immediate checks run now so hopeless proposals are refused early; approval applies it later
        with your source and actor. Always give the reason a person needs to decide."""
        refusal = self.check_op(args.op, self.source, reason=args.op.reason or args.reason)
        if refusal:
            raise refusal_error(refusal)
        op = args.op.model_copy(update={"reason": args.op.reason or args.reason})
        p = Proposal(proposal_id=uuid.uuid4().hex[:12], ts=time.time(), step=self.status().step,
                     source=self.source, actor=self.current_actor(), op=op, reason=args.reason)
        append_line(self.run.root / PROPOSALS, p.model_dump(mode="json", exclude_none=True))
        return p

    def list_proposals(self, args: ListProposalsInput) -> ProposalsOutput:
        """Proposals made by agents and rules: pending ones (default) or all, newest last."""
        order, props = self._proposals()
        rows = [props[p] for p in order if p in props]
        pending = [p for p in rows if p.status == "pending"]
        chosen = pending if args.status == "pending" else rows
        return ProposalsOutput(total=len(rows), pending=len(pending), proposals=chosen[-args.last:])

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
