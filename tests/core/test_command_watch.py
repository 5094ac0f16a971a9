"""The commands file is watched off the step: an idle step makes no system call for it, and every
command is still decided, once: at the next step when written through hotcb's writer in this
process, within the watch's cadence when written by anyone else (another process, an editor),
and within the kernel's fallback cadence even with no watching thread at all."""

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
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=3600.0)
    lp.run(2)
    main, seen = threading.main_thread(), []
    real = os.lstat

    def counting_lstat(path: Any, *a: Any, **kw: Any) -> os.stat_result:
        if threading.current_thread() is main and os.fspath(path).endswith(COMMANDS):
            seen.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "lstat", counting_lstat)
    lp.run(300)
    assert seen == []  # the watch thread looks, the step does not
    cmd = lp.send("loss", "set_params", {"l2_w": 0.003})  # hotcb's writer rings the kernel
    lp.step()
    assert lp.decision(cmd)["decision"] == "applied" and lp.weights["l2_w"] == 0.003
    lp.close()


def test_a_write_through_hotcb_is_decided_at_the_next_step_without_the_thread(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=3600.0, command_watch_s=3600.0)
    lp.run(3)
    for i in range(5):
        cmd = lp.send("loss", "set_params", {"l2_w": 0.001 * (i + 1)})
        lp.step()
        assert lp.decision(cmd)["decision"] == "applied"
    lp.close()


def test_a_raw_append_is_decided_by_the_watch_thread(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=3600.0, command_watch_s=0.01)
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


def test_without_a_thread_the_fallback_cadence_still_reads_the_file(run_dir: Path) -> None:
    # The thread never looks (an hour apart); the kernel's fallback (watch_interval_s) does.
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=0.05, command_watch_s=3600.0)
    lp.run(3)
    rec = make_command("loss", "set_params", {"l2_w": 0.005})
    _raw_append(run_dir / COMMANDS, rec)
    _step_until(lp, rec["cmd_id"])
    assert lp.decision(rec["cmd_id"])["decision"] == "applied"
    lp.close()


def test_command_watch_off_looks_on_every_step(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=3600.0, command_watch_s=0)
    lp.run(3)
    assert lp.kernel.commands.watch is None
    rec = make_command("loss", "set_params", {"l2_w": 0.007})
    _raw_append(run_dir / COMMANDS, rec)
    lp.step()
    assert lp.decision(rec["cmd_id"])["decision"] == "applied"
    lp.close()


def test_lines_left_by_a_capped_read_are_read_at_the_next_steps(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0, watch_interval_s=3600.0, command_watch_s=3600.0)
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


def test_close_stops_the_watch_thread(run_dir: Path) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0)
    lp.run(2)
    watch = lp.kernel.commands.watch
    assert watch is not None and watch._thread is not None and watch._thread.is_alive()
    thread = watch._thread
    lp.close()
    assert not thread.is_alive()
