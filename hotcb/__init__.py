"""hotcb: a live training control plane for PyTorch.

Core runs inside the training process and needs only the standard library, torch and PyYAML.
"""

from __future__ import annotations

from .actuators import (
    ActuatorState,
    ActuatorType,
    HotcbActuator,
    MutableState,
    loss_actuators,
    mutable_state,
    optimizer_actuators,
)
from .collector import MetricsCollector
from .features import FeatureCapture
from .freeze import FreezeState
from .guard import GuardConfig
from .kernel import HotKernel
from .kernel_config import KernelConfig
from .ledger import Decision
from .ops import CallbackTarget, HotOp, Source
from .recipe import RecipePlayer

__version__ = "0.1.0"

__all__ = [
    "ActuatorState", "ActuatorType", "CallbackTarget", "Decision", "FeatureCapture", "FreezeState", "GuardConfig",
    "HotKernel", "HotOp", "KernelConfig", "HotcbActuator", "MetricsCollector", "MutableState", "RecipePlayer", "Source",
    "loss_actuators", "mutable_state", "optimizer_actuators",
]


def require_extra(module: str, extra: str):
    """Import an optional dependency or fail with one line naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"hotcb: this feature needs {module!r}; install it with: pip install 'hotcb[{extra}]'") from None
