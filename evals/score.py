"""What a run is scored on, in one place: test accuracy for classifiers (higher is better, shown
in percent), held-out loss for ``charlm`` and ``regression`` (lower is better, shown as is).
Results written before runs carried a ``score`` are read as accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# A loss run whose score is at least this share of the no-learning baseline learned next to nothing.
BASELINE_FACTOR = 0.9
# A classifier run below this multiple of chance (1/classes) learned next to nothing.
CHANCE_FACTOR = 1.5


def score(run: dict[str, Any]) -> float:
    s = run.get("score")
    return float(run["test_acc"] if s is None else s)


def goal(runs: Iterable[dict[str, Any]]) -> str:
    """``max`` (accuracy) or ``min`` (a loss), as the runs say."""
    return next((str(r.get("goal") or "max") for r in runs), "max")


def higher_is_better(runs: Iterable[dict[str, Any]]) -> bool:
    return goal(runs) == "max"


def name(runs: list[dict[str, Any]]) -> str:
    """The score's name in a table header."""
    return "test acc" if higher_is_better(runs) else "test loss"


def unit(runs: list[dict[str, Any]]) -> str:
    return "%" if higher_is_better(runs) else ""


def fmt(x: float | None, acc: bool) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.2f}" if acc else f"{x:.4f}"


def fmt_diff(x: float | None, acc: bool) -> str:
    if x is None:
        return "—"
    return f"{100 * x:+.2f}" if acc else f"{x:+.4f}"


def at_chance(run: dict[str, Any]) -> bool:
    """Whether a run learned next to nothing: accuracy below ``CHANCE_FACTOR`` x chance, or a
    loss at ``BASELINE_FACTOR`` of the no-learning baseline or above."""
    if run.get("goal") == "min":
        base = run.get("baseline_loss")
        return base is not None and score(run) >= BASELINE_FACTOR * base
    chance = run.get("chance_acc")
    return chance is not None and run["test_acc"] < CHANCE_FACTOR * chance
