"""Resolve a rule's relative action ("halve lr") against the knob's live value, within the guard.

The live value and limits come from ``describe_actuators`` at the moment of acting, so a
scheduler-moved lr or a human's last change is what gets halved, never a stale number.
"""

from __future__ import annotations

import math
from typing import Any

from hotcb.agent.rules.config import Action

from hotcb.actuators.actuator import ActuatorType


class Unresolvable(Exception):
    """The action cannot apply to this run (no such knob, no numeric value, 0, at its bound).

    A locked or cooling-down knob is *not* unresolvable: the op goes to the guard, which refuses
    it on the record (the ledger), and the rule says so in its alert."""


def resolve(action: Action, describe: dict[str, Any]) -> dict[str, Any]:
    """The apply_op arguments for ``action``: {module, op, params} with a finite, in-bounds value."""
    cands = [a for a in describe.get("actuators", []) if a.get("key") == action.knob
             and (action.module is None or a.get("module") == action.module)]
    if not cands:
        raise Unresolvable(f"no knob {action.knob!r}" + (f" in module {action.module!r}" if action.module else ""))
    knob = cands[0]
    value = knob.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unresolvable(f"{action.knob} has no numeric live value ({value!r})")
    if value == 0:
        raise Unresolvable(f"{action.knob} is 0: a relative change cannot move it")
    # Stay inside the guard's per-op limit so the change is not refused for its size.
    limit = float(knob.get("max_rel_change") or describe.get("guard", {}).get("max_rel_change") or 2.0)
    factor = min(max(action.factor, 1 / limit), limit)
    new = value * factor
    if knob.get("min") is not None:
        new = max(new, float(knob["min"]))
    if knob.get("max") is not None:
        new = min(new, float(knob["max"]))
    if str(knob.get("type", "")).lower() == ActuatorType.INT.value:  # knobs publish "int"
        # Toward the live value: rounding 2.5 to 2 would be a x0.4 "halving", outside the guard.
        new = math.ceil(new) if new < value else math.floor(new)
    if new == value:
        raise Unresolvable(f"{action.knob} is at its bound ({value})")
    return {"module": knob["module"], "op": "set_params", "params": {action.knob: new}}
