"""A run at chance or worse: a level that climbs through chance is called dead, and a rollback
never returns to a state whose loss had sat at chance (the run's first state is as good, and a
network that collapsed there may never leave it). Pure detector and rollback-target maths, no
training."""

from __future__ import annotations

import math
import random

from hotcb.checkpoint import Snapshots
from hotcb.divergence import DetectorConfig, LossDetector, Verdict
from hotcb.rollback_target import RollbackTargets
from tests.support.rollback_targets import held_start

LN10 = math.log(10)


def _climb_through_chance() -> list[float]:
    # Synthetic x40 seed 3's shape after its rescue: it learns to ~1.8, then its loss climbs
    # past ln 10 within a few points and sits ~20% above it, noisy (never over the blow-up line,
    # never 3x its best level).
    rng = random.Random(3)
    fall = [2.3 - 0.5 * i / 20 for i in range(20)]
    rise = [1.8 + 1.0 * i / 8 for i in range(8)]
    sit = [2.8 * (1 + 0.15 * rng.gauss(0, 1)) for _ in range(60)]
    return fall + rise + sit


def test_a_level_that_climbs_through_chance_into_worse_is_dead():
    det = LossDetector(DetectorConfig(classes=10))
    verdicts = [det.update(v) for v in _climb_through_chance()]
    assert Verdict.BLOWUP not in verdicts  # the slow climb is not a jump the line sees
    assert Verdict.CHANCE in verdicts  # worse than guessing for a window: dead
    first = verdicts.index(Verdict.CHANCE)
    assert first < 28 + 30  # within a window or so of the climb, not never


def test_a_quiet_slow_start_at_chance_is_still_no_rollback():
    slow = LossDetector(DetectorConfig(classes=10))
    assert Verdict.CHANCE not in [slow.update(LN10 - 1e-4 * i) for i in range(200)]
    assert slow.at_chance_since_start()  # the probe's business


def _targets() -> tuple[Snapshots, RollbackTargets, LossDetector]:
    return held_start(0.3)


def test_a_blowup_after_a_raise_of_a_run_sitting_at_chance_returns_to_the_start():
    # charlm x30's shape: the loss falls to chance and sits there; the probe raises lr; it blows up.
    snaps, targets, det = _targets()
    for v in [3.0 - 0.7 * i / 10 for i in range(10)] + [LN10] * 60:
        det.update(v)
    assert det.at_chance >= det.config.chance_window
    snaps.take(70, {"lr": 0.3}, "before a change by probe", healthy=True)
    targets.keep_detector(70, det)
    targets.note_raise(70, 0.3)
    for v in [LN10 * 1.8] * 3:  # over the line (1.5x a quiet level), under twice the start: not "dead"
        det.update(v)
    assert det.verdict is Verdict.BLOWUP and not det.dead()
    assert targets.choose(Verdict.BLOWUP, 75, det) is targets.start


def test_a_blowup_after_a_raise_of_a_run_that_learned_returns_to_before_the_raise():
    snaps, targets, det = _targets()
    for v in [2.3 - 1.5 * i / 60 for i in range(70)]:
        det.update(v)
    snaps.take(70, {"lr": 0.3}, "before a change by probe", healthy=True)
    targets.keep_detector(70, det)
    targets.note_raise(70, 0.3)
    for v in [5.0] * 3:
        det.update(v)
    chosen = targets.choose(Verdict.BLOWUP, 75, det)
    assert chosen is not None and chosen.step == 70
