"""The least-squares line through (step, value) points: written once, for tune's scoring
(``hotcb.modules.tune_score``) and the tool surface's trend maths (``mcp_server.trend_math``).
Core, stdlib only (the tool layer may import core, never the other way)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    n: int
    mean_x: float
    mean_y: float
    slope: float  # 0.0 when the x values do not spread
    sxx: float  # sum of squared x deviations
    ss_resid: float  # sum of squared residuals around the line

    def at(self, x: float) -> float:
        return self.mean_y + self.slope * (x - self.mean_x)


def fit_line(points: Iterable[tuple[float, float]]) -> Line:
    """Ordinary least squares of y on x over ``points`` (at least one)."""
    pts = [(float(x), float(y)) for x, y in points]
    n = len(pts)
    if n == 0:
        raise ValueError("fit_line needs at least one point")
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    slope = sxy / sxx if sxx > 0 else 0.0
    ss = sum((y - (my + slope * (x - mx))) ** 2 for x, y in pts)
    return Line(n, mx, my, slope, sxx, ss)
