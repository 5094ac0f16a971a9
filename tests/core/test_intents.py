"""At most once for side effects, exactly once for decisions: intents, refused lines under their
writer's id, stale temp files, transient write errors on a person's command."""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import pytest

from hotcb.jsonl import read_json
from hotcb.jsonl_write import append_line
from hotcb.locks import KnobLocks
from hotcb.ops import make_command
from tests.support.core_loop import Loop
from tests.support.proc import Trainer, wait_for

# A callback whose constructor has a side effect, then the process dies (SIGKILL) before the
# kernel can write a decision.
CRASHING_CB = """
import os, signal

class Crash:
    def __init__(self, **kw):
        with open(os.path.join(os.path.dirname(__file__), "side.txt"), "a") as f:
            f.write("constructed\\n")
        os.kill(os.getpid(), signal.SIGKILL)

    def handle(self, event, env):
        pass
"""


def test_sigkill_inside_a_callback_constructor_runs_it_once_and_records_interrupted(run_dir: Path) -> None:
    (run_dir / "crash_cb.py").write_text(CRASHING_CB)
    first = Trainer(run_dir, sleep=0.01)
    first.wait_step(3)
    load = make_command("cb", "load", id="crash", target={"kind": "python_file", "path": "crash_cb.py",
                                                          "symbol": "Crash"}, cmd_id="load-crash")
    append_line(run_dir / "hotcb.commands.jsonl", load)
    assert first.proc.wait(60) == -9  # killed itself inside the constructor
    first.log.close()
    assert (run_dir / "side.txt").read_text() == "constructed\n"
    second = Trainer(run_dir, sleep=0.01)
    try:
        second.wait_step(first.status().get("step", 0) + 5)  # it did not construct (and die) again
        assert second.alive()
        entries = [e for e in second.ledger() if e["cmd_id"] == "load-crash"]
        assert len(entries) == 1 and entries[0]["decision"] == "interrupted"
        assert entries[0]["module"] == "cb" and entries[0]["op"] == "load" and entries[0]["id"] == "crash"
        assert "not run again" in entries[0]["error"]
    finally:
        second.stop()
    assert (run_dir / "side.txt").read_text() == "constructed\n"  # the side effect ran once


def test_refused_lines_are_decided_under_their_writers_id(run_dir: Path) -> None:
    loop = Loop(run_dir)
    try:
        loop.run(1)
        huge = json.dumps({"cmd_id": "too-long", "module": "loss", "op": "set_params",
                           "params": {"x": "a" * (1 << 20)}})
        deep = '{"cmd_id":"too-deep","module":"loss","op":"set_params","params":' + '{"a":' * 70 + "1" + "}" * 70 + "}"
        broken = '{"cmd_id":"not-json","module":"loss","op":"set_params","params":{"l2_w":0.1}'
        nested_only = '{"module":"core","op":"cancel","params":{"cmd_id":"someone-else"},"x":' + "[" * 80 + "]" * 80 + "}"
        bad_id = json.dumps({"cmd_id": "x" * 200, "module": "loss", "op": "set_params", "params": {"l2_w": 0.1}})
        loop.write_raw("\n".join([huge, deep, broken, nested_only, bad_id]) + "\n")
        loop.run(2)
        assert "line of" in loop.decision("too-long")["error"]
        assert "nested deeper" in loop.decision("too-deep")["error"]
        assert "malformed JSON" in loop.decision("not-json")["error"]
        ids = [e["cmd_id"] for e in loop.ledger()]
        assert "someone-else" not in ids  # an id nested inside params is not the line's
        autos = [e for e in loop.ledger() if e["cmd_id"].startswith("auto-")]
        assert len(autos) == 2
        assert any("cmd_id must be a non-empty string of at most 128 characters" in e["error"] for e in autos)
        assert all(e["decision"] == "rejected" for e in loop.ledger())
    finally:
        loop.close()


def test_stale_temp_files_are_removed_at_start(run_dir: Path) -> None:
    stale = run_dir / ".hotcb.actuators.json.k1l2m3.tmp"
    stale.write_text('{"half": ')
    other = run_dir / ".hotcb.status.json.abc.tmp"
    other.write_text("")
    ckpt = run_dir / "hotcb.checkpoints"
    ckpt.mkdir()
    (ckpt / "step-000000005.tmp").write_bytes(b"half a snapshot")
    foreign = ckpt / "step-000000005.rank1.tmp"  # another rank's: left to it
    foreign.write_bytes(b"")
    mine = run_dir / "notes.tmp"  # not hotcb's
    mine.write_text("keep")
    loop = Loop(run_dir, checkpoint_every=2, checkpoint_on_disk=True)
    try:
        assert not stale.exists() and not other.exists()
        assert not (ckpt / "step-000000005.tmp").exists()
        assert foreign.exists() and mine.exists()
        loop.run(4)
        assert sorted(p.name for p in ckpt.iterdir() if p.suffix == ".tmp") == [foreign.name]
    finally:
        loop.close()


