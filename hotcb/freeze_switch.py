"""``FreezeSwitch``: the run's freeze mode and, while replaying, its recipe player.

Switching to a replay validates the recipe whole first -- every entry and overlay patch, by the
judge, as the source that starts it -- or the switch does not happen (``ValueRefused``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .actuators.actuator import ValueRefused
from .freeze import FreezeState
from .judge import CodePolicy, View
from .ledger import Ledger
from .recipe import RecipePlayer, load_recipe
from .replay_check import MAX_RECIPE_BYTES, replay_problems


class FreezeSwitch:
    def __init__(self, code: CodePolicy, ledger: Ledger, view: Callable[[], View],
                 on_change: Callable[[], None]) -> None:
        self.code = code
        self.ledger = ledger
        self._view = view  # the run as the judge sees it, for the recipe's entries
        self._on_change = on_change  # publishes the new mode (hotcb.status.json)
        self.freeze = FreezeState()
        self.player: RecipePlayer | None = None

    def set(self, new: FreezeState, from_code: bool = False) -> None:
        """Switch to ``new`` (``from_code``: given by the training script itself)."""
        player = None
        if new.replaying:
            entries = load_recipe(self._recipe_file(new.recipe_path, "recipe", from_code))
            overlay = list(new.overlay)
            if new.overlay_path:
                overlay += load_recipe(self._recipe_file(new.overlay_path, "overlay", from_code))
            entries, problems = replay_problems(entries, overlay, new.mode, new.source, self._view())
            if problems:
                more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
                raise ValueRefused("recipe refused: " + "; ".join(problems[:5]) + more)
            player = RecipePlayer(entries)
            # A resumed run must not fire entries it already replayed.
            while not player.done and self.ledger.has(
                f"replay-{player.entries[player.position].get('cmd_id')}-{player.entries[player.position].get('step')}"
            ):
                player.position += 1
                player.fired += 1
        self.freeze = new
        self.player = player
        self._on_change()

    def _recipe_file(self, given: str | None, what: str, from_code: bool) -> Path:
        # A path the training script itself gave (``HotKernel(freeze=...)``) is its author's;
        # one from a command or the freeze file must lie in the run directory or allowed dirs.
        path = Path(given or "").resolve() if from_code and given and Path(given).is_absolute() else self.code.place(given or "")
        if path is None:
            raise ValueRefused(f"{what} {given!r} is outside the run directory and the allowed directories")
        if not path.is_file():
            raise ValueRefused(f"{what} not found: {given}")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise ValueRefused(f"{what} {given} is larger than {MAX_RECIPE_BYTES >> 20} MiB")
        return path
