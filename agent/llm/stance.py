"""The model's stance on what the rules did or would do: endorse, override, veto, or silence.

The rules sense under the LLM (``sense`` mode) and their protective rules (``rules.PROTECTIVE``:
non-finite, divergence, plateau) act at once, exactly as in ``auto``: that is the safety floor.
A finding says what the rule saw and either the op it applied (``did``) or, resolved against the
live knobs, the op it would apply (``would``). When the model acts, its op either goes the rule's
way (same module, op and knobs, same direction: ``endorse``, which for a rule that acted already
means "more of the same"), undoes a protective rule's change (a knob it moved, moved back:
``veto``) or does something else (``override``). The stance and the rule are appended to the
op's reason, so the ledger records which.

A veto is the only way the model can take back the floor, so it needs a reason of its own. That
rule is the judge's (``hotcb.reasons``, applied by the kernel to every model's op over the run's
own records); ``veto_refusal`` asks it early, over what this wake showed the model (the alerts,
the rules' messages, earlier refusals), so a copied reason is refused before it is sent. Silence,
a timeout, a model error or an unparseable reply is never a veto: the model said nothing, so the
floor stands (counted as ``silent``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hotcb.agent.llm.digest import RuleView
from hotcb.agent.rules.actions import Unresolvable, resolve
from hotcb.agent.rules.sensors import PROTECTIVE

from hotcb.reasons import copied, own_words_refusal


def veto_refusal(reason: Any, shown: Iterable[str]) -> str | None:
    """Why ``reason`` cannot carry a veto of a protective rule's action (None: it can): the
    judge's own-words rule, asked over the texts the model was shown this wake."""
    return own_words_refusal(reason, shown)


def reason_refusal(reason: Any, shown: Iterable[str]) -> str | None:
    """Why ``reason`` cannot carry any op of the model's (None: it can): a reason copied from an
    alert, a rule's message or a refusal says nothing a reader of the ledger could agree with
    (a 1.5B model rolled a run back with a refusal's text as its reason)."""
    if copied(reason, shown):
        return "an op's reason must be your own, not copied alert, rule or refusal text"
    return None


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
        did = None
        if f.rule in PROTECTIVE and getattr(f, "landed", False):
            did = "; ".join(getattr(f, "outcome", []) or []) or "acted"
        out.append(RuleView(rule=f.rule, saw=f.message, would=would, did=did))
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
    def __init__(self, findings: list[Any], describe: dict[str, Any], stats: dict[str, Any],
                 shown: Iterable[str] = ()):
        self.views = views_of(findings, describe)
        self.knobs = {(a.get("module"), a.get("key")): a.get("value") for a in describe.get("actuators", [])}
        self.stats = stats
        self.shown = [v.saw for v in self.views] + [v.did or "" for v in self.views] + list(shown)
        self.acted = False  # the model sent an op this wake (applied or refused: not silence either way)

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

    def _undoes(self, v: RuleView, args: dict[str, Any]) -> bool:
        """``args`` moves back a knob the protective rule ``v`` moved."""
        w = v.would or {}
        if v.did is None or w.get("op") != "set_params" or args.get("op") != "set_params" \
                or w.get("module") != args.get("module"):
            return False
        mine = _direction(args.get("params") or {}, self.knobs, args.get("module"))
        theirs = _direction(w.get("params") or {}, self.knobs, w.get("module"))
        return any(k in theirs and theirs[k] and mine[k] == -theirs[k] for k in mine)

    def vetoed(self, args: dict[str, Any]) -> list[RuleView]:
        """The protective rules' actions this op would undo."""
        return [v for v in self.views if self._undoes(v, args)]

    def refusal(self, args: dict[str, Any]) -> str | None:
        """Why this op may not be sent (a veto without a reason of the model's own, or any op
        whose reason is copied text), or None."""
        if self.vetoed(args):
            return veto_refusal(args.get("reason"), self.shown)
        return reason_refusal(args.get("reason"), self.shown)

    def see(self, text: str) -> None:
        """A text the model was shown during this wake (a refusal of one of its calls)."""
        self.shown.append(text)

    def label(self, args: dict[str, Any]) -> str:
        """The op's reason, with the stance it takes on the rules' actions and proposals (if any)."""
        reason = str(args.get("reason") or "").strip()
        self.acted = True
        acting = self._acting()
        if not acting:
            return reason
        vetoed = self.vetoed(args)
        hit = next((v for v in acting if self._matches(v, args)), None)
        if vetoed:
            stance, rules = "veto", vetoed
        else:
            stance, rules = ("endorse", [hit]) if hit else ("override", acting)
        self.stats["stances"][stance] += 1
        names = ", ".join(f"{v.rule} ({v.what()})" for v in rules)
        verb = {"endorse": "endorses", "override": "overrides", "veto": "vetoes"}[stance]
        return f"{reason} [{verb} rule {names}]"

    def silent(self) -> list[RuleView]:
        """The rules' actions and proposals the model let stand without a word: never a veto."""
        if self.acted:
            return []
        acting = self._acting()
        self.stats["stances"]["silent"] += len(acting)
        return acting
