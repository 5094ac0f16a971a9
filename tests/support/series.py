"""Recorded series: a run directory exactly as a training process leaves it, written step by step
from the test, so the rules autopilot (real ``RulesAutopilot`` over real ``HotcbTools``) can be
driven over a known curve in milliseconds.

What a kernel publishes is written here with hotcb's own writers where they stand alone: metric
records by ``MetricsCollector`` (the kernel's collector, non-finite values tagged as it tags
them), knob descriptions by real actuators (``optimizer_actuators`` over an SGD's param groups
and ``loss_actuators``, as tests/support/trainer.py builds them), the guard's and code policy's
own ``to_dict``. The status file has the keys ``HotKernel.status`` publishes, and like the kernel
the status is written every step, the knobs only when they change (tests/agent/test_rules_series.py
checks both files against a real kernel's). No kernel reads the commands file: what the autopilot
writes there (and the step at which it appeared) is what tests assert on. A change the kernel
would have applied is recorded with ``change`` (the knob's live value and last change step).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hotcb import loss_actuators, mutable_state, optimizer_actuators
from hotcb.actuators.actuator import HotcbActuator
from hotcb.collector import MetricsCollector
from hotcb.guard import GuardConfig
from hotcb.jsonl import read_all
from hotcb.jsonl_write import write_json_atomic
from hotcb.judge import CodePolicy
from hotcb.rundir import RunDir

Metrics = dict[str, float]


class SGDGroups:
    """The part of ``torch.optim.SGD`` that ``optimizer_actuators`` reads and writes: its param
    groups (a real SGD's first construction imports torch's compiler stack, seconds; the format
    test compares the knobs described over both)."""

    def __init__(self, **group: float):
        self.param_groups = [dict(group)]


@dataclass(frozen=True)
class Written:
    """One line the autopilot appended to ``hotcb.commands.jsonl``, and the run's step when it did."""

    step: int
    row: dict[str, Any]

    @property
    def module(self) -> str:
        return self.row["module"]

    @property
    def op(self) -> str:
        return self.row["op"]

    @property
    def params(self) -> dict[str, Any]:
        return self.row.get("params") or {}

    @property
    def reason(self) -> str:
        return self.row.get("reason") or ""

    @property
    def refused(self) -> str | None:
        """The tool surface's early refusal (the kernel records it, never applies it)."""
        return self.row.get("refused")

    def by(self, actor: str, source: str = "rule") -> bool:
        return self.row.get("source") == source and self.row.get("actor") == actor


