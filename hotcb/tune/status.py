"""``TuneStatus``: what tune is doing now, and when it next looks: the one writer of ``status``.

Every part says what it is doing through this object (``say``, ``wait``, ``error``); the status
file is published through the callable it is given (``TuneModule._publish``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .readonly import ReadOnly


class TuneStatus:
    """The status line, the last error, the knobs the last trial could not move, the next check."""

    def __init__(self, publish: Callable[[], None]):
        self._publish = publish
        self._text = "off"
        self._last_error: str | None = None
        self._skipped: list[str] = []  # knobs the last trial could not move, and why
        self._next_check = 0

    text: ReadOnly[str] = ReadOnly()
    last_error: ReadOnly[str | None] = ReadOnly()
    next_check: ReadOnly[int] = ReadOnly()

    def due(self, step: int) -> bool:
        return step >= self._next_check

    def check_at(self, step: int) -> None:
        self._next_check = step

    def set(self, text: str) -> bool:
        """Set the status line without publishing; True when it changed."""
        changed, self._text = text != self._text, text
        return changed

    def publish(self) -> None:
        self._publish()

    def say(self, text: str) -> None:
        self._text = text
        self._publish()

    def wait(self, step: int, why: str, steps: int) -> None:
        """Nothing to do for ``steps`` steps, because ``why`` (published when it is news)."""
        self._next_check = step + max(1, steps)
        if self.set(why):
            self._publish()

    def skipped(self, why: list[str]) -> None:
        if why != self._skipped:
            self._skipped = why
            self._publish()

    def error(self, text: str) -> None:
        self._last_error = text

    def report(self) -> dict[str, Any]:
        """This part of ``hotcb.tune.json``."""
        return {"status": self._text, "last_error": self._last_error, "skipped": self._skipped}
