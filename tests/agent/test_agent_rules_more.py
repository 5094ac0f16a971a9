"""The rules autopilot against real training processes, continued: overfitting (real memorisation)
and a gradient spike (a real one), thresholds and cooldowns from a YAML rules file, and what a
rule does when the guard refuses its op (recorded, retried when the knob's cooldown ends)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from hotcb.agent.config import RulesConfig
from hotcb.agent.observe import Observer
from hotcb.agent.rules import RulesAutopilot, check_grad_spike, check_overfitting
from hotcb.mcp_server.tools import HotcbTools

from tests.agent.test_agent_rules import rule_ops, run_until
from tests.support.core_loop import Loop
from tests.support.proc import Trainer, wait_for

OFF = {"enabled": False}
# The refusal tests watch one rule: divergence's x1.5-over-the-window-best test fires on this
# model's noisy minibatch loss at lr 0.01 (~step 110) and would take the lr cooldown first.
QUIET = {"divergence": OFF, "overfitting": OFF}


def rules_file(tmp_path, text: str) -> RulesConfig:
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    return RulesConfig.load(p)


def pilot(run_dir, cfg: RulesConfig, actor: str = "rules", mode: str = "auto") -> RulesAutopilot:
    # One rule family at a time: the kernel's rescue (its own tests: test_rescue.py) stays off.
    return RulesAutopilot(HotcbTools(run_dir, source="rule", actor=actor), replace(cfg, rescue=False), mode=mode)


def alerts(run_dir, rule: str, actor: str | None = None) -> list[dict]:
    rows = HotcbTools(run_dir).call("list_alerts", {"last": 1000})["alerts"]
    return [a for a in rows if a["rule"] == rule and (actor is None or a["actor"] == actor)]


def tick_until_step(pilots, trainer: Trainer, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in pilots:
            p.tick()
        if trainer.status().get("step", 0) >= step:
            return
        assert trainer.alive(), (trainer.run_dir / "trainer.log").read_text()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def test_overfitting_raises_weight_decay_from_its_live_value_and_honours_the_yaml_cooldown(tmp_path):
    # --overfit: 32 noisy samples memorised; at lr 0.002 val_loss rises from ~step 80 while the
    # train loss keeps falling, and a 60-point window sees the gap grow until ~step 300 (measured).
    cfg = rules_file(tmp_path, """
rules:
  plateau: {enabled: false}
  overfitting: {window: 60, warmup_steps: 60, cooldown_steps: 80, action: {knob: weight_decay, factor: 2}}
""")
    # The defaults' action for overfitting is an alert: same thresholds, no action configured.
    watch_cfg = RulesConfig.from_dict({"rules": {"plateau": OFF, "overfitting": {"window": 60, "warmup_steps": 60}}})
    assert watch_cfg.rules["overfitting"].action is None
    with Trainer(tmp_path, "--overfit", "--lr", "0.002", "--weight-decay", "1e-4", sleep=0.01) as t:
        acting, watch = pilot(tmp_path, cfg), pilot(tmp_path, watch_cfg, actor="watch")

        def two_raises(led):
            watch.tick()
            ops = [e for e in rule_ops(led, "overfitting") if e["decision"] == "applied"]
            return ops if len(ops) >= 2 else None

        ops = run_until(acting, t, two_raises, what="two overfitting actions")
    first, second = ops[0], ops[1]
    for e in (first, second):
        assert (e["source"], e["actor"], e["op"]) == ("rule", "overfitting", "set_params")
        assert "overfitting" in e["reason"] and "weight_decay" in e["reason"]
    # Resolved against the live value each time: 1e-4 -> 2e-4, then the new live 2e-4 -> 4e-4.
    assert first["payload"]["weight_decay"]["old"] == pytest.approx(1e-4)
    assert first["payload"]["weight_decay"]["new"] == pytest.approx(2e-4)
    assert second["payload"]["weight_decay"]["old"] == pytest.approx(2e-4)
    assert second["payload"]["weight_decay"]["new"] == pytest.approx(4e-4)
    # The YAML cooldown (80 steps) held between the two firings (alert steps are the ticks' steps).
    fired = [a["step"] for a in alerts(tmp_path, "overfitting", actor="rules")]
    assert len(fired) >= 2 and all(b - a >= 80 for a, b in zip(fired, fired[1:], strict=False))
    # The default (alert only) saw the same overfitting and changed nothing.
    assert watch.findings and all(f.landed == 0 and f.refused == 0 for f in watch.findings)
    assert alerts(tmp_path, "overfitting", actor="watch")
    assert len(rule_ops(t.ledger(), "overfitting")) == sum(f.landed for f in acting.findings)


def test_grad_spike_cuts_the_live_lr_once_within_the_yaml_cooldown(tmp_path):
    # Two real gradient spikes (targets x10 at steps 120 and 170: x100+ the usual grad norm).
    cfg = rules_file(tmp_path, """
