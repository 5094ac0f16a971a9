"""Cheap change detection for a file: ``FileWatch``, one ``stat`` compared by inode, size, mtime
(a rewritten file, asked on a cadence); ``OffStepWatch``, the same comparison made by a thread off
the training step (the commands file, whose change the step must notice without a system call).
"""

from __future__ import annotations

import os
import threading
import weakref


class FileWatch:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._sig: tuple[int, int, int] | None = None

    def changed(self) -> bool:
        """True once for each change (including appearance or removal) since the last call."""
        try:
            st = os.stat(self.path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        if sig == self._sig:
            return False
        self._sig = sig
        return True

    def exists(self) -> bool:
        return self._sig is not None


class OffStepWatch:
    """Whether a file (the commands file) may have changed, known on the training step without a
    system call: a thread compares the file's ``lstat`` with its last one every ``interval_s`` and
    raises ``dirty``; a writer in this process that appends through ``hotcb.jsonl_write`` raises
    it at once (``ring``). The step reads ``dirty`` (an attribute) and clears it before it reads
    the file, so a change made while it reads raises it again: nothing is missed, at worst the
    file is looked at once more. The reader also looks on its own fallback cadence (the kernel's
    ``watch_interval_s``), which bounds the delay if the thread is gone (a forked child: it is
    started again there).
    """

    def __init__(self, path: str | os.PathLike[str], interval_s: float) -> None:
        self.path = os.fspath(path)
        self.interval_s = float(interval_s)
        self.dirty = True  # the file is read at the first step
        self._sig: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._key = _key(self.path)
        _WATCHES.setdefault(self._key, weakref.WeakSet()).add(self)

    def ensure_running(self) -> None:
        """Start the watching thread if it is not running (first use, after a fork)."""
        t = self._thread
        if self.interval_s <= 0 or self._stop.is_set() or (t is not None and t.is_alive()):
            return
        self._thread = threading.Thread(target=_watch_loop, args=(weakref.ref(self), self._stop, self.interval_s),
                                        name="hotcb-commands-watch", daemon=True)
        self._thread.start()

    def look(self) -> None:
        """Compare the file with its last ``lstat`` (the thread's work); raise ``dirty`` on a change."""
        try:
            st = os.lstat(self.path)
            sig: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            sig = None
        if sig != self._sig:
            self._sig = sig
            self.dirty = True

    def close(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        watches = _WATCHES.get(self._key)
        if watches is not None:
            watches.discard(self)
            if not watches:
                _WATCHES.pop(self._key, None)

    def _after_fork(self) -> None:
        self._thread = None  # the parent's thread did not come along; ensure_running starts one
        self.dirty = True


def _watch_loop(ref: weakref.ref[OffStepWatch], stop: threading.Event, interval_s: float) -> None:
    """The watching thread; it holds the watch weakly, so a watch dropped without ``close`` is collected."""
    while not stop.wait(interval_s):
        watch = ref()
        if watch is None:
            return
        watch.look()
        del watch


# The watches by real path: a write through hotcb.jsonl_write rings the ones of its file.
_WATCHES: dict[str, weakref.WeakSet[OffStepWatch]] = {}


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def ring(path: str | os.PathLike[str]) -> None:
    """A writer in this process appended to ``path``: its watches read it at their next step."""
    if not _WATCHES:  # no watch in this process (a tool, a CLI): nothing to ring
        return
    watches = _WATCHES.get(_key(path))
    if watches:
        for w in list(watches):
            w.dirty = True


def _reset_in_child() -> None:
    for watches in list(_WATCHES.values()):
        for w in list(watches):
            w._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
