"""MCP resources of a run (``hotcb://run/...``) and the watcher that announces their updates.

Each resource is the output of a read-only tool (so its shape is that tool's output model,
written once): ``metrics`` = ``read_trends``, ``ledger`` = ``read_ledger`` (recent), ``actuators``
= ``describe_actuators``, ``status`` = ``get_status``.

Updates: the mcp 2.x SDK delivers ``notifications/resources/updated`` to clients that opened a
``subscriptions/listen`` stream (protocol 2026-07-28). The watcher stats the run files once per
interval (one ``stat`` each, no reads) and publishes an event when one changed. Clients on the
older handshake protocol (``resources/subscribe``) are not notified: the SDK's MCPServer does
not serve that method; they re-read instead.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import FunctionResource
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from hotcb.rundir import RunDir

from .tools import HotcbTools

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


def register_resources(server: MCPServer, tools: HotcbTools) -> None:
    for name, (tool_name, args, _files, description) in RESOURCES.items():
        server.add_resource(FunctionResource(
            uri=uri(name), name=name, title=f"run {name}", description=description,
            mime_type="application/json", fn=lambda t=tool_name, a=args: tools.call(t, a),
        ))


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