rules:
  plateau: {enabled: false}
  divergence: {enabled: false}
  overfitting: {enabled: false}
  grad_spike: {window: 30, cooldown_steps: 100000, action: {knob: lr, factor: 0.5}}
""")
    # A watcher (sensor mode: alerts only) with a short cooldown sees both spikes.
    watch_cfg = RulesConfig.from_dict({"rules": {k: OFF for k in ("plateau", "divergence", "overfitting")}
                                       | {"grad_spike": {"window": 30, "cooldown_steps": 20}}})
    with Trainer(tmp_path, "--grad-spike-at", "120,170", sleep=0.01) as t:
        t.wait_step(3)
        human = HotcbTools(tmp_path, source="human", actor="alice")
        human.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.004}, "reason": "slower"})
        acting, watch = pilot(tmp_path, cfg), pilot(tmp_path, watch_cfg, actor="watch", mode="sense")
        ops = run_until(acting, t, lambda led: (watch.tick(), [e for e in rule_ops(led, "grad_spike")
                                                               if e["decision"] == "applied"])[1],
                        what="grad spike lr cut")
        tick_until_step([acting, watch], t, 230)
        assert len(rule_ops(t.ledger(), "grad_spike")) == 1  # the second spike fell in the cooldown
    e = ops[0]
    assert (e["source"], e["actor"]) == ("rule", "grad_spike")
    assert e["payload"]["lr"]["old"] == pytest.approx(0.004)  # the live lr (alice's), not the initial 0.01
    assert e["payload"]["lr"]["new"] == pytest.approx(0.002)
    assert "grad_norm spiked" in e["reason"] and "at step 120" in e["reason"]
    assert e["step"] > 120
    # Every point since the last tick is examined: the watcher pinned both spikes to their steps.
    seen = " ".join(a["message"] for a in alerts(tmp_path, "grad_spike", actor="watch"))
    assert "at step 120" in seen and "at step 170" in seen


def test_huge_thresholds_from_the_rules_file_do_not_fire(tmp_path):
    cfg = rules_file(tmp_path, """
rules:
  plateau: {enabled: false}
  divergence: {enabled: false}
  overfitting: {window: 60, warmup_steps: 60, gap_growth: 1000000, action: {knob: weight_decay, factor: 2}}
  grad_spike: {window: 30, spike_factor: 1000000, action: {knob: lr, factor: 0.5}}
