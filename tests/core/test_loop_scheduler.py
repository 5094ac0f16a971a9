"""The loop the README shows, with an lr scheduler (a ``LambdaLR`` linear warmup, then constant):
the ledger says the lr the optimizer runs, after every kind of rollback, and the tools read the
lr the scheduler set."""

from __future__ import annotations

import json
import time

import pytest
from hotcb.mcp_server.tools import HotcbTools

from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop

WARMUP = 20


def lam(e: int) -> float:
    return min(1.0, (e + 1) / WARMUP)


def entries(loop: Loop, module: str, op: str) -> list[dict]:
    return [e for e in loop.ledger() if e.get("module") == module and e.get("op") == op]


def step_until(loop: Loop, done, limit_s: float = 60.0) -> None:
    """Step the loop until ``done()`` (a state the kernel publishes on a wall-clock cadence)."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "the state never came"
        loop.step()


def test_a_rescue_rollback_mid_warmup_restores_the_schedule_and_the_ledger_says_the_lr_run(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    loop.run(14)  # mid-warmup: the lr is still rising
    loop.nan_loss = True
    loop.step()  # a non-finite loss: rolled back at once
    loop.nan_loss = False
    (rb,) = entries(loop, "rescue", "rollback")
    assert rb["decision"] == "applied"
    restored, lr = rb["payload"]["restored_step"], rb["payload"]["lr"]
    assert lr["old"] == pytest.approx(0.05 * lam(15))  # what the run used at the blow-up
    # The scheduler went back with the weights: its position is the snapshot's.
    assert loop.sched.last_epoch == restored
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(lr["new"])  # the ledger's new lr is the one run next
    loop.step()  # and the schedule goes on from there, at the level the cut set
    assert loop.used_lrs[-1] == pytest.approx(lr["new"] * lam(restored + 1) / lam(restored))
    loop.close()


def test_repeated_blow_ups_in_a_warmup_each_cut_further_from_the_schedules_base(tmp_path):
    # Each rollback returns to the same early snapshot, whose lr is low only because of its place
    # in the warmup: the cut must come from the base the last cut left, not from that lr.
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    loop.run(14)
    for _ in range(3):
        loop.nan_loss = True
        loop.step()
        loop.nan_loss = False
        loop.run(6)
    rbs = entries(loop, "rescue", "rollback")
    assert [rb["decision"] for rb in rbs] == ["applied"] * 3
    assert len({rb["payload"]["restored_step"] for rb in rbs}) == 1  # the same snapshot each time
    assert loop.sched.base_lrs[0] == pytest.approx(0.05 * 0.5 ** 3)
    news = [rb["payload"]["lr"]["new"] for rb in rbs]
    assert news[1] == pytest.approx(news[0] / 2) and news[2] == pytest.approx(news[1] / 2)
    loop.step()
    assert loop.used_lrs[-1] > 0  # and the run goes on at the ledger's lr, as above
    loop.close()


def test_a_core_rollback_mid_warmup_restores_the_schedule_and_the_ledger_says_the_lr_run(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=0.05)
    loop.run(5)
    loop.send("core", "checkpoint", source="human")
    loop.step()  # the checkpoint is taken at step 6
    loop.run(9)
    cmd = loop.send("core", "rollback", {"step": 6}, source="human")
    loop.step()
    e = loop.decision(cmd)
    assert e["decision"] == "applied" and e["payload"]["restored_step"] == 6
    change = e["payload"]["knobs"]["lr"]
    # "old": the lr the run used until the rollback (moved by the scheduler since), not a stale value.
    assert change["old"] == pytest.approx(0.05 * lam(16))
    assert change["new"] == pytest.approx(0.05 * lam(6))
    assert loop.sched.last_epoch == 6
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(change["new"])
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(0.05 * lam(7))  # the warmup goes on from step 6
    loop.close()


def test_tools_read_the_lr_the_scheduler_set_and_a_cut_after_warmup_applies_from_it(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=0.05, knob_publish_s=0.05)
    tools = HotcbTools(tmp_path, source="rule", actor="rules")
    loop.run(WARMUP + 5)  # warmup over: lr 0.05, published mid-warmup at step 1 as 0.0025

    def knob() -> float:
        (lr,) = [a for a in tools.call("describe_actuators")["actuators"] if a["key"] == "lr"]
        return lr["value"]

    step_until(loop, lambda: knob() == pytest.approx(loop.opt.param_groups[0]["lr"]))
    assert knob() == pytest.approx(0.05)
    live = knob()
    out = tools.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": live / 2},
                                  "reason": "halve lr", "wait_s": 0})
    loop.step()
    e = loop.decision(out["cmd_id"])
    assert e["decision"] == "applied", e
    assert e["payload"]["lr"] == {"old": pytest.approx(0.05), "new": pytest.approx(0.025)}
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(0.025)
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(0.025)  # the schedule keeps the level it was moved to
    loop.close()


def test_a_blow_up_at_step_3_is_rolled_back_when_the_mode_file_said_auto_before_the_trainer_started(tmp_path):
    (tmp_path / "hotcb.autopilot.json").write_text(json.dumps({"mode": "auto", "set_by": "alice"}))
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=0.05)
    loop.run(2)
    loop.nan_loss = True
    loop.step()  # step 3
    loop.nan_loss = False
    (enable,) = entries(loop, "rescue", "enable")
    assert enable["decision"] == "applied" and enable["step"] == 1
    assert enable["source"] == "rule" and enable["actor"] == "rescue" and "auto" in enable["reason"]
    (rb,) = entries(loop, "rescue", "rollback")
    assert rb["decision"] == "applied" and rb["step"] == 3 and rb["payload"]["restored_step"] == 1
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(rb["payload"]["lr"]["new"])
    # Leaving the modes that act switches the rescue off again (within the watch cadence).
    (tmp_path / "hotcb.autopilot.json").write_text(json.dumps({"mode": "suggest"}))
    step_until(loop, lambda: not rescue_of(loop.kernel).enabled)
    (disable,) = entries(loop, "rescue", "disable")
    assert disable["decision"] == "applied" and "suggest" in disable["reason"]
    loop.close()


@pytest.mark.parametrize("text", ["{not json", json.dumps({"mode": "turbo"}), json.dumps(["auto"]), "x" * 70000])
def test_a_malformed_mode_file_is_refused_with_its_reason_and_changes_nothing(tmp_path, text):
    (tmp_path / "hotcb.autopilot.json").write_text(text)
    loop = Loop(tmp_path)
    loop.run(3)
    (refused,) = entries(loop, "rescue", "enable")
    assert refused["decision"] == "rejected" and "hotcb.autopilot.json" in refused["error"]
    assert not rescue_of(loop.kernel).enabled
    assert loop.kernel.internal_errors == 0
    loop.close()


def test_a_script_enabled_rescue_is_left_on_when_the_mode_leaves_auto(tmp_path):
    (tmp_path / "hotcb.autopilot.json").write_text(json.dumps({"mode": "off"}))
    loop = Loop(tmp_path)
    rescue_of(loop.kernel).configure(enabled=True)
    loop.run(2)
    assert rescue_of(loop.kernel).enabled and not entries(loop, "rescue", "disable")
    loop.close()


LONG_WARMUP = 3000  # the lr rises all through a trial


def lam_long(e: int) -> float:
    return min(1.0, (e + 1) / LONG_WARMUP)


def tune_loop(tmp_path, restore_weights: str, horizon: int = 30) -> Loop:
    """A loop inside a long warmup with tune trying lr (active mode)."""
    pytest.importorskip("optuna")
    loop = Loop(tmp_path, scheduler="warmup", warmup=LONG_WARMUP, lr=0.5)
    recipe = {"seed": 0, "horizon": horizon, "settle": 5, "n_startup_trials": 4,
              "risk": {"restore_weights": restore_weights}}
    loop.send("tune", "enable", {"mode": "active", "recipe": recipe}, source="human")
    return loop


def tune_lr(loop: Loop, prefix: str) -> list[dict]:
    """Tune's applied lr changes whose reason starts with ``prefix``."""
    return [e for e in loop.ledger() if e.get("source") == "tune" and "lr" in (e.get("payload") or {})
            and e.get("decision") == "applied" and str(e.get("reason")).startswith(prefix)]


