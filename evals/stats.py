"""Honest statistics over seeds, in one place: bootstrap CIs, paired differences, P(better).

Every function takes a ``seed`` so a report is reproducible: the same results give the same
intervals. With n seeds the bootstrap resamples seeds (the unit of independent replication),
never steps or batches, so the interval reflects run-to-run variation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 10_000


def _as_array(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("need a non-empty 1-D sequence of numbers")
    return arr


def bootstrap_means(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``."""
    arr = _as_array(values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    return arr[idx].mean(axis=1)


def bootstrap_ci(values: Sequence[float], alpha: float = 0.05, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap (1 - alpha) interval of the mean."""
    arr = _as_array(values)
    means = bootstrap_means(arr, n_boot, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(arr.mean()), float(lo), float(hi)


def paired_diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """a - b per seed; the two sequences must be aligned by seed."""
    x, y = _as_array(a), _as_array(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have equal length ({x.size} vs {y.size})")
    return x - y


def paired_bootstrap(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, n_boot: int = N_BOOT,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean difference a - b, low, high) over seeds, resampling seed pairs together, so the
    shared seed-to-seed variation (init, data order) cancels."""
    return bootstrap_ci(paired_diffs(a, b), alpha, n_boot, seed)


def p_better(a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> float:
    """P(a better than b): the share of paired-bootstrap resamples whose mean difference is
    positive (a tie counts half). 0.5 means no evidence either way."""
    means = bootstrap_means(paired_diffs(a, b), n_boot, seed)
    return float(np.mean(means > 0) + 0.5 * np.mean(means == 0))


def summarize(values: Sequence[float], baseline: Sequence[float] | None = None, seed: int = 0) -> dict[str, float | None]:
    """The report's numbers for one policy (and its paired comparison with the baseline)."""
    mean, lo, hi = bootstrap_ci(values, seed=seed)
    out: dict[str, float | None] = {"n": float(len(values)), "mean": mean, "ci_low": lo, "ci_high": hi,
                                    "diff": None, "diff_low": None, "diff_high": None, "p_better": None}
    if baseline is not None:
        d, dlo, dhi = paired_bootstrap(values, baseline, seed=seed)
        out.update(diff=d, diff_low=dlo, diff_high=dhi, p_better=p_better(values, baseline, seed=seed))
    return out
