"""What the rules see: metric windows read through the tool surface, summarized by trend_math.

A rule's ``window`` counts *points*, not steps: a val_loss logged every 10 steps needs 10x the
steps of a train_loss logged every step. The observer holds the last ``MAX_POINTS`` points of
each metric the rules need, exactly (never thinned): the first tick reads them with
``read_metrics(last=...)``, and every later tick only what was logged since, through the reply's
record cursor (each point once, late ones included). A replaced run file, or a rule needing a
metric not followed yet, starts it over.
"""

from __future__ import annotations

import math
from typing import Any

from hotcb.mcp_server.tools_observe import MetricsInput, MetricsOutput, SeriesOut, logged_values
from hotcb.mcp_server.tools_protocol import Tools

from hotcb import trend as trend_math
from hotcb.codec import decode_number

MAX_POINTS = 5000  # read_metrics' own cap: the points held per metric, and records per read
MAX_READS = 8  # a tick that would need more reads from the cursor reads the last points afresh
MIN_TREND_POINTS = 3  # the fewest points a window may have: a line through two is no trend


def as_float(v: Any) -> float:
    """Tool output carries non-finite values as "nan"/"inf"/"-inf" strings (or None)."""
    x = decode_number(v)
    return math.nan if x is None else x


def _points(s: SeriesOut) -> tuple[list[float], list[float]]:
    return [float(x) for x in s.steps], [as_float(v) for v in s.values]


class Observer:
    """Reads metric windows once per tick: one ``read_metrics`` call from the cursor of the last
    one, for every metric the rules need."""

    def __init__(self, tools: Tools):
        self.tools = tools
        self.status: dict[str, Any] = {}
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.step: int | None = None
        self._cursor: str | None = None  # the next record not read yet
        self._names: set[str] = set()  # the metrics followed from the cursor

    def refresh(self, metrics: list[str], window: int) -> None:
        """Bring the points of ``metrics`` (those the run logs) up to date; the last ``window``
        of each (up to ``MAX_POINTS``) are then in hand."""
        status = self.tools.get_status()
        self.status = status.model_dump(mode="json")  # the rules' checks read it as data
        self.step = status.step
        logged = logged_values(self.tools, status, metrics)  # a rule's metric among hundreds too
        names = [m for m in metrics if m in logged]
        if not names or self.step is None:
            self.series, self._cursor = {}, None
            return
        if self._cursor is None or not set(names) <= self._names or not self._follow():
            self._start(names)

    def _start(self, names: list[str]) -> None:
        out = self.tools.read_metrics(MetricsInput(metrics=names, last=MAX_POINTS))
        self.series = {name: _points(s) for name, s in out.series.items()}
        self._cursor, self._names = out.cursor, set(names)

    def _follow(self) -> bool:
        """Append what was logged since the cursor; False when the reader must start over."""
        for _ in range(MAX_READS):
            out: MetricsOutput = self.tools.read_metrics(MetricsInput(
                metrics=sorted(self._names), since_cursor=self._cursor, max_points=MAX_POINTS))
            if out.reset:
                return False
            self._cursor = out.cursor
            for name, s in out.series.items():
                steps, values = self.series.setdefault(name, ([], []))
                new_steps, new_values = _points(s)
                steps += new_steps
                values += new_values
                if len(steps) > 2 * MAX_POINTS:  # amortized trim keeps appends O(1)
                    del steps[:-MAX_POINTS], values[:-MAX_POINTS]
            if not out.more:
                return True
        return False

    def points_window(self, metric: str, n: int, min_points: int = 8, share: int = 3) -> int:
        """A window of ``n`` points, cut to what the run will actually produce: a metric logged
        every k steps gives about max_steps / k points a run, and a window should fit ``share``
        times in it (a 100-point val window can never fill on a run that logs 18 val points).
        ``min_points`` keeps a window from shrinking to noise, but never past half the run's
        points (at least ``MIN_TREND_POINTS``): a run that logs 8 val points would otherwise fill
        an 8-point window only at its last step, and its rule could never act."""
        steps = self.series.get(metric, ([], []))[0]
        total = self.status.get("max_steps")
        if not isinstance(total, int) or total <= 0 or len(steps) < 2:
            return n
        spacing = max((steps[-1] - steps[0]) / (len(steps) - 1), 1.0)
        expected = int(total / spacing)
        floor = min(min_points, max(MIN_TREND_POINTS, expected // 2))
        return max(floor, min(n, expected // share))

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
