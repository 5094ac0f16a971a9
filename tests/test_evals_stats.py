"""evals.stats: bootstrap CIs, paired differences and P(better) on known inputs."""

import numpy as np
import pytest
from hotcb.evals import stats


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    values = [0.80, 0.82, 0.79, 0.85, 0.81]
    mean, lo, hi = stats.bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(np.mean(values))
    assert min(values) <= lo < mean < hi <= max(values)
    assert stats.bootstrap_ci(values, seed=3) == (mean, lo, hi)


def test_paired_bootstrap_removes_the_shared_seed_variation():
    base = [0.60, 0.70, 0.80, 0.90]  # large seed-to-seed spread
    better = [b + 0.01 for b in base]  # a small but consistent gain
    d, lo, hi = stats.paired_bootstrap(better, base)
    assert d == pytest.approx(0.01)
    assert lo == pytest.approx(0.01) and hi == pytest.approx(0.01)
    _, ulo, uhi = stats.bootstrap_ci(better)
    assert uhi - ulo > 0.1  # unpaired, the same gain is lost in the spread
    assert stats.p_better(better, base) == 1.0
    assert stats.p_better(base, better) == 0.0


def test_p_better_is_one_half_without_a_difference():
    a = [0.5, 0.6, 0.7]
    assert stats.p_better(a, a) == 0.5


def test_mixed_differences_give_an_intermediate_probability():
    a, b = [0.71, 0.69, 0.72, 0.70], [0.70, 0.70, 0.70, 0.70]
    p = stats.p_better(a, b, seed=1)
    assert 0.5 < p < 1.0


def test_misaligned_pairs_are_refused():
    with pytest.raises(ValueError):
        stats.paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([])
