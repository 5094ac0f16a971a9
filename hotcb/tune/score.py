"""Scoring one change: the segment after it against the trend of the segment before it.

Training losses drift down on their own and are noisy, so "loss after minus loss before" both
credits the knob with progress it did not cause and flips sign on noise. Instead the segment
before the change gets a least-squares line; its projection over the segment after the change
is what the old setting would have given; the improvement is the gap, in metric units, and it
counts only when it exceeds ``z`` standard errors of that gap (noise of both segments plus the
uncertainty of the projection). A slope that is not distinguishable from zero is not projected,
so noise in a flat segment is not extrapolated into a fake trend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..trend import fit_line

Point = tuple[int, float]  # (step, value)


@dataclass
class Trend:
    n: int
    mean_x: float
    mean_y: float
    slope: float  # 0.0 when not significant
    sxx: float
    resid_sd: float

    def at(self, x: float) -> float:
        return self.mean_y + self.slope * (x - self.mean_x)

    def var_mean_at(self, x: float) -> float:
        """Variance of the projected level at ``x`` (the line's own uncertainty)."""
        lever = (x - self.mean_x) ** 2 / self.sxx if self.slope and self.sxx > 0 else 0.0
        return self.resid_sd ** 2 * (1.0 / self.n + lever)


def fit_trend(points: list[Point], sig_z: float = 2.0) -> Trend:
    """A least-squares line through ``points`` (n >= 2); keep the slope only if significant."""
    line = fit_line(points)
    n, mx, my, sxx, slope = line.n, line.mean_x, line.mean_y, line.sxx, line.slope
    resid_sd = math.sqrt(line.ss_resid / (n - 2)) if n > 2 else 0.0
    se_slope = resid_sd / math.sqrt(sxx) if sxx > 0 else math.inf
    if not abs(slope) > sig_z * se_slope:
        slope = 0.0
        resid_sd = math.sqrt(sum((p[1] - my) ** 2 for p in points) / (n - 1)) if n > 1 else 0.0
    return Trend(n, mx, my, slope, sxx, resid_sd)


@dataclass
class Score:
    pre_score: float  # the pre-change trend projected over the post segment
    post_score: float  # the post segment's mean
    improvement: float  # pre_score - post_score when minimising (positive = better)
    se: float
    accepted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"pre_score": self.pre_score, "post_score": self.post_score, "improvement": self.improvement,
                "se": self.se, "accepted": self.accepted, "reason": self.reason}


def score_change(pre: list[Point], post: list[Point], *, direction: str = "minimize",
                 accept_z: float = 1.0) -> Score:
    """Compare the post segment with the pre segment's trend. Needs >= 2 finite pre points."""
    sign = 1.0 if direction == "minimize" else -1.0
    trend = fit_trend(pre)
    post_x = sum(p[0] for p in post) / len(post)
    predicted = trend.at(post_x)
    if any(not math.isfinite(v) for _, v in post):
        return Score(predicted, math.nan, -math.inf, math.nan, False, "the objective went non-finite")
    post_trend = fit_trend(post)  # its residual sd is the post noise (a transient is not noise)
    post_mean = post_trend.mean_y
    se = math.sqrt(trend.var_mean_at(post_x) + post_trend.resid_sd ** 2 / len(post))
    improvement = sign * (predicted - post_mean)
    accepted = improvement > accept_z * se and improvement > 0
    verdict = "beats" if accepted else "does not beat"
    reason = f"{improvement:+.4g} vs the pre-change trend ({verdict} {accept_z:g} x se {se:.3g})"
    return Score(predicted, post_mean, improvement, se, accepted, reason)


def worse_than(pre_score: float, post: list[Point], limit: float, direction: str = "minimize") -> bool:
    """Risk check during a trial: the post segment so far is ``limit`` (relative) worse, or non-finite."""
    if any(not math.isfinite(v) for _, v in post):
        return True
    mean = sum(v for _, v in post) / len(post)
    gap = (mean - pre_score) if direction == "minimize" else (pre_score - mean)
    return gap > limit * max(abs(pre_score), 1e-12)
