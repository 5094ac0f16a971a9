"""HotCBLightning in a real Lightning ``Trainer``: live lr and loss-weight changes, rollback,
and resume from a Lightning checkpoint (tiny CPU model, a few steps)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from hotcb import HotKernel, loss_actuators, mutable_state  # noqa: E402
from hotcb.adapters.lightning import HotCBLightning  # noqa: E402
from hotcb.client import send_command  # noqa: E402
from hotcb.ops import make_command  # noqa: E402
from tests.support.proc import read_jsonl  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


class TinyModule(pl.LightningModule):
    """Two loss terms whose weights live in ``self.weights`` (the dict the knobs mutate)."""

    def __init__(self, weights: dict[str, float], lr: float = 0.1):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.weights = weights
        self.lr = lr
        self.seen: list[tuple[int, float, float]] = []  # (step, lr, mse weight) used per step

    def training_step(self, batch, batch_idx):
        x, y = batch
        pred = self.net(x)
        loss = self.weights["mse"] * nn.functional.mse_loss(pred, y) + self.weights["l1"] * pred.abs().mean()
        opt = self.optimizers()
        self.seen.append((self.global_step, opt.param_groups[0]["lr"], self.weights["mse"]))
        self.log("train_loss", loss, on_step=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def trainer(cbs: list, max_steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, callbacks=cbs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                      num_sanity_val_steps=0)


class At(pl.Callback):
    """Runs ``fn(trainer, module)`` at the end of given global steps (a test's hand on the run)."""

    def __init__(self, actions: dict[int, object]):
        self.actions = actions

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        fn = self.actions.get(trainer.global_step)
        if fn is not None:
            fn(trainer, pl_module)


def send(kernel: HotKernel, module: str, op: str, params: dict | None = None) -> str:
    rec = make_command(module, op, params, reason="test")
    send_command(kernel.run, rec)
    return rec["cmd_id"]


def ledger(kernel: HotKernel) -> list[dict]:
    return read_jsonl(kernel.run.ledger)


def test_lr_and_loss_weight_change_mid_run(run_dir):
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)))
    module = TinyModule(weights)
    ids = {}

    def write(tr, m):  # written at step 3, before the kernel's safe point of step 3
        ids["opt"] = send(kernel, "opt", "set_params", {"lr": 0.02})
        ids["loss"] = send(kernel, "loss", "set_params", {"mse": 0.25, "l1": 0.5})

    tr = trainer([At({3: write}), HotCBLightning(kernel)], max_steps=8)
    tr.fit(module, loader())
    kernel.close()

    entries = {e["cmd_id"]: e for e in ledger(kernel)}
    assert entries[ids["opt"]]["decision"] == "applied" and entries[ids["opt"]]["step"] == 3
    assert entries[ids["opt"]]["payload"]["lr"] == {"old": 0.1, "new": 0.02}
    assert entries[ids["loss"]]["decision"] == "applied"
    # Steps 0..2 trained with the configured values, step 3 on with the new ones.
    assert [s[1:] for s in module.seen[:3]] == [(0.1, 1.0)] * 3
    assert all(s[1:] == (0.02, 0.25) for s in module.seen[3:]) and len(module.seen) == 8
    assert tr.optimizers[0].param_groups[0]["lr"] == 0.02 and weights == {"mse": 0.25, "l1": 0.5}
    # Logged metrics reached the kernel's metrics file, with the knob values beside them.
    recs = read_jsonl(kernel.run.metrics)
    assert recs and "train_loss" in recs[-1]["metrics"] and recs[-1]["metrics"]["opt/lr"] == 0.02


def test_several_optimizers_get_prefixed_knobs(run_dir):
    class TwoOpt(TinyModule):
        def __init__(self):
            super().__init__({"mse": 1.0, "l1": 0.0})
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            for opt in self.optimizers():
                opt.zero_grad()
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()

        def configure_optimizers(self):
            return [torch.optim.SGD([self.net.weight], lr=0.1), torch.optim.Adam([self.net.bias], lr=0.01)]

    kernel = HotKernel(run_dir)
    adapter = HotCBLightning(kernel, optimizer_names=["w", "b"])
    cid = {}
    tr = trainer([At({4: lambda t, m: cid.update(c=send(kernel, "opt", "set_params", {"b.lr": 0.005}))}), adapter],
                 max_steps=10)
    tr.fit(TwoOpt(), loader())
    kernel.close()
    assert {"w.lr", "w.momentum", "b.lr", "b.betas"} <= set(adapter.optimizer_keys)
    assert [e["decision"] for e in ledger(kernel) if e["cmd_id"] == cid["c"]] == ["applied"]
    assert tr.optimizers[1].param_groups[0]["lr"] == 0.005 and tr.optimizers[0].param_groups[0]["lr"] == 0.1


