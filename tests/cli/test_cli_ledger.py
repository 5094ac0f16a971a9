"""``hotcb ledger --since-step/--until-step``, ``hotcb unfreeze``, and the same step range on the
``read_ledger`` tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools
from hotcb.mcp_server.registry import ToolError

from hotcb.cli import main
from hotcb.jsonl import read_json
from hotcb.ledger import Ledger
from tests.support.core_loop import Loop


@pytest.fixture
def ledger_dir(run_dir: Path) -> Path:
    led = Ledger(run_dir / "hotcb.applied.jsonl")
    for i, (step, source) in enumerate([(0, "human"), (5, "agent"), (10, "agent"), (15, "human")]):
        led.record(cmd_id=f"c{i}", module="opt", op="set_params", decision="applied", step=step, source=source,
                   params={"lr": 0.1 / (i + 1)}, payload={"lr": {"old": 0.1, "new": 0.1 / (i + 1)}})
    led.record(cmd_id="r", module="core", op="restore", decision="applied", step=12, source="kernel",
               actor="resume", payload={"knobs": {"aux_w": {"old": 1.0, "new": 0.5}}, "from": "checkpoint"})
    return run_dir


def ledger_json(run_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    assert main(["ledger", "--dir", str(run_dir), "--json", *args]) == 0
    return [json.loads(line)["cmd_id"] for line in capsys.readouterr().out.splitlines()]


def test_ledger_step_range(ledger_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ledger_json(ledger_dir, capsys) == ["c0", "c1", "c2", "c3", "r"]
    assert ledger_json(ledger_dir, capsys, "--since-step", "5", "--until-step", "10") == ["c1", "c2"]
    assert ledger_json(ledger_dir, capsys, "--since-step", "11") == ["c3", "r"]
    assert ledger_json(ledger_dir, capsys, "--until-step", "4") == ["c0"]
    assert ledger_json(ledger_dir, capsys, "--since-step", "1", "--source", "agent", "--last", "1") == ["c2"]
    with pytest.raises(SystemExit, match="since_step"):
        main(["ledger", "--dir", str(ledger_dir), "--since-step", "9", "--until-step", "3"])


def test_ledger_text_shows_a_restore_as_changes(ledger_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "--dir", str(ledger_dir), "--source", "kernel"]) == 0
    out = capsys.readouterr().out
    assert "core.restore" in out and "kernel/resume" in out and "aux_w: 1.0 -> 0.5" in out


def test_read_ledger_step_range(ledger_dir: Path) -> None:
    tools = HotcbTools(ledger_dir)
    out = tools.call("read_ledger", {"since_step": 5, "until_step": 12})
    assert [e["cmd_id"] for e in out["entries"]] == ["c1", "c2", "r"] and out["total"] == 5
    out = tools.call("read_ledger", {"since_step": 10, "source": "agent"})
    assert [e["cmd_id"] for e in out["entries"]] == ["c2"]
    out = tools.call("read_ledger", {"until_step": 5, "last": 1})
    assert [e["cmd_id"] for e in out["entries"]] == ["c1"]
    with pytest.raises(ToolError, match="since_step"):
        tools.call("read_ledger", {"since_step": 9, "until_step": 3})
    with pytest.raises(ToolError):
        tools.call("read_ledger", {"since_step": -1})


def test_unfreeze_is_freeze_mode_off(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = Loop(run_dir, freeze="prod", watch_interval_s=0.0)
    loop.run(1)
    assert loop.kernel.freeze.mode == "prod"
    assert main(["unfreeze", "--dir", str(run_dir), "--reason", "done tuning", "--actor", "ana"]) == 0
    assert "freeze mode -> off" in capsys.readouterr().out
    saved = read_json(run_dir / "hotcb.freeze.json")
    assert (saved["mode"], saved["source"], saved["actor"], saved["reason"]) == ("off", "human", "ana", "done tuning")
    loop.run(1)
    loop.close()
    assert loop.kernel.freeze.mode == "off"
    [e] = [e for e in loop.ledger() if e["op"] == "freeze"]
    assert (e["decision"], e["payload"]["mode"], e["actor"]) == ("applied", {"old": "prod", "new": "off"}, "ana")


def test_unfreeze_takes_no_mode(run_dir: Path) -> None:
    with pytest.raises(SystemExit):
        main(["unfreeze", "--dir", str(run_dir), "--mode", "prod"])
