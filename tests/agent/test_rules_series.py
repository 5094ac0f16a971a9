"""The rules autopilot's logic on recorded series (tests/support/series.py): the real
``RulesAutopilot`` over real ``HotcbTools`` reads a run directory written step by step, and the
commands it writes (or the proposals it makes) are asserted on: what fires, when, with which op,
value and reason; cooldowns and retries; suggest and sense modes; what never fires. Milliseconds
a test; the same behaviours against real trainers, one per rule family: test_agent_rules.py."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.observe import Observer
from hotcb.agent.rules.sensors import RulesAutopilot, check_grad_spike, check_overfitting
from hotcb.mcp_server.tools import HotcbTools

from hotcb import HotKernel, loss_actuators, mutable_state, optimizer_actuators
from hotcb.actuators.actuator import ActuatorType, HotcbActuator
from hotcb.guard import GuardConfig
from hotcb.jsonl import read_all, read_json
from tests.support.series import Metrics, RecordedRun, drive

OFF = {"enabled": False}
QUIET = {"divergence": OFF, "overfitting": OFF}  # the refusal tests watch one rule


def pilot(run: RecordedRun, cfg: RulesConfig, actor: str = "rules", mode: str = "auto",
          rescue: bool = False) -> RulesAutopilot:
    # wait_s=0: no kernel reads this run directory; the line written is the result.
    tools = HotcbTools(run.run.root, source="rule", actor=actor, wait_s=0)
    return RulesAutopilot(tools, cfg if rescue else replace(cfg, rescue=False), mode=mode)


def human(run: RecordedRun) -> HotcbTools:
    return HotcbTools(run.run.root, source="human", actor="alice", wait_s=0)


def alerts(run: RecordedRun, rule: str, actor: str | None = None) -> list[dict]:
    rows = HotcbTools(run.run.root).call("list_alerts", {"last": 1000})["alerts"]
    return [a for a in rows if a["rule"] == rule and (actor is None or a["actor"] == actor)]


def noise(seed: int = 0) -> random.Random:
    return random.Random(seed)


# ---------------------------------------------------------------------- curves (one step's metrics)
def plateau(s: int) -> Metrics:
    """tests/support/trainer.py --plateau: a flat val_loss, a falling train loss."""
    return {"train_loss": 1.0 / (1 + 0.01 * s), "val_loss": 0.5 + 1e-4 * math.sin(s)}


def memorising(s: int) -> Metrics:
    """The train loss keeps falling while val_loss rises (memorisation)."""
    return {"train_loss": 2.0 / s ** 0.5, "val_loss": 1.0 + 0.01 * s}


def blowing_up(at: int, rng: random.Random):
    """A noisy loss near 3, then climbing x1.1 a step from ``at`` (a too-high lr's blow-up)."""
    def curve(s: int) -> Metrics:
        base = 3.0 * (1 + 0.05 * rng.uniform(-1, 1))
        loss = base if s < at else 3.0 * 1.1 ** (s - at)
        return {"train_loss": loss, "val_loss": loss}
    return curve


def nan_from(at: int):
    def curve(s: int) -> Metrics:
        return {"train_loss": 1.0 / (1 + 0.01 * s) if s < at else math.nan, "val_loss": 0.5}
    return curve


def spiking(at: set[int], rng: random.Random, base=plateau):
    """grad_norm near 1 with x100 spikes at ``at``."""
    def curve(s: int) -> Metrics:
        g = 1.0 + 0.1 * rng.random()
        return {**base(s), "grad_norm": 100.0 * g if s in at else g}
    return curve


# ---------------------------------------------------------------------- the series' format
def test_the_recorded_run_writes_the_files_a_real_kernel_publishes(tmp_path):
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01, momentum=0.9)
    kernel = HotKernel(tmp_path / "kernel", max_steps=100000, status_interval_s=0.0,
                       mutable_state=mutable_state(optimizer_actuators(opt) + loss_actuators({"mse_w": 1.0, "l1_w": 0.0})))
    kernel.apply(env={"step": 1, "metrics": {"train_loss": 1.0, "val_loss": math.nan}})
    real = {name: read_json(tmp_path / "kernel" / name) for name in ("hotcb.status.json", "hotcb.actuators.json")}
    kernel.flush_metrics()  # written in batches off the step; read here at once
    real_metrics = read_all(tmp_path / "kernel" / "hotcb.metrics.jsonl")
    kernel.close()
    run = RecordedRun(tmp_path / "series", lr=0.01)
    run.log(1, train_loss=1.0, val_loss=math.nan)
    ours = {name: read_json(tmp_path / "series" / name) for name in real}
    for name, doc in real.items():
        assert set(ours[name]) == set(doc), name
    assert set(ours["hotcb.status.json"]["rescue"]) == set(real["hotcb.status.json"]["rescue"])
    assert ours["hotcb.status.json"]["rescue"]["enabled"] is real["hotcb.status.json"]["rescue"]["enabled"] is False

    def knobs(doc):
        return {(a["module"], a["key"]): {k: a[k] for k in ("type", "min", "max", "value", "last_change_step")}
                for a in doc["actuators"]}

    assert knobs(ours["hotcb.actuators.json"]) == knobs(real["hotcb.actuators.json"])
    same = ("callbacks", "locks", "guard", "modules")  # the kernel republishes knobs only when they change
    assert {k: ours["hotcb.actuators.json"][k] for k in same} == {k: real["hotcb.actuators.json"][k] for k in same}
    (ours_m,) = read_all(tmp_path / "series" / "hotcb.metrics.jsonl")
    (real_m,) = real_metrics
    assert set(ours_m) == set(real_m) and ours_m["metrics"] == real_m["metrics"]
    assert {k: v for k, v in ours_m["metrics"].items() if "/" not in k} == {"train_loss": 1.0, "val_loss": "nan"}


