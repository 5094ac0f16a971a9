"""Trend maths over a metric series, written once for tune's scoring, the tool surface's trends,
the autopilot's rules and alerts and the dashboard: the least-squares line (``fit_line``), a
window's summary and trend label (``summarize``, ``compact``), a forecast (``forecast``), and
the vocabularies they speak (``Trend``, ``Goal``).

Core, stdlib only (the tool layer may import core, never the other way). Functions take plain
sequences of (step, value) with non-finite values allowed; they never raise on short or odd input.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .codec import tag


class Trend(str, Enum):
    """A metric's trend over a window (``summarize``'s ``trend``); str-valued, so JSON is unchanged."""

    IMPROVING = "improving"
    WORSENING = "worsening"
    RISING = "rising"  # a metric with no goal (an lr, a knob echo) in place of improving/worsening
    FALLING = "falling"
    FLAT = "flat"
    VOLATILE = "volatile"
    DIVERGING = "diverging"
    NON_FINITE = "non_finite"  # the latest value is NaN or infinite
    CONSTANT = "constant"  # never moved
    NO_DATA = "no_data"

    def __str__(self) -> str:
        return self.value


class Goal(str, Enum):
    """The direction a metric should move: down for losses and errors, up for scores."""

    MIN = "min"
    MAX = "max"

    def __str__(self) -> str:
        return self.value


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


# Metrics whose names contain these are maximized; everything else (losses) is minimized.
_MAXIMIZE_HINTS = ("acc", "f1", "auc", "precision", "recall", "bleu", "score", "reward", "iou", "map")


def maximize(name: str) -> bool:
    low = name.lower()
    return any(h in low for h in _MAXIMIZE_HINTS) and "loss" not in low and "err" not in low


def goal(name: str) -> Goal | None:
    """``Goal.MIN`` for losses/errors, ``Goal.MAX`` for scores, None for anything else (knob echoes, lr, ...)."""
    low = name.lower()
    if "loss" in low or "err" in low or "perplex" in low or low in ("mse", "mae", "rmse", "nll", "ce"):
        return Goal.MIN
    return Goal.MAX if maximize(name) else None


def sig(x: float | None, digits: int = 4) -> float | None:
    """Round to significant digits (keeps tool output short); non-finite becomes None."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}")


def sig_or_tag(x: float, digits: int = 4) -> float | str:
    """``sig`` for a finite value, the codec's tag ("nan", "inf", "-inf") for any other."""
    s = sig(x, digits)
    return tag(x) if s is None else s


def ema(values: Sequence[float], alpha: float) -> float:
    acc = float(values[0])
    for v in values[1:]:
        acc = alpha * float(v) + (1 - alpha) * acc
    return acc


