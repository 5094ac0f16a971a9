"""An incremental, bounded-memory view of ``hotcb.metrics.jsonl``.

``refresh()`` reads only the bytes appended since the last call (a truncated or replaced file
is detected and read again). Each metric keeps its recent points exactly and its older history
downsampled (the stride doubles whenever the history fills), so memory stays bounded on
million-record runs while the whole run can still be charted.
"""

from __future__ import annotations

import os
from typing import Any

from hotcb.collector import parse_metric
from hotcb.jsonl import JsonlTail


class Series:
    __slots__ = ("steps", "values", "h_steps", "h_values", "stride", "_seen", "recent_cap", "history_cap")

    def __init__(self, recent_cap: int, history_cap: int):
        self.steps: list[float] = []
        self.values: list[float] = []
        self.h_steps: list[float] = []
        self.h_values: list[float] = []
        self.stride = 1
        self._seen = 0
        self.recent_cap = recent_cap
        self.history_cap = history_cap

    def add(self, step: float, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) > 2 * self.recent_cap:  # amortized trim keeps appends O(1)
            del self.steps[: -self.recent_cap]
            del self.values[: -self.recent_cap]
        if self._seen % self.stride == 0:
            self.h_steps.append(step)
            self.h_values.append(value)
            if len(self.h_steps) > self.history_cap:
                self.h_steps = self.h_steps[::2]
                self.h_values = self.h_values[::2]
                self.stride *= 2
        self._seen += 1

    def window(self, last_n: int | None = None, since_step: float | None = None) -> tuple[list[float], list[float]]:
        steps, values = self.steps, self.values
        if since_step is not None:
            i = next((k for k, s in enumerate(steps) if s >= since_step), len(steps))
            steps, values = steps[i:], values[i:]
        if last_n is not None:
            steps, values = steps[-last_n:], values[-last_n:]
        return list(steps), list(values)

    def downsampled(self, max_points: int) -> tuple[list[float], list[float]]:
        """The whole run: history merged with the exact recent tail, thinned to ``max_points``."""
        first_recent = self.steps[0] if self.steps else float("inf")
        steps = [s for s in self.h_steps if s < first_recent] + self.steps
        values = self.h_values[: len(steps) - len(self.steps)] + self.values
        if len(steps) > max_points > 0:
            k = -(-len(steps) // max_points)
            steps, values = steps[::k] + ([steps[-1]] if (len(steps) - 1) % k else []), \
                values[::k] + ([values[-1]] if (len(values) - 1) % k else [])
        return steps, values


CHUNK_BYTES = 1 << 20  # bytes per read: bounds a cold start's peak memory on million-record files


class MetricsStore:
    def __init__(self, path: str | os.PathLike[str], recent_cap: int = 5000, history_cap: int = 2000):
        self.tail = JsonlTail(path, max_bytes_per_read=CHUNK_BYTES)
        self.recent_cap = recent_cap
        self.history_cap = history_cap
        self.series: dict[str, Series] = {}
        self.records = 0
        self.last_step: int | None = None
        self.last_wall_time: float | None = None
        self._resets = 0

    def refresh(self) -> int:
        """Read new records; returns how many arrived. Reads in bounded chunks until caught up, so a
        cold start on a huge file keeps peak memory at one chunk, not the file."""
        total = 0
        while True:
            lines = self.tail.read_new()
            if self.tail.reset_count != self._resets:  # truncated or replaced: a different run
                self._resets = self.tail.reset_count
                self.series.clear()
                self.records = 0
                total = 0
            total += self._ingest(lines)
            if self.tail.size_seen != -1 or not lines:  # -1: the read was capped, more whole lines wait
                return total

    def _ingest(self, lines: list[Any]) -> int:
        n = 0
        for line in lines:
            rec = line.value
            if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
                continue
            step = rec.get("step")
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                continue
            for name, raw in rec["metrics"].items():
                v = parse_metric(raw)
                if v is None:
                    continue
                s = self.series.get(name)
                if s is None:
                    s = self.series[name] = Series(self.recent_cap, self.history_cap)
                s.add(float(step), v)
            # the furthest step seen: a late record for an earlier step must not move it back
            self.last_step = int(step) if self.last_step is None else max(self.last_step, int(step))
            wt = rec.get("wall_time")
            self.last_wall_time = wt if isinstance(wt, (int, float)) else self.last_wall_time
            n += 1
        self.records += n
        return n

    def names(self) -> list[str]:
        return sorted(self.series)

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def snapshot(self) -> dict[str, Any]:
        return {"records": self.records, "last_step": self.last_step, "metrics": self.names()}
