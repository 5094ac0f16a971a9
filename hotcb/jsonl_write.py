"""Writing JSON lines and JSON files in the run directory (the rules: ``hotcb.jsonl``).

``append_line``/``append_lines``: whole lines, one ``write`` each batch, on an ``O_APPEND``
descriptor under an advisory lock, a torn tail sealed first (any file with several writers).
``LineAppender``: the single writer of a file (the metrics), on a descriptor kept open, at once
or in batches off the caller's thread. ``write_json_atomic``: a JSON file replaced atomically.
Every file is opened without following symlinks (``hotcb.jsonl.open_nofollow``).
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .codec import encode
from .filewatch import ring
from .jsonl import open_nofollow

try:  # advisory locks are POSIX; elsewhere O_APPEND alone keeps single-write lines whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


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
    ring(path)  # a watch of this file in this process (the kernel's commands) reads it at its next step


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
    write_bytes_atomic(path, json.dumps(encode(obj), indent=1, default=str, allow_nan=False).encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace a file atomically with ``data``: a temp file of its own creation beside it (never
    written through what lies there), then renamed over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
