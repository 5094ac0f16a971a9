"""Every bad input gets one ledger decision with a reason, and training goes on (docs/core.md).

Each test drives a real torch training loop with a real kernel (tests/support/core_loop.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.core_loop import Loop


@pytest.fixture
def loop(run_dir: Path):
    lp = Loop(run_dir)
    lp.run(2)
    yield lp
    lp.close()


def assert_still_training(loop: Loop) -> None:
    """The run keeps stepping and a valid command after the bad one is applied."""
    lr_before = loop.opt.param_groups[0]["lr"]
    cmd = loop.send("opt", "set_params", {"lr": lr_before / 2})
    before = loop.step_no
    loop.run(3)
    assert loop.step_no == before + 3
    assert loop.decision(cmd)["decision"] == "applied"
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(lr_before / 2)
    assert loop.kernel.internal_errors == 0


def only_new_entry(loop: Loop, n_before: int) -> dict:
    entries = loop.ledger()[n_before:]
    assert len(entries) == 1, entries
    return entries[0]


def test_malformed_line_is_rejected_with_reason(loop: Loop) -> None:
    loop.write_raw('{"module": "opt", "op": "set_params", "params": {"lr": 0.1\n')
    loop.run(1)
    e = only_new_entry(loop, 0)
    assert e["decision"] == "rejected"
    assert "malformed JSON" in e["error"]
    assert e["raw"].startswith('{"module": "opt"')
    assert e["cmd_id"].startswith("auto-")
    assert_still_training(loop)


def test_json_array_line_is_rejected(loop: Loop) -> None:
    loop.write_raw('[{"module": "opt", "op": "set_params"}]\n')
    loop.run(1)
    e = only_new_entry(loop, 0)
    assert e["decision"] == "rejected"
    assert "must be a JSON object" in e["error"] and "list" in e["error"]
    assert_still_training(loop)


def test_missing_fields_are_rejected(loop: Loop) -> None:
    loop.write_raw(json.dumps({"cmd_id": "no-module", "op": "set_params", "params": {"lr": 0.01}}) + "\n")
    loop.run(1)
    e = loop.decision("no-module")
    assert e["decision"] == "rejected" and "module" in e["error"]
    assert_still_training(loop)


def test_half_written_line_is_read_once_complete(loop: Loop) -> None:
    line = json.dumps({"cmd_id": "half", "module": "loss", "op": "set_params", "params": {"l2_w": 0.001}})
    loop.write_raw(line[:25])
    loop.run(3)
    assert loop.ledger() == []  # nothing consumed without its newline
    assert loop.weights["l2_w"] == 0.0
    loop.write_raw(line[25:] + "\n")
    loop.run(1)
    e = loop.decision("half")
    assert e["decision"] == "applied" and e["payload"] == {"l2_w": {"old": 0.0, "new": 0.001}}
    assert loop.weights["l2_w"] == 0.001
    assert_still_training(loop)


@pytest.mark.parametrize("raw_value, reason", [
    ("NaN", "finite"), ("Infinity", "finite"), ("-Infinity", "finite"), ('"inf"', "finite"), ('"nan"', "finite"),
])
def test_non_finite_values_are_rejected(loop: Loop, raw_value: str, reason: str) -> None:
    loop.write_raw('{"cmd_id": "nf", "module": "opt", "op": "set_params", "params": {"lr": ' + raw_value + "}}\n")
    lr = loop.opt.param_groups[0]["lr"]
    loop.run(1)
    e = loop.decision("nf")
    assert e["decision"] == "rejected" and reason in e["error"]
    assert loop.opt.param_groups[0]["lr"] == lr
    assert_still_training(loop)


@pytest.mark.parametrize("module, params, reason", [
    ("opt", {"lr": 100.0}, "above its maximum"),
    ("opt", {"lr": -1e-3}, "positive"),
    ("opt", {"weight_decay": 2.0}, "above its maximum"),
    ("loss", {"ce_w": -0.5}, "below its minimum"),
    ("opt", {"lr": "fast"}, "must be a number"),
    ("opt", {"lr": [0.1, 0.2]}, "must be a number"),
    ("loss", {"ce_w": True}, "must be a number"),
    ("opt", {"momentum": 1.5}, "above its maximum"),
    ("opt", {"momentum": {"x": 1}}, "must be a number"),
])
def test_out_of_bounds_and_wrong_types_are_rejected(loop: Loop, module: str, params: dict, reason: str) -> None:
    before = loop.state.values()
    cmd = loop.send(module, "set_params", params)
    loop.run(1)
    e = loop.decision(cmd)
    assert e["decision"] == "rejected", e
    assert reason in e["error"]
    assert loop.state.values() == before
    assert_still_training(loop)


def test_all_keys_validated_before_any_is_applied(loop: Loop) -> None:
    cmd = loop.send("opt", "set_params", {"lr": 0.01, "weight_decay": float("nan")})
    lr = loop.opt.param_groups[0]["lr"]
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "rejected"
    assert loop.opt.param_groups[0]["lr"] == lr


def test_unknown_module_is_rejected_listing_known_ones(loop: Loop) -> None:
    cmd = loop.send("optimiser", "set_params", {"lr": 0.01})
    loop.run(1)
    e = loop.decision(cmd)
    assert e["decision"] == "rejected"
    assert "unknown module 'optimiser'" in e["error"] and "opt" in e["error"] and "loss" in e["error"]
    assert_still_training(loop)


def test_unknown_knob_is_rejected_listing_known_ones(loop: Loop) -> None:
    cmd = loop.send("opt", "set_params", {"gamma": 0.5})
    loop.run(1)
    e = loop.decision(cmd)
    assert e["decision"] == "rejected"
    assert "unknown knob opt.gamma" in e["error"] and "lr" in e["error"]
    cmd = loop.send("loss", "set_params", {"lr": 0.01})  # a real knob, wrong group
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "rejected"
    assert_still_training(loop)


def test_unknown_core_and_cb_ops_are_rejected(loop: Loop) -> None:
    a = loop.send("core", "explode")
    b = loop.send("cb", "enable", id="nope")
    loop.run(1)
    assert "unknown core op" in loop.decision(a)["error"]
    assert "no callback with id 'nope'" in loop.decision(b)["error"]
    assert_still_training(loop)


def test_missing_callback_file_fails_the_load(loop: Loop) -> None:
    cmd = loop.send("cb", "load", id="ghost",
                    target={"kind": "python_file", "path": "does_not_exist.py", "symbol": "Ghost"})
    loop.run(1)
    e = loop.decision(cmd)
    assert e["decision"] == "failed"
    assert "callback file not found" in e["error"]
    assert "ghost" not in loop.kernel.cb.callbacks
    assert_still_training(loop)


def test_unimportable_callback_module_fails_the_load(loop: Loop) -> None:
    cmd = loop.send("cb", "load", id="m", target={"kind": "module", "path": "hotcb.callbacks.no_such", "symbol": "X"})
    loop.run(1)
    e = loop.decision(cmd)
    assert e["decision"] == "failed" and "cannot import hotcb.callbacks.no_such" in e["error"]
    assert_still_training(loop)


def test_raising_callback_is_disabled_and_recorded(loop: Loop) -> None:
    (loop.run_dir / "bad_cb.py").write_text(
        "class Bad:\n"
        "    calls = 0\n"
        "    def handle(self, event, env):\n"
        "        Bad.calls += 1\n"
        "        if env['step'] >= 5:\n"
        "            raise RuntimeError('boom at step %d' % env['step'])\n"
    )
    cmd = loop.send("cb", "load", id="bad", target={"kind": "python_file", "path": "bad_cb.py", "symbol": "Bad"})
    loop.run(6)
    assert loop.decision(cmd)["decision"] == "applied"
    failures = [e for e in loop.ledger() if e["module"] == "cb" and e["decision"] == "failed"]
    assert len(failures) == 1
    assert failures[0]["id"] == "bad" and "boom at step 5" in failures[0]["error"]
    assert failures[0]["step"] == 5
    cb = loop.kernel.cb.callbacks["bad"]
    assert cb.enabled is False and cb.errors == 1
    alerts = [json.loads(x) for x in (loop.run_dir / "hotcb.alerts.jsonl").read_text().splitlines()]
    assert alerts[-1]["kind"] == "callback_error"
    actuators = json.loads((loop.run_dir / "hotcb.actuators.json").read_text())
    assert [c["state"] for c in actuators["callbacks"] if c["id"] == "bad"] == ["failed"]
    assert_still_training(loop)


def test_invalid_target_and_source_are_rejected(loop: Loop) -> None:
    loop.write_raw(json.dumps({"cmd_id": "t1", "module": "cb", "op": "load", "id": "x",
                               "target": {"kind": "url", "path": "http://x", "symbol": "X"}}) + "\n")
    loop.write_raw(json.dumps({"cmd_id": "t2", "module": "opt", "op": "set_params", "source": "martian",
                               "params": {"lr": 0.01}}) + "\n")
    loop.run(1)
    assert "target.kind" in loop.decision("t1")["error"]
    assert "unknown source 'martian'" in loop.decision("t2")["error"]
    assert_still_training(loop)


def test_duplicate_cmd_id_applies_once(loop: Loop) -> None:
    rec = {"cmd_id": "dup", "module": "loss", "op": "set_params", "params": {"l2_w": 0.01}}
    loop.write_raw(json.dumps(rec) + "\n")
    loop.run(1)
    loop.write_raw(json.dumps({**rec, "params": {"l2_w": 0.02}}) + "\n")
    loop.run(2)
    assert [e["cmd_id"] for e in loop.ledger()].count("dup") == 1
    assert loop.weights["l2_w"] == 0.01


def test_ledger_record_has_the_spec_fields(loop: Loop) -> None:
    cmd = loop.send("opt", "set_params", {"lr": 0.03}, source="agent", actor="claude", reason="plateau")
    loop.run(1)
    e = loop.decision(cmd)
    spec = {"seq", "cmd_id", "step", "epoch", "event", "module", "op", "id", "source", "actor", "decision",
            "params", "payload", "error", "wall_time"}
    assert spec <= set(e)
    assert (e["source"], e["actor"], e["reason"], e["event"], e["step"]) == ("agent", "claude", "plateau",
                                                                             "train_step_end", 3)
    assert e["payload"] == {"lr": {"old": 0.05, "new": 0.03}}
    assert e["seq"] == 1 and e["error"] is None
