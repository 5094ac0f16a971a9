"""``HotCBLightning``: a Lightning ``Callback`` that puts a ``HotKernel`` into ``Trainer.fit``.

- At fit start it discovers the trainer's optimizers (and their schedulers), adds their knobs
  to the kernel (``lr``, ``weight_decay``, ... ; ``opt0.lr``, ``opt1.lr`` with several) and
  registers model, optimizers and schedulers for ``core checkpoint`` / ``core rollback``.
- After every training batch (after ``optimizer.step()``) it calls ``kernel.apply`` with the
  step, the optimizers and the logged metrics; a ``core stop`` sets ``trainer.should_stop``,
  a ``core pause`` blocks there until resumed.
- It saves the kernel's state (live knob values, step) in Lightning checkpoints and, on resume,
  re-applies it once the optimizer state is loaded, so the run keeps its live values (loss
  weights included) rather than the configured ones.

Loss weights: build the kernel with ``loss_actuators(weights)`` over the dict your
``training_step`` reads; changes land in that dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from ..kernel import HotKernel
from ._common import never_raise, plain_metrics, wire_optimizers


class HotCBLightning(pl.Callback):
    def __init__(
        self,
        kernel: HotKernel,
        *,
        optimizer_names: Sequence[str] | None = None,
        per_group: bool = False,
        register_state: bool = True,
    ):
        self.kernel = kernel
        self.optimizer_names = optimizer_names
        self.per_group = per_group
        self.register_state = register_state
        self.optimizer_keys: list[str] = []
        self._resume_state: dict[str, Any] | None = None
        self._resuming = False

    @property
    def state_key(self) -> str:
        return "HotCBLightning"

    # ------------------------------------------------------------------ set-up
    @never_raise
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._resuming = trainer.ckpt_path is not None
        if self.register_state:
            self.kernel.register_state("model", pl_module)
        self.optimizer_keys = wire_optimizers(
            self.kernel, _optimizers_with_schedulers(trainer), names=self.optimizer_names,
            per_group=self.per_group, register_state=self.register_state,
        )

    @never_raise
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning restores optimizer state after on_fit_start: only now can values be re-applied.
        if self._resuming:
            self.kernel.load_state_dict(self._resume_state, env=self._env(trainer, pl_module))
        self._resume_state, self._resuming = None, False

    # ------------------------------------------------------------------ the safe point
    @never_raise
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._apply(trainer, pl_module, ["train_step_end"])

    @never_raise
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._apply(trainer, pl_module, ["train_epoch_end"])

    @never_raise
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._apply(trainer, pl_module, ["val_end"])

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, events: list[str]) -> None:
        env = self._env(trainer, pl_module)
        env["metrics"] = plain_metrics(trainer.callback_metrics)
        self.kernel.apply(env=env, events=events)
        if self.kernel.should_stop:
            trainer.should_stop = True

    def _env(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        pairs = _optimizers_with_schedulers(trainer)
        env: dict[str, Any] = {
            "step": trainer.global_step, "epoch": trainer.current_epoch, "phase": "train",
            "model": pl_module, "trainer": trainer, "optimizers": [o for o, _ in pairs],
        }
        if len(pairs) == 1:
            env["optimizer"], env["scheduler"] = pairs[0]
        return env

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        try:
            return {"kernel": self.kernel.state_dict()}
        except Exception as e:  # a checkpoint without hotcb state beats a failed save
            self.kernel.report_error(e)
            return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = state_dict.get("kernel") if isinstance(state_dict, dict) else None


def _optimizers_with_schedulers(trainer: pl.Trainer) -> list[tuple[Any, Any]]:
    by_opt = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs
              if getattr(c.scheduler, "optimizer", None) is not None}
    return [(opt, by_opt.get(id(opt))) for opt in trainer.optimizers]
