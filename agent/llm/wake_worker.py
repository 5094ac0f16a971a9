"""The background wake: one worker thread at a time, so the rules keep ticking while the model thinks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class WakeWorker:
    """``start(wake, args)`` runs a wake in a daemon thread; ``running()`` says whether it still does."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self, wake: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._thread = threading.Thread(target=wake, args=args, name="hotcb-llm-wake", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        """A wake is running; one that has finished is forgotten."""
        t = self._thread
        if t is None:
            return False
        if not t.is_alive():
            self._thread = None
            return False
        return True

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)
