"""The ``hotcb`` command line against a real training process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hotcb.cli import main, parse_assignments, parse_value
from hotcb.jsonl import read_all
from tests.support.proc import Trainer, wait_for


@pytest.mark.parametrize("text, value", [
    ("1e-4", 1e-4), ("5e-5", 5e-5), ("0.1", 0.1), ("3", 3), ("true", True), ("False", False),
    ("null", None), ("[0.9, 0.999]", [0.9, 0.999]), ('{"a": 1}', {"a": 1}), ("cosine", "cosine"),
    ("-2.5E-3", -2.5e-3),
])
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_parse_assignments_errors() -> None:
    assert parse_assignments(["lr=1e-4", "betas=[0.9,0.99]"]) == {"lr": 1e-4, "betas": [0.9, 0.99]}
    with pytest.raises(SystemExit, match="key=value"):
        parse_assignments(["lr"])


def cli(run_dir: Path, *args: str) -> int:
    return main([*args[:1], "--dir", str(run_dir), *args[1:]] if args[0] not in ("opt", "loss", "cb", "recipe")
                else [args[0], args[1], "--dir", str(run_dir), *args[2:]])


def last(run_dir: Path) -> dict:
    return read_all(run_dir / "hotcb.applied.jsonl")[-1]


@pytest.mark.slow
def test_cli_drives_a_live_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Trainer(run_dir, sleep=0.005) as t:
        t.wait_step(3)
        assert cli(run_dir, "set", "lr=5e-3", "--reason", "try lower") == 0
        e = last(run_dir)
        assert (e["module"], e["decision"], e["params"], e["reason"]) == ("opt", "applied", {"lr": 5e-3}, "try lower")
        assert "applied" in capsys.readouterr().out
        assert cli(run_dir, "set", "mse_w=0.5", "weight_decay=1e-4") == 0
        modules = {e["module"]: e["params"] for e in read_all(run_dir / "hotcb.applied.jsonl")[-2:]}
        assert modules == {"loss": {"mse_w": 0.5}, "opt": {"weight_decay": 1e-4}}
        with pytest.raises(SystemExit, match="unknown knob 'warp'.*known knobs: .*lr.*mse_w"):
            cli(run_dir, "set", "warp=1")
        assert cli(run_dir, "set", "lr=nan") == 2
        assert last(run_dir)["decision"] == "rejected" and "finite" in last(run_dir)["error"]
        assert cli(run_dir, "opt", "set_params", "momentum=0.8") == 0
        assert cli(run_dir, "loss", "set_params", "l1_w=1e-4") == 0
        assert last(run_dir)["payload"] == {"l1_w": {"old": 0.0, "new": 1e-4}}
        # callbacks
        assert cli(run_dir, "cb", "load", "t", "--module", "hotcb.callbacks.timing:TimingCallback", "every=5") == 0
        assert last(run_dir)["params"] == {"every": 5}
        for op in (["set_params", "t", "every=2"], ["disable", "t"], ["enable", "t"], ["unload", "t"]):
            assert cli(run_dir, "cb", *op) == 0, op
        assert cli(run_dir, "cb", "load", "g", "--file", "missing.py:G") == 2
        assert last(run_dir)["decision"] == "failed"
        # pause / status / resume
        assert cli(run_dir, "pause") == 0
        capsys.readouterr()
        assert cli(run_dir, "status") == 0
        out = capsys.readouterr().out
        assert "state: paused" in out and "opt.lr = 0.005" in out
        assert cli(run_dir, "resume") == 0
        # freeze: prod ignores knob changes, off lets them through
        assert cli(run_dir, "freeze", "--mode", "prod") == 0
        wait_for(lambda: t.status().get("freeze_mode") == "prod", 20, what="prod mode")
        assert cli(run_dir, "set", "lr=4e-3") == 2
        assert last(run_dir)["decision"] == "ignored_freeze"
        assert cli(run_dir, "freeze", "--mode", "off") == 0
        wait_for(lambda: t.status().get("freeze_mode") == "off", 20, what="freeze off")
        with pytest.raises(SystemExit, match="needs a recipe_path"):
            cli(run_dir, "freeze", "--mode", "replay")
        # recipe and ledger
        capsys.readouterr()
        assert cli(run_dir, "recipe", "export") == 0
        recipe = read_all(run_dir / "hotcb.recipe.jsonl")
        assert [r["params"] for r in recipe[:1]] == [{"lr": 5e-3}]
        assert cli(run_dir, "recipe", "validate", str(run_dir / "hotcb.recipe.jsonl")) == 0
        capsys.readouterr()
        assert cli(run_dir, "ledger", "--decision", "rejected") == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1 and "rejected" in out[0] and "finite" in out[0]
        assert cli(run_dir, "ledger", "--module", "cb", "--json", "--last", "2") == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
        assert [r["op"] for r in rows] == ["unload", "load"] and rows[1]["decision"] == "failed"
        assert cli(run_dir, "stop") == 0
        wait_for(lambda: not t.alive(), 30, what="exit after stop")
        assert t.proc.returncode == 0


def test_cli_entry_point_and_absent_run(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "--dir", str(tmp_path / "r"), "init"],
                       capture_output=True, text=True, check=True)
    assert "run directory ready" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "status", "--dir", str(tmp_path / "r")],
                       capture_output=True, text=True, check=True)
    assert "state: absent" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "set", "lr=1e-3", "--wait", "0", "--dir", str(tmp_path / "r")],
                       capture_output=True, text=True, check=True)
    assert "queued opt set_params" in r.stdout  # no training yet: queued, applied when it starts
    assert read_all(tmp_path / "r" / "hotcb.commands.jsonl")[0]["params"] == {"lr": 1e-3}
