"""Trend maths over a metric series, written once for tools, rules, alerts and the dashboard.

All functions take plain sequences of (step, value) with non-finite values allowed; they never
raise on short or odd input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hotcb.trend import fit_line

# Metrics whose names contain these are maximized; everything else (losses) is minimized.
_MAXIMIZE_HINTS = ("acc", "f1", "auc", "precision", "recall", "bleu", "score", "reward", "iou", "map")


def maximize(name: str) -> bool:
    low = name.lower()
    return any(h in low for h in _MAXIMIZE_HINTS) and "loss" not in low and "err" not in low


def goal(name: str) -> str | None:
    """"min" for losses/errors, "max" for scores, None for anything else (knob echoes, lr, ...)."""
    low = name.lower()
    if "loss" in low or "err" in low or "perplex" in low or low in ("mse", "mae", "rmse", "nll", "ce"):
        return "min"
    return "max" if maximize(name) else None


def sig(x: float | None, digits: int = 4) -> float | None:
    """Round to significant digits (keeps tool output short); non-finite becomes None."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}")


def ema(values: np.ndarray, alpha: float) -> float:
    acc = float(values[0])
    for v in values[1:]:
        acc = alpha * float(v) + (1 - alpha) * acc
    return acc


def slope(steps: np.ndarray, values: np.ndarray) -> float:
    if len(values) < 2:
        return 0.0
    return fit_line(zip(steps.tolist(), values.tolist(), strict=True)).slope  # the core's one least-squares line


