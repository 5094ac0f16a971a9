"""``tune`` under real DDP (2 processes, gloo, CPU): rank 0 alone asks and tells the study and
writes its files; every rank applies the same knob changes at the same step, although each rank
reports a different loss (its own data shard).

Phase 1 builds the kernel after ``init_process_group``; rank 0 alone enables tune, in process
(``kernel.submit``: rank 1 has no tune at all until rank 0's sync command, which the kernel
broadcasts, creates it there); then commands disable it mid-trial (the rollback reaches both
ranks at one step) and enable it again.
Phase 2 is a restart with the kernel built before ``init_process_group`` (as Lightning/HF do):
tune resumes from the run directory, and still only rank 0 opens the study.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("optuna")
torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

from hotcb import GuardConfig, HotKernel, HotOp, mutable_state, optimizer_actuators  # noqa: E402
from hotcb.client import send_command  # noqa: E402
from hotcb.distributed import attach  # noqa: E402
from hotcb.ops import make_command  # noqa: E402
from tests.support.proc import read_jsonl  # noqa: E402
from tests.support.spawn import leave_group, spawn  # noqa: E402

STEPS = 150
DISABLE_FROM = 80  # rank 0 disables tune at the first step from here with a trial in flight
RECIPE = {"seed": 0, "horizon": 10, "settle": 2, "min_points": 3, "n_startup_trials": 2,
          "actuators": {"lr": {"min": 1e-3, "max": 0.2}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, run_dir: str, out_dir: str, phase: int) -> None:
    import optuna

    import hotcb.tune.module as tune_mod

    opened, written = [], []  # this process: study storages opened, tune status files written
    init = optuna.storages.JournalStorage.__init__

    def spy_open(self: Any, *a: Any, **k: Any) -> None:
        opened.append(1)
        init(self, *a, **k)

    write = tune_mod.write_json_atomic

    def spy_write(path: Any, data: Any) -> None:
        written.append(1)
        write(path, data)

    optuna.storages.JournalStorage.__init__ = spy_open
    tune_mod.write_json_atomic = spy_write

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    state = mutable_state(optimizer_actuators(opt))
    guard = GuardConfig(cooldown_steps=2)
    late = phase == 2
    if late:  # built before the process group: it resumes tune before it knows its rank
        kernel = HotKernel(run_dir, mutable_state=state, guard=guard, watch_interval_s=0.0)
    # A collective entered by one rank alone fails after 2 minutes instead of hanging the test.
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    try:
        model = nn.parallel.DistributedDataParallel(net)
        if late:
            assert attach(kernel) and "tune" in kernel.modules
        else:
            kernel = HotKernel(run_dir, mutable_state=state, guard=guard, watch_interval_s=0.0)
            if rank == 0:  # one rank only: tune's own sync command brings the other ranks along
                e = kernel.submit(HotOp(module="tune", op="enable", params={"mode": "active", "recipe": RECIPE},
                                        source="human", actor="test"))
                assert e["decision"] == "applied", e
            else:
                assert "tune" not in kernel.modules
        g = torch.Generator().manual_seed(100 + rank)  # different data per rank: different losses
        first = 1 + (phase - 1) * STEPS
        seen, disabled = [], None
        for step in range(first, first + STEPS):
            x = torch.randn(8, 4, generator=g)
            loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
            kernel.apply(env={"step": step, "optimizer": opt, "model": model, "metrics": {"train_loss": loss.item()}})
            seen.append((step, opt.param_groups[0]["lr"]))
            tune = kernel.modules.get("tune")
            if rank == 0 and phase == 1:  # a controller: commands reach rank 0's file reader only
                if disabled is None and step >= DISABLE_FROM and tune.trial is not None:
                    send_command(kernel.run, make_command("tune", "disable", {}, cmd_id="tune-off"))
                    disabled = step
                if disabled is not None and step == disabled + 5:
                    send_command(kernel.run, make_command("tune", "enable", {"mode": "active"}, cmd_id="tune-on-2"))
        kernel.close()
        tune = kernel.modules["tune"]
        torch.save({"seen": seen, "params": [p.detach().clone() for p in model.parameters()],
                    "opened": len(opened), "written": len(written), "has_study": tune.study is not None,
                    "disabled": disabled}, Path(out_dir) / f"phase{phase}-rank{rank}.pt")
    except BaseException:
        dist.destroy_process_group()  # spawn reports this rank's exception and ends the other
        raise
    leave_group()  # not destroy_process_group: that can deadlock inside torch (see leave_group)


def _changes(seen: list[tuple[int, float]], lr0: float) -> list[int]:
    out, prev = [], lr0
    for step, lr in seen:
        if lr != prev:
            out.append(step)
        prev = lr
    return out


def test_rank0_decides_and_every_rank_applies_the_same_tune_changes_at_the_same_step(run_dir: Path,
                                                                                    tmp_path: Path) -> None:
    for phase in (1, 2):
        spawn(worker, (2, _free_port(), str(run_dir), str(tmp_path), phase), nprocs=2)
    ledger = read_jsonl(run_dir / "hotcb.applied.jsonl")
    ids = [e["cmd_id"] for e in ledger]
    assert len(ids) == len(set(ids))  # one writer: every op recorded once
    tune_sets = [e for e in ledger if e["source"] == "tune" and e["op"] == "set_params"]

    for phase in (1, 2):
        r0, r1 = (torch.load(tmp_path / f"phase{phase}-rank{r}.pt") for r in (0, 1))
        assert r0["seen"] == r1["seen"]  # the same lr, step for step, on both ranks
        assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"], strict=True))
        # Only rank 0 opened the study and wrote hotcb.tune.json.
        assert r0["opened"] >= 1 and r0["written"] >= 1 and r0["has_study"]
        assert r1["opened"] == 0 and r1["written"] == 0 and not r1["has_study"]
        steps = {s for s, _ in r0["seen"]}
        changes = _changes(r0["seen"], 0.02)
        mine = [e for e in tune_sets if e["step"] in steps]
        assert len(changes) >= 4 and all(e["decision"] == "applied" for e in mine)
        assert [e["step"] for e in mine] == changes  # each lr change is one tune ledger entry
        assert all(1e-3 <= lr <= 0.2 for _, lr in r0["seen"])

    # The disable mid-trial: rank 0 rolled the trial back at a sync step, both ranks with it.
    r0 = torch.load(tmp_path / "phase1-rank0.pt")
    off = next(e for e in ledger if e["cmd_id"] == "tune-off")
    assert off["decision"] == "applied" and off["step"] > r0["disabled"]
    back = [e for e in tune_sets if "tune disabled by human" in e["reason"]]
    assert len(back) == 1 and back[0]["reason"].startswith("tune roll back trial")
    assert off["step"] <= back[0]["step"] <= off["step"] + RECIPE["horizon"]
    assert next(e for e in ledger if e["cmd_id"] == "tune-on-2")["decision"] == "applied"
    # Each process's tune started syncing through one command of its own, applied on every rank.
    syncs = [e for e in ledger if e["module"] == "tune" and (e["params"] or {}).get("sync")]
    assert len(syncs) == 2 and all(e["source"] == "tune" and e["decision"] == "applied" for e in syncs)
    assert syncs[0]["step"] <= 3 and syncs[1]["step"] <= STEPS + 3


class OneRank:
    """``kernel.dist`` for a world of one (rank 0): the broadcast returns rank 0's reader result."""

    rank, world_size = 0, 1

    def broadcast(self, reader: Any) -> Any:
        return reader() if reader is not None else None


