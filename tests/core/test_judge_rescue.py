"""The judge's rescue rule: the lr cut that comes with a rescue rollback is judged from the lower
lr, within the guard's ratio limit and bounds, and is not held back by the knob's cooldown (the
rollback has just undone the change that cooldown protects). A plain lr op is."""

from __future__ import annotations

import pytest

from hotcb.actuators.actuator import ValueRefused
from hotcb.guard import GuardConfig, GuardRefusal, check_knob_change
from hotcb.jsonl import read_all
from hotcb.judge import judge_rescue_cut
from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop

LR = {"key": "lr", "type": "log_float", "value": 0.1, "min": 1e-6, "max": 10.0, "last_change_step": 99}


def test_the_rescue_cut_skips_the_cooldown_a_plain_cut_does_not():
    guard = GuardConfig()
    with pytest.raises(GuardRefusal, match="must wait"):
        check_knob_change(LR, 0.05, source="rule", step=100, lock=None, config=guard)
    assert judge_rescue_cut(LR, 0.1, 0.05, source="rule", step=100, config=guard) == pytest.approx(0.05)


def test_the_rescue_cut_is_judged_from_the_lower_lr_within_the_ratio_limit_and_bounds():
    guard = GuardConfig()
    # The lr in use is 0.1 but the snapshot's was 0.02: the cut is from 0.02 (x0.5 -> 0.01).
    assert judge_rescue_cut(LR, 0.02, 0.01, source="rule", step=100, config=guard) == pytest.approx(0.01)
    with pytest.raises(GuardRefusal, match="limited"):
        judge_rescue_cut(LR, 0.1, 0.02, source="rule", step=100, config=guard)  # x0.2: past the ratio limit
    with pytest.raises(ValueRefused):
        judge_rescue_cut({**LR, "min": 0.08}, 0.1, 0.05, source="rule", step=100, config=guard)  # below min


def test_in_a_real_loop_a_rescue_right_after_a_change_still_cuts(run_dir):
    loop = Loop(run_dir, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, probe=False)
    loop.run(60)
    loop.send("opt", "set_params", {"lr": 0.04}, source="rule", reason="a rule's cut, starting the cooldown")
    loop.run(2)
    loop.nan_loss = True
    loop.step()  # within the cooldown of the change above
    entry = [e for e in read_all(loop.kernel.run.ledger) if e.get("module") == "rescue"][-1]
    assert entry["decision"] == "applied"
    changed = [e for e in read_all(loop.kernel.run.ledger) if e.get("module") == "opt"][-1]
    assert changed["decision"] == "applied" and entry["step"] - changed["step"] < GuardConfig().cooldown_steps
    assert entry["payload"]["lr"]["new"] == pytest.approx(0.02)  # the lower of 0.04 (in use) and 0.05 (snapshot), halved