def test_rollback_restores_weights_and_knobs_bit_exactly(run_dir):
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)))
    module = TinyModule(weights)
    seen: dict[int, tuple] = {}

    def capture(tr, m):  # after the kernel's safe point of the same step
        seen[tr.global_step] = (copy.deepcopy(m.state_dict()), tr.optimizers[0].param_groups[0]["lr"], dict(weights),
                                copy.deepcopy(tr.optimizers[0].state_dict()))

    writes = At({
        3: lambda t, m: send(kernel, "core", "checkpoint"),
        5: lambda t, m: send(kernel, "opt", "set_params", {"lr": 0.05}) and send(kernel, "loss", "set_params",
                                                                                  {"mse": 2.0}),
        8: lambda t, m: send(kernel, "core", "rollback", {"step": 3}),
        9: lambda t, m: send(kernel, "opt", "set_params", {"lr": 0.07}),
    })
    tr = trainer([writes, HotCBLightning(kernel), At({3: capture, 7: capture, 8: capture})], max_steps=10)
    tr.fit(module, loader())
    kernel.close()

    snap_w, snap_lr, snap_weights, snap_opt = seen[3]
    mid_w, mid_lr, mid_weights, _ = seen[7]
    back_w, back_lr, back_weights, back_opt = seen[8]
    assert mid_lr == 0.05 and mid_weights["mse"] == 2.0
    assert not torch.equal(mid_w["net.weight"], snap_w["net.weight"])  # training moved on
    assert all(torch.equal(back_w[k], snap_w[k]) for k in snap_w)  # and rollback came back exactly
    assert back_lr == snap_lr == 0.1 and back_weights == snap_weights == {"mse": 1.0, "l1": 0.0}
    assert torch.equal(back_opt["state"][0]["momentum_buffer"], snap_opt["state"][0]["momentum_buffer"])
    # Knobs still act on the live optimizer after its state was loaded back.
    assert tr.optimizers[0].param_groups[0]["lr"] == 0.07 and module.seen[-1][1] == 0.07
    roll = [e for e in ledger(kernel) if e["op"] == "rollback"]
    assert roll[0]["decision"] == "applied" and roll[0]["payload"]["restored_step"] == 3


@pytest.mark.parametrize("with_hotcb_state", [True, False])
def test_resume_keeps_live_values_not_configured_ones(run_dir, tmp_path, with_hotcb_state):
    weights = {"mse": 1.0, "l1": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)))
    writes = At({2: lambda t, m: send(kernel, "opt", "set_params", {"lr": 0.03})
                 and send(kernel, "loss", "set_params", {"mse": 0.5})})
    tr = trainer([writes, HotCBLightning(kernel)], max_steps=5)
    tr.fit(TinyModule(weights), loader())
    ckpt = tmp_path / "last.ckpt"
    tr.save_checkpoint(ckpt)
    kernel.close()
    if not with_hotcb_state:  # a checkpoint saved without the adapter: the ledger must serve
        data = torch.load(ckpt, weights_only=False)
        del data["callbacks"]["HotCBLightning"]
        torch.save(data, ckpt)

    # A new process: configured values again (lr 0.1, mse 1.0), resuming from the checkpoint.
    weights2 = {"mse": 1.0, "l1": 0.0}
    kernel2 = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights2)))
    module2 = TinyModule(weights2, lr=0.1)
    tr2 = trainer([HotCBLightning(kernel2)], max_steps=8)
    tr2.fit(module2, loader(), ckpt_path=str(ckpt))
    kernel2.close()
    assert [s[0] for s in module2.seen] == [5, 6, 7]
    assert all(s[1:] == (0.03, 0.5) for s in module2.seen)
    assert kernel2.state.get("lr").value == 0.03 and kernel2.state.get("mse").value == 0.5
    # Exactly once: the resumed run applied no command a second time.
    entries = ledger(kernel2)
    ids = [e["cmd_id"] for e in entries if e["source"] != "kernel"]
    assert len(ids) == len(set(ids)) == 2
    # The re-applied values are accounted for: one core restore entry, configured -> live.
    restores = [e for e in entries if e["source"] == "kernel"]
    assert [(e["module"], e["op"], e["decision"]) for e in restores] == [("core", "restore", "applied")]
    assert restores[0]["payload"]["knobs"]["mse"] == {"old": 1.0, "new": 0.5}
    assert restores[0]["payload"]["knobs"]["lr"]["new"] == 0.03
    assert restores[0]["payload"]["from"] == ("checkpoint" if with_hotcb_state else "ledger")


def test_stop_command_ends_fit(run_dir):
    kernel = HotKernel(run_dir)
    module = TinyModule({"mse": 1.0, "l1": 0.0})
    tr = trainer([At({2: lambda t, m: send(kernel, "core", "stop")}), HotCBLightning(kernel)], max_steps=50)
    tr.fit(module, loader())
    kernel.close()
    assert tr.global_step == 2 and len(module.seen) == 2


def test_a_failing_adapter_hook_never_stops_training(run_dir):
    kernel = HotKernel(run_dir)
    module = TinyModule({"mse": 1.0, "l1": 0.0})
    # Two names for one optimizer: wiring fails at fit start; training must go on regardless.
    tr = trainer([HotCBLightning(kernel, optimizer_names=["a", "b"])], max_steps=4)
    tr.fit(module, loader())
    kernel.close()
    assert tr.global_step == 4 and kernel.internal_errors == 1
    assert "optimizer_names" in kernel.last_internal_error
