"""The rules autopilot against real training processes, one test per rule family: a plateau, a
NaN loss (the kernel's rescue, which auto mode enables), real overfitting and a real gradient
spike each trigger the right action through the tool surface, applied by the kernel and
recorded in its ledger. The rules' logic in detail (when they fire, cooldowns, refusals and
retries, suggest and sense modes, what never fires) runs on recorded series in
test_rules_series.py; here, that the real parts agree with it."""

from __future__ import annotations

import time

import pytest
import yaml
from hotcb.agent.rules.actions import Unresolvable, resolve
from hotcb.agent.rules.config import Action, RulesConfig
from hotcb.agent.rules.sensors import RulesAutopilot
from hotcb.mcp_server.tools import HotcbTools

from tests.support.proc import Trainer, read_jsonl, wait_for


def run_until(pilot: RulesAutopilot, trainer: Trainer, cond, timeout: float = 120.0, what: str = "rule action"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pilot.tick()
        got = cond(trainer.ledger())
        if got:
            return got
        if not trainer.alive():
            break
        time.sleep(0.1)
    raise AssertionError(f"no {what}; ledger: {trainer.ledger()[-5:]}; findings: "
                         f"{[(f.rule, f.outcome) for f in pilot.findings]}")


def rule_ops(ledger, rule, module="opt"):
    return [e for e in ledger if e.get("source") == "rule" and e.get("actor") == rule and e.get("module") == module]


def test_plateau_halves_lr(tmp_path):
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000}}})
    with Trainer(tmp_path, "--plateau", sleep=0.01) as t:
        pilot = RulesAutopilot(HotcbTools(tmp_path, source="rule", actor="rules"), cfg)
        ops = run_until(pilot, t, lambda led: [e for e in rule_ops(led, "plateau") if e["decision"] == "applied"])
    e = ops[0]
    assert e["payload"]["lr"]["old"] == pytest.approx(0.01)
    assert e["payload"]["lr"]["new"] == pytest.approx(0.005)
    assert "plateau" in e["reason"]
    alerts = HotcbTools(tmp_path).call("list_alerts", {})["alerts"]
    assert any(a["rule"] == "plateau" and a["kind"] == "plateau" for a in alerts)


def test_nan_rolls_back_to_snapshot_then_cuts_lr(tmp_path):
    # trainer: from step 60 the loss is NaN while lr > 0.6 x the initial lr. In auto mode the rules
    # enable the kernel's rescue, which rolls back and cuts lr at the NaN step, as one decision.
    with Trainer(tmp_path, "--nan-at", "60", "--checkpoint-every", "20", sleep=0.02) as t:
        pilot = RulesAutopilot(HotcbTools(tmp_path, source="rule", actor="rules"),
                               RulesConfig.from_dict({"probe": False}))
        found = run_until(pilot, t, lambda led: [e for e in rule_ops(led, "rescue", "rescue")
                                                 if e["op"] == "rollback"], what="rescue rollback")
        enable = [e for e in rule_ops(t.ledger(), "rescue", "rescue") if e["op"] == "enable"]
        assert enable and enable[0]["decision"] == "applied" and enable[0]["step"] < 60
        cut = found[0]
        assert cut["decision"] == "applied" and cut["step"] == 61  # the first NaN loss is logged at step 61
        assert cut["payload"]["restored_step"] <= 60
        assert cut["payload"]["lr"]["new"] == pytest.approx(0.005)
        assert not rule_ops(t.ledger(), "non_finite")  # the rule defers to the rescue
        # Training recovers: finite losses again after the cut.
        wait_for(lambda: [m for m in t.metrics() if m["step"] > cut["step"] + 5
                          and isinstance(m["metrics"]["train_loss"], float)], 60, what="finite loss after the cut")


def test_overfitting_raises_weight_decay_from_its_live_value(tmp_path):
    # --overfit: 32 noisy samples memorised; at lr 0.002 val_loss rises from ~step 80 while the
    # train loss keeps falling, and a 60-point window sees the gap grow until ~step 300 (measured).
    cfg = RulesConfig.from_dict({"rescue": False, "rules": {"plateau": {"enabled": False}, "overfitting": {
        "window": 60, "warmup_steps": 60, "action": {"knob": "weight_decay", "factor": 2}}}})
    with Trainer(tmp_path, "--overfit", "--lr", "0.002", "--weight-decay", "1e-4", sleep=0.01) as t:
        pilot = RulesAutopilot(HotcbTools(tmp_path, source="rule", actor="rules"), cfg)
        ops = run_until(pilot, t, lambda led: [e for e in rule_ops(led, "overfitting") if e["decision"] == "applied"],
                        what="overfitting action")
    e = ops[0]
    assert (e["source"], e["actor"], e["op"]) == ("rule", "overfitting", "set_params")
    assert "overfitting" in e["reason"] and "weight_decay" in e["reason"]
    assert e["payload"]["weight_decay"]["old"] == pytest.approx(1e-4)  # the live value, doubled
    assert e["payload"]["weight_decay"]["new"] == pytest.approx(2e-4)


