"""The metric-space map of a root of runs: each run's metric vectors over steps, projected to 2-D.

A run at a step is a point whose coordinates are its metric values then: the metrics every run
logs that have a goal (losses, errors, accuracies, scores: ``hotcb.trend.goal``), so knob values
logged as metrics (``lr``, ``opt/lr``) and throughput are not coordinates -- a knob change
shows as where a path turns, not as a jump along a knob's own axis. Each run's metrics are interpolated onto its own step grid (the
steps of its first metric, at most ``POINTS``), every metric is standardized over all runs'
points (so a loss in 0..3 and an accuracy in 0..1 weigh the same; a constant one drops out),
and the stacked points are projected onto their first two principal components (SVD, numpy).
A run then draws a path through one shared plane: runs that train alike run alongside, and a
knob change shows where a path turns. Changes are marked at the grid point nearest their step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hotcb.mcp_server.tools_observe import SeriesOut
from pydantic import BaseModel

from hotcb.trend import goal

POINTS = 200
MAX_METRICS = 12


class MapChange(BaseModel):
    step: int | None
    index: int  # into the run's path
    label: str


class RunPath(BaseModel):
    name: str
    steps: list[float]
    xy: list[list[float]]
    changes: list[MapChange] = []


class MetricMap(BaseModel):
    metrics: list[str]  # the coordinates before projection
    explained: list[float]  # share of the variance on each of the two axes
    runs: list[RunPath]
    note: str | None = None  # why there is no map (too few shared metrics or points)


def _finite(steps: list[float], values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(s, v) for s, v in zip(steps, values, strict=False) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not pairs:
        return np.empty(0), np.empty(0)
    st, va = np.asarray(pairs, dtype=float).T
    order = np.argsort(st, kind="stable")
    return st[order], va[order]


Series = Mapping[str, Mapping[str, SeriesOut]]  # run -> metric -> its points (``read_metrics``' series)


def shared_metrics(series_by_run: Series) -> list[str]:
    """Metrics every run logs that have a goal (min or max), sorted."""
    sets = [{n for n in series if "/" not in n and goal(n)} for series in series_by_run.values()]
    common = set.intersection(*sets) if sets else set()
    return sorted(common)[:MAX_METRICS]


def build_map(series_by_run: Series, changes_by_run: Mapping[str, list[tuple[int | None, str]]]) -> MetricMap:
    """``series_by_run``: run -> metric -> its points; ``changes_by_run``: run -> (step, label)."""
    metrics = shared_metrics(series_by_run)
    if len(metrics) < 2:
        return MetricMap(metrics=metrics, explained=[], runs=[], note="the runs share fewer than 2 metrics")
    grids: dict[str, np.ndarray] = {}
    blocks: dict[str, np.ndarray] = {}
    for name, series in series_by_run.items():
        cols = [_finite(series[m].steps, series[m].values) for m in metrics]
        if any(len(st) == 0 for st, _ in cols):
            continue
        lo = max(st[0] for st, _ in cols)
        hi = min(st[-1] for st, _ in cols)
        grid = cols[0][0][(cols[0][0] >= lo) & (cols[0][0] <= hi)]
        if len(grid) == 0:
            continue
        if len(grid) > POINTS:
            grid = grid[np.linspace(0, len(grid) - 1, POINTS).round().astype(int)]
        grids[name] = grid
        blocks[name] = np.column_stack([np.interp(grid, st, va) for st, va in cols])
    if not blocks or sum(len(b) for b in blocks.values()) < 3:
        return MetricMap(metrics=metrics, explained=[], runs=[], note="too few points to project")
    stacked = np.vstack(list(blocks.values()))
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    keep = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    if keep.sum() < 2:
        return MetricMap(metrics=metrics, explained=[], runs=[], note="fewer than 2 metrics vary")
    z = (stacked[:, keep] - mean[keep]) / std[keep]
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    axes = vt[:2].T
    var = s ** 2
    explained = [float(v / var.sum()) for v in var[:2]]
    runs = []
    for name, block in blocks.items():
        xy = ((block[:, keep] - mean[keep]) / std[keep]) @ axes
        grid = grids[name]
        marks = []
        for step, label in changes_by_run.get(name, []):
            if step is None or step < grid[0] or step > grid[-1]:
                continue
            marks.append(MapChange(step=step, index=int(np.abs(grid - step).argmin()), label=label))
        runs.append(RunPath(name=name, steps=grid.tolist(), xy=np.round(xy, 5).tolist(), changes=marks))
    return MetricMap(metrics=[m for m, k in zip(metrics, keep, strict=True) if k], explained=explained, runs=runs)
