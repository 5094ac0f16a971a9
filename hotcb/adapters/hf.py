"""``HotCBHFCallback``: a transformers ``TrainerCallback`` that puts a ``HotKernel`` into
``Trainer.train``.

- At train begin it adds the optimizer's knobs (``lr``, ``weight_decay``, ``betas``) to the
  kernel, with the trainer's LR scheduler so an lr change moves the schedule rather than being
  undone on its next step, and registers model, optimizer and scheduler for rollback.
- After every optimizer step (``on_step_end``) it calls ``kernel.apply``; logs (``on_log``) are
  forwarded as metrics. A ``core stop`` sets ``control.should_training_stop``.
- On save it writes the kernel's state beside the checkpoint (``hotcb_state.json`` in
  ``checkpoint-N/``); on resume it re-applies it once the optimizer state is loaded (falling back
  to the ledger), so the run keeps its live values rather than the configured ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..jsonl import read_json
from ..jsonl_write import write_json_atomic
from ..kernel import HotKernel
from ._common import never_raise, plain_metrics, wire_optimizers

STATE_FILE = "hotcb_state.json"


class HotCBHFCallback(TrainerCallback):
    def __init__(self, kernel: HotKernel, *, per_group: bool = False, register_state: bool = True):
        self.kernel = kernel
        self.per_group = per_group
        self.register_state = register_state
        self.optimizer_keys: list[str] = []

    @never_raise
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        model, optimizer, scheduler = kwargs.get("model"), kwargs.get("optimizer"), kwargs.get("lr_scheduler")
        if self.register_state and model is not None:
            self.kernel.register_state("model", model)
        if optimizer is not None:
            self.optimizer_keys = wire_optimizers(self.kernel, [(optimizer, scheduler)], per_group=self.per_group,
                                                  register_state=self.register_state)
        if state.global_step > 0:  # resumed: the trainer loaded optimizer and scheduler already
            saved = read_json(checkpoint_dir(args, state) / STATE_FILE)
            self.kernel.load_state_dict(saved, env=self._env(state, **kwargs))

    @never_raise
    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> TrainerControl:
        self.kernel.apply(env=self._env(state, **kwargs), events=["train_step_end"])
        return self._control(control)

    @never_raise
    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> TrainerControl:
        metrics = plain_metrics(logs)
        if metrics:
            env = self._env(state, **kwargs)
            env["metrics"] = metrics
            self.kernel.apply(env=env, events=["log"])
        return self._control(control)

    @never_raise
    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        folder = checkpoint_dir(args, state)
        if self.kernel.is_writer and folder.is_dir():
            write_json_atomic(folder / STATE_FILE, self.kernel.state_dict())

    def _control(self, control: TrainerControl) -> TrainerControl:
        if self.kernel.should_stop:
            control.should_training_stop = True
        return control

    @staticmethod
    def _env(state: TrainerState, **kwargs: Any) -> dict[str, Any]:
        return {
            "step": state.global_step, "epoch": int(state.epoch or 0), "phase": "train",
            "model": kwargs.get("model"), "optimizer": kwargs.get("optimizer"),
            "scheduler": kwargs.get("lr_scheduler"),
        }


def checkpoint_dir(args: TrainingArguments, state: TrainerState) -> Path:
    """Where the trainer writes (and resumes from) the checkpoint of the current step."""
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


__all__ = ["STATE_FILE", "HotCBHFCallback", "checkpoint_dir"]
