"""Start and stop real training processes from tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRAINER = Path(__file__).with_name("trainer.py")


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]
    except FileNotFoundError:
        return []


class Trainer:
    """A training subprocess over ``run_dir`` (tests/support/trainer.py)."""

    def __init__(self, run_dir: str | os.PathLike[str], *args: str, steps: int = 100000, sleep: float = 0.01):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.run_dir / "trainer.log", "ab")
        cmd = [sys.executable, str(TRAINER), "--dir", str(run_dir), "--steps", str(steps), "--sleep", str(sleep), *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / "hotcb.status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_step(self, step: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.status().get("step", 0) >= step or self.proc.poll() is not None,
                 timeout, what=f"step {step}")
        if self.proc.poll() is not None and self.status().get("step", 0) < step:
            raise AssertionError(f"trainer exited early: {(self.run_dir / 'trainer.log').read_text()[-2000:]}")

    def ledger(self) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir / "hotcb.applied.jsonl")

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir / "hotcb.metrics.jsonl")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
