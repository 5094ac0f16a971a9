"""No line can lose or wedge the command stream: any file size, poison
lines, failed ledger writes, hostile callbacks, hostile files."""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path

import pytest
import torch

from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from tests.support.core_loop import Loop
from tests.support.proc import Trainer, read_jsonl, wait_for


def _cmds(n: int, prefix: str, start: float = 1.0) -> list[dict]:
    return [make_command("loss", "set_params", {"l2_w": (start + i) * 1e-5}, cmd_id=f"{prefix}{i:03d}")
            for i in range(n)]


@pytest.mark.slow
def test_exactly_once_past_64_mib_across_a_restart(run_dir: Path) -> None:
    """Item 4: a ledger past the old 64 MiB read cap: a restarted trainer applies nothing twice."""
    filler = {"seq": 0, "cmd_id": "", "decision": "applied", "module": "loss", "op": "set_params",
              "pad": "x" * 4000}
    with open(run_dir / "hotcb.applied.jsonl", "w") as f:
        line = json.dumps(filler) + "\n"
        for i in range(17_500):  # ~70 MB
            f.write(line.replace('"cmd_id": ""', f'"cmd_id": "fill-{i}"'))
    assert (run_dir / "hotcb.applied.jsonl").stat().st_size > (64 << 20)
    first = _cmds(24, "a-")
    for rec in first:
        append_line(run_dir / "hotcb.commands.jsonl", rec)
    with Trainer(run_dir, steps=100000, sleep=0.005) as t:
        wait_for(lambda: sum(1 for e in read_all(run_dir / "hotcb.applied.jsonl")
                             if str(e.get("cmd_id", "")).startswith("a-")) == 24, 120, what="24 decisions")
        t.stop()
    with Trainer(run_dir, steps=100000, sleep=0.005) as t:
        t.wait_step(t.status().get("step", 0) + 20, timeout=120)
        mark = make_command("loss", "set_params", {"l2_w": 0.5}, cmd_id="after-restart")
        append_line(run_dir / "hotcb.commands.jsonl", mark)
        wait_for(lambda: any(e.get("cmd_id") == "after-restart" for e in read_all(run_dir / "hotcb.applied.jsonl")),
                 120, what="the command after the restart")
    ids = [e.get("cmd_id") for e in read_all(run_dir / "hotcb.applied.jsonl")]
    assert all(ids.count(r["cmd_id"]) == 1 for r in first)  # none applied twice


def test_a_huge_command_line_is_refused_with_a_digest_not_echoed(run_dir: Path) -> None:
    """Item 4: a 20 MB line is one bounded ledger entry (its size and digest), never the value."""
    lp = Loop(run_dir)
    lp.run(1)
    big = make_command("loss", "set_params", {"l2_w": "9" * (20 << 20)}, cmd_id="huge")
    append_line(run_dir / "hotcb.commands.jsonl", big)
    after = _cmds(3, "ok-")
    for rec in after:
        append_line(run_dir / "hotcb.commands.jsonl", rec)
    lp.run(3)
    ledger_size = (run_dir / "hotcb.applied.jsonl").stat().st_size
    assert ledger_size < 100_000
    entries = lp.ledger()
    [e] = [e for e in entries if e["decision"] == "rejected"]
    assert "exceeds the limit" in e["error"] and "sha256" in e["error"]
    assert [lp.decision(r["cmd_id"])["decision"] for r in after] == ["applied"] * 3
    lp.close()


def test_a_large_value_under_the_line_limit_is_stored_as_a_digest(run_dir: Path) -> None:
    lp = Loop(run_dir)
    lp.run(1)
    cmd = lp.send("loss", "set_params", {"l2_w": 0.001, "note": "y" * 200_000})
    lp.run(2)
    e = lp.decision(cmd)
    assert e["decision"] == "rejected"
    assert e["params"]["note"]["truncated"] is True and e["params"]["note"]["bytes"] > 200_000
    assert len(e["error"]) < 2100
    assert max(len(line) for line in (run_dir / "hotcb.applied.jsonl").read_text().splitlines()) < 70_000
    lp.close()


