"""Export a seeded CPU run's changes as a recipe; replaying it reproduces the knob trajectory and
the per-step losses exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcb import FreezeState
from hotcb.jsonl import read_all
from hotcb.recipe import export_recipe, validate_recipe, write_recipe
from tests.support.core_loop import Loop

STEPS = 40
CHANGES = {  # step at which the command is written -> (module, params)
    4: ("opt", {"lr": 0.02}),
    11: ("loss", {"l2_w": 0.001}),
    19: ("opt", {"lr": 0.08, "momentum": 0.5}),
    27: ("loss", {"ce_w": 0.7}),
}


def original(run_dir: Path) -> Loop:
    lp = Loop(run_dir, seed=3, scheduler="step")
    for s in range(1, STEPS + 1):
        if s in CHANGES:
            module, params = CHANGES[s]
            lp.send(module, "set_params", params)
        lp.step()
    lp.close()
    return lp



def test_export_then_replay_is_identical(tmp_path: Path) -> None:
    a = original(tmp_path / "a")
    entries = export_recipe(read_all(tmp_path / "a" / "hotcb.applied.jsonl"))
    assert [e["step"] for e in entries] == sorted(CHANGES)
    assert validate_recipe(entries) == []
    recipe = tmp_path / "recipe.jsonl"
    write_recipe(recipe, entries)

    b = Loop(tmp_path / "b", seed=3, scheduler="step", freeze=FreezeState(mode="replay", recipe_path=str(recipe)))
    traj = []
    for s in range(1, STEPS + 1):
        if s == 8:  # an outside change during replay is ignored, not applied
            b.send("opt", "set_params", {"lr": 1.0})
        b.step()
        traj.append((b.opt.param_groups[0]["lr"], b.opt.param_groups[0]["momentum"], dict(b.weights)))
    b.close()
    assert b.losses == a.losses  # bit-identical on CPU
    assert b.lrs == a.lrs
    ledger_b = b.ledger()
    replayed = [e for e in ledger_b if e["source"] == "replay"]
    assert [(e["step"], e["decision"]) for e in replayed] == [(s, "applied") for s in sorted(CHANGES)]
    assert [e["decision"] for e in ledger_b if e["source"] == "human"] == ["ignored_replay"]
    assert traj[-1][2] == {"ce_w": 0.7, "l2_w": 0.001} and traj[-1][1] == 0.5
    assert b.kernel.status()["replay"]["done"] is True


def test_replay_adjusted_overlay_changes_one_step(tmp_path: Path) -> None:
    a = original(tmp_path / "a")
    recipe = tmp_path / "recipe.jsonl"
    write_recipe(recipe, export_recipe(read_all(tmp_path / "a" / "hotcb.applied.jsonl")))
    overlay = [{"step": 27, "module": "loss", "op": "set_params", "params": {"ce_w": 0.9}}]
    b = Loop(tmp_path / "b", seed=3, scheduler="step",
             freeze=FreezeState(mode="replay_adjusted", recipe_path=str(recipe), overlay=overlay))
    b.run(STEPS)
    b.close()
    assert b.losses[:27] == a.losses[:27]  # identical up to the patched step
    assert b.losses[27:] != a.losses[27:]
    assert b.weights["ce_w"] == 0.9


def test_validate_recipe_reports_problems() -> None:
    problems = validate_recipe([{"step": 5, "module": "opt", "op": "set_params", "params": {}},
                                {"step": 2, "module": "opt", "op": "set_params"}, "x",
                                {"step": -1}, {"step": 9, "module": "cb", "op": "load", "target": {"kind": "zip"}}])
    assert len(problems) == 4
    assert any("must not decrease" in p for p in problems)


def test_replay_with_missing_recipe_is_refused(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="recipe not found"):
        Loop(run_dir, freeze=FreezeState(mode="replay", recipe_path="nope.jsonl"))
