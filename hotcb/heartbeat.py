"""``Heartbeat``: when the kernel next writes ``hotcb.status.json``, and the step rate it reports.

At most one write per ``interval_s`` unless forced (a pause, a stop, a freeze switch publish at
once); the rate is measured over at least 0.2 s so a burst of forced writes does not skew it.
"""

from __future__ import annotations

import time


class Heartbeat:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.steps_per_s: float | None = None
        self.due_at = 0.0  # the monotonic time the next status is due (the kernel's step checks it first)
        self._mark: tuple[float, int] | None = None  # (when, step) the rate is measured from

    def beat(self, step: int, force: bool = False) -> bool:
        """Whether the status is due now (then the rate is updated)."""
        now = time.monotonic()
        if not force and now < self.due_at:
            return False
        self.due_at = now + self.interval_s
        if self._mark is not None and now > self._mark[0]:
            dt = now - self._mark[0]
            if dt >= 0.2:
                self.steps_per_s = round((step - self._mark[1]) / dt, 3)
                self._mark = (now, step)
        else:
            self._mark = (now, step)
        return True
