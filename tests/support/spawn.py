"""``spawn``: ``torch.multiprocessing.spawn`` that never outlives its test.

``mp.spawn(..., join=True)`` leaves its workers running when the wait is interrupted (a
pytest-timeout, a KeyboardInterrupt, a failing rank's exception in the parent): they are
non-daemonic children, so the interpreter then waits for them at exit and the suite hangs
after it has reported. Here the workers are killed (and reaped) whatever ends the wait.

``leave_group``: how a worker that did its work ends (see there: tearing a gloo group down can
deadlock inside torch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

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


def leave_group() -> NoReturn:
    """End a spawned rank whose work is done and saved: wait for the other ranks, then exit the
    process without tearing the gloo group down.

    ``dist.barrier(); dist.destroy_process_group()`` and the interpreter's teardown deadlocked
    inside torch about once in 25 runs on a loaded machine (the rank stayed alive after
    ``destroy_process_group`` returned, so ``spawn`` waited until the test timed out): the main
    thread, holding the GIL, dropped the last reference to the group (the DDP reducer's, freed
    with the worker's frame; ``destroy_process_group``'s own without DDP) and the group's
    destructor joined gloo's run-loop thread, which was freeing the barrier's work object (it
    holds the last broadcast's work and its tensors, which Python created) and waited for the
    GIL. ``tests/support/ddp_hf.py`` met the same deadlock. The worker's files are written and
    its kernel closed before this is called; ``os._exit`` skips only the teardown.
    """
    import torch.distributed as dist

    dist.barrier()  # both ranks leave together: neither exits while the other is in a collective
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
