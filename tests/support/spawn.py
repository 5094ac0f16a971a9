"""``spawn``: ``torch.multiprocessing.spawn`` that never outlives its test.

``mp.spawn(..., join=True)`` leaves its workers running when the wait is interrupted (a
pytest-timeout, a KeyboardInterrupt, a failing rank's exception in the parent): they are
non-daemonic children, so the interpreter then waits for them at exit and the suite hangs
after it has reported. Here the workers are killed (and reaped) whatever ends the wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp


def spawn(fn: Callable[..., Any], args: tuple[Any, ...], nprocs: int, poll_s: float = 1.0) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` spawned processes; raise as ``mp.spawn`` does."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    try:
        while not ctx.join(timeout=poll_s):  # raises ProcessRaisedException / ProcessExitedException
            pass
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(30)
