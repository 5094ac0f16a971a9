"""``KnobWriter``: tune's knob changes and verdicts, submitted through the kernel like any op.

Each change is a ``set_params`` op per knob group with ``source: tune`` (freeze, locks, the
guard and the ledger apply); under torch.distributed only inside rank 0's broadcast, and each
op is handed to ``DistSync`` for the other ranks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from ..modules import ApplyContext
from ..ops import TUNE, HotOp, Source
from .readonly import ReadOnly
from .space import TuneSpace
from .sync import DistSync

log = logging.getLogger("hotcb.tune")
Submit = Callable[[HotOp, dict[str, Any]], dict[str, Any]]


def _cmd_id() -> str:
    return f"tune-{uuid.uuid4().hex[:16]}"


class KnobWriter:
    """Applies knob values as ``source: tune``; remembers why the last change was refused."""

    def __init__(self, submit: Submit, space: TuneSpace, sync: DistSync):
        self._submit, self._space, self._sync = submit, space, sync
        self._last_refusal: str | None = None

    last_refusal: ReadOnly[str | None] = ReadOnly()

    def apply(self, ctx: ApplyContext, values: dict[str, float], reason: str, actor: str) -> bool | list[str]:
        """Returns True when every group applied, else the keys that did apply (to undo them)."""
        if not self._sync.can_apply():  # never on one rank alone: that would split the ranks
            self._last_refusal = "not at a sync step (distributed)"
            log.error("hotcb tune: a knob change outside a sync step was dropped: %s", reason)
            return []
        by_group: dict[str, dict[str, float]] = {}
        for k, v in values.items():
            by_group.setdefault(self._space.group(k), {})[k] = v
        done: list[str] = []
        self._last_refusal = None
        for group, params in by_group.items():
            op = HotOp(module=group, op="set_params", params=params, source=Source.TUNE, actor=actor, reason=reason,
                       cmd_id=_cmd_id())
            entry = self._submit(op, ctx.env)
            self._sync.send(op, entry.get("decision"))
            if entry.get("decision") == "applied":
                done.extend(params)
            else:
                self._last_refusal = f"{entry.get('decision')}: {entry.get('error')}"
        return True if len(done) == len(values) else done

    def verdict(self, ctx: ApplyContext, params: dict[str, Any], reason: str, actor: str) -> None:
        """A ledger entry for the verdict, so the ledger alone tells each trial's story."""
        self._submit(HotOp(module=TUNE, op="verdict", params=params, source=Source.TUNE, actor=actor, reason=reason,
                           cmd_id=_cmd_id()), ctx.env)
