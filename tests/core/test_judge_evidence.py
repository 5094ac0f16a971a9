"""Every automated actor judged alike: a rollback of a healthy run is refused for every source
but a person, and an automated op's evidence must be a reading the kernel recorded itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotcb.jsonl_write import append_line
from tests.support.core_loop import Loop


@pytest.fixture
def loop(run_dir: Path):
    lp = Loop(run_dir, checkpoint_every=2)
    lp.run(6)
    yield lp
    lp.close()


@pytest.mark.parametrize("source", ["rule", "tune", "agent"])
@pytest.mark.parametrize("module", ["core", "rescue"])
def test_automated_rollback_of_a_healthy_run_is_refused(loop: Loop, source: str, module: str) -> None:
    assert loop.kernel.view().run_verdict in ("healthy", "warming")
    cmd = loop.send(module, "rollback", {}, source=source, actor="x", reason="the loss looked odd")
    loop.run(1)
    entry = loop.decision(cmd)
    assert entry["decision"] == "rejected"
    assert f"a rollback by {source} needs a run that is not healthy" in entry["error"]


def test_a_persons_rollback_of_a_healthy_run_is_applied(loop: Loop) -> None:
    cmd = loop.send("core", "rollback", {}, source="human", actor="ana")
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "applied"


def _rule_op(loop: Loop, cmd_id: str, value: float, evidence: dict | None) -> str:
    rec = {"cmd_id": cmd_id, "source": "rule", "actor": "plateau", "reason": "rule plateau: flat",
           "module": "opt", "op": "set_params", "params": {"lr": value}}
    if evidence is not None:
        rec["evidence"] = evidence
    append_line(loop.run_dir / "hotcb.commands.jsonl", rec)
    return cmd_id


def test_evidence_the_kernel_never_recorded_is_refused_and_named(loop: Loop) -> None:
    lr = loop.opt.param_groups[0]["lr"]
    real_step, real_value = loop.step_no, loop.losses[-1]
    fake_step = _rule_op(loop, "fake-step", lr * 0.5, {"metric": "train_loss", "step": 10**6, "value": 0.5})
    fake_value = _rule_op(loop, "fake-value", lr * 0.5, {"metric": "train_loss", "step": real_step, "value": 123.0})
    fake_metric = _rule_op(loop, "fake-metric", lr * 0.5, {"metric": "val_acc", "step": real_step, "value": 1.0})
    loop.run(1)
    for cmd in (fake_step, fake_value, fake_metric):
        e = loop.decision(cmd)
        assert e["decision"] == "rejected" and e["error"].startswith("evidence not in the kernel's metrics")
        assert e["evidence"]["metric"] in ("train_loss", "val_acc")
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(lr)
    # The reading the kernel did record: the op is judged as any other, and the ledger names it.
    real = _rule_op(loop, "real", lr * 0.5, {"metric": "train_loss", "step": real_step, "value": real_value})
    loop.run(1)
    e = loop.decision(real)
    assert e["decision"] == "applied"
    assert e["evidence"] == {"metric": "train_loss", "step": real_step, "value": pytest.approx(real_value)}
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)


def test_automation_without_evidence_and_a_person_with_any_evidence_work_as_before(loop: Loop) -> None:
    lr = loop.opt.param_groups[0]["lr"]
    plain = _rule_op(loop, "plain", lr * 0.5, None)
    loop.run(1)
    assert loop.decision(plain)["decision"] == "applied"
    cmd = loop.send("loss", "set_params", {"l2_w": 0.01}, source="human")
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "applied"


def test_malformed_evidence_is_refused_with_its_reason(loop: Loop) -> None:
    bad = _rule_op(loop, "bad-evidence", 0.01, {"metric": "train_loss", "step": -3, "value": 1.0})
    loop.run(1)
    e = loop.decision(bad)
    assert e["decision"] == "rejected" and "evidence.step" in e["error"]
