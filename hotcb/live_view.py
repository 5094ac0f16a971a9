"""The run as its kernel sees it now, as a judge ``View``: what the kernel judges each op with
(the command path, the watched files, the freeze switch's recipe check, through
``HotKernel.view``). Its twin for processes other than the kernel is ``published_view.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .divergence import verdict_for_judge
from .judge import View
from .ops import RESCUE

if TYPE_CHECKING:
    from .kernel import HotKernel


def live_view(kernel: HotKernel, step: int | None = None) -> View:
    """Live knob values, locks, freeze, schedule; ``step``: the step judged (None: the kernel's)."""
    k = kernel
    state = k.state

    def knob(module: str, key: str) -> dict[str, Any] | None:
        act = state.get(key)
        if act is None or act.group != module:
            return None
        act.refresh()  # the guard's relative limit applies to the live value (schedulers move it)
        return act.describe()

    freeze = k.freeze_switch.freeze
    return View(code=k.code, guard=k.guard, freeze_mode=freeze.mode, freeze_source=freeze.source,
                step=k.step if step is None else step,
                locks=k.locks, groups=frozenset(state.groups()), knob=knob, knob_keys=state.keys,
                scheduled_source=k.schedule.source_of, run_verdict=_run_verdict(k),
                evidence=getattr(k.collector, "check", None) if k.dist is None and k.is_writer else None,
                recent=k.recent if k.dist is None else None)


def _run_verdict(k: HotKernel) -> str | None:
    rescue = k.modules.get(RESCUE)
    return verdict_for_judge(rescue.verdict.value if rescue else None, k.dist.world_size if k.dist else 1)
