"""The finish: with the run's length known, the rules autopilot cools lr down over the last part
of the run in a few ledgered decisions (source rule, actor finish, each with its reason), and the
optimizer's lr ends near the low end of the decay."""

import pytest
from hotcb.agent.rules.finish import FinishConfig, FinishState, decide, recent_fall, stage_target
from hotcb.evals.train import RunSpec, train

from hotcb.jsonl import read_all
from hotcb.rundir import RunDir


def test_the_decision_is_a_staircase_down_a_linear_decay_that_never_raises():
    cfg = FinishConfig()
    assert decide(100, 1000, 0.1, FinishState(), cfg) is None  # before the cool-down
    assert decide(900, None, 0.1, FinishState(), cfg) is None  # the run's length unknown
    assert decide(70, 80, 0.1, FinishState(), cfg) is None  # too short for a cool-down
    state, lr, made = FinishState(), 0.1, []
    for step in range(800, 1000, 10):
        d = decide(step, 1000, lr, state, cfg)
        if d is not None:
            assert d.reason.startswith("finish: the run ends at step 1000") and f"stage {d.stage}/6" in d.reason
            lr = max(d.lr, lr / 2)  # what the guard lets one op do
            made.append(lr)
    assert state.peak == 0.1 and made == sorted(made, reverse=True)
    assert len(made) <= 8 and lr <= 0.1 * stage_target(0.99, cfg)[1] * 1.01
    assert decide(990, 1000, lr / 10, state, cfg) is None  # below the target (a rescue's cut): never raised


def test_a_loss_still_falling_fast_holds_the_lr_instead():
    cfg = FinishConfig()
    steps = [float(s) for s in range(0, 800, 20)]
    falling = {"val_loss": (steps, [1.0 - 0.001 * s for s in steps])}  # -25% over the fifth before step 800
    flat = {"val_loss": (steps, [0.5 + 0.01 * (-1) ** i for i, _ in enumerate(steps)])}
    assert recent_fall(falling, 800, 200, cfg)[1] > cfg.hold_fall
    state = FinishState()
    assert decide(800, 1000, 0.1, state, cfg, falling) is None and state.held.startswith("finish: no cool-down")
    assert decide(990, 1000, 0.1, state, cfg, falling) is None  # held to the end
    assert decide(800, 1000, 0.1, FinishState(), cfg, flat).lr < 0.1  # a flat loss: the cool-down
    # the fall came after an lr cut (the cut's own drop: noise going), so the cool-down goes on
    assert decide(800, 1000, 0.1, FinishState(), cfg, falling, cut_before=True).lr < 0.1


def test_a_loss_falling_fast_at_the_cool_downs_start_defers_it_and_a_later_start_still_ends_low():
    # Falling 0.1% a step until step 500, flat after: the cool-down waits while the last fifth
    # still fell fast, starts once it does not (before ``latest``), and decays from there to the end.
    cfg = FinishConfig()
    steps = [float(s) for s in range(0, 1000, 10)]
    values = [1.0 - 0.001 * min(s, 500.0) for s in steps]
    state = FinishState()
    started = None
    for step in range(700, 1000, 10):
        seen = {"val_loss": ([s for s in steps if s < step], [v for s, v in zip(steps, values, strict=True) if s < step])}
        d = decide(step, 1000, 0.1, state, cfg, seen)
        if d is not None and started is None:
            started = step
    assert state.held is None and started is not None and 700 < started <= 800
    assert state.began_at == started and f"from step {started}" in decide(990, 1000, 0.1, state, cfg).reason
    assert decide(990, 1000, 0.1, state, cfg).lr < 0.1 * 0.15  # the low end of the decay by the end


def test_rules_cool_lr_down_at_the_end_of_a_real_run_each_decision_ledgered(tmp_path):
    run = train(RunSpec(task="regression", policy="rules", seed=0, run_dir=str(tmp_path / "run"),
                        threads=1))
    total, base = run["total_steps"], run["base_lr"]
    ledger = [e for e in read_all(RunDir(run["run_dir"]).ledger) if isinstance(e, dict)]
    finish = [e for e in ledger if e.get("actor") == "finish"]
    assert len(finish) >= 4
    for e in finish:
        assert e["source"] == "rule" and e["decision"] == "applied" and e["module"] == "opt"
        assert e["reason"].startswith(f"finish: the run ends at step {total}; cooling lr down")
        assert e["step"] >= FinishConfig().start * total
        assert e["payload"]["lr"]["new"] < e["payload"]["lr"]["old"]
    lr = run["curves"]["lr"]  # the optimizer's lr after each step
    first = finish[0]["step"]
    before = [e for e in ledger if e.get("module") == "opt" and e.get("decision") == "applied"
              and e["step"] < first]  # the descent's test may have cut (and kept) or undone a cut
    stable = before[-1]["payload"]["lr"]["new"] if before else base
    assert lr[first - 2] == pytest.approx(stable)  # the stable part ran at the lr in force before the finish
    assert lr[-1] <= 0.15 * base  # the low end of the decay by max_steps
    last = [e for e in ledger if e.get("module") == "opt" and e.get("decision") == "applied"][-1]
    assert lr[-1] == pytest.approx(last["payload"]["lr"]["new"])  # the ledger says what the optimizer ran


