"""Metric lines written in batches off the step: every line reaches the file, once, in order --
after a flush, a close, a normal exit (even with a forked child exiting too), a rollback, a full
disk -- and a reader in another part of the program sees them without anyone flushing.

Behaviour only: the background writer is given a long delay where a test needs to know what is
still pending, and waited for (with a generous deadline) where a test needs it to write."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from hotcb.mcp_server import HotcbTools

from hotcb import HotKernel
from hotcb.jsonl import read_all
from hotcb.jsonl_write import LineAppender
from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop
from tests.support.proc import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600.0  # a delay the background writer never reaches within a test


def steps_in(path: Path) -> list[int]:
    return [r["step"] for r in read_all(path)]


def test_batched_lines_wait_for_a_flush_then_land_in_order(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    out = LineAppender(path, delay_s=HOUR)
    for step in range(1, 301):
        out.append({"step": step})
    assert not path.exists()  # held in memory: the step paid no write
    out.flush()
    assert steps_in(path) == list(range(1, 301))
    for step in range(301, 401):
        out.append({"step": step})
    out.append('{"step":401}')  # a line given as text is written as it is
    out.close()
    assert steps_in(path) == list(range(1, 402))


def test_the_background_writer_writes_without_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    out = LineAppender(path, delay_s=0.05)
    for step in range(1, 51):
        out.append({"step": step})
    wait_for(lambda: steps_in(path) == list(range(1, 51)), 30, what="the batch written off the appending thread")
    out.close()


def test_a_reader_through_the_tools_sees_the_last_step_without_a_flush(run_dir: Path) -> None:
    kernel = HotKernel(run_dir)  # the default batching: written within metrics_flush_s of the step
    for step in range(1, 41):
        kernel.apply(env={"step": step, "metrics": {"train_loss": 1.0 / step}})
    tools = HotcbTools(run_dir)

    def last_seen() -> bool:
        out = tools.call("read_trends", {"metrics": ["train_loss"]})
        return (out.get("step_range") or [0, 0])[1] == 40  # None until the first line is written

    wait_for(last_seen, 30, what="read_trends to reach step 40 with no flush, close or further step")
    kernel.close()


def test_a_decision_is_ledgered_after_the_metrics_that_led_to_it(run_dir: Path) -> None:
    """With a core rollback and a rescue rollback in the run: each decision's reader finds every
    metric line before its step already in the file; after close every step is there once, in order."""
    lp = Loop(run_dir, metrics_flush_s=HOUR)
    rescue_of(lp.kernel).configure(enabled=True, probe=False)
    lp.run(10)
    lp.send("core", "checkpoint")
    lp.run(10)
    assert steps_in(lp.run_dir / "hotcb.metrics.jsonl") == list(range(1, 11))  # flushed by step 11's decision
    lp.send("core", "rollback")
    lp.run(70)
    rollback = next(e for e in lp.ledger() if e["op"] == "rollback")
    assert rollback["decision"] == "applied" and rollback["step"] == 21
    assert steps_in(lp.run_dir / "hotcb.metrics.jsonl") == list(range(1, 21))
    lp.nan_loss = True
    lp.step()  # step 91: a non-finite loss, rolled back by the rescue at once
    lp.nan_loss = False
    rescue = [e for e in lp.ledger() if e["module"] == "rescue" and e["op"] == "rollback"]
    assert rescue and rescue[-1]["decision"] == "applied" and rescue[-1]["step"] == 91
    assert steps_in(lp.run_dir / "hotcb.metrics.jsonl") == list(range(1, 91))
    lp.run(5)
    lp.close()
    rows = read_all(lp.run_dir / "hotcb.metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 97))
    assert rows[90]["metrics"]["train_loss"] == "nan"  # the blow-up itself is recorded


def test_a_normal_exit_writes_every_line_once_even_with_a_forked_child(tmp_path: Path) -> None:
    """No close: the interpreter's exit writes the pending lines. A child forked mid-run that
    exits normally too must not write the parent's pending lines a second time."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from hotcb import HotKernel
        kernel = HotKernel({str(run)!r}, metrics_flush_s={HOUR})
        for step in range(1, 501):
            kernel.apply(env={{"step": step, "metrics": {{"train_loss": 1.0 / step}}}})
            if step == 250:
                pid = os.fork()
                if pid == 0:
                    sys.exit(0)  # a child's normal exit runs the exit handlers it inherited
                os.waitpid(pid, 0)
        sys.exit(0)  # without kernel.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    rows = read_all(run / "hotcb.metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 501))
    assert rows[-1]["metrics"]["train_loss"] == 1.0 / 500


def test_a_full_disk_holds_the_lines_and_writes_them_once_there_is_room(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    out = LineAppender(path, delay_s=HOUR)
    for step in range(1, 11):
        out.append({"step": step, "pad": "x" * 100})
    out.flush()
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 500, hard))
        for step in range(11, 41):
            out.append({"step": step, "pad": "x" * 100})
        try:
            out.flush()
            raise AssertionError("the batch fit a file capped below its size")
        except OSError:
            pass
        assert steps_in(path) == list(range(1, 11))  # the partial batch was taken back
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    out.append({"step": 41, "pad": ""})
    out.close()
    raw = path.read_text().splitlines()
    assert all(json.loads(line) for line in raw)  # no torn line
    assert [json.loads(line)["step"] for line in raw] == list(range(1, 42))


def test_a_file_replaced_under_the_writer_gets_the_later_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    out = LineAppender(path, delay_s=HOUR)
    out.append({"step": 1})
    out.flush()
    os.replace(path, tmp_path / "rotated.jsonl")
    path.write_text('{"step":0}\n{"torn":')  # a new file, its last line torn by a writer that died
    out._next_check = 0.0  # the once-a-second check of the path, due now
    out.append({"step": 2})
    out.close()
    assert steps_in(tmp_path / "rotated.jsonl") == [1]
    assert steps_in(path) == [0, 2]  # the torn line sealed as one malformed line, skipped


def test_a_metrics_file_that_cannot_be_written_never_raises_into_the_loop(run_dir: Path, tmp_path: Path) -> None:
    """A symlink planted where the metrics file goes: refused at every write, counted and
    published as an internal error; neither a decision's flush nor close raises."""
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text("")
    os.symlink(elsewhere, run_dir / "hotcb.metrics.jsonl")
    kernel = HotKernel(run_dir, metrics_flush_s=HOUR)
    for step in range(1, 21):
        kernel.apply(env={"step": step, "metrics": {"train_loss": 1.0}})
    kernel.publish_status()  # writes the queued lines first: refused
    kernel.close()
    assert kernel.internal_errors >= 2 and "symlink" in (kernel.last_internal_error or "")
    assert elsewhere.read_text() == ""  # never written through the link
