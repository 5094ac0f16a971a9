"""Assemble the dashboard: the API, the live channel, the page and its assets.

Assets are served from a whitelist built at start-up (every file under ``static/``, by its
relative name), so a request path is only ever a dictionary key: ``..``, encoded slashes or
absolute paths cannot name a file outside the package, whatever the URL parser does.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from hotcb.mcp_server.tools import HotcbTools

from hotcb.vocabulary import Source

from .api import build_router
from .config import DashboardConfig
from .live import LiveHub
from .security import SecurityMiddleware, check_bind, is_loopback

STATIC = Path(__file__).with_name("static")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}


def asset_table(root: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """relative name -> (bytes, content type) for every shipped asset, read once."""
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            rel = p.relative_to(root).as_posix()
            kind = TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            table[rel] = (p.read_bytes(), kind)
    return table


def add_asset_routes(app: FastAPI, assets: dict[str, tuple[bytes, str]], index: str) -> None:
    """``/`` (the page ``index``) and ``/static/{name}``, from the whitelist ``assets``."""
    def asset(name: str) -> Response:
        hit = assets.get(name)
        if hit is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, kind = hit
        return Response(body, media_type=kind, headers={"cache-control": "no-cache"})

    @app.get("/")
    def page() -> Response:
        return asset(index)

    @app.get("/static/{name:path}")
    def static(name: str) -> Response:
        return asset(name)


def create_app(run_dir: str | os.PathLike[str], *, config: DashboardConfig | None = None, token: str | None = None,
               host: str = "127.0.0.1", compare_dir: str | os.PathLike[str] | None = None) -> FastAPI:
    cfg = config or DashboardConfig()
    check_bind(host, token)
    if not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir} is not a directory")
    tools = HotcbTools(run_dir, source=Source.HUMAN, actor=cfg.actor)
    compare = None
    if compare_dir is not None:
        if not Path(compare_dir).is_dir():
            raise ValueError(f"compare run {compare_dir} is not a directory")
        compare = HotcbTools(compare_dir, source=Source.HUMAN, actor=cfg.actor)

    def available() -> set[str]:
        return {s.name for s in tools.specs()}

    hub = LiveHub(tools, cfg, available)
    assets = asset_table()
    app = FastAPI(title="hotcb dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tools, app.state.hub, app.state.config = tools, hub, cfg
    app.include_router(build_router(tools, cfg, compare, compare.run.root.name if compare else None, hub.nudge))

    @app.get("/api/live")
    async def live(request: Request) -> StreamingResponse:
        return StreamingResponse(hub.stream(request.is_disconnected), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    add_asset_routes(app, assets, "index.html")
    # Outermost: nothing (not even a 404) is answered before the token and Origin checks.
    app.add_middleware(SecurityMiddleware, token=token, loopback_only=is_loopback(host))
    return app
