"""With nothing new, ``kernel.apply`` reads no file (counted, not timed: no wall-clock asserts)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from tests.support.core_loop import Loop


class Opens:
    def __init__(self) -> None:
        self.reads: list[str] = []
        self.writes: list[str] = []


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Opens:
    seen = Opens()
    real_open, real_os_open = builtins.open, os.open

    def counting_open(file, mode="r", *a, **kw):
        (seen.writes if any(c in mode for c in "wax+") else seen.reads).append(os.fspath(file))
        return real_open(file, mode, *a, **kw)

    def counting_os_open(path, flags, *a, **kw):
        (seen.writes if flags & (os.O_WRONLY | os.O_RDWR) else seen.reads).append(os.fspath(path))
        return real_os_open(path, flags, *a, **kw)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    return seen


def test_idle_apply_reads_no_file_and_a_new_line_is_read_once(run_dir: Path, opens: Opens) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0)
    append_line(run_dir / "hotcb.commands.jsonl", make_command("loss", "set_params", {"l2_w": 0.001}))
    lp.run(1)
    opens.reads.clear()
    opens.writes.clear()
    for step in range(2, 502):
        lp.kernel.apply(env={"step": step})  # no metrics: nothing to record either
    assert opens.reads == [] and opens.writes == []
    append_line(run_dir / "hotcb.commands.jsonl", make_command("loss", "set_params", {"l2_w": 0.002}))
    opens.reads.clear()
    for step in range(502, 602):
        lp.kernel.apply(env={"step": step})
    assert opens.reads.count(str(run_dir / "hotcb.commands.jsonl")) == 1
    assert lp.weights["l2_w"] == 0.002
    lp.close()


def test_half_line_is_not_reread_until_it_grows(run_dir: Path, opens: Opens) -> None:
    lp = Loop(run_dir, status_interval_s=3600.0)
    lp.write_raw('{"cmd_id": "slow", "module": "loss", "op": "set_params", "params": {"l2_w": 0.0')
    lp.kernel.apply(env={"step": 1})
    opens.reads.clear()
    for step in range(2, 200):
        lp.kernel.apply(env={"step": step})
    assert opens.reads == []  # the partial line waits for the file to change
    lp.write_raw("05}}\n")
    lp.kernel.apply(env={"step": 200})
    assert lp.decision("slow")["decision"] == "applied"
    lp.close()
