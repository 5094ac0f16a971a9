"""``hotcb autopilot --root ROOT``: one rules autopilot per run under a root (real trainers, the
CLI as a subprocess): the plateau rule acts on each run in that run's own ledger, a run started
later is picked up, and the supervisor exits once every run has ended."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.mcp_scenario import HOTCB
from tests.support.proc import Trainer, wait_for

PLATEAU = {"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000}}}


def plateau_ops(t: Trainer) -> list[dict]:
    return [e for e in t.ledger() if e.get("source") == "rule" and e.get("actor") == "plateau"
            and e.get("decision") == "applied" and e.get("module") == "opt"]


@pytest.mark.slow
def test_autopilot_root_supervises_every_run_including_late_ones(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(PLATEAU))
    # The rescue on without its lr probe (auto would turn it on with it): a cut after the probe's x2
    # trial began (step 120; a slow autopilot start on a loaded machine) would halve 0.02, not 0.01.
    first = Trainer(root / "a", "--plateau", "--rescue", "--no-probe", sleep=0.01)
    late: Trainer | None = None
    log = open(tmp_path / "autopilot.log", "wb")
    pilot = None
    try:
        first.wait_step(1, timeout=120)
        pilot = subprocess.Popen([HOTCB, "autopilot", "--root", str(root), "--mode", "auto", "--rules", str(rules),
                                  "--interval", "0.2"], stdout=log, stderr=subprocess.STDOUT)
        ops = wait_for(lambda: plateau_ops(first) or pilot.poll() is not None, 240, 0.2, "the plateau rule on run a")
        assert pilot.poll() is None, (tmp_path / "autopilot.log").read_text()[-3000:]
        assert ops[0]["payload"]["lr"] == {"old": pytest.approx(0.01), "new": pytest.approx(0.005)}
        late = Trainer(root / "b", "--plateau", "--rescue", "--no-probe", sleep=0.01)  # started after the autopilot
        ops_b = wait_for(lambda: plateau_ops(late) or pilot.poll() is not None, 240, 0.2, "the plateau rule on run b")
        assert pilot.poll() is None and ops_b[0]["payload"]["lr"]["new"] == pytest.approx(0.005)
        assert len(plateau_ops(first)) == 1  # b's rule did not act on a: each run has its own
    finally:
        first.stop()
        if late is not None:
            late.stop()
        if pilot is not None and pilot.poll() is None:
            try:
                pilot.wait(120)  # every run ended: the supervisor exits on its own
            except subprocess.TimeoutExpired:
                pilot.kill()
                raise
        log.close()
    assert pilot.returncode == 0, (tmp_path / "autopilot.log").read_text()[-3000:]
