"""What the rules see: metric windows read through the tool surface, summarized by trend_math.

A rule's ``window`` counts *points*, not steps: a val_loss logged every 10 steps needs 10x the
steps of a train_loss logged every step. Each tick reads the last ``window`` steps of every
metric exactly (no thinning), then reads further back, once, for the metrics that had fewer
than ``window`` points there (sparse metrics, e.g. an eval every N steps).
"""

from __future__ import annotations

import math
from typing import Any

from hotcb.mcp_server import trend_math

from hotcb.codec import decode_number

MAX_POINTS = 5000  # read_metrics' own cap; a window's points are never thinned below it


def as_float(v: Any) -> float:
    """Tool output carries non-finite values as "nan"/"inf"/"-inf" strings (or None)."""
    x = decode_number(v)
    return math.nan if x is None else x


class Observer:
    """Reads metric windows once per tick (one read_metrics call for every metric the rules need,
    a second one only when a metric is sparser than one point per step)."""

    def __init__(self, tools: Any):
        self.tools = tools
        self.status: dict[str, Any] = {}
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.step: int | None = None

    def _read(self, names: list[str], since: int) -> dict[str, tuple[list[float], list[float]]]:
        out = self.tools.call("read_metrics", {"metrics": names, "max_points": MAX_POINTS, "since_step": since})
        return {name: ([float(x) for x in s["steps"]], [as_float(v) for v in s["values"]])
                for name, s in out.get("series", {}).items()}

    def refresh(self, metrics: list[str], window: int) -> None:
        """Read the last ``window`` points of each of ``metrics`` (those the run logs)."""
        self.status = self.tools.call("get_status", {})
        self.step = self.status.get("step")
        names = [m for m in metrics if m in set(self.status.get("metrics") or [])]
        self.series = {}
        if not names or self.step is None:
            return
        step = int(self.step)
        since = max(0, step - window)
        self.series = self._read(names, since)
        if since == 0:
            return  # the whole run so far is in hand
        need: list[float] = []
        for name in names:
            steps = self.series.get(name, ([], []))[0]
            if len(steps) >= window:
                continue
            # Steps per point, from what we have (a metric with < 2 points: at most one per window).
            spacing = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) >= 2 else float(max(window, 1))
            need.append(step - max(spacing, 1.0) * (window + 1))
        if not need:
            return
        older = self._read(names, max(0, int(min(need))))
        for name, (s2, v2) in older.items():
            s1, v1 = self.series.get(name, ([], []))
            first = s1[0] if s1 else math.inf
            k = next((i for i, s in enumerate(s2) if s >= first), len(s2))
            self.series[name] = (s2[:k] + s1, v2[:k] + v1)

    def points_window(self, metric: str, n: int, min_points: int = 8, share: int = 3) -> int:
        """A window of ``n`` points, cut to what the run will actually produce: a metric logged
        every k steps gives about max_steps / k points a run, and a window should fit ``share``
        times in it (a 100-point val window can never fill on a run that logs 18 val points)."""
        steps = self.series.get(metric, ([], []))[0]
        total = self.status.get("max_steps")
        if not isinstance(total, int) or total <= 0 or len(steps) < 2:
            return n
        spacing = max((steps[-1] - steps[0]) / (len(steps) - 1), 1.0)
        expected = int(total / spacing)
        return max(min_points, min(n, expected // share))

    def window(self, metric: str, n: int) -> tuple[list[float], list[float]]:
        """The last ``n`` points of ``metric``."""
        steps, values = self.series.get(metric, ([], []))
        return steps[-n:], values[-n:]

    def between(self, metric: str, lo: float, hi: float) -> tuple[list[float], list[float]]:
        """The points of ``metric`` with lo <= step <= hi (as far back as this tick read)."""
        steps, values = self.series.get(metric, ([], []))
        keep = [i for i, s in enumerate(steps) if lo <= s <= hi]
        return [steps[i] for i in keep], [values[i] for i in keep]

    def summary(self, metric: str, n: int, **kw: Any) -> dict[str, Any] | None:
        steps, values = self.window(metric, n)
        if not steps:
            return None
        return trend_math.summarize(metric, steps, values, **kw)
