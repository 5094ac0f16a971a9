"""When the model wakes: on the rules' findings or new alerts, or every ``cadence_steps``.

Never twice within ``min_gap_steps``: what arrives in between is kept for the next wake (the last
20 alerts, the last 4 findings). The autopilot's own alerts never wake it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hotcb.mcp_server.tools_alerts import Alert


@dataclass(frozen=True)
class Due:
    """A wake that is due: why, and what it was woken by."""

    why: str
    alerts: list[dict[str, Any]]  # as the tool's JSON: the digest quotes them to the model
    findings: list[Any]


class WakeSchedule:
    """``WakeSchedule(cadence_steps, min_gap_steps)``: tell it what the rules found and the alerts
    listed since ``seen_alert_ts``; ``due(step)`` says whether to wake now."""

    def __init__(self, cadence_steps: int, min_gap_steps: int):
        self.cadence_steps = cadence_steps
        self.min_gap_steps = min_gap_steps
        self.seen_alert_ts = 0.0
        self.last_step: int | None = None
        self._alerts: list[dict[str, Any]] = []
        self._findings: list[Any] = []

    def found(self, findings: list[Any]) -> None:
        self._findings += findings

    def alerted(self, listed: list[Alert]) -> None:
        new = [a for a in listed if not a.rule.startswith("autopilot_")]
        if new:
            self.seen_alert_ts = max(a.ts for a in new)
            self._alerts = (self._alerts + [a.model_dump(mode="json") for a in new])[-20:]

    def due(self, step: int) -> Due | None:
        """A wake now, with what is pending (taken), or None."""
        last = self.last_step
        due = last is None or step >= last + self.cadence_steps
        woken = bool(self._alerts or self._findings) and (last is None or step >= last + self.min_gap_steps)
        if not (woken or due):
            return None
        alerts, findings = self._alerts, self._findings[-4:]
        self._alerts, self._findings = [], []
        self.last_step = step
        why = ("alerts: " + ", ".join(sorted({a["rule"] for a in alerts}))) if alerts else \
            f"cadence (every {self.cadence_steps} steps)"
        return Due(why, alerts, findings)
