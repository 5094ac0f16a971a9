"""What both framework adapters share: wiring a trainer's optimizers into the kernel as knobs
and state, turning framework metrics into plain numbers, and never raising into training."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..actuators import optimizer_actuators
from ..distributed import attach as attach_distributed

log = logging.getLogger("hotcb")
F = TypeVar("F", bound=Callable[..., Any])


def never_raise(fn: F) -> F:
    """A hook that fails logs and counts the error on the kernel; the training run goes on."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as e:
            kernel = getattr(self, "kernel", None)
            report = getattr(kernel, "report_error", None)
            if callable(report):
                report(e)
            else:
                log.exception("hotcb: adapter hook %s failed (training continues)", fn.__name__)
            return None

    return wrapper  # type: ignore[return-value]


def optimizer_prefixes(count: int, names: Sequence[str] | None) -> list[str]:
    """Knob-key prefixes: none for a single optimizer, ``name.`` (default ``opt{i}.``) for several."""
    if names is not None:
        if len(names) != count:
            raise ValueError(f"optimizer_names has {len(names)} names for {count} optimizers")
        return [f"{n}." for n in names]
    return [""] if count == 1 else [f"opt{i}." for i in range(count)]


def wire_optimizers(
    kernel: Any,
    pairs: Sequence[tuple[Any, Any]],
    *,
    names: Sequence[str] | None = None,
    per_group: bool = False,
    register_state: bool = True,
) -> list[str]:
    """Add knobs (and rollback state) for each ``(optimizer, scheduler or None)``; returns keys."""
    attach_distributed(kernel)  # the framework may have started the process group after the kernel
    keys: list[str] = []
    actuators = []
    for i, ((opt, sched), prefix) in enumerate(zip(pairs, optimizer_prefixes(len(pairs), names), strict=True)):
        acts = optimizer_actuators(opt, scheduler=sched, prefix=prefix, per_group=per_group)
        actuators += acts
        keys += [a.param_key for a in acts]
        if register_state:
            suffix = "" if len(pairs) == 1 else str(i)
            kernel.register_state(f"optimizer{suffix}", opt)
            if sched is not None and hasattr(sched, "state_dict"):
                kernel.register_state(f"scheduler{suffix}", sched)
    kernel.add_actuators(actuators)
    return keys


def plain_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """Scalars only, as Python numbers (one-element tensors included; NaN kept, it must be seen)."""
    out: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        if hasattr(v, "numel") and callable(v.numel):
            if v.numel() != 1:
                continue
            v = v.detach().item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[str(k)] = v
    return out
