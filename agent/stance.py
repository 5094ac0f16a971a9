"""The model's stance on what the rules would do: endorse, override or veto.

The rules sense under the LLM (``sense`` mode): a finding says what the rule saw and, resolved
against the live knobs, the op it would apply. When the model acts, its op either matches a
rule's (same module, op and knobs, same direction: ``endorse``) or not (``override``); the
stance and the rule are appended to the op's reason, so the ledger records which. When a rule
would act and the model does nothing, that is a ``veto`` (recorded as an info alert).
"""

from __future__ import annotations

from typing import Any

from .actions import Unresolvable, resolve
from .digest import RuleView


def views_of(findings: list[Any], describe: dict[str, Any]) -> list[RuleView]:
    out = []
    for f in findings:
        would = None
        if getattr(f, "rollback", False):
            would = {"module": "core", "op": "rollback", "params": {}}
        elif getattr(f, "action", None) is not None:
            try:
                op = resolve(f.action, describe)
                would = {"module": op["module"], "op": op["op"], "params": op.get("params") or {}}
            except Unresolvable:
                would = None
        out.append(RuleView(rule=f.rule, saw=f.message, would=would))
    return out


def _direction(params: dict[str, Any], knobs: dict[tuple[Any, Any], Any], module: Any) -> dict[str, int]:
    out = {}
    for k, v in params.items():
        cur = knobs.get((module, k))
        if isinstance(v, (int, float)) and isinstance(cur, (int, float)) and not isinstance(v, bool):
            out[k] = (v > cur) - (v < cur)
        else:
            out[k] = 0
    return out


class Stances:
    def __init__(self, findings: list[Any], describe: dict[str, Any], stats: dict[str, Any]):
        self.views = views_of(findings, describe)
        self.knobs = {(a.get("module"), a.get("key")): a.get("value") for a in describe.get("actuators", [])}
        self.stats = stats
        self.acted = False  # the model sent an op this wake (applied or refused: not a veto either way)

    def _acting(self) -> list[RuleView]:
        return [v for v in self.views if v.would is not None]

    def _matches(self, v: RuleView, args: dict[str, Any]) -> bool:
        w = v.would or {}
        if (w.get("module"), w.get("op")) != (args.get("module"), args.get("op")):
            return False
        if w.get("op") != "set_params":
            return True
        mine, theirs = args.get("params") or {}, w.get("params") or {}
        return set(mine) == set(theirs) and \
            _direction(mine, self.knobs, args.get("module")) == _direction(theirs, self.knobs, w.get("module"))

    def label(self, args: dict[str, Any]) -> str:
        """The op's reason, with the stance it takes on the rules' proposals (if any)."""
        reason = str(args.get("reason") or "").strip()
        self.acted = True
        acting = self._acting()
        if not acting:
            return reason
        hit = next((v for v in acting if self._matches(v, args)), None)
        stance, rules = ("endorse", [hit]) if hit else ("override", acting)
        self.stats["stances"][stance] += 1
        names = ", ".join(f"{v.rule} ({v.line()['would']})" for v in rules)
        return f"{reason} [{stance}s rule {names}]"

    def vetoes(self) -> list[RuleView]:
        """The rules' proposals the model let pass without acting."""
        if self.acted:
            return []
        acting = self._acting()
        self.stats["stances"]["veto"] += len(acting)
        return acting
