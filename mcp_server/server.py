"""The MCP binding: hotcb's tools, resources and prompts on the SDK's low-level ``Server``
(mcp 2.x), whose request handlers are its public API for tools with explicit schemas.

Nothing here declares a schema. Every tool comes from the catalog (``HotcbTools.specs()``): its
input schema is the pydantic input model's JSON schema (flat top-level arguments, in the strict
form of ``strict_schema``), its output schema the output model's, its annotations the spec's
flags, and every call goes through ``HotcbTools.call`` -- the same dispatch the dashboard and
the agent use, under the same guard.

Calls run in a worker thread: ``apply_op`` may wait seconds for the kernel's decision and must
not stall the event loop (other requests, progress notifications, pings). A tool error (any
``ToolError``: unknown tool, invalid arguments, forbidden, refused) is an ``isError`` result
carrying its message; an unexpected exception is logged to stderr and reported the same way,
never a crash of the server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, SubscriptionBus
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
    Tool,
    ToolAnnotations,
)

from hotcb.guard import GuardConfig

from .registry import PROFILES, SERVED_PROFILES, ToolError, ToolSpec
from .resources import RunResources, watch_resources
from .server_prompts import ServedPrompts
from .strict_schema import from_pairs, strict_input_schema
from .tools import HotcbTools
from .tools_autopilot import AUTOPILOT_PROCESS_SOURCES, META_ACTOR, META_SOURCE

log = logging.getLogger("hotcb.mcp")

SERVER_NAME = "hotcb"
DEFAULT_ACTOR = "mcp-client"
META_MODEL = "hotcb/model"  # a call's ``_meta`` key naming the model behind the client
PROGRESS_EVERY_S = 0.5  # how often a waiting write tool reports progress (when the caller asked)
INSTRUCTIONS = (
    "hotcb controls a live PyTorch training run. Read before acting: get_status, read_trends, "
    "describe_actuators. Change knobs with apply_op (one small change, with a reason); every change "
    "passes the guard (bounds, a per-op ratio limit for agents -- describe_actuators gives each knob's "
    "-- cooldown, human locks, freeze) and is recorded in the ledger (read_ledger). Refusals come "
    "back as tool errors with the reason."
)


__all__ = ["PROFILES", "SERVED_PROFILES", "HotcbServer", "build_server", "in_profile", "run_stdio"]


def in_profile(spec: ToolSpec, profile: str) -> bool:
    return spec.in_profile(profile)


def annotations_for(spec: ToolSpec) -> ToolAnnotations:
    """The MCP annotations of a tool, from its spec (docs/mcp.md's table is generated from these)."""
    return ToolAnnotations(
        title=spec.title or spec.name, read_only_hint=spec.read_only,
        destructive_hint=spec.destructive and not spec.read_only, idempotent_hint=spec.idempotent,
        open_world_hint=False,  # hotcb acts on one local run directory, nothing beyond it
    )


def mcp_tool(spec: ToolSpec, output_schema: bool = True) -> Tool:
    """The tool as ``tools/list`` shows it. Without ``output_schema`` (the protocol makes it
    optional; results still carry ``structuredContent``) a small model's context holds more."""
    return Tool(name=spec.name, title=spec.title or spec.name, description=spec.description,
                input_schema=strict_input_schema(spec.input_schema()),
                output_schema=spec.output_schema() if output_schema else None, annotations=annotations_for(spec))


def request_meta(context: ServerRequestContext[Any]) -> dict[str, Any]:
    """The request's ``_meta`` (empty when absent or outside a request)."""
    try:
        meta = context.meta
    except Exception:
        return {}
    return dict(meta) if isinstance(meta, dict) else {}


def client_name(context: ServerRequestContext[Any]) -> str | None:
    """The MCP client as its initialize request names it (``clientInfo``: ``name/version``) and,
    when the call says so in its ``_meta`` (``model`` or ``hotcb/model``), the model driving it:
    ``openai-agents/0.3 model=qwen2.5-coder-1.5b``. A label, not an authentication."""
    try:
        params = context.session.client_params
        info = params.client_info if params is not None else None
    except Exception:  # outside a request, or a transport that carries no client info
        info = None
    name = info.name if info is not None and info.name else None
    if name and getattr(info, "version", None):
        name = f"{name}/{info.version}"
    meta = request_meta(context)
    model = _label(meta.get(META_MODEL) or meta.get("model"))
    if model:
        name = f"{name or DEFAULT_ACTOR} model={model}"
    return _label(name[:200]) if name else None


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

    def actor_for(self, context: ServerRequestContext[Any]) -> str:
        if self.identities is not None and not self.actor_override:
            label = _label(request_meta(context).get(META_ACTOR))
            if label:
                return label
        return self.actor_override or client_name(context) or DEFAULT_ACTOR

    def tools_for(self, context: ServerRequestContext[Any]) -> HotcbTools:
        if self.identities is None:
            return self.tools
        source = request_meta(context).get(META_SOURCE)
        if source is None:
            return self.tools
        if source not in self.identities:
            raise ToolError(f"this server lets a call act as {', '.join(sorted(self.identities))} only, "
                            f"not {source!r}")
        return self.identities[source]

    async def __call__(self, spec: ToolSpec, arguments: dict[str, Any], context: ServerRequestContext[Any]) -> CallToolResult:
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

    async def _progress(self, spec: ToolSpec, arguments: dict[str, Any], context: ServerRequestContext[Any]) -> None:
        """Heartbeat progress while a write tool works (a no-op unless the caller sent a progress token)."""
        wait = arguments.get("wait_s")
        total = float(wait) if isinstance(wait, (int, float)) else self.tools.wait_s
        what = "waiting for the kernel's decision" if spec.name == "apply_op" else f"{spec.name} working"
        start = time.monotonic()
        while True:
            await anyio.sleep(PROGRESS_EVERY_S)
            elapsed = round(time.monotonic() - start, 2)
            try:
                await context.session.report_progress(elapsed, total, f"{what} ({elapsed:g}s)")
            except Exception:  # the caller went away or declined progress: the call itself goes on
                return


class Binding:
    """The request handlers of one server: the tools ``specs`` run by ``runner``, the run's
    resources (none on a root's server) and the prompts."""

    def __init__(self, specs: list[ToolSpec], runner: ToolRunner, resources: RunResources, prompts: ServedPrompts,
                 output_schemas: bool = True):
        self.specs = {s.name: s for s in specs}
        self.output_schemas = output_schemas
        self.runner = runner
        self.resources = resources
        self.prompts = prompts

    async def list_tools(self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=[mcp_tool(s, self.output_schemas) for s in self.specs.values()])

    async def call_tool(self, ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        spec = self.specs.get(params.name)
        if spec is None:  # outside this server's profile, or no tool at all
            return _error(f"Unknown tool: {params.name}")
        return await self.runner(spec, params.arguments or {}, ctx)

    async def list_resources(self, ctx: ServerRequestContext[Any],
                             params: PaginatedRequestParams | None) -> ListResourcesResult:
        return ListResourcesResult(resources=self.resources.list())

    async def read_resource(self, ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> ReadResourceResult:
        return await self.resources.read(str(params.uri))

    async def list_prompts(self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListPromptsResult:
        return ListPromptsResult(prompts=self.prompts.list())

    async def get_prompt(self, ctx: ServerRequestContext[Any], params: GetPromptRequestParams) -> GetPromptResult:
        return self.prompts.get(params.name, params.arguments)


class HotcbServer(Server[Any]):
    """The SDK's low-level server, plus the one-line ``server.run("stdio")`` that docs/mcp.md
    shows (MCPServer's form); any other call is the low-level ``run(read, write, options)``."""

    def run(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if args in ((), ("stdio",)) and not kwargs:
            anyio.run(run_stdio, self)
            return None
        return super().run(*args, **kwargs)


def make_server(binding: Binding, *, title: str, instructions: str, bus: SubscriptionBus | None = None,
                lifespan: Callable[[Server[Any]], Any] | None = None) -> HotcbServer:
    """A low-level server answering with ``binding``; ``subscriptions/listen`` streams ``bus``
    (where ``lifespan`` publishes resource updates, if it does)."""
    from hotcb import __version__

    extra: dict[str, Any] = {"lifespan": lifespan} if lifespan is not None else {}
    return HotcbServer(
        SERVER_NAME, version=__version__, title=title, instructions=instructions,
        on_list_tools=binding.list_tools, on_call_tool=binding.call_tool,
        on_list_resources=binding.list_resources, on_read_resource=binding.read_resource,
        on_list_prompts=binding.list_prompts, on_get_prompt=binding.get_prompt,
        on_subscriptions_listen=ListenHandler(bus or InMemorySubscriptionBus()), **extra,
    )


async def run_stdio(server: Server[Any]) -> None:
    """Serve ``server`` on this process's stdin/stdout until the client closes it."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def build_server(run_dir: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0, watch_interval_s: float = 1.0, for_autopilot: bool = False,
                 profile: str = "all", output_schemas: bool | None = None) -> HotcbServer:
    """An MCP server over one run directory.

    ``source`` is fixed for every call (``agent`` by default: the guard's limits apply; ``rule``
    the same limits; ``human`` only for a person's own client). ``actor`` overrides the client's
    self-reported name.

    ``for_autopilot``: a server for the hotcb autopilot process (``hotcb autopilot --mcp``). It
    also serves ``autopilot_process`` (alerts, the AI memory) and lets each call name its
    identity in ``_meta`` -- ``rule`` or ``agent`` only, both under the guard's full limits --
    so the rules and the LLM keep their ledger labels over one connection. ``source`` is then
    the default for calls that name none and cannot be ``human``.

    ``profile``: which tools are served (``SERVED_PROFILES``; a server for the autopilot serves
    all). ``output_schemas``: list each tool's output schema (default: yes, except for ``core``).
    """
    if for_autopilot and profile != "all":
        raise ValueError("a server for the autopilot serves every tool (profile 'all')")
    identities: dict[str, HotcbTools] | None = None
    if for_autopilot:
        if source not in AUTOPILOT_PROCESS_SOURCES:
            raise ValueError(f"a server for the autopilot acts as {' or '.join(AUTOPILOT_PROCESS_SOURCES)}, not {source!r}")
        identities = {s: HotcbTools(run_dir, source=s, actor=actor, wait_s=wait_s, for_autopilot=True)
                      for s in AUTOPILOT_PROCESS_SOURCES}
        tools: HotcbTools = identities[source]
    else:
        tools = HotcbTools(run_dir, source=source, actor=actor, wait_s=wait_s)
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        # Resource-updated events for `subscriptions/listen` clients, from cheap stats of the run files.
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_resources, tools.run, bus, watch_interval_s)
            try:
                yield {"tools": tools}
            finally:
                tg.cancel_scope.cancel()

    binding = Binding([s for s in tools.specs() if s.in_profile(profile)], ToolRunner(tools, actor, identities),
                      RunResources(tools), ServedPrompts(lambda: GuardConfig.from_dict(tools.actuators_doc().get("guard"))),
                      output_schemas=profile != "core" if output_schemas is None else output_schemas)
    server = make_server(binding, title="hotcb training control", instructions=INSTRUCTIONS, bus=bus,
                         lifespan=lifespan)
    server.hotcb_tools = tools  # type: ignore[attr-defined]  # for tests and embedding
    return server