class RecordedRun:
    """``RecordedRun(tmp_path, lr=0.01)``; ``run.log(step, train_loss=..)``; ``run.written()``.

    The knobs are those of tests/support/trainer.py (``opt``: lr, weight_decay, momentum; ``loss``:
    mse_w, l1_w) plus ``knobs``; ``max_steps`` is published as the trainer publishes it."""

    def __init__(self, root: str | os.PathLike[str], *, lr: float = 0.01, weight_decay: float = 0.0,
                 max_steps: int | None = 100000, guard: GuardConfig | None = None,
                 knobs: Iterable[HotcbActuator] = ()):
        self.run = RunDir(root)
        self.optimizer = SGDGroups(lr=lr, momentum=0.9, weight_decay=weight_decay)
        self.weights = {"mse_w": 1.0, "l1_w": 0.0}
        self.state = mutable_state(optimizer_actuators(self.optimizer) + loss_actuators(self.weights) + list(knobs))
        self.guard = guard or GuardConfig()
        self.collector = MetricsCollector(self.run.metrics)
        self.max_steps = max_steps
        self.step = 0
        self.snapshots: list[int] = []
        self.locks: dict[str, dict[str, Any]] = {}
        self.rescue_enabled = False
        self.started = time.time()
        self.seq = 0  # one per change or lock: the ledger seq the kernel's view would carry
        self._written: list[Written] = []
        self._read = 0
        self.publish_knobs()
        self.publish()

    # ------------------------------------------------------------------ what the kernel publishes
    def log(self, step: int, **metrics: float) -> None:
        """One step's metric record (non-finite values included), then the step's status."""
        self.step = step
        record: dict[str, Any] = dict(metrics)
        for a in self.state:  # the kernel echoes each numeric knob's live value as group/key
            if isinstance(a.value, (int, float)) and not isinstance(a.value, bool):
                record.setdefault(f"{a.group}/{a.param_key}", a.value)
        self.collector.record(step, record, epoch=step // 100)
        self.publish()

    def change(self, key: str, value: Any) -> None:
        """The kernel applied a change of ``key`` at this step (its live value, its last change step)."""
        self.state.get(key).apply(value, {"optimizer": self.optimizer}, self.step)
        self.seq += 1
        self.publish_knobs()

    def lock(self, key: str, actor: str, lock: bool = True) -> None:
        if lock:
            self.locks[key] = {"actor": actor, "step": self.step, "ts": time.time()}
        else:
            self.locks.pop(key, None)
        self.seq += 1
        self.publish_knobs()

    def publish_knobs(self) -> None:
        """``hotcb.actuators.json``: like the kernel, only when a knob or lock changed."""
        write_json_atomic(self.run.actuators, {
            "step": self.step, "wall_time": time.time(), "seq": self.seq,
            "actuators": self.state.describe_all(), "callbacks": [], "locks": self.locks, "guard": self.guard.to_dict(), "code_policy": CodePolicy.build(self.run.root).to_dict(),
            "modules": sorted(self.state.groups() | {"cb", "core", "tune", "rescue"}),
        })

    def publish(self) -> None:
        """``hotcb.status.json``, every step (the kernel's heartbeat)."""
        write_json_atomic(self.run.status, {
            "pid": os.getpid(), "host": socket.gethostname(), "session": "recorded", "step": self.step,
            "epoch": self.step // 100, "wall_time": time.time(), "started_at": self.started, "paused": False,
            "stop_requested": False, "closed": False, "freeze_mode": "off", "freeze_source": "human",
            "steps_per_s": None, "replay": None, "scheduled": 0, "commands_file_resets": 0, "internal_errors": 0,
            "last_internal_error": None, "max_steps": self.max_steps, "snapshots": list(self.snapshots),
            "rank": 0, "world_size": 1, "heartbeat_interval_s": 0.5,
            "rescue": {"enabled": self.rescue_enabled, "verdict": "warming", "level": None, "noise": 0.0,
                       "rescues": 0, "probe": "off", "descent": "off", "last_action": None, "can_roll_back": bool(self.snapshots)},
        })

    # ------------------------------------------------------------------ what the autopilot wrote
    def written(self) -> list[Written]:
        """Every command line so far; a line is dated by the step at which it was first read."""
        rows = [r for r in read_all(self.run.commands) if isinstance(r, dict)]
        self._written += [Written(self.step, r) for r in rows[self._read:]]
        self._read = len(rows)
        return list(self._written)

    def resume_in_kernel(self) -> list[dict[str, Any]]:
        """A real ``HotKernel`` opens this run directory over the same knobs and guard and reaches
        one safe point, as a training process started now would: every command line written so
        far is judged and applied (or recorded as refused) once. Returns its ledger."""
        from hotcb import HotKernel

        kernel = HotKernel(self.run.root, mutable_state=self.state, guard=self.guard, status_interval_s=0.0)
        try:
            kernel.apply(env={"step": self.step + 1, "optimizer": self.optimizer})
        finally:
            kernel.close()
        return [e for e in read_all(self.run.ledger) if isinstance(e, dict)]

    def ops(self, actor: str, module: str = "opt", *, refused: bool | None = False) -> list[Written]:
        """The lines a rule wrote for ``module`` (``refused``: only refused ones, None: both)."""
        return [w for w in self.written() if w.by(actor) and w.module == module
                and (refused is None or bool(w.refused) == refused)]


Curve = Callable[[int], Metrics]


def drive(pilots: Iterable[Any], run: RecordedRun, steps: Iterable[int], curve: Curve, *, every: int = 5,
          until: Callable[[], Any] | None = None) -> Any:
    """Log ``curve(step)`` for each step, ticking every pilot every ``every`` steps (a live
    autopilot ticks every few steps, not at each one); stop when ``until()`` is truthy, and return
    it (else None after the last step)."""
    pilots = list(pilots)
    for step in steps:
        run.log(step, **curve(step))
        if step % every:
            continue
        for p in pilots:
            p.tick()
        run.written()  # date what the tick wrote by this step
        if until is not None:
            got = until()
            if got:
                return got
    return None
