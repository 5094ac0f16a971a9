"""JSON lines and JSON files in the run directory: the one place that reads and writes them.

Rules (SPEC section 2): appends are whole lines written with one ``write`` on an ``O_APPEND``
descriptor under an advisory lock; readers never consume a line without its newline; rewritten
JSON files are replaced atomically; readers tail by byte offset and detect truncation/rotation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

try:  # advisory locks are POSIX; elsewhere O_APPEND alone keeps single-write lines whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _finite_or_tag(value: Any) -> Any:
    """Non-finite floats become the strings "nan", "inf", "-inf" so JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite_or_tag(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_tag(v) for v in value]
    return value


def dumps(record: Any) -> str:
    """Serialize one record as a single JSON line (no newline), never emitting NaN/Infinity."""
    return json.dumps(_finite_or_tag(record), separators=(",", ":"), default=str, allow_nan=False)


def append_lines(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append records as whole lines with a single write under an exclusive advisory lock."""
    data = "".join(dumps(r) + "\n" for r in records).encode("utf-8")
    if not data:
        return
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # RDWR: the torn-tail check reads
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # A writer that died mid-line left a torn tail: seal it with a newline so it becomes
            # one malformed line (recorded, skipped) instead of corrupting this record too.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:  # one write in practice; loop only guards against short writes
                n = os.write(fd, view)
                view = view[n:]
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def append_line(path: str | os.PathLike[str], record: Any) -> None:
    append_lines(path, [record])


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Replace a JSON file atomically: write a temp file beside it, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(_finite_or_tag(obj), indent=1, default=str, allow_nan=False))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """Read a JSON file; a missing or unreadable file gives ``default``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


class Line:
    """One complete line read from a JSONL file: the parsed value or the parse error."""

    __slots__ = ("offset", "raw", "value", "error")

    def __init__(self, offset: int, raw: str, value: Any = None, error: str | None = None):
        self.offset = offset
        self.raw = raw
        self.value = value
        self.error = error


def parse_line(raw: str) -> tuple[Any, str | None]:
    try:
        return json.loads(raw), None
    except ValueError as e:
        return None, f"malformed JSON: {e}"


class JsonlTail:
    """Incremental reader of an append-only JSONL file.

    ``changed()`` costs one ``stat``; ``read_new()`` returns only complete lines appended since
    the last call. A file whose inode changed or that shrank is read again from the start, and
    ``reset_count`` tells callers that happened.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes_per_read: int = 64 << 20):
        self.path = os.fspath(path)
        self.offset = 0
        self.inode: int | None = None
        self.size_seen = -1
        self.mtime_seen = -1
        self.reset_count = 0
        self.max_bytes_per_read = max_bytes_per_read
        # The first bytes of the file as first read: a file truncated and rewritten past our
        # offset keeps its inode and grows, so only its changed head reveals the rewrite.
        self._head = b""

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def changed(self) -> bool:
        st = self._stat()
        if st is None:
            return self.inode is not None  # the file disappeared: a reset is due
        return st.st_ino != self.inode or st.st_size != self.size_seen or st.st_mtime_ns != self.mtime_seen

    def read_new(self) -> list[Line]:
        st = self._stat()
        if st is None:
            if self.inode is not None:
                self._reset(None)
            return []
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self._reset(st.st_ino)
        self.inode = st.st_ino
        self.size_seen = st.st_size
        self.mtime_seen = st.st_mtime_ns
        if st.st_size <= self.offset:
            return []
        with open(self.path, "rb") as f:
            if self._head and self.offset:
                f.seek(0)
                if f.read(len(self._head)) != self._head:
                    self._reset(st.st_ino)
            f.seek(self.offset)
            want = st.st_size - self.offset
            chunk = f.read(min(want, self.max_bytes_per_read))
        if self.offset == 0:
            self._head = chunk[:64]
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # only a partial line so far: read it next time, once it is whole
        lines: list[Line] = []
        pos = 0
        base = self.offset
        body = chunk[: end + 1]
        for raw_b in body.split(b"\n")[:-1]:
            off = base + pos
            pos += len(raw_b) + 1
            raw = raw_b.decode("utf-8", errors="replace").strip()
            if not raw:
                continue
            value, err = parse_line(raw)
            lines.append(Line(off, raw, value, err))
        self.offset = base + end + 1
        if len(chunk) < want:
            self.size_seen = -1  # the read was capped: more whole lines remain, report it again
        # A partial last line needs no re-read until the file grows (changed() sees the size).
        return lines

    def _reset(self, inode: int | None) -> None:
        self.offset = 0
        self._head = b""
        self.inode = inode
        self.size_seen = -1
        self.reset_count += 1

    def values(self) -> Iterator[Any]:
        for line in self.read_new():
            if line.error is None:
                yield line.value


def read_all(path: str | os.PathLike[str]) -> list[Any]:
    """Every complete, well-formed JSON value of a JSONL file (for small files and tools)."""
    return list(JsonlTail(path).values())
