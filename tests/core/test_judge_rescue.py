"""The judge's rescue rules: the lr cut that comes with a rescue rollback is judged from the lower
lr, within the guard's ratio limit and bounds, and is not held back by the knob's cooldown (the
rollback has just undone the change that cooldown protects; a plain lr op is). An agent may not
roll back a run the divergence detector calls healthy."""

from __future__ import annotations

import pytest

from hotcb.actuators.actuator import ValueRefused
from hotcb.guard import GuardConfig, GuardRefusal, check_knob_change
from hotcb.jsonl import read_all
from hotcb.judge import View, judge, judge_rescue_cut
from hotcb.ops import make_command, parse_command
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


# ---------------------------------------------------------------------- an agent's rollback
def test_an_agent_may_not_roll_back_a_run_the_detector_calls_healthy():
    rollback = parse_command(make_command("rescue", "rollback", {}, source="agent", reason="forecast diverged"))
    core = parse_command(make_command("core", "rollback", {}, source="agent", reason="forecast diverged"))
    for verdict in ("healthy", "warming"):
        for op in (rollback, core):
            refusal = judge(op, "agent", View(code=None, run_verdict=verdict))
            assert refusal is not None and f"says the run is {verdict}" in refusal.reason
    for verdict in ("suspect", "blowup", "non_finite", "chance", None):  # None: unknown, or a DDP run
        assert judge(rollback, "agent", View(code=None, run_verdict=verdict)) is None
    assert judge(rollback, "human", View(code=None, run_verdict="healthy")) is None  # a person decides for themself
    # A recipe is judged at start without the run's state: the entry is judged when it fires.
    assert judge(rollback, "agent", View(code=None, run_verdict="healthy"), static=True) is None


def test_in_a_real_loop_the_kernel_refuses_an_agents_rollback_of_a_healthy_run(run_dir):
    loop = Loop(run_dir, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, probe=False)
    loop.run(80)
    assert loop.kernel.snapshots.last_healthy() is not None
    loop.send("rescue", "rollback", {}, source="agent", actor="llm", reason="no change needed")
    loop.step()
    (entry,) = [e for e in read_all(loop.kernel.run.ledger) if e.get("module") == "rescue" and e["op"] == "rollback"]
    assert entry["decision"] == "rejected" and "says the run is healthy" in entry["error"]
    assert loop.opt.param_groups[0]["lr"] == 0.05
    loop.nan_loss = True
    loop.step()  # a blow-up: the rescue's own rollback, at its step
    entries = [e for e in read_all(loop.kernel.run.ledger) if e.get("module") == "rescue" and e["op"] == "rollback"]
    assert entries[-1]["decision"] == "applied" and entries[-1]["actor"] == "rescue"