def summarize(name: str, steps: Sequence[float], values: Sequence[float], *, plateau_rel: float = 0.01,
              diverge_factor: float = 1.5) -> dict[str, Any]:
    """Compact summary of one metric over a window.

    ``trend`` is one of improving, worsening, flat, volatile, diverging, non_finite, no_data; for a
    metric with no known goal (an lr, a knob echo) rising/falling replace improving/worsening,
    and a metric that never moved is ``constant``.
    ``plateau``: the relative improvement across the window is below ``plateau_rel``.
    ``diverging``: the value left its window minimum by ``diverge_factor`` (min-directed metrics)
    while the slope points the wrong way, or values turned non-finite.
    """
    st = np.asarray(steps, dtype=float)
    va = np.asarray(values, dtype=float)
    finite = np.isfinite(va)
    n_bad = int((~finite).sum())
    out: dict[str, Any] = {"n": int(len(va)), "non_finite": n_bad}
    if len(va):
        out["step_range"] = [int(st[0]), int(st[-1])]
    if not finite.any():
        out.update(trend="non_finite" if n_bad else "no_data", plateau=False, diverging=bool(n_bad))
        return out
    fs, fv = st[finite], va[finite]
    up = maximize(name)
    sl = slope(fs, fv)
    mean = float(fv.mean())
    scale = max(abs(mean), 1e-12)
    vol = float(np.std(np.diff(fv))) / scale if len(fv) > 2 else 0.0
    half = max(1, len(fv) // 2)
    first, second = float(np.median(fv[:half])), float(np.median(fv[half:])) if len(fv) > 1 else float(fv[-1])
    gain = (second - first) if up else (first - second)  # > 0 means improving
    rel_gain = gain / max(abs(first), 1e-12)
    best = float(fv.max() if up else fv.min())
    last = float(fv[-1])
    last_is_bad = not bool(finite[-1])
    if up:
        diverging = last < best - abs(best) * (diverge_factor - 1) and sl < 0
    else:
        diverging = last > best * diverge_factor + 1e-12 and sl > 0 and last > first
    g = goal(name)
    if g is None:  # an lr or knob echo that rises is a choice, not a divergence
        diverging = False
    diverging = bool(diverging or last_is_bad)
    plateau = bool(len(fv) >= 8 and abs(rel_gain) < plateau_rel and not diverging)
    if last_is_bad:
        trend = "non_finite"
    elif diverging:
        trend = "diverging"
    elif plateau:
        trend = "flat"
    elif vol > 2 * max(abs(rel_gain), 1e-9) and vol > 0.1:
        trend = "volatile"
    else:
        trend = "improving" if rel_gain > 0 else "worsening"
    if float(fv.max()) == float(fv.min()) and not last_is_bad:
        trend, plateau = "constant", False
    elif g is None and trend in ("improving", "worsening"):
        trend = "falling" if sl < 0 else "rising"
    out.update({
        "last": sig(float(va[-1])) if finite[-1] else str(va[-1]),
        "min": sig(float(fv.min())), "max": sig(float(fv.max())), "mean": sig(mean),
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
    if trend in ("no_data",) or "last" not in summary:
        out = {"trend": trend, "n": summary.get("n", 0)}
        if summary.get("non_finite"):
            out["flags"] = [f"non_finite:{summary['non_finite']}"]
        return out
    if trend == "constant":
        return {"last": summary["last"], "trend": "constant"}
    out = {k: (sig(summary[k], digits) if isinstance(summary.get(k), float) else summary.get(k)) for k in COMPACT_KEYS}
    out["trend"] = trend
    flags = [f for f in ("plateau", "diverging") if summary.get(f)]
    if summary.get("non_finite"):
        flags.append(f"non_finite:{summary['non_finite']}")
    if flags:
        out["flags"] = flags
    if window_n is not None:
        out["n"] = summary.get("n")
    if summary.get("goal") == "max":
        out["goal"] = "max"
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
    st = np.asarray(steps, dtype=float)
    va = np.asarray(values, dtype=float)
    ok = np.isfinite(va) & (st > 0)
    st, va = st[ok], va[ok]
    window_span = max(float(st[-1] - st[0]), 1.0) if len(st) else 1.0
    if len(va) >= 16:
        keep = max(8, int(len(va) * tail))
        st, va = st[-keep:], va[-keep:]
    if len(va) < 8 or at_step <= 0:
        return None
    positive = bool((va > 0).all())
    model = "power law (log y ~ log step)" if positive else "y ~ log step"
    spans = (at_step - float(st[-1])) / window_span
    if spans > max_spans:
        limit = int(float(st[-1]) + max_spans * window_span)
        return {"at_step": int(at_step), "value": None, "low": None, "high": None, "model": model,
                "fit_points": int(len(va)),
                "extrapolation": sig((at_step - float(st[-1])) / max(float(st[-1] - st[0]), 1.0), 3),
                "reason": f"step {int(at_step)} is {spans:.3g} window spans past the data (limit {max_spans:g}): "
                          f"too far for the fit to mean anything; ask for horizon_step <= {limit}"}
    y = np.log(va) if positive else va
    x = np.log(st)
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx == 0:
        return None
    b = float(((x - xm) * (y - y.mean())).sum() / sxx)
    a = float(y.mean() - b * xm)
    resid = y - (a + b * x)
    dof = max(len(y) - 2, 1)
    sigma = math.sqrt(float((resid ** 2).sum()) / dof)
    x0 = math.log(at_step)
    pred = a + b * x0
    half = z * sigma * math.sqrt(1 + 1 / len(y) + (x0 - xm) ** 2 / sxx)
    lo, hi = pred - half, pred + half
    if positive:
        pred, lo, hi = math.exp(min(pred, 700)), math.exp(min(lo, 700)), math.exp(min(hi, 700))
    span = max(float(st[-1] - st[0]), 1.0)
    extrapolation = max(0.0, (at_step - float(st[-1])) / span)
    if extrapolation > 1:
        # Far out, the fitted curve's shape is itself the main uncertainty (a loss meets its noise
        # floor, a score saturates): the band also covers "it stays where it is now".
        level = float(np.median(va[-max(3, len(va) // 8):]))
        lo, hi = min(lo, level), max(hi, level)
    return {"at_step": int(at_step), "value": sig(pred), "low": sig(lo), "high": sig(hi),
            "model": model, "fit_points": int(len(y)),
            "extrapolation": sig(extrapolation, 3)}
