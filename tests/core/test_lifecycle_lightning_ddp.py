"""Lightning DDP for real: ``Trainer(accelerator="cpu", devices=2, strategy="ddp")`` with
``HotCBLightning`` (tests/support/ddp_lightning.py, run as a script since Lightning re-launches
it for rank 1). While it trains, this process writes an lr change (``send_command``) and a
loss-weight change (the ``hotcb`` CLI) into the run directory. Both ranks apply each at the same
step; rank 0 alone writes the ledger (one entry per op), metrics and status; rank 1 writes nothing
there; parameters end identical on both ranks (tests/support/ddp_common.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

from tests.support.ddp_common import ROOT, check_ranks, drive

STEPS, LR_GATE, W_GATE = 14, 4, 9

pytestmark = pytest.mark.slow


def test_lightning_ddp_two_ranks_apply_the_same_ops_at_the_same_step(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "ddp_lightning.py"), str(run_dir), str(out),
           "--steps", str(STEPS), "--gates", f"{LR_GATE},{W_GATE}"]
    drive(cmd, run_dir, out, LR_GATE, W_GATE, lr=0.05, mse=0.5)
    check_ranks(run_dir, out, STEPS, LR_GATE, W_GATE, lr=(0.1, 0.05), mse=(1.0, 0.5))