# ---------------------------------------------------------------------- plateau
def test_plateau_halves_the_live_lr_once_its_window_is_full(tmp_path):
    run = RecordedRun(tmp_path, lr=0.01)
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000}}})
    p = pilot(run, cfg)
    (w,) = drive([p], run, range(1, 200), plateau, until=lambda: run.ops("plateau"))
    assert w.step == 40  # not before a full window (warmup and window 40)
    assert (w.op, w.params) == ("set_params", {"lr": pytest.approx(0.005)})  # the live 0.01, halved
    assert "plateau" in w.reason
    assert any(a["rule"] == "plateau" and a["kind"] == "plateau" for a in alerts(run, "plateau"))
    drive([p], run, range(201, 400), plateau)
    assert len(run.ops("plateau")) == 1  # the cooldown holds


def test_plateau_acts_on_a_short_run_that_logs_few_val_points(tmp_path):
    """A 400-step run with val_loss every 50 steps logs 8 points: an 8-point window would fill only
    at the last step. The window shrinks to what the run affords (half its points), so a flat
    val_loss is cut while the run still has steps to use the lower lr."""
    run = RecordedRun(tmp_path, lr=0.01, max_steps=400)
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 100, "warmup_steps": 100}}})

    def sparse(s: int) -> Metrics:
        m = plateau(s)
        return m if s % 50 == 0 else {"train_loss": m["train_loss"]}

    p = pilot(run, cfg)
    (w,) = drive([p], run, range(1, 401), sparse, until=lambda: run.ops("plateau"))
    assert w.step < 300  # with steps left to use it, not at the end
    assert (w.op, w.params) == ("set_params", {"lr": pytest.approx(0.005)})


