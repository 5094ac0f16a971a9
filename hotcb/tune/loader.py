"""How a kernel gets its ``tune`` module: loaded on first use (``HotKernel.module_for``), or at
start where the run directory says tune was on (``hotcb.tune.json``), to continue its study.
Imports Optuna only then: without ``hotcb[tune]`` an op for tune is refused, and the run trains.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..actuators.actuator import ValueRefused
from ..jsonl import read_json
from ..ops import TUNE
from ..rundir import TUNE as TUNE_FILE

if TYPE_CHECKING:
    from ..kernel import HotKernel

log = logging.getLogger("hotcb")


def load_tune(kernel: HotKernel) -> Any:
    """Build tune's module and register it with ``kernel`` (``ValueRefused``: tune is unavailable)."""
    try:
        from .module import TuneModule
    except ImportError as e:
        raise ValueRefused(f"tune is unavailable ({e}); install it with: pip install 'hotcb[tune]'") from None
    module = TuneModule(kernel)
    kernel.register_module(TUNE, module)
    return module


def resume_tune(kernel: HotKernel) -> None:
    """A run directory where tune was on (hotcb.tune.json): continue its study in this process."""
    saved = read_json(kernel.run.root / TUNE_FILE, None)
    if not isinstance(saved, dict) or saved.get("mode") in (None, "off"):
        return
    try:
        load_tune(kernel)
    except Exception as e:  # without optuna the run still trains; the refusal is logged
        log.warning("hotcb: tune was enabled in %s but cannot resume: %s", kernel.run.root, e)
