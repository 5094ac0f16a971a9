"""An overshot warmup (``hotcb.warmup_watch``): a loss that turns up while the scheduler raises lr
is rolled back to a state trained at an lr the warmup allows, and the schedule is cut until its
peak is the range test's share of the lr where the loss turned; a warmup whose loss keeps
falling, or a run with no warmup, is left alone."""

from __future__ import annotations

import math
import random

import pytest
import torch

from hotcb.rescue import rescue_of
from hotcb.warmup_watch import WarmupWatch, WarmupWatchConfig
from tests.support.core_loop import Loop

WARMUP = 40
LR = 0.05


def lam(e: int) -> float:
    return min(1.0, (e + 1) / WARMUP)


def overshooting(step: int) -> float:
    """A warmup's loss that falls to its low at step 15 and climbs 10% above it by step 21."""
    return 3.0 - 0.1 * step if step <= 15 else 1.5 + 0.03 * (step - 15)


def stalling(step: int) -> float:
    """A warmup's loss that falls to its low at step 15 and sits just above it from there: no climb."""
    return 3.0 - 0.1 * step if step <= 15 else 1.51


def settling(step: int) -> float:
    """A loss that falls through the warmup and levels off after its peak lr (step 50 on)."""
    return max(1.5, 3.0 - 0.03 * step)


def falling(step: int) -> float:
    return 1.0 + 2.0 * math.exp(-step / 15)


def watch(curve, steps: int = 80, warmup: int = WARMUP, noise: float = 0.0, seed: int = 0):
    """The watch over a scripted curve and a linear warmup's lr; its overshoot, if any."""
    rng, w, found = random.Random(seed), WarmupWatch(), []
    for s in range(1, steps + 1):
        rising = min(s, warmup) if warmup else None
        out = w.observe(s, curve(s) * (1 + noise * rng.gauss(0, 1)), LR * lam(s), rising)
        if out is not None:
            found.append(out)
    return w, found


# ---------------------------------------------------------------------- the decision
def test_a_loss_that_turns_up_while_lr_rises_is_an_overshoot_said_once():
    w, found = watch(overshooting)
    (over,) = found
    assert 15 <= over.low_step <= 22  # the 10-step mean's low comes a few steps after the curve's
    assert over.low == pytest.approx(min(sum(overshooting(s) for s in range(e - 9, e + 1)) / 10
                                         for e in range(11, over.step + 1)))
    assert over.low_lr == pytest.approx(LR * lam(over.low_step)) and over.lr > over.low_lr
    assert over.level > over.low * 1.05
    assert not w.active
    assert "the warmup overshot" in over.reason(0.1) and f"{0.1 * over.low_lr:.4g}" in over.reason(0.1)


def test_a_loss_that_stops_falling_while_lr_rises_is_an_overshoot_without_a_climb():
    w, found = watch(stalling)
    (over,) = found
    assert over.stalled and over.level < over.low * 1.01  # no climb: its low was not regained
    assert over.step - over.low_step == WarmupWatchConfig.stall and over.lr > over.low_lr
    assert over.low_step < WARMUP  # made while lr still rose
    assert "has not fallen below it in the 30 steps since" in over.reason(0.1)


@pytest.mark.parametrize("seed", range(3))
def test_a_long_warmups_slow_late_progress_is_no_stall(seed):
    # A 2000-step warmup; from step ~300 the loss gains ~0.4% per 30 steps under 3% noise, so its
    # 10-step mean goes 30+ steps without a new low while lr rises. A stall counts only once it has
    # lasted as long as the fall to its low took: here it never does.
    slow = lambda s: 1.0 + 2.0 * math.exp(-s / 100) + 0.3 * (1 - s / 2000)  # noqa: E731
    rng, w = random.Random(seed), WarmupWatch()
    longest, last_low = 0, 0
    for s in range(1, 1501):
        assert w.observe(s, slow(s) * (1 + 0.03 * rng.gauss(0, 1)), LR * min(1.0, (s + 1) / 2000), s) is None, s
        last_low = w.low_step
        longest = max(longest, s - last_low)
    assert w.active and longest >= WarmupWatchConfig.stall  # a fixed 30-step stall would have fired


def test_a_loss_that_levels_off_at_the_peak_lr_is_no_stall():
    _, found = watch(settling)
    assert found == []


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_warmup_whose_loss_keeps_falling_is_not_an_overshoot(seed):
    _, found = watch(falling, noise=0.08, seed=seed)
    assert found == []


