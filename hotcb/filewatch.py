"""Cheap change detection for a rewritten file: one ``stat``, compared by inode, size, mtime."""

from __future__ import annotations

import os


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
