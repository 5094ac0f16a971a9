"""Online hyperparameter search inside the training loop (``hotcb[tune]``): the kernel's ``tune``
module (``TuneModule``, in ``module``), the objects it composes, its pure decisions
(``decide``), recipe (``recipe``), scoring (``score``) and CLI (``cli``).

Importing the package imports nothing heavy: the recipe, the scoring and the CLI work without
Optuna; ``TuneModule`` imports it, and is loaded on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # ``hotcb.tune.TuneModule`` without importing Optuna up front
    if name == "TuneModule":
        from .module import TuneModule
        return TuneModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
