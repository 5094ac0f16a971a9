"""The guard's rules for non-human sources, on knob descriptions as the kernel publishes them."""

from __future__ import annotations

import math

import pytest

from hotcb.guard import GuardConfig, GuardRefusal, check_knob_change

WD = {"key": "weight_decay", "type": "float", "min": 0.0, "max": 1.0, "value": 0.01, "last_change_step": None}


def check(value, config=GuardConfig(), source="agent", desc=WD, step=100):
    return check_knob_change(desc, value, source=source, step=step, lock=None, config=config)


def test_ratio_limit_and_zero():
    assert check(0.02) == pytest.approx(0.02)
    with pytest.raises(GuardRefusal, match="x0.1"):
        check(0.001)
    with pytest.raises(GuardRefusal, match="x0 change"):
        check(0.0)  # "off" is a x0 change: refused unless the knob allows it
    assert check(0.0, source="human") == 0.0


def test_allow_zero_permits_exactly_zero_and_nothing_else():
    cfg = GuardConfig(per_knob={"weight_decay": {"allow_zero": True}})
    assert check(0.0, cfg) == 0.0
    with pytest.raises(GuardRefusal, match="x10"):
        check(0.1, cfg)
    assert check(1e-4, cfg, desc={**WD, "value": 0.0}) == pytest.approx(1e-4)  # from 0: bounds only


def test_cooldown_and_non_finite():
    with pytest.raises(GuardRefusal, match="must wait"):
        check(0.02, desc={**WD, "last_change_step": 95})
    with pytest.raises(ValueError):
        check(math.nan)


def test_knob_limits_resolve_overrides_as_the_guard_does():
    from hotcb.guard import knob_limits

    cfg = GuardConfig(per_knob={"weight_decay": {"cooldown_steps": 50, "max_rel_change": None}})
    assert knob_limits(WD, GuardConfig()) == (2.0, 10)
    assert knob_limits({**WD, "cooldown_steps": 3}, GuardConfig()) == (2.0, 3)
    assert knob_limits({**WD, "cooldown_steps": 3}, cfg) == (None, 50)
    with pytest.raises(GuardRefusal, match="until step 145"):
        check(0.02, cfg, desc={**WD, "last_change_step": 95})
