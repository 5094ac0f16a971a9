"""A real training loop (the eval harness's own, 1 thread: deterministic) that diverges from its
first step: the rescue returns it to its first state, then the descent (hotcb/descent.py) cuts the
lr that held down to one that trains."""

from __future__ import annotations

import tempfile

import pytest

from hotcb.jsonl import read_all


@pytest.fixture(scope="module")
def diverging_runs():
    """synthetic at 40x its tuned lr (diverges unaided) under the rules autopilot, and the tuned
    start with no policy: the eval harness's own loop, 1 thread (deterministic)."""
    import torch
    from hotcb.evals.train import RunSpec, train

    before = torch.get_num_threads()
    try:
        out = {}
        for name, policy, scale in (("rescued", "rules", 40.0), ("tuned", "none", 1.0)):
            with tempfile.TemporaryDirectory() as d:
                res = train(RunSpec(task="synthetic", policy=policy, seed=0, run_dir=d, lr_scale=scale, threads=1))
                res["ledger"] = [e for e in read_all(f"{d}/hotcb.applied.jsonl") if isinstance(e, dict)]
                out[name] = res
        return out
    finally:
        torch.set_num_threads(before)


def test_a_run_diverging_from_its_first_step_is_rescued_then_cut_down_to_an_lr_that_trains(diverging_runs):
    ledger = diverging_runs["rescued"]["ledger"]
    rescues = [e for e in ledger if e["module"] == "rescue" and e["op"] == "rollback"]
    cuts = [e for e in ledger if e.get("actor") == "descent" and e["decision"] == "applied"]
    assert rescues and all(e["payload"]["restored_step"] == 0 for e in rescues)
    assert cuts and all(e["step"] > rescues[-1]["step"] for e in cuts)  # the way down comes after the rescue
    assert all(e["source"] == "rule" and e["payload"]["lr"]["new"] == pytest.approx(e["payload"]["lr"]["old"] / 2)
               for e in cuts)
    assert "noise floor" in cuts[0]["reason"]
    final_lr = cuts[-1]["payload"]["lr"]["new"]
    # 2 rescues and at least 1 cut: within x5 of the tuned 0.05 (since a window at chance after a
    # rescue is dead, the second rescue lands a step sooner and one kept cut, to 0.25, trains:
    # 52.54% against 52.44% with two cuts before; docs/evals.md, fashion-mnist)
    assert final_lr <= 0.05 * 40 / 8
    gap = diverging_runs["tuned"]["test_acc"] - diverging_runs["rescued"]["test_acc"]
    assert gap < 0.03  # within 3 pp of the tuned start (measured: 0.9 pp)


def test_after_a_kept_cut_a_cut_the_loss_does_not_reward_is_undone():
    """regression at 8x its tuned lr, seed 7 (the eval harness's loop, 1 thread): blown up at its
    start and rescued to lr 0.04, then cut to 0.02 and 0.01 (each clearly lower: kept); a third
    cut to 0.005 lowered the loss 3.7% against a 52% margin and went back. It had been kept as the
    safe side and held to the end: 0.0614 against cosine's 0.0587; back at 0.01, 0.0574."""
    import torch
    from hotcb.evals.train import RunSpec, train

    before = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as d:
            train(RunSpec(task="regression", policy="rules", seed=7, run_dir=d, lr_scale=8.0, threads=1))
            ledger = [e for e in read_all(f"{d}/hotcb.applied.jsonl") if isinstance(e, dict)]
    finally:
        torch.set_num_threads(before)
    assert any(e["module"] == "rescue" and e["op"] == "rollback" for e in ledger)
    moves = [(round(e["payload"]["lr"]["old"], 6), round(e["payload"]["lr"]["new"], 6)) for e in ledger
             if e.get("actor") == "descent" and e["decision"] == "applied"]
    assert moves == [(0.04, 0.02), (0.02, 0.01), (0.01, 0.005), (0.005, 0.01)], moves
    undo = [e for e in ledger if e.get("actor") == "descent"][-1]
    assert "did not lower the loss clearly" in undo["reason"]
