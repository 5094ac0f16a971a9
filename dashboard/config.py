"""``DashboardConfig``: every tunable of the dashboard in one pydantic model.

Layers, later wins: defaults -> YAML file (``--config``) -> environment (``HOTCB_DASH_*``) ->
CLI (``--set section.key=value`` and the explicit flags). The page fetches it once from
``/api/config``, so the server and the browser never disagree about intervals or limits.

Environment names: ``HOTCB_DASH_<SECTION>__<KEY>`` (double underscore between section and
key), e.g. ``HOTCB_DASH_LIVE__POLL_MS=100``. Values are parsed as YAML scalars/lists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "HOTCB_DASH_"
TOKEN_ENV = "HOTCB_DASH_TOKEN"  # a secret, never part of the config the page is served


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a config file is an error, not a no-op


class LiveConfig(_Section):
    """The server-side poller that feeds the live channel."""

    poll_ms: int = Field(250, ge=20, le=60_000, description="how often new metrics/ledger lines are read "
                                                             "when wake is poll (or file watching is unavailable)")
    wake: Literal["watch", "poll"] = Field("watch", description="watch: read when the metrics/ledger file changes "
                                                                "(watchfiles); poll: every poll_ms")
    fallback_poll_ms: int = Field(1000, ge=100, le=60_000, description="with wake=watch, read at least this often "
                                                                      "anyway (a missed notification)")
    status_ms: int = Field(1000, ge=100, le=60_000, description="how often status and knobs are re-read")
    panels_ms: int = Field(3000, ge=250, le=600_000, description="autopilot, proposals, alerts, schedule refresh")
    keepalive_s: float = Field(15.0, ge=1, le=300, description="SSE comment sent when nothing else is")


class HistoryConfig(_Section):
    initial_points: int = Field(2000, ge=2, le=5000, description="points per metric sent on connect (downsampled)")
    max_points: int = Field(20_000, ge=100, le=1_000_000, description="points per metric the page keeps")
    ledger_rows: int = Field(500, ge=10, le=5000, description="ledger rows sent on connect and kept")
    alerts: int = Field(50, ge=1, le=1000)
    proposals: int = Field(50, ge=1, le=1000)


class ChartConfig(_Section):
    height: int = Field(190, ge=80, le=1200)
    metrics: list[str] = Field(default_factory=list, description="metrics to chart, in order; empty: all")
    hidden: list[str] = Field(default_factory=list, description="metrics never charted")
    log_scale: list[str] = Field(default_factory=lambda: ["lr", "*loss*"],
                                 description="metrics drawn on a log y axis (names or * globs)")
    markers: bool = Field(True, description="draw a marker wherever a knob changed")
    knob_echoes: bool = Field(False, description="also chart the kernel's knob echoes (opt/lr, loss/...)")
    columns: int = Field(2, ge=1, le=4, description="charts per row on a wide screen")


class UiConfig(_Section):
    redraw_ms: int = Field(200, ge=16, le=10_000, description="charts redraw at most this often")
    toast_ms: int = Field(5000, ge=500, le=60_000)
    compare_refresh_ms: int = Field(10_000, ge=1000, le=600_000)
    reconnect_ms: int = Field(2000, ge=100, le=60_000)


class DashboardConfig(_Section):
    live: LiveConfig = Field(default_factory=LiveConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    chart: ChartConfig = Field(default_factory=ChartConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    actor: str = Field("dashboard", min_length=1, max_length=80, description="actor recorded for changes made here")
    title: str = Field("hotcb", max_length=200)


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.replace("__", ".").lower().split(".") if p]
    if not parts:
        raise ValueError(f"empty config key in {dotted!r}")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"{dotted}: {p} is not a section")
    node[parts[-1]] = value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in (os.environ if environ is None else environ).items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX) and name != TOKEN_ENV:
            _set_path(tree, name[len(ENV_PREFIX):], _parse_scalar(raw))
    return tree


def cli_overrides(pairs: list[str] | None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"expected section.key=value, got {item!r}")
        _set_path(tree, key.strip(), _parse_scalar(raw))
    return tree


def load_config(path: str | os.PathLike[str] | None = None, *, cli: dict[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> DashboardConfig:
    """defaults -> YAML -> env -> CLI. Raises ValueError (pydantic's) with the offending key."""
    tree: dict[str, Any] = {}
    if path:
        import yaml

        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the dashboard config must be a mapping")
        tree = _merge(tree, loaded)
    tree = _merge(tree, env_overrides(environ))
    tree = _merge(tree, cli or {})
    return DashboardConfig.model_validate(tree)