def step_until_tune(loop: Loop, prefix: str, limit: int) -> dict:
    for _ in range(limit):
        loop.step()
        if tune_lr(loop, prefix):
            break
    return tune_lr(loop, prefix)[0]


def test_a_rejected_tune_trial_mid_warmup_leaves_the_lr_the_ledger_says(tmp_path):
    loop = tune_loop(tmp_path, "rejected")
    back = step_until_tune(loop, "tune roll back", 1500)
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(back["payload"]["lr"]["new"])
    loop.close()


def test_a_rejected_tune_trial_under_a_moving_schedule_keeps_the_schedules_place(tmp_path):
    """Knobs only (no weights to rewind): the undo takes the trial's factor out of the schedule,
    so the run goes on at the schedule's own lr for this step, not at the lr the trial began at."""
    loop = tune_loop(tmp_path, "never")
    back = step_until_tune(loop, "tune roll back", 1500)
    assert loop.sched.base_lrs[0] == pytest.approx(0.5)  # the schedule's own level again
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(back["payload"]["lr"]["new"])  # the ledger says what runs
    assert loop.used_lrs[-1] == pytest.approx(0.5 * lam_long(loop.sched.last_epoch - 1))  # on schedule
    tried = tune_lr(loop, "tune trial")[0]
    assert back["payload"]["lr"]["new"] > tried["payload"]["lr"]["old"]  # not the lr the trial began at
    loop.close()


