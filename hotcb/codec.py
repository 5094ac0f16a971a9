"""Non-finite numbers in JSON, once for every layer.

JSON has no NaN or infinities, yet divergence must be seen, so hotcb writes them as the strings
``"nan"``, ``"inf"``, ``"-inf"`` (run files, tool output, the dashboard) and reads them back here.
"""

from __future__ import annotations

import math
from typing import Any

TAGS = ("nan", "inf", "-inf")


def tag(v: float) -> float | str:
    """A float as JSON can carry it: itself, or its tag when it is not finite."""
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def encode(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists, tuples) replaced by its tag.

    Iterative, so a deep value cannot exhaust the interpreter's recursion limit."""
    if isinstance(value, float):
        return tag(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        v, parent, key = stack.pop()
        if isinstance(v, float):
            parent[key] = tag(v)
        elif isinstance(v, dict):
            out: dict[Any, Any] = dict.fromkeys(v)  # keys in their order; values filled below
            parent[key] = out
            stack.extend((x, out, k) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            seq: list[Any] = [None] * len(v)
            parent[key] = seq
            stack.extend((x, seq, i) for i, x in enumerate(v))
        else:
            parent[key] = v
    return root[0]


def decode_number(value: Any) -> float | None:
    """A recorded number back as a float (tags as nan/inf); anything else is None."""
    if isinstance(value, (int, float)):  # bool is an int: True -> 1.0
        return float(value)
    if isinstance(value, str) and value in TAGS:
        return float(value)
    return None


def json_number(value: Any) -> float | None:
    """A JSON number (int or float, not a bool and not a tag) as a float; anything else is None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
