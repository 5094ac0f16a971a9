"""JSON lines and JSON files in the run directory: the one place that reads and writes them.

Rules (docs/core.md, "The run directory"): appends are whole lines written with one ``write`` on an ``O_APPEND``
descriptor under an advisory lock (a file with a single writer, the metrics: ``LineAppender``, whole
lines in batches on a descriptor kept open, no lock); readers never consume a line without its newline; rewritten
JSON files are replaced atomically; readers tail by byte offset and detect truncation/rotation.

The run directory is hostile input: files are opened without following symlinks (a link planted
in place of a run file is refused, never written through), a line is parsed only up to a size
and a nesting depth, and a line that fails either becomes one error ``Line``, never an exception.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .codec import encode
from .errors import Conflict

try:  # advisory locks are POSIX; elsewhere O_APPEND alone keeps single-write lines whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Refuse symlinks where the platform can (a run file replaced by a link must not redirect writes).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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
    """``os.open`` that refuses a symlink at ``path`` with ``UnsafeFile``."""
    try:
        return os.open(os.fspath(path), flags | O_NOFOLLOW, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (O_NOFOLLOW == 0 and os.path.islink(path)):
            raise UnsafeFile(e.errno or errno.ELOOP, f"{os.fspath(path)} is a symlink; run files are never followed") from None
        raise


def dumps(record: Any) -> str:
    """Serialize one record as a single JSON line (no newline), never emitting NaN/Infinity."""
    return json.dumps(encode(record), separators=(",", ":"), default=str, allow_nan=False)


def append_lines(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Append records as whole lines with a single write under an exclusive advisory lock."""
    data = "".join(dumps(r) + "\n" for r in records).encode("utf-8")
    if not data:
        return
    fd = open_nofollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # RDWR: the torn-tail check reads
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
            try:
                while view:  # one write in practice; loop only guards against short writes
                    n = os.write(fd, view)
                    view = view[n:]
            except OSError:
                # A full disk mid-write: take the partial line back so the caller's retry
                # writes it whole and no torn line is left behind.
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def append_line(path: str | os.PathLike[str], record: Any) -> None:
    append_lines(path, [record])


REOPEN_CHECK_S = 1.0  # how often a kept-open descriptor is compared with its path
MAX_PENDING_LINES = 65536  # a batched appender writes at once past this many lines
MAX_HELD_LINES = 1 << 14  # lines kept for a retry while writes keep failing (a full disk); older ones are dropped


