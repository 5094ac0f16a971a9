"""Shared by the multi-process framework runs (tests/support/ddp_lightning.py, ddp_hf.py) and
their tests (tests/core/test_lifecycle_lightning_ddp.py, test_lifecycle_hf_ddp.py).

Script side (every rank): ``watch_writes`` records every file a process opens for writing (or
renames onto) inside the run directory, through an audit hook installed before hotcb is
imported; ``wait_gate`` holds a rank at a step until the controller says go.

Test side: ``drive`` runs the launcher command and, while it trains, writes an lr change
(``send_command``) at one gate and a loss-weight change (the ``hotcb`` CLI) at another;
``check_ranks`` asserts what both frameworks must show. Gates make the writes land at known steps
without timing anything: a rank waits at gate G after its last safe point of step G, so a command
written once both ranks are there is read at step G + 1, by rank 0, and broadcast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


# ---------------------------------------------------------------------- in the training script
def script_args() -> tuple[argparse.Namespace, dict[str, str]]:
    """The training scripts' command line (RUN_DIR OUT_DIR [--steps] [--gates]), with the write
    watch installed (before hotcb is imported) and this process's pid noted."""
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--gates", default="4,9")
    a = ap.parse_args()
    a.gates = {int(g) for g in a.gates.split(",") if g}
    writes = watch_writes(a.run_dir)
    note_pid(a.out_dir)
    return a, writes


def save_rank(out_dir: Path, rank: int, world_size: int, kernel: Any, seen: list[dict[str, Any]],
              params: Any, writes: dict[str, str]) -> None:
    """What ``check_ranks`` compares, as ``OUT_DIR/rank<r>.pt``."""
    import torch

    torch.save({
        "rank": rank, "world_size": world_size, "pid": os.getpid(),
        "is_writer": kernel.is_writer, "attached": kernel.dist is not None, "seen": seen,
        "params": [p.detach().clone() for p in params], "writes": dict(writes),
        "internal_errors": kernel.internal_errors, "last_internal_error": kernel.last_internal_error,
    }, Path(out_dir) / f"rank{rank}.pt")


def watch_writes(run_dir: Path) -> dict[str, str]:
    """Paths (relative to ``run_dir``) this process opens for writing or renames onto from now on,
    each with where it was first written from (a short stack)."""
    prefix = str(Path(run_dir).resolve()) + os.sep
    writes: dict[str, str] = {}

    def inside(p: Any) -> str | None:
        if isinstance(p, (str, bytes, os.PathLike)):
            s = os.path.abspath(os.fsdecode(p))
            if s.startswith(prefix):
                return s[len(prefix):]
        return None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and len(args) >= 3:  # open() and os.open()
            path, mode, flags = args[0], args[1], args[2]
            if isinstance(mode, str):
                writing = any(c in mode for c in "wax+")
            else:
                writing = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            rel = inside(path) if writing else None
        elif event == "os.rename" and len(args) >= 2:  # os.rename() and os.replace()
            rel = inside(args[1])
        else:
            return
        if rel is not None and rel not in writes:
            writes[rel] = ""  # first, so the stack's own file reads cannot re-enter here
            writes[rel] = "".join(traceback.format_stack(limit=8)[:-1])

    sys.addaudithook(hook)
    return writes


def note_pid(out_dir: Path) -> None:
    """Leave ``OUT_DIR/pids/<pid>``: torchrun starts its workers in their own sessions, so the
    test finds them here to kill them if the run fails."""
    d = Path(out_dir) / "pids"
    d.mkdir(exist_ok=True)
    (d / str(os.getpid())).touch()


def wait_gate(out_dir: Path, step: int, rank: int, timeout: float = 120.0) -> None:
    """Say this rank is at the gate (``at-<step>.<rank>``), then wait for ``go-<step>``. Called
    where no safe point of ``step`` is left (HF applies twice a step: step end, then log)."""
    (Path(out_dir) / f"at-{step}.{rank}").touch()
    go = Path(out_dir) / f"go-{step}"
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {go} within {timeout}s")
        time.sleep(0.02)


