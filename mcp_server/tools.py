"""``HotcbTools``: every tool over one run directory, in one class.

The MCP server, the dashboard and the agent all call ``HotcbTools.call(name, arguments)``, so
validation, the guard and the file writes happen in one place whoever asks. ``source`` and
``actor`` are fixed when the object is made (the dashboard is ``human``, an MCP client or the
LLM autopilot ``agent``, rules ``rule``): a caller cannot claim to be someone else per call.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .registry import TOOLS, Forbidden, InvalidArguments, ToolSpec, UnknownTool
from .tools_autopilot import AutopilotTools
from .tools_base import CALL_ACTOR
from .tools_knobs import KnobTools
from .tools_observe import ObserveTools
from .tools_replay import ReplayTools
from .tools_tune import TuneTools


class HotcbTools(KnobTools, ObserveTools, ReplayTools, TuneTools, AutopilotTools):
    def specs(self, include_human_only: bool | None = None) -> list[ToolSpec]:
        """The tools this caller may use (human-only tools are listed for humans only)."""
        show_human = self.source == "human" if include_human_only is None else include_human_only
        # A spec whose mixin is not among this class's bases (yet) is not a tool of this object.
        return [s for s in TOOLS.values() if (show_human or not s.human_only) and hasattr(self, s.method)]

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
        spec = TOOLS.get(name)
        if spec is None or not hasattr(self, spec.method):
            raise UnknownTool(f"unknown tool {name!r}; tools: {', '.join(sorted(s.name for s in self.specs()))}")
        if spec.human_only and self.source != "human":
            raise Forbidden(f"{name} is reserved to humans (this caller is {self.source!r})")
        try:
            args = spec.input_model.model_validate(arguments or {})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
            raise InvalidArguments(f"invalid arguments for {name}: {problems}") from None
        if spec.read_only:  # readers share cached state (metrics store, ledger cache)
            with self.lock:
                result = getattr(self, spec.method)(args)
        else:  # writers may wait seconds for a decision: never hold the lock while waiting
            result = getattr(self, spec.method)(args)
        return result.model_dump(mode="json")