def test_it_holds_at_the_lr_the_probe_found_far_too_slow_and_could_not_raise():
    cfg = FinishConfig()
    state = FinishState()
    # The probe raised 0.002 -> 0.004, found it no faster and went back: the run is on 0.002.
    assert decide(700, 1000, 0.002, state, cfg, found_slow=0.002) is None
    assert state.held and "the probe found lr 0.002 far too slow" in state.held
    assert decide(950, 1000, 0.002, state, cfg) is None  # held to the end
    # Another lr than that one (a plateau cut since, or a raise kept): the cool-down as always.
    assert decide(700, 1000, 0.001, FinishState(), cfg, found_slow=0.002).lr < 0.001


class _Ledger:
    """The one tool the finish's ledger reads call, over a list of entries."""

    def __init__(self, entries):
        from hotcb.mcp_server.schemas import LedgerEntry

        self.entries = [LedgerEntry(**e) for e in entries]

    def read_ledger(self, _):
        from types import SimpleNamespace

        return SimpleNamespace(entries=self.entries)


def _lr(step, actor, old, new, op="set_params"):
    return {"step": step, "actor": actor, "op": op, "decision": "applied", "source": "rule",
            "payload": {"lr": {"old": old, "new": new}}}


def test_the_ledger_reads_the_probes_undone_raise_and_ignores_an_undone_test_cut():
    from hotcb.agent.rules.finish import Finisher

    undone = _Ledger([_lr(180, "probe", 0.002, 0.004), _lr(275, "probe", 0.004, 0.002)])
    assert Finisher._found_slow(undone, 400) == 0.002
    chained = _Ledger([_lr(30, "probe", 0.0125, 0.025), _lr(60, "probe", 0.025, 0.05), _lr(90, "probe", 0.05, 0.025)])
    assert Finisher._found_slow(chained, 200) is None  # back to the lr its kept raise chose, not one found slow
    kept = _Ledger([_lr(180, "probe", 0.002, 0.004)])
    assert Finisher._found_slow(kept, 400) is None
    blew = _Ledger([_lr(180, "probe", 0.16, 0.32), {**_lr(184, "rescue", 0.32, 0.08), "op": "rollback"}])
    assert Finisher._found_slow(blew, 400) is None  # a raise that blew up was too high, not slow
    test = _Ledger([_lr(285, "descent", 0.002, 0.001), _lr(325, "descent", 0.001, 0.002)])
    assert not Finisher._cut_since(test, 200, 440)  # the descent's test of a good lr, undone
    assert Finisher._cut_since(_Ledger([_lr(285, "descent", 0.02, 0.01)]), 200, 440)  # a cut that stands


def test_an_undone_test_cut_is_left_out_of_the_look_back():
    # Regression x0.1 seed 1: the descent's test halved a too-low lr for 40 steps and undid it; the
    # slowed fall in that window read as "no longer falling fast" (11.9% against 12%) and the finish
    # cooled the lr that limited progress. Left out, the loss fell 13%: the finish holds.
    from hotcb.agent.rules.finish import Finisher

    cfg = FinishConfig()

    def val(s):  # falls 0.052% a step, a quarter of that during the test at steps 560-640
        return 1.0 - 0.00052 * (min(s, 560) + 0.25 * (min(max(s, 560), 640) - 560) + max(0, s - 640))

    steps = [float(s) for s in range(0, 800, 20)]
    series = {"val_loss": (steps, [val(s) for s in steps])}
    assert recent_fall(series, 800, 200, cfg)[1] <= cfg.hold_fall < recent_fall(series, 800, 200, cfg, ((560, 640),))[1]
    assert decide(700, 1000, 0.1, FinishState(), cfg, series).lr < 0.1  # without the skip: cooled
    state = FinishState()
    assert decide(800, 1000, 0.1, state, cfg, series, skip=((560, 640),)) is None
    assert "steps 560-640, an undone test's halving, left out" in state.held
    # too few points left in a window without the test's: the look reads them all, as before
    sparse = {"val_loss": ([500.0, 560.0, 600.0, 620.0, 700.0, 780.0], [1.0, 0.9, 0.9, 0.9, 0.8, 0.8])}
    assert recent_fall(sparse, 800, 200, cfg, ((560, 640),)) == recent_fall(sparse, 800, 200, cfg)
    test = _Ledger([_lr(285, "descent", 0.002, 0.001), _lr(325, "descent", 0.001, 0.002),
                    _lr(450, "finish", 0.002, 0.0018)])
    assert Finisher._undone(test, 200, 460) == ((285, 325),)
    assert Finisher._undone(_Ledger([_lr(285, "descent", 0.02, 0.01)]), 200, 440) == ()  # a cut that stands
