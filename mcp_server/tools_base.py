"""State shared by every tool group: the run directory, who is calling, and cached readers."""

from __future__ import annotations

import contextvars
import os
import threading
from typing import Any

from hotcb.actuators.actuator import ValueRefused
from hotcb.client import liveness, send_command, wait_decision
from hotcb.freeze import freeze_decision
from hotcb.guard import GuardConfig, GuardRefusal, check_knob_change
from hotcb.jsonl import JsonlTail, read_json
from hotcb.ops import CB, CB_OPS, CORE, CORE_OPS, SOURCES, TUNE, TUNE_OPS, CommandError, make_command
from hotcb.rescue import RESCUE, RESCUE_OPS  # rescue (issue 13)
from hotcb.rundir import RunDir

from .metrics_store import MetricsStore
from .registry import ToolError
from .schemas import Change, OpSpec

# Core ops an agent, rule or tune may not send (they change who controls the run).
HUMAN_ONLY_CORE = {"stop", "freeze", "unfreeze", "lock", "unlock"}
# Callback code an agent may load: our built-ins, or files inside the run directory.
AGENT_CB_MODULE_PREFIX = "hotcb.callbacks."
MAX_LEDGER_CACHE = 200_000

# Who is calling, per call: a server shared by several MCP clients (HTTP) knows the client's
# name only per request, so ``HotcbTools.call`` sets this instead of mutating shared state.
CALL_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("hotcb_call_actor", default=None)


class ToolsBase:
    def __init__(self, run_dir: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        self.run = RunDir(run_dir)
        self.source = source
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

    def status_doc(self) -> dict[str, Any]:
        doc = read_json(self.run.status)
        return doc if isinstance(doc, dict) else {}

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
    def check_op(self, spec: OpSpec, source: str) -> str | None:
        """The refusal reason for ``spec`` from ``source``, or None. Same rules as the kernel."""
        module, op = spec.module, spec.op
        status = self.status_doc()
        decision = freeze_decision(status.get("freeze_mode") or "off", module, op, source)
        if decision is not None:
            return f"{decision}: the run's freeze mode is {status.get('freeze_mode')!r}"
        if module == CORE:
            if op not in CORE_OPS:
                return f"unknown core op {op!r}; known: {', '.join(CORE_OPS)}"
            if op in HUMAN_ONLY_CORE and source != "human":
                return f"core {op} is reserved to humans (this caller is {source!r})"
            return None
        if module == CB:
            if op not in CB_OPS:
                return f"unknown cb op {op!r}; known: {', '.join(CB_OPS)}"
            if not spec.id:
                return f"cb {op} needs an id"
            if op == "load":
                return self._check_cb_target(spec.target, source)
            return None
        if module == TUNE:
            return None if op in TUNE_OPS else f"unknown tune op {op!r}; known: {', '.join(TUNE_OPS)}"
        if module == RESCUE:  # rescue (issue 13): the kernel judges the rest
            return None if op in RESCUE_OPS else f"unknown rescue op {op!r}; known: {', '.join(RESCUE_OPS)}"
        if op != "set_params":
            return f"knob group {module!r} only supports set_params"
        if not spec.params:
            return "set_params needs at least one key in params"
        doc = self.actuators_doc()
        if not doc:
            return None  # no training process has published its knobs yet: the kernel will judge
        descs = {a["key"]: a for a in doc.get("actuators", []) if a.get("module") == module}
        if not descs:
            groups = sorted({a.get("module") for a in doc.get("actuators", [])} | {CB, CORE, TUNE})
            return f"unknown module {module!r}; known: {', '.join(groups)}"
        guard = GuardConfig.from_dict(doc.get("guard"))
        locks = doc.get("locks") or {}
        step = status.get("step")
        for key, value in spec.params.items():
            desc = descs.get(key)
            if desc is None:
                return f"unknown knob {module}.{key}; known in {module!r}: {', '.join(sorted(descs))}"
            try:
                check_knob_change(desc, value, source=source, step=step, lock=locks.get(key), config=guard)
            except (GuardRefusal, ValueRefused) as e:
                return str(e)
        return None

    def _check_cb_target(self, target: dict[str, str] | None, source: str) -> str | None:
        if not target:
            return "cb load needs target {kind, path, symbol}"
        kind, path = target.get("kind"), str(target.get("path", ""))
        if kind == "python_file":
            if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/"):
                return "python_file paths must be relative to the run directory (no absolute paths, no '..')"
            if not (self.run.root / path).resolve().is_file():
                return f"callback file not found in the run directory: {path}"
        elif kind == "module":
            if source != "human" and not path.startswith(AGENT_CB_MODULE_PREFIX):
                return f"{source} callers may load modules under {AGENT_CB_MODULE_PREFIX}* only"
        else:
            return "target.kind must be 'module' or 'python_file'"
        return None

    def submit(self, spec: OpSpec, *, source: str | None = None, actor: str | None = None,
               wait_s: float | None = None, at_step: int | None = None, lock: bool = False,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check, write and (optionally) wait: the one path every tool write takes."""
        source = source or self.source
        actor = actor or self.current_actor()
        if lock and source != "human":
            raise ToolError("only a human can lock a knob")
        try:
            rec = make_command(spec.module, spec.op, spec.params, id=spec.id, source=source, actor=actor,
                               reason=spec.reason, target=spec.target, at_step=at_step, lock=lock)
        except CommandError as e:
            raise ToolError(f"invalid op: {e}") from None
        rec.update(extra or {})
        refusal = self.check_op(spec, source)
        if refusal:
            rec["refused"] = refusal
            send_command(self.run, rec)  # recorded in the ledger by the kernel, never applied
            raise ToolError(f"refused: {refusal} (cmd_id {rec['cmd_id']})")
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
        if out["decision"] != "applied":
            raise ToolError(f"{out['decision']}: {entry.get('error')} (cmd_id {rec['cmd_id']}, step {entry.get('step')})")
        return out
