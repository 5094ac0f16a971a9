"""The controller's side of the run directory, shared by the CLI and the tool surface:
write a command, wait for its ledger decision, tell whether the training process is alive."""

from __future__ import annotations

import os
import time
from typing import Any

from .jsonl import JsonlTail, read_json
from .jsonl_write import append_line
from .ops import parse_command
from .records import StatusRecord
from .rundir import NO_TRAINING_YET, RunDir

# A heartbeat older than this many status intervals (or seconds, whichever is larger) is stale.
STALE_INTERVALS = 10
STALE_MIN_S = 5.0


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(run: RunDir) -> StatusRecord | None:
    """The status the kernel last wrote (``hotcb.status.json``); None before any training process
    wrote one. A malformed file still gives a record: its unreadable fields in ``problems``."""
    doc = read_json(run.status)
    return None if doc is None else StatusRecord.from_json(doc)


def liveness(run: RunDir, status: StatusRecord | None = None) -> dict[str, Any]:
    """``{"state": "running"|"paused"|"stopped"|"dead"|"absent"|"stale", "reason": ...}``."""
    status = status if status is not None else read_status(run)
    if status is None or (status.pid is None and status.wall_time is None):  # nothing names a process
        return {"state": "absent", "reason": f"{NO_TRAINING_YET} in this run directory"}
    if status.closed:
        return {"state": "stopped", "reason": f"training ended at step {status.step}"}
    if not pid_alive(status.pid) and status.host in (None, _host()):
        return {"state": "dead", "reason": f"training process {status.pid} is gone (last step {status.step})"}
    age = time.time() - (status.wall_time or 0.0)
    limit = max(STALE_MIN_S, STALE_INTERVALS * (status.heartbeat_interval_s or 0.5))
    if age > limit:
        return {"state": "stale", "reason": f"no heartbeat for {age:.0f}s (last step {status.step})"}
    return {"state": "paused" if status.paused else "running", "reason": None}


def _host() -> str:
    import socket

    return socket.gethostname()


def send_command(run: RunDir, record: dict[str, Any]) -> dict[str, Any]:
    """Validate and append one command record; returns it."""
    parse_command(record)
    append_line(run.commands, record)
    return record


def find_decision(run: RunDir, cmd_id: str, tail: JsonlTail | None = None) -> dict[str, Any] | None:
    tail = tail or JsonlTail(run.ledger)
    for entry in tail.values():
        if isinstance(entry, dict) and entry.get("cmd_id") == cmd_id:
            return entry
    return None


PUBLISH_WAIT_S = 2.0  # the longest a decided op waits for its published view (written just after)


def _wait_published(run: RunDir, entry: dict[str, Any], deadline: float) -> None:
    """An applied decision's effects as the run publishes them: the kernel writes the ledger line
    first and ``hotcb.actuators.json`` just after, so a caller that reads the knobs, locks or
    callbacks next (describe_actuators) could see the view from before the op. Bounded; a file
    without ``seq`` (an older kernel) is not waited for."""
    seq = entry.get("seq")
    if entry.get("decision") != "applied" or isinstance(seq, bool) or not isinstance(seq, int):
        return
    limit = min(deadline, time.monotonic() + PUBLISH_WAIT_S)
    while True:
        doc = read_json(run.actuators)
        published = doc.get("seq") if isinstance(doc, dict) else None
        if isinstance(published, bool) or not isinstance(published, int) or published >= seq:
            return
        if time.monotonic() >= limit:
            return
        time.sleep(0.005)


def wait_decision(run: RunDir, cmd_id: str, timeout_s: float = 10.0, poll_s: float = 0.02,
                  start_offset: int | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Wait for the ledger entry of ``cmd_id`` (an applied one until the run's published view
    includes it). Returns (entry or None, liveness).

    Stops early when the training process is dead, absent or stopped, so a caller is told why
    instead of hanging.
    """
    tail = JsonlTail(run.ledger)
    if start_offset is not None:
        tail.offset = start_offset
    deadline = time.monotonic() + max(0.0, timeout_s)
    live = liveness(run)
    next_live = time.monotonic() + 0.5
    while True:
        entry = find_decision(run, cmd_id, tail)
        if entry is not None:
            _wait_published(run, entry, deadline)
            return entry, live
        now = time.monotonic()
        if now >= next_live:
            live = liveness(run)
            next_live = now + 0.5
        if live["state"] in ("dead", "absent", "stopped") or now >= deadline:
            entry = find_decision(run, cmd_id, tail)
            return entry, live
        time.sleep(poll_s)

