"""Cheap change detection for a file: ``FileWatch``, one ``stat`` compared by inode, size, mtime
(a rewritten file, asked on a cadence); ``RungWatch``, a flag raised by this process's writers
and a cadence (the commands file, whose change the step must notice without a system call).
"""

from __future__ import annotations

import os
import weakref


class FileWatch:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._sig: tuple[int, int, int] | None = None
        self.mode: int | None = None  # the file's type and permissions at the last look (None: none)

    def changed(self) -> bool:
        """True once for each change (including appearance or removal) since the last call.
        The path itself is looked at (``lstat``): a link put there is a change, never followed."""
        try:
            st = os.lstat(self.path)
            sig: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            self.mode = st.st_mode
        except OSError:
            sig, self.mode = None, None
        if sig == self._sig:
            return False
        self._sig = sig
        return True

    def exists(self) -> bool:
        return self._sig is not None


class RungWatch:
    """Whether a file (the commands file) may have changed, known on the training step without a
    system call: ``dirty`` (an attribute) is raised by a writer in this process that appends
    through ``hotcb.jsonl_write`` (``ring``), and by the reader's own cadence (the kernel raises
    it every ``command_check_s``: a writer in another process is seen within that). The step
    reads ``dirty`` and clears it before it reads the file, so a ring while it reads raises it
    again: nothing is missed, at worst the file is looked at once more.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.dirty = True  # the file is read at the first step
        self._key = _key(self.path)
        _WATCHES.setdefault(self._key, weakref.WeakSet()).add(self)

    def close(self) -> None:
        watches = _WATCHES.get(self._key)
        if watches is not None:
            watches.discard(self)
            if not watches:
                _WATCHES.pop(self._key, None)


# The watches by real path: a write through hotcb.jsonl_write rings the ones of its file.
_WATCHES: dict[str, weakref.WeakSet[RungWatch]] = {}


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
