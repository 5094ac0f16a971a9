"""One kernel per run directory: a second training process on a run fails at construction,
naming the holder; a killed holder's lock is gone at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hotcb import HotKernel
from hotcb.errors import HotcbError, RunLocked
from hotcb.jsonl import append_line
from hotcb.ops import make_command
from tests.support.proc import Trainer, wait_for


def test_second_trainer_fails_naming_the_first_and_a_restart_after_kill_starts_at_once(run_dir: Path) -> None:
    first = Trainer(run_dir, sleep=0.01)
    try:
        first.wait_step(3)
        second = Trainer(run_dir, sleep=0.01)
        assert second.proc.wait(60) != 0  # it never trained
        log = (run_dir / "trainer.log").read_text()
        assert "RunLocked" in log and f"pid {first.proc.pid}" in log
        assert first.alive()
        # A command is decided once, by the one kernel.
        append_line(run_dir / "hotcb.commands.jsonl",
                    make_command("loss", "set_params", {"l1_w": 1e-4}, cmd_id="only-once"))
        wait_for(lambda: any(e["cmd_id"] == "only-once" for e in first.ledger()), 60, what="the decision")
        first.kill()  # SIGKILL: no close, no cleanup
        third = Trainer(run_dir, sleep=0.01)
        try:
            step = first.status().get("step", 0)
            third.wait_step(step + 3)
            assert third.alive()
            assert third.status()["pid"] == third.proc.pid
        finally:
            third.stop()
    finally:
        if first.alive():
            first.kill()
    assert [e["cmd_id"] for e in first.ledger()].count("only-once") == 1


def test_close_releases_the_run_and_a_second_kernel_in_process_is_refused(run_dir: Path) -> None:
    k = HotKernel(run_dir)
    with pytest.raises(RunLocked) as err:
        HotKernel(run_dir)
    assert isinstance(err.value, HotcbError)
    assert f"pid {os.getpid()}" in str(err.value)
    k.close()
    HotKernel(run_dir).close()  # released by close(): the next kernel takes it at once