@pytest.mark.slow
def test_poison_lines_get_a_decision_and_never_wedge_the_stream_across_restarts(run_dir: Path) -> None:
    """Item 5: a 10k-deep line and a 600-deep value are refused; every later command is decided,
    once, and a restart decides nothing again."""
    with open(run_dir / "hotcb.commands.jsonl", "w") as f:
        f.write("[" * 10_000 + "]" * 10_000 + "\n")
        deep: object = 1
        for _ in range(600):
            deep = {"a": deep}
        f.write(json.dumps(make_command("loss", "set_params", {"l2_w": 0.001}, cmd_id="deep") | {"x": deep}) + "\n")
        f.write(json.dumps({"module": "loss", "op": "set_params", "params": {"l2_w": 0.002}}) + "\n")  # no cmd_id
        f.write(json.dumps(make_command("loss", "set_params", {"l2_w": 0.003}) | {"cmd_id": ""}) + "\n")
        for rec in _cmds(5, "good-"):
            f.write(json.dumps(rec) + "\n")
    with Trainer(run_dir, steps=100000, sleep=0.005) as t:
        wait_for(lambda: len(t.ledger()) >= 9, 120, what="nine decisions")
        t.stop()
    first = read_jsonl(run_dir / "hotcb.applied.jsonl")
    assert [e["decision"] for e in first[:4]] == ["rejected"] * 4
    assert "nested deeper" in first[0]["error"] and "nested deeper" in first[1]["error"]
    assert "cmd_id is required" in first[2]["error"] and "cmd_id must be" in first[3]["error"]
    assert [e["cmd_id"] for e in first[4:9]] == [f"good-{i:03d}" for i in range(5)]
    with Trainer(run_dir, steps=100000, sleep=0.005) as t:
        t.wait_step(t.status().get("step", 0) + 30, timeout=120)
        append_line(run_dir / "hotcb.commands.jsonl", make_command("loss", "set_params", {"l2_w": 0.4}, cmd_id="late"))
        wait_for(lambda: any(e["cmd_id"] == "late" for e in t.ledger()), 60, what="a command after the restart")
    assert len(read_jsonl(run_dir / "hotcb.applied.jsonl")) == 10  # the restart re-decided nothing


