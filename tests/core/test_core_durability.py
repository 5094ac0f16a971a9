"""Concurrency, restart and rotation of the commands file against real training processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hotcb.filewatch import ring
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from tests.support.core_loop import Loop
from tests.support.proc import Trainer, wait_for

WRITER = r"""
import os, sys, time
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
run, wid, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(n):
    # a distinct value per command: a value already in force would be decided "unchanged"
    rec = make_command("loss", "set_params", {"mse_w": 1.0 + (wid * n + i + 1) * 1e-4}, cmd_id=f"w{wid}-{i:04d}",
                       actor=f"writer{wid}")
    append_line(os.path.join(run, "hotcb.commands.jsonl"), rec)
"""


def commands_in_file(run_dir: Path) -> list[str]:
    lines = (run_dir / "hotcb.commands.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a whole line
    return [json.loads(line)["cmd_id"] for line in lines[:-1]]  # every line parses: none torn


@pytest.mark.slow
def test_four_writers_1000_commands_exactly_once_in_file_order(run_dir: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Trainer(run_dir, sleep=0.005) as t:
        t.wait_step(3)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(w), "250", str(go)], env=env)
                   for w in range(4)]
        time.sleep(0.5)  # all four interpreters are up and spinning on the start file
        go.touch()
        assert [w.wait(60) for w in writers] == [0, 0, 0, 0]
        wait_for(lambda: len(t.ledger()) >= 1000, 90, what="1000 ledger decisions")
        assert t.alive()
        ledger = t.ledger()
    in_file = commands_in_file(run_dir)
    assert len(in_file) == 1000 and len(set(in_file)) == 1000
    ids = [e["cmd_id"] for e in ledger]
    assert Counter(ids).most_common(1)[0][1] == 1  # exactly once
    assert ids == in_file  # in file order
    assert all(e["decision"] == "applied" for e in ledger)
    assert [e["seq"] for e in ledger] == list(range(1, 1001))
    for w in range(4):  # each writer's own order is kept
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == sorted(mine) and len(mine) == 250


@pytest.mark.slow
def test_sigkill_restart_applies_nothing_twice_and_loses_nothing(run_dir: Path) -> None:
    commands = run_dir / "hotcb.commands.jsonl"
    sent: list[str] = []
    stop = threading.Event()

    def writer() -> None:  # keeps writing before, during and after the crash
        for i in range(300):
            if stop.is_set():
                return
            rec = make_command("loss", "set_params", {"l1_w": (i + 1) * 1e-5}, cmd_id=f"c{i:04d}")
            append_line(commands, rec)
            sent.append(rec["cmd_id"])
            time.sleep(0.003)

    t1 = Trainer(run_dir, sleep=0.005)
    t1.wait_step(2)
    th = threading.Thread(target=writer)
    th.start()
    wait_for(lambda: len(t1.ledger()) >= 60, 60, what="some decisions")
    t1.kill()  # SIGKILL, mid-run, with commands still arriving
    seen_at_kill = len(t1.ledger())
    wait_for(lambda: len(sent) >= seen_at_kill + 40, 30, what="commands written while down")
    th.join(60)
    assert len(sent) == 300
    assert seen_at_kill < 300  # the crash happened with work left to do
    with Trainer(run_dir, sleep=0.005) as t2:
        wait_for(lambda: len(t2.ledger()) >= 300, 60, what="all 300 decisions after restart")
        time.sleep(0.2)
        ledger = t2.ledger()
    ids = [e["cmd_id"] for e in ledger]
    assert Counter(ids).most_common(1)[0][1] == 1  # nothing applied twice
    assert set(ids) == set(sent)  # nothing lost
    assert ids == sent  # still in file order across the restart
    assert [e["seq"] for e in ledger] == list(range(1, 301))  # seq continues after the restart
    # A kill that lands inside a handler (its intent on file, no decision yet) leaves that one
    # command "interrupted": at most once for side effects, never run again.
    interrupted = [e for e in ledger if e["decision"] == "interrupted"]
    assert len(interrupted) <= 1
    assert all(e["decision"] == "applied" for e in ledger if e not in interrupted)
    assert len({e["step"] for e in ledger[seen_at_kill:]}) >= 1


def test_rotated_commands_file_is_detected(run_dir: Path) -> None:
    lp = Loop(run_dir)
    a = lp.send("loss", "set_params", {"l2_w": 0.001})
    lp.run(2)
    (run_dir / "hotcb.commands.jsonl").rename(run_dir / "hotcb.commands.jsonl.1")  # logrotate-style
    b = lp.send("loss", "set_params", {"l2_w": 0.002})
    lp.run(2)
    assert lp.kernel.status()["commands_file_resets"] == 1
    assert [e["cmd_id"] for e in lp.ledger()] == [a, b]
    assert lp.weights["l2_w"] == 0.002
    lp.close()


def test_truncated_and_rewritten_commands_file_is_detected(run_dir: Path) -> None:
    lp = Loop(run_dir)
    first = [lp.send("loss", "set_params", {"l2_w": 0.001}) for _ in range(2)]
    lp.run(2)
    path = run_dir / "hotcb.commands.jsonl"
    path.write_text("")  # truncated in place (same inode) ...
    # ... and rewritten past the old offset before the kernel looks again
    later = [lp.send("loss", "set_params", {"l2_w": 0.003}, reason="x" * 50) for _ in range(3)]
    lp.write_raw(json.dumps(make_command("loss", "set_params", {"l2_w": 0.001}, cmd_id=first[0])) + "\n")
    lp.run(2)
    assert lp.kernel.status()["commands_file_resets"] >= 1
    ids = [e["cmd_id"] for e in lp.ledger()]
    assert ids == first + later  # the re-sent old command is not applied again
    assert lp.weights["l2_w"] == 0.003
    lp.close()


def test_commands_file_rewritten_at_the_same_size_is_detected(run_dir: Path) -> None:
    # An editor's save: the same inode, the same size, one command's id and value changed. Only
    # the bytes already read show it; the kernel reads the file again and skips what it decided.
    lp = Loop(run_dir)
    kept = lp.send("loss", "set_params", {"l2_w": 0.001})
    edited = lp.send("loss", "set_params", {"l2_w": 0.001})
    lp.run(2)
    path = run_dir / "hotcb.commands.jsonl"
    before = os.stat(path)
    new_id = "e" * len(edited)
    text = path.read_text().replace(edited, new_id).replace('"l2_w":0.001}', '"l2_w":0.002}')
    with open(path, "r+") as f:  # in place: the same inode
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # a later mtime, whatever its tick
    after = os.stat(path)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    ring(path)  # looked at the next step (else within command_check_s)
    lp.run(2)
    assert lp.kernel.status()["commands_file_resets"] == 1
    assert [e["cmd_id"] for e in lp.ledger()] == [kept, edited, new_id]  # nothing applied twice
    assert lp.weights["l2_w"] == 0.002
    os.utime(path, ns=(after.st_atime_ns, after.st_mtime_ns + 2_000_000))  # touched only: nothing to read
    ring(path)
    lp.run(2)
    assert lp.kernel.status()["commands_file_resets"] == 1
    lp.close()


def test_commands_file_rewritten_with_the_same_head_is_detected(run_dir: Path) -> None:
    # Truncated and written again past the old offset, its first line unchanged: the bytes just
    # before the offset differ.
    lp = Loop(run_dir)
    first = lp.send("loss", "set_params", {"l2_w": 0.001})
    second = lp.send("loss", "set_params", {"l2_w": 0.001}, reason="a")
    lp.run(2)
    path = run_dir / "hotcb.commands.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0])  # the same inode: truncated, the first line kept (unrung)
    later = lp.send("loss", "set_params", {"l2_w": 0.003}, reason="b" * 40)
    lp.run(2)
    assert lp.kernel.status()["commands_file_resets"] == 1
    assert [e["cmd_id"] for e in lp.ledger()] == [first, second, later]
    assert lp.weights["l2_w"] == 0.003
    lp.close()


def test_torn_tail_from_a_dead_writer_is_sealed(run_dir: Path) -> None:
    lp = Loop(run_dir)
    lp.write_raw('{"cmd_id": "torn", "module": "loss", "op": "set_p')  # a writer died mid-line
    ok = lp.send("loss", "set_params", {"l2_w": 0.004})  # the next whole-line writer seals it
    lp.run(1)
    entries = lp.ledger()
    assert entries[0]["decision"] == "rejected" and "malformed JSON" in entries[0]["error"]
    assert entries[1]["cmd_id"] == ok and entries[1]["decision"] == "applied"
    lp.close()
