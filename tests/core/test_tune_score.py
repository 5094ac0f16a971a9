"""Scoring and the recipe/search space: the parts of tune that need no optuna."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from hotcb import GuardConfig
from hotcb.actuators.actuator import ValueRefused
from hotcb.tune.recipe import load_recipe_file, parse_recipe, resolve_space
from hotcb.tune.score import fit_trend, score_change


def segment(start: int, n: int, level: float, slope: float, noise: float, rng: random.Random) -> list[tuple[int, float]]:
    return [(s, level + slope * (s - start) + rng.gauss(0, noise)) for s in range(start, start + n)]


def test_a_loss_that_keeps_falling_on_its_own_is_not_credited_to_the_change() -> None:
    rng = random.Random(0)
    # The loss falls by 0.01/step with no change at all; a naive before/after difference
    # would call that a big improvement.
    pre = segment(0, 40, 2.0, -0.01, 0.02, rng)
    post = [(s, 2.0 - 0.01 * s + rng.gauss(0, 0.02)) for s in range(50, 90)]
    s = score_change(pre, post)
    naive = sum(v for _, v in pre) / len(pre) - s.post_score
    assert naive > 0.4
    assert abs(s.improvement) < 3 * s.se and not s.accepted


def test_a_real_drop_beyond_the_trend_is_accepted_and_a_rise_is_not() -> None:
    rng = random.Random(1)
    pre = segment(0, 40, 2.0, -0.01, 0.05, rng)
    better = [(s, 2.0 - 0.01 * s - 0.3 + rng.gauss(0, 0.05)) for s in range(50, 90)]
    worse = [(s, 2.0 - 0.01 * s + 0.3 + rng.gauss(0, 0.05)) for s in range(50, 90)]
    assert score_change(pre, better).accepted and score_change(pre, better).improvement == pytest.approx(0.3, abs=0.1)
    w = score_change(pre, worse)
    assert not w.accepted and w.improvement < 0
    # Maximising flips the sign.
    assert score_change(pre, worse, direction="maximize").accepted


def test_noise_in_a_flat_segment_is_not_extrapolated_and_non_finite_is_worst() -> None:
    rng = random.Random(2)
    flat = segment(0, 30, 1.0, 0.0, 0.3, rng)
    assert fit_trend(flat).slope == 0.0
    s = score_change(flat, [(40, 1.0), (41, float("nan"))])
    assert s.improvement == -math.inf and not s.accepted and "non-finite" in s.reason


def test_recipe_parsing_file_forms_and_refusals(tmp_path: Path) -> None:
    f = tmp_path / "tune.yaml"
    f.write_text("objective: {metric: val_acc, direction: maximize}\nactuators: [lr, weight_decay]\n"
                 "risk: {max_trials: 20}\n")
    r = parse_recipe(load_recipe_file(f))
    assert (r.objective, r.direction, r.risk.max_trials) == ("val_acc", "maximize", 20)
    assert set(r.actuators) == {"lr", "weight_decay"}
    assert r.settle_steps == r.horizon // 5
    (tmp_path / "t.json").write_text('{"sampler": "random", "horizon": 12}')
    assert parse_recipe(load_recipe_file(tmp_path / "t.json")).sampler == "random"
    for bad in ({"max_rel_step": 1.0}, {"accept_z": -1}, {"risk": {"nope": 1}}, {"actuators": {"lr": {"min": 1, "max": 1}}},
                {"actuators": {"lr": {"scale": "log", "min": 0}}}, {"seed": 1.5}, "not a mapping"):
        with pytest.raises(ValueRefused):
            parse_recipe(bad)


def test_search_space_respects_bounds_the_guard_and_types() -> None:
    descs = [
        {"key": "lr", "module": "opt", "type": "log_float", "min": 1e-6, "max": 1.0, "value": 0.01},
        {"key": "weight_decay", "module": "opt", "type": "float", "min": 0.0, "max": 1.0, "value": 0.0},
        {"key": "momentum", "module": "opt", "type": "float", "min": 0.0, "max": 1.0, "value": 0.9,
         "max_rel_change": 1.1},
        {"key": "betas", "module": "opt", "type": "tuple", "min": 0.0, "max": 1.0, "value": [0.9, 0.99]},
        {"key": "aux_w", "module": "loss", "type": "float", "min": None, "max": None, "value": 1.0},
    ]
    guard = GuardConfig(max_rel_change=3.0, per_knob={"lr": {"max_rel_change": 1.5}})
    space, problems = resolve_space(parse_recipe({}), descs, guard)
    by = {s.key: s for s in space}
    assert set(by) == {"lr", "weight_decay", "momentum"}  # typed floats with bounds only
    assert by["lr"].log and by["lr"].max_step == 1.5 and by["momentum"].max_step == 1.1
    lo, hi = by["lr"].window(0.01)
    assert 0.01 / 1.5 < lo < hi < 0.01 * 1.5
    assert by["momentum"].window(0.95)[1] <= 1.0  # clipped at the bound
    assert by["weight_decay"].window(0.0) is None  # a move off 0 could not be rolled back by tune
    space, problems = resolve_space(parse_recipe({"actuators": {"betas": None, "nope": None,
                                                                "lr": {"max": 0.05, "max_rel_step": 1.2}}}),
                                    descs, guard)
    assert [s.key for s in space] == ["lr"] and space[0].hi == 0.05 and space[0].max_step == 1.2
    assert any("betas" in p for p in problems) and any("nope" in p for p in problems)


def test_a_momentum_like_knob_steps_on_its_complement() -> None:
    from hotcb.tune.recipe import KnobSpace

    # momentum 0.9 acts through 1 - 0.9: a x2 step is 0.8 .. 0.95, not 0.45 .. 0.99999.
    k = KnobSpace("momentum", "opt", 0.0, 0.99999, False, 2.0, 10)
    lo, hi = k.window(0.9)
    assert lo == pytest.approx(0.8, abs=1e-3) and hi == pytest.approx(0.95, abs=1e-3)
    lo, hi = k.window(0.3)  # below 0.5 the value itself is what matters: the plain ratio
    assert lo == pytest.approx(0.15, abs=1e-3) and hi == pytest.approx(0.6, abs=1e-3)
    wd = KnobSpace("weight_decay", "opt", 0.0, 1.0, False, 2.0, 10)
    assert wd.window(5e-4) == pytest.approx((5e-4 / 1.999, 5e-4 * 1.999))
