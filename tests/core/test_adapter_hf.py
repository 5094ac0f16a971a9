"""HotCBHFCallback in a real transformers ``Trainer``: a live lr and loss-weight change, stop,
and resume that keeps the live values (tiny CPU model, a few steps)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from hotcb import HotKernel, loss_actuators, mutable_state  # noqa: E402
from hotcb.adapters.hf import STATE_FILE, HotCBHFCallback  # noqa: E402
from hotcb.client import send_command  # noqa: E402
from hotcb.ops import make_command  # noqa: E402
from tests.support.proc import read_jsonl  # noqa: E402

transformers.logging.set_verbosity_error()


class TinyModel(nn.Module):
    """Two loss terms weighted by ``self.weights`` (the dict the loss knobs mutate)."""

    def __init__(self, weights: dict[str, float]):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.weights = weights

    def forward(self, x, labels):
        pred = self.net(x)
        loss = self.weights["mse"] * nn.functional.mse_loss(pred, labels) + self.weights["l1"] * pred.abs().mean()
        return {"loss": loss}


class Data(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 4, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.x[i].sum(0, keepdim=True)}


class Probe(transformers.TrainerCallback):
    """Writes commands at given steps (before the kernel's safe point of that step) and records
    the lr and loss weight each step trained with."""

    def __init__(self, actions: dict | None = None, weights: dict | None = None):
        self.actions, self.weights, self.seen = actions or {}, weights, []

    def on_step_begin(self, args, state, control, optimizer=None, **kw):
        self.seen.append((state.global_step + 1, optimizer.param_groups[0]["lr"], self.weights["mse"]))

    def on_step_end(self, args, state, control, **kw):
        fn = self.actions.get(state.global_step)
        if fn is not None:
            fn()


def send(kernel: HotKernel, module: str, op: str, params: dict | None = None) -> str:
    rec = make_command(module, op, params, reason="test")
    send_command(kernel.run, rec)
    return rec["cmd_id"]


def hf_trainer(out, weights, callbacks, max_steps, **kw):
    kw = {"save_strategy": "no", **kw}
    args = transformers.TrainingArguments(
        output_dir=str(out), report_to=[], use_cpu=True, max_steps=max_steps, per_device_train_batch_size=8,
        learning_rate=0.1, lr_scheduler_type="constant", logging_steps=1, disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, **kw,
    )
    return transformers.Trainer(model=TinyModel(weights), args=args, train_dataset=Data(), callbacks=callbacks)


def test_lr_and_loss_weight_change_mid_run(run_dir, tmp_path):
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)))
    ids = {}

    def write():
        ids["opt"] = send(kernel, "opt", "set_params", {"lr": 0.02})
        ids["loss"] = send(kernel, "loss", "set_params", {"mse": 0.25, "l1": 0.5})

    probe = Probe({3: write}, weights)
    tr = hf_trainer(tmp_path / "out", weights, [probe, HotCBHFCallback(kernel)], max_steps=7)
    tr.train()
    kernel.close()

    entries = {e["cmd_id"]: e for e in read_jsonl(kernel.run.ledger)}
    assert entries[ids["opt"]]["decision"] == "applied" and entries[ids["opt"]]["step"] == 3
    assert entries[ids["opt"]]["payload"]["lr"]["new"] == 0.02
    assert entries[ids["loss"]]["decision"] == "applied"
    assert [s[1:] for s in probe.seen[:3]] == [(0.1, 1.0)] * 3
    # The constant schedule was moved, not fighting the change: steps 4.. train at 0.02.
    assert [s[1:] for s in probe.seen[3:]] == [(0.02, 0.25)] * 4
    assert tr.optimizer.param_groups[0]["lr"] == 0.02 and tr.lr_scheduler.get_last_lr()[0] == 0.02
    recs = read_jsonl(kernel.run.metrics)
    assert any("loss" in r["metrics"] for r in recs) and recs[-1]["metrics"]["opt/lr"] == 0.02


def test_stop_command_ends_training(run_dir, tmp_path):
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir)
    probe = Probe({2: lambda: send(kernel, "core", "stop")}, weights)
    tr = hf_trainer(tmp_path / "out", weights, [probe, HotCBHFCallback(kernel)], max_steps=50)
    tr.train()
    kernel.close()
    assert tr.state.global_step == 2


def test_resume_keeps_live_values(run_dir, tmp_path):
    out = tmp_path / "out"
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)))
    probe = Probe({2: lambda: send(kernel, "opt", "set_params", {"lr": 0.03})
                   and send(kernel, "loss", "set_params", {"mse": 0.5})}, weights)
    hf_trainer(out, weights, [probe, HotCBHFCallback(kernel)], max_steps=4, save_strategy="steps",
               save_steps=4).train()
    kernel.close()
    assert (out / "checkpoint-4" / STATE_FILE).is_file()

    weights2 = {"mse": 1.0, "l1": 0.0}  # a new process: the configured values again
    kernel2 = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights2)))
    probe2 = Probe({}, weights2)
    tr2 = hf_trainer(out, weights2, [probe2, HotCBHFCallback(kernel2)], max_steps=6)
    tr2.train(resume_from_checkpoint=True)
    kernel2.close()
    assert probe2.seen == [(5, 0.03, 0.5), (6, 0.03, 0.5)]
    entries = read_jsonl(kernel2.run.ledger)
    ids = [e["cmd_id"] for e in entries if e["source"] != "kernel"]
    assert len(ids) == len(set(ids)) == 2
    # The re-applied values are accounted for: one core restore entry, configured -> live.
    restores = [e for e in entries if e["source"] == "kernel"]
    assert [(e["module"], e["op"], e["decision"]) for e in restores] == [("core", "restore", "applied")]
    assert restores[0]["payload"]["knobs"]["mse"] == {"old": 1.0, "new": 0.5}
    assert restores[0]["payload"]["knobs"]["lr"]["new"] == 0.03
