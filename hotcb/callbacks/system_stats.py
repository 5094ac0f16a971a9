"""``SystemStatsCallback``: process memory, load average and (with CUDA) GPU memory, as
``sys/rss_mb``, ``sys/load1``, ``sys/cuda_alloc_mb``, ``sys/cuda_max_mb``.

Reads ``/proc/self/statm`` where it exists (current RSS); elsewhere ``resource`` (peak RSS).
"""

from __future__ import annotations

import os
from typing import Any

from ._base import BuiltinCallback

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return None


class SystemStatsCallback(BuiltinCallback):
    params = {"every": 50}

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event != "train_step_end" or not self.due(env):
            return
        m = env["metrics"]
        rss = rss_mb()
        if rss is not None:
            m["sys/rss_mb"] = rss
        if hasattr(os, "getloadavg"):
            m["sys/load1"] = os.getloadavg()[0]
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            m["sys/cuda_alloc_mb"] = torch.cuda.memory_allocated() / 2**20
            m["sys/cuda_max_mb"] = torch.cuda.max_memory_allocated() / 2**20