def slope(steps: Sequence[float], values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    return fit_line(zip(steps, values, strict=True)).slope


def _label(*, last_is_bad: bool, diverging: bool, plateau: bool, vol: float, rel_gain: float) -> Trend:
    if last_is_bad:
        return Trend.NON_FINITE
    if diverging:
        return Trend.DIVERGING
    if plateau:
        return Trend.FLAT
    if vol > 2 * max(abs(rel_gain), 1e-9) and vol > 0.1:
        return Trend.VOLATILE
    return Trend.IMPROVING if rel_gain > 0 else Trend.WORSENING


def summarize(name: str, steps: Sequence[float], values: Sequence[float], *, plateau_rel: float = 0.01,
              diverge_factor: float = 1.5) -> dict[str, Any]:
    """Compact summary of one metric over a window.

    ``trend`` is a ``Trend``: improving, worsening, flat, volatile, diverging, non_finite, no_data;
    for a metric with no known goal (an lr, a knob echo) rising/falling replace improving/worsening,
    and a metric that never moved is ``constant``.
    ``plateau``: the relative improvement across the window is below ``plateau_rel``.
    ``diverging``: the value left its window minimum by ``diverge_factor`` (min-directed metrics)
    while the slope points the wrong way, or values turned non-finite.
    """
    st = [float(s) for s in steps]
    va = [float(v) for v in values]
    finite = [math.isfinite(v) for v in va]
    n_bad = finite.count(False)
    out: dict[str, Any] = {"n": len(va), "non_finite": n_bad}
    if va:
        out["step_range"] = [int(st[0]), int(st[-1])]
    if not any(finite):
        out.update(trend=Trend.NON_FINITE if n_bad else Trend.NO_DATA, plateau=False, diverging=bool(n_bad))
        return out
    fs = [s for s, ok in zip(st, finite, strict=False) if ok]
    fv = [v for v, ok in zip(va, finite, strict=True) if ok]
    up = maximize(name)
    sl = slope(fs, fv)
    mean = math.fsum(fv) / len(fv)
    scale = max(abs(mean), 1e-12)
    vol = statistics.pstdev([b - a for a, b in zip(fv, fv[1:], strict=False)]) / scale if len(fv) > 2 else 0.0
    half = max(1, len(fv) // 2)
    first, second = statistics.median(fv[:half]), statistics.median(fv[half:]) if len(fv) > 1 else fv[-1]
    gain = (second - first) if up else (first - second)  # > 0 means improving
    rel_gain = gain / max(abs(first), 1e-12)
    best = max(fv) if up else min(fv)
    last = fv[-1]
    last_is_bad = not finite[-1]
    if up:
        diverging = last < best - abs(best) * (diverge_factor - 1) and sl < 0
    else:
        diverging = last > best * diverge_factor + 1e-12 and sl > 0 and last > first
    g = goal(name)
    if g is None:  # an lr or knob echo that rises is a choice, not a divergence
        diverging = False
    diverging = bool(diverging or last_is_bad)
    plateau = bool(len(fv) >= 8 and abs(rel_gain) < plateau_rel and not diverging)
    trend = _label(last_is_bad=last_is_bad, diverging=diverging, plateau=plateau, vol=vol, rel_gain=rel_gain)
    if max(fv) == min(fv) and not last_is_bad:
        trend, plateau = Trend.CONSTANT, False
    elif g is None and trend in (Trend.IMPROVING, Trend.WORSENING):
        trend = Trend.FALLING if sl < 0 else Trend.RISING
    out.update({
        "last": sig_or_tag(va[-1]),
        "min": sig(min(fv)), "max": sig(max(fv)), "mean": sig(mean),
        "slope": sig(sl), "ema": sig(ema(fv, 2 / (min(len(fv), 20) + 1))), "volatility": sig(vol, 3),
        "rel_change": sig(rel_gain, 3), "trend": trend, "plateau": plateau, "diverging": diverging,
        "goal": g,
    })
    return out


COMPACT_KEYS = ("last", "min", "max", "mean", "slope", "ema", "volatility")


def compact(summary: dict[str, Any], window_n: int | None = None, digits: int = 3) -> dict[str, Any]:
    """The LLM-sized form of a ``summarize`` result (about 40 tokens per metric).

    Stats rounded to ``digits`` significant digits; flags listed only when raised; ``n`` only when
    ``window_n`` is given (callers add it where the count is not implied); a constant metric is
    just its value.
    """
    trend = summary.get("trend")
    if trend == Trend.NO_DATA or "last" not in summary:
        out = {"trend": trend, "n": summary.get("n", 0)}
        if summary.get("non_finite"):
            out["flags"] = [f"non_finite:{summary['non_finite']}"]
        return out
    if trend == Trend.CONSTANT:
        return {"last": summary["last"], "trend": Trend.CONSTANT}
    out = {k: (sig(summary[k], digits) if isinstance(summary.get(k), float) else summary.get(k)) for k in COMPACT_KEYS}
    out["trend"] = trend
    flags = [f for f in ("plateau", "diverging") if summary.get(f)]
    if summary.get("non_finite"):
        flags.append(f"non_finite:{summary['non_finite']}")
    if flags:
        out["flags"] = flags
    if window_n is not None:
        out["n"] = summary.get("n")
    if summary.get("goal") == Goal.MAX:
        out["goal"] = Goal.MAX
    return out


MAX_HORIZON_SPANS = 5.0  # how far past the data a forecast is still worth a number (in window spans)


def forecast(steps: Sequence[float], values: Sequence[float], at_step: float, z: float = 1.96,
             tail: float = 0.5, max_spans: float = MAX_HORIZON_SPANS) -> dict[str, Any] | None:
    """Extrapolate a metric to ``at_step`` from the recent part of its window.

    The fit uses the last ``tail`` fraction of the points (the current regime, not the first
    steep drop). A metric that stayed positive (a loss) is fitted as a power law,
    ``log y = a + b*log(step)``, so the forecast and its band stay positive; anything else as
    ``y = a + b*log(step)``. The band is the regression's prediction interval
    (±z·σ·sqrt(1 + 1/n + leverage)), which widens with the distance extrapolated;
    ``extrapolation`` says how many fitted spans lie between the last point and ``at_step``.
    Returns None with too little data. Beyond ``max_spans`` spans of the window past its last
    point the fit says nothing useful (a power law 4,000 windows out gives 1e21): the value
    and band are then null, with the reason and the farthest step that gets a number.
    """
    pts = [(float(s), float(v)) for s, v in zip(steps, values, strict=False)]
    pts = [(s, v) for s, v in pts if math.isfinite(v) and s > 0]
    st, va = [s for s, _ in pts], [v for _, v in pts]
    window_span = max(st[-1] - st[0], 1.0) if st else 1.0
    if len(va) >= 16:
        keep = max(8, int(len(va) * tail))
        st, va = st[-keep:], va[-keep:]
    if len(va) < 8 or at_step <= 0:
        return None
    positive = all(v > 0 for v in va)
    model = "power law (log y ~ log step)" if positive else "y ~ log step"
    spans = (at_step - st[-1]) / window_span
    if spans > max_spans:
        limit = int(st[-1] + max_spans * window_span)
        return {"at_step": int(at_step), "value": None, "low": None, "high": None, "model": model,
                "fit_points": len(va),
                "extrapolation": sig((at_step - st[-1]) / max(st[-1] - st[0], 1.0), 3),
                "reason": f"step {int(at_step)} is {spans:.3g} window spans past the data (limit {max_spans:g}): "
                          f"too far for the fit to mean anything; ask for horizon_step <= {limit}"}
    y = [math.log(v) for v in va] if positive else va
    x = [math.log(s) for s in st]
    line = fit_line(zip(x, y, strict=True))
    if line.sxx == 0:
        return None
    dof = max(len(y) - 2, 1)
    sigma = math.sqrt(line.ss_resid / dof)
    x0 = math.log(at_step)
    pred = line.at(x0)
    half = z * sigma * math.sqrt(1 + 1 / len(y) + (x0 - line.mean_x) ** 2 / line.sxx)
    lo, hi = pred - half, pred + half
    if positive:
        pred, lo, hi = math.exp(min(pred, 700)), math.exp(min(lo, 700)), math.exp(min(hi, 700))
    span = max(st[-1] - st[0], 1.0)
    extrapolation = max(0.0, (at_step - st[-1]) / span)
    if extrapolation > 1:
        # Far out, the fitted curve's shape is itself the main uncertainty (a loss meets its noise
        # floor, a score saturates): the band also covers "it stays where it is now".
        level = statistics.median(va[-max(3, len(va) // 8):])
        lo, hi = min(lo, level), max(hi, level)
    return {"at_step": int(at_step), "value": sig(pred), "low": sig(lo), "high": sig(hi),
            "model": model, "fit_points": len(y),
            "extrapolation": sig(extrapolation, 3)}
