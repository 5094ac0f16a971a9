"""``hotcb launch`` and ``hotcb.agent.launcher.launch``: a tiny train function in its own process, the
autopilot beside it (stopped cleanly when training ends), the run driven through the handle."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hotcb.agent.launcher.launch import launch
from hotcb.agent.rules.config import RulesConfig

from tests.support.net import free_port
from tests.support.proc import read_jsonl, wait_for

TINY = textwrap.dedent('''
    import math, time
    import torch
    from hotcb import HotKernel, mutable_state, optimizer_actuators

    def train(run_dir, max_steps=None, flat=False):
        max_steps = max_steps or 100000
        torch.manual_seed(0)
        x = torch.randn(256, 4); y = x.sum(1, keepdim=True)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        kernel = HotKernel(run_dir, mutable_state=mutable_state(optimizer_actuators(opt)), max_steps=max_steps)
        step = 0
        try:
            while step < max_steps and not kernel.should_stop:
                loss = torch.nn.functional.mse_loss(model(x), y)
                opt.zero_grad(); loss.backward(); opt.step(); step += 1
                val = 0.5 + 1e-4 * math.sin(step) if flat else loss.item()
                kernel.apply(env={"step": step, "optimizer": opt, "metrics": {
                    "train_loss": loss.item(), "val_loss": val, "lr": opt.param_groups[0]["lr"]}},
                    events=["train_step_end"])
                time.sleep(0.01)
        finally:
            kernel.close()

    def train_flat(run_dir, max_steps=None):
        train(run_dir, max_steps, flat=True)
''')


@pytest.fixture()
def tiny(tmp_path):
    p = tmp_path / "tiny_train.py"
    p.write_text(TINY)
    return p


def test_cli_launch_runs_to_the_end_with_the_autopilot(tmp_path, tiny):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "launch", "--train-fn", f"{tiny}:train", "--dir", str(run),
                        "--max-steps", "120", "--autopilot", "auto"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    status = json.loads((run / "hotcb.status.json").read_text())
    assert status["step"] == 120 and status.get("closed")
    assert json.loads((run / "hotcb.autopilot.json").read_text())["mode"] == "auto"
    assert len(read_jsonl(run / "hotcb.metrics.jsonl")) >= 100


def test_launch_handle_drives_the_run_and_the_rules_act(tmp_path, tiny):
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 30, "warmup_steps": 120, "cooldown_steps": 100000}}})
    h = launch(f"{tiny}:train_flat", tmp_path / "run", max_steps=100000, autopilot="auto", rules=cfg, interval_s=0.2)
    try:
        wait_for(lambda: h.tools.status_doc().get("step", 0) >= 5, 90, what="training to start")
        res = h.set_param("lr", 0.02, reason="test: human change", wait_s=30)
        assert res["decision"] == "applied" and res["changes"]["lr"]["new"] == pytest.approx(0.02)
        try:
            led = wait_for(lambda: [e for e in read_jsonl(h.run_dir / "hotcb.applied.jsonl")
                                    if e.get("source") == "rule" and e["decision"] == "applied"
                                    and e.get("module") == "opt"], 120, 0.2,  # not the rescue's enable
                           "the plateau rule acting in the launched run")
        except AssertionError:
            rules = h.pilot._rules.get("auto")
            raise AssertionError(f"ticks {h.pilot.ticks}, findings {rules and [(f.rule, f.outcome) for f in rules.findings]}, "
                                 f"status {h.tools.status_doc()}, alerts {h.tools.call('list_alerts', {})}") from None
        # warmup 120 > the human's step: the rule halves the human's value, past the guard's cooldown
        assert led[0]["actor"] == "plateau" and led[0]["payload"]["lr"]["new"] == pytest.approx(0.01)
        assert "val_loss" in h.metrics(["val_loss"])["series"]
        assert h.ai_status()["mode"] == "auto"
        human = [e for e in read_jsonl(h.run_dir / "hotcb.applied.jsonl") if e.get("source") == "human"]
        assert human[0]["actor"] == "launch"
    finally:
        rc = h.stop(timeout=60)
    assert rc == 0
    assert not h._thread.is_alive()  # the autopilot stopped cleanly with training


def test_launch_wait_returns_when_training_ends_and_stops_serve(tmp_path, tiny):
    h = launch(f"{tiny}:train", tmp_path / "run", max_steps=60, autopilot="off", serve=True, port=free_port())
    assert h.wait(timeout=300) == 0
    assert h.pilot is not None and not h._thread.is_alive()
    assert h.serve is None or h.serve.poll() is not None  # started and stopped, or absent and tolerated


def test_bad_train_fn_fails_cleanly(tmp_path):
    h = launch("no_such_module_xyz:train", tmp_path / "run", max_steps=10, autopilot=None)
    assert h.wait(timeout=120) != 0
    assert "no_such_module_xyz" in (tmp_path / "run" / "train.log").read_text()


def test_cli_launch_says_which_mode_runs_and_sums_up(tmp_path, tiny):
    """ai_auto without a key: the terminal says the rules run instead, and what was done at the end."""
    run = tmp_path / "run"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HOTCB_AI_")}
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "launch", "--train-fn", f"{tiny}:train", "--dir", str(run),
                        "--max-steps", "30", "--autopilot", "ai_auto"], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert "autopilot ai_auto (running: rules;" in r.stderr and "HOTCB_AI_KEY" in r.stderr
    assert "hotcb: final: step 30/30" in r.stderr
