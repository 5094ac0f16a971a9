"""``MetricsCollector``: appends a ``MetricRecord`` (``{"step","epoch","wall_time","metrics"}``) to hotcb.metrics.jsonl.

Non-finite values are recorded (as "nan"/"inf"/"-inf"), never dropped: divergence must be seen.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterable
from typing import Any

from .codec import tag
from .jsonl import append_line
from .records import MetricRecord


def to_number(value: Any) -> float | None:
    """A plain float for a number or a one-element tensor/array; None for anything else."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item"):
        try:
            if getattr(value, "numel", lambda: 1)() != 1:
                return None
            v = value.item()
            return float(v) if isinstance(v, (int, float)) else None
        except Exception:
            return None
    return None


def number_or_tag(value: Any) -> float | str | None:
    v = to_number(value)
    return None if v is None else tag(v)


class MetricsCollector:
    def __init__(
        self,
        path: str | os.PathLike[str],
        whitelist: Iterable[str] | None = None,
        blacklist: Iterable[str] | None = None,
        every_n: int = 1,
    ):
        self.path = os.fspath(path)
        self.whitelist = list(whitelist) if whitelist else None
        self.blacklist = list(blacklist or [])
        self.every_n = max(1, int(every_n))
        self._last_step: int | None = None

    def _keep(self, name: str) -> bool:
        if self.whitelist is not None and not any(fnmatch.fnmatchcase(name, p) for p in self.whitelist):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.blacklist)

    def record(self, step: int, metrics: dict[str, Any], epoch: int | None = None,
               force: bool = False) -> dict[str, Any] | None:
        if not force and step % self.every_n != 0:
            return None
        values = {}
        for name, value in metrics.items():
            if not isinstance(name, str) or not self._keep(name):
                continue
            v = to_number(value)
            if v is not None:
                values[name] = v
        if not values:
            return None
        rec = MetricRecord(step=step, epoch=epoch, wall_time=time.time(), metrics=values).to_json()
        append_line(self.path, rec)
        self._last_step = step
        return rec
