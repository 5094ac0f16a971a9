"""``LatestFile``: a JSON file rewritten with the newest value, off the training step.

The status heartbeat (``hotcb.status.json``) is rewritten twice a second. Writing it means
creating a file, writing and renaming it: system calls that, on a busy machine, hand the CPU to
another process for a scheduler slice (milliseconds, against a step of one). ``post`` only
hands the value to a writer thread, which writes the newest one it has; ``write_now`` writes
on the caller's thread (a pause, a stop, ``publish_status``: whoever reads next must see it).
Values are numbered, so an older one never replaces a newer one, whichever thread writes last.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .jsonl_write import write_json_atomic

log = logging.getLogger("hotcb")


class LatestFile:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = path
        self._lock = threading.Lock()  # one write at a time, in sequence order
        self._wake = threading.Condition()
        self._pending: tuple[int, Any] | None = None
        self._seq = 0
        self._written = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.last_error: str | None = None

    def post(self, value: Any) -> None:
        """Write ``value`` soon, off this thread (only the newest posted value is written)."""
        self._forked()
        with self._wake:
            self._seq += 1
            self._pending = (self._seq, value)
            if self._thread is None and not self._closed:  # started on first use
                self._thread = threading.Thread(target=self._run, name="hotcb-status", daemon=True)
                self._thread.start()
            self._wake.notify()

    def write_now(self, value: Any) -> None:
        """Write ``value`` on this thread, now."""
        self._forked()
        with self._wake:
            self._seq += 1
            seq = self._seq
            self._pending = None  # anything posted before is older than this
        self._write(seq, value)

    def _forked(self) -> None:
        """In a forked child: no writer thread, and locks the parent's thread may have held at
        the fork. Fresh ones (the child is single-threaded here)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._wake = threading.Condition()
            self._thread = None

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _write(self, seq: int, value: Any) -> None:
        with self._lock:
            if seq <= self._written:
                return
            write_json_atomic(self.path, value)
            self._written = seq

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                seq, value = self._pending
                self._pending = None
            try:
                self._write(seq, value)
            except Exception as e:  # a full disk: the next heartbeat tries again
                self.last_error = f"{type(e).__name__}: {e}"
                log.debug("hotcb: status write failed: %s", e)