def test_a_failed_snapshot_leaves_no_tmp(run_dir: Path) -> None:
    loop = Loop(run_dir, checkpoint_on_disk=True)
    try:
        loop.run(1)

        class Unpicklable:
            def state_dict(self) -> dict:
                return {"f": lambda: None}  # torch.save cannot pickle it

            def load_state_dict(self, state: dict) -> None:
                pass

        loop.kernel.register_state("bad", Unpicklable())
        with pytest.raises((pickle.PicklingError, AttributeError)):  # by pickler
            loop.kernel.snapshots.take(1, {}, "test")
        assert [p.name for p in (run_dir / "hotcb.checkpoints").iterdir() if p.suffix == ".tmp"] == []
    finally:
        loop.close()


def test_a_persons_command_during_a_full_disk_is_held_and_applied_once_space_returns(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop(run_dir)
    failures = {"left": 3}
    save = KnobLocks.save

    def full_disk(self: KnobLocks, is_writer: bool) -> None:  # the disk edge: ENOSPC, then space again
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        save(self, is_writer)

    monkeypatch.setattr(KnobLocks, "save", full_disk)
    try:
        loop.run(1)
        cmd = loop.send("loss", "set_params", {"l2_w": 0.001}, lock=True, cmd_id="human-lock", actor="ana")
        loop.run(1)
        assert [e for e in loop.ledger() if e["cmd_id"] == "human-lock"] == []  # held, not refused
        assert "held" in (loop.kernel.last_internal_error or "")
        wait_for(lambda: (loop.run(1), failures["left"] == 0)[1], 30, what="the fault to clear")
        loop.run(2)
        entry = loop.decision(cmd)
        assert entry["decision"] == "applied"
        assert loop.weights["l2_w"] == pytest.approx(0.001)
        assert "l2_w" in read_json(run_dir / "hotcb.actuators.json")["locks"]
    finally:
        loop.close()


def test_a_persons_freeze_during_a_full_disk_is_applied_not_rejected(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hotcb.offstep as offstep  # the status file is written there (off the step, or now)
    from hotcb.freeze import FreezeState

    loop = Loop(run_dir, watch_interval_s=0.0, status_interval_s=0.0)
    real = offstep.write_json_atomic
    failures = {"left": 3}

    def full_disk(path, obj) -> None:  # the disk edge: the status file cannot be written for a while
        if Path(path).name == "hotcb.status.json" and failures["left"] > 0:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, obj)

    try:
        loop.run(1)
        monkeypatch.setattr(offstep, "write_json_atomic", full_disk)
        FreezeState(mode="prod", source="human", actor="ana", cmd_id="fz-1").save(run_dir / "hotcb.freeze.json")
        loop.run(2)
        entry = loop.decision("fz-1")
        assert entry["decision"] == "applied", entry
        assert loop.kernel.freeze.mode == "prod"
        wait_for(lambda: (loop.run(1), failures["left"] == 0)[1], 30, what="the fault to clear")
        # Published once space returns, by the off-step writer: waited on, not assumed at the next step.
        wait_for(lambda: (loop.run(1), read_json(run_dir / "hotcb.status.json")["freeze_mode"] == "prod")[1], 30,
                 what="the status to say prod")
    finally:
        loop.close()


@pytest.mark.parametrize(("head", "expected"), [
    ('{"cmd_id":"abc","x":', "abc"),
    ('{"params":{"cmd_id":"nested"},"cmd_id":"top"', "top"),  # only the line's own, top-level id
    ('{"a":"\\"cmd_id\\":\\"fake\\"","cmd_id":"real"', "real"),  # an id quoted inside a string is text
    ('{"a":"x\\\\","cmd_id":"after-escaped-backslash"', "after-escaped-backslash"),
    ('{"a":["}","{"],"cmd_id":"brackets-in-strings"', "brackets-in-strings"),
    ('{"cmd_id":"q\\u0041"', "qA"),
    ('{"cmd_id":5,', None),
    ('{"cmd_id":"' + "x" * 200 + '"', None),  # malformed: the refusal goes under an auto id
    ('[{"cmd_id":"in-a-list"}]', None),
    ('{"a":"' + '\\"' * 20000, None),  # an unterminated string of escaped quotes: no id, no stall
])
def test_cmd_id_read_from_a_refused_lines_head(head: str, expected: str | None) -> None:
    from hotcb.ops import cmd_id_from_head

    assert cmd_id_from_head(head) == expected