def test_a_failed_ledger_write_loses_nothing_and_is_retried(run_dir: Path) -> None:
    """Item 5: a full disk (the OS's file-size limit, EFBIG) mid-batch: the decision is held, no
    later line is decided or lost, no line is torn; once there is room every command is decided
    once, in order."""
    lp = Loop(run_dir)
    lp.send("loss", "set_params", {"l2_w": 0.5})
    lp.run(2)
    lp.kernel.flush_metrics()  # the metrics file's size, below, as the steps so far left it
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        for rec in _cmds(20, "d-"):
            append_line(run_dir / "hotcb.commands.jsonl", rec)
        cap = max(os.path.getsize(run_dir / "hotcb.applied.jsonl"), os.path.getsize(run_dir / "hotcb.metrics.jsonl"),
                  os.path.getsize(run_dir / "hotcb.commands.jsonl")) + 700
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, hard))
        lp.run(5)  # at most one or two decisions fit; the rest must wait, not vanish
        decided_while_full = len([e for e in read_all(run_dir / "hotcb.applied.jsonl") if e.get("cmd_id", "").startswith("d-")])
        assert decided_while_full < 20 and lp.kernel.ledger.pending
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    lp.run(5)
    raw = (run_dir / "hotcb.applied.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in raw)  # no torn line
    ids = [e["cmd_id"] for e in lp.ledger() if e["cmd_id"].startswith("d-")]
    assert ids == [f"d-{i:03d}" for i in range(20)]
    assert lp.kernel.step == 12
    lp.close()


# ---------------------------------------------------------------------- callbacks (item 6)
HOSTILE = """
import sys, time

class Exits:
    def handle(self, event, env):
        raise SystemExit(3)

class Interrupts:
    def handle(self, event, env):
        raise KeyboardInterrupt

class Spins:
    def handle(self, event, env):
        while True:
            pass

class Sleeps:
    def handle(self, event, env):
        time.sleep(1.5)
"""


@pytest.mark.parametrize("symbol, what", [("Exits", "SystemExit"), ("Interrupts", "KeyboardInterrupt"),
                                          ("Spins", "timed out"), ("Sleeps", "timed out")])
def test_a_callback_cannot_end_or_hang_training(run_dir: Path, symbol: str, what: str) -> None:
    (run_dir / "hostile.py").write_text(HOSTILE)
    lp = Loop(run_dir, callback_timeout_s=0.3)
    cmd = lp.send("cb", "load", id="h", target={"kind": "python_file", "path": "hostile.py", "symbol": symbol})
    for _ in range(4):
        lp.step()
    assert lp.decision(cmd)["decision"] == "applied"
    [e] = [e for e in lp.ledger() if e["op"] == "handle"]
    assert e["decision"] == "failed" and what in e["error"], e
    assert not lp.kernel.cb.callbacks["h"].enabled and lp.step_no == 4
    lp.close()


def test_a_callback_file_that_exits_at_import_fails_its_load_on_every_restart(run_dir: Path) -> None:
    (run_dir / "bye.py").write_text("import sys\nsys.exit(0)\n")
    (run_dir / "hotcb.yaml").write_text("callbacks:\n  bye:\n    target: {kind: python_file, path: bye.py, symbol: X}\n")
    for _restart in range(2):
        lp = Loop(run_dir, watch_interval_s=0.0)
        for _ in range(400):
            lp.step()
            if any(e["op"] == "load" for e in lp.ledger()[-1:]):
                break
            time.sleep(0.002)
        failed = [e for e in lp.ledger() if e["op"] == "load"]
        assert failed and all(e["decision"] == "failed" and "SystemExit" in e["error"] for e in failed)
        lp.close()


# ---------------------------------------------------------------------- files (item 7)
def test_hostile_yaml_is_refused_off_the_step(run_dir: Path) -> None:
    lp = Loop(run_dir, watch_interval_s=0.0)
    lp.run(1)
    (run_dir / "hotcb.yaml").write_text("knobs:\n" + "".join(f"  k{i}: {i}\n" for i in range(200_000)))  # ~3 MB
    wait = lambda: [e for e in lp.ledger() if e["op"] == "desired_state"]  # noqa: E731
    for _ in range(2000):
        lp.step()
        if wait():
            break
        time.sleep(0.001)
    assert "larger than" in wait()[-1]["error"]
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    (run_dir / "hotcb.yaml").write_text(bomb)
    for _ in range(2000):
        lp.step()
        if len(wait()) >= 2:
            break
        time.sleep(0.001)
    assert "alias" in wait()[-1]["error"]
    assert max(len(line) for line in (run_dir / "hotcb.applied.jsonl").read_text().splitlines()) < 5000
    lp.close()


@pytest.mark.parametrize("name", ["hotcb.commands.jsonl", "hotcb.applied.jsonl"])
def test_symlinked_run_files_are_never_followed(run_dir: Path, tmp_path: Path, name: str) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    if name == "hotcb.commands.jsonl":
        lp = Loop(run_dir, command_check_s=0)  # the link is looked at the next step, not 20 ms on
        lp.run(1)
        append_line(target, make_command("opt", "set_params", {"lr": 0.02}, cmd_id="via-link"))
        (run_dir / name).symlink_to(target)
        lp.run(3)
        [e] = [e for e in lp.ledger() if e["op"] == "read_file"]
        assert e["decision"] == "rejected" and "symlink" in e["error"] and name in e["error"]
        assert lp.opt.param_groups[0]["lr"] == 0.05  # nothing read through the link
    else:
        (run_dir / name).symlink_to(target)
        lp = Loop(run_dir)
        lp.send("opt", "set_params", {"lr": 0.02})
        lp.run(3)
        assert "symlink" in (lp.kernel.ledger.write_error or "")
    assert target.read_text().count("\n") <= 1  # never written through
    lp.close()


def test_a_fifo_in_place_of_a_run_file_never_hangs_the_training_process(run_dir: Path) -> None:
    """A named pipe where a run file belongs, with no writer: opening one to read blocks until
    a writer comes, so a kernel that opened it would hang its step (or its construction) for
    good. The real training process keeps stepping, the files it watches each get a recorded
    refusal, and a command still goes through."""
    for name in ("hotcb.freeze.json", "hotcb.yaml", "hotcb.autopilot.json", "hotcb.locks.json",
                 "hotcb.intents.jsonl"):
        os.mkfifo(run_dir / name)
    with Trainer(run_dir, steps=100000, sleep=0.005) as t:
        t.wait_step(20, timeout=60)
        names = {"hotcb.freeze.json", "hotcb.yaml", "hotcb.autopilot.json", "hotcb.locks.json", "hotcb.intents.jsonl"}
        wait_for(lambda: names <= {(e.get("params") or {}).get("file") for e in t.ledger() if e["op"] == "read_file"},
                 30, what="the refusals of the watched files")
        refused = [e for e in t.ledger() if e["op"] == "read_file"]
        assert len(refused) == len(names) and all("FIFO" in e["error"] and e["decision"] == "rejected" for e in refused)
        append_line(run_dir / "hotcb.commands.jsonl", make_command("opt", "set_params", {"lr": 0.005}, cmd_id="c1"))
        step = t.status()["step"]
        wait_for(lambda: any(e["cmd_id"] == "c1" for e in t.ledger()), 30, what="the command's decision")
        t.wait_step(step + 20, timeout=60)
    [c1] = [e for e in read_jsonl(run_dir / "hotcb.applied.jsonl") if e["cmd_id"] == "c1"]
    assert c1["decision"] in ("applied", "failed", "rejected")  # decided, whatever the broken intents file made of it


def test_snapshot_files_are_never_followed_nor_waited_on(run_dir: Path, tmp_path: Path) -> None:
    """On-disk snapshots are run files too: a FIFO planted as a snapshot must not hang the
    kernel's start-up (it reads the snapshots it finds), a link planted as a snapshot is not
    read through, and a link planted where the next snapshot's temp file goes is not written
    through (it would overwrite whatever it points at, outside the run directory)."""
    ckpt = run_dir / "hotcb.checkpoints"
    ckpt.mkdir()
    os.mkfifo(ckpt / "step-000000001.pt")
    elsewhere = tmp_path / "elsewhere.pt"
    torch.save({"step": 2, "states": {}, "knobs": {"lr": 9.0}, "reason": "planted"}, elsewhere)
    (ckpt / "step-000000002.pt").symlink_to(elsewhere)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    with Trainer(run_dir, "--checkpoint-every", "10", "--on-disk", steps=100000, sleep=0.05) as t:
        t.wait_step(2, timeout=60)
        assert not {1, 2} & set(t.status()["snapshots"])  # neither the FIFO nor the link is a snapshot
        (ckpt / "step-000000040.tmp").symlink_to(victim)  # after start-up's clean-up of temp files
        t.wait_step(45, timeout=60)
        assert max(t.status()["snapshots"]) >= 40  # the snapshot of step 40 was taken all the same
    assert victim.read_text() == "precious\n"


def test_a_linked_snapshot_folder_is_never_written_through(run_dir: Path, tmp_path: Path) -> None:
    """``hotcb.checkpoints`` replaced by a link to a folder elsewhere: no snapshot lands there;
    a person's checkpoint fails naming the link, and the loop goes on."""
    other = tmp_path / "other"
    other.mkdir()
    (run_dir / "hotcb.checkpoints").symlink_to(other)
    lp = Loop(run_dir, checkpoint_on_disk=True, checkpoint_every=5, command_check_s=0)
    lp.run(12)
    cmd = lp.send("core", "checkpoint")
    lp.run(2)
    e = lp.decision(cmd)
    assert e["decision"] == "failed" and "symlink" in e["error"]
    assert list(other.iterdir()) == [] and lp.step_no == 14
    lp.close()


def test_freeze_file_recipe_paths_stay_inside(run_dir: Path) -> None:
    lp = Loop(run_dir, watch_interval_s=0.0)
    lp.run(1)
    (run_dir / "hotcb.freeze.json").write_text(json.dumps({"mode": "replay", "recipe_path": "/etc/passwd",
                                                           "cmd_id": "f1", "source": "human"}))
    lp.run(2)
    e = lp.decision("f1")
    assert e["decision"] == "rejected" and "outside the run directory" in e["error"]
    assert lp.kernel.freeze.mode == "off"
    lp.close()
