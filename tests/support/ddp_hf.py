"""A tiny transformers ``Trainer`` run under ``torchrun --nproc_per_node 2`` (CPU, gloo) with
``HotCBHFCallback``, for tests/core/test_lifecycle_hf_ddp.py.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        tests/support/ddp_hf.py RUN_DIR OUT_DIR [--steps N] [--gates 4,9]

The kernel is built first, before ``TrainingArguments`` (whose device set-up starts the process
group); the callback attaches it at train begin. At each gate step every rank waits in
``on_step_begin`` for ``OUT_DIR/go-<step>`` (tests/support/ddp_common.py). Each rank writes
``OUT_DIR/rank<R>.pt``: lr and loss weight after every step's safe point, final parameters,
files written in RUN_DIR.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: make tests.support importable
from tests.support.ddp_common import save_rank, script_args, wait_gate


def main() -> None:
    a, writes = script_args()  # before hotcb is imported

    import torch
    import torch.distributed as dist
    import transformers
    from torch import nn

    from hotcb import HotKernel, loss_actuators, mutable_state
    from hotcb.adapters.hf import HotCBHFCallback

    transformers.logging.set_verbosity_error()

    class Tiny(nn.Module):
        def __init__(self, weights: dict[str, float]):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(4, 1)
            self.weights = weights

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            pred = self.net(x)
            loss = self.weights["mse"] * nn.functional.mse_loss(pred, labels) + self.weights["l1"] * pred.abs().mean()
            return {"loss": loss}

    class Data(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}

    class Recorder(transformers.TrainerCallback):
        """After HotCBHFCallback in the callback list: sees each step's values once applied;
        holds every rank at the gate steps."""

        def __init__(self, weights: dict[str, float]) -> None:
            self.weights, self.seen = weights, []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step in a.gates:  # after both safe points (step end, log) of global_step
                wait_gate(a.out_dir, state.global_step, args.process_index)

        def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kw: Any) -> None:
            self.seen.append({"step": state.global_step, "lr": optimizer.param_groups[0]["lr"],
                              "mse": self.weights["mse"]})

    weights = {"mse": 1.0, "l1": 0.1}
    # status_interval_s=0: the status file shows every step, so the controller can wait on it.
    kernel = HotKernel(a.run_dir, mutable_state=mutable_state(loss_actuators(weights)), status_interval_s=0.0)
    args = transformers.TrainingArguments(
        output_dir=str(a.out_dir / "hf"), report_to=[], use_cpu=True, max_steps=a.steps,
        per_device_train_batch_size=4, learning_rate=0.1, lr_scheduler_type="constant", logging_steps=1,
        disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0, save_strategy="no",
    )
    model = Tiny(weights)
    rec = Recorder(weights)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Data(),
                                   callbacks=[HotCBHFCallback(kernel), rec])
    trainer.train()
    kernel.close()
    save_rank(a.out_dir, dist.get_rank(), dist.get_world_size(), kernel, rec.seen, model.parameters(), writes)
    # Leave without tearing the gloo group down: here ``dist.barrier(); dist.destroy_process_group()``
    # deadlocked once in ~50 runs inside torch, after both ranks had saved: the main thread, holding
    # the GIL, freed the DDP reducer's last reference to the group and joined gloo's run-loop thread,
    # which was destroying the barrier's work object and waited for the GIL to free its tensors.
    # Training and hotcb's files are complete at this point; exit skips only interpreter teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
