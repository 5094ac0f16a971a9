"""The dashboard's JSON API: a thin door onto ``HotcbTools``.

The page names the tool it calls (``POST /api/tools/{name}``), so that endpoint goes through
``HotcbTools.call(name, arguments)``; the server's own reads use the typed methods. Every
action and every read runs as source ``human`` through the one tool path: validation,
the guard and the file writes live in the tool surface only. This module adds no rule of its
own except HTTP hygiene (JSON bodies only, refusals as 4xx with the tool's message).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_observe import LedgerInput, MetricsInput

from hotcb.codec import encode
from hotcb.ledger import DECISIONS
from hotcb.ops import SOURCES
from hotcb.records import NOT_KNOBS

from .config import DashboardConfig

ACTOR_HEADER = "x-hotcb-user"
_ACTOR_OK = re.compile(r"^[A-Za-z0-9_.@+ -]{1,60}$")
MAX_BODY = 1_000_000  # a recipe of a few thousand ops fits; nothing legitimate is larger


def dumps(data: Any) -> str:
    """JSON without NaN/Infinity tokens (JSON.parse rejects them): non-finite floats become
    the strings the run directory uses for them, so divergence still shows."""
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(encode(data), separators=(",", ":"))




def json_response(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})




async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, read chunk by chunk and cut off past ``limit`` (None then): a huge upload is
    refused after ``limit`` bytes, never held in memory whole. A declared Content-Length over
    the limit is refused before reading anything."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def actor_for(request: Request, default: str) -> str:
    """The person's name if the page sent one (free text from the user, stored as text), else
    the configured actor. The *source* is always human here; the name cannot raise rights."""
    name = (request.headers.get(ACTOR_HEADER) or "").strip()
    return name if _ACTOR_OK.match(name) else default


def build_router(tools: HotcbTools, cfg: DashboardConfig, compare: HotcbTools | None,
                 compare_label: str | None, on_action: Callable[[], None] = lambda: None) -> APIRouter:
    r = APIRouter(prefix="/api")

    @r.get("/config")
    def get_config() -> Response:
        # The ledger's closed sets come from core, so the page never lists a stale one.
        return json_response({"config": cfg.model_dump(mode="json"), "compare": compare_label,
                              "run": tools.run.root.name,
                              "enums": {"decisions": list(DECISIONS), "sources": [*SOURCES, "kernel"],
                                        "not_knobs": list(NOT_KNOBS)}})

    @r.get("/tools")
    def list_tools() -> Response:
        """What this server can do (so the page hides panels whose tools are not installed)."""
        return json_response({"tools": [
            {"name": s.name, "title": s.title, "read_only": s.read_only, "destructive": s.destructive,
             "human_only": s.human_only, "description": s.description}
            for s in tools.specs()]})

    @r.post("/tools/{name}")
    async def call_tool(name: str, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            # A cross-site form cannot send JSON without a CORS preflight, which we never grant.
            return JSONResponse({"error": "send a JSON object (Content-Type: application/json)"}, 415)
        body = await bounded_body(request, MAX_BODY)
        if body is None:
            return JSONResponse({"error": f"request too large (limit {MAX_BODY} bytes)"}, 413)
        try:
            args = json.loads(body or b"{}")
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)
        if not isinstance(args, dict):
            return JSONResponse({"error": "the body must be a JSON object of tool arguments"}, 400)
        actor = actor_for(request, cfg.actor)
        from starlette.concurrency import run_in_threadpool

        try:
            # Writers wait seconds for the kernel's decision: never on the event loop.
            result = await run_in_threadpool(tools.call, name, args, actor=actor)
        except ToolError as e:
            on_action()  # a refusal is in the ledger too: show it now
            return json_response({"error": str(e)}, e.http_status)  # the error's kind says its status
        on_action()
        return json_response(result)

    @r.get("/compare")
    async def get_compare() -> Response:
        """The second run fixed at start-up (never a path from the browser): metrics and changes."""
        if compare is None:
            return json_response({"error": "no compare run: start the server with --compare RUN_DIR"}, 404)
        from starlette.concurrency import run_in_threadpool

        other = compare

        def read() -> dict[str, Any]:
            metrics = other.read_metrics(MetricsInput(max_points=cfg.history.initial_points))
            ledger = other.read_ledger(LedgerInput(last=cfg.history.ledger_rows, decision="applied"))
            return {"label": compare_label, "metrics": metrics.model_dump(mode="json"),
                    "ledger": ledger.model_dump(mode="json")}

        return json_response(await run_in_threadpool(read))

    return r
