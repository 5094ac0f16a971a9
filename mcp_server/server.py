"""The MCP binding: hotcb's tools, resources and prompts on one ``MCPServer`` (mcp 2.x SDK).

Nothing here declares a schema. Every tool comes from the registry (``HotcbTools.specs()``): its
input schema is the pydantic input model's JSON schema (flat top-level arguments), its output
schema the output model's, its annotations the spec's flags, and every call goes through
``HotcbTools.call`` -- the same dispatch the dashboard and the agent use, under the same guard.

Calls run in a worker thread: ``apply_op`` may wait seconds for the kernel's decision and must
not stall the event loop (other requests, progress notifications, pings). A tool error is an
``isError`` result carrying the ToolError's message; an unexpected exception is logged to
stderr and reported the same way, never a crash of the server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt as MCPPrompt
from mcp.server.mcpserver.prompts.base import PromptArgument
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, Field

from hotcb import prompts as prompt_files
from hotcb.guard import GuardConfig, ratio_text

from .registry import ToolError, ToolSpec
from .resources import register_resources, watch_resources
from .strict_schema import from_pairs, strict_input_schema
from .tools import HotcbTools
from .tools_autopilot import AUTOPILOT_SOURCES, META_ACTOR, META_SOURCE, AutopilotProcessTools

log = logging.getLogger("hotcb.mcp")

SERVER_NAME = "hotcb"
DEFAULT_ACTOR = "mcp-client"
PROGRESS_EVERY_S = 0.5  # how often a waiting write tool reports progress (when the caller asked)
INSTRUCTIONS = (
    "hotcb controls a live PyTorch training run. Read before acting: get_status, read_trends, "
    "describe_actuators. Change knobs with apply_op (one small change, with a reason); every change "
    "passes the guard (bounds, a per-op ratio limit for agents -- describe_actuators gives each knob's "
    "-- cooldown, human locks, freeze) and is recorded in the ledger (read_ledger). Refusals come "
    "back as tool errors with the reason."
)


# Tool profiles (``hotcb mcp --tools``): a client that only watches needs far fewer schemas in
# its context. observe: the read-only tools; control: those plus the ops that steer the run;
# all: everything this server's source may call.
CONTROL_TOOLS = ("apply_op", "propose_op", "schedule_op")
PROFILES = ("observe", "control", "all")


def in_profile(spec: ToolSpec, profile: str) -> bool:
    if profile not in PROFILES:
        raise ValueError(f"unknown tool profile {profile!r} (profiles: {', '.join(PROFILES)})")
    if profile == "all" or spec.read_only:
        return True
    return profile == "control" and spec.name in CONTROL_TOOLS


def annotations_for(spec: ToolSpec) -> ToolAnnotations:
    """The MCP annotations of a tool, from its spec (docs/mcp.md's table is generated from these)."""
    return ToolAnnotations(
        title=spec.title or spec.name, read_only_hint=spec.read_only,
        destructive_hint=spec.destructive and not spec.read_only, idempotent_hint=spec.idempotent,
        open_world_hint=False,  # hotcb acts on one local run directory, nothing beyond it
    )


def _placeholder() -> None:
    """Stands in for the SDK's function slot: calls never reach it (``SpecTool.run`` dispatches)."""


class SpecTool(Tool):
    """An SDK tool built from a registry ``ToolSpec`` instead of a function signature."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    spec: ToolSpec = Field(exclude=True)
    runner: Callable[..., Any] = Field(exclude=True)

    @cached_property
    def output_schema(self) -> dict[str, Any] | None:  # the output model's schema, not a derived one
        return self.spec.output_schema()

    @classmethod
    def from_spec(cls, spec: ToolSpec, runner: Callable[..., Any]) -> SpecTool:
        return cls(
            fn=_placeholder, name=spec.name, title=spec.title or spec.name, description=spec.description,
            parameters=strict_input_schema(spec.input_schema()), fn_metadata=func_metadata(_placeholder),
            is_async=False,
            annotations=annotations_for(spec), spec=spec, runner=runner,
        )

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> CallToolResult:
        return await self.runner(self.spec, arguments, context)


class AutopilotServedTools(HotcbTools, AutopilotProcessTools):
    """The tools of a server started for the autopilot process: every tool plus ``autopilot_process``."""


def request_meta(context: Any) -> dict[str, Any]:
    """The request's ``_meta`` (empty when absent or outside a request)."""
    try:
        meta = context.request_context.meta
    except Exception:
        return {}
    return dict(meta) if isinstance(meta, dict) else {}


def client_name(context: Any) -> str | None:
    """The MCP client's name from its initialize request (``clientInfo.name``), if it sent one."""
    try:
        params = context.session.client_params
        info = params.client_info if params is not None else None
        return info.name if info is not None and info.name else None
    except Exception:  # outside a request, or a transport that carries no client info
        return None


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def _label(value: Any) -> str | None:
    """A ``_meta`` actor label: a short printable string (it names, it does not authenticate)."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable():
        return value
    return None


class ToolRunner:
    """Runs one registry tool for an MCP request: identity, worker thread, progress, errors.

    ``identities`` (a --for-autopilot server only): the tools object per source a call may name
    in its ``_meta``; an ordinary server ignores ``_meta`` identity keys entirely."""

    def __init__(self, tools: HotcbTools, actor_override: str | None,
                 identities: dict[str, HotcbTools] | None = None):
        self.tools = tools
        self.actor_override = actor_override
        self.identities = identities

    def actor_for(self, context: Any) -> str:
        if self.identities is not None and not self.actor_override:
            label = _label(request_meta(context).get(META_ACTOR))
            if label:
                return label
        return self.actor_override or client_name(context) or DEFAULT_ACTOR

    def tools_for(self, context: Any) -> HotcbTools:
        if self.identities is None:
            return self.tools
        source = request_meta(context).get(META_SOURCE)
        if source is None:
            return self.tools
        if source not in self.identities:
            raise ToolError(f"this server lets a call act as {', '.join(sorted(self.identities))} only, "
                            f"not {source!r}")
        return self.identities[source]

    async def __call__(self, spec: ToolSpec, arguments: dict[str, Any], context: Any) -> CallToolResult:
        try:
            tools = self.tools_for(context)
        except ToolError as e:
            return _error(str(e))
        # Free-form maps may arrive as the advertised {key, value} pairs (strict-mode clients).
        arguments = from_pairs(spec.input_schema(), arguments or {})
        call = functools.partial(tools.call, spec.name, arguments, actor=self.actor_for(context))
        async with anyio.create_task_group() as tg:
            if not spec.read_only:
                tg.start_soon(self._progress, spec, arguments or {}, context)
            result = await self._run(spec, call)
            tg.cancel_scope.cancel()
        return result

    async def _run(self, spec: ToolSpec, call: Callable[[], dict[str, Any]]) -> CallToolResult:
        try:
            data = await anyio.to_thread.run_sync(call)
        except ToolError as e:
            return _error(str(e))
        except Exception as e:  # a bug must not take the server (and the client's session) down
            log.exception("tool %s failed unexpectedly", spec.name)
            return _error(f"internal error in {spec.name}: {type(e).__name__}: {e}")
        text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)

    async def _progress(self, spec: ToolSpec, arguments: dict[str, Any], context: Any) -> None:
        """Heartbeat progress while a write tool works (a no-op unless the caller sent a progress token)."""
        wait = arguments.get("wait_s")
        total = float(wait) if isinstance(wait, (int, float)) else self.tools.wait_s
        what = "waiting for the kernel's decision" if spec.name == "apply_op" else f"{spec.name} working"
        start = time.monotonic()
        while True:
            await anyio.sleep(PROGRESS_EVERY_S)
            elapsed = round(time.monotonic() - start, 2)
            try:
                await context.report_progress(elapsed, total, f"{what} ({elapsed:g}s)")
            except Exception:  # the caller went away or declined progress: the call itself goes on
                return


class HotcbMCPServer(MCPServer):
    """The SDK's server with JSON-RPC error codes where it has none: a prompt that does not exist
    or arguments a prompt cannot take are the caller's error (-32602 invalid params, as for an
    unknown resource), not a generic error 0."""

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        if self._prompt_manager.get_prompt(name) is None:
            known = ", ".join(sorted(p.name for p in self._prompt_manager.list_prompts()))
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name} (prompts: {known})",
                           data={"name": name})
        try:
            return await super().get_prompt(name, arguments, context)
        except MCPError:
            raise
        except ValueError as e:  # missing or invalid arguments, as the SDK reports them
            raise MCPError(code=INVALID_PARAMS, message=str(e), data={"name": name}) from e


def _prompt(p: prompt_files.Prompt, guard: Any = None) -> MCPPrompt:
    """``guard()`` gives the run's GuardConfig in force, rendered into the prompt's {ratio_limit}."""
    declared = {a["name"]: a for a in p.arguments if isinstance(a, dict) and a.get("name")}

    def render(**values: Any) -> str:
        # Optional arguments left out still read well: "Goal: not specified" rather than "{goal}".
        filled = {n: a.get("default", "not specified") for n, a in declared.items()}
        filled.update({k: v for k, v in values.items() if k in declared and v not in (None, "")})
        filled["ratio_limit"] = ratio_text(guard() if guard is not None else GuardConfig())
        return p.render(**filled)

    return MCPPrompt(
        name=p.name, title=p.name.replace("_", " "), description=p.description, fn=render,
        arguments=[PromptArgument(name=n, description=a.get("description"), required=bool(a.get("required")))
                   for n, a in declared.items()],
    )


def build_server(run_dir: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0, watch_interval_s: float = 1.0, for_autopilot: bool = False,
                 profile: str = "all") -> MCPServer:
    """An MCP server over one run directory.

    ``source`` is fixed for every call (``agent`` by default: the guard's limits apply; ``rule``
    the same limits; ``human`` only for a person's own client). ``actor`` overrides the client's
    self-reported name.

    ``for_autopilot``: a server for the hotcb autopilot process (``hotcb autopilot --mcp``). It
    also serves ``autopilot_process`` (alerts, the AI memory) and lets each call name its
    identity in ``_meta`` -- ``rule`` or ``agent`` only, both under the guard's full limits --
    so the rules and the LLM keep their ledger labels over one connection. ``source`` is then
    the default for calls that name none and cannot be ``human``.

    ``profile``: which tools are served (``PROFILES``; a server for the autopilot serves all).
    """
    if for_autopilot and profile != "all":
        raise ValueError("a server for the autopilot serves every tool (profile 'all')")
    identities: dict[str, HotcbTools] | None = None
    if for_autopilot:
        if source not in AUTOPILOT_SOURCES:
            raise ValueError(f"a server for the autopilot acts as {' or '.join(AUTOPILOT_SOURCES)}, not {source!r}")
        identities = {s: AutopilotServedTools(run_dir, source=s, actor=actor, wait_s=wait_s) for s in AUTOPILOT_SOURCES}
        tools: HotcbTools = identities[source]
    else:
        tools = HotcbTools(run_dir, source=source, actor=actor, wait_s=wait_s)
    runner = ToolRunner(tools, actor, identities)
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        # Resource-updated events for `subscriptions/listen` clients, from cheap stats of the run files.
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_resources, tools.run, bus, watch_interval_s)
            try:
                yield {"tools": tools}
            finally:
                tg.cancel_scope.cancel()

    from hotcb import __version__

    server: MCPServer = HotcbMCPServer(
        SERVER_NAME, title="hotcb training control", instructions=INSTRUCTIONS, version=__version__,
        tools=[SpecTool.from_spec(spec, runner) for spec in tools.specs() if in_profile(spec, profile)],
        subscriptions=bus, lifespan=lifespan, log_level="WARNING",
    )
    register_resources(server, tools)
    for p in prompt_files.latest().values():
        if p.mcp:
            server.add_prompt(_prompt(p, lambda: GuardConfig.from_dict(tools.actuators_doc().get("guard"))))
    server.hotcb_tools = tools  # type: ignore[attr-defined]  # for tests and embedding
    return server
