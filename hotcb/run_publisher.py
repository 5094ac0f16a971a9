"""What the kernel publishes about its run for every reader (the tools, the autopilot, the
dashboard): the heartbeat ``hotcb.status.json`` (a ``StatusRecord``) and the knobs in force
``hotcb.actuators.json``. Only the rank that owns the run's files writes them. The heartbeat is
written off the step (``hotcb.offstep``) at most once per ``status_interval_s``; a forced status
(a pause, a stop, a freeze switch, an error) is written at once.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .heartbeat import Heartbeat
from .jsonl_write import write_json_atomic
from .offstep import LatestFile
from .ops import CB, CORE, RESCUE, TUNE
from .records import StatusRecord


class RunPublisher:
    def __init__(self, kernel: Any, status_interval_s: float) -> None:
        self.kernel = kernel
        self.heartbeat = Heartbeat(status_interval_s)
        self.started = time.time()
        self.status_file = LatestFile(kernel.run.status)

    def status(self) -> dict[str, Any]:
        """The heartbeat as ``hotcb.status.json`` holds it: a ``StatusRecord``, the one form every
        reader parses."""
        k = self.kernel
        freeze, player = k.freeze_switch.freeze, k.freeze_switch.player
        return StatusRecord(
            pid=os.getpid(), host=socket.gethostname(), session=k.session,
            step=k.step, epoch=k.epoch, wall_time=time.time(), started_at=self.started,
            paused=k.core.paused, stop_requested=k.core.stop_requested, closed=k.closed,
            freeze_mode=freeze.mode, freeze_source=freeze.source, steps_per_s=self.heartbeat.steps_per_s,
            replay=player.status() if player else None,
            scheduled=len(k.schedule), commands_file_resets=k.commands.tail.reset_count,
            internal_errors=k.internal_errors, last_internal_error=k.last_internal_error,
            max_steps=k.max_steps, snapshots=k.snapshots.steps(),
            rank=k.dist.rank if k.dist else 0, world_size=k.dist.world_size if k.dist else 1,
            heartbeat_interval_s=self.heartbeat.interval_s,
            rescue=k.modules[RESCUE].status(),
        ).to_json()

    def write_status(self, force: bool = False) -> None:
        """The status if the heartbeat is due (``force``: now, and written before returning)."""
        k = self.kernel
        if self.heartbeat.beat(k.step, force) and k.is_writer:
            if force or k.closed:
                self.status_file.write_now(self.status())
            else:  # the heartbeat: written off the step
                self.status_file.post(self.status())
                if self.status_file.last_error is not None:
                    k.note_error(self.status_file.last_error)
                    self.status_file.last_error = None

    def publish_actuators(self) -> None:
        """Write ``hotcb.actuators.json``: the knobs, callbacks, locks and policies in force."""
        k = self.kernel
        if not k.is_writer:
            return
        write_json_atomic(k.run.actuators, {
            "step": k.step,
            "wall_time": time.time(),
            "seq": k.ledger.seq,  # the last decision this view includes (wait_decision waits for it)
            "actuators": k.state.describe_all(),
            "callbacks": k.cb.describe(),
            "locks": k.locks,
            "guard": k.guard.to_dict(),
            "code_policy": k.code.to_dict(),
            "modules": sorted(k.state.groups() | {CB, CORE, TUNE, RESCUE}),
        })

    def close(self) -> None:
        """Stop the off-step writer thread (a forced status is still written, at once)."""
        self.status_file.close()
