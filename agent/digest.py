"""The run digest an LLM wake starts from: a few hundred tokens built from read-only tools.

Prefetching it saves the model the usual get_status/read_trends/describe_actuators round trips
(each round trip re-sends the whole conversation), so a typical wake is one or two requests.
"""

from __future__ import annotations

import json
from typing import Any

from hotcb.prompts import load


def _j(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"), default=str)


def knob_line(describe: dict[str, Any]) -> str:
    parts = []
    for a in describe.get("actuators", []):
        if a.get("module") in ("cb", "core"):
            continue
        bounds = f"[{a['min']:g}..{a['max']:g}]" if a.get("min") is not None and a.get("max") is not None else ""
        extra = f" locked:{a['locked_by']}" if a.get("locked_by") else ""
        if a.get("cooldown_until_step"):
            extra += f" cooldown_until:{a['cooldown_until_step']}"
        parts.append(f"{a['module']}.{a['key']}={a.get('value')!r}{bounds}{extra}")
    return "; ".join(parts) or "none published yet"


def build(tools: Any, *, why: str, alerts: list[dict[str, Any]], notes: list[str], window: int = 200) -> str:
    status = tools.call("get_status", {})
    trends = tools.call("read_trends", {"window": window})
    describe = tools.call("describe_actuators", {})
    pending = tools.call("list_proposals", {"status": "pending", "last": 5})["proposals"]
    fc = trends.get("forecast")
    return load("autopilot_wake").render(
        why=why, step=status.get("step"), max_steps=status.get("max_steps") or "?", liveness=status.get("liveness"),
        steps_per_s=status.get("steps_per_s"), freeze=status.get("freeze_mode") or "off",
        snapshots=(status.get("snapshots") or [])[-3:] or "none", window=trends.get("window"),
        step_range=trends.get("step_range"), trends=_j(trends.get("metrics")),
        forecast=_j({k: fc.get(k) for k in ("metric", "at_step", "value", "low", "high")}) if fc else "none",
        knobs=knob_line(describe),
        changes=_j([{k: c.get(k) for k in ("step", "key", "old", "new", "source")} for c in trends.get("recent_changes", [])[-5:]]) or "none",
        alerts=_j([{k: a.get(k) for k in ("step", "rule", "metric", "message")} for a in alerts[-5:]]) if alerts else "none",
        pending=_j([{"op": p["op"].get("params"), "reason": p["reason"][:80]} for p in pending]) if pending else "none",
        notes=" | ".join(notes[-3:]) or "none",
    )