def test_without_a_warmup_the_watch_stops_at_once():
    w, found = watch(overshooting, warmup=0)
    assert found == [] and not w.active and w.seen == WarmupWatchConfig.no_warmup_after


def test_the_watch_ends_a_window_after_the_warmup():
    late = lambda s: falling(s) if s < WARMUP + 35 else 5.0  # noqa: E731 (a rise after the watch's window)
    w, found = watch(late, steps=WARMUP + 60)
    assert found == [] and not w.active


# ---------------------------------------------------------------------- the rescue, in a real loop
def scripted(loop: Loop, curve, n: int) -> None:
    """Steps of the real model, optimizer and LambdaLR, with the scripted curve as train_loss."""
    for _ in range(n):
        loop.step(extra_env={"metrics": {"train_loss": curve(loop.step_no + 1)}})


def rescue_entries(loop: Loop) -> list[dict]:
    return [e for e in loop.ledger() if e.get("actor") == "rescue" and e.get("op") != "enable"]


def test_an_overshot_warmup_goes_back_to_the_start_and_its_schedule_is_cut_to_the_rule(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=LR)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    scripted(loop, overshooting, 1)  # the run's first state: the rescue holds it from its first step
    first = {k: v.clone() for k, v in loop.model.state_dict().items()}
    while not rescue_entries(loop):
        assert loop.step_no < 40, "no overshoot seen"
        scripted(loop, overshooting, 1)
    (rb,) = rescue_entries(loop)
    assert rb["op"] == "rollback" and rb["decision"] == "applied"
    assert "the warmup overshot" in rb["reason"] and "run's first state" in rb["reason"]
    assert rb["payload"]["restored_step"] == 1
    # What ran before is gone: the model and the schedule are the run's first ones again.
    assert all(torch.equal(v, first[k]) for k, v in loop.model.state_dict().items())
    assert loop.sched.last_epoch == 1
    low_lr = float(rb["reason"].split("at lr ")[1].split(" ")[0])
    goal = 0.1 * low_lr
    scripted(loop, lambda s: 1.5, 60)  # the loss stays put: the cuts follow, one a cooldown apart
    cuts = [e for e in rescue_entries(loop) if e["op"] == "set_params"]
    assert cuts and all(e["decision"] == "applied" for e in cuts)  # asked before: no refusal left behind
    assert all("the warmup overshot" in e["reason"] for e in cuts)
    assert loop.sched.base_lrs[0] == pytest.approx(goal, rel=1e-6)
    steps = [e["step"] for e in cuts]
    assert all(b - a >= loop.kernel.guard.cooldown_steps for a, b in zip(steps, steps[1:], strict=False))
    last = cuts[-1]
    at = last["step"]
    assert loop.used_lrs[at] == pytest.approx(last["payload"]["lr"]["new"])  # the ledger's new lr ran next
    loop.close()


def test_a_warmup_whose_loss_stalls_goes_back_to_the_start(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=LR)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    scripted(loop, stalling, 1)
    first = {k: v.clone() for k, v in loop.model.state_dict().items()}
    while not rescue_entries(loop):
        assert loop.step_no < WARMUP + 30, "no stall seen"
        scripted(loop, stalling, 1)
    (rb,) = rescue_entries(loop)
    assert rb["op"] == "rollback" and rb["decision"] == "applied"
    assert "has not fallen below it" in rb["reason"] and "run's first state" in rb["reason"]
    assert all(torch.equal(v, first[k]) for k, v in loop.model.state_dict().items())
    assert loop.sched.last_epoch == 1
    loop.close()


def test_a_warmup_whose_loss_keeps_falling_is_left_alone(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=LR)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    scripted(loop, falling, WARMUP + 40)
    assert rescue_entries(loop) == []
    assert loop.sched.base_lrs[0] == pytest.approx(LR)
    loop.close()


def test_an_overshoot_seen_while_the_rescue_is_off_changes_nothing(tmp_path):
    loop = Loop(tmp_path, scheduler="warmup", warmup=WARMUP, lr=LR)
    scripted(loop, overshooting, 40)
    assert rescue_entries(loop) == [] and loop.sched.base_lrs[0] == pytest.approx(LR)
    loop.close()
