"""The ``rules`` policy in an eval run is the agent's real rules autopilot: from a too-high start
lr it acts through the tool surface, and its changes are ledger entries with source ``rule``."""

from hotcb.evals.train import RunSpec, train

from hotcb.jsonl import read_all
from hotcb.rundir import RunDir


def test_rules_policy_acts_through_the_tools_and_lands_in_the_ledger(tmp_path):
    r = train(RunSpec(task="synthetic", policy="rules", seed=0, run_dir=str(tmp_path / "run"),
                      start_config="lr_high", threads=1))
    assert r["policy_started"], r["policy_errors"]
    ledger = [e for e in read_all(RunDir(r["run_dir"]).ledger) if isinstance(e, dict)]
    applied = [e for e in ledger if e["source"] == "rule" and e["module"] == "opt" and e["decision"] == "applied"]
    assert applied, [(e["source"], e["decision"], e.get("error")) for e in ledger]
    assert all(e["reason"] for e in applied)
    assert r["interventions"] == len(applied)
    first = applied[0]["payload"]["lr"]
    assert first["new"] < first["old"]  # the rules cut a too-high lr, never raise it here
    assert r["curves"]["lr"][-1] < r["curves"]["lr"][0]


def test_a_held_out_raise_that_beat_the_curves_slowing_is_kept(tmp_path):
    """regression at 0.1x its tuned lr, seed 8: the probe doubles lr on its held-out loss at step
    150 and keeps it -- the held-out rate held (0.184 -> 0.185%/step) where the window before had
    fallen 1.6%/step at the same lr (doing nothing fell 0.13%/step over the trial's steps). It had
    been undone as no faster, and the finish then held the slow lr: 0.1405 against 0.0944 now."""
    import torch

    before = torch.get_num_threads()
    try:
        r = train(RunSpec(task="regression", policy="rules", seed=8, run_dir=str(tmp_path / "run"),
                          lr_scale=0.1, threads=1))
    finally:
        torch.set_num_threads(before)
    ledger = [e for e in read_all(RunDir(r["run_dir"]).ledger) if isinstance(e, dict)]
    probe = [(e["step"], e["payload"]["lr"]["old"], e["payload"]["lr"]["new"]) for e in ledger
             if e.get("actor") == "probe" and e["decision"] == "applied"]
    assert probe == [(150, 0.002, 0.004)], probe
    assert "held-out loss" in next(e["reason"] for e in ledger if e.get("actor") == "probe")
