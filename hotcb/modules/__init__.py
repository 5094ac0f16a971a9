"""Kernel modules: each owns one domain of ops (callbacks here; tune in ``hotcb.tune``), and the
context an op is applied in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApplyContext:
    """Where in the training loop an op is being applied."""

    step: int
    epoch: int | None
    events: list[str]
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str | None:
        return self.events[0] if self.events else None