def test_suggest_mode_proposes_instead_of_acting(tmp_path):
    run = RecordedRun(tmp_path, lr=0.01)
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40}}})
    p, alice = pilot(run, cfg, mode="suggest", rescue=True), human(run)
    props = drive([p], run, range(1, 200), plateau,
                  until=lambda: alice.call("list_proposals", {})["proposals"])
    assert not run.written()  # nothing applied by the rule itself (nor the rescue enabled: suggest only)
    out = alice.call("decide_proposal", {"proposal_id": props[0]["proposal_id"], "decision": "approve"})
    assert out["proposal"]["status"] == "approved"
    (w,) = [w for w in run.written() if w.row["cmd_id"] == out["applied"]["cmd_id"]]
    assert w.by("plateau") and w.params == {"lr": pytest.approx(0.005)}  # the rule's op, on the rule's name
    assert w.row.get("approved_by") == "alice"
    # A kernel applies the approved line as the rule's op (source rule, actor the rule).
    (e,) = [e for e in run.resume_in_kernel() if e.get("cmd_id") == w.row["cmd_id"]]
    assert e["decision"] == "applied" and (e["source"], e["actor"]) == ("rule", "plateau")
    assert e["payload"]["lr"]["new"] == pytest.approx(0.005)


def test_an_int_knob_halved_by_a_rule_is_written_as_an_int(tmp_path):
    box = {"accum": 5}
    accum = HotcbActuator("accum", ActuatorType.INT, apply_fn=lambda v, env: box.update(accum=v),
                          read_fn=lambda: box["accum"], min=1, max=64, group="train")
    run = RecordedRun(tmp_path, knobs=[accum])
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40,
                                                       "action": {"knob": "accum", "factor": 0.5}}}})
    (w,) = drive([pilot(run, cfg)], run, range(1, 200), plateau, until=lambda: run.ops("plateau", "train"))
    assert w.params == {"accum": 3} and isinstance(w.params["accum"], int)  # not 2.5


# ---------------------------------------------------------------------- divergence, non-finite
def test_divergence_cuts_lr_on_a_blow_up_and_not_on_the_noise_before_it(tmp_path):
    run = RecordedRun(tmp_path, lr=0.2)
    cfg = RulesConfig.from_dict({"rules": {"plateau": OFF}})
    p = pilot(run, cfg)
    curve = blowing_up(100, noise())
    assert drive([p], run, range(1, 100), curve) is None and not run.written()  # noise at 3: nothing
    (w,) = drive([p], run, range(100, 250), curve, until=lambda: run.ops("divergence"))
    assert w.params == {"lr": pytest.approx(0.1)}  # the live 0.2 halved
    assert "diverging" in w.reason
    assert w.step <= 115  # caught while climbing: within a few points of the blow-up's start


def test_nan_without_snapshots_cuts_lr_and_alerts(tmp_path):
    run = RecordedRun(tmp_path, lr=0.01)
    p = pilot(run, RulesConfig())
    (w,) = drive([p], run, range(1, 100), nan_from(31), until=lambda: run.ops("non_finite"))
    assert w.step == 35 and w.params == {"lr": pytest.approx(0.005)}  # the first tick that sees a NaN
    assert not run.ops("non_finite", "core")  # no snapshot: no rollback
    assert any(a["severity"] == "critical" for a in alerts(run, "non_finite"))


def test_nan_with_a_snapshot_rolls_back_then_cuts_lr(tmp_path):
    run = RecordedRun(tmp_path, lr=0.01)
    run.snapshots = [20]
    p = pilot(run, RulesConfig())
    drive([p], run, range(1, 100), nan_from(31), until=lambda: run.ops("non_finite"))
    ops = [w for w in run.written() if w.by("non_finite")]
    assert [(w.module, w.op) for w in ops] == [("core", "rollback"), ("opt", "set_params")]
    assert "roll back" in ops[0].reason and ops[1].params == {"lr": pytest.approx(0.005)}


