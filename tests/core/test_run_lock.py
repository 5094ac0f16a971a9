"""One kernel per run directory: a second training process on a run fails at construction,
naming the holder; a killed holder's lock is gone at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hotcb import HotKernel
from hotcb.errors import HotcbError, RunLocked
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from tests.support.proc import Trainer, wait_for


def test_second_trainer_fails_naming_the_first_and_a_restart_after_kill_starts_at_once(run_dir: Path) -> None:
    first = Trainer(run_dir, sleep=0.01)
    try:
        first.wait_step(3, timeout=180)  # bounds on a loaded machine's start-up, not timings
        second = Trainer(run_dir, sleep=0.01)
        assert second.proc.wait(180) != 0  # it never trained
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
            third.wait_step(step + 3, timeout=180)  # a killed holder's flock is gone: it raises or starts, never waits
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


def _ddp_worker(rank: int, port: int, run_dir: str, out_dir: str, late: bool) -> None:
    import json

    import torch.distributed as dist

    from hotcb.distributed import attach
    from tests.support.spawn import leave_group

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    kernel = HotKernel(run_dir) if late else None  # before the process group: rank unknown yet
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        if late:
            attach(kernel)
        else:
            kernel = HotKernel(run_dir)
        dist.barrier()  # both attached: the lock is where it stays
        holder = json.loads((Path(run_dir) / "hotcb.kernel.lock").read_text())
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"held": kernel.run_lock.held, "holder": holder,
                                                                "pid": os.getpid()}))
        dist.barrier()
        kernel.close()
    except BaseException:
        dist.destroy_process_group()  # spawn reports this rank's exception and ends the other
        raise
    leave_group()  # a barrier, then exit: tearing the gloo group down can deadlock inside torch


@pytest.mark.slow
@pytest.mark.parametrize("late", [False, True], ids=["kernel_after_init", "kernel_before_init"])
def test_in_ddp_only_the_writing_rank_holds_the_run(run_dir: Path, tmp_path: Path, late: bool) -> None:
    import json
    import socket

    from tests.support.spawn import spawn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn(_ddp_worker, (port, str(run_dir), str(tmp_path), late), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["held"] and not r1["held"]
    assert r0["holder"]["pid"] == r1["holder"]["pid"] == r0["pid"]  # rank 0's name on the lock
    HotKernel(run_dir).close()  # both ranks gone: free at once
