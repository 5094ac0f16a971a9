"""The tools the model is offered, and what it may do with them.

The schemas are the tool surface's own (``ToolSpec.openai_function()``), narrowed to what the
autopilot may use: ``read_trends`` (other metrics or windows than the digest's) and ``apply_op``
limited to knob changes and rollback, with a reason required. The digest already carries status,
knobs and snapshots, so get_status/describe_actuators are not re-offered (their schemas would be
re-sent with every request). Pause, resume, stop, checkpoint, freeze and callbacks are not offered:
the model has no use for them and each one tried costs a round.

``check`` is the agent's own pre-flight of one call: it refuses what is not offered, a missing
reason, and a change to the value a knob already has (not sent at all: it would be no change,
yet take a round trip and a ledger line). The guard and the kernel judge everything else.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hotcb.mcp_server.catalog import TOOLS

OFFERED = ("read_trends", "apply_op")
AGENT_OPS = ("set_params", "rollback")
KEEP = {"read_trends": ("metrics", "window"), "apply_op": ("module", "op", "params", "reason")}
APPLY_DESCRIPTION = (
    "Change the running training job: a knob (module as listed under Knobs, op set_params, params "
    "{key: value}) or a rollback (module rescue, op rollback, params {}: back to the newest healthy snapshot, "
    "lr cut). The guard "
    "checks it (bounds, the per-op ratio limit, cooldown, locks, freeze) and the reply says what the kernel "
    "decided. A reason is required.")
TRENDS_DESCRIPTION = ("Trends of chosen metrics over a window of recent points (last, min, max, slope, trend, flags, "
                      "forecast), when the digest's are not enough.")


def specs() -> list[dict[str, Any]]:
    out = []
    for name in OFFERED:
        spec = copy.deepcopy(TOOLS[name].openai_function())
        params = spec["function"]["parameters"]
        params["properties"] = {k: v for k, v in params["properties"].items() if k in KEEP[name]}
        if name == "read_trends":
            spec["function"]["description"] = TRENDS_DESCRIPTION
        if name == "apply_op":
            spec["function"]["description"] = APPLY_DESCRIPTION
            params["properties"]["op"] = {**params["properties"]["op"], "enum": list(AGENT_OPS),
                                          "description": "set_params (a knob) or rollback (module rescue)"}
            params["properties"]["reason"] = {"type": "string", "description": "why; recorded in the ledger"}
            params["required"] = ["module", "op", "params", "reason"]
        out.append(spec)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return bool(a == b)


# complexity: one early refusal per check, in the order the model is told them
def check(name: str, args: dict[str, Any], knobs: dict[tuple[str, str], Any], snapshots: int = 0,  # noqa: PLR0911
          rescue: bool = False, extra: set[str] | None = None) -> tuple[str | None, dict[str, Any], list[str]]:
    """(refusal or None, the args to send, keys dropped as unchanged). ``knobs`` maps
    (module, key) to the live value; ``snapshots`` is how many a rollback could return to; ``rescue``
    whether the kernel has the rescue module (its rollback is then the one sent)."""
    allowed = set(KEEP.get(name, ())) | (extra or set())
    stray = sorted(set(args) - allowed)
    if stray:
        args = {k: v for k, v in args.items() if k in allowed}  # e.g. a model's "lock": true is never sent
    if name != "apply_op":
        return None, args, []
    module, op = args.get("module"), args.get("op")
    if op not in AGENT_OPS:
        return (f"op {op!r} is not offered to the autopilot; ops: set_params on a knob, rollback on module core",
                args, [])
    if op == "rollback" and module not in ("rescue", "core"):
        return "rollback is module rescue, op rollback, params {}", args, []
    if op == "rollback" and snapshots <= 0:
        return "no snapshot exists in this run: rollback is not available (change a knob instead)", args, []
    if op == "set_params" and module in ("core", "cb", "rescue"):
        return f"set_params is for knobs; module {module!r} has none for the autopilot", args, []
    reason = args.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return "give a reason: every autopilot op needs one (it is recorded in the ledger)", args, []
    if op != "set_params":
        # The rescue's rollback (newest healthy snapshot, then an lr cut, one decision) where the
        # kernel has a rescue; the core one (latest snapshot) otherwise.
        return None, {**args, "module": "rescue" if rescue else "core", "params": {}}, []
    params = args.get("params")
    if not isinstance(params, dict) or not params:
        return "params must name at least one knob and its new value, e.g. {\"lr\": 0.01}", args, []
    same = [k for k, v in params.items() if (str(module), k) in knobs and _same(knobs[(str(module), k)], v)]
    if same and len(same) == len(params):
        vals = ", ".join(f"{k}={params[k]!r}" for k in same)
        return f"unchanged: {vals} is the current value; nothing sent", args, same
    return None, {**args, "params": {k: v for k, v in params.items() if k not in same}}, same
