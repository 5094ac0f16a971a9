"""The way down after a rescue (hotcb/descent.py): pure decisions on made-up loss series, in
milliseconds (a real training loop rescued and cut down: tests/evals/test_evals_descent.py)."""

from __future__ import annotations

import math
import random

from hotcb.descent import DescentConfig, DescentState, LrDescent
from hotcb.divergence import DetectorConfig, LossDetector, Verdict
from hotcb.probe import LrProbe

CFG = DescentConfig()


def healthy_detector() -> LossDetector:
    det = LossDetector(DetectorConfig())
    for _ in range(40):
        det.update(1.9)
    assert det.confirmed()
    return det


def feed(d: LrDescent, det: LossDetector, level, steps: range, lr: float, noise: float = 0.05, seed: int = 0):
    """Feed ``level(i)`` with multiplicative noise; return the first lr change the descent asks for
    (step, factor, reason) and apply it to ``lr``, or None."""
    rng = random.Random(seed)
    for s in steps:
        d.observe(level(s) * (1 + noise * rng.uniform(-1, 1)))
        step = d.decide(s, lr, det, max_steps=1000)
        if step is not None:
            d.applied(lr * step.factor)
            return s, step.factor, step.reason
    return None


def test_idle_until_a_rescue_arms_it():
    d, det = LrDescent(), healthy_detector()
    assert feed(d, det, lambda s: 1.9, range(200), lr=0.5) is None
    assert d.state is DescentState.IDLE


def test_a_cut_that_lowers_the_loss_is_kept_and_the_next_one_measured():
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue at step 10")
    cut = feed(d, det, lambda s: 1.9, range(0, 100), lr=0.5)
    assert cut is not None and cut[1] == 0.5 and "lr descent 1/4" in cut[2] and "noise floor" in cut[2]
    at = cut[0]
    # On the noise floor: the loss falls 15% at once with the cut, then holds.
    assert feed(d, det, lambda s: 1.9 * 0.85, range(at + 1, at + 1 + CFG.settle + CFG.window), lr=0.25) is None
    assert d.state is DescentState.WAITING and d.cuts == 1 and "below where it was" in d.history[-1]
    nxt = feed(d, det, lambda s: 1.9 * 0.85, range(at + 40, at + 100), lr=0.25)
    assert nxt is not None and nxt[1] == 0.5 and "2/4" in nxt[2]


def test_a_cut_that_changes_nothing_is_kept_and_the_descent_settles():
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    at, *_ = feed(d, det, lambda s: 1.9, range(100), lr=0.5)
    assert feed(d, det, lambda s: 1.9, range(at + 1, at + 200), lr=0.25) is None
    assert d.state is DescentState.SETTLED and d.cuts == 1
    assert "not on the noise floor" in d.history[-1]


def test_after_a_kept_cut_a_next_cut_that_changes_nothing_is_undone():
    # The safe side is the first cut's after a rescue (its lr sits at most x2 below one that blew
    # up); once a cut was kept, a further one the loss does not reward by min_drop goes back.
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    at, *_ = feed(d, det, lambda s: 1.9, range(100), lr=0.5, noise=0.0)
    assert feed(d, det, lambda s: 1.9 * 0.85, range(at + 1, at + 1 + CFG.settle + CFG.window), lr=0.25,
                noise=0.0) is None
    assert d.state is DescentState.WAITING and d.cuts == 1  # 15% lower: kept, the next one measured
    at2, factor, _ = feed(d, det, lambda s: 1.9 * 0.85, range(at + 40, at + 140), lr=0.25, noise=0.0)
    assert factor == 0.5
    back = feed(d, det, lambda s: 1.9 * 0.85 * 0.98, range(at2 + 1, at2 + 200), lr=0.125, noise=0.0)
    assert back is not None and back[1] == 2.0 and "did not lower the loss clearly" in back[2]
    assert d.state is DescentState.SETTLED and d.cuts == 1


