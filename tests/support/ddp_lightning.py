"""A tiny Lightning DDP run (``Trainer(accelerator="cpu", devices=2, strategy="ddp")``, gloo) with
``HotCBLightning``, for tests/core/test_lifecycle_lightning_ddp.py.

    python tests/support/ddp_lightning.py RUN_DIR OUT_DIR [--steps N] [--gates 4,9]

Lightning's ``ddp`` strategy re-runs this file for rank 1 (as it does a user's script), so all of
it runs in every rank. The kernel is built before ``Trainer.fit``, as users do; the adapter
attaches the process group at fit start. At each gate step every rank waits in ``training_step``
for ``OUT_DIR/go-<step>`` (tests/support/ddp_common.py). Each rank writes ``OUT_DIR/rank<R>.pt``:
lr and loss weight after every step's safe point, final parameters, files written in RUN_DIR.
"""

from __future__ import annotations

import faulthandler
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make tests.support importable
from tests.support.ddp_common import save_rank, script_args, wait_gate


def main() -> None:
    a, writes = script_args()  # before hotcb is imported

    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from hotcb import HotKernel, loss_actuators, mutable_state
    from hotcb.adapters.lightning import HotCBLightning


    class Tiny(pl.LightningModule):
        def __init__(self, weights: dict[str, float]):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(4, 1)
            self.weights = weights

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.global_step in a.gates:  # after the safe point of step global_step
                wait_gate(a.out_dir, self.global_step, self.global_rank)
            x, y = batch
            pred = self.net(x)
            loss = self.weights["mse"] * nn.functional.mse_loss(pred, y) + self.weights["l1"] * pred.abs().mean()
            self.log("train_loss", loss, on_step=True)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    class Recorder(pl.Callback):
        """After HotCBLightning in the callback list: sees each step's values once applied."""

        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
            self.seen.append({"step": trainer.global_step, "lr": trainer.optimizers[0].param_groups[0]["lr"],
                              "mse": pl_module.weights["mse"]})

    weights = {"mse": 1.0, "l1": 0.1}
    # status_interval_s=0: the status file shows every step, so the controller can wait on it.
    kernel = HotKernel(a.run_dir, mutable_state=mutable_state(loss_actuators(weights)), status_interval_s=0.0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)  # DistributedSampler gives each rank its own half
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    rec = Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=a.steps,
        callbacks=[HotCBLightning(kernel), rec], default_root_dir=str(a.out_dir / "lightning"),
        logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    module = Tiny(weights)
    trainer.fit(module, data)  # Lightning keeps and tears down its own process group
    kernel.close()
    save_rank(a.out_dir, trainer.global_rank, trainer.world_size, kernel, rec.seen, module.parameters(), writes)
    # A teardown that hangs shows where (in the test's train.log) and fails the run, not the test's wait.
    faulthandler.dump_traceback_later(60, exit=True)


if __name__ == "__main__":
    main()
