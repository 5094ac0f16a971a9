"""``hotcb tune`` against a real training process (tests/support/trainer.py), and a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.proc import Trainer, read_jsonl, wait_for

pytest.importorskip("optuna")


def hotcb(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotcb.cli", "--dir", str(run_dir), *args],
                          capture_output=True, text=True, timeout=120)


def tune_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "hotcb.tune.json").read_text())
    except (OSError, ValueError):
        return {}


def finished(run_dir: Path) -> list[dict[str, Any]]:
    return [t for t in tune_state(run_dir).get("trials", []) if t["kind"] == "active" and t["state"] != "running"]


def test_enable_alone_starts_searching_and_a_restarted_process_continues_the_study(run_dir: Path) -> None:
    with Trainer(run_dir, sleep=0.0) as tr:
        tr.wait_step(5)
        out = hotcb(run_dir, "tune", "enable", "--mode", "active")  # no recipe: defaults
        assert out.returncode == 0 and "applied" in out.stdout, out.stdout + out.stderr
        wait_for(lambda: finished(run_dir), 90, what="a finished tune trial")
        st = tune_state(run_dir)
        assert st["objective"] == "val_loss"  # the trainer reports it, so it is the default
        assert "lr" in st["trials"][-1]["params"]  # the float knobs, searched together
        tries = [e for e in tr.ledger() if e["source"] == "tune" and e["op"] == "set_params"]
        assert tries and all(e["decision"] == "applied" for e in tries)
        tr.kill()  # a crash, maybe mid-trial: nothing is closed cleanly
    first = tune_state(run_dir)
    last_number = max(t["number"] for t in first["trials"])

    with Trainer(run_dir, sleep=0.0) as tr:  # nobody re-enables tune: it resumes from the run dir
        wait_for(lambda: [t for t in tune_state(run_dir).get("trials", []) if t["number"] > last_number
                          and t["state"] != "running"], 90, what="a trial in the restarted process")
        st = tune_state(run_dir)
        assert st["mode"] == "active" and st["study_name"] == first["study_name"]
        numbers = [t["number"] for t in st["trials"]]
        assert numbers == sorted(set(numbers))
        # A trial the crash left in flight is closed as interrupted, never left running.
        stale = [t for t in first["trials"] if t["state"] == "running"]
        for t in stale:
            assert next(x for x in st["trials"] if x["number"] == t["number"])["outcome"] == "interrupted"

        out = hotcb(run_dir, "tune", "status")
        assert out.returncode == 0 and "mode active" in out.stdout and "objective val_loss" in out.stdout
        status = json.loads(hotcb(run_dir, "tune", "status", "--json").stdout)
        for key in ("mode", "objective", "direction", "sampler", "study_name", "trials", "accepted",
                    "rolled_back", "best", "active_trial", "recipe"):
            assert key in status
        out = hotcb(run_dir, "tune", "disable")
        assert out.returncode == 0 and "applied" in out.stdout, out.stdout + out.stderr
        assert tune_state(run_dir)["mode"] == "off" and tune_state(run_dir)["active_trial"] is None
    ledger = read_jsonl(run_dir / "hotcb.applied.jsonl")
    assert [e["op"] for e in ledger if e["module"] == "tune" and e["source"] == "human"] == ["enable", "disable"]


def test_a_fifo_as_the_study_journal_is_refused_and_training_goes_on(run_dir: Path) -> None:
    """Optuna opens its journal itself, blocking: a FIFO planted as ``hotcb.tune.journal`` hung
    the training step that enabled tune. The enable is refused, naming the file, and the run
    keeps stepping."""
    os.mkfifo(run_dir / "hotcb.tune.journal")
    with Trainer(run_dir, sleep=0.01) as tr:
        tr.wait_step(5)
        out = hotcb(run_dir, "tune", "enable", "--mode", "active")
        assert out.returncode == 2 and "not a regular file" in out.stdout, out.stdout + out.stderr
        tr.wait_step(tr.status()["step"] + 20)


def test_cli_recipe_file_is_validated_before_anything_is_written(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon: 1\n")
    out = hotcb(run_dir, "tune", "enable", "--recipe", str(bad), "--wait", "0")
    assert out.returncode != 0 and "horizon" in out.stderr
    assert not (run_dir / "hotcb.commands.jsonl").exists()

    good = tmp_path / "tune.yaml"
    good.write_text("objective: val_loss\nsampler: random\nhorizon: 20\nactuators:\n  lr: {min: 1.0e-3, max: 0.1}\n")
    out = hotcb(run_dir, "tune", "enable", "--mode", "suggest", "--recipe", str(good), "--set", "seed=3",
                "--wait", "0")
    assert out.returncode == 0, out.stderr
    cmd = read_jsonl(run_dir / "hotcb.commands.jsonl")[-1]
    assert cmd["module"] == "tune" and cmd["op"] == "enable" and cmd["params"]["mode"] == "suggest"
    assert cmd["params"]["recipe"]["seed"] == 3 and cmd["params"]["recipe"]["actuators"]["lr"]["max"] == 0.1
    assert "never enabled" in hotcb(run_dir, "tune", "status").stdout


def test_core_and_the_tune_cli_import_without_optuna() -> None:
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "import hotcb, hotcb.kernel, hotcb.tune.cli, hotcb.tune.recipe, hotcb.tune.score\n"
        "from hotcb.cli import build_parser\n"
        "build_parser().parse_args(['tune', 'status'])\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