# ---------------------------------------------------------------------- in the test
def clean_env() -> dict[str, str]:
    """This interpreter's environment, hotcb importable, no launcher variables left over."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "LOCAL_WORLD_SIZE",
              "GROUP_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(k, None)
    return env


def status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "hotcb.status.json").read_text())
    except (OSError, ValueError):
        return {}


def drive(cmd: list[str], run_dir: Path, out: Path, lr_gate: int, w_gate: int, lr: float, mse: float,
          timeout: float = 180.0) -> None:
    """Run ``cmd``; at ``lr_gate`` send ``opt set_params lr`` (cmd_id ``lr-mid``), at ``w_gate``
    run ``hotcb loss set_params mse=...``; wait for a clean exit."""
    from hotcb.client import send_command
    from hotcb.ops import make_command
    from hotcb.rundir import RunDir
    from tests.support.proc import wait_for

    env = clean_env()
    with open(out / "train.log", "wb") as log:
        # Own session: on failure the launcher and every rank it started are killed together.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def tail() -> str:
            return (out / "train.log").read_text(errors="replace")[-6000:]

        def reach(step: int) -> None:
            at = [out / f"at-{step}.{r}" for r in (0, 1)]
            wait_for(lambda: all(p.exists() for p in at) or proc.poll() is not None,
                     timeout=timeout, what=f"both ranks at gate {step}")
            assert proc.poll() is None, tail()
            assert status(run_dir)["step"] == step, tail()

        try:
            reach(lr_gate)
            send_command(RunDir(run_dir), make_command("opt", "set_params", {"lr": lr}, cmd_id="lr-mid"))
            (out / f"go-{lr_gate}").touch()
            reach(w_gate)
            cli = subprocess.run([sys.executable, "-m", "hotcb.cli", "loss", "set_params", "--dir", str(run_dir),
                                  "--wait", "0", f"mse={mse}"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=60)
            assert cli.returncode == 0, cli.stderr
            (out / f"go-{w_gate}").touch()
            assert proc.wait(timeout=timeout) == 0, tail()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            kill_ranks(out)


def kill_ranks(out: Path) -> None:
    """SIGKILL the training processes that noted their pid (``note_pid``) and still run it."""
    for f in (Path(out) / "pids").glob("*"):
        try:
            pid = int(f.name)
            if str(out) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)
        except (ValueError, OSError):
            pass


def check_ranks(run_dir: Path, out: Path, steps: int, lr_gate: int, w_gate: int, lr: tuple[float, float],
                mse: tuple[float, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every framework must show after ``drive``; returns both ranks' records."""
    import torch

    from tests.support.proc import read_jsonl

    r0, r1 = (torch.load(Path(out) / f"rank{r}.pt") for r in (0, 1))
    assert (r0["rank"], r0["world_size"], r1["rank"], r1["world_size"]) == (0, 2, 1, 2)
    assert r0["attached"] and r1["attached"]  # the adapter found the framework's process group
    assert r0["is_writer"] and not r1["is_writer"]
    assert r0["internal_errors"] == r1["internal_errors"] == 0, (r0["last_internal_error"], r1["last_internal_error"])

    # Same knob trajectory on both ranks, step for step; each change lands right after its gate.
    assert r0["seen"] == r1["seen"]
    by_step = {s["step"]: s for s in r0["seen"]}
    assert sorted(by_step) == list(range(1, steps + 1))
    assert [by_step[s]["lr"] for s in (lr_gate, lr_gate + 1, steps)] == [lr[0], lr[1], lr[1]]
    assert [by_step[s]["mse"] for s in (w_gate, w_gate + 1, steps)] == [mse[0], mse[1], mse[1]]
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"], strict=True))

    # One entry per op, written by rank 0 alone, at the step both ranks applied it.
    ledger = read_jsonl(Path(run_dir) / "hotcb.applied.jsonl")
    assert [(e["module"], e["op"], e["decision"], e["step"]) for e in ledger] == [
        ("opt", "set_params", "applied", lr_gate + 1), ("loss", "set_params", "applied", w_gate + 1)], ledger
    assert ledger[0]["cmd_id"] == "lr-mid"

    # Rank 1 wrote nothing in the run directory (not the ledger, metrics, status or actuators file),
    # not even while its kernel existed before the process group did.
    assert r1["writes"] == {}, r1["writes"]
    assert {"hotcb.applied.jsonl", "hotcb.metrics.jsonl", "hotcb.status.json"} <= set(r0["writes"])
    metrics = read_jsonl(Path(run_dir) / "hotcb.metrics.jsonl")
    assert {m["step"] for m in metrics} == set(range(1, steps + 1))
    st = status(run_dir)
    assert (st["pid"], st["rank"], st["world_size"], st["closed"]) == (r0["pid"], 0, 2, True)
    return r0, r1
