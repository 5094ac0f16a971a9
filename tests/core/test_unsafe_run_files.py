"""A run file that is not a regular file (a FIFO, a symlink out of the run, a directory) where
the kernel reads one: refused without blocking, recorded once (a ledger refusal, an alert, the
status's last error) naming the file and why, and read again once a regular file is back."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from tests.support.core_loop import Loop

COMMANDS = "hotcb.commands.jsonl"


def _plant(path: Path, kind: str, outside: Path) -> str:
    """Put a ``kind`` where ``path`` was; the word a refusal uses for it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
        return "FIFO"
    if kind == "symlink":
        outside.write_text("")
        path.symlink_to(outside)
        return "symlink"
    path.mkdir()
    return "directory"


def _restore(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _alerts(run_dir: Path) -> list[dict[str, Any]]:
    return [a for a in read_all(run_dir / "hotcb.alerts.jsonl") if isinstance(a, dict)]


def _refusals(lp: Loop, name: str) -> list[dict[str, Any]]:
    return [e for e in lp.ledger() if e["op"] == "read_file" and (e.get("params") or {}).get("file") == name]


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_commands_file_that_is_not_a_regular_file_is_refused_once_and_recovers(
        run_dir: Path, tmp_path: Path, kind: str) -> None:
    lp = Loop(run_dir, command_check_s=0)
    lp.send("opt", "set_params", {"lr": 0.04}, cmd_id="before")
    lp.run(2)
    assert lp.decision("before")["decision"] == "applied"
    outside = tmp_path / "outside.jsonl"
    word = _plant(run_dir / COMMANDS, kind, outside)
    if kind == "symlink":  # a command reachable only through the link is never read
        append_line(outside, make_command("opt", "set_params", {"lr": 0.9}, cmd_id="via-link"))
    lp.run(20)

    [refusal] = _refusals(lp, COMMANDS)  # once, not once a step
    assert refusal["decision"] == "rejected" and COMMANDS in refusal["error"] and word in refusal["error"]
    [alert] = [a for a in _alerts(run_dir) if a["kind"] == "unsafe_file"]
    assert COMMANDS in alert["message"] and word in alert["message"]
    status = json.loads((run_dir / "hotcb.status.json").read_text())
    assert COMMANDS in status["last_internal_error"] and word in status["last_internal_error"]
    assert lp.opt.param_groups[0]["lr"] == 0.04

    _restore(run_dir / COMMANDS)
    lp.send("opt", "set_params", {"lr": 0.03}, cmd_id="after")
    lp.run(5)
    assert lp.decision("after")["decision"] == "applied"
    assert lp.opt.param_groups[0]["lr"] == 0.03
    assert [a["kind"] for a in _alerts(run_dir)] == ["unsafe_file", "unsafe_file_cleared"]
    assert lp.kernel.last_internal_error is None
    assert not any(e["cmd_id"] == "via-link" for e in lp.ledger())

    _plant(run_dir / COMMANDS, kind, tmp_path / "outside2.jsonl")  # planted again: recorded again
    lp.run(3)
    assert len(_refusals(lp, COMMANDS)) == 2
    _restore(run_dir / COMMANDS)
    lp.send("opt", "set_params", {"lr": 0.02}, cmd_id="again")
    lp.run(3)
    assert [e["cmd_id"] for e in lp.ledger() if e["op"] == "set_params"] == ["before", "after", "again"], lp.ledger()
    lp.close()


def test_the_loop_keeps_its_pace_with_a_fifo_at_the_commands_file(run_dir: Path) -> None:
    """A stat a step (``command_check_s=0``), the file refused: no open, no log, no write a step."""
    lp = Loop(run_dir, command_check_s=0)
    k = lp.kernel

    def pace(n: int = 400) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            k.apply(env={"metrics": {"loss": 1.0}})
        return (time.perf_counter() - t0) / n

    pace(50)
    base = min(pace() for _ in range(3))
    (run_dir / COMMANDS).unlink(missing_ok=True)
    os.mkfifo(run_dir / COMMANDS)
    k.apply(env={})  # the refusal is recorded here, once
    fifo = min(pace() for _ in range(3))
    assert fifo < base * 2 + 50e-6, (base, fifo)
    assert len(_refusals(lp, COMMANDS)) == 1
    lp.close()


@pytest.mark.parametrize("name", ["hotcb.freeze.json", "hotcb.yaml", "hotcb.autopilot.json"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_watched_file_that_is_not_a_regular_file_is_refused_once_and_recovers(
        run_dir: Path, tmp_path: Path, name: str, kind: str) -> None:
    lp = Loop(run_dir, command_check_s=0, watch_interval_s=0.0)
    lp.run(2)
    word = _plant(run_dir / name, kind, tmp_path / "outside")
    lp.run(10)
    [refusal] = _refusals(lp, name)
    assert name in refusal["error"] and word in refusal["error"]
    [alert] = [a for a in _alerts(run_dir) if a["kind"] == "unsafe_file"]
    assert name in alert["message"] and word in alert["message"]
    assert name in (lp.kernel.last_internal_error or "")

    _restore(run_dir / name)
    good = {"hotcb.freeze.json": json.dumps({"mode": "prod", "cmd_id": "fz-1", "source": "human"}),
            "hotcb.yaml": "knobs:\n  lr: 0.01\n",
            "hotcb.autopilot.json": json.dumps({"mode": "auto"})}[name]
    (run_dir / name).write_text(good)
    lp.run(5)
    assert [a["kind"] for a in _alerts(run_dir)] == ["unsafe_file", "unsafe_file_cleared"]
    assert lp.kernel.last_internal_error is None
    if name == "hotcb.freeze.json":
        assert lp.kernel.freeze.mode == "prod"
    elif name == "hotcb.yaml":
        assert lp.opt.param_groups[0]["lr"] == 0.01
    else:
        assert lp.kernel.modules["rescue"].enabled
    lp.close()


@pytest.mark.parametrize("name", ["hotcb.locks.json", "hotcb.intents.jsonl"])
def test_a_file_read_at_start_that_is_not_a_regular_file_is_refused_once(run_dir: Path, name: str) -> None:
    os.mkfifo(run_dir / name)
    lp = Loop(run_dir, command_check_s=0)
    lp.run(5)
    [refusal] = _refusals(lp, name)
    assert "FIFO" in refusal["error"]
    assert [a["kind"] for a in _alerts(run_dir)] == ["unsafe_file"]
    lp.close()


def test_an_intents_file_planted_mid_run_is_refused_once_and_commands_fail_until_it_is_back(run_dir: Path) -> None:
    lp = Loop(run_dir, command_check_s=0)
    lp.send("loss", "set_params", {"l2_w": 0.001}, cmd_id="before")
    lp.run(2)
    intents = run_dir / "hotcb.intents.jsonl"
    _plant(intents, "fifo", run_dir / "unused")
    lp.send("loss", "set_params", {"l2_w": 0.002}, cmd_id="during-1")
    lp.send("loss", "set_params", {"l2_w": 0.003}, cmd_id="during-2")
    lp.run(3)
    [refusal] = _refusals(lp, "hotcb.intents.jsonl")  # once, though two commands met it
    assert "FIFO" in refusal["error"]
    during = {e["cmd_id"]: e for e in lp.ledger() if e["cmd_id"].startswith("during")}
    assert [during[c]["decision"] for c in ("during-1", "during-2")] == ["failed", "failed"]
    assert all("FIFO" in during[c]["error"] for c in during)
    assert lp.weights["l2_w"] == 0.001  # no handler ran without its intent
    assert "hotcb.intents.jsonl" in lp.kernel.status()["last_internal_error"]
    assert [a["kind"] for a in _alerts(run_dir)] == ["unsafe_file"]
    intents.unlink()
    lp.send("loss", "set_params", {"l2_w": 0.004}, cmd_id="after")
    lp.run(2)
    assert [e["decision"] for e in lp.ledger() if e["cmd_id"] == "after"] == ["applied"]
    assert lp.weights["l2_w"] == 0.004
    assert [a["kind"] for a in _alerts(run_dir)] == ["unsafe_file", "unsafe_file_cleared"]
    assert lp.kernel.status()["last_internal_error"] is None
    lp.close()
