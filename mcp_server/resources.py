"""MCP resources of a run (``hotcb://run/...``) and the watcher that announces their updates.

Each resource is the output of a read-only tool (so its shape is that tool's output model,
written once): ``metrics`` = ``read_trends``, ``ledger`` = ``read_ledger`` (recent), ``actuators``
= ``describe_actuators``, ``status`` = ``get_status``.

Updates: the mcp 2.x SDK delivers ``notifications/resources/updated`` to clients that opened a
``subscriptions/listen`` stream (protocol 2026-07-28). The watcher stats the run files once per
interval (one ``stat`` each, no reads) and publishes an event when one changed. Clients on the
older handshake protocol (``resources/subscribe``) are not notified: the server does not
serve that method; they re-read instead.

``RunResources`` answers ``resources/list`` and ``resources/read`` for the low-level server.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pydantic_core
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, ReadResourceResult, Resource, TextResourceContents

from hotcb.rundir import RunDir

if TYPE_CHECKING:
    from .tools import HotcbTools

log = logging.getLogger("hotcb.mcp")
PREFIX = "hotcb://run/"
# name -> (tool, arguments, run files whose change updates it, description)
RESOURCES: dict[str, tuple[str, dict[str, Any], tuple[str, ...], str]] = {
    "metrics": ("read_trends", {}, ("metrics", "ledger"), "Recent trends of the key metrics (read_trends)"),
    "ledger": ("read_ledger", {"last": 50}, ("ledger",), "The last 50 ledger decisions (read_ledger)"),
    "actuators": ("describe_actuators", {}, ("actuators",), "Every knob with its live value (describe_actuators)"),
    "status": ("get_status", {}, ("status",), "Liveness, step, speed, freeze mode (get_status)"),
}


def uri(name: str) -> str:
    return PREFIX + name


class RunResources:
    """The run's resources over its tools (``tools`` None: a server with no run of its own)."""

    def __init__(self, tools: HotcbTools | None):
        self.tools = tools

    def list(self) -> list[Resource]:
        if self.tools is None:
            return []
        return [Resource(uri=uri(name), name=name, title=f"run {name}", description=description,
                         mime_type="application/json")
                for name, (_tool, _args, _files, description) in RESOURCES.items()]

    async def read(self, resource_uri: str) -> ReadResourceResult:
        name = resource_uri[len(PREFIX):] if resource_uri.startswith(PREFIX) else None
        if self.tools is None or name not in RESOURCES:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource: {resource_uri}", data={"uri": resource_uri})
        tool_name, args, _files, _desc = RESOURCES[name]
        try:
            data = await anyio.to_thread.run_sync(self.tools.call, tool_name, args)
        except Exception as e:  # a resource read never takes the server down
            log.exception("resource %s failed", resource_uri)
            raise MCPError(code=INTERNAL_ERROR, message=f"Error reading resource {resource_uri}",
                           data={"uri": resource_uri}) from e
        text = pydantic_core.to_json(data, fallback=str, indent=2).decode()
        return ReadResourceResult(contents=[TextResourceContents(uri=resource_uri, text=text,
                                                                 mime_type="application/json")])


def _signature(path: os.PathLike[str]) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def watch_resources(run: RunDir, bus: SubscriptionBus, interval_s: float = 1.0) -> None:
    """Publish ``ResourceUpdated`` for each resource whose run files changed since the last look."""
    files = {"metrics": run.metrics, "ledger": run.ledger, "actuators": run.actuators, "status": run.status}
    seen = {k: _signature(p) for k, p in files.items()}
    while True:
        await anyio.sleep(interval_s)
        changed = set()
        for key, path in files.items():
            sig = _signature(path)
            if sig != seen[key]:
                seen[key] = sig
                changed.add(key)
        for name, (_tool, _args, deps, _desc) in RESOURCES.items():
            if changed.intersection(deps):
                await bus.publish(ResourceUpdated(uri=uri(name)))
