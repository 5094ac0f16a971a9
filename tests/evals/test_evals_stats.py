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


def test_paired_t_interval_on_known_inputs():
    # d = [1, 2, 3]: mean 2, sd 1, t_{0.975, 2} = 4.302652729911275 -> 2 +- 4.3027 / sqrt(3)
    d, lo, hi = stats.paired_t([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    half = 4.302652729911275 / np.sqrt(3)
    assert d == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-9)
    assert stats.t_interval([0.5]) == (0.5, None, None)  # one seed: no interval
    _, lo0, hi0 = stats.paired_t([0.7, 0.7], [0.6, 0.6])  # no spread: the interval is the mean
    assert lo0 == pytest.approx(0.1) and hi0 == pytest.approx(0.1)


def test_t_interval_is_wider_than_the_bootstrap_with_few_seeds():
    base = [0.90, 0.91, 0.92, 0.93, 0.94]
    pol = [0.905, 0.905, 0.93, 0.925, 0.96]
    _, blo, bhi = stats.paired_bootstrap(pol, base)
    _, tlo, thi = stats.paired_t(pol, base)
    assert tlo < blo and thi > bhi


def test_sign_test_is_exact():
    # 5 wins, 0 losses, 1 tie: p = 2 * (1/2)^5 = 0.0625
    s = stats.sign_test([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0])
    assert (s.wins, s.losses, s.ties) == (5, 0, 1) and s.p == pytest.approx(0.0625)
    # 8 wins, 2 losses: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024
    s = stats.sign_test([1] * 8 + [0] * 2, [0] * 8 + [1] * 2)
    assert s.p == pytest.approx(112 / 1024)
    assert stats.sign_test([1, 0], [0, 1]).p == 1.0
    assert stats.sign_test([0.3], [0.3]).p == 1.0


def test_wilcoxon_on_known_inputs():
    # 6 positive differences of distinct size: exact two-sided p = 2 / 2^6
    assert stats.wilcoxon_p([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]) == pytest.approx(2 / 64)
    # d = [+1, -2, +3, +4]: W- = 2, exact p = 2 * P(W <= 2) = 2 * 3 / 16
    assert stats.wilcoxon_p([1, 0, 3, 4], [0, 2, 0, 0]) == pytest.approx(6 / 16)
    assert stats.wilcoxon_p([0.5, 0.6], [0.5, 0.6]) == 1.0


def test_summarize_carries_every_paired_test():
    s = stats.summarize([0.92, 0.93, 0.95, 0.91], [0.90, 0.90, 0.90, 0.92])
    assert s["sign_wins"] == 3 and s["sign_losses"] == 1 and s["sign_ties"] == 0
    assert s["diff_t_low"] < s["diff"] < s["diff_t_high"]
    assert 0 < s["wilcoxon_p"] <= 1 and 0 < s["sign_p"] <= 1
