"""The first read of a long metrics file, at a cost that follows what is returned.

A reader asks for a recent window and a coarse history, so a fresh process need not parse a
154 MB file to answer. ``first_read`` reads the recent records from the END of the file (chunks
backwards until every metric seen there has its recent window, within a byte budget) and the
history by sampling small blocks at evenly spaced byte offsets before that; the records before
the window are counted by newlines (a byte scan, not a parse). Nothing is written: a sidecar
beside the run files would be a second writer in the run directory and would still leave the
first reader of a long run with the full cost, where this costs the same in every process.

Only files above ``SEEK_ABOVE_BYTES`` take this path; a smaller file is read whole, exactly as
before, so results on small files are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hotcb.jsonl import DEFAULT_MAX_LINE, JsonlTail, digest, open_nofollow, parse_line
from hotcb.records import MetricRecord

SEEK_ABOVE_BYTES = 16 << 20  # ~100k records: a whole read below this costs under ~1 s
TAIL_BUDGET_BYTES = 4 << 20  # the most a first read reads backwards for metrics logged less often
EXTEND_BUDGET_BYTES = 16 << 20  # the most one later call reads further back for a longer window
BACK_CHUNK_BYTES = 1 << 20
SAMPLE_BYTES = 4096  # one block per history sample: a few lines, so a sparser metric may be caught


@dataclass
class FirstRead:
    """What a seek-based first read found: records in file order, split at ``tail_start``."""

    tail_start: int  # byte offset of the first record of the recent window
    end: int  # byte offset just past the last complete line
    recent: list[MetricRecord] = field(default_factory=list)  # records in [tail_start, end)
    history: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # sampled before tail_start
    lines_before: int = 0  # lines in [0, tail_start)


class SeekableTail(JsonlTail):
    """A ``JsonlTail`` that can start at an offset found by a seek, keeping its replacement check:
    the file's first bytes are remembered as if it had been read from the start."""

    def start_at(self, offset: int) -> None:
        with open_run_file(self.path) as f:
            self._head = f.read(64) if offset else b""
        self.offset = offset

    def head_digest(self) -> str:
        """A fingerprint of the bytes before the offset that an append-only file never changes
        (its first ones, up to 64): a file replaced under the same name shows a different one."""
        return digest(self._head[: min(64, self.offset)])


def open_run_file(path: str | os.PathLike[str]) -> Any:
    """The file for reading, never through a symlink (run files are hostile input)."""
    return os.fdopen(open_nofollow(path, os.O_RDONLY), "rb")


def _parse_block(body: bytes) -> list[MetricRecord]:
    out = []
    for raw in body.split(b"\n"):
        raw = raw.strip()
        if raw and len(raw) <= DEFAULT_MAX_LINE:  # an oversized line is never parsed (as JsonlTail)
            value, err = parse_line(raw.decode("utf-8", errors="replace"))
            rec = MetricRecord.from_json(value) if err is None else None
            if rec is not None:
                out.append(rec)
    return out


def read_back(f: Any, stop: int, done: Callable[[dict[str, int], int, float | None], bool],
              budget: int) -> tuple[int, list[MetricRecord]]:
    """Whole lines before byte ``stop``, read in chunks backwards until ``done(counts, records,
    first_step)`` (points per metric, records and the earliest record's step so far), ``budget``
    bytes are read or the start is reached. Returns the offset of the first line read and the
    records in file order."""
    pos = stop
    chunks: list[list[MetricRecord]] = []
    counts: dict[str, int] = {}
    total = 0
    size = BACK_CHUNK_BYTES
    while pos > 0:
        lo = max(0, pos - size)
        f.seek(lo)
        data = f.read(pos - lo)
        cut = data.find(b"\n") + 1 if lo else 0  # the line cut by the chunk's start is read with the next chunk
        if lo and cut == 0:
            size *= 2  # one line longer than the chunk
            continue
        recs = _parse_block(data[cut:])
        chunks.append(recs)
        for r in recs:
            for name in r.metrics:
                counts[name] = counts.get(name, 0) + 1
        total += len(recs)
        pos = lo + cut
        first = recs[0].step if recs else None
        if done(counts, total, first) or stop - pos >= budget:
            break
    return pos, [r for recs in reversed(chunks) for r in recs]


def _sample(f: Any, stop: int, n: int, names: set[str]) -> dict[str, tuple[list[float], list[float]]]:
    """One point per metric from each of ``n`` blocks at evenly spaced offsets in ``[0, stop)``.

    A block's first whole line is parsed, and a later line only if it names a metric (of those in
    the recent window) the block has not given yet -- a byte search, so a block costs about one
    parse while a metric logged every few lines is still caught."""
    wanted = {name: b'"' + name.encode() + b'"' for name in names}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i in range(n):
        at = stop * i // n
        f.seek(at)
        block = f.read(min(SAMPLE_BYTES, stop - at))
        start = 0 if at == 0 else block.find(b"\n") + 1  # skip the line the offset fell inside
        last = block.rfind(b"\n")
        if (at and start == 0) or last < start:
            continue  # no whole line in this block (a line longer than the block)
        got: set[str] = set()
        for raw in block[start:last].split(b"\n"):
            if got and not any(key in raw for name, key in wanted.items() if name not in got):
                continue
            value, err = parse_line(raw.decode("utf-8", errors="replace"))
            rec = MetricRecord.from_json(value) if err is None else None
            if rec is None:
                continue
            for name, v in rec.metrics.items():
                if name not in got:
                    got.add(name)
                    steps, values = out.setdefault(name, ([], []))
                    steps.append(float(rec.step))
                    values.append(v)
            if got >= wanted.keys():
                break
    return out


def _count_lines(f: Any, stop: int) -> int:
    f.seek(0)
    n, left = 0, stop
    while left > 0:
        b = f.read(min(8 << 20, left))
        if not b:
            break
        n += b.count(b"\n")
        left -= len(b)
    return n


def _last_line_end(f: Any, size: int) -> int | None:
    """The offset just past the last complete line (a partial one is read later, once whole):
    blocks read backwards, each byte once, so a long unterminated last line costs its length."""
    pos = size
    while pos > 0:
        lo = max(0, pos - 65536)
        f.seek(lo)
        nl = f.read(pos - lo).rfind(b"\n")
        if nl >= 0:
            return lo + nl + 1
        pos = lo
    return None


def first_read(path: str | os.PathLike[str], size: int, recent_cap: int, history_points: int) -> FirstRead | None:
    """The recent window from the end and a sampled history; None when the file has no complete line."""
    with open_run_file(path) as f:
        end = _last_line_end(f, size)
        if end is None:
            return None
        tail_start, recent = read_back(
            f, end, lambda counts, total, _first: total >= recent_cap and min(counts.values(), default=0) >= recent_cap,
            TAIL_BUDGET_BYTES)
        names = {name for rec in recent for name in rec.metrics}
        history = _sample(f, tail_start, history_points, names) if tail_start else {}
        return FirstRead(tail_start=tail_start, end=end, recent=recent, history=history,
                         lines_before=_count_lines(f, tail_start))