""")
    assert cfg.rules["overfitting"].gap_growth == 1e6 and cfg.rules["grad_spike"].spike_factor == 1e6
    sensitive = {"overfitting": replace(cfg.rules["overfitting"], gap_growth=0.1),
                 "grad_spike": replace(cfg.rules["grad_spike"], spike_factor=5.0)}
    with Trainer(tmp_path, "--overfit", "--lr", "0.002", "--weight-decay", "1e-4", "--grad-spike-at", "260",
                 sleep=0.01) as t:
        p = pilot(tmp_path, cfg)
        # On the very data this pilot reads, default-like thresholds would have fired.
        would: set[str] = set()
        since = None
        deadline = time.monotonic() + 150
        while not ({"overfitting", "grad_spike"} <= would and t.status().get("step", 0) >= 290):
            assert time.monotonic() < deadline and t.alive(), f"conditions seen: {would}"
            p.tick()
            if check_overfitting("overfitting", sensitive["overfitting"], p.obs, {}):
                would.add("overfitting")
            if check_grad_spike("grad_spike", sensitive["grad_spike"], p.obs, {}, since=since):
                would.add("grad_spike")
            since = (p.obs.series.get("grad_norm") or ([since], []))[0][-1]
            time.sleep(0.05)
        assert not p.findings
        assert not [e for e in t.ledger() if e.get("source") == "rule"]
    assert not alerts(tmp_path, "overfitting") and not alerts(tmp_path, "grad_spike")


def test_guard_cooldown_refusal_is_recorded_and_the_rule_retries_when_the_knob_may_change(tmp_path):
    # The guard makes non-human sources wait 300 steps after any change of a knob; alice changes
    # lr at the start, so the plateau rule's first halving is refused by the guard.
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000},
                                           **QUIET}})
    with Trainer(tmp_path, "--plateau", "--guard-cooldown", "300", sleep=0.01) as t:
        t.wait_step(2)
        human = HotcbTools(tmp_path, source="human", actor="alice")
        out = human.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.02}, "reason": "try"})
        changed = out["step"]
        p = pilot(tmp_path, cfg)
        ops = run_until(p, t, lambda led: [e for e in rule_ops(led, "plateau") if e["decision"] == "applied"],
                        timeout=180, what="the plateau retry")
        refused = [e for e in rule_ops(t.ledger(), "plateau") if e["decision"] == "rejected"]
    # The refusal is on the record: in the ledger (source rule, actor the rule, its reason) ...
    assert len(refused) == 1, refused
    assert "plateau" in refused[0]["reason"] and "must wait 300 steps" in refused[0]["error"]
    # ... and in the rule's alert, which says when it will try again.
    first = alerts(tmp_path, "plateau")[0]
    assert "refused" in first["message"] and f"will retry at step {changed + 300}" in first["message"]
    # The rule's own cooldown (100000 steps) did not swallow the finding: it acted when the
    # knob's cooldown ended, on the live value.
    e = ops[0]
    assert e["step"] >= changed + 300
    assert e["payload"]["lr"]["old"] == pytest.approx(0.02) and e["payload"]["lr"]["new"] == pytest.approx(0.01)
    assert [f.landed for f in p.findings if f.rule == "plateau"] == [0, 1]


def test_locked_knob_refusal_is_recorded_and_retried_after_the_rule_cooldown(tmp_path):
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 60},
                                           **QUIET}})
    with Trainer(tmp_path, "--plateau", sleep=0.01) as t:
        t.wait_step(2)
        human = HotcbTools(tmp_path, source="human", actor="alice")
        human.call("lock_knobs", {"keys": ["lr"], "reason": "mine"})
        wait_for(lambda: [a for a in HotcbTools(tmp_path).call("describe_actuators", {})["actuators"]
                          if a["key"] == "lr" and a["locked_by"] == "alice"], 30, what="the lock")
        p = pilot(tmp_path, cfg)
        run_until(p, t, lambda led: [e for e in rule_ops(led, "plateau") if e["decision"] == "rejected"],
                  what="the refused plateau op")
        human.call("lock_knobs", {"keys": ["lr"], "lock": False, "reason": "yours"})
        ops = run_until(p, t, lambda led: [e for e in rule_ops(led, "plateau") if e["decision"] == "applied"],
                        what="the plateau action after the unlock")
        refused = [e for e in rule_ops(t.ledger(), "plateau") if e["decision"] == "rejected"]
    assert len(refused) == 1 and "locked by alice" in refused[0]["error"]
    first = alerts(tmp_path, "plateau")[0]
    assert "locked by alice" in first["message"] and "after the rule's cooldown" in first["message"]
    # A lock has no known end: the rule re-checks after its own cooldown, not every guard cooldown.
    assert ops[0]["step"] >= first["step"] + 60
    assert ops[0]["payload"]["lr"]["new"] == pytest.approx(0.005)


def test_observer_reads_full_windows_of_dense_and_sparse_metrics(tmp_path):
    # A real kernel loop: train_loss every step, val_loss every 10 steps; memorisation-like curves.
    loop = Loop(tmp_path)
    try:
        for s in range(1, 401):
            m = {"train_loss": 2.0 / s ** 0.5}
            if s % 10 == 0:
                m["val_loss"] = 1.0 + 0.002 * s
            loop.step({"metrics": m})
    finally:
        loop.close()
    obs = Observer(HotcbTools(tmp_path, source="rule"))
    obs.refresh(["train_loss", "val_loss"], 30)
    ts, _ = obs.window("train_loss", 30)
    vs, _ = obs.window("val_loss", 30)
    assert ts == [float(s) for s in range(371, 401)]  # every step: never thinned
    assert vs == [float(s) for s in range(110, 401, 10)]  # 30 points of a sparse metric: 300 steps back
    assert obs.between("train_loss", vs[0], vs[-1])[0][0] == 110.0  # train covers val's range
    # The default windows (200 points) are whole too: the rules see every step.
    obs.refresh(["train_loss"], 200)
    assert obs.window("train_loss", 200)[0] == [float(s) for s in range(201, 401)]
    # Overfitting over the sparse val window: the gap grew although val moved only ~0.6 in 300 steps.
    cfg = RulesConfig().rules["overfitting"]
    obs.refresh(["train_loss", "val_loss"], 30)
    f = check_overfitting("overfitting", replace(cfg, window=30), obs, {})
    assert f is not None and "steps 110-400" in f.message


def test_overfitting_on_scores_watches_the_train_minus_val_gap():
    obs = Observer(None)
    steps = [float(s) for s in range(1, 41)]
    obs.series = {"train_acc": (steps, [0.6 + 0.01 * s for s in range(1, 41)]),   # rising
                  "val_acc": (steps, [0.8 - 0.002 * s for s in range(1, 41)])}   # falling
    cfg = replace(RulesConfig().rules["overfitting"], metric="val_acc", window=40)
    f = check_overfitting("overfitting", cfg, obs, {}, train_metric="train_acc")
    assert f is not None and "val_acc worsened" in f.message
    obs.series["val_acc"] = (steps, [0.5 + 0.01 * s for s in range(1, 41)])  # both improve: no gap growth
    assert check_overfitting("overfitting", cfg, obs, {}, train_metric="train_acc") is None
