"""The rescue: divergence seen on the run's own loss scale, rolled back to a healthy snapshot with
lr cut as one ledgered decision; no action on healthy noise; the lr probe raises a run far too low.

Real training processes (tests/support/trainer.py) for the must-show behaviours; the detector's
false-alarm rate on recorded noisy series in milliseconds."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hotcb.mcp_server.tools import HotcbTools

from hotcb.checkpoint import Snapshots
from hotcb.divergence import DetectorConfig, LossDetector, Verdict, first_blowup
from hotcb.jsonl import read_all
from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop
from tests.support.proc import Trainer, wait_for


def rescue_entries(ledger):
    return [e for e in ledger if e.get("module") == "rescue" and e.get("op") == "rollback"]


# ---------------------------------------------------------------------- real training processes
def test_human_lr_spike_is_rolled_back_and_cut_weights_equal_the_snapshot(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    run = tmp_path / "run"
    with Trainer(run, "--rescue", "--no-probe", "--rollback-dump", str(dump), sleep=0.005) as t:
        t.wait_step(120)
        res = HotcbTools(run, source="human", actor="tester").call(
            "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 1.0}, "reason": "fat finger"})
        spiked_at = res["step"]
        entry = wait_for(lambda: next(iter(rescue_entries(t.ledger())), None), 60, what="a rescue rollback")
        rescued_step = t.status().get("step", 0)
        t.wait_step(rescued_step + 30)
        # The trainer writes metric lines in batches (within metrics_flush_s): wait for them, not the status.
        losses = wait_for(lambda: [m["metrics"]["train_loss"] for m in t.metrics()
                                   if m.get("step", 0) > entry["step"] + 20 and "train_loss" in m.get("metrics", {})],
                          60, what="metric lines after the rollback")
    assert entry["decision"] == "applied" and entry["source"] == "rule" and entry["actor"] == "rescue"
    assert 0 < entry["step"] - spiked_at <= 6  # within a few steps of the blow-up
    assert entry["payload"]["lr"]["old"] == pytest.approx(1.0)
    assert entry["payload"]["lr"]["new"] == pytest.approx(0.005)  # the raise undone, the snapshot's lr cut
    assert entry["payload"]["restored_step"] < spiked_at
    assert "above the run's level" in entry["reason"] and "roll back to step" in entry["reason"]
    saved = torch.load(dump / "rollback-1.pt", weights_only=True)
    assert saved["restored_step"] == entry["payload"]["restored_step"]
    assert saved["kept"] is not None
    for name, w in saved["after"].items():
        assert torch.equal(w, saved["kept"][name]), name  # bit-exact: the weights the loop had at that step
    assert losses and all(math.isfinite(v) and v < 1.0 for v in losses)  # training goes on, healthy
    assert len(rescue_entries(t.ledger())) == 1


def test_healthy_noisy_run_of_2000_steps_gets_no_divergence_action(tmp_path):
    with Trainer(tmp_path, "--rescue", "--no-probe", steps=2000, sleep=0.0) as t:
        wait_for(lambda: not t.alive(), 300, what="the run to finish")
    status = t.status()
    assert status["step"] == 2000 and status["rescue"]["enabled"]
    assert rescue_entries(t.ledger()) == []
    assert not [e for e in t.ledger() if e.get("source") == "rule"]


def test_a_run_far_too_low_gets_its_lr_raised(tmp_path):
    with Trainer(tmp_path, "--rescue", "--lr", "0.0001", steps=400, sleep=0.0) as t:  # 100x too low
        wait_for(lambda: not t.alive(), 300, what="the run to finish")
    raises = [e for e in t.ledger() if e.get("actor") == "probe" and e["decision"] == "applied"
              and e["payload"]["lr"]["new"] > e["payload"]["lr"]["old"]]
    assert raises, t.ledger()
    assert raises[0]["source"] == "rule" and "lr probe" in raises[0]["reason"]
    assert max(e["payload"]["lr"]["new"] for e in raises) >= 0.0004  # at least two doublings
    assert rescue_entries(t.ledger()) == []


def test_enable_op_goes_through_the_tool_surface_and_freeze_ignores_it(tmp_path):
    with Trainer(tmp_path, sleep=0.01) as t:
        t.wait_step(5)
        rule = HotcbTools(tmp_path, source="rule", actor="autopilot")
        rule.call("apply_op", {"module": "rescue", "op": "enable", "reason": "mode auto"})
        wait_for(lambda: t.status().get("rescue", {}).get("enabled"), 30, what="rescue enabled")
        with pytest.raises(Exception, match="unknown rescue op"):
            rule.call("apply_op", {"module": "rescue", "op": "explode", "reason": "x"})


# ---------------------------------------------------------------------- in-process loop, bit-exact
def test_repeated_blowups_cut_further_and_restore_bit_exactly(run_dir):
    loop = Loop(run_dir, lr=0.05)
    r = rescue_of(loop.kernel)
    r.configure(enabled=True, probe=False)
    for _ in range(80):
        loop.step()
    snap = loop.kernel.snapshots.last_healthy()
    assert snap is not None
    kept = {k: v.clone() for k, v in snap.states["model"].items()}
    loop.nan_loss = True
    loop.step()  # a non-finite loss: rolled back at once
    entry = rescue_entries(read_all(loop.kernel.run.ledger))[-1]
    assert entry["payload"]["lr"] == {"old": 0.05, "new": 0.025}
    for k, v in loop.model.state_dict().items():
        assert torch.equal(v, kept[k])
    loop.step()  # a second blow-up right after: the lr in use is cut again
    entries = rescue_entries(read_all(loop.kernel.run.ledger))
    assert len(entries) == 2 and entries[-1]["payload"]["lr"] == {"old": 0.025, "new": 0.0125}
    loop.nan_loss = False
    for _ in range(20):
        loop.step()
    assert len(rescue_entries(read_all(loop.kernel.run.ledger))) == 2


def test_a_blowup_soon_after_a_raise_returns_to_a_snapshot_from_before_it(run_dir):
    # A human's typo raises lr x20; the loss stays quiet long enough for a periodic snapshot taken
    # after the raise to be confirmed healthy (momentum takes a while), then blows up. Returning to
    # that snapshot would restore the typo with the weights: the rescue goes back to before it.
    loop = Loop(run_dir, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, probe=False)
    loop.run(120)
    loop.send("opt", "set_params", {"lr": 1.0}, source="human", actor="typo", reason="fat finger")
    quiet = loop.losses[-1]
    for _ in range(60):  # steps 121-180 (a periodic snapshot at 170): the loss the detector sees stays put
        loop.step({"metrics": {"train_loss": quiet}})
    assert loop.opt.param_groups[0]["lr"] == 1.0
    after = [s for s in loop.kernel.snapshots.snapshots if s.healthy and s.knobs.get("lr") == 1.0]
    assert after, loop.kernel.snapshots.steps()  # a confirmed snapshot holding the raised lr
    for _ in range(5):
        loop.step({"metrics": {"train_loss": 50 * quiet}})
    (entry,) = rescue_entries(read_all(loop.kernel.run.ledger))
    assert entry["decision"] == "applied"
    assert entry["payload"]["restored_step"] <= 120  # from before the raise
    assert entry["payload"]["lr"] == {"old": 1.0, "new": 0.025}  # the typo undone, the lr before it cut
    assert loop.opt.param_groups[0]["lr"] == 0.025


def test_off_by_default_nothing_acts(run_dir):
    loop = Loop(run_dir, lr=0.05)
    for _ in range(30):
        loop.step()
    loop.nan_loss = True
    for _ in range(5):
        loop.step()
    assert rescue_entries(read_all(loop.kernel.run.ledger)) == []
    assert rescue_of(loop.kernel).detector.verdict is Verdict.NON_FINITE  # it watched


def test_a_locked_lr_is_not_cut(run_dir):
    loop = Loop(run_dir, lr=0.05)
    rescue_of(loop.kernel).configure(enabled=True, probe=False)
    for _ in range(40):
        loop.step()
    loop.kernel.locks["lr"] = {"actor": "alice", "step": 40}
    loop.nan_loss = True
    loop.step()
    entry = rescue_entries(read_all(loop.kernel.run.ledger))[-1]
    assert entry["decision"] == "applied" and "lr" not in entry["payload"]
    assert "locked by alice" in entry["payload"]["note"]
    assert loop.opt.param_groups[0]["lr"] == 0.05


# ---------------------------------------------------------------------- the detector's maths
def _noisy_run(seed: int, n: int = 2000, heavy: float = 0.0) -> list[float]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        level = 0.05 + 2.2 * math.exp(-i / 150)
        noise = rng.lognormvariate(0, heavy) if heavy else max(0.05, 1 + 0.3 * rng.gauss(0, 1))
        out.append(level * noise)
    return out


def test_false_alarm_rate_on_healthy_noise_is_zero():
    # 60 healthy runs x 2000 points: gaussian (sd 30% of the level) and heavy-tailed (lognormal,
    # sigma 0.45) minibatch noise. (At sigma 0.6, 3 of 200 runs alarm, all in the first 20 points:
    # docs/autopilot.md.)
    alarms = sum(first_blowup(_noisy_run(s, heavy=0.45 if s % 2 else 0.0)) is not None for s in range(60))
    assert alarms == 0


def test_detector_sees_blowups_nan_and_a_dead_classifier():
    base = _noisy_run(0, 300)
    hit = first_blowup(base[:200] + [v * 20 for v in base[200:]])
    assert hit is not None and 200 + 2 <= hit[0] <= 200 + 4  # `persist` points over the line
    hit = first_blowup(base[:100] + [math.nan])
    assert hit is not None and hit[0] == 100
    det = LossDetector(DetectorConfig(classes=10))
    rng = random.Random(1)
    series = [2.3 - 1.5 * min(i, 60) / 60 for i in range(80)] + [math.log(10) + 0.01 * rng.gauss(0, 1)] * 150
    verdicts = [det.update(v) for v in series]
    assert verdicts[82] is Verdict.BLOWUP  # the jump back up to chance is a blow-up at once
    assert Verdict.CHANCE in verdicts  # learned, then flat at ln(10): once the level has settled there
    slow = LossDetector(DetectorConfig(classes=10))
    assert Verdict.CHANCE not in [slow.update(math.log(10) - 1e-4 * i) for i in range(200)]
    assert slow.at_chance_since_start()  # a slow start: the probe's business, not a rollback
    # Rolled back by a rescue (probation), not into a warmup: the same flat window at chance is the
    # cut lr's failure; into a warmup (charlm at its unigram loss) it is the schedule's slow start.
    flat = [math.log(10) * (0.95 + 0.05 * rng.gauss(0, 1)) for _ in range(60)]
    again = LossDetector(DetectorConfig(classes=10))
    again.probation = again.dead_on_probation = True
    assert Verdict.CHANCE in [again.update(v) for v in flat] and not again.at_chance_since_start()
    assert (again.collapse_cause() or "").startswith("after a rescue")
    warming = LossDetector(DetectorConfig(classes=10))
    warming.probation = True
    assert Verdict.CHANCE not in [warming.update(v) for v in flat] and warming.collapse_cause() is None
    fresh = LossDetector(DetectorConfig(classes=10))
    assert Verdict.CHANCE not in [fresh.update(v) for v in flat]


def test_snapshot_ring_keeps_the_newest_healthy_one():
    class Obj:
        def __init__(self):
            self.w = torch.zeros(1)

        def state_dict(self):
            return {"w": self.w}

        def load_state_dict(self, d):
            self.w = d["w"].clone()

    snaps = Snapshots(keep=3)
    snaps.register("m", Obj())
    snaps.take(0, {}, "start", healthy=True)
    for step in range(10, 60, 10):
        snaps.take(step, {}, "periodic")
    assert snaps.steps() == [0, 40, 50]  # the ring is bounded; the healthy one stays
    snaps.confirm(since=35, upto=45)
    snaps.take(60, {}, "periodic")
    assert snaps.last_healthy().step == 40 and len(snaps.steps()) == 3
    snaps.drop_after(40)
    assert snaps.steps() == [40]


@pytest.fixture
def one_thread():
    """A run diverging from step 0 is chaotic: its numbers (measured at 1 thread) follow the
    intra-op thread count's reduction order, so the test fixes it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_run_diverging_from_step_0_is_rescued_to_its_first_state_and_cut_until_stable(run_dir, one_thread):
    # lr 5 blows this classifier up within its first steps (loss 2.5, 48, 8, 83 at steps 2-5,
    # measured); nothing healthy was ever confirmed, so the state to return to is the first one.
    loop = Loop(run_dir, lr=5.0)
    rescue_of(loop.kernel).configure(enabled=True, classes=2, probe=False)
    first = {k: v.clone() for k, v in loop.model.state_dict().items()}
    loop.kernel.apply(env={"step": 0, "optimizer": loop.opt, "model": loop.model}, events=["fit_start"])
    seen = 0
    for _ in range(300):
        loop.step()
        entries = rescue_entries(read_all(loop.kernel.run.ledger))
        if len(entries) > seen:  # a rollback landed at this step: the weights are the first state's
            seen = len(entries)
            for k, v in loop.model.state_dict().items():
                assert torch.equal(v, first[k]), k
            assert loop.opt.state_dict()["state"] == {}  # the optimizer as it began (no momentum yet)
    entries = rescue_entries(read_all(loop.kernel.run.ledger))
    assert len(entries) >= 2  # repeated blow-ups: cut again
    assert all(e["decision"] == "applied" and e["payload"]["restored_step"] == 0 for e in entries)
    lrs = [(e["payload"]["lr"]["old"], e["payload"]["lr"]["new"]) for e in entries]
    assert lrs[0] == (5.0, 2.5)
    assert all(new == pytest.approx(old * 0.5) for old, new in lrs)  # each one a halving of the last
    assert all(b[0] == pytest.approx(a[1]) for a, b in zip(lrs, lrs[1:], strict=False))  # from the last lr
    assert "first" in entries[0]["reason"] or "roll back to step 0" in entries[0]["reason"]
    assert entries[-1]["step"] < 100  # stable at the lr it found: no rescue in the last 200 steps
    tail = loop.losses[-50:]
    assert all(math.isfinite(v) for v in tail) and sum(tail) / len(tail) < 0.5 * math.log(2)  # healthy, learned


@pytest.mark.parametrize("scheduler", [None, "warmup"])
def test_a_window_at_chance_after_a_rescue_is_dead_unless_the_rollback_lands_in_a_warmup(run_dir, one_thread,
                                                                                          scheduler):
    # lr 5 blows this classifier up (at once; under a 20-step warmup once lr has risen); the
    # rollback to the first state under the warmup puts lr back below its base: the scheduler
    # raises it again, a slow loss there is expected (charlm at its unigram loss), not dead.
    loop = Loop(run_dir, lr=5.0, scheduler=scheduler, warmup=20)
    rescue = rescue_of(loop.kernel)
    rescue.configure(enabled=True, classes=2, probe=False)
    loop.kernel.apply(env={"step": 0, "optimizer": loop.opt, "model": loop.model}, events=["fit_start"])
    for _ in range(100):
        loop.step()
        if rescue_entries(read_all(loop.kernel.run.ledger)):
            break
    entry = rescue_entries(read_all(loop.kernel.run.ledger))[0]
    assert entry["decision"] == "applied" and entry["payload"]["restored_step"] == 0
    assert rescue.detector.probation
    assert rescue.detector.dead_on_probation is (scheduler is None)
