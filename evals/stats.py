"""Honest statistics over seeds, in one place: bootstrap CIs, paired differences, P(better),
and beside the bootstrap (too narrow with few seeds) a paired t-interval, the Wilcoxon
signed-rank test and the exact sign test.

Every function takes a ``seed`` so a report is reproducible: the same results give the same
intervals. With n seeds the bootstrap resamples seeds (the unit of independent replication),
never steps or batches, so the interval reflects run-to-run variation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def t_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the Student t (1 - alpha) interval of the mean; no interval for one value."""
    from scipy import stats as sst

    arr = _as_array(values)
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, None, None
    half = float(sst.t.ppf(1 - alpha / 2, arr.size - 1)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return mean, mean - half, mean + half


def paired_t(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> tuple[float, float | None, float | None]:
    """(mean difference a - b, low, high): the paired t-interval over seeds."""
    return t_interval(paired_diffs(a, b), alpha)


@dataclass(frozen=True)
class SignTest:
    wins: int
    losses: int
    ties: int
    p: float  # two-sided, exact (binomial, ties dropped)


def sign_test(a: Sequence[float], b: Sequence[float]) -> SignTest:
    """The exact two-sided sign test of a - b: ties are dropped; p = P(a split at least this
    lopsided | wins and losses equally likely)."""
    d = paired_diffs(a, b)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    n = wins + losses
    if n == 0:
        return SignTest(0, 0, int(d.size), 1.0)
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2.0 ** n
    return SignTest(wins, losses, int(d.size) - n, min(1.0, 2.0 * tail))


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of the Wilcoxon signed-rank test of a - b (zero differences dropped; exact
    where scipy can be, else its normal approximation). 1.0 when every difference is zero;
    None without scipy."""
    try:
        from scipy import stats as sst
    except ImportError:  # pragma: no cover (scipy comes with scikit-learn, an evals dependency)
        return None
    d = paired_diffs(a, b)
    if not np.any(d != 0):
        return 1.0
    return float(sst.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def summarize(values: Sequence[float], baseline: Sequence[float] | None = None, seed: int = 0) -> dict[str, float | None]:
    """The report's numbers for one policy (and its paired comparison with the baseline)."""
    mean, lo, hi = bootstrap_ci(values, seed=seed)
    out: dict[str, float | None] = {"n": float(len(values)), "mean": mean, "ci_low": lo, "ci_high": hi,
                                    "diff": None, "diff_low": None, "diff_high": None, "p_better": None,
                                    "diff_t_low": None, "diff_t_high": None, "wilcoxon_p": None,
                                    "sign_wins": None, "sign_losses": None, "sign_ties": None, "sign_p": None}
    if baseline is not None:
        d, dlo, dhi = paired_bootstrap(values, baseline, seed=seed)
        _, tlo, thi = paired_t(values, baseline)
        sign = sign_test(values, baseline)
        out.update(diff=d, diff_low=dlo, diff_high=dhi, p_better=p_better(values, baseline, seed=seed),
                   diff_t_low=tlo, diff_t_high=thi, wilcoxon_p=wilcoxon_p(values, baseline),
                   sign_wins=float(sign.wins), sign_losses=float(sign.losses), sign_ties=float(sign.ties),
                   sign_p=sign.p)
    return out
