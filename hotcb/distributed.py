"""Multi-process training: rank 0 alone reads commands (and the watched freeze/desired-state
files) and broadcasts what it read, so every rank applies the same ops at the same step; only
rank 0 writes the ledger, metrics and status.

Every collective here must be entered by all ranks in the same order, so the kernel calls
``broadcast`` from step-counted code only (never from wall-clock-gated code).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

# Set by launchers for each process of a multi-process job: torchrun sets RANK (and LOCAL_RANK);
# Lightning's ``ddp`` launcher re-runs the script with LOCAL_RANK/NODE_RANK but no RANK.
RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK")
LOCK_WAIT_S = 60.0  # rank 0 waits this long at attach for a sibling that took the run lock first


class DistributedSync:
    def __init__(self, group: Any = None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        # The global rank that owns ``group``'s rank 0 (broadcast_object_list wants a global rank).
        self.src = dist.get_global_rank(group, 0) if group is not None else 0

    def broadcast(self, reader: Callable[[], Any] | None) -> Any:
        """Rank 0 calls ``reader``; every rank returns rank 0's result (any picklable object)."""
        box = [reader() if (self.rank == 0 and reader is not None) else None]
        self._dist.broadcast_object_list(box, src=self.src, group=self.group)
        return box[0]


def running_distributed() -> DistributedSync | None:
    """A ``DistributedSync`` if this process is one rank of a started process group of several."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistributedSync()
    return None


def launched_as_other_rank(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a launcher started this process as a rank other than 0 (``WORLD_SIZE`` > 1 and a
    non-zero ``RANK``/``LOCAL_RANK``/``NODE_RANK``), before any process group exists.

    A kernel built before the process group (as with Lightning and transformers) cannot ask
    ``torch.distributed`` for its rank yet; without this, every rank took itself for the writer
    until the adapter attached the group, and rank 1 wrote ``hotcb.status.json`` (as rank 0 of a
    world of 1) and ``hotcb.actuators.json`` at construction, racing rank 0's own writes.
    """
    env = os.environ if environ is None else environ
    try:
        if int(env.get("WORLD_SIZE", "1")) <= 1:
            return False
        return any(int(env.get(k, "0")) != 0 for k in RANK_ENV)
    except ValueError:
        return False


def rank_unknown_yet(environ: Mapping[str, str] | None = None) -> bool:
    """A process of a multi-process job started without a rank in its environment (spawned
    ranks: ``MASTER_ADDR``/``MASTER_PORT`` only) and no process group yet: rank 0 or not is only
    known at ``attach``."""
    env = os.environ if environ is None else environ
    return not any(k in env for k in RANK_ENV) and ("MASTER_ADDR" in env or "MASTER_PORT" in env)


def attach(kernel: Any) -> bool:
    """Make a kernel built before the process group existed distributed-aware.

    Lightning and transformers start ``torch.distributed`` inside ``fit``/``train``, after the
    user built the kernel, so the adapters call this at fit start. Not a collective: each rank
    only asks for its own rank. Returns True when it attached.
    """
    if getattr(kernel, "dist", None) is not None:
        return False
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return False
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    kernel.dist = DistributedSync()
    kernel.is_writer = kernel.dist.rank == 0
    if not kernel.is_writer:  # only the rank that owns the run's files holds the run
        kernel.run_lock.release()
    elif kernel.run_lock.deferred:  # a sibling rank held it at construction; it lets go at its attach
        kernel.run_lock.acquire(kernel.run_lock.session, wait_s=LOCK_WAIT_S)
    kernel.snapshots.set_rank(kernel.dist.rank)
    return True