def test_a_trial_abandoned_under_a_moving_schedule_is_undone_in_place(tmp_path):
    """Tune disabled mid-trial: the trial's change is taken back although the lr has moved with
    the schedule since (its value no longer equals the trial's), and the schedule keeps its place."""
    loop = tune_loop(tmp_path, "never", horizon=200)
    step_until_tune(loop, "tune trial", 1500)
    loop.run(10)  # the schedule moves the lr away from the trial's value
    loop.send("tune", "disable", source="human")
    step_until_tune(loop, "tune roll back", 200)
    assert loop.sched.base_lrs[0] == pytest.approx(0.5)
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(0.5 * lam_long(loop.sched.last_epoch - 1))
    loop.close()


def test_a_tune_rewind_the_warmup_outran_takes_the_trials_factor_out_and_restores_the_weights(tmp_path):
    """A warmup that moves lr fast: by a rejected trial's end, its pre-trial lr is further from the
    live one than the guard's ratio allows (a trial's raise times the warmup's own rise). The
    rollback then takes the trial's factor out of the live lr (within the ratio: the trial's own
    change was) and the weights still go back, rather than be refused and leave the trial's lr
    and its damage in force."""
    pytest.importorskip("optuna")
    warmup = 150
    loop = Loop(tmp_path, scheduler="warmup", warmup=warmup, lr=0.5)
    recipe = {"seed": 0, "horizon": 30, "settle": 5, "n_startup_trials": 4, "risk": {"restore_weights": "rejected"}}
    loop.send("tune", "enable", {"mode": "active", "recipe": recipe}, source="human")
    kept: list[dict] = []
    epochs: dict[int, int] = {}  # the schedule's place after each step (earlier rewinds set it back)
    while not kept:
        assert loop.step_no < warmup, "no rollback the warmup outran"
        loop.step()
        epochs.setdefault(loop.step_no, loop.sched.last_epoch)
        kept = [e for e in tune_lr(loop, "tune roll back") if "beyond the guard's ratio" in e["reason"]]
    (back,) = kept
    assert not [e for e in loop.ledger() if e.get("source") == "tune" and e.get("decision") != "applied"]
    verdict = next(e for e in loop.ledger() if e.get("module") == "tune" and e.get("op") == "verdict"
                   and e["step"] == back["step"])
    went_to = verdict["params"]["weights_restored_to_step"]
    assert went_to is not None and went_to < back["step"]  # the weights went back too
    assert loop.sched.last_epoch == epochs[went_to]  # and the schedule with them
    lr = back["payload"]["lr"]
    assert 0.5 <= lr["new"] / lr["old"] <= 2  # within the guard's ratio
    loop.step()
    assert loop.used_lrs[-1] == pytest.approx(lr["new"])  # the ledger says what runs
    loop.close()
