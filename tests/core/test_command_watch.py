"""The commands file is not looked at on every step: an idle step makes no system call for it, and
every command is still decided, once: at the next step when written through hotcb's writer in this
process (it rings the kernel), within ``command_check_s`` when written by anyone else (another
process, an editor), and at the next step on every step with ``command_check_s`` 0."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hotcb.jsonl_write import dumps
from hotcb.ops import make_command
from tests.support.core_loop import Loop

COMMANDS = "hotcb.commands.jsonl"


def _raw_append(path: Path, rec: dict[str, Any]) -> None:
    """An append not made through hotcb's writer (nothing rings the kernel)."""
    with open(path, "a") as f:
        f.write(dumps(rec) + "\n")


def _step_until(lp: Loop, cmd_id: str, seconds: float = 10.0) -> int:
    """Steps (a few ms apart) until ``cmd_id`` has a decision; the number of steps it took."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        lp.step()
        n += 1
        if any(e.get("cmd_id") == cmd_id for e in lp.ledger()):
            return n
        time.sleep(0.005)
    raise AssertionError(f"{cmd_id} was never decided")


def test_an_idle_step_makes_no_stat_of_the_commands_file(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=3600.0)
    lp.run(2)
    main, seen = threading.main_thread(), []
    real = os.lstat

    def counting_lstat(path: Any, *a: Any, **kw: Any) -> os.stat_result:
        if threading.current_thread() is main and os.fspath(path).endswith(COMMANDS):
            seen.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "lstat", counting_lstat)
    lp.run(300)
    assert seen == []  # nothing rang, the cadence is not due: the step looks at nothing
    cmd = lp.send("loss", "set_params", {"l2_w": 0.003})  # hotcb's writer rings the kernel
    lp.step()
    assert lp.decision(cmd)["decision"] == "applied" and lp.weights["l2_w"] == 0.003
    lp.close()


def test_a_write_through_hotcb_is_decided_at_the_next_step(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=3600.0)
    lp.run(3)
    for i in range(5):
        cmd = lp.send("loss", "set_params", {"l2_w": 0.001 * (i + 1)})
        lp.step()
        assert lp.decision(cmd)["decision"] == "applied"
    lp.close()


def test_a_raw_append_is_decided_within_the_check_cadence(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=0.01)
    lp.run(3)
    rec = make_command("loss", "set_params", {"l2_w": 0.004})
    _raw_append(run_dir / COMMANDS, rec)
    _step_until(lp, rec["cmd_id"])
    lp.run(20)
    assert lp.decision(rec["cmd_id"])["decision"] == "applied"  # exactly one entry (decision() checks)
    assert lp.weights["l2_w"] == 0.004
    lp.close()


def test_a_command_from_another_process_is_decided(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0)
    lp.run(3)
    rec = make_command("loss", "set_params", {"l2_w": 0.006})
    code = ("import sys; from hotcb.jsonl_write import append_line; import json; "
            "append_line(sys.argv[1], json.loads(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(run_dir / COMMANDS), dumps(rec)], check=True,
                   cwd=Path(__file__).resolve().parents[2])
    _step_until(lp, rec["cmd_id"])
    assert lp.weights["l2_w"] == 0.006
    lp.close()


def test_an_unrung_append_waits_for_the_cadence(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=3600.0)
    lp.run(3)
    rec = make_command("loss", "set_params", {"l2_w": 0.005})
    _raw_append(run_dir / COMMANDS, rec)
    lp.run(5)
    assert not any(e.get("cmd_id") == rec["cmd_id"] for e in lp.ledger())  # the hour is not up
    lp.kernel.commands.look()  # what the cadence does when it is due
    lp.step()
    assert lp.decision(rec["cmd_id"])["decision"] == "applied"
    lp.close()


def test_command_check_off_looks_on_every_step(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=0)
    lp.run(3)
    assert lp.kernel.commands.watch is None
    rec = make_command("loss", "set_params", {"l2_w": 0.007})
    _raw_append(run_dir / COMMANDS, rec)
    lp.step()
    assert lp.decision(rec["cmd_id"])["decision"] == "applied"
    lp.close()


def test_lines_left_by_a_capped_read_are_read_at_the_next_steps(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=3600.0)
    lp.run(2)
    tail = lp.kernel.commands.tail
    tail.max_line_bytes, tail.max_bytes_per_read = 1000, 1001  # a read takes two or three lines
    n = 60
    ids = [lp.send("loss", "set_params", {"l2_w": 1e-4 * (i + 1)}) for i in range(n)]
    for _ in range(n):  # no new write rings the kernel: the capped reads go on by themselves
        lp.step()
    decided = {e.get("cmd_id") for e in lp.ledger()}
    assert set(ids) <= decided
    lp.close()


def test_a_paused_run_reads_an_unrung_command(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, command_check_s=3600.0, pause_poll_s=0.01)
    lp.run(2)
    lp.send("core", "pause")
    resume = make_command("core", "resume")

    def later() -> None:
        time.sleep(0.2)
        _raw_append(run_dir / COMMANDS, resume)

    t = threading.Thread(target=later)
    t.start()
    lp.step()  # holds while paused, looking at the file itself, until the resume is read
    t.join()
    assert lp.decision(resume["cmd_id"])["decision"] == "applied" and not lp.kernel.paused
    lp.close()