def test_grad_spike_cuts_the_live_lr(tmp_path):
    # A real gradient spike (targets x10 at step 120: x100+ the usual grad norm).
    cfg = RulesConfig.from_dict({"rescue": False, "rules": {
        **{k: {"enabled": False} for k in ("plateau", "divergence", "overfitting")},
        "grad_spike": {"window": 30, "cooldown_steps": 100000, "action": {"knob": "lr", "factor": 0.5}}}})
    with Trainer(tmp_path, "--grad-spike-at", "120", sleep=0.01) as t:
        pilot = RulesAutopilot(HotcbTools(tmp_path, source="rule", actor="rules"), cfg)
        ops = run_until(pilot, t, lambda led: [e for e in rule_ops(led, "grad_spike") if e["decision"] == "applied"],
                        what="grad spike lr cut")
    e = ops[0]
    assert (e["source"], e["actor"]) == ("rule", "grad_spike")
    assert e["payload"]["lr"]["old"] == pytest.approx(0.01) and e["payload"]["lr"]["new"] == pytest.approx(0.005)
    assert "grad_norm spiked" in e["reason"] and "at step 120" in e["reason"]
    assert e["step"] > 120


def test_relative_action_resolves_against_live_value_and_guard():
    desc = {"guard": {"max_rel_change": 2.0}, "actuators": [
        {"key": "lr", "module": "opt", "type": "LOG_FLOAT", "value": 0.02, "min": 1e-6, "max": 1.0},
        {"key": "weight_decay", "module": "opt", "type": "FLOAT", "value": 0.0, "min": 0.0, "max": 1.0}]}
    assert resolve(Action(factor=0.5), desc)["params"]["lr"] == pytest.approx(0.01)
    assert resolve(Action(factor=0.01), desc)["params"]["lr"] == pytest.approx(0.01)  # clamped to the guard
    with pytest.raises(Unresolvable):
        resolve(Action(knob="weight_decay", factor=2), desc)  # 0 x anything is 0
    with pytest.raises(Unresolvable):
        resolve(Action(knob="momentum"), desc)


def test_rules_file_is_data_only(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text("rules:\n  plateau: {window: 30, action: {knob: weight_decay, factor: 2}}\n  overfitting: {action: null}\n")
    cfg = RulesConfig.load(p)
    assert cfg.rules["plateau"].window == 30 and cfg.rules["plateau"].action.knob == "weight_decay"
    assert cfg.rules["overfitting"].action is None
    for bad in ("rules: {plateau: {window: __import__}}", "rules: {nope: {}}", "rules: {plateau: {window: -1}}",
                "rules: !!python/object/apply:os.system ['true']"):
        p.write_text(bad)
        with pytest.raises((ValueError, yaml.YAMLError)):
            RulesConfig.load(p)


def test_an_int_knob_halved_by_a_rule_stays_an_int(tmp_path):
    # Knobs publish their type as "int" (ActuatorType.INT.value); a rule halving 5 sends 3 (an int,
    # rounded toward the live value so the guard's x0.5 limit holds), not 2.5.
    from hotcb import HotKernel
    from hotcb.actuators.actuator import ActuatorType, HotcbActuator
    from hotcb.actuators.state import MutableState

    box = {"accum": 5}
    knob = HotcbActuator("accum", ActuatorType.INT, apply_fn=lambda v, env: box.update(accum=v),
                         read_fn=lambda: box["accum"], min=1, max=64, group="train")
    kernel = HotKernel(tmp_path, mutable_state=MutableState([knob]), status_interval_s=0.0)
    tools = HotcbTools(tmp_path, source="rule", actor="plateau", wait_s=0)
    op = resolve(Action(knob="accum", factor=0.5), tools.call("describe_actuators", {}))
    assert op["params"] == {"accum": 3} and isinstance(op["params"]["accum"], int)
    tools.call("apply_op", {**op, "reason": "rule plateau: halve accum"})
    kernel.apply(env={"step": 1})
    kernel.close()
    entry = [e for e in read_jsonl(tmp_path / "hotcb.applied.jsonl") if e["module"] == "train"][0]
    assert entry["decision"] == "applied" and entry["payload"]["accum"] == {"old": 5, "new": 3}
    assert box["accum"] == 3 and isinstance(box["accum"], int)
