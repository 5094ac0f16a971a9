"""``HeartbeatCallback``: a log line and an ``hb/steps_per_s`` metric every ``every`` steps,
so a person tailing the log (or a chart) sees the run is alive and how fast it goes."""

from __future__ import annotations

import logging
import time
from typing import Any

from ._base import BuiltinCallback

log = logging.getLogger("hotcb.heartbeat")


class HeartbeatCallback(BuiltinCallback):
    params = {"every": 100}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._mark: tuple[float, int] | None = None

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event != "train_step_end" or not self.due(env):
            return
        step, now = int(env.get("step") or 0), time.monotonic()
        if self._mark is not None and step > self._mark[1] and now > self._mark[0]:
            rate = (step - self._mark[1]) / (now - self._mark[0])
            env["metrics"]["hb/steps_per_s"] = rate
            log.info("hotcb heartbeat: step %d, %.1f steps/s", step, rate)
        self._mark = (now, step)
