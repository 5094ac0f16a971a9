"""The context every tool group shares (``ToolContext``: the run directory, who is calling,
cached readers, the one write path) and ``ContextView``, how a group reads it.

A group is an object over one context (composition, not a base class carrying state): the
state lives once, in the context, and each group reaches it through the view's accessors.
"""

from __future__ import annotations

import contextvars
import os
import threading
from typing import Any

from hotcb.client import liveness, read_status, send_command, wait_decision
from hotcb.jsonl import JsonlTail, read_json
from hotcb.judge import Refusal, View, judge
from hotcb.ledger import Decision
from hotcb.ops import SOURCES, CommandError, make_command, parse_command
from hotcb.published_view import published_view
from hotcb.records import StatusRecord
from hotcb.rundir import RunDir
from hotcb.vocabulary import Source

from .core_errors import tool_error
from .metrics_store import MetricsStore
from .registry import Forbidden, Refused, ToolError
from .schemas import Change, OpSpec

MAX_LEDGER_CACHE = 200_000

# Who is calling, per call: a server shared by several MCP clients (HTTP) knows the client's
# name only per request, so ``HotcbTools.call`` sets this instead of mutating shared state.
CALL_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("hotcb_call_actor", default=None)


def refusal_error(refusal: Refusal, suffix: str = "") -> ToolError:
    """The tool error for a judge's refusal: ``Forbidden`` when it is not this caller's op at all."""
    return (Forbidden if refusal.forbidden else Refused)(f"refused: {refusal.reason}{suffix}")


def acting_for(source: str) -> str:
    """Whom a caller's ops act for: a ``replay`` caller (a recipe replayed as commands) for the
    person who runs it, as the kernel judges such a line; anyone else for itself."""
    return Source.HUMAN.value if source == Source.REPLAY else source


