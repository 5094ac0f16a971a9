"""A first blow-up early in a run, at the lr it started with, restarts the run from its first
state: every state it holds was trained at the lr that blew up, and what it learned there can
carry damage its loss level does not show. Later blow-ups, runs that trained at a lower lr (a
warmup, a cut) and runs whose budget is unknown keep the newest healthy snapshot."""

from __future__ import annotations

import math

from hotcb.divergence import LossDetector, Verdict
from hotcb.jsonl import read_all
from hotcb.rescue import rescue_of
from hotcb.rollback_target import RollbackTargets
from tests.support.core_loop import Loop
from tests.support.rollback_targets import held_start


def _learning_run(first_lr: float, later_lr: float) -> tuple[RollbackTargets, LossDetector]:
    snaps, targets, det = held_start(first_lr)
    for step in range(1, 71):  # learns: well below chance (ln 10) by step 50
        det.update(math.log(10) * (1 - 0.5 * step / 70))
        if step in (50, 70):
            snaps.take(step, {"lr": later_lr}, "periodic", healthy=True)
            targets.keep_detector(step, det)
    return targets, det


def test_an_early_first_blowup_at_the_starting_lr_returns_to_the_start():
    targets, det = _learning_run(0.4, 0.4)
    snap = targets.choose(Verdict.BLOWUP, 86, det, early_lr=0.4)
    assert snap is targets.start and targets.unproven is not None and targets.unproven.step == 70
    snap = targets.choose(Verdict.BLOWUP, 86, det)  # not early (or not the first): the newest healthy state
    assert snap is not None and snap.step == 70 and targets.unproven is None


def test_a_run_that_trained_at_a_lower_lr_keeps_its_newest_state():
    targets, det = _learning_run(0.008, 0.4)  # a warmup: its first state was trained at a lower lr
    snap = targets.choose(Verdict.BLOWUP, 86, det, early_lr=0.4)
    assert snap is not None and snap.step == 70 and targets.unproven is None


def _blow_up_at(run_dir, max_steps: int | None) -> tuple[dict, int]:
    """A non-finite loss at step 81 of a run at a constant lr: the rollback's ledger entry, and
    the step of the run's first state (taken at its first step)."""
    loop = Loop(run_dir, lr=0.05, max_steps=max_steps)
    rescue_of(loop.kernel).configure(enabled=True, probe=False)
    loop.run(80)
    assert any(s.step > 0 and s.healthy for s in loop.kernel.snapshots.snapshots)
    loop.nan_loss = True
    loop.step()
    loop.nan_loss = False
    (entry,) = [e for e in read_all(loop.kernel.run.ledger) if e.get("op") == "rollback"]
    assert entry["decision"] == "applied" and entry["payload"]["lr"] == {"old": 0.05, "new": 0.025}
    assert loop.opt.param_groups[0]["lr"] == 0.025
    start = rescue_of(loop.kernel).targets.start
    assert start is not None
    loop.close()
    return entry, start.step


def test_a_real_loop_restarts_on_an_early_first_blowup(tmp_path):
    entry, start = _blow_up_at(tmp_path / "early", max_steps=400)  # step 81 of 400
    assert entry["payload"]["restored_step"] == start
    assert "every state since was trained at the lr that blew up" in entry["reason"], entry["reason"]


def test_a_real_loop_keeps_its_newest_state_after_a_quarter_or_without_a_budget(tmp_path):
    for name, budget in (("late", 200), ("open", None)):  # step 81 of 200; no known budget
        entry, start = _blow_up_at(tmp_path / name, max_steps=budget)
        assert entry["payload"]["restored_step"] > start, (name, entry["reason"])
