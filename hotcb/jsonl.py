"""JSON lines and JSON files in the run directory: their rules, and how they are read.

Rules (docs/core.md, "The run directory"): appends are whole lines written with one ``write`` on an ``O_APPEND``
descriptor under an advisory lock (a file with a single writer, the metrics: whole lines in
batches on a descriptor kept open, no lock); readers never consume a line without its newline; rewritten
JSON files are replaced atomically; readers tail by byte offset and detect truncation/rotation.
The writing half lives in ``hotcb.jsonl_write`` (``append_line``, ``LineAppender``,
``write_json_atomic``); this module holds what both halves share (the symlink refusal, the
line limits) and the reading half (``parse_line``, ``JsonlTail``, ``read_json``, ``read_tail``).

The run directory is hostile input: files are opened without following symlinks (a link planted
in place of a run file is refused, never written through), a line is parsed only up to a size
and a nesting depth, and a line that fails either becomes one error ``Line``, never an exception.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from .errors import Conflict

# Refuse symlinks where the platform can (a run file replaced by a link must not redirect writes).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opened without blocking: a FIFO put where a run file belongs would otherwise block ``open``
# until a writer (or reader) came, and the step with it; it is then refused as not a regular file.
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# A JSON value nested deeper than this is refused: deep values blow Python's recursion limit in
# every later encoder and walker, and no command needs more than a few levels.
MAX_DEPTH = 64
# Lines longer than this (bytes) are refused unparsed; readers of big data lines raise it.
DEFAULT_MAX_LINE = 1 << 20
# What an over-long line keeps of itself: its head, where a command's writer put its cmd_id.
LINE_HEAD = 64 << 10


class UnsafeFile(Conflict, OSError):
    """A run file that is a symlink (or otherwise not a regular file): refused, never followed."""


def open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses with ``UnsafeFile`` a symlink at ``path``, and anything else that
    is not a regular file (a FIFO, a device, a directory) without waiting on it."""
    try:
        fd = os.open(os.fspath(path), flags | O_NOFOLLOW | O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (O_NOFOLLOW == 0 and os.path.islink(path)):
            raise _symlink(path) from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader, opened to write
            raise UnsafeFile(e.errno, f"{os.fspath(path)} is a FIFO, not a regular file; refused") from None
        raise
    try:
        refusal = not_regular(path, os.fstat(fd).st_mode)
        if refusal is not None:
            raise refusal
        if O_NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


# What a refusal calls a file that is not a regular one (an ``st_mode``'s type).
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(path: str | os.PathLike[str], mode: int) -> UnsafeFile | None:
    """The refusal of a run file whose ``lstat`` (or ``fstat``) mode is ``mode``; None for a
    regular file. One wording for every reader, whether it opened the file or only looked."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return _symlink(path)
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return UnsafeFile(errno.EINVAL, f"{os.fspath(path)} is {kind}, not a regular file; refused")


def _symlink(path: str | os.PathLike[str]) -> UnsafeFile:
    return UnsafeFile(errno.ELOOP, f"{os.fspath(path)} is a symlink; run files are never followed")


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """Read a JSON file; a missing, unreadable, symlinked or malformed file gives ``default``."""
    try:
        with os.fdopen(open_nofollow(path, os.O_RDONLY), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):
        return default


class Line:
    """One complete line read from a JSONL file: the parsed value or the parse error."""

    __slots__ = ("offset", "raw", "value", "error")

    def __init__(self, offset: int, raw: str, value: Any = None, error: str | None = None):
        self.offset = offset
        self.raw = raw
        self.value = value
        self.error = error


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, counted without recursion (stops past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def digest(data: bytes | str) -> str:
    """A short, stable fingerprint of oversized data (recorded instead of the data)."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_line(raw: str, max_depth: int = MAX_DEPTH) -> tuple[Any, str | None]:
    try:
        value = json.loads(raw)
    except RecursionError:
        return None, f"JSON nested deeper than {max_depth} levels"
    except ValueError as e:
        return None, f"malformed JSON: {str(e)[:200]}"
    if depth_of(value, max_depth) > max_depth:
        return None, f"JSON nested deeper than {max_depth} levels"
    return value, None


class JsonlTail:
    """Incremental reader of an append-only JSONL file.

    ``changed()`` costs one ``stat``; ``read_new()`` returns only complete lines appended since
    the last call (at most ``max_bytes_per_read`` a call: ``changed()`` stays true while more
    remain, and ``read_all_new()`` drains them). A file whose inode changed or that shrank is
    read again from the start, and ``reset_count`` tells callers that happened. A line over
    ``max_line_bytes`` is returned as an error ``Line`` (with its size and digest), never parsed,
    so one huge or deep line can neither stall nor wedge the reader.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes_per_read: int = 64 << 20,
                 max_line_bytes: int = DEFAULT_MAX_LINE):
        self.path = os.fspath(path)
        self.offset = 0
        self.inode: int | None = None
        self.size_seen = -1
        self.mtime_seen = -1
        self.reset_count = 0
        self.max_line_bytes = max_line_bytes
        # A full read with no newline in it then means "a line longer than the limit".
        self.max_bytes_per_read = max(max_bytes_per_read, max_line_bytes + 1)
        # The first bytes of the file as first read, and the last bytes before the offset: a file
        # truncated and rewritten past (or exactly to) our offset keeps its inode, so only changed
        # bytes there reveal the rewrite. (A rewrite that keeps both -- a change in the middle of a
        # long file at the same size -- is not seen: that would need the whole file read again.)
        self._head = b""
        self._tail = b""

    def _stat(self) -> os.stat_result | None:
        try:
            return os.lstat(self.path)
        except OSError:
            return None

    def changed(self) -> bool:
        st = self._stat()
        if st is None:
            return self.inode is not None  # the file disappeared: a reset is due
        return st.st_ino != self.inode or st.st_size != self.size_seen or st.st_mtime_ns != self.mtime_seen

    # complexity: a tail's cases (gone, replaced, truncated, grown, half-written line) kept together so none is missed
    def read_new(self) -> list[Line]:  # noqa: C901
        st = self._stat()
        if st is None:
            if self.inode is not None:
                self._reset(None)
            return []
        refusal = not_regular(self.path, st.st_mode)
        if refusal is not None:
            # Refused without opening it (a FIFO would block, a link lead elsewhere); remembered
            # like a read, so ``changed()`` is false until it is replaced (a caller records it once).
            # Whatever regular file comes next is a new one, read from its start (even one that
            # reuses the old inode number and size).
            if self.offset or self._head:
                self._reset(st.st_ino)
            self.inode, self.size_seen, self.mtime_seen = st.st_ino, st.st_size, st.st_mtime_ns
            raise refusal
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self._reset(st.st_ino)
        # Written again at the size already read (an editor's save of an edited line): the bytes
        # read are compared, as when it grows.
        rewrite = st.st_size == self.offset > 0 and st.st_mtime_ns != self.mtime_seen
        self.inode = st.st_ino
        self.size_seen = st.st_size
        self.mtime_seen = st.st_mtime_ns
        if st.st_size <= self.offset and not rewrite:
            return []
        with os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb") as f:
            if self.offset and not self._read_still_there(f):
                self._reset(st.st_ino)
            if st.st_size <= self.offset:
                return []  # only touched
            f.seek(self.offset)
            want = st.st_size - self.offset
            chunk = f.read(min(want, self.max_bytes_per_read))
            if self.offset == 0:
                self._head = chunk[:64]
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) < self.max_bytes_per_read:
                    return []  # only a partial line so far: read it next time, once it is whole
                self._tail = b""  # the skip moves the offset past bytes not kept
                return self._skip_oversized(f, chunk)
        lines: list[Line] = []
        pos = 0
        base = self.offset
        for raw_b in chunk[: end + 1].split(b"\n")[:-1]:
            off = base + pos
            pos += len(raw_b) + 1
            if len(raw_b) > self.max_line_bytes:
                lines.append(self._oversized(off, raw_b, len(raw_b)))
                continue
            raw = raw_b.decode("utf-8", errors="replace").strip()
            if not raw:
                continue
            value, err = parse_line(raw)
            lines.append(Line(off, raw, value, err))
        self.offset = base + end + 1
        self._tail = (self._tail + chunk[max(0, end + 1 - 64): end + 1])[-64:]
        if len(chunk) < want:
            self.size_seen = -1  # the read was capped: more whole lines remain, report it again
        # A partial last line needs no re-read until the file grows (changed() sees the size).
        return lines

    def read_all_new(self) -> list[Line]:
        """Every complete line not yet read, however large the file (drains capped reads)."""
        out: list[Line] = []
        while True:
            batch = self.read_new()
            out.extend(batch)
            if self.size_seen != -1 or (not batch and self.offset >= max(self.size_seen, 0)):
                return out

    def _skip_oversized(self, f: Any, head: bytes) -> list[Line]:
        """The line at the offset is longer than any allowed line: find its end without keeping it."""
        h = hashlib.sha256(head)
        size = len(head)
        while True:
            block = f.read(1 << 20)
            if not block:
                return []  # not even whole yet; looked at again once the file grows
            nl = block.find(b"\n")
            if nl >= 0:
                h.update(block[:nl])
                size += nl
                line = Line(self.offset, head[:LINE_HEAD].decode("utf-8", "replace"), None,
                            f"line of {size} bytes exceeds the limit of {self.max_line_bytes} "
                            f"(sha256 {h.hexdigest()[:16]}); not parsed")
                self.offset += size + 1
                self.size_seen = -1  # more may follow in the file
                return [line]
            h.update(block)
            size += len(block)

    def _oversized(self, offset: int, raw_b: bytes, size: int) -> Line:
        return Line(offset, raw_b[:LINE_HEAD].decode("utf-8", "replace"), None,
                    f"line of {size} bytes exceeds the limit of {self.max_line_bytes} "
                    f"(sha256 {digest(raw_b)}); not parsed")

    def _read_still_there(self, f: Any) -> bool:
        """Whether the file still holds the bytes remembered from what was read (its first ones,
        the last ones before the offset): an append-only file never changes them."""
        if self._head:
            f.seek(0)
            if f.read(len(self._head)) != self._head:
                return False
        if self._tail:
            f.seek(self.offset - len(self._tail))
            if f.read(len(self._tail)) != self._tail:
                return False
        return True

    def _reset(self, inode: int | None) -> None:
        self.offset = 0
        self._head = b""
        self._tail = b""
        self.inode = inode
        self.size_seen = -1
        self.reset_count += 1

    def values(self) -> Iterator[Any]:
        for line in self.read_new():
            if line.error is None:
                yield line.value

    def all_values(self) -> Iterator[Any]:
        """Every well-formed value not yet read, however large the file."""
        for line in self.read_all_new():
            if line.error is None:
                yield line.value


def read_all(path: str | os.PathLike[str]) -> list[Any]:
    """Every complete, well-formed JSON value of a JSONL file, whatever its size."""
    return list(JsonlTail(path).all_values())


def read_tail(path: str | os.PathLike[str], max_bytes: int = 64 << 10) -> list[Any]:
    """The well-formed JSON values of the complete lines in the last ``max_bytes`` of a JSONL
    file, oldest first: bounded work whatever the file's size (a line cut by the window's start
    is left out). A missing, unreadable or symlinked file gives ``[]``."""
    try:
        with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - max_bytes)
            f.seek(start)
            chunk = f.read(size - start)
    except OSError:
        return []
    if start > 0:
        chunk = chunk[chunk.find(b"\n") + 1:] if b"\n" in chunk else b""
    out = []
    for raw_b in chunk.split(b"\n")[:-1]:  # the last piece has no newline yet: not a whole line
        raw = raw_b.decode("utf-8", errors="replace").strip()
        if raw:
            value, err = parse_line(raw)
            if err is None:
                out.append(value)
    return out
