"""Freeze modes: who may change the run.

- ``off``: everyone, under the guard.
- ``prod``: nothing external changes the run; only a human may unfreeze, pause, resume, stop.
- ``replay``: a recipe drives the knobs; external knob/callback/tune changes are ignored.
- ``replay_adjusted``: replay, with an overlay of patches applied to the recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .jsonl import read_json
from .jsonl_write import write_json_atomic
from .vocabulary import FreezeMode, Source

MODES = FreezeMode.values()
# Core ops a human may still send while frozen (they do not change what the model learns).
_FROZEN_CORE_OK = {"freeze", "unfreeze", "pause", "resume", "stop", "checkpoint", "lock", "unlock"}


def freeze_decision(mode: str, module: str, op: str, source: str, owner: str | None = Source.HUMAN) -> str | None:
    """``None`` if the op may proceed under ``mode``, else the ledger decision that ignores it.

    ``owner`` is the source that set the mode: a replay that automation started does not lock a
    person out (their changes proceed; the recipe's next entries still fire)."""
    if mode == "off":
        return None
    if mode == "prod":
        if module == "core" and op in _FROZEN_CORE_OK and source == Source.HUMAN:
            return None
        return "ignored_freeze"
    if source == "replay" or module == "core":
        return None
    if source in (Source.HUMAN, Source.YAML) and owner not in (Source.HUMAN, Source.YAML, None):
        return None
    return "ignored_replay"


@dataclass
class FreezeState:
    mode: str = "off"
    recipe_path: str | None = None
    overlay_path: str | None = None
    overlay: list[dict[str, Any]] = field(default_factory=list)
    cmd_id: str | None = None
    source: str = Source.HUMAN
    actor: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"freeze mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode in ("replay", "replay_adjusted") and not self.recipe_path:
            raise ValueError(f"freeze mode {self.mode!r} needs a recipe_path")

    @property
    def replaying(self) -> bool:
        return self.mode in ("replay", "replay_adjusted")

    def decision_for(self, module: str, op: str, source: str) -> str | None:
        return freeze_decision(self.mode, module, op, source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "recipe_path": self.recipe_path, "overlay_path": self.overlay_path,
            "overlay": self.overlay, "cmd_id": self.cmd_id, "source": self.source,
            "actor": self.actor, "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FreezeState:
        if not isinstance(d, dict):
            raise ValueError("freeze file must hold a JSON object")
        overlay = d.get("overlay") or []
        if not isinstance(overlay, list):
            raise ValueError("overlay must be a list of recipe patches")
        for key in ("mode", "recipe_path", "overlay_path", "source", "actor", "reason", "cmd_id"):
            if d.get(key) is not None and not isinstance(d.get(key), str):
                raise ValueError(f"{key} must be a string")
        return cls(
            mode=d.get("mode", "off"), recipe_path=d.get("recipe_path"),
            overlay_path=d.get("overlay_path"), overlay=overlay, cmd_id=d.get("cmd_id"),
            source=d.get("source", Source.HUMAN), actor=d.get("actor"), reason=d.get("reason"),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FreezeState | None:
        d = read_json(path)
        return None if d is None else cls.from_dict(d)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(path, self.to_dict())
