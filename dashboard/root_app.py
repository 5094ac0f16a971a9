"""``hotcb serve --root ROOT``: the dashboard over a directory of run directories.

``/`` is the root page: the runs (``list_runs``) and a compare view of all of them -- one
metric overlaid across runs with their knob changes, and the metric-space map
(``metric_map``). ``/runs/NAME/`` is that run's own dashboard, the single-run app made on first
visit (its tools, live channel and guard are that run's). A run is looked up by name among the
runs the root holds; the browser never names a path. The same security middleware as a single
run's dashboard stands in front of everything.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from hotcb.mcp_server.run_root import RunRoot
from hotcb.mcp_server.tools_observe import MetricsInput, SeriesOut, pick_metrics
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount

from hotcb.records import LedgerRecord
from hotcb.vocabulary import Source

from .api import json_response
from .app import add_asset_routes, asset_table, create_app
from .config import DashboardConfig
from .metric_map import build_map
from .security import SecurityMiddleware, check_bind, is_loopback

COMPARE_POINTS = 300


class RunApps:
    """ASGI: ``/runs/{name}/...`` to that run's dashboard, made once per run."""

    def __init__(self, runs: RunRoot, cfg: DashboardConfig, token: str | None, host: str):
        self.runs, self.cfg, self.token, self.host = runs, cfg, token, host
        self.apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def app_for(self, name: str) -> Any:
        """The run's dashboard, re-checked on every request: a run whose directory was replaced
        (by a link: refused; by another directory: a new run) never serves the old app."""
        with self._lock:
            tools = self.runs.scan().get(name)
            ident = self.runs.identity(name) if tools is not None else None
            if tools is None or ident is None:
                self.apps.pop(name, None)
                return None
            cached = self.apps.get(name)
            if cached is None or cached[0] != ident:
                cached = self.apps[name] = (ident, create_app(tools.run.root, config=self.cfg, token=self.token,
                                                              host=self.host))
            return cached[1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.app_for(scope.get("path_params", {}).get("name", ""))
        if app is None:
            await Response("no such run", status_code=404, media_type="text/plain")(scope, receive, send)
            return
        await app(scope, receive, send)


def _changes(tools: Any) -> list[tuple[int | None, str]]:
    out = []
    with tools.lock:
        entries = tools.ledger_entries()
    for e in filter(None, map(LedgerRecord.from_json, entries)):
        for k, (_, new) in e.knob_changes().items():
            out.append((e.step, f"{k} -> {new}"))
    return out


def compare_all(runs: RunRoot) -> dict[str, Any]:
    """Every run's main metrics (downsampled), its applied knob changes, and the map."""
    series_by_run: dict[str, dict[str, SeriesOut]] = {}
    changes_by_run: dict[str, list[tuple[int | None, str]]] = {}
    for name, tools in sorted(runs.scan().items()):
        try:
            names = pick_metrics(tools.get_status().metrics, limit=10)
            series = tools.read_metrics(MetricsInput(metrics=names, max_points=COMPARE_POINTS)).series \
                if names else {}
            changes = _changes(tools)
        except Exception:  # one run's unreadable files leave it out, not the page (list_runs says why)
            continue
        series_by_run[name] = series
        changes_by_run[name] = changes
    return {
        "runs": {n: {"series": {m: v.model_dump(mode="json") for m, v in s.items()},
                     "changes": [{"step": st, "label": lb} for st, lb in changes_by_run[n]]}
                 for n, s in series_by_run.items()},
        "map": build_map(series_by_run, changes_by_run).model_dump(mode="json"),
    }


def create_root_app(root: str | os.PathLike[str], *, config: DashboardConfig | None = None, token: str | None = None,
                    host: str = "127.0.0.1") -> FastAPI:
    cfg = config or DashboardConfig()
    check_bind(host, token)
    runs = RunRoot(root, source=Source.HUMAN, actor=cfg.actor)
    assets = asset_table()
    app = FastAPI(title="hotcb dashboard (root)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runs = runs

    @app.get("/api/root/runs")
    async def list_runs() -> Response:
        return json_response((await run_in_threadpool(runs.list_runs)).model_dump(mode="json"))

    @app.get("/api/root/compare")
    async def compare() -> Response:
        return json_response(await run_in_threadpool(compare_all, runs))

    @app.get("/api/config")
    def get_config() -> Response:
        return json_response({"title": cfg.title, "ui": cfg.ui.model_dump(), "root": runs.root.name})

    add_asset_routes(app, assets, "root.html")

    @app.get("/runs/{name}")
    def run_slash(name: str) -> Response:  # the run's page loads its API by relative URLs: keep the slash
        return RedirectResponse(f"{quote(name, safe='')}/", status_code=307)

    app.router.routes.append(Mount("/runs/{name}", app=RunApps(runs, cfg, token, host)))
    app.add_middleware(SecurityMiddleware, token=token, loopback_only=is_loopback(host))
    return app
