"""User alert rules (set with the ``set_alert_rules`` tool): evaluated each tick, recorded with
``record_alert``. They notify; they never act. Trend maths comes from trend_math."""

from __future__ import annotations

import logging
import math
from typing import Any

from hotcb.agent.rules.observe import Observer
from hotcb.mcp_server.tools_alerts import AlertRule, AlertRulesInput
from hotcb.mcp_server.tools_protocol import AutopilotTools

log = logging.getLogger("hotcb.agent.rules.alerts")


class AlertEvaluator:
    def __init__(self, tools: AutopilotTools):
        self.tools = tools
        self.obs = Observer(tools)
        self.fired_at: dict[str, int] = {}

    def tick(self) -> list[dict[str, Any]]:
        """Evaluate the run's alert rules once; returns the alerts raised. Never raises."""
        try:
            return self._tick()
        except Exception as e:
            log.warning("alert tick failed: %s: %s", type(e).__name__, e)
            return []

    def _tick(self) -> list[dict[str, Any]]:
        rules = [r for r in self.tools.set_alert_rules(AlertRulesInput()).rules if r.enabled]
        if not rules:
            return []
        self.obs.refresh(sorted({r.metric for r in rules}), max(r.window for r in rules))
        step = self.obs.step
        if step is None:
            return []
        raised = []
        for r in rules:
            last = self.fired_at.get(r.id)
            if last is not None and step < last + r.cooldown_steps:
                continue
            msg = self.check(r)
            if msg is None:
                continue
            self.fired_at[r.id] = step
            a = self.tools.record_alert(rule=r.id, kind=r.kind, metric=r.metric, severity=r.severity,
                                        message=msg, step=step)
            raised.append(a.model_dump(mode="json"))
        return raised

    # complexity: one early return per alert kind reads as the table it is
    def check(self, r: AlertRule) -> str | None:  # noqa: PLR0911
        s = self.obs.summary(r.metric, r.window, plateau_rel=r.plateau_rel)
        if not s:
            return None
        steps, values = self.obs.window(r.metric, r.window)
        last = values[-1]
        kind, m = r.kind, r.metric
        if kind == "non_finite":
            return f"{m} is non-finite ({last})" if not math.isfinite(last) else None
        if kind == "threshold":
            if not math.isfinite(last):
                return None
            if r.above is not None and last > r.above:
                return f"{m} = {last:.4g} is above {r.above:g}"
            if r.below is not None and last < r.below:
                return f"{m} = {last:.4g} is below {r.below:g}"
            return None
        if kind == "plateau":
            if s.get("n", 0) >= r.window and s.get("plateau"):
                return f"{m} plateaued over {s['n']} points (rel change {s.get('rel_change')})"
            return None
        if kind == "spike":
            mean = s.get("mean")
            if mean and math.isfinite(last) and abs(last) > r.spike_factor * abs(mean):
                return f"{m} spiked to {last:.4g} ({r.spike_factor:g}x the window mean {mean})"
        return None
