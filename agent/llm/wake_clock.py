"""The wake in progress: when it started, what it is doing, and whether it ran past the wake deadline.

A background wake is watched from two threads (the tick's and its own), so passing the deadline
is noticed once, by whichever sees it first: ``on_late`` runs under the clock's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class WakeClock:
    """``WakeClock(deadline_s, on_late=...)``: ``start`` a wake, ask ``late()`` as it goes, ``end`` it."""

    def __init__(self, deadline_s: float, *, on_late: Callable[[], None]):
        self.deadline_s = deadline_s
        self.on_late = on_late
        self.t0: float | None = None  # monotonic start of the wake in progress
        self.is_late = False
        self._doing: dict[str, Any] = {}
        self._lock = threading.RLock()

    def start(self, wake_no: int, tokens0: int) -> None:
        self.t0, self.is_late = time.monotonic(), False
        self._doing = {"wake": wake_no, "doing": "starting", "round": 0, "tokens0": tokens0}

    def end(self) -> None:
        self.t0 = None
        self.is_late = False

    def doing(self, what: str) -> None:
        self._doing["doing"] = what

    def waiting(self, round_: int, messages: list[dict[str, Any]]) -> None:
        # Tokens estimated as characters / 4 (what is sent is known; the reply's count comes with it).
        self._doing.update(doing="waiting for the model", round=round_,
                           prompt_tokens_est=sum(len(str(m.get("content") or "")) for m in messages) // 4)

    def progress(self, tokens: int) -> dict[str, Any]:
        """What the wake in progress is doing: {} when none runs. ``tokens``: the budget's count now."""
        t0 = self.t0
        if t0 is None:
            return {}
        p = dict(self._doing)
        p["wake_no"] = p.pop("wake", None)
        p["seconds"] = round(time.monotonic() - t0, 1)
        p["tokens"] = tokens - p.pop("tokens0", 0)
        p["late"] = self.is_late
        return p

    def late(self) -> bool:
        """The wake in progress ran past the deadline (``on_late`` the first time that is seen)."""
        t0 = self.t0
        if t0 is None or time.monotonic() - t0 <= self.deadline_s:
            return False
        with self._lock:
            if not self.is_late:
                self.is_late = True
                self.on_late()
        return True