def test_auto_mode_enables_the_kernels_rescue_once_and_the_rules_defer_to_it(tmp_path):
    run = RecordedRun(tmp_path, lr=0.01)
    p = pilot(run, RulesConfig.from_dict({"probe": False}), rescue=True)
    drive([p], run, range(1, 30), nan_from(1000))
    enable = [w for w in run.written() if w.by("rescue")]
    assert [(w.module, w.op, w.params, w.step) for w in enable] == [("rescue", "enable", {"probe": False}, 5)]
    run.rescue_enabled = True  # the kernel applied it: its status says so
    drive([p], run, range(30, 100), nan_from(31))
    assert len([w for w in run.written() if w.by("rescue")]) == 1
    assert not run.ops("non_finite") and not run.ops("divergence")  # the rescue acts in the kernel


# ---------------------------------------------------------------------- overfitting
def test_overfitting_raises_weight_decay_from_its_live_value_and_honours_the_yaml_cooldown(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text("rules:\n  plateau: {enabled: false}\n"
                 "  overfitting: {window: 60, warmup_steps: 60, cooldown_steps: 80, "
                 "action: {knob: weight_decay, factor: 2}}\n")
    cfg = RulesConfig.load(p)
    # The defaults' action for overfitting is an alert: same thresholds, no action configured.
    watch_cfg = RulesConfig.from_dict({"rules": {"plateau": OFF, "overfitting": {"window": 60, "warmup_steps": 60}}})
    assert watch_cfg.rules["overfitting"].action is None
    run = RecordedRun(tmp_path / "run", weight_decay=1e-4)
    acting, watch = pilot(run, cfg), pilot(run, watch_cfg, actor="watch")
    (first,) = drive([acting, watch], run, range(1, 400), memorising, until=lambda: run.ops("overfitting"))
    run.change("weight_decay", first.params["weight_decay"])  # the kernel applied it at this step
    (second,) = drive([acting, watch], run, range(run.step + 1, 400), memorising,
                      until=lambda: run.ops("overfitting")[1:])
    for w in (first, second):
        assert w.by("overfitting") and w.op == "set_params"
        assert "overfitting" in w.reason and "weight_decay" in w.reason
    # Resolved against the live value each time: 1e-4 -> 2e-4, then the new live 2e-4 -> 4e-4.
    assert first.params == {"weight_decay": pytest.approx(2e-4)}
    assert second.params == {"weight_decay": pytest.approx(4e-4)}
    # The YAML cooldown (80 steps) held between the two firings (alert steps are the ticks' steps).
    fired = [a["step"] for a in alerts(run, "overfitting", actor="rules")]
    assert len(fired) == 2 and fired[1] - fired[0] >= 80 and second.step - first.step >= 80
    # The default (alert only) saw the same overfitting and changed nothing.
    assert watch.findings and all(f.landed == 0 and f.refused == 0 for f in watch.findings)
    assert alerts(run, "overfitting", actor="watch")
    assert len(run.ops("overfitting")) == sum(f.landed for f in acting.findings)


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


def test_observer_reads_full_windows_of_dense_and_sparse_metrics(tmp_path):
    # train_loss every step, val_loss every 10 steps; memorisation-like curves.
    run = RecordedRun(tmp_path, max_steps=None)
    for s in range(1, 401):
        m = {"train_loss": 2.0 / s ** 0.5}
        if s % 10 == 0:
            m["val_loss"] = 1.0 + 0.002 * s
        run.log(s, **m)
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


# ---------------------------------------------------------------------- gradient spikes
def test_grad_spike_cuts_the_live_lr_once_within_the_yaml_cooldown(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  plateau: {enabled: false}\n  divergence: {enabled: false}\n  overfitting: {enabled: false}\n"
        "  grad_spike: {window: 30, cooldown_steps: 100000, action: {knob: lr, factor: 0.5}}\n")
    cfg = RulesConfig.load(tmp_path / "rules.yaml")
    # A watcher (sensor mode: alerts only) with a short cooldown sees both spikes.
    watch_cfg = RulesConfig.from_dict({"rules": {k: OFF for k in ("plateau", "divergence", "overfitting")}
                                       | {"grad_spike": {"window": 30, "cooldown_steps": 20}}})
    run = RecordedRun(tmp_path / "run", lr=0.01)
    curve = spiking({120, 170}, noise())
    drive([], run, range(1, 4), curve)
    run.change("lr", 0.004)  # alice's change, applied at step 3
    acting, watch = pilot(run, cfg), pilot(run, watch_cfg, actor="watch", mode="sense")
    # Ticks every 7 steps: neither spike is the latest point when a tick reads.
    drive([acting, watch], run, range(4, 231), curve, every=7)
    (w,) = run.ops("grad_spike")  # the second spike fell in the cooldown
    assert w.params == {"lr": pytest.approx(0.002)}  # the live lr (alice's), not the initial 0.01
    assert "grad_norm spiked" in w.reason and "at step 120" in w.reason
    assert 120 < w.step < 130
    # Every point since the last tick is examined: the watcher pinned both spikes to their steps.
    seen = " ".join(a["message"] for a in alerts(run, "grad_spike", actor="watch"))
    assert "at step 120" in seen and "at step 170" in seen
    assert not [x for x in run.written() if x.by("grad_spike") and x.module != "opt"]


def test_huge_thresholds_from_the_rules_file_do_not_fire(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  plateau: {enabled: false}\n  divergence: {enabled: false}\n"
        "  overfitting: {window: 60, warmup_steps: 60, gap_growth: 1000000, action: {knob: weight_decay, factor: 2}}\n"
        "  grad_spike: {window: 30, spike_factor: 1000000, action: {knob: lr, factor: 0.5}}\n")
    cfg = RulesConfig.load(tmp_path / "rules.yaml")
    assert cfg.rules["overfitting"].gap_growth == 1e6 and cfg.rules["grad_spike"].spike_factor == 1e6
    sensitive = {"overfitting": replace(cfg.rules["overfitting"], gap_growth=0.1),
                 "grad_spike": replace(cfg.rules["grad_spike"], spike_factor=5.0)}
    run = RecordedRun(tmp_path / "run", weight_decay=1e-4)
    curve = spiking({260}, noise(), base=memorising)
    p = pilot(run, cfg)
    # On the very data this pilot reads, default-like thresholds would have fired.
    would: set[str] = set()
    since = None
    for s in range(1, 301):
        run.log(s, **curve(s))
        if s % 5:
            continue
        p.tick()
        if check_overfitting("overfitting", sensitive["overfitting"], p.obs, {}):
            would.add("overfitting")
        if check_grad_spike("grad_spike", sensitive["grad_spike"], p.obs, {}, since=since):
            would.add("grad_spike")
        since = (p.obs.series.get("grad_norm") or ([since], []))[0][-1]
    assert would == {"overfitting", "grad_spike"}
    assert not p.findings
    assert not run.written()
    assert not alerts(run, "overfitting") and not alerts(run, "grad_spike")


# ---------------------------------------------------------------------- refusals
def test_guard_cooldown_refusal_is_recorded_and_the_rule_retries_when_the_knob_may_change(tmp_path):
    # The guard makes non-human sources wait 300 steps after any change of a knob; alice changes
    # lr at the start, so the plateau rule's first halving is refused by the guard.
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000},
                                           **QUIET}})
    run = RecordedRun(tmp_path, lr=0.01, guard=GuardConfig(cooldown_steps=300))
    drive([], run, range(1, 3), plateau)
    alice = human(run)
    alice.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.02}, "reason": "try"})
    run.change("lr", 0.02)  # the kernel applied alice's op at this step
    changed = run.step
    p = pilot(run, cfg)
    (w,) = drive([p], run, range(3, 700), plateau, until=lambda: run.ops("plateau"))
    refused = run.ops("plateau", refused=True)
    # The refusal is on the record: a line the kernel records, never applies (source rule, actor
    # the rule, its reason) ...
    assert len(refused) == 1, refused
    assert "plateau" in refused[0].reason and "must wait 300 steps" in refused[0].refused
    # ... and in the rule's alert, which says when it will try again.
    first = alerts(run, "plateau")[0]
    assert "refused" in first["message"] and f"will retry at step {changed + 300}" in first["message"]
    # The rule's own cooldown (100000 steps) did not swallow the finding: it acted when the
    # knob's cooldown ended, on the live value.
    assert w.step >= changed + 300
    assert w.params == {"lr": pytest.approx(0.01)}  # alice's live 0.02, halved
    assert [f.landed for f in p.findings if f.rule == "plateau"] == [0, 1]
    # A kernel records the refused line as rejected, with the guard's reason, and never applies it.
    (e,) = [e for e in run.resume_in_kernel() if e.get("cmd_id") == refused[0].row["cmd_id"]]
    assert (e["decision"], e["source"], e["actor"]) == ("rejected", "rule", "plateau")
    assert "must wait 300 steps" in e["error"]


