"""One change of the rescue's knob (lr) by the rescue's rules, asked of the guard before it is sent.

The peak cut after an overshot warmup (``hotcb.overshot_warmup``), the probe and the descent
(``hotcb.lr_steps``) each move lr by one rule op (``set_params``, source ``rule``). A change the
knob's cooldown (or a lock) holds back waits, rather than leave a refusal in the ledger at every
step it waits; the kernel judges the op itself again when it is sent.

``hotcb.rescue.Rescue`` owns one ``RuleLrOp`` and hands it the way it submits an op (marked as
the rescue's own, so the step it submits from is not re-entered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .actuators.actuator import HotcbActuator, ValueRefused
from .guard import GuardRefusal, check_knob_change
from .modules import ApplyContext
from .ops import HotOp, Source


class RuleLrOp:
    def __init__(self, kernel: Any, knob: str, submit: Callable[[HotOp, ApplyContext], dict[str, Any]]):
        self.kernel = kernel
        self.knob = knob
        self.submit = submit  # the rescue's: the op goes through kernel.submit as the rescue's own

    @property
    def locked(self) -> bool:
        return self.knob in self.kernel.locks

    def allows(self, act: HotcbActuator, value: float, step: int) -> bool:
        """The guard's answer to a rule's change of the knob to ``value`` at ``step``."""
        try:
            check_knob_change(act.describe(), value, source=Source.RULE, step=step,
                              lock=self.kernel.locks.get(self.knob), config=self.kernel.guard)
        except GuardRefusal:
            return False
        except ValueRefused:
            return True  # out of bounds: the kernel's refusal says so in the ledger
        return True

    def send(self, act: HotcbActuator, value: float, ctx: ApplyContext, *, actor: str,
             reason: str) -> dict[str, Any] | None:
        """Set the knob to ``value`` by one rule op; the ledger's entry, or None when the guard
        holds the change back (nothing sent: the next step may ask again)."""
        if not self.allows(act, value, ctx.step):
            return None
        op = HotOp(module=act.group, op="set_params", params={act.param_key: value}, source=Source.RULE,
                   actor=actor, reason=reason)
        return self.submit(op, ctx)
