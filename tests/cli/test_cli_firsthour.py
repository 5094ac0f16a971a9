"""The CLI as a newcomer meets it: one rule for run directories, knobs named in refusals, no
tracebacks or ``None`` in the terminal, a ledger that says when it is empty and rollback lines
that list what changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hotcb.jsonl import read_all
from tests.support.proc import Trainer, wait_for

HOTCB = [sys.executable, "-m", "hotcb.cli"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*HOTCB, *args], capture_output=True, text=True, timeout=120, **kw)


def test_before_training_every_command_says_the_same(tmp_path: Path) -> None:
    d = tmp_path / "later"
    st = run("status", "--dir", str(d))
    assert st.returncode == 0 and "no training process yet" in st.stdout and "None" not in st.stdout
    assert not d.exists()  # reading does not create it
    led = run("ledger", "--dir", str(d))
    assert led.returncode == 0 and led.stdout.strip() == "no entries yet"
    s = run("set", "lr=1e-3", "--dir", str(d))
    assert s.returncode == 0 and "no training process yet" in s.stdout and "queued opt set_params" in s.stdout
    assert read_all(d / "hotcb.commands.jsonl")[0]["params"] == {"lr": 1e-3}
    bad = run("set", "warp=2", "--dir", str(d))
    assert bad.returncode != 0 and "no training process yet" in bad.stderr and "Traceback" not in bad.stderr
    f = tmp_path / "a-file"
    f.write_text("x")
    bad = run("set", "lr=1", "--dir", str(f))
    assert bad.returncode != 0 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr


def test_live_run_terminal_niceties(run_dir: Path) -> None:
    with Trainer(run_dir, sleep=0.005) as t:
        t.wait_step(3, timeout=240)  # a loaded machine imports torch slowly
        # an unknown knob lists the knobs this run has (not "unknown module 'loss'")
        r = run("set", "aux_w=0.2", "--dir", str(run_dir))
        assert r.returncode != 0 and "unknown knob 'aux_w'; known knobs: " in r.stderr and "lr" in r.stderr
        assert "unknown module" not in r.stderr
        # a closed pipe is no traceback
        p = subprocess.run(f"{sys.executable} -m hotcb.cli status --dir {run_dir} | head -1", shell=True,
                           capture_output=True, text=True, timeout=120)
        assert p.stdout.startswith("run: ") and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr
        st = run("status", "--dir", str(run_dir))
        assert "None" not in st.stdout and "step " in st.stdout
        # a rollback's line lists the knobs that moved, not every knob
        assert run("checkpoint", "--dir", str(run_dir)).returncode == 0
        assert run("set", "lr=0.002", "--dir", str(run_dir)).returncode == 0
        r = run("rollback", "--dir", str(run_dir))
        assert r.returncode == 0, r.stdout + r.stderr
        line = next(x for x in r.stdout.splitlines() if "core.rollback" in x)
        assert "lr: 0.002 -> " in line and "momentum" not in line and "weight_decay" not in line, line
        wait_for(lambda: any(e.get("op") == "rollback" for e in t.ledger()), 60, what="rollback in the ledger")
