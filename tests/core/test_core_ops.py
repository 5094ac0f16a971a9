"""Core ops, actuators, schedulers, metrics, features and desired state against a real loop."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from hotcb import ActuatorState, FeatureCapture, HotcbActuator, HotKernel, MetricsCollector, mutable_state
from hotcb.jsonl import read_all
from tests.support.core_loop import Loop


def test_lr_change_rescales_step_schedule(run_dir: Path, tmp_path: Path) -> None:
    """Defined meaning: an lr change scales the whole schedule from then on (new/old)."""
    ref = Loop(tmp_path / "ref", scheduler="step")
    ref.run(20)
    ref.close()
    lp = Loop(run_dir, scheduler="step")
    lp.run(7)
    lr_now = lp.opt.param_groups[0]["lr"]
    cmd = lp.send("opt", "set_params", {"lr": lr_now * 0.5})
    lp.run(13)
    assert lp.decision(cmd)["step"] == 8
    assert lp.lrs[:7] == ref.lrs[:7]
    for got, want in zip(lp.lrs[8:], ref.lrs[8:], strict=True):  # after the change the schedule continues, x0.5
        assert got == pytest.approx(want * 0.5, rel=1e-9)
    assert lp.sched.base_lrs[0] == pytest.approx(0.025)
    lp.close()


def test_lr_change_rescales_cosine_schedule(run_dir: Path, tmp_path: Path) -> None:
    ref = Loop(tmp_path / "ref", scheduler="cosine")
    ref.run(30)
    ref.close()
    lp = Loop(run_dir, scheduler="cosine")
    lp.run(10)
    cmd = lp.send("opt", "set_params", {"lr": 0.08})  # read at step 11, after that step's scheduler.step()
    lp.run(20)
    change = lp.decision(cmd)["payload"]["lr"]
    assert change["old"] == pytest.approx(ref.lrs[10])  # "old" is the live, scheduled lr
    factor = 0.08 / ref.lrs[10]
    for got, want in zip(lp.lrs[11:], ref.lrs[11:], strict=True):
        assert got == pytest.approx(want * factor, rel=1e-6)
    metrics = lp.metrics()
    assert metrics[5]["metrics"]["opt/lr"] == pytest.approx(ref.lrs[5])  # recorded knob follows the schedule
    lp.close()


def test_actuator_state_machine(run_dir: Path) -> None:
    box = {"v": 1.0, "fail": False}

    def apply(v, env):
        if box["fail"]:
            raise RuntimeError("device rejected it")
        box["v"] = v

    knob = HotcbActuator("temp", group="custom", apply_fn=apply, read_fn=lambda: box["v"],
                         min=0.0, max=5.0, metric="temp_seen")
    assert knob.state is ActuatorState.INIT
    lp = Loop(run_dir)
    lp.state.add(knob)
    knob.initialize()
    assert knob.state is ActuatorState.UNTOUCHED and knob.value == 1.0
    cmd = lp.send("custom", "set_params", {"temp": 2.5})
    lp.step(extra_env={"metrics": {"temp_seen": 1.0}})  # the run still reports the old value
    assert lp.decision(cmd)["decision"] == "applied"
    assert knob.state is ActuatorState.UNVERIFIED
    lp.step(extra_env={"metrics": {"temp_seen": 2.5}})  # confirmed by the metric that reports it
    assert knob.state is ActuatorState.VERIFIED
    box["fail"] = True
    cmd = lp.send("custom", "set_params", {"temp": 3.0})
    lp.run(1)
    e = lp.decision(cmd)
    assert e["decision"] == "failed" and "device rejected it" in e["error"]
    assert knob.state is ActuatorState.DISABLED
    cmd = lp.send("custom", "set_params", {"temp": 3.0})
    lp.run(1)
    assert lp.decision(cmd)["decision"] == "rejected" and "disabled" in lp.decision(cmd)["error"]
    described = {a["key"]: a for a in json.loads((run_dir / "hotcb.actuators.json").read_text())["actuators"]}
    assert described["temp"]["state"] == "disabled" and described["lr"]["state"] == "untouched"
    lp.close()


def test_all_actuator_types_validate() -> None:
    from hotcb.actuators import validate_value

    assert validate_value({"key": "b", "type": "bool"}, "true") is True
    assert validate_value({"key": "n", "type": "int", "min": 0, "max": 9}, 3.0) == 3
    with pytest.raises(ValueError, match="integer"):
        validate_value({"key": "n", "type": "int"}, 2.5)
    assert validate_value({"key": "c", "type": "choice", "choices": ["a", "b"]}, "b") == "b"
    with pytest.raises(ValueError, match="not one of"):
        validate_value({"key": "c", "type": "choice", "choices": ["a", "b"]}, "z")
    assert validate_value({"key": "t", "type": "tuple", "value": [0.9, 0.99], "min": 0, "max": 1}, [0.8, 0.9]) == (0.8, 0.9)
    with pytest.raises(ValueError, match="finite"):
        validate_value({"key": "t", "type": "tuple", "value": [0.9, 0.99]}, [0.8, float("inf")])
    with pytest.raises(ValueError, match="positive"):
        validate_value({"key": "l", "type": "log_float"}, 0.0)


def test_adam_betas_and_per_group_lr(run_dir: Path) -> None:
    from hotcb import optimizer_actuators

    w1, w2 = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([{"params": [w1]}, {"params": [w2], "lr": 1e-4}], lr=1e-3)
    state = mutable_state(optimizer_actuators(opt, per_group=True))
    assert {"lr", "lr.g1", "betas", "weight_decay"} <= set(state.keys())
    k = HotKernel(run_dir, mutable_state=state)
    with open(run_dir / "hotcb.commands.jsonl", "a") as f:
        f.write(json.dumps({"cmd_id": "a", "module": "opt", "op": "set_params",
                            "params": {"lr": 2e-3, "betas": [0.8, 0.95]}}) + "\n")
    k.apply(env={"step": 1})
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3)
    assert opt.param_groups[1]["lr"] == pytest.approx(2e-4)  # ratio to group 0 kept
    assert opt.param_groups[1]["betas"] == (0.8, 0.95)
    k.close()


def test_metrics_recorded_with_non_finite_and_knobs(run_dir: Path) -> None:
    lp = Loop(run_dir)
    lp.run(2)
    lp.nan_loss = True
    lp.run(1)
    lp.close()
    rows = read_all(run_dir / "hotcb.metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"step", "epoch", "wall_time", "metrics"}
    assert rows[2]["metrics"]["train_loss"] == "nan"  # recorded, never dropped
    assert rows[0]["metrics"]["opt/lr"] == 0.05


def test_metrics_collector_filters_and_every_n(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    c = MetricsCollector(path, whitelist=["loss*", "acc"], blacklist=["loss_debug"], every_n=3)
    for step in range(1, 10):
        c.record(step, {"loss": float("inf") if step == 6 else 1.0, "loss_debug": 2.0, "acc": 0.5,
                        "other": 3.0, "vec": torch.ones(3), "t": torch.tensor(-float("inf"))})
    rows = read_all(path)
    assert [r["step"] for r in rows] == [3, 6, 9]
    assert rows[0]["metrics"] == {"loss": 1.0, "acc": 0.5}
    assert rows[1]["metrics"]["loss"] == "inf"


def test_feature_capture_armed_by_kernel(run_dir: Path) -> None:
    lp = Loop(run_dir)
    fc = FeatureCapture(run_dir / "hotcb.features.jsonl", lp.model, ["0", "1"], every_n=4)
    lp.kernel.features = fc
    lp.run(12)
    rows = read_all(run_dir / "hotcb.features.jsonl")
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert set(rows[0]["layers"]) == {"0", "1"}
    assert rows[0]["layers"]["0"]["shape"] == [32, 4, 4, 4]
    assert rows[0]["layers"]["1"]["frac_zero"] > 0  # after ReLU
    lp.close()
    with pytest.raises(ValueError, match="unknown layers"):
        FeatureCapture(run_dir / "x.jsonl", lp.model, ["nope"])


def test_kernel_features_argument(run_dir: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    fc = FeatureCapture(run_dir / "hotcb.features.jsonl", model, ["0"], every_n=2)
    k = HotKernel(run_dir, features=fc)
    for step in range(1, 5):
        model(torch.ones(1, 3))
        k.apply(env={"step": step})
    k.close()
    assert [r["step"] for r in read_all(run_dir / "hotcb.features.jsonl")] == [2, 4]


def test_pause_stop_freeze_in_process(run_dir: Path) -> None:
    lp = Loop(run_dir)
    lp.run(1)
    f = lp.send("core", "freeze", {"mode": "prod"})
    lp.run(1)
    assert lp.decision(f)["decision"] == "applied"
    assert json.loads((run_dir / "hotcb.freeze.json").read_text())["mode"] == "prod"
    blocked = lp.send("opt", "set_params", {"lr": 0.01})
    lp.run(1)
    assert lp.decision(blocked)["decision"] == "ignored_freeze"
    u = lp.send("core", "unfreeze")
    ok = lp.send("opt", "set_params", {"lr": 0.01})
    lp.run(1)
    assert lp.decision(u)["decision"] == "applied" and lp.decision(ok)["decision"] == "applied"
    s = lp.send("core", "stop")
    lp.run(1)
    assert lp.kernel.should_stop and lp.decision(s)["payload"] == {"stop": True}
    lp.close()
    status = json.loads((run_dir / "hotcb.status.json").read_text())
    assert status["closed"] is True and status["freeze_mode"] == "off"
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]  # atomic replaces leave no temp files


def test_desired_yaml_applied_on_change_and_invalid_rejected(run_dir: Path) -> None:
    lp = Loop(run_dir, watch_interval_s=0.0)
    lp.run(1)

    def run_until(cond: object, what: str) -> None:
        # hotcb.yaml is read and parsed off the training thread: applied a few steps after a change
        for _ in range(2000):
            lp.run(1)
            if cond():  # type: ignore[operator]
                return
            time.sleep(0.001)
        raise AssertionError(f"hotcb.yaml never got {what}")

    (run_dir / "hotcb.yaml").write_text("knobs:\n  lr: 0.02\n  l2_w: 0.001\nfreeze: off\n")
    run_until(lambda: len([e for e in lp.ledger() if e["source"] == "yaml"]) >= 2, "applied")
    assert lp.opt.param_groups[0]["lr"] == pytest.approx(0.02) and lp.weights["l2_w"] == 0.001
    yaml_entries = [e for e in lp.ledger() if e["source"] == "yaml"]
    assert {e["module"] for e in yaml_entries} == {"opt", "loss"}
    assert all(e["decision"] == "applied" for e in yaml_entries)
    n = len(lp.ledger())
    (run_dir / "hotcb.yaml").write_text("knobs:\n  opt: {lr: 0.03}\ncallbacks:\n  t:\n"
                                        "    target: {kind: module, path: hotcb.callbacks.timing, symbol: TimingCallback}\n")
    run_until(lambda: len(lp.ledger()) >= n + 2, "the second version")
    assert lp.opt.param_groups[0]["lr"] == pytest.approx(0.03)
    assert "t" in lp.kernel.cb.callbacks
    n = len(lp.ledger())
    (run_dir / "hotcb.yaml").write_text("knobs:\n  lr: 0.04\n  warp_w: 1.0\n")  # one unknown knob: nothing changes
    run_until(lambda: len(lp.ledger()) > n, "a decision on the unknown knob")
    new = lp.ledger()[n:]
    assert len(new) == 1 and new[0]["decision"] == "rejected" and "warp_w" in new[0]["error"]
    assert lp.opt.param_groups[0]["lr"] == pytest.approx(0.03)
    n = len(lp.ledger())
    (run_dir / "hotcb.yaml").write_text("knobs: [oops\n")
    run_until(lambda: len(lp.ledger()) > n, "a decision on invalid YAML")
    assert lp.ledger()[-1]["decision"] == "rejected" and "not valid YAML" in lp.ledger()[-1]["error"]
    lp.run(2)
    lp.close()


def test_callback_lifecycle_and_builtins(run_dir: Path) -> None:
    lp = Loop(run_dir, checkpoint_every=1)
    (run_dir / "my_cb.py").write_text(
        "class Scale:\n"
        "    def __init__(self, factor=1.0):\n        self.factor = factor\n"
        "    def set_params(self, **kw):\n        self.factor = kw.get('factor', self.factor)\n"
        "    def handle(self, event, env):\n        env['metrics']['scaled'] = self.factor * env['step']\n"
    )
    ids = {
        "file": lp.send("cb", "load", {"factor": 2.0}, id="scale",
                        target={"kind": "python_file", "path": "my_cb.py", "symbol": "Scale"}),
        "timing": lp.send("cb", "load", id="timing",
                          target={"kind": "module", "path": "hotcb.callbacks.timing", "symbol": "TimingCallback"}),
        "grad": lp.send("cb", "load", id="grad",
                        target={"kind": "module", "path": "hotcb.callbacks.grad_stats", "symbol": "GradStatsCallback"}),
        "tensor": lp.send("cb", "load", {"every": 1}, id="tensor",
                          target={"kind": "module", "path": "hotcb.callbacks", "symbol": "TensorStatsCallback"}),
        "sys": lp.send("cb", "load", {"every": 1}, id="sys",
                       target={"kind": "module", "path": "hotcb.callbacks", "symbol": "SystemStatsCallback"}),
        "hb": lp.send("cb", "load", {"every": 2}, id="hb",
                      target={"kind": "module", "path": "hotcb.callbacks", "symbol": "HeartbeatCallback"}),
        "log": lp.send("cb", "load", id="log",
                       target={"kind": "module", "path": "hotcb.callbacks", "symbol": "JsonlLoggerCallback"}),
        "guard": lp.send("cb", "load", {"action": "rollback", "cooldown": 100}, id="guard",
                         target={"kind": "module", "path": "hotcb.callbacks", "symbol": "AnomalyGuard"}),
    }
    lp.run(6)
    for cmd in ids.values():
        assert lp.decision(cmd)["decision"] == "applied", lp.decision(cmd)
    assert len(lp.decision(ids["file"])["payload"]["source_hash"]) == 16
    last = lp.metrics()[-1]["metrics"]
    for key in ("scaled", "time/step_ms", "grad/norm", "grad/max_abs", "tensor/loss/mean", "tensor/logits/std",
                "param/norm", "sys/rss_mb", "hb/steps_per_s"):
        assert key in last, key
    assert last["scaled"] == 2.0 * 6 and last["grad/nonfinite"] == 0
    assert read_all(run_dir / "hotcb.log.jsonl")[-1]["metrics"]["grad/norm"] == last["grad/norm"]
    # reconfigure, disable, enable, unload
    sp = lp.send("cb", "set_params", {"factor": 3.0}, id="scale")
    dis = lp.send("cb", "disable", id="timing")
    bad = lp.send("cb", "set_params", {"evry": 3}, id="timing")  # a typo is refused, not ignored
    lp.run(1)
    assert lp.decision(sp)["decision"] == "applied" and lp.decision(dis)["decision"] == "applied"
    assert lp.decision(bad)["decision"] == "failed" and "evry" in lp.decision(bad)["error"]
    last = lp.metrics()[-1]["metrics"]
    assert last["scaled"] == 3.0 * 7 and "time/step_ms" not in last
    en = lp.send("cb", "enable", id="timing")
    un = lp.send("cb", "unload", id="scale")
    lp.run(2)
    assert lp.decision(en)["decision"] == "applied" and lp.decision(un)["decision"] == "applied"
    assert "scale" not in lp.kernel.cb.callbacks
    assert "scaled" not in lp.metrics()[-1]["metrics"]
    # anomaly guard: a non-finite loss raises an alert and requests a rollback through the kernel
    lp.nan_loss = True
    lp.run(1)
    lp.nan_loss = False
    alerts = read_all(run_dir / "hotcb.alerts.jsonl")
    assert alerts[-1]["kind"] == "non_finite" and alerts[-1]["metric"] == "train_loss"
    rb = [e for e in lp.ledger() if e["op"] == "rollback"]
    assert len(rb) == 1 and rb[0]["decision"] == "applied" and rb[0]["source"] == "rule"
    assert rb[0]["actor"] == "anomaly_guard"
    lp.run(2)
    assert lp.kernel.internal_errors == 0
    lp.close()


def test_pause_holds_the_loop_and_still_answers(run_dir: Path) -> None:
    """A real trainer subprocess: paused, it stays at one step yet applies commands; then stop."""
    from hotcb.jsonl_write import append_line
    from hotcb.ops import make_command
    from tests.support.proc import Trainer, wait_for

    with Trainer(run_dir, sleep=0.005) as t:
        t.wait_step(5)
        p = make_command("core", "pause")
        append_line(run_dir / "hotcb.commands.jsonl", p)
        wait_for(lambda: t.status().get("paused"), 20, what="paused")
        held = t.status()["step"]
        knob = make_command("loss", "set_params", {"l1_w": 0.001})
        append_line(run_dir / "hotcb.commands.jsonl", knob)
        wait_for(lambda: any(e["cmd_id"] == knob["cmd_id"] for e in t.ledger()), 20, what="answer while paused")
        assert t.status()["step"] == held
        assert [e for e in t.ledger() if e["cmd_id"] == knob["cmd_id"]][0]["step"] == held
        append_line(run_dir / "hotcb.commands.jsonl", make_command("core", "resume"))
        t.wait_step(held + 5)
        append_line(run_dir / "hotcb.commands.jsonl", make_command("core", "stop"))
        wait_for(lambda: not t.alive(), 30, what="clean exit")
        assert t.proc.returncode == 0
        assert t.status()["closed"] is True


def test_a_reader_that_sees_the_pause_finds_the_paused_steps_metrics(run_dir: Path) -> None:
    """The pause is decided at a step's safe point, before that step's metrics are recorded; the
    status that says paused is written after they are in the metrics file. (It was written first:
    a test that saw the pause and then appended metric lines found the paused step's own line
    written after its lines, and the rules read that step's real values as the newest.)"""
    import threading

    from hotcb.jsonl_write import append_line
    from hotcb.ops import make_command
    from tests.support.proc import wait_for

    k = HotKernel(run_dir, pause_poll_s=0.01)
    metrics = run_dir / "hotcb.metrics.jsonl"
    seen: list[list[int]] = []  # for each status written that says paused: the metric steps in the file then
    for name in ("write_now", "post"):
        write = getattr(k.publisher.status_file, name)

        def spy(value: dict, write=write) -> None:
            if value.get("paused"):
                seen.append([r["step"] for r in read_all(metrics)] if metrics.exists() else [])
            write(value)

        setattr(k.publisher.status_file, name, spy)
    for step in (1, 2):
        k.apply(env={"step": step, "metrics": {"loss": 1.0}})
    append_line(run_dir / "hotcb.commands.jsonl", make_command("core", "pause", cmd_id="pause"))
    loop = threading.Thread(target=k.apply, kwargs={"env": {"step": 3, "metrics": {"loss": 1.0}}})
    loop.start()  # step 3 decides the pause and stays there until the resume
    try:
        wait_for(lambda: seen, 30, what="a status that says paused")
    finally:
        append_line(run_dir / "hotcb.commands.jsonl", make_command("core", "resume", cmd_id="resume"))
        loop.join(30)
    assert not loop.is_alive()
    assert all(steps == [1, 2, 3] for steps in seen), seen
    k.close()