class LineAppender:
    """Whole lines appended to one file by its single writer, through a descriptor kept open.

    ``delay_s`` 0: each ``append`` is written at once (one ``write``). ``delay_s`` > 0: lines are
    held in memory and written in batches, one ``write`` each, by a background thread at most
    ``delay_s`` after they were appended, and by ``flush()``, ``close()`` and at interpreter
    exit. Records are serialized by ``encode`` when they are written, off the appending thread.
    Lines keep their order whichever thread writes them. What a batch costs the appending
    thread is a ``deque.append``; what it costs in durability is the last ``delay_s`` of lines
    if the process is killed (SIGKILL, a crash, ``os._exit``); a normal exit writes them all.

    The writer owns the file: no lock is taken. The descriptor is checked against the path at
    most once a second (a file replaced or removed under it is reopened; a symlink is refused),
    and a torn last line left by a writer that died mid-line is sealed with a newline. A failed
    write (a full disk) is taken back whole and its lines kept for the next flush, so no line is
    torn or written twice.
    """

    def __init__(self, path: str | os.PathLike[str], delay_s: float = 0.0,
                 encode: Callable[[Any], str] | None = None, max_lines: int = MAX_PENDING_LINES) -> None:
        self.path = os.fspath(path)
        self.delay_s = max(0.0, float(delay_s))
        self.encode = encode or dumps
        self.max_lines = max(1, int(max_lines))
        self.last_error: Exception | None = None  # a write that failed off the caller's thread (lines kept)
        self.dropped = 0  # lines given up while writes kept failing (over MAX_HELD_LINES)
        self._pending: deque[Any] = deque()  # appends on the right, the writer takes from the left
        self._io = threading.Lock()  # one write at a time, in order
        self._fd: int | None = None
        self._ino: int | None = None
        self._seal = False  # the file ended in a torn line: the next write starts with a newline
        self._next_check = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        if self.delay_s:
            _LIVE.add(self)

    def append(self, record: Any) -> None:
        """Write ``record`` as one line (a ``str`` is taken as the line itself): at once, or
        within ``delay_s``."""
        self._pending.append(record)
        if not self.delay_s or len(self._pending) >= self.max_lines:
            self.flush()
        elif self._thread is None:
            self._start()

    def flush(self) -> None:
        """Write every line appended so far, now, on this thread (raises the write's OSError;
        the lines stay pending)."""
        with self._io:
            n = len(self._pending)
            if not n:
                return
            pending = self._pending
            records = [pending.popleft() for _ in range(n)]
            try:
                self._write(records)
            except OSError:
                pending.extendleft(reversed(records))  # first again, before anything appended since
                over = len(pending) - MAX_HELD_LINES
                for _ in range(max(0, over)):
                    pending.popleft()
                    self.dropped += 1
                raise

    def close(self) -> None:
        """Write what is pending and close the descriptor (the appender can be used again)."""
        self._stop.set()
        try:
            self.flush()
        finally:
            with self._io:
                self._release()
            self._thread = None
            self._stop = threading.Event()

    def _start(self) -> None:
        self._thread = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self._stop, self.delay_s),
                                        name="hotcb-lines", daemon=True)
        self._thread.start()

    def _write(self, records: list[Any]) -> None:
        lines = self._serialize(records)
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = self._descriptor()
        if self._seal:
            data = b"\n" + data
        size = os.fstat(fd).st_size if len(lines) > 1 else None
        try:
            view = memoryview(data)
            while view:  # one write in practice; loop only guards against short writes
                view = view[os.write(fd, view):]
            self._seal = False
        except OSError:
            if size is not None:  # take the partial batch back: it is written whole at the retry
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
            self._release()  # reopened at the next write, which seals whatever part of a line landed
            raise

    def _serialize(self, records: list[Any]) -> list[str]:
        lines = []
        for r in records:
            try:
                lines.append(r if isinstance(r, str) else self.encode(r))
            except (TypeError, ValueError) as e:  # one record that cannot be written never holds the rest
                self.last_error = ValueError(f"a record could not be serialized and was dropped: {e}")
        return lines

    def _descriptor(self) -> int:
        """The open descriptor, reopened when the file at the path is no longer the one open."""
        now = time.monotonic()
        if self._fd is not None and now >= self._next_check:
            self._next_check = now + REOPEN_CHECK_S
            try:
                same = os.lstat(self.path).st_ino == self._ino
            except OSError:
                same = False
            if not same:
                self._release()
        if self._fd is None:
            self._open()
            self._next_check = now + REOPEN_CHECK_S
        assert self._fd is not None
        return self._fd

    def _open(self) -> None:
        fd = open_nofollow(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            st = os.fstat(fd)
            # A writer that died mid-line left a torn tail: seal it so it is one malformed line.
            self._seal = bool(st.st_size) and os.pread(fd, 1, st.st_size - 1) != b"\n"
        except OSError:
            os.close(fd)
            raise
        self._fd, self._ino = fd, st.st_ino

    def _release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def _after_fork(self) -> None:
        """In a forked child: the parent's pending lines are the parent's to write (a child
        that exits normally must not write them again), and its thread did not come along."""
        self._pending.clear()
        self._io = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._fd = None  # the parent's descriptor stays open in the child, unused


def _flush_loop(ref: weakref.ref[LineAppender], stop: threading.Event, delay_s: float) -> None:
    """A batched appender's writer: every ``delay_s`` it writes what is pending. It holds the
    appender weakly, so an appender dropped without ``close`` is still collected."""
    while not stop.wait(delay_s):
        appender = ref()
        if appender is None:
            return
        try:
            appender.flush()
        except Exception as e:  # a full disk: the lines are kept and tried again (the thread lives on)
            appender.last_error = e
        del appender


_LIVE: weakref.WeakSet[LineAppender] = weakref.WeakSet()  # batched appenders, written at exit


def _flush_all_at_exit() -> None:
    for appender in list(_LIVE):
        try:
            appender.flush()
        except Exception:  # exiting: nothing is left to report to
            pass


def _reset_in_child() -> None:
    for appender in list(_LIVE):
        appender._after_fork()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Replace a JSON file atomically: write a temp file beside it, then rename over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(encode(obj), indent=1, default=str, allow_nan=False))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
        # The first bytes of the file as first read: a file truncated and rewritten past our
        # offset keeps its inode and grows, so only its changed head reveals the rewrite.
        self._head = b""

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
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self._reset(st.st_ino)
        self.inode = st.st_ino
        self.size_seen = st.st_size
        self.mtime_seen = st.st_mtime_ns
        if st.st_size <= self.offset:
            return []
        with os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb") as f:
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
                if len(chunk) < self.max_bytes_per_read:
                    return []  # only a partial line so far: read it next time, once it is whole
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
