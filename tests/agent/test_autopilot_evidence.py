"""``hotcb autopilot --mode auto`` against metric lines some other writer appended to a healthy
run's hotcb.metrics.jsonl: the rules fire on them, and the kernel refuses every op they send --
no lr cut, no rollback -- with the evidence each rested on named in the ledger."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hotcb.jsonl import read_json
from hotcb.jsonl_write import append_line, append_lines
from hotcb.ops import make_command
from tests.support.proc import Trainer, wait_for

HOTCB = str(Path(sys.executable).with_name("hotcb"))
RULES = {"rescue": False, "rules": {
    "plateau": {"window": 30, "warmup_steps": 0, "cooldown_steps": 1, "max_actions": 0},
    "non_finite": {"window": 5, "cooldown_steps": 1},
    "divergence": {"enabled": False},
}}


def _rule_entries(trainer: Trainer) -> list[dict]:
    """The rules' decisions on the run's metrics (the rescue's switch, which the mode file turns
    on before any metric is read, is not one)."""
    return [e for e in trainer.ledger() if e.get("source") == "rule"
            and not (e.get("module") == "rescue" and e.get("op") in ("enable", "disable"))]


@pytest.mark.slow
def test_injected_metric_lines_move_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    with Trainer(run, "--checkpoint-every", "5", sleep=0.01) as t:
        t.wait_step(20)
        # Paused by a person, so the file's last lines stay the injected ones while the rules read it
        # (the kernel still decides commands while paused).
        append_line(run / "hotcb.commands.jsonl", make_command("core", "pause", cmd_id="pause", actor="ana"))
        wait_for(lambda: t.status().get("paused"), 60, what="the pause")
        lr = read_json(run / "hotcb.actuators.json")["actuators"]
        base = 10**6
        fake = [{"step": base + i, "epoch": 0, "wall_time": 0.0,
                 "metrics": {"val_loss": 0.5 + 1e-4 * math.sin(i), "train_loss": "nan" if i >= 57 else 0.5}} for i in range(60)]
        append_lines(run / "hotcb.metrics.jsonl", fake)
        log = open(tmp_path / "autopilot.log", "wb")
        pilot = subprocess.Popen([HOTCB, "autopilot", "--dir", str(run), "--mode", "auto", "--rules", str(rules),
                                  "--interval", "0.2"], stdout=log, stderr=subprocess.STDOUT)
        try:
            def refused() -> list[dict]:
                got = _rule_entries(t)
                actors = {(e["actor"], e["op"]) for e in got}
                return got if {("plateau", "set_params"), ("non_finite", "rollback")} <= actors else []

            entries = wait_for(refused, 180, 0.2, "the rules' ops on the injected lines")
            assert pilot.poll() is None, (tmp_path / "autopilot.log").read_text()[-3000:]
        finally:
            pilot.terminate()
            pilot.wait(60)
            log.close()
        assert all(e["decision"] == "rejected" for e in _rule_entries(t)), _rule_entries(t)
        for e in entries:
            assert e["evidence"]["step"] >= base  # the ledger names the reading the op rested on
            assert e["evidence"]["metric"] in ("val_loss", "train_loss")
        knob_ops = [e for e in entries if e["op"] == "set_params"]
        assert all(e["error"].startswith("evidence not in the kernel's metrics") for e in knob_ops)
        rollbacks = [e for e in entries if e["op"] == "rollback"]
        assert all("not healthy" in e["error"] or "evidence not in" in e["error"] for e in rollbacks)
        assert read_json(run / "hotcb.actuators.json")["actuators"] == lr  # no lr cut
        assert not [e for e in t.ledger() if e["op"] == "rollback" and e["decision"] == "applied"]
        append_line(run / "hotcb.commands.jsonl", make_command("core", "resume", cmd_id="resume", actor="ana"))
        step = t.status()["step"]
        t.wait_step(step + 5)  # training goes on, healthy
