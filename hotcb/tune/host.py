"""``TuneHost``: exactly what tune uses of the kernel (public kernel members, nothing else).

``TuneModule`` holds the kernel as a ``TuneHost``; each of its parts gets a narrower view, the
few members it needs (``KnobHost`` for reading and judging knobs, ``WeightsHost`` for the
trial's weights, ``SyncHost`` for torch.distributed), so what tune depends on is written down
once and a kernel refactoring that keeps these members keeps tune working.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..actuators import MutableState
from ..checkpoint import Snapshots
from ..freeze import FreezeState
from ..guard import GuardConfig
from ..ledger import Ledger
from ..ops import HotOp
from ..rundir import RunDir


class KnobHost(Protocol):
    """The live knobs and who may change them: read by ``TuneSpace``."""

    state: MutableState
    guard: GuardConfig
    locks: dict[str, dict[str, Any]]
    freeze: FreezeState


class WeightsHost(Protocol):
    """The registered training state: ``TrialWeights`` snapshots and restores it."""

    state: MutableState
    snapshots: Snapshots
    dist: Any  # DistributedSync | None


class SyncHost(Protocol):
    """torch.distributed and the commands file: ``DistSync`` and the sync command."""

    dist: Any  # DistributedSync | None
    run: RunDir
    ledger: Ledger
    freeze: FreezeState

    def submit(self, op: HotOp, env: dict[str, Any] | None = None) -> dict[str, Any]: ...


class TuneHost(KnobHost, WeightsHost, SyncHost, Protocol):
    """All of it, held by ``TuneModule``: plus the run's position, the writer flag and the
    divergence detector (the ``rescue`` module's)."""

    step: int
    max_steps: int | None
    is_writer: bool
    modules: dict[str, Any]
