"""A kernel built before the process group exists (the Lightning / transformers case) takes its
writer role from the launcher's environment until the adapter attaches the group: a rank other
than 0 writes nothing into the run directory, not even at construction."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcb import HotKernel
from hotcb.distributed import launched_as_other_rank


@pytest.mark.parametrize(("env", "other"), [
    ({}, False),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, False),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, True),  # torchrun
    ({"WORLD_SIZE": "2", "LOCAL_RANK": "1", "NODE_RANK": "0"}, True),  # Lightning's ddp launcher
    ({"WORLD_SIZE": "4", "LOCAL_RANK": "0", "NODE_RANK": "1"}, True),  # second node
    ({"WORLD_SIZE": "1", "LOCAL_RANK": "3"}, False),  # not a multi-process job
    ({"WORLD_SIZE": "two", "RANK": "1"}, False),  # unreadable: keep writing
])
def test_launched_as_other_rank(env: dict[str, str], other: bool) -> None:
    assert launched_as_other_rank(env) is other


def test_kernel_of_a_non_zero_rank_writes_nothing_before_attach(run_dir: Path, monkeypatch) -> None:
    for k in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    kernel = HotKernel(run_dir)
    kernel.apply(env={"step": 1, "metrics": {"loss": 1.0}})
    kernel.close()
    assert not kernel.is_writer
    assert list(run_dir.iterdir()) == []

    monkeypatch.setenv("RANK", "0")
    with HotKernel(run_dir) as k0:
        assert k0.is_writer
    assert (run_dir / "hotcb.status.json").exists()