class ToolContext:
    """What the tools of one ``HotcbTools`` share: fixed identity, the run's files and caches."""

    def __init__(self, run_dir: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        self.run = RunDir(run_dir)
        self.source = str(source)  # a Source member or its string: held as the plain string
        self.actor = actor
        self.wait_s = wait_s
        self.metrics = MetricsStore(self.run.metrics)
        self._ledger_tail = JsonlTail(self.run.ledger)
        self._ledger: list[dict[str, Any]] = []
        # Tool calls may run in several worker threads at once (the MCP server never blocks its
        # event loop); the cached readers (metrics store, ledger cache) are guarded by this lock.
        self.lock = threading.RLock()

    def current_actor(self) -> str | None:
        """The actor of the call in progress (an MCP client's name), else the one fixed at creation."""
        return CALL_ACTOR.get() or self.actor

    # ------------------------------------------------------------------ readers
    def actuators_doc(self) -> dict[str, Any]:
        doc = read_json(self.run.actuators)
        return doc if isinstance(doc, dict) else {}

    def status(self) -> StatusRecord:
        """The kernel's last status (an empty record before training wrote one; a malformed
        file's unreadable fields are named in its ``problems``)."""
        return read_status(self.run) or StatusRecord()

    def status_doc(self) -> dict[str, Any]:
        """``status()`` in its JSON form, for callers that still read keys (empty before training)."""
        rec = read_status(self.run)
        return rec.to_json() if rec else {}

    def liveness(self) -> dict[str, Any]:
        return liveness(self.run)

    def ledger_entries(self) -> list[dict[str, Any]]:
        """All ledger entries, read incrementally (a replaced file is re-read)."""
        with self.lock:
            resets = self._ledger_tail.reset_count
            new = [e for e in self._ledger_tail.values() if isinstance(e, dict)]
            if self._ledger_tail.reset_count != resets:
                self._ledger = []
            self._ledger.extend(new)
            if len(self._ledger) > MAX_LEDGER_CACHE:
                del self._ledger[: -MAX_LEDGER_CACHE]
            return self._ledger

    # ------------------------------------------------------------------ writing ops
    def judge_view(self) -> View:
        """The run as the kernel last published it, for the judge's early verdict."""
        return published_view(self.run)

    def check_op(self, spec: OpSpec, source: str, reason: str | None = None) -> Refusal | None:
        """The judge's refusal of ``spec`` from ``source``, or None: the kernel's own judge, asked
        early over the files it publishes (the kernel judges again when the op lands)."""
        try:
            op = parse_command(make_command(spec.module, spec.op, spec.params, id=spec.id, source=source,
                                            reason=reason if reason is not None else spec.reason,
                                            target=spec.target))
        except CommandError as e:
            return Refusal(Decision.REJECTED, f"invalid op: {e}")
        refusal = judge(op, acting_for(source), self.judge_view())
        if refusal is None or refusal.decision == Decision.UNCHANGED:
            return None  # "already in force" is the kernel's to record, not a refusal
        if refusal.decision != Decision.REJECTED:
            return Refusal(refusal.decision, f"{refusal.decision.value}: {refusal.reason}", refusal.forbidden)
        return refusal

    def submit(self, spec: OpSpec, *, source: str | None = None, actor: str | None = None,
               wait_s: float | None = None, at_step: int | None = None, lock: bool = False,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check, write and (optionally) wait: the one path every tool write takes."""
        source = source or self.source
        actor = actor or self.current_actor()
        if lock and source != Source.HUMAN:
            raise Forbidden("only a human can lock a knob")
        try:
            rec = make_command(spec.module, spec.op, spec.params, id=spec.id, source=source, actor=actor,
                               reason=spec.reason, target=spec.target, at_step=at_step, lock=lock)
        except CommandError as e:
            raise tool_error(e, "invalid op: ") from None
        rec.update(extra or {})
        refusal = self.check_op(spec, source)
        if refusal:
            rec["refused"] = refusal.reason
            send_command(self.run, rec)  # recorded in the ledger by the kernel, never applied
            raise refusal_error(refusal, f" (cmd_id {rec['cmd_id']})")
        start = os.path.getsize(self.run.ledger) if self.run.ledger.exists() else 0
        send_command(self.run, rec)
        wait = self.wait_s if wait_s is None else wait_s
        out: dict[str, Any] = {"cmd_id": rec["cmd_id"], "decision": "queued", "step": None, "changes": {},
                               "error": None, "liveness": None, "message": None}
        if at_step is not None or wait <= 0:
            out["liveness"] = self.liveness()["state"]
            out["message"] = "scheduled" if at_step is not None else "written; not waiting for the decision"
            return out
        entry, live = wait_decision(self.run, rec["cmd_id"], wait, start_offset=start)
        out["liveness"] = live["state"]
        if entry is None:
            if live["state"] in ("dead", "absent", "stopped", "stale"):
                out["message"] = f"training is {live['state']}: {live.get('reason')}; the op is queued and " \
                                 "applies exactly once when a training process reads this run directory"
            else:
                out["decision"] = "pending"
                out["message"] = f"no decision within {wait:g}s; the kernel has not reached a safe point yet"
            return out
        out["decision"] = entry.get("decision")
        out["step"] = entry.get("step")
        out["error"] = entry.get("error")
        payload = entry.get("payload") or {}
        out["changes"] = {k: Change(**v) for k, v in payload.items() if isinstance(v, dict) and {"old", "new"} <= set(v)}
        if out["decision"] == "unchanged":
            out["message"] = entry.get("error")  # already in force: nothing applied, no cooldown started
        elif out["decision"] != "applied":
            raise Refused(f"{out['decision']}: {entry.get('error')} (cmd_id {rec['cmd_id']}, step {entry.get('step')})")
        return out


class ContextView:
    """The shared context under the names tool bodies use (``self.run``, ``self.submit(...)``).
    Holds nothing but the context: every group over one context sees the same state."""

    def __init__(self, ctx: ToolContext):
        self.ctx = ctx

    @property
    def run(self) -> RunDir:
        return self.ctx.run

    @property
    def source(self) -> str:
        return self.ctx.source

    @property
    def actor(self) -> str | None:
        return self.ctx.actor

    @property
    def wait_s(self) -> float:
        return self.ctx.wait_s

    @property
    def metrics(self) -> MetricsStore:
        return self.ctx.metrics

    @property
    def lock(self) -> threading.RLock:
        return self.ctx.lock

    def current_actor(self) -> str | None:
        return self.ctx.current_actor()

    def actuators_doc(self) -> dict[str, Any]:
        return self.ctx.actuators_doc()

    def status(self) -> StatusRecord:
        return self.ctx.status()

    def status_doc(self) -> dict[str, Any]:
        return self.ctx.status_doc()

    def liveness(self) -> dict[str, Any]:
        return self.ctx.liveness()

    def ledger_entries(self) -> list[dict[str, Any]]:
        return self.ctx.ledger_entries()

    def judge_view(self) -> View:
        return self.ctx.judge_view()

    def check_op(self, spec: OpSpec, source: str, reason: str | None = None) -> Refusal | None:
        return self.ctx.check_op(spec, source, reason)

    def submit(self, spec: OpSpec, **kw: Any) -> dict[str, Any]:
        return self.ctx.submit(spec, **kw)


class ToolGroup(ContextView):
    """Base of a group of tools (``catalog.py`` names each tool's group): a view of the context."""

