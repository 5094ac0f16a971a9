"""Alerts and alert rules: notices raised on a run (rules, user alert rules, autopilot API
health), and the user's rules on any metric. Alerts notify; they never change the run.

Files (in the run directory, written only here): ``hotcb.alerts.jsonl``: alerts, append-only.
``hotcb.alerts.json``: user alert rules.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from hotcb.jsonl import read_all, read_json
from hotcb.jsonl_write import append_line, write_json_atomic
from hotcb.rundir import ALERT_RULES, ALERTS

from .registry import StrictInput, ToolError
from .tools_base import ToolGroup

AlertKind = Literal["threshold", "plateau", "spike", "non_finite"]


class ListAlertsInput(StrictInput):
    last: int = Field(20, ge=1, le=1000)
    since_ts: float | None = None


class Alert(BaseModel):
    alert_id: str
    ts: float
    step: int | None = None
    rule: str
    kind: str
    metric: str | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str
    value: Any = None
    source: str | None = None
    actor: str | None = None


class AlertsOutput(BaseModel):
    total: int
    alerts: list[Alert]


class AlertRule(StrictInput):
    """One user alert: notifies, never acts."""

    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: AlertKind
    metric: str = Field(min_length=1, max_length=200)
    above: float | None = Field(None, description="threshold: alert when the last value is above this")
    below: float | None = Field(None, description="threshold: alert when the last value is below this")
    window: int = Field(50, ge=8, le=20000, description="points considered (plateau, spike)")
    plateau_rel: float = Field(0.01, gt=0, le=1, description="plateau: relative improvement below this")
    spike_factor: float = Field(3.0, gt=1, le=1e6, description="spike: last value above factor x the window mean (the window includes it)")
    cooldown_steps: int = Field(100, ge=0, le=10_000_000)
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True

    @field_validator("above", "below")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("thresholds must be finite")
        return v


class AlertRulesInput(StrictInput):
    rules: list[AlertRule] | None = Field(None, description="the new rule set; omit to read the current one")
    replace: bool = Field(True, description="replace the rule set (true) or add/overwrite by id (false)")
    remove: list[str] = Field(default_factory=list, max_length=100,
                              description="rule ids to remove from the current set (with or without rules)")


class AlertRulesOutput(BaseModel):
    rules: list[AlertRule]
    set_by: str | None = None
    set_ts: float | None = None


class AlertTools(ToolGroup):
    def record_alert(self, *, rule: str, kind: str, message: str, metric: str | None = None,
                     severity: str = "warning", value: Any = None, step: int | None = None) -> Alert:
        """Not a tool: the autopilot process (rules, alert rules, API health) records alerts here."""
        a = Alert(alert_id=uuid.uuid4().hex[:12], ts=time.time(),
                  step=step if step is not None else self.status().step, rule=rule, kind=kind,
                  metric=metric, severity=severity, message=message, value=value, source=self.source,  # type: ignore[arg-type]
                  actor=self.current_actor())
        append_line(self.run.root / ALERTS, a.model_dump(mode="json"))
        return a

    def list_alerts(self, args: ListAlertsInput) -> AlertsOutput:
        """Alerts raised on this run (rules, user alert rules, autopilot API health), newest last."""
        rows = []
        for rec in read_all(self.run.root / ALERTS):
            if not isinstance(rec, dict):
                continue
            try:
                rows.append(Alert.model_validate(rec))
            except ValueError:
                continue
        total = len(rows)
        if args.since_ts is not None:
            rows = [a for a in rows if a.ts > args.since_ts]
        return AlertsOutput(total=total, alerts=rows[-args.last:])

    def alert_rules(self) -> AlertRulesOutput:
        doc = read_json(self.run.root / ALERT_RULES)
        doc = doc if isinstance(doc, dict) else {}
        rules = []
        for r in doc.get("rules") or []:
            try:
                rules.append(AlertRule.model_validate(r))
            except ValueError:
                continue  # a hand-edited bad rule is skipped, never fatal
        return AlertRulesOutput(rules=rules, set_by=doc.get("set_by"), set_ts=doc.get("set_ts"))

    def set_alert_rules(self, args: AlertRulesInput) -> AlertRulesOutput:
        """Read (no rules given) or set alert rules on any metric: threshold (above/below), plateau,
        spike (last value above spike_factor x the window mean), non_finite. Alerts notify; they
        never change the run."""
        if args.rules is None and not args.remove:
            return self.alert_rules()
        for r in args.rules or []:
            if r.kind == "threshold" and r.above is None and r.below is None:
                raise ToolError(f"threshold rule {r.id!r} needs above or below")
        current = {r.id: r for r in self.alert_rules().rules}
        rules = {} if (args.replace and args.rules is not None) else current
        rules.update({r.id: r for r in args.rules or []})
        missing = [i for i in args.remove if i not in rules]
        if missing:
            raise ToolError(f"no alert rule {', '.join(map(repr, missing))}; rules: {', '.join(rules) or 'none'}")
        for i in args.remove:
            del rules[i]
        doc = {"rules": [r.model_dump(mode="json") for r in rules.values()],
               "set_by": self.current_actor() or self.source, "set_ts": time.time()}
        write_json_atomic(self.run.root / ALERT_RULES, doc)
        return self.alert_rules()
