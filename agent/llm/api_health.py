"""Whether the LLM API answers: down since when, and the alerts when that changes.

An outage (unreachable, or a wake past its deadline) is counted and alerted once until the API
answers again. While it is down, within ``probe_s``, the rules act instead of asking it; the
first wake after that is the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hotcb.agent.llm.memory import AiMemory


class ApiHealth:
    """``ApiHealth(memory, model=..., probe_s=..., alert=...)``; ``alert(kind, message, severity)``
    records an autopilot alert."""

    def __init__(self, memory: AiMemory, *, model: str, probe_s: float, alert: Callable[..., None]):
        self.memory = memory
        self.model = model
        self.probe_s = probe_s
        self.alert = alert
        self.down_since: float | None = None

    def down(self) -> bool:
        """Down, and the probe interval not over yet: do not ask."""
        return self.down_since is not None and time.monotonic() - self.down_since < self.probe_s

    def went_down(self, error: str) -> None:
        was_down = self.down_since is not None
        self.down_since = time.monotonic()
        self.memory.api(state="down", error=error, since=time.time(), fallback="rules")
        if not was_down:
            self.memory.stats["outages"] += 1
            self.alert("api_down", f"LLM API out ({error}); the rules autopilot runs instead until it answers "
                                   "again", severity="critical")

    def answered(self, attempts: int) -> None:
        """The API answered, after ``attempts`` tries of the request."""
        if self.down_since is not None:
            self.alert("api_up", f"LLM API answers again; {self.model} resumes", severity="info")
        self.down_since = None
        if attempts <= 1:
            self.memory.api(state="ok", since=time.time())
        else:
            self.memory.api(state="ok", since=time.time(), recovered_after_retries=attempts - 1)