def test_the_sync_command_waits_out_a_freeze_and_then_tune_goes_on(run_dir: Path) -> None:
    from tests.core.test_tune import FAST, SyntheticRun, tune_knob_sets

    run = SyntheticRun(run_dir, start=1e-3, opt=3e-2)
    run.kernel.dist = OneRank()  # rank 0 of a distributed run: tune syncs before it changes anything
    assert run.submit("tune", "enable", {"mode": "active", "recipe": FAST})["decision"] == "applied"
    run.run(1)  # rank 0's tune wrote its sync command; the kernel reads it at the next step
    assert run.submit("core", "freeze", {"mode": "prod"})["decision"] == "applied"
    run.run(300)

    def syncs() -> list[dict[str, Any]]:
        return [e for e in run.ledger() if e["module"] == "tune" and (e["params"] or {}).get("sync")]

    assert [e["decision"] for e in syncs()] == ["ignored_freeze"]  # written once, not again while frozen
    assert not tune_knob_sets(run.ledger()) and set(run.traj) == {1e-3}
    assert run.submit("core", "unfreeze", {})["decision"] == "applied"
    thawed = run.step
    run.run(400)
    assert [e["decision"] for e in syncs()] == ["ignored_freeze", "applied"]
    sets = tune_knob_sets(run.ledger())
    assert len(sets) >= 4 and all(e["step"] > thawed for e in sets)
    assert run.tune_state()["last_error"] is None
    run.kernel.close()
