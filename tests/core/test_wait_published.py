"""A tool that waits for an op's decision returns once the run's published view includes it:
the kernel writes the ledger line first and ``hotcb.actuators.json`` just after, and a caller
that reads the knobs or locks next must not see the view from before the op (a loaded CI box
showed it: an unlock decided, then describe_actuators still named the lock's holder)."""

from __future__ import annotations

import threading

from hotcb import client
from hotcb.client import wait_decision
from hotcb.jsonl import read_json
from hotcb.jsonl_write import append_line, write_json_atomic
from hotcb.rundir import RunDir


def decided(run: RunDir, seq: int, decision: str) -> None:
    append_line(run.ledger, {"seq": seq, "cmd_id": f"c{seq}", "decision": decision, "module": "opt", "op": "set_params"})


def test_an_applied_decision_waits_for_the_view_that_includes_it(tmp_path):
    run = RunDir(tmp_path)
    write_json_atomic(run.actuators, {"seq": 4, "locks": {"lr": {"actor": "alice"}}})
    decided(run, 5, "applied")
    published = threading.Event()

    def publish() -> None:
        write_json_atomic(run.actuators, {"seq": 5, "locks": {}})
        published.set()

    timer = threading.Timer(0.2, publish)
    timer.start()
    entry, _ = wait_decision(run, "c5", timeout_s=30)
    timer.join()
    assert entry is not None and entry["decision"] == "applied"
    assert published.is_set() and read_json(run.actuators)["locks"] == {}


def test_a_refusal_or_an_unpublished_view_does_not_hold_the_caller(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    write_json_atomic(run.actuators, {"seq": 4})
    decided(run, 5, "rejected")  # nothing changed: nothing to wait for
    entry, _ = wait_decision(run, "c5", timeout_s=30)
    assert entry is not None and read_json(run.actuators)["seq"] == 4
    monkeypatch.setattr(client, "PUBLISH_WAIT_S", 0.05)
    decided(run, 6, "applied")  # never published (a crash just after the ledger line): bounded
    entry, _ = wait_decision(run, "c6", timeout_s=30)
    assert entry is not None and read_json(run.actuators)["seq"] == 4
    write_json_atomic(run.actuators, {"step": 1})  # a kernel that writes no seq is not waited for
    decided(run, 7, "applied")
    monkeypatch.setattr(client, "PUBLISH_WAIT_S", 60.0)
    entry, _ = wait_decision(run, "c7", timeout_s=30)
    assert entry is not None
