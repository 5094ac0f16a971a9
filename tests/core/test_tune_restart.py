"""A training process that ends while a tune trial is in flight, and the next one on that run.

The trial was never accepted. The next process takes its knob values from where a resumed run
takes them (the checkpoint, the ledger, or its own config); tune re-applies nothing. If the live
values are still the trial's, tune sets them back to the pre-trial values once, through the
guard (a ledger entry with ``source: tune``); the study tells the trial failed exactly once;
one more restart changes nothing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")

from hotcb.jsonl import read_all
from tests.core.test_tune import FAST, SyntheticRun

FAIL = 3  # optuna TrialState.FAIL in the journal


def _in_flight(run: SyntheticRun) -> Any:
    t = run.kernel.modules["tune"].trial
    return t if t is not None and t.kind == "active" and t.change_step >= 0 and run.step >= t.change_step + 3 else None


def _start(run_dir: Path) -> tuple[SyntheticRun, dict[str, Any]]:
    """Tune until a trial's change is live (3 steps in); returns the run and that trial."""
    run = SyntheticRun(run_dir, start=1e-3, opt=3e-2)
    assert run.submit("tune", "enable", {"mode": "active", "recipe": FAST})["decision"] == "applied"
    run.run(2000, until=lambda: _in_flight(run) is not None)
    t = _in_flight(run)
    assert t is not None and run.lr == t.params["lr"] != t.before["lr"]
    return run, {"step": run.step, "number": t.number, "params": t.params, "before": t.before}


def crash_worker(run_dir: str, out: str) -> None:
    _, info = _start(Path(run_dir))
    Path(out).write_text(json.dumps(info))
    os._exit(3)  # no close, no atexit: the journal holds the trial as RUNNING


def _restart(run_dir: Path, step: int, restore: str) -> SyntheticRun:
    run = SyntheticRun(run_dir, start=5e-3, opt=3e-2, seed=step)  # 5e-3: the script's own config
    run.step = step
    if restore == "ledger":  # a resumed run: the knobs the ledger last applied (the trial's)
        run.kernel.load_state_dict(None, env={"step": step})
    return run


def _rollbacks(run_dir: Path, number: int) -> list[dict[str, Any]]:
    return [e for e in read_all(run_dir / "hotcb.applied.jsonl") if e["source"] == "tune"
            and e["op"] == "set_params" and e["reason"].startswith(f"tune roll back trial {number}:")]


def _told_failed(run_dir: Path, number: int) -> int:
    lines = read_all(run_dir / "hotcb.tune.journal")
    return sum(1 for j in lines if j.get("op_code") == 6 and j.get("trial_id") == number and j.get("state") == FAIL)


def _record(run: SyntheticRun, number: int) -> dict[str, Any]:
    return next(t for t in run.tune_state()["trials"] if t["number"] == number)


def test_a_crash_mid_trial_is_undone_once_after_the_ledger_restores_the_trial_values(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    p = mp.get_context("spawn").Process(target=crash_worker, args=(str(run_dir), str(out)))
    p.start()
    try:
        p.join(120)
    finally:  # never left running (a timeout, a failed assert): the suite must be able to exit
        if p.is_alive():
            p.kill()
            p.join(30)
    assert p.exitcode == 3
    info = json.loads(out.read_text())
    n, step, before = info["number"], info["step"], info["before"]["lr"]
    assert _told_failed(run_dir, n) == 0 and json.loads((run_dir / "hotcb.tune.json").read_text())[
        "active_trial"]["number"] == n

    second = _restart(run_dir, step, "ledger")
    assert second.lr == pytest.approx(info["params"]["lr"])  # the ledger's last value: the trial's
    second.run(60)
    back = _rollbacks(run_dir, n)
    assert len(back) == 1 and back[0]["decision"] == "applied"
    assert back[0]["payload"]["lr"] == {"old": pytest.approx(info["params"]["lr"]), "new": pytest.approx(before)}
    assert back[0]["step"] == step + 10  # the restore changed lr at `step`: the guard's cooldown first
    assert "ended during the trial" in back[0]["reason"]
    assert second.traj[back[0]["step"] - step - 1] == pytest.approx(before)
    rec = _record(second, n)
    assert rec["state"] == "failed" and rec["outcome"] == "interrupted" and rec["undo"] == "rolled_back"
    assert rec["rolled_back"] is True and _told_failed(run_dir, n) == 1
    second.run(200)  # and tuning goes on: new trials, numbered after the interrupted one
    assert any(t["number"] > n and t["kind"] == "active" for t in second.tune_state()["trials"])
    second.kernel.close()

    # One more restart, the ledger restores the rolled-back value: nothing is undone twice.
    third = _restart(run_dir, second.step, "ledger")
    third.run(30)
    third.kernel.close()
    assert len(_rollbacks(run_dir, n)) == 1 and _told_failed(run_dir, n) == 1
    assert _record(third, n)["undo"] == "rolled_back"


@pytest.mark.parametrize("restore", ["ledger", "script"])
def test_a_run_closed_mid_trial_leaves_an_undo_for_the_next_process(run_dir: Path, restore: str) -> None:
    first, info = _start(run_dir)
    first.kernel.close()
    n = info["number"]
    rec = _record(first, n)
    assert rec["outcome"] == "interrupted" and rec["undo"] == "pending" and _told_failed(run_dir, n) == 1

    second = _restart(run_dir, info["step"], restore)
    second.run(40)
    second.kernel.close()
    rec = _record(second, n)
    if restore == "ledger":  # the trial's value came back: tune undoes it, once
        assert rec["undo"] == "rolled_back" and len(_rollbacks(run_dir, n)) == 1
        assert second.lr == pytest.approx(info["before"]["lr"])
    else:  # the script set its own value: that is what the run uses; tune touches nothing
        assert rec["undo"] == "not_live" and not _rollbacks(run_dir, n)
        assert second.traj[:30] == [5e-3] * 30
    assert _told_failed(run_dir, n) == 1 and second.tune_state()["pending_undo"] == []
