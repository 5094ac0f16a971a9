"""Convenience constructors: knobs for a torch optimizer, for loss weights, for a custom list.

LR schedulers: a torch scheduler recomputes ``group["lr"]`` from its own base on every
``scheduler.step()``, which would silently undo a live change. Here an lr change means
"move the whole schedule": the new lr takes effect now, and the scheduler's bases
(``base_lrs``, ``initial_lr``, ``max_lr``/``min_lr`` where present, ``_last_lr``) are scaled by
the same factor new/old, so the schedule keeps its shape from the new level. With
``ReduceLROnPlateau`` only the live lr changes (it has no base). The scheduler is the lr knob's
``companion``: its state is snapshotted and restored with every rollback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .actuator import ActuatorType, HotcbActuator
from .state import MutableState


def _rescale_scheduler(scheduler: Any, group_index: int, factor: float) -> None:
    if scheduler is None or factor == 1.0:
        return
    seen: set[int] = set()  # a list two schedulers share (SequentialLR's _last_lr) is scaled once
    for child in getattr(scheduler, "_schedulers", None) or ():  # SequentialLR, ChainedScheduler
        _rescale_bases(child, group_index, factor, seen)
    _rescale_bases(scheduler, group_index, factor, seen)
    _rescale_groups(scheduler, group_index, factor)


def _rescale_bases(scheduler: Any, group_index: int, factor: float, seen: set[int]) -> None:
    """One scheduler's own bases (the optimizer's groups are scaled once, by the caller's scheduler)."""
    for name in ("base_lrs", "_last_lr", "max_lrs", "min_lrs", "eta_min"):
        seq = getattr(scheduler, name, None)
        if (isinstance(seq, list) and id(seq) not in seen and group_index < len(seq)
                and isinstance(seq[group_index], (int, float))):
            seen.add(id(seq))
            seq[group_index] = seq[group_index] * factor


def _rescale_groups(scheduler: Any, group_index: int, factor: float) -> None:
    optimizer = getattr(scheduler, "optimizer", None)
    if optimizer is not None:
        group = optimizer.param_groups[group_index]
        for key in ("initial_lr", "max_lr", "min_lr"):
            if isinstance(group.get(key), (int, float)):
                group[key] = group[key] * factor


def _base_lr(scheduler: Any, index: int) -> Any:
    """A group's base lr: what the scheduler multiplies (None: it has none, as ReduceLROnPlateau)."""
    bases = getattr(scheduler, "base_lrs", None)
    return bases[index] if isinstance(bases, (list, tuple)) and len(bases) > index else None


def _set_group(optimizer: Any, index: int, key: str, value: Any, env: dict[str, Any], scheduler: Any) -> None:
    group = optimizer.param_groups[index]
    if key == "lr":
        old = float(group["lr"])
        sched = env.get("scheduler", scheduler)
        if old > 0:
            _rescale_scheduler(sched, index, float(value) / old)
    group[key] = tuple(value) if isinstance(value, (list, tuple)) else value


def optimizer_actuators(
    optimizer: Any,
    *,
    scheduler: Any = None,
    prefix: str = "",
    group: str = "opt",
    per_group: bool = False,
    lr_bounds: tuple[float, float] = (1e-8, 10.0),
    wd_bounds: tuple[float, float] = (0.0, 1.0),
) -> list[HotcbActuator]:
    """Knobs for ``optimizer``: ``lr``, ``weight_decay``, ``betas`` or ``momentum``.

    The plain keys act on every param group, keeping the groups' ratios to group 0 (so a
    backbone at 0.1x stays at 0.1x). ``per_group=True`` adds ``lr.g1``, ... for each group.
    """
    groups = optimizer.param_groups  # for discovery only: load_state_dict replaces this list,
    # so the knobs below look param_groups up on the optimizer each time.

    def ratio_setter(key: str):
        def apply(value: Any, env: dict[str, Any]) -> None:
            live = optimizer.param_groups
            base = live[0].get(key)
            for i, g in enumerate(live):
                if isinstance(value, (int, float)) and isinstance(base, (int, float)) and base:
                    new = value * (g[key] / base)
                else:
                    new = value
                _set_group(optimizer, i, key, new, env, scheduler)

        return apply

    out: list[HotcbActuator] = []
    first = groups[0]
    specs: list[tuple[str, ActuatorType, float | None, float | None]] = [
        ("lr", ActuatorType.LOG_FLOAT, *lr_bounds),
    ]
    if "weight_decay" in first:
        specs.append(("weight_decay", ActuatorType.FLOAT, *wd_bounds))
    if "betas" in first:
        specs.append(("betas", ActuatorType.TUPLE, 0.0, 0.99999))
    if "momentum" in first:
        specs.append(("momentum", ActuatorType.FLOAT, 0.0, 0.99999))
    for key, kind, lo, hi in specs:
        out.append(HotcbActuator(
            param_key=prefix + key, type=kind, group=group, min=lo, max=hi,
            apply_fn=ratio_setter(key), read_fn=lambda k=key: optimizer.param_groups[0][k],
            label=prefix + key, description=f"optimizer {key} (all param groups, ratios kept)",
            companion=scheduler if key == "lr" else None,
            base_fn=(lambda: _base_lr(scheduler, 0)) if key == "lr" and scheduler is not None else None,
        ))
        if per_group and len(groups) > 1:
            for i in range(1, len(groups)):
                out.append(HotcbActuator(
                    param_key=f"{prefix}{key}.g{i}", type=kind, group=group, min=lo, max=hi,
                    apply_fn=lambda v, env, i=i, k=key: _set_group(optimizer, i, k, v, env, scheduler),
                    read_fn=lambda i=i, k=key: optimizer.param_groups[i][k],
                    description=f"optimizer {key} of param group {i}",
                    companion=scheduler if key == "lr" else None,
                    base_fn=(lambda i=i: _base_lr(scheduler, i)) if key == "lr" and scheduler is not None else None,
                ))
    return out


def loss_actuators(
    weights: dict[str, float],
    *,
    group: str = "loss",
    bounds: tuple[float, float] | None = None,
) -> list[HotcbActuator]:
    """FLOAT knobs that mutate the caller's ``weights`` dict in place (the loss reads it)."""

    def setter(key: str):
        def apply(value: Any, env: dict[str, Any]) -> None:
            weights[key] = float(value)

        return apply

    out = []
    for key, value in weights.items():
        lo, hi = bounds if bounds is not None else (0.0, max(10.0, 100.0 * abs(float(value))))
        out.append(HotcbActuator(
            param_key=key, type=ActuatorType.FLOAT, group=group, min=lo, max=hi,
            apply_fn=setter(key), read_fn=lambda k=key: weights[k],
            description=f"weight of loss term {key}",
        ))
    return out


def mutable_state(actuators: Iterable[HotcbActuator] = ()) -> MutableState:
    return MutableState(actuators)