def test_locked_knob_refusal_is_recorded_and_retried_after_the_rule_cooldown(tmp_path):
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 60},
                                           **QUIET}})
    run = RecordedRun(tmp_path, lr=0.01)
    drive([], run, range(1, 3), plateau)
    run.lock("lr", "alice")  # the kernel applied alice's lock
    p = pilot(run, cfg)
    drive([p], run, range(3, 300), plateau, until=lambda: run.ops("plateau", refused=True))
    run.lock("lr", "alice", lock=False)
    (w,) = drive([p], run, range(run.step + 1, 400), plateau, until=lambda: run.ops("plateau"))
    refused = run.ops("plateau", refused=True)
    assert len(refused) == 1 and "locked by alice" in refused[0].refused
    first = alerts(run, "plateau")[0]
    assert "locked by alice" in first["message"] and "after the rule's cooldown" in first["message"]
    # A lock has no known end: the rule re-checks after its own cooldown, not every guard cooldown.
    assert w.step >= first["step"] + 60
    assert w.params == {"lr": pytest.approx(0.005)}
    (e,) = [e for e in run.resume_in_kernel() if e.get("cmd_id") == refused[0].row["cmd_id"]]
    assert e["decision"] == "rejected" and "locked by alice" in e["error"]  # on the kernel's record too


