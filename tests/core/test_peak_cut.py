"""The peak cut after an overshot warmup (hotcb/peak_cut.py): pure decisions, in milliseconds (the
rescue submitting them on a real loop: tests/core/test_warmup_overshoot.py)."""

from __future__ import annotations

import pytest

from hotcb.peak_cut import PeakCut
from hotcb.warmup_watch import Overshoot

OVER = Overshoot(low=1.5, low_step=15, low_lr=0.2, level=1.7, lr=0.3, step=21)


def test_idle_until_armed():
    cut = PeakCut(range_rule=0.1, cut=0.5)
    assert not cut.active
    assert cut.decide(0.1, 0.4) is None


def test_cuts_by_the_rescue_factor_then_lands_on_the_goal_and_settles():
    cut = PeakCut(range_rule=0.1, cut=0.5)
    cut.arm(OVER)
    assert cut.goal(OVER) == pytest.approx(0.02)
    base, lr, factors = 0.06, 0.03, []
    while (step := cut.decide(lr, base)) is not None:
        factors.append(step.factor)
        base, lr = base * step.factor, lr * step.factor
    assert factors == [0.5, pytest.approx(2 / 3)]  # 0.06 -> 0.03 -> 0.02, never below the goal
    assert base == pytest.approx(0.02) and not cut.active


def test_the_reason_names_the_overshoot_the_peak_and_the_rule():
    cut = PeakCut(range_rule=0.1, cut=0.5)
    cut.arm(OVER)
    step = cut.decide(0.15, 0.3)
    assert step is not None and step.factor == 0.5
    assert step.reason == ("rescue: the warmup overshot at step 21 (the loss turned at lr 0.2, step 15): the "
                           "schedule's peak 0.3 -> 0.15, toward 0.02 (0.1 x that lr)")
    assert cut.active  # a wait (the guard's cooldown) asks again: deciding keeps the target


@pytest.mark.parametrize("lr, base", [(None, 0.3), (0.0, 0.3), (0.15, None), (0.01, 0.02)])
def test_settles_with_no_number_no_schedule_or_already_there(lr, base):
    cut = PeakCut(range_rule=0.1, cut=0.5)
    cut.arm(OVER)
    assert cut.decide(lr, base) is None
    assert not cut.active
