"""Tune's pure decisions (``hotcb.tune.decide``): plain values in, a decision out; no trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from hotcb.tune.decide import (
    better,
    early_abort,
    limits_reached,
    next_sync,
    pre_segment,
    segment_before,
    still_starting,
    told_value,
    weights_wanted,
)
from hotcb.tune.readonly import ReadOnly
from hotcb.tune.recipe import RiskLimits, TuneRecipe
from hotcb.tune.score import Score
from hotcb.tune.trial import NEVER, LiveTrial

R = TuneRecipe(horizon=20, settle=5, min_points=4)


def _line(start: int, stop: int, y0: float, slope: float = 0.0) -> list[tuple[int, float]]:
    return [(s, y0 + slope * (s - start)) for s in range(start, stop)]


def _trial(pre: list[tuple[int, float]], step: int = 100, recipe: TuneRecipe = R) -> LiveTrial:
    t = LiveTrial(3, "active", {"lr": 0.2}, {"lr": 0.1}, {"accepted": None}, pre)
    t.begin(step, recipe, cooldown=0, marks={"lr": step})
    return t


def test_limits_name_the_end_of_the_run_and_the_risk_limits() -> None:
    # max_steps 100, settle 5, horizon 20: the last trial may start at step 55.
    assert limits_reached(R, 55, 100, True, 0, 0) is None
    assert limits_reached(R, 56, 100, True, 0, 0).startswith("done: no new trial this close to the run's end")
    assert limits_reached(R, 56, 100, False, 0, 0) is None  # suggest/observe change nothing at the end
    r = TuneRecipe(risk=RiskLimits(max_trials=2, max_consecutive_rollbacks=3))
    assert limits_reached(r, 0, None, True, 2, 0) == "done: max_trials=2 reached"
    assert limits_reached(r, 0, None, True, 1, 3).startswith("stopped: 3 consecutive rollbacks")
    assert limits_reached(r, 0, None, True, 1, 2) is None


def test_still_starting_only_while_falling_near_the_start_level() -> None:
    falling = _line(0, 20, 10.0, -0.01)  # within 10% of 10.0, and falling
    assert still_starting(10.0, falling, "minimize")
    assert not still_starting(10.0, _line(0, 20, 10.0), "minimize")  # flat: stuck, a trial may help
    assert not still_starting(10.0, _line(0, 20, 5.0, -0.01), "minimize")  # under way
    assert not still_starting(None, falling, "minimize")  # no start level known


def test_pre_segment_waits_for_cooldown_quiet_and_points() -> None:
    pts = _line(0, 131, 1.0)  # reports up to this step
    assert pre_segment(R, "loss", pts, 100, 98, cooldown=5) == (None, "guard cooldown until step 103", 3)
    pre, why, wait = pre_segment(R, "loss", pts, 110, 98, cooldown=5)
    assert pre is None and why.startswith("collecting a pre-change segment (until step 123)") and wait == 13
    pre, why, wait = pre_segment(R, "loss", pts, 130, 98, cooldown=5)
    assert why == "" and [s for s, _ in pre] == list(range(111, 131))
    assert pre_segment(R, "loss", pts[:2], 130, None, 0) == (None, "waiting for 4 reports of loss", 20)
    bad = [*pts[:129], (129, math.nan)]
    assert pre_segment(R, "loss", bad, 130, None, 0)[1] == "loss is not finite; not tuning"


def test_segment_before_a_change_someone_else_made() -> None:
    pts = _line(0, 100, 1.0)
    pre, why = segment_before(R, "loss", pts, 50)
    assert why == "" and [s for s, _ in pre] == list(range(31, 51))
    assert segment_before(R, "loss", pts[:3], 50) == (None, "fewer than 4 finite reports of loss before it")


def test_early_abort_on_worsening_or_a_clear_z() -> None:
    t = _trial(_line(80, 100, 1.0))
    for s in range(106, 110):
        t.report_point(s, 1.0)
    assert early_abort(R, t, 104) is None  # before abort_from (settle 5)
    assert early_abort(R, t, 110) is None  # no worse
    t.report_point(110, math.inf)
    assert early_abort(R, t, 111) == "aborted early by risk.abort_worsening; "
    worse = _trial(_line(80, 100, 1.0, 0.0) + [(99, 1.01)])
    for s in range(106, 112):
        worse.report_point(s, 1.3)
    r = TuneRecipe(horizon=20, settle=5, min_points=4, risk=RiskLimits(abort_worsening=None, abort_z=3.0))
    assert early_abort(r, worse, 112) == "aborted early by risk.abort_z=3; "


def test_told_value_is_anchored_and_a_divergence_is_penalised() -> None:
    s = Score(pre_score=2.0, post_score=1.5, improvement=0.5, se=0.1, accepted=True, reason="")
    assert told_value(10.0, s, "minimize") == 9.5
    assert told_value(None, s, "minimize") == 1.5  # no anchor yet: the pre-change level
    assert told_value(10.0, s, "maximize") == 10.5
    diverged = Score(2.0, math.nan, -math.inf, math.nan, False, "")
    assert told_value(10.0, diverged, "minimize") == 30.0


def test_weights_go_back_per_restore_weights() -> None:
    pre = _line(0, 20, 1.0)
    worse = Score(1.0, 1.5, -0.5, 0.1, False, "")
    slower = Score(0.5, 0.9, -0.4, 0.1, False, "")  # progress, only less than projected
    assert weights_wanted(R, pre, worse) and not weights_wanted(R, pre, slower)
    assert weights_wanted(TuneRecipe(risk=RiskLimits(restore_weights="rejected")), pre, slower)
    assert not weights_wanted(TuneRecipe(risk=RiskLimits(restore_weights="never")), pre, worse)


def test_better_by_direction() -> None:
    assert better(1.0, None, "minimize")
    assert better(1.0, {"value": 2.0}, "minimize") and not better(3.0, {"value": 2.0}, "minimize")
    assert better(3.0, {"value": 2.0}, "maximize")


def test_next_sync_follows_the_trial_and_the_undo() -> None:
    assert next_sync(R, 10, "active", None, next_check=15, undo_ready=None) == 15
    assert next_sync(R, 10, "active", None, next_check=NEVER, undo_ready=None) == 30  # one per horizon
    assert next_sync(R, 10, "suggest", None, next_check=0, undo_ready=None) == 30
    assert next_sync(R, 10, "active", None, next_check=0, undo_ready=12) == 12
    t = _trial(_line(80, 100, 1.0))  # change at 100: abort_from 105, due 125, give_up 165
    assert next_sync(R, 100, "active", t, next_check=0, undo_ready=None) == 105
    assert next_sync(R, 110, "active", t, next_check=0, undo_ready=None) == 112  # the risk cadence
    assert next_sync(R, 125, "active", t, next_check=0, undo_ready=None) == 127


def test_a_trial_is_read_only_from_outside() -> None:
    t = _trial(_line(80, 100, 1.0))
    assert (t.change_step, t.post_from, t.due, t.give_up) == (100, 105, 125, 165)
    with pytest.raises(AttributeError, match="read-only"):
        t.due = 0  # type: ignore[misc]
    assert isinstance(LiveTrial.__dict__["due"], ReadOnly)


def test_the_kernel_offers_every_member_tune_host_names(run_dir: Path) -> None:
    # TuneHost is what tune uses of the kernel: a kernel refactoring that drops one breaks tune.
    from typing import get_type_hints

    from hotcb import HotKernel
    from hotcb.tune.host import TuneHost

    kernel = HotKernel(run_dir, watch_interval_s=0.0)
    wanted = set(get_type_hints(TuneHost)) | {"submit"}
    assert wanted == {"state", "guard", "locks", "freeze", "snapshots", "dist", "run", "ledger", "step",
                      "max_steps", "is_writer", "modules", "submit"}
    assert [m for m in sorted(wanted) if not hasattr(kernel, m)] == []
    assert callable(kernel.submit)
    kernel.close()
