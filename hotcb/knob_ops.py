"""``KnobOps``: ``set_params`` on a knob group (opt, loss, any group the state declares).

The judge has already refused what it must (unknown group or knob, bounds, ratios, cooldowns,
locks, freeze); this applies what passed, leaving out keys already in force (no cooldown).
"""

from __future__ import annotations

from typing import Any

from .actuators.state import MutableState
from .judge import View, unchanged_keys
from .locks import KnobLocks
from .modules import ApplyContext
from .ops import HotOp, Source


class KnobOps:
    def __init__(self, state: MutableState, locks: KnobLocks) -> None:
        self.state = state
        self.locks = locks

    def handle(self, op: HotOp, ctx: ApplyContext, view: View, is_writer: bool) -> dict[str, Any]:
        """Apply ``op`` as judged against ``view`` (the same view: no second look)."""
        same = set(unchanged_keys(view, op))
        params = {k: v for k, v in op.params.items() if k not in same}
        payload = self.state.apply(op.module, params, ctx.env, ctx.step) if params else {}
        if op.lock and op.source == Source.HUMAN:
            for key in op.params:
                self.locks.lock(key, op.actor, ctx.step)
            self.locks.save(is_writer)
        return payload
