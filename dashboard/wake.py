"""Wake-ups for the live channel when the run's metrics or ledger file changes.

One watcher per dashboard (``watchfiles``: inotify/FSEvents/ReadDirectoryChangesW), started
when the first live session subscribes and stopped when the last one leaves. A session waits
on its own event with a timeout, so a missed or impossible notification (a network filesystem,
an exhausted inotify limit, ``watchfiles`` not installed) costs at most the fallback poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50  # changes within this are one wake-up: at most ~20 reads/s on a busy run
STEP_MS = 20  # a wake-up waits this long for a following change (a burst of appends is one read)


def watch_available() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


class FileWake:
    """Sets every subscriber's event when one of ``names`` in ``directory`` changes."""

    def __init__(self, directory: str | os.PathLike[str], names: Iterable[str]):
        self.directory = os.fspath(directory)
        self.names = set(names)
        self.subscribers: set[asyncio.Event] = set()
        self.failed = not watch_available()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    @property
    def watching(self) -> bool:
        return not self.failed

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self.subscribers.add(event)
        if self._task is None and not self.failed:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch(self._stop))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        """Synchronous (it runs in a stream's ``finally``, maybe while cancelled): the watcher task
        ends by itself once its stop event is set."""
        self.subscribers.discard(event)
        if not self.subscribers and self._stop is not None:
            self._stop.set()
            self._task = self._stop = None

    def _wake_all(self) -> None:
        for event in list(self.subscribers):
            event.set()

    async def _watch(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        def wanted(_change: object, path: str) -> bool:
            return os.path.basename(path) in self.names

        try:
            async for _ in awatch(self.directory, watch_filter=wanted, debounce=DEBOUNCE_MS, step=STEP_MS,
                                  stop_event=stop, recursive=False):
                self._wake_all()
        except Exception as e:  # the sessions keep their fallback poll
            log.warning("file watch on %s failed (%s); the live channel polls instead", self.directory, e)
            self.failed = True
            self._wake_all()


async def wait_woken(event: asyncio.Event | None, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` s pass; then the event is cleared for the next wait."""
    if event is None:
        await asyncio.sleep(timeout)
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()
