"""``hotcb recipe validate`` judges each line as the kernel will when the replay starts (the
judge's static verdict over the run's published knobs), exiting non-zero and naming each bad
line; ``hotcb --dir NEW freeze --mode replay --recipe F`` with F outside the run copies it in
(content-addressed) so the kernel replays it, and refuses -- non-zero, nothing written -- a
recipe the kernel would refuse. A real kernel (``Loop``) decides each time."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hotcb.cli import main
from hotcb.jsonl import read_json
from tests.support.core_loop import Loop

GOOD = {"step": 2, "module": "opt", "op": "set_params", "params": {"lr": 0.01}}


def _recipe(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A run whose kernel has published its knobs (opt.lr in [1e-8, 10], ...)."""
    run = tmp_path / "run"
    loop = Loop(run, watch_interval_s=0.0)
    loop.run(2)
    loop.close()
    return run


def test_validate_names_each_bad_line_and_exits_non_zero(published: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = _recipe(tmp_path / "r.jsonl", [
        GOOD,
        {**GOOD, "step": 3, "params": {"lr": -1}},
        {**GOOD, "step": 4, "params": {"lr": "abc"}},
        {**GOOD, "step": 5, "module": "nosuchmodule"},
        "{this is not json",
        {**GOOD, "step": 6, "module": "core", "op": "explode"},
    ])
    assert main(["recipe", "validate", "--dir", str(published), str(f)]) == 2
    out = capsys.readouterr().out
    bad = sorted(int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("line "))
    assert bad == [2, 3, 4, 5, 6], out
    assert "5 problem(s)" in out
    assert "nosuchmodule" in out and "not JSON" in out

    assert main(["recipe", "validate", "--dir", str(published), str(_recipe(tmp_path / "ok.jsonl", [GOOD]))]) == 0
    assert "recipe is valid" in capsys.readouterr().out


def test_freeze_replay_copies_an_outside_recipe_and_the_kernel_replays_it(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "elsewhere").mkdir()
    outside = _recipe(tmp_path / "elsewhere" / "r.jsonl", [{**GOOD, "step": 3}])
    new = tmp_path / "new"
    loop = Loop(new, watch_interval_s=0.0)
    loop.run(1)
    assert main(["freeze", "--dir", str(new), "--mode", "replay", "--recipe", str(outside)]) == 0
    assert "copied into the run directory" in capsys.readouterr().out
    saved = read_json(new / "hotcb.freeze.json")
    rel = saved["recipe_path"]
    assert rel.startswith("recipes/") and (new / rel).read_bytes() == outside.read_bytes()
    loop.run(4)
    loop.close()
    assert loop.kernel.freeze.mode == "replay"
    replayed = [e for e in loop.ledger() if e.get("source") == "replay" and e["decision"] == "applied"]
    assert [e["payload"]["lr"]["new"] for e in replayed] == [pytest.approx(0.01)]
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_freeze_replay_of_a_recipe_the_kernel_would_refuse_fails_and_writes_nothing(
        published: Path, tmp_path: Path) -> None:
    before = (published / "hotcb.freeze.json").read_bytes() if (published / "hotcb.freeze.json").exists() else None
    bad = _recipe(tmp_path / "bad.jsonl", [{**GOOD, "params": {"lr": -1}}])
    with pytest.raises(SystemExit, match=r"refused, nothing changed:\n  line 1"):
        main(["freeze", "--dir", str(published), "--mode", "replay", "--recipe", str(bad)])
    with pytest.raises(SystemExit, match="recipe not found"):
        main(["freeze", "--dir", str(published), "--mode", "replay", "--recipe", str(tmp_path / "missing.jsonl")])
    after = (published / "hotcb.freeze.json").read_bytes() if (published / "hotcb.freeze.json").exists() else None
    assert after == before


def test_the_recipe_copy_is_never_written_through_a_link(published: Path, tmp_path: Path) -> None:
    """The copy's temp file and its folder are run files: a link planted at either is not
    written through (the first would overwrite its target, the second put the copy outside)."""
    outside = _recipe(tmp_path / "r.jsonl", [GOOD])
    name = f"{hashlib.sha256(outside.read_bytes()).hexdigest()[:16]}.jsonl"
    (published / "recipes").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (published / "recipes" / f".{name}.{os.getpid()}.tmp").symlink_to(victim)
    assert main(["freeze", "--dir", str(published), "--mode", "replay", "--recipe", str(outside)]) == 0
    assert victim.read_text() == "precious\n"
    assert (published / "recipes" / name).read_bytes() == outside.read_bytes()

    other = tmp_path / "other"
    other.mkdir()
    (published / "recipes").rename(tmp_path / "old-recipes")
    (published / "recipes").symlink_to(other)
    with pytest.raises(SystemExit, match="outside the run directory"):
        main(["freeze", "--dir", str(published), "--mode", "replay", "--recipe", str(outside)])
    assert list(other.iterdir()) == []
