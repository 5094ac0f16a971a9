"""An incremental, bounded-memory view of ``hotcb.metrics.jsonl``.

``refresh()`` reads only the bytes appended since the last call (a truncated or replaced file
is detected and read again). The first read of a long file seeks instead of reading it all
(``metrics_seek``): the recent window from the end, the history sampled. Each metric keeps its recent points exactly and its older history
downsampled (the stride doubles whenever the history fills), so memory stays bounded on
million-record runs while the whole run can still be charted. The caps are shared across names
(``point_budget``): a run logging many thousands of names gets shorter series, and names past
the budget's limit are counted, not held, so the store's memory stays bounded whatever the file.
"""

from __future__ import annotations

import os
from typing import Any

from hotcb.records import MetricRecord

from .metrics_cursor import MetricsCursor
from .metrics_seek import (
    EXTEND_BUDGET_BYTES,
    SEEK_ABOVE_BYTES,
    SeekableTail,
    first_read,
    open_run_file,
    read_back,
)
from .point_budget import TOTAL_POINTS, Caps, PointBudget, UnheldNames


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
            self._trim_recent()
        if self._seen % self.stride == 0:
            self.h_steps.append(step)
            self.h_values.append(value)
            if len(self.h_steps) > self.history_cap:
                self._halve_history()
        self._seen += 1

    def seed_history(self, steps: list[float], values: list[float], seen: int) -> None:
        """History sampled by a seek (``seen`` points estimated before it): later points keep
        joining it at about the same spacing."""
        self.h_steps, self.h_values = steps[-self.history_cap:], values[-self.history_cap:]
        stride = 1
        while stride * max(1, len(self.h_steps)) < seen:
            stride *= 2
        self.stride, self._seen = stride, seen

    def fit(self, caps: Caps) -> None:
        """Lower caps (the budget is shared by more names now): the last recent points stay, and
        the history keeps its span at a coarser stride, as if it had filled."""
        self.recent_cap, self.history_cap = caps.recent, caps.history
        if len(self.steps) > self.recent_cap:
            self._trim_recent()
        while len(self.h_steps) > self.history_cap:
            self._halve_history()

    def _trim_recent(self) -> None:
        """The last ``recent_cap`` exact points kept."""
        del self.steps[: -self.recent_cap]
        del self.values[: -self.recent_cap]

    def _halve_history(self) -> None:
        """Every other history point kept, and the points joining it spaced twice as far apart."""
        self.h_steps = self.h_steps[::2]
        self.h_values = self.h_values[::2]
        self.stride *= 2

    def prepend(self, steps: list[float], values: list[float]) -> None:
        """Older exact points read back after a seek; never beyond the recent cap's trim size."""
        room = max(0, 2 * self.recent_cap - len(self.steps))
        if room and steps:
            self.steps = steps[-room:] + self.steps
            self.values = values[-room:] + self.values

    def window(self, last_n: int | None = None, since_step: float | None = None) -> tuple[list[float], list[float]]:
        # A metric absent from the exact region a seek read (logged only early) has only its history.
        steps, values = (self.steps, self.values) if self.steps else (self.h_steps, self.h_values)
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
    def __init__(self, path: str | os.PathLike[str], recent_cap: int = 5000, history_cap: int = 2000,
                 total_points: int = TOTAL_POINTS):
        self.tail = SeekableTail(path, max_bytes_per_read=CHUNK_BYTES)
        self.budget = PointBudget(recent_cap, history_cap, total_points)
        self.caps = self.budget.full  # every series' caps now: the full ones until the names outgrow them
        self.unheld = UnheldNames()
        self.series: dict[str, Series] = {}
        self.records = 0
        self.last_step: int | None = None
        self.last_wall_time: float | None = None
        self._resets = 0
        self.dropped = 0  # lines read that were not records (counted, never raised)
        self.exact_from = 0  # byte offset from which every record is held exactly (0: read whole)

    def refresh(self) -> int:
        """Read new records; returns how many arrived. Reads in bounded chunks until caught up, so a
        cold start on a huge file keeps peak memory at one chunk, not the file."""
        total = (self._seek_start() or 0) if self.tail.offset == 0 and self.tail.inode is None else 0
        while True:
            lines = self.tail.read_new()
            if self.tail.reset_count != self._resets:  # truncated or replaced: a different run
                self._resets = self.tail.reset_count
                self._clear()
                total = self._seek_start()
                if total is not None:
                    continue  # the new file is long: the lines just read are covered by the seek
                total = 0
            recs = [r for r in (MetricRecord.from_json(ln.value) for ln in lines if ln.error is None) if r is not None]
            self.dropped += len(lines) - len(recs)  # not JSON, oversized, or no record (an absurd step)
            total += self._ingest(recs)
            if self.tail.size_seen != -1 or not lines:  # -1: the read was capped, more whole lines wait
                return total

    def _clear(self) -> None:
        self.exact_from = 0
        self.series.clear()
        self.caps = self.budget.full
        self.unheld = UnheldNames()
        self.records = 0
        self.dropped = 0
        self.last_step = None
        self.last_wall_time = None

    def _seek_start(self) -> int | None:
        """A long file's first read: recent window from its end, sampled history, lines before
        the window counted. Returns the records of the window; None (nothing done) on a short file."""
        try:
            size = os.lstat(self.tail.path).st_size
        except OSError:
            return None
        if size <= SEEK_ABOVE_BYTES:
            return None
        # a new file: the full caps (they shrink as its names are found); the read is bounded in bytes
        found = first_read(self.tail.path, size, self.budget.full.recent, self.budget.full.history // 2)
        if found is None:
            return None
        self._clear()
        share: dict[str, int] = {}  # each metric's share of the recent records estimates its count before
        for rec in found.recent:
            for name in rec.metrics:
                share[name] = share.get(name, 0) + 1
        for name, (steps, values) in found.history.items():
            s = self._hold(name)
            if s is not None:
                s.seed_history(steps, values, found.lines_before * share.get(name, 1) // max(1, len(found.recent)))
            self.last_step = int(max(steps)) if self.last_step is None else max(self.last_step, int(max(steps)))
        self.tail.start_at(found.end)
        n = self._ingest(found.recent)
        self.records += found.lines_before  # lines before the window are counted, not parsed
        self.exact_from = found.tail_start
        return n

    def extend(self, names: list[str], points: int | None = None, since_step: float | None = None) -> None:
        """After a seek: read further back (within a budget per call) until each of ``names`` has
        ``points`` exact points, or its points reach back to ``since_step``. A no-op otherwise."""
        names = [n for n in names if n in self.series]  # an unknown name is not searched for
        if not self.exact_from or not names:
            return
        want = min(points or 0, self.caps.recent)

        def enough(counts: dict[str, int], _total: int, first_step: float | None) -> bool:
            for name in names:
                s = self.series.get(name)
                have = (len(s.steps) if s is not None else 0) + counts.get(name, 0)
                if have < want:
                    return False
                reached = first_step is not None and first_step <= since_step if since_step is not None else True
                if not reached and have < self.caps.recent:
                    return False
            return True

        if enough({}, 0, self._first_exact_step()):
            return
        with open_run_file(self.tail.path) as f:
            self.exact_from, recs = read_back(f, self.exact_from, enough, EXTEND_BUDGET_BYTES)
        older: dict[str, tuple[list[float], list[float]]] = {}
        for rec in recs:
            for name, v in rec.metrics.items():
                st, va = older.setdefault(name, ([], []))
                st.append(float(rec.step))
                va.append(v)
        for name, (st, va) in older.items():
            s = self.series.get(name) or self._hold(name)
            if s is not None:
                s.prepend(st, va)

    def _hold(self, name: str) -> Series | None:
        """A new series for ``name`` within the budget (every series trimmed when the caps drop),
        or None: past the budget's names, ``name`` is counted, not held."""
        if len(self.series) >= self.budget.max_names:
            self.unheld.add(name)
            return None
        caps = self.budget.caps(len(self.series) + 1)
        if caps != self.caps:  # rare: the caps halve each time the names outgrow them
            self.caps = caps
            for s in self.series.values():
                s.fit(caps)
        s = self.series[name] = Series(caps.recent, caps.history)
        return s

    def _first_exact_step(self) -> float | None:
        return min((s.steps[0] for s in self.series.values() if s.steps), default=None)

    def _ingest(self, recs: list[MetricRecord]) -> int:
        for rec in recs:
            at = float(rec.step)  # one float shared by the record's points
            for name, v in rec.metrics.items():
                s = self.series.get(name) or self._hold(name)
                if s is not None:
                    s.add(at, v)
            # the furthest step seen: a late record for an earlier step must not move it back
            step = int(rec.step)
            self.last_step = step if self.last_step is None else max(self.last_step, step)
            self.last_wall_time = rec.wall_time if rec.wall_time is not None else self.last_wall_time
        self.records += len(recs)
        return len(recs)

    def cursor(self) -> MetricsCursor:
        """The record after the last one read: what the series hold is exactly what precedes it."""
        return MetricsCursor(inode=self.tail.inode or 0, head=self.tail.head_digest(), offset=self.tail.offset,
                             index=self.records)

    def names(self) -> list[str]:
        """The names held (see ``names_total``)."""
        return sorted(self.series)

    def names_total(self) -> int:
        """Every name read, held or not (a lower bound where ``unheld.exact`` is false)."""
        return len(self.series) + len(self.unheld)

    def bound(self) -> str | None:
        """What the points budget cut, in words; None while every name is held at the full caps."""
        if self.caps == self.budget.full and not len(self.unheld):
            return None
        caps, full = self.caps, self.budget.full
        text = (f"a memory bound applies: each of the {len(self.series)} names held keeps at least its last "
                f"{caps.recent} points exact (usually {full.recent}) and {caps.history} sampled over the run "
                f"(usually {full.history})")
        if len(self.unheld):
            more = "at least " if not self.unheld.exact else ""
            text += (f"; {more}{len(self.unheld)} more names are counted, not held: not in replies nor "
                     f"found by match; read them with since_cursor")
        return text

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def snapshot(self) -> dict[str, Any]:
        return {"records": self.records, "last_step": self.last_step, "metrics": self.names(),
                "dropped_lines": self.dropped}
