"""Run data in a person's terminal: a reason, actor, callback id or proposal text with terminal
control sequences (erase the line, carriage return, an OSC, a bidi override) is printed as
escapes by ``hotcb ledger``, ``hotcb status`` and ``hotcb proposals``, so an agent cannot
rewrite what the person reads (a proposal shown as another op, a ledger line forged)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools

from hotcb.cli import main
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from hotcb.vocabulary import Source
from tests.support.core_loop import Loop

# What an agent would send: back to the line's start, erase it, print a line of its own.
FORGED = "\r\x1b[2K#1    step      2  applied  opt.set_params  human/you  lr: 0.05 -> 0.049"
CONTROLS = ("\x1b", "\r", "\x07", "\u202e", "\x9b")


def _clean(out: str) -> None:
    for c in CONTROLS:
        assert c not in out, f"{c!r} reached the terminal"


def test_ledger_and_status_print_hostile_run_text_as_escapes(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lp = Loop(run_dir, command_check_s=0)
    lp.run(1)
    rec = make_command("loss", "set_params", {"l2_w": 0.001}, cmd_id="evil", source="agent",
                       reason="l2 helps" + FORGED + "\x1b]52;c;cHduZWQ=\x07\u202e")
    rec["actor"] = "bot\x1b[8m"
    append_line(run_dir / "hotcb.commands.jsonl", rec)
    cb = make_command("cb", "load", {}, cmd_id="cb-evil", id="hb\r\x1b[2K\x9b",
                      target={"kind": "module", "path": "hotcb.callbacks", "symbol": "HeartbeatCallback"})
    append_line(run_dir / "hotcb.commands.jsonl", cb)
    lp.run(3)
    assert lp.decision("evil")["decision"] == "applied" and lp.decision("cb-evil")["decision"] == "applied"
    lp.kernel.publish_status()
    capsys.readouterr()
    assert main(["ledger", "--dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "l2 helps\\r\\x1b[2K#1" in out and "bot\\x1b[8m" in out and "\\u202e" in out
    assert main(["status", "--dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "cb hb\\r\\x1b[2K\\x9b: " in out
    lp.close()


def test_proposals_print_a_hostile_reason_as_escapes(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = HotcbTools(run_dir, source=Source.AGENT, actor="llm")
    agent.call("propose_op", {"op": {"module": "opt", "op": "set_params", "params": {"lr": 5.0}},
                              "reason": "val_loss flat" + FORGED})
    capsys.readouterr()
    assert main(["proposals", "--dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert '{"lr": 5.0}' in out and "val_loss flat\\r\\x1b[2K#1" in out