def test_observer_finds_its_metrics_among_more_names_than_the_status_lists(tmp_path):
    # get_status lists at most MAX_SERIES names (losses and accuracies first); a rule watching a
    # low-ranked name (grad_norm, a knob echo) in a run that logs hundreds must still see it.
    from hotcb.mcp_server.tools_observe import MAX_SERIES

    run = RecordedRun(tmp_path, max_steps=None)
    junk = {f"layer{i:03d}_loss": 1.0 for i in range(MAX_SERIES + 50)}  # outrank grad_norm
    for s in range(1, 41):
        run.log(s, train_loss=1.0, grad_norm=float(s), **junk)
    tools = HotcbTools(tmp_path, source="rule")
    status = tools.get_status()
    assert "grad_norm" not in status.metrics and status.metrics_total > len(status.metrics)
    obs = Observer(tools)
    obs.refresh(["grad_norm", "no_such_metric"], 10)
    assert obs.window("grad_norm", 10)[1] == [float(s) for s in range(31, 41)]
    assert "no_such_metric" not in obs.series


def test_the_progress_line_shows_lr_among_more_names_than_the_status_lists(tmp_path):
    from hotcb.agent.launcher.progress import RunProgress
    from hotcb.mcp_server.tools_observe import MAX_SERIES

    run = RecordedRun(tmp_path, max_steps=None)
    junk = {f"layer{i:03d}_loss": 1.0 for i in range(MAX_SERIES + 50)}
    run.log(1, train_loss=0.5, val_acc=0.75, **{"opt/lr": 0.003}, **junk)
    snap = RunProgress(HotcbTools(tmp_path)).snapshot()
    assert (snap.loss, snap.lr, snap.val_acc) == (0.5, 0.003, 0.75)