def test_a_cut_that_makes_the_loss_worse_is_undone():
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    at, *_ = feed(d, det, lambda s: 1.9, range(100), lr=0.5)
    back = feed(d, det, lambda s: 1.9 * 1.2, range(at + 1, at + 200), lr=0.25)
    assert back is not None and back[1] == 2.0 and "worse" in back[2]
    assert d.state is DescentState.SETTLED


def test_an_unclear_cut_gets_one_more_window():
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    at, *_ = feed(d, det, lambda s: 1.9, range(100), lr=0.5, noise=0.0)
    # 3% lower: below where it was, but less than min_drop (5%).
    feed(d, det, lambda s: 1.9 * 0.97, range(at + 1, at + 1 + CFG.settle + CFG.window), lr=0.25, noise=0.0)
    assert d.extended and "unclear" in d.history[-1] and d.state is DescentState.TRIAL
    feed(d, det, lambda s: 1.9 * 0.97, range(at + 31, at + 60), lr=0.25, noise=0.0)
    assert d.state is DescentState.SETTLED and d.cuts == 1  # still 3%: kept, settled


def test_a_cut_of_a_loss_that_keeps_falling_at_its_own_pace_is_not_credited_to_the_cut():
    # 4% a window before the cut (slow enough to cut), the same pace after it: the loss is lower 30
    # points on whatever the lr, so the cut gets no credit and no second cut follows.
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    at, *_ = feed(d, det, lambda s: 1.9 * math.exp(-0.002 * s), range(100), lr=0.5, noise=0.02)
    assert feed(d, det, lambda s: 1.9 * math.exp(-0.002 * s), range(at + 1, at + 300), lr=0.25, noise=0.02) is None
    assert d.state is DescentState.SETTLED and d.cuts == 1, d.history


def test_it_waits_while_the_loss_still_falls_fast():
    d, det = LrDescent(), healthy_detector()
    d.arm("rescue")
    assert feed(d, det, lambda s: 2.3 * math.exp(-s / 20), range(60), lr=0.5, noise=0.0) is None
    assert d.state is DescentState.WAITING


def test_a_dead_classifier_above_chance_and_its_start_is_caught_a_slow_one_is_not():
    # Measured on digits at x24 (seed 6): the loss never rose 15% early, it sat at ~2.45 > ln 10.
    rng = random.Random(0)
    dead = LossDetector(DetectorConfig(classes=10))
    verdicts = [dead.update(2.29 if i == 0 else 2.45 + 0.05 * rng.uniform(-1, 1)) for i in range(80)]
    assert Verdict.CHANCE in verdicts
    slow = LossDetector(DetectorConfig(classes=10))
    assert Verdict.CHANCE not in [slow.update(2.31 - 1e-4 * i + 0.02 * rng.uniform(-1, 1)) for i in range(200)]


def test_the_probe_never_raises_the_lr_of_a_classifier_worse_than_guessing():
    # A dead start whose level sits just beyond "at chance" (ln 10 +10%), so no CHANCE verdict:
    # quiet and flat as a slow start looks, but worse than guessing (measured on digits x24 seed 6:
    # the probe doubled its lr, "loss still at 2.51, 105% of its early level 2.398").
    rng = random.Random(0)
    det, probe = LossDetector(DetectorConfig(classes=10)), LrProbe()
    for i in range(60):
        x = 2.29 if i == 0 else 2.50 if i < 5 else 2.56 + 0.01 * rng.uniform(-1, 1)  # just off "at chance"
        det.update(x)
        probe.observe(x)
        assert probe.decide(i, 1.2, det, max_steps=444) is None, i
    slow, probe = LossDetector(DetectorConfig(classes=10)), LrProbe()
    raised = None
    for i in range(60):  # a start far too low: flat just below ln 10, quietly
        x = 2.30 - 1e-4 * i + 0.005 * rng.uniform(-1, 1)
        slow.update(x)
        probe.observe(x)
        raised = raised or probe.decide(i, 0.005, slow, max_steps=444)
    assert raised is not None and raised.factor == 2.0
