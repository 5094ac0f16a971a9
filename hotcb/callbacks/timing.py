"""``TimingCallback``: wall time between consecutive safe points, as ``time/step_ms``.

It measures the whole step (data, forward, backward, optimizer) because it times the gap
between two kernel calls, which is what a person tuning throughput wants to see.
"""

from __future__ import annotations

import time
from typing import Any

from ._base import BuiltinCallback


class TimingCallback(BuiltinCallback):
    params = {"every": 1, "event": "train_step_end"}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._last: float | None = None
        self._steps = 0
        self._acc = 0.0

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event != self.event:
            return
        now = time.perf_counter()
        if self._last is not None:
            self._acc += now - self._last
            self._steps += 1
        self._last = now
        if self._steps and self.due(env):
            env["metrics"]["time/step_ms"] = 1000.0 * self._acc / self._steps
            self._acc, self._steps = 0.0, 0
