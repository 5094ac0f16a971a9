"""``RunLock``: one kernel per run directory.

The kernel holds an exclusive ``flock`` on ``hotcb.kernel.lock`` for its whole life. The lock
belongs to the open file description, so the OS drops it the moment the holder dies, however it
dies: a crash never leaves a run stuck, and a restart after a kill acquires it at once. The file
names the holder (pid, host, session) so a second kernel's refusal can say who it is; the file
itself is left in place (removing it would let a third process lock a fresh inode beside a live
holder).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from .errors import RunLocked
from .jsonl import open_nofollow
from .rundir import KERNEL_LOCK as LOCK_FILE

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no guard
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """The exclusive hold of one run directory by one kernel (``acquire`` / ``release``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None
        self.session = ""
        self.deferred = False  # held by another process, to be taken at ``distributed.attach``
        self._unguarded = False  # no advisory locks on this platform: held as far as anyone can tell

    @property
    def held(self) -> bool:
        return self._fd is not None or self._unguarded


    def acquire(self, session: str = "", *, wait_s: float = 0.0, defer: bool = False) -> None:
        """Take the lock or raise ``RunLocked`` naming the live holder. ``wait_s``: keep trying
        that long (a sibling rank about to let go). ``defer``: a process that cannot know its
        rank yet (spawned ranks before the process group) leaves a held lock to
        ``distributed.attach``, which takes it for rank 0 only."""
        if fcntl is None:
            self._unguarded = True
        if self.held:
            return
        self.session = session
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = _holder(fd)
                os.close(fd)
                if defer:
                    self.deferred = True
                    return
                raise RunLocked(str(self.path.parent), holder) from None
        self.deferred = False
        try:
            data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "session": session,
                               "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data + b"\n", 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only the holder's name is missing
        self._fd = fd

    def release(self) -> None:
        self._unguarded = False
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale name for whoever looks next
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor drops the flock

    def __del__(self) -> None:  # a kernel whose construction failed after taking the lock
        try:
            self.release()
        except Exception:
            pass


def _holder(fd: int) -> dict[str, object]:
    try:
        raw = os.pread(fd, 4096, 0)
        value = json.loads(raw.decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
