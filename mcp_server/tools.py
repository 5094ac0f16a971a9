"""``HotcbTools``: every tool over one run directory, in process.

Callers use its typed methods (``tools.get_status()``, ``tools.apply_op(ApplyOpInput(...))``:
the ``Tools`` protocol); the MCP server and the dashboard's generic endpoint, which receive a
tool's name and JSON arguments, use ``call(name, arguments)``. Both run through one path, so
validation, the guard and the file writes happen in one place whoever asks. ``source`` and
``actor`` are fixed when the object is made (the dashboard is ``human``, an MCP client or the
LLM autopilot ``agent``, rules ``rule``): a caller cannot claim to be someone else per call.

It composes one ``ToolContext`` (the shared state) with one object per tool group; the
catalog says which group runs each tool.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from hotcb.errors import HotcbError
from hotcb.vocabulary import Source

from . import catalog
from .core_errors import tool_error
from .registry import Forbidden, InvalidArguments, ToolSpec, UnknownTool
from .tools_alerts import Alert, AlertRulesOutput, AlertTools
from .tools_autopilot import AutopilotProcessTools
from .tools_autopilot_mode import AIStateSummary, AutopilotModeTools
from .tools_base import CALL_ACTOR, ContextView, ToolContext
from .tools_knobs import KnobTools
from .tools_observe import ObserveTools
from .tools_proposals import ProposalTools
from .tools_protocol import AutopilotTools, Out, tool_input
from .tools_replay import ReplayTools
from .tools_tune import TuneTools


class HotcbTools(ContextView, AutopilotTools):
    """``for_autopilot``: also serve ``autopilot_process`` (a server for the autopilot process)."""

    def __init__(self, run_dir: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0, for_autopilot: bool = False):
        super().__init__(ToolContext(run_dir, source=source, actor=actor, wait_s=wait_s))
        self.for_autopilot = for_autopilot
        self.alerts = AlertTools(self.ctx)
        self.autopilot_mode = AutopilotModeTools(self.ctx)
        self.groups: dict[type, ContextView] = {g.__class__: g for g in (
            ProposalTools(self.ctx), self.autopilot_mode, self.alerts,
            AutopilotProcessTools(self.ctx, self.alerts, self.autopilot_mode),
            KnobTools(self.ctx), ObserveTools(self.ctx), ReplayTools(self.ctx), TuneTools(self.ctx),
        )}
        self._served = {s.name: s for s in catalog.served(human=True, for_autopilot=for_autopilot)}

    def specs(self, include_human_only: bool | None = None) -> list[ToolSpec]:
        """The tools this caller may use (human-only tools are listed for humans only)."""
        show_human = self.source == Source.HUMAN if include_human_only is None else include_human_only
        return [s for s in self._served.values() if show_human or not s.human_only]

    def call(self, name: str, arguments: dict[str, Any] | None = None, *, actor: str | None = None) -> dict[str, Any]:
        """Validate ``arguments`` against the tool's input model, run it, return its output as JSON data.
        Raises ToolError with a readable message for any refusal or invalid input.

        ``actor`` names who asks for this one call (e.g. the MCP client's name on a shared HTTP
        server); the *source* stays the one fixed at creation, so a caller cannot raise its rights."""
        token = CALL_ACTOR.set(actor) if actor else None
        try:
            return self._call(name, arguments)
        finally:
            if token is not None:
                CALL_ACTOR.reset(token)

    def _call(self, name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
        spec = self._spec(name)
        return self._run(spec, tool_input(name, spec.input_model, arguments)).model_dump(mode="json")

    def invoke(self, name: str, args: BaseModel, out: type[Out], *, actor: str | None = None) -> Out:
        """The ``Tools`` protocol's one hook: run ``name`` with its input model, return its output
        model. ``actor`` as in ``call``."""
        spec = self._spec(name)
        if not isinstance(args, spec.input_model):
            raise InvalidArguments(f"{name} takes {spec.input_model.__name__}, not {type(args).__name__}")
        token = CALL_ACTOR.set(actor) if actor else None
        try:
            result = self._run(spec, args)
        finally:
            if token is not None:
                CALL_ACTOR.reset(token)
        if not isinstance(result, out):  # the catalog and the protocol disagree: a bug, said plainly
            raise TypeError(f"{name} returned {type(result).__name__}, not {out.__name__}")
        return result

    def _spec(self, name: str) -> ToolSpec:
        spec = self._served.get(name)
        if spec is None:
            raise UnknownTool(f"unknown tool {name!r}; tools: {', '.join(sorted(s.name for s in self.specs()))}")
        if spec.human_only and self.source != Source.HUMAN:
            raise Forbidden(f"{name} is reserved to humans (this caller is {self.source!r})")
        return spec

    def _run(self, spec: ToolSpec, args: BaseModel) -> BaseModel:
        handler = getattr(self.groups[spec.group], spec.name)
        try:
            if spec.read_only:  # readers share cached state (metrics store, ledger cache)
                with self.lock:
                    result: BaseModel = handler(args)
            else:  # writers may wait seconds for a decision: never hold the lock while waiting
                result = handler(args)
        except HotcbError as e:  # a core error a group let through: the caller reads it as a tool error
            raise tool_error(e) from None
        return result

    # ------------------------------------------------------------------ not tools: the autopilot's
    # own records (rules, alert rules, API health, the LLM's memory), written by its process
    def record_alert(self, *, rule: str, kind: str, message: str, metric: str | None = None,
                     severity: str = "warning", value: Any = None, step: int | None = None) -> Alert:
        return self.alerts.record_alert(rule=rule, kind=kind, message=message, metric=metric, severity=severity,
                                        value=value, step=step)

    def alert_rules(self) -> AlertRulesOutput:
        return self.alerts.alert_rules()

    def autopilot_doc(self) -> dict[str, Any]:
        return self.autopilot_mode.autopilot_doc()

    def load_ai_state(self) -> dict[str, Any]:
        return self.autopilot_mode.load_ai_state()

    def save_ai_state(self, state: dict[str, Any]) -> None:
        self.autopilot_mode.save_ai_state(state)

    def ai_summary(self) -> AIStateSummary | None:
        return self.autopilot_mode.ai_summary()
