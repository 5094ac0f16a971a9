"""An exact cursor into ``hotcb.metrics.jsonl``: it names the next record, and a read from it
returns exactly the records after it, each once.

A cursor is the byte offset just past the last record a reader was given (always the end of a
complete line: a half-written last line is left for the read that finds it whole), the number
of records before it, and the file it belongs to (inode and a digest of the first bytes, which
an append-only file never changes). A read checks all three: a file rotated, truncated or
replaced since is read again from its start, and the reply says ``reset`` so the reader drops
what it holds. The cost of a read follows what it returns, never the file's size.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from hotcb.jsonl import digest
from hotcb.records import MetricRecord

from .metrics_seek import SeekableTail, open_run_file

PATTERN = r"^m1\.\d+\.[0-9a-f]{16}\.\d+\.\d+$"  # the token's form, checked by the tool's schema
_TOKEN = re.compile(PATTERN)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class MetricsCursor:
    inode: int
    head: str  # digest of the file's first min(64, offset) bytes
    offset: int  # byte offset of the next record
    index: int  # records before it

    def token(self) -> str:
        return f"m1.{self.inode}.{self.head}.{self.offset}.{self.index}"

    @classmethod
    def parse(cls, token: str) -> MetricsCursor:
        if not _TOKEN.match(token):
            raise ValueError(f"not a metrics cursor: {token[:80]!r} (pass the cursor a read_metrics reply gave)")
        _, inode, head, offset, index = token.split(".")
        return cls(inode=int(inode), head=head, offset=int(offset), index=int(index))


START = MetricsCursor(inode=0, head=digest(b""), offset=0, index=0)


@dataclass
class Batch:
    """The records after a cursor, in file order, and the cursor after them."""

    records: list[MetricRecord] = field(default_factory=list)
    cursor: MetricsCursor = START
    reset: bool = False  # the cursor's file is gone or was replaced: these records start it over
    more: bool = False  # the limit was reached: further complete records wait after ``cursor``
    dropped: int = 0  # lines passed over that were not records (not JSON, an absurd step, ...)


def _continues(path: str, st: os.stat_result, cursor: MetricsCursor) -> bool:
    """Whether ``cursor`` still names a record boundary of the file at ``path``."""
    if cursor.offset == 0:
        return True
    if st.st_ino != cursor.inode or st.st_size < cursor.offset:
        return False
    with open_run_file(path) as f:
        head = f.read(min(64, cursor.offset))
        f.seek(cursor.offset - 1)
        return digest(head) == cursor.head and f.read(1) == b"\n"


def read_after(path: str | os.PathLike[str], cursor: MetricsCursor, limit: int) -> Batch:
    """At most ``limit`` records after ``cursor`` (all of them from the start on a reset)."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
        reset = not _continues(path, st, cursor)
    except OSError:  # no file (yet, or any longer): nothing to read
        return Batch(cursor=START, reset=cursor.offset > 0)
    start = START if reset else cursor
    try:
        return _read(path, st.st_ino, start, reset, limit)
    except OSError:  # gone or replaced by a link mid-read: nothing read, the next call sees why
        return Batch(cursor=cursor)


def _read(path: str, inode: int, start: MetricsCursor, reset: bool, limit: int) -> Batch:
    tail = SeekableTail(path, max_bytes_per_read=CHUNK_BYTES)
    tail.inode = inode
    tail.start_at(start.offset)
    out = Batch(cursor=start, reset=reset)
    while True:
        lines = tail.read_new()
        if tail.reset_count:  # replaced between the check and the read: the next call resets
            return Batch(cursor=start, reset=reset)
        for i, line in enumerate(lines):
            rec = MetricRecord.from_json(line.value) if line.error is None else None
            if rec is not None:
                out.records.append(rec)
            else:
                out.dropped += 1
            if len(out.records) >= limit:
                nxt = lines[i + 1].offset if i + 1 < len(lines) else tail.offset
                out.more = nxt < tail.offset or tail.size_seen == -1
                return _at(out, tail, start, nxt)
        if tail.size_seen != -1 or not lines:  # -1: the read was capped, more whole lines wait
            return _at(out, tail, start, tail.offset)


def _at(out: Batch, tail: SeekableTail, start: MetricsCursor, offset: int) -> Batch:
    tail.offset = offset
    out.cursor = MetricsCursor(inode=tail.inode or 0, head=tail.head_digest(), offset=offset,
                               index=start.index + len(out.records))
    return out
