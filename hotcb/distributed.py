"""Multi-process training: rank 0 alone reads commands and broadcasts them, so every rank
applies the same ops at the same step; only rank 0 writes the ledger, metrics and status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class DistributedSync:
    def __init__(self, group: Any = None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def broadcast_lines(self, reader: Callable[[], list[Any]] | None) -> list[Any]:
        """Rank 0 calls ``reader``; every rank returns rank 0's result."""
        box = [reader() if (self.rank == 0 and reader is not None) else None]
        self._dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0] or []
