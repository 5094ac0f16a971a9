"""What the rules see: metric windows read through the tool surface, summarized by trend_math."""

from __future__ import annotations

import math
from typing import Any

from hotcb.mcp_server import trend_math


def as_float(v: Any) -> float:
    """Tool output carries non-finite values as "nan"/"inf"/"-inf" strings (or None)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


class Observer:
    """Reads metric windows once per tick (one read_metrics call for every metric the rules need)."""

    def __init__(self, tools: Any):
        self.tools = tools
        self.status: dict[str, Any] = {}
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.step: int | None = None

    def refresh(self, metrics: list[str], window: int) -> None:
        self.status = self.tools.call("get_status", {})
        self.step = self.status.get("step")
        names = [m for m in metrics if m in set(self.status.get("metrics") or [])]
        self.series = {}
        if not names or self.step is None:
            return
        out = self.tools.call("read_metrics", {"metrics": names, "max_points": min(5000, window),
                                               "since_step": max(0, int(self.step) - window)})
        for name, s in out.get("series", {}).items():
            self.series[name] = ([float(x) for x in s["steps"]], [as_float(v) for v in s["values"]])

    def window(self, metric: str, n: int) -> tuple[list[float], list[float]]:
        steps, values = self.series.get(metric, ([], []))
        return steps[-n:], values[-n:]

    def summary(self, metric: str, n: int, **kw: Any) -> dict[str, Any] | None:
        steps, values = self.window(metric, n)
        if not steps:
            return None
        return trend_math.summarize(metric, steps, values, **kw)
